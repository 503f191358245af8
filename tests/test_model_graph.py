"""The Model graph: building from layer dicts, backprop on DAGs, levelling, validation.

Oracles: central finite differences of the loss (graph backprop), a chain's
backprop and the seeded draw of ``Model.chain`` written out, and path
enumeration written here (levels and levelling).
"""
import numpy as np
import pytest

from simulator import Model, Network, SimulatorError
from simulator.backend import Backend, to_host
from simulator.model import LayerError
from simulator.model import reference as R


def fd_grads(model, u, y, loss, eps=1e-6):
    """∂ℓ/∂p for every parameter entry by central differences of the loss."""
    base = model.parameters()
    out = {}
    for key, a in base.items():
        g = np.zeros_like(a)
        for idx in np.ndindex(a.shape):
            vals = []
            for sign in (1, -1):
                p = {k: v.copy() for k, v in base.items()}
                p[key][idx] += sign * eps
                vals.append(R.loss_value(model, u, y, loss, params=p))
            g[idx] = (vals[0] - vals[1]) / (2 * eps)
        out[key] = g
    return out


def target(rng, loss, shape):
    y = rng.normal(size=shape)
    if loss == "xent":
        y = np.abs(y) / np.abs(y).sum(axis=-1, keepdims=True)
    return y


def assert_grads(got, want, rtol=1e-6, atol=1e-8):
    assert list(got) == list(want)
    for k in want:
        np.testing.assert_allclose(np.asarray(to_host(got[k])), want[k], rtol=rtol, atol=atol,
                                   err_msg=k)


def random_dag(rng, n_layers=6, width=4, n_in=3):
    """Dense vertices of one width reading any earlier vertex, add merges of
    two or three earlier ones, random activations; the last layer reads every
    vertex no one reads yet (so every layer reaches the output)."""
    acts = ["tanh", "logistic", "relu", "linear"]
    layers = [{"name": "h0", "kind": "dense", "units": width, "from": "input",
               "activation": str(rng.choice(acts)), "bias_scale": 0.5}]
    for i in range(1, n_layers):
        earlier = [l["name"] for l in layers]
        if i > 1 and rng.random() < 0.4:
            k = min(len(earlier), int(rng.integers(2, 4)))
            parents = [str(p) for p in rng.choice(earlier, size=k, replace=False)]
            layers.append({"name": f"h{i}", "kind": "add", "from": parents,
                           "activation": str(rng.choice(acts))})
        else:
            layers.append({"name": f"h{i}", "kind": "dense", "units": width,
                           "from": str(rng.choice(earlier)),
                           "activation": str(rng.choice(acts)), "bias_scale": 0.5})
    read = {p for l in layers for p in ([l["from"]] if isinstance(l["from"], str) else l["from"])}
    loose = [l["name"] for l in layers if l["name"] not in read]
    if len(loose) > 1:
        layers.append({"name": "merge", "kind": "add", "from": loose})
        loose = ["merge"]
    layers.append({"name": "out", "kind": "dense", "units": 3, "from": loose[0],
                   "activation": "linear"})
    return layers


def conv_residual_layers():
    return [
        {"name": "c1", "kind": "conv2d", "channels": 3, "kernel": 3, "padding": 1,
         "activation": "tanh", "bias_scale": 0.3},
        {"name": "c2", "kind": "conv2d", "channels": 3, "kernel": [3, 1], "padding": [1, 0],
         "activation": "relu", "bias_scale": 0.3},
        {"name": "r", "kind": "add", "from": ["c1", "c2"], "activation": "tanh"},
        {"name": "side", "kind": "conv2d", "from": "input", "channels": 3, "kernel": 1},
        {"name": "m", "kind": "add", "from": ["r", "side"]},
        {"name": "p", "kind": "pool", "size": 2, "mode": "max"},
        {"name": "f", "kind": "flatten"},
        {"name": "o", "kind": "dense", "units": 3, "activation": "linear", "bias_scale": 0.3},
    ]


def strided_conv_layers():
    return [
        {"name": "c1", "kind": "conv2d", "channels": 2, "kernel": [2, 3], "stride": 2,
         "padding": 2, "activation": "logistic"},
        {"name": "p", "kind": "pool", "size": [2, 1], "stride": 1, "mode": "avg"},
        {"name": "c2", "kind": "conv2d", "channels": 2, "kernel": 2, "activation": "relu",
         "bias_scale": 0.2},
        {"name": "f", "kind": "flatten"},
        {"name": "o", "kind": "dense", "units": 2, "activation": "tanh"},
    ]


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("loss", ["mse", "xent", "linear"])
def test_backprop_on_random_dags_matches_finite_differences(seed, loss):
    g = np.random.default_rng(seed)
    model = Model.from_layers(random_dag(g), (3,), seed=seed)
    u, y = g.normal(size=(3, 3)), target(g, loss, (3, 3))
    assert_grads(R.backprop(model, u, y, loss), fd_grads(model, u, y, loss))


@pytest.mark.parametrize("make", [conv_residual_layers, strided_conv_layers])
def test_backprop_on_conv_graphs_matches_finite_differences(rng, make):
    model = Model.from_layers(make(), (2, 6, 5), seed=int(rng.integers(1 << 30)))
    u = rng.normal(size=(2, 2, 6, 5))
    y = target(rng, "mse", (2,) + model.output_shape)
    assert_grads(R.backprop(model, u, y, "mse"), fd_grads(model, u, y, "mse"),
                 rtol=1e-5, atol=1e-7)


def test_graph_backprop_is_device_neutral(rng, device):
    model = Model.from_layers(conv_residual_layers(), (2, 6, 5), seed=3)
    u, y = rng.normal(size=(2, 2, 6, 5)), rng.normal(size=(2, 3))
    want = R.backprop(model, u, y, "mse")
    be = Backend(device)
    got = R.backprop(model, be.asarray(u), be.asarray(y), "mse")
    assert_grads(got, want, rtol=1e-11, atol=1e-12)


def test_feedback_replaces_weights_in_the_backward_pass_only(rng):
    layers = [{"name": "a", "kind": "dense", "units": 4, "activation": "tanh"},
              {"name": "b", "kind": "dense", "units": 2, "activation": "linear"}]
    model = Model.from_layers(layers, (3,), seed=1)
    p = model.parameters()
    u, y = rng.normal(size=(5, 3)), rng.normal(size=(5, 2))
    fb = rng.normal(size=p["b.W"].shape)
    got = R.backprop(model, u, y, "mse", feedback={"b.W": fb})
    h = np.tanh(u @ p["a.W"].T + p["a.b"])
    e = h @ p["b.W"].T + p["b.b"] - y
    d_a = (e @ fb) * (1 - h * h)  # feedback alignment written out
    np.testing.assert_allclose(got["a.W"], d_a.T @ u, rtol=1e-12)
    np.testing.assert_allclose(got["b.W"], e.T @ h, rtol=1e-12)


def test_a_chain_draws_its_weights_then_its_biases_from_the_seeded_generator():
    """Model.chain: W_l ~ N(0, scale²/n_{l-1}) for every layer, then every b_l
    ~ N(0, bias_scale²), from numpy's default_rng(seed), written out here;
    Network.random (the deprecated alias) is the same chain Model."""
    sizes, seed = [4, 6, 5, 3], 7
    model = Model.chain(sizes, ["tanh", "relu", "linear"], seed=seed, scale=1.5, bias_scale=0.4)
    g = np.random.default_rng(seed)
    ws = [g.normal(0.0, 1.5 / np.sqrt(n), (m, n)) for n, m in zip(sizes[:-1], sizes[1:])]
    bs = [g.normal(0.0, 0.4, m) for m in sizes[1:]]
    p = model.parameters()
    assert list(p) == ["1.W", "1.b", "2.W", "2.b", "3.W", "3.b"]
    for l in range(3):
        np.testing.assert_array_equal(p[f"{l + 1}.W"], ws[l])
        np.testing.assert_array_equal(p[f"{l + 1}.b"], bs[l])
    assert [model.vertex(str(l)).layer.activation for l in (1, 2, 3)] == ["tanh", "relu", "linear"]
    assert not Model.chain([3, 2], seed=1).parameters()["1.b"].any()   # bias_scale 0: zeros
    net = Network.random(sizes, ["tanh", "relu", "linear"], seed=seed, scale=1.5, bias_scale=0.4)
    assert isinstance(net, Model) and net.sizes == sizes
    for a, b in zip(net.weights + net.biases, ws + bs):
        np.testing.assert_array_equal(a, b)
    again = Model.from_weights(ws, bs, ["tanh", "relu", "linear"]).parameters()
    for k in p:
        np.testing.assert_array_equal(again[k], p[k])


@pytest.mark.parametrize("loss", ["mse", "xent", "linear"])
def test_chain_backprop_equals_backprop_written_out(rng, loss):
    """The oracle on Model.chain against the chain's backprop written out here:
    δ^L = σ'_L ⊙ ∂ℓ/∂x^L, δ^l = σ'_l ⊙ (δ^{l+1} W_l), ∂ℓ/∂W = δᵀx, ∂ℓ/∂b = Σ δ."""
    model = Model.chain([4, 6, 5, 3], ["tanh", "relu", "linear"], seed=7, bias_scale=0.4)
    p = model.parameters()
    u, y = rng.normal(size=(3, 4)), target(rng, loss, (3, 3))
    a1 = u @ p["1.W"].T + p["1.b"]
    x1 = np.tanh(a1)
    a2 = x1 @ p["2.W"].T + p["2.b"]
    x2 = np.maximum(a2, 0.0)
    x3 = x2 @ p["3.W"].T + p["3.b"]
    if loss == "mse":
        d3 = x3 - y
    elif loss == "linear":
        d3 = -y
    else:
        z = np.exp(x3 - x3.max(axis=1, keepdims=True))
        d3 = z / z.sum(axis=1, keepdims=True) - y
    d2 = (a2 > 0) * (d3 @ p["3.W"])
    d1 = (1 - x1 ** 2) * (d2 @ p["2.W"])
    want = {"1.W": d1.T @ u, "1.b": d1.sum(0), "2.W": d2.T @ x1, "2.b": d2.sum(0),
            "3.W": d3.T @ x2, "3.b": d3.sum(0)}
    got = R.backprop(model, u, y, loss)
    assert list(got) == list(want)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-12, atol=1e-14)


def test_a_dense_chain_from_layers_draws_the_chains_weights():
    layers = [{"kind": "dense", "units": 5}, {"kind": "dense", "units": 2, "activation": "linear"}]
    model = Model.from_layers(layers, [3], seed=11)
    chain = Model.chain([3, 5, 2], ["tanh", "linear"], seed=11).parameters()
    p = model.parameters()
    assert list(p) == ["1.W", "1.b", "2.W", "2.b"]
    np.testing.assert_array_equal(p["1.W"], chain["1.W"])
    np.testing.assert_array_equal(p["2.W"], chain["2.W"])
    assert not p["1.b"].any() and p["1.b"].shape == (5,)


def test_initial_weights_have_the_documented_scale():
    layers = [{"name": "c", "kind": "conv2d", "channels": 64, "kernel": [3, 5], "scale": 2.0,
               "bias_scale": 0.5},
              {"name": "f", "kind": "flatten"}]
    p = Model.from_layers(layers, (8, 9, 9), seed=0).parameters()
    assert p["c.W"].shape == (64, 8, 3, 5) and p["c.b"].shape == (64,)
    assert p["c.W"].std() == pytest.approx(2.0 / np.sqrt(8 * 3 * 5), rel=0.05)
    assert p["c.b"].std() == pytest.approx(0.5, rel=0.3)


def all_path_lengths(model):
    """{name: set of lengths of every path from the input}, by enumerating paths."""
    lengths = {"input": {0}}
    for v in model.vertices[1:]:
        lengths[v.name] = {n + 1 for p in model.parents(v.name) for n in lengths[p]}
    return lengths


@pytest.mark.parametrize("seed", range(4))
def test_levelling_gives_every_vertex_one_path_length_and_keeps_values(seed):
    g = np.random.default_rng(100 + seed)
    model = Model.from_layers(random_dag(g, n_layers=8), (3,), seed=seed)
    before = all_path_lengths(model)
    assert model.levels() == {k: max(s) for k, s in before.items()}
    levelled = model.level()
    after = all_path_lengths(levelled)
    assert all(len(s) == 1 for s in after.values())
    assert levelled.is_levelled() and levelled.depth == model.depth
    assert model.is_levelled() == all(len(s) == 1 for s in before.values())
    for name in model.names:  # every original vertex keeps its (longest) level
        assert after[name] == {max(before[name])}
    inserted = [v for v in levelled.vertices if v.name not in before]
    assert all(v.kind == "identity" for v in inserted)
    lv = model.levels()
    assert len(inserted) == sum(lv[model.names[c]] - lv[model.names[p]] - 1
                                for p, c, _ in model.edges())
    u, y = g.normal(size=(4, 3)), g.normal(size=(4, 3))
    np.testing.assert_allclose(R.forward(levelled, u)["out"], R.forward(model, u)["out"],
                               rtol=1e-14)
    assert levelled.parameters().keys() == model.parameters().keys()
    assert_grads(R.backprop(levelled, u, y), R.backprop(model, u, y), rtol=1e-13, atol=1e-15)


def test_levelling_a_residual_block_inserts_the_skip_delays():
    layers = [{"name": "a", "kind": "dense", "units": 4},
              {"name": "b", "kind": "dense", "units": 4},
              {"name": "c", "kind": "dense", "units": 4},
              {"name": "r", "kind": "add", "from": ["a", "c"]},
              {"name": "o", "kind": "dense", "units": 2}]
    model = Model.from_layers(layers, (3,))
    assert model.levels() == {"input": 0, "a": 1, "b": 2, "c": 3, "r": 4, "o": 5}
    assert model.depth == 5 and not model.is_levelled()
    assert model.children("a") == ("b", "r") and model.parents("r") == ("a", "c")
    levelled = model.level()
    assert levelled.parents("r") == ("_id_r_0_1", "c")
    assert levelled.parents("_id_r_0_1") == ("_id_r_0_0",)
    assert levelled.parents("_id_r_0_0") == ("a",)
    rebuilt = Model.from_layers(levelled.to_layers(), (3,)).with_parameters(
        levelled.parameters())
    assert rebuilt.names == levelled.names


def test_a_model_rebuilds_from_to_layers_and_parameters(rng):
    model = Model.from_layers(conv_residual_layers(), (2, 6, 5), seed=4)
    rebuilt = Model.from_layers(model.to_layers(), [2, 6, 5], seed=99)
    assert rebuilt.names == model.names
    rebuilt = rebuilt.with_parameters(model.parameters())
    u = rng.normal(size=(2, 2, 6, 5))
    np.testing.assert_array_equal(R.forward(rebuilt, u)["o"], R.forward(model, u)["o"])


def test_layers_may_be_listed_in_any_order():
    layers = [{"name": "o", "kind": "dense", "units": 2, "from": "r"},
              {"name": "h", "kind": "dense", "units": 3, "from": "input"},
              {"name": "r", "kind": "add", "from": ["h", "g"]},
              {"name": "g", "kind": "dense", "units": 3, "from": "h"},
              {"name": "last", "kind": "identity", "from": "o"}]
    model = Model.from_layers(layers, (2,))
    assert model.names == ["input", "h", "g", "r", "o", "last"]
    assert model.output_shape == (2,)


BAD = [  # (layers, input_shape, fragments the one error message must hold)
    ([{"name": "c", "kind": "conv2", "channels": 2, "kernel": 3}], (1, 5, 5),
     ["layers[0] ('c')", "kind", "'conv2d'"]),
    ([{"name": "c", "kind": "conv2d", "channels": 2, "kernal": 3}], (1, 5, 5),
     ["layers[0] ('c')", "kernal", "did you mean 'kernel'"]),
    ([{"name": "c", "kind": "conv2d", "channels": 2}], (1, 5, 5),
     ["layers[0] ('c')", "kernel"]),
    ([{"name": "h", "kind": "dense", "units": 0}], (3,), ["layers[0] ('h')", "units", ">= 1"]),
    ([{"name": "h", "kind": "dense", "units": 2.5}], (3,), ["units", "2.5"]),
    ([{"name": "h", "kind": "dense", "units": 2, "activation": "tahn"}], (3,),
     ["activation", "did you mean 'tanh'"]),
    ([{"name": "p", "kind": "pool", "size": 2, "mode": "mean"}], (1, 4, 4), ["mode", "avg"]),
    ([{"name": "c", "kind": "conv2d", "channels": 1, "kernel": [2, 2, 2]}], (1, 4, 4),
     ["kernel", "pair"]),
    ([{"name": "c", "kind": "conv2d", "channels": 1, "kernel": 3, "padding": -1}], (1, 4, 4),
     ["padding", ">= 0"]),
    ([{"name": "h", "kind": "dense", "units": 2},
      {"name": "o", "kind": "dense", "units": 2, "from": "hh"}], (3,),
     ["layers[1] ('o')", "from", "did you mean 'h'"]),
    ([{"name": "a", "kind": "dense", "units": 2, "from": "b"},
      {"name": "b", "kind": "dense", "units": 2, "from": "a"}], (3,),
     ["from", "cycle"]),
    ([{"name": "c", "kind": "conv2d", "channels": 2, "kernel": 3},
      {"name": "h", "kind": "dense", "units": 2}], (1, 5, 5),
     ["layers[1] ('h')", "from", "flatten", "(2, 3, 3)"]),
    ([{"name": "a", "kind": "dense", "units": 2}, {"name": "b", "kind": "dense", "units": 3},
      {"name": "r", "kind": "add", "from": ["a", "b"]}], (3,),
     ["layers[2] ('r')", "one shape", "(3,)"]),
    ([{"name": "r", "kind": "add", "from": "input"}], (3,), ["layers[0] ('r')", "two or more"]),
    ([{"name": "i", "kind": "identity", "from": ["input", "input"]}], (3,),
     ["exactly one parent"]),
    ([{"name": "c", "kind": "conv2d", "channels": 1, "kernel": 6, "padding": 0}], (1, 5, 5),
     ["layers[0] ('c')", "kernel", "padded input"]),
    ([{"name": "p", "kind": "pool", "size": [2, 6]}], (1, 5, 5), ["size"]),
    ([{"name": "c", "kind": "conv2d", "channels": 1, "kernel": 3}], (5, 5),
     ["layers[0] ('c')", "(C, H, W)"]),
    ([{"name": "a", "kind": "dense", "units": 2}, {"name": "a", "kind": "dense", "units": 2}],
     (3,), ["layers[1] ('a')", "name"]),
    ([{"name": "input", "kind": "dense", "units": 2}], (3,), ["name", "'input'"]),
    ([{"name": "a.b", "kind": "dense", "units": 2}], (3,), ["name"]),
    ([{"name": "dead", "kind": "dense", "units": 2},
      {"name": "o", "kind": "dense", "units": 2, "from": "input"}], (3,),
     ["layers[0] ('dead')", "path to the output 'o'"]),
    ([{"name": "h", "kind": "dense", "units": 2}], (0,), ["input_shape"]),
    ([], (3,), ["layers"]),
    (["dense"], (3,), ["layers[0]"]),
]


@pytest.mark.parametrize("layers, shape, fragments", BAD)
def test_every_mistake_is_one_error_naming_layer_key_and_value(layers, shape, fragments):
    with pytest.raises(LayerError) as info:
        Model.from_layers(layers, shape)
    msg = str(info.value)
    assert "\n" not in msg and "expected" in msg and "given" in msg
    for f in fragments:
        assert f in msg, (f, msg)
    assert isinstance(info.value, SimulatorError)


def test_wrong_input_and_parameter_shapes_are_errors(rng):
    model = Model.from_layers([{"kind": "dense", "units": 2}], (3,))
    with pytest.raises(SimulatorError, match=r"u: expected an array of shape \(batch, 3\)"):
        R.forward(model, rng.normal(size=(2, 4)))
    with pytest.raises(SimulatorError, match="shape"):
        model.with_parameters({"1.W": np.zeros((2, 4)), "1.b": np.zeros(2)})
    with pytest.raises(SimulatorError, match="missing"):
        model.with_parameters({"1.W": np.zeros((2, 3))})
    with pytest.raises(SimulatorError, match="weights.1. has 3 columns but layer 1 has 2"):
        Model.from_weights([np.zeros((2, 4)), np.zeros((3, 3))])
