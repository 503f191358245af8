"""The oracle itself, checked against central finite differences of the loss."""
import numpy as np
import pytest

from oracles import finite_difference
from simulator import Network, reference


@pytest.mark.parametrize("loss", ["mse", "xent", "linear"])
@pytest.mark.parametrize("act", ["tanh", "logistic", "relu", "linear"])
def test_backprop_matches_finite_differences(rng, loss, act):
    net = Network.random([3, 5, 4, 3], [act, act, "linear"], seed=int(rng.integers(1 << 30)),
                         bias_scale=0.3)
    u, y = rng.normal(size=(2, 3)), rng.normal(size=(2, 3))
    if loss == "xent":
        y = np.abs(y) / np.abs(y).sum(axis=1, keepdims=True)
    got = reference.backprop(net, u, y, loss)
    want = finite_difference(net, u, y, loss)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-8)


def test_bias_gradient_matches_finite_differences(rng):
    net = Network.random([2, 4, 2], ["tanh", "logistic"], seed=3, bias_scale=0.5)
    u, y = rng.normal(size=(3, 2)), rng.normal(size=(3, 2))
    got = reference.backprop_biases(net, u, y)
    eps = 1e-6
    for i, b in enumerate(net.biases):
        for j in range(b.size):
            p, m = net.copy(), net.copy()
            p.biases[i][j] += eps
            m.biases[i][j] -= eps
            fd = (reference.loss_value(p, u, y) - reference.loss_value(m, u, y)) / (2 * eps)
            assert got[i][j] == pytest.approx(fd, rel=1e-6, abs=1e-9)
