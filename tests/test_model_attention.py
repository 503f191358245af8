"""The attention pieces of the model core (linear, matmul, softmax) against
independent oracles: values written out with einsum and explicit formulas in
this file, VJPs and parameter gradients against central finite differences
(``check_layer`` of test_model_layers), an attention block's backprop against
finite differences of its loss. The graph engine's facts (A′, B′, the
unlevelled gap, C′/D′ on linear graphs) run on the same block in
test_graph_engine.py ("attention" in its GRAPHS)."""
import numpy as np
import pytest

from simulator.backend import Backend
from simulator.model.graph import Model
from simulator.model.reference import backprop, loss_value
from simulator.model.spec import LayerError
from graph_models import ATTENTION
from test_model_layers import check_layer, host, make, on, params_for

def test_linear_acts_on_the_last_axis_with_and_without_bias(rng, device):
    xp = Backend(device).xp
    for bias in (True, False):
        layer = make("linear", [(3, 5)], units=4, activation="tanh", bias=bias)
        assert layer.shape == (3, 4)
        assert set(layer.param_shapes) == ({"W", "b"} if bias else {"W"})
        x, p = rng.normal(size=(2, 3, 5)), params_for(layer, rng)
        pre, out = layer.value(xp, on(xp, p), [xp.asarray(x)])
        want = np.einsum("btn,un->btu", x, p["W"]) + (p["b"] if bias else 0.0)
        np.testing.assert_allclose(host(pre), want, rtol=1e-12)
        np.testing.assert_allclose(host(out), np.tanh(want), rtol=1e-12)
        check_layer(layer, [x], p, rng, xp)


@pytest.mark.parametrize("transpose", [False, True])
def test_matmul_value_and_vjp(rng, device, transpose):
    xp = Backend(device).xp
    b_shape = (2, 5, 4) if transpose else (2, 4, 5)
    layer = make("matmul", [(2, 3, 4), b_shape], transpose=transpose, factor=-0.7)
    assert layer.shape == (2, 3, 5)
    a, b = rng.normal(size=(3, 2, 3, 4)), rng.normal(size=(3,) + b_shape)
    pre, _ = layer.value(xp, {}, on(xp, [a, b]))
    bm = np.swapaxes(b, -1, -2) if transpose else b
    want = -0.7 * np.einsum("bhik,bhkj->bhij", a, bm)
    np.testing.assert_allclose(host(pre), want, rtol=1e-12)
    check_layer(layer, [a, b], {}, rng, xp)


def test_softmax_value_and_vjp(rng, device):
    xp = Backend(device).xp
    layer = make("softmax", [(3, 6)])
    x = 3 * rng.normal(size=(2, 3, 6))
    pre, out = layer.value(xp, {}, [xp.asarray(x)])
    want = np.exp(x) / np.exp(x).sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(host(out), want, rtol=1e-12)
    check_layer(layer, [x], {}, rng, xp)


def test_bad_attention_layers_are_one_clear_error():
    with pytest.raises(LayerError, match="rows"):
        Model.from_layers([{"name": "a", "kind": "linear", "units": 3},
                           {"name": "m", "kind": "matmul", "from": ["a", "a"]}], [2, 4])
    with pytest.raises(LayerError, match="factor"):
        Model.from_layers([{"kind": "matmul", "from": ["input", "input"], "factor": 0}], [3, 3])
    with pytest.raises(LayerError, match="bias"):
        Model.from_layers([{"kind": "linear", "units": 2, "bias": "yes"}], [3])


def _loss_by_hand(p, u, y):
    """½‖out − y‖² of ATTENTION written with numpy only."""
    e = u @ p["E.W"].T
    q, k, v = e @ p["Q.W"].T, e @ p["K.W"].T, e @ p["V.W"].T
    s = 0.5 * q @ np.swapaxes(k, -1, -2)
    a = np.exp(s - s.max(axis=-1, keepdims=True))
    a /= a.sum(axis=-1, keepdims=True)
    h = np.tanh(e + (a @ v) @ p["O.W"].T)
    out = h.reshape(len(u), -1) @ p["o.W"].T + p["o.b"]
    return 0.5 * np.sum((out - y) ** 2)


def test_attention_block_backprop_matches_finite_differences(rng):
    model = Model.from_layers(ATTENTION, [3, 5], seed=4)
    u, y = rng.normal(size=(2, 3, 5)), rng.normal(size=(2, 2))
    p = model.parameters()
    assert np.isclose(loss_value(model, u, y), _loss_by_hand(p, u, y), rtol=1e-12)
    grads = backprop(model, u, y)
    assert set(grads) == set(p)
    for key in p:
        for idx in list(np.ndindex(p[key].shape))[:6]:
            keep = p[key][idx]
            p[key][idx] = keep + 1e-6
            plus = _loss_by_hand(p, u, y)
            p[key][idx] = keep - 1e-6
            minus = _loss_by_hand(p, u, y)
            p[key][idx] = keep
            assert np.isclose(grads[key][idx], (plus - minus) / 2e-6, rtol=1e-5, atol=1e-8), key
