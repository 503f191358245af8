"""The graph recorder's batched reference: ``reference.frame_gradients`` (one
backprop over F frames) against a loop of ``reference.backprop`` per frame,
for every layer kind, and the recorded mismatch of a graph run against a
per-tick backprop computed here, independently of the recorder."""
import numpy as np
import pytest

from graph_models import ATTENTION, CONV, RESIDUAL
from simulator.model import Model
from simulator.model import reference

TOKENS = [  # linear with a bias on (tokens, features), then dense
    {"name": "L", "kind": "linear", "units": 3, "bias": True, "bias_scale": 0.4,
     "activation": "tanh"},
    {"name": "f", "kind": "flatten"},
    {"name": "o", "kind": "dense", "units": 2, "activation": "linear"},
]
MODELS = {"conv": (CONV, (2, 8, 10)), "residual": (RESIDUAL, (4,)),
          "attention": (ATTENTION, (3, 5)), "tokens": (TOKENS, (2, 4))}


def _frames(rng, model, F, B, loss):
    u = rng.normal(size=(F, B) + model.input_shape)
    if loss == "xent":
        y = np.eye(model.output_shape[0])[rng.integers(0, model.output_shape[0], (F, B))]
    else:
        y = rng.normal(size=(F, B) + model.output_shape)
    return u, y


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("loss", ["mse", "xent"])
@pytest.mark.parametrize("F,B", [(1, 1), (5, 1), (4, 3)])
def test_frame_gradients_equal_backprop_per_frame(name, loss, F, B):
    layers, shape = MODELS[name]
    model = Model.from_layers(layers, shape, seed=7)
    u, y = _frames(np.random.default_rng(F * 10 + B), model, F, B, loss)
    got = reference.frame_gradients(model, u, y, loss)
    want = [reference.backprop(model, u[f], y[f], loss) for f in range(F)]
    assert set(got) == set(want[0]) == set(model.param_keys())
    for key in got:
        assert got[key].shape == (F,) + model.parameters()[key].shape
        for f in range(F):
            scale = max(1.0, float(np.abs(want[f][key]).max()))
            np.testing.assert_allclose(got[key][f], want[f][key], rtol=0, atol=1e-12 * scale,
                                       err_msg=f"{name} {key} frame {f}")


def test_frame_gradients_take_params_and_other_kinds_frame_by_frame():
    """``params`` replaces the model's weights, and a kind with parameters but
    no batched product (here a dense layer posing as an unknown kind) goes
    through its own param_grads frame by frame, with the same result."""
    model = Model.from_layers(RESIDUAL, (4,), seed=1)
    params = {k: a * 1.5 for k, a in model.parameters().items()}
    u, y = _frames(np.random.default_rng(3), model, 3, 2, "mse")
    want = [reference.backprop(model, u[f], y[f], "mse", params=params) for f in range(3)]
    model.vertex("a1").layer.kind = "custom"
    got = reference.frame_gradients(model, u, y, "mse", params=params)
    for key in got:
        for f in range(3):
            np.testing.assert_allclose(got[key][f], want[f][key], rtol=0, atol=1e-12)
