"""The oracle on chains (``simulator.model.reference`` on ``Model.chain``),
checked against central finite differences of the loss (tests/oracles.py)."""
import numpy as np
import pytest

from oracles import finite_difference
from simulator import Model, reference


@pytest.mark.parametrize("loss", ["mse", "xent", "linear"])
@pytest.mark.parametrize("act", ["tanh", "logistic", "relu", "linear"])
def test_backprop_matches_finite_differences(rng, loss, act):
    model = Model.chain([3, 5, 4, 3], [act, act, "linear"], seed=int(rng.integers(1 << 30)),
                        bias_scale=0.3)
    u, y = rng.normal(size=(2, 3)), rng.normal(size=(2, 3))
    if loss == "xent":
        y = np.abs(y) / np.abs(y).sum(axis=1, keepdims=True)
    got = reference.backprop(model, u, y, loss)
    want = finite_difference(model, u, y, loss)
    for l, w in enumerate(want, 1):
        np.testing.assert_allclose(got[f"{l}.W"], w, rtol=1e-6, atol=1e-8)


def test_bias_gradient_matches_finite_differences(rng):
    model = Model.chain([2, 4, 2], ["tanh", "logistic"], seed=3, bias_scale=0.5)
    u, y = rng.normal(size=(3, 2)), rng.normal(size=(3, 2))
    got = reference.backprop(model, u, y)
    for l, fd in enumerate(finite_difference(model, u, y, kind="b"), 1):
        np.testing.assert_allclose(got[f"{l}.b"], fd, rtol=1e-6, atol=1e-9)
