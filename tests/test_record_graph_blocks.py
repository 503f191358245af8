"""The graph recorder's batched reference: ``reference.frame_gradients`` (one
backprop over F frames) against a loop of ``reference.backprop`` per frame,
for every layer kind, and the recorded mismatch of a graph run against a
per-tick backprop computed here, independently of the recorder."""
import numpy as np
import pytest

from graph_models import ATTENTION, CONV, RESIDUAL, shipped_with
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


# ------------------------------------------------------- recorded graph runs
RUNS = {  # name: (scene, overrides {(section, key): value}, ticks, block bytes or None)
    "conv learning": ("conv_digits", {}, 40, None),
    "conv frozen held every 2": ("conv_digits", {("rule", "learning_rate"): 0.0,
                                                 ("stream", "hold"): 3,
                                                 ("record", "every"): 2}, 40, None),
    "conv frozen hold 1 small blocks": ("conv_digits", {("rule", "learning_rate"): 0.0,
                                                        ("stream", "hold"): 1}, 30, 200000),
    "residual constant": ("residual_levelling", {}, 40, None),
    "residual constant without states": ("residual_levelling", {("record", "states"): False},
                                         40, None),
    "residual hold 1 batch 3 small blocks": (
        "residual_levelling", {("stream", "kind"): "held", ("stream", "hold"): 1,
                               ("stream", "batch"): 3}, 40, 17000),
    "residual held supervision": (
        "residual_levelling", {("stream", "kind"): "held", ("stream", "hold"): 2,
                               ("rule", "reference"): "supervision",
                               ("rule", "supervision_delay"): 2,
                               ("record", "every"): 3}, 40, 6000),
    "residual learning levelled": (
        "residual_levelling", {("stream", "kind"): "held", ("stream", "hold"): 2,
                               ("rule", "learning_rate"): 0.05,
                               ("network", "levelled"): True}, 40, 10000),
    # linear vertices on (tokens, features): Gram factors of B·T rows
    "tokens hold 1 batch 2 small blocks": (
        "residual_levelling", {("network", "layers"): TOKENS, ("network", "input_shape"): [2, 4],
                               ("stream", "kind"): "held", ("stream", "hold"): 1,
                               ("stream", "batch"): 2}, 30, 3000),
    "attention learning batch 2": (
        "residual_levelling", {("network", "layers"): ATTENTION,
                               ("network", "input_shape"): [3, 5], ("stream", "kind"): "held",
                               ("stream", "hold"): 2, ("stream", "batch"): 2,
                               ("rule", "learning_rate"): 0.05}, 30, None),
}


def _oracle(sc):
    """The trace's norms and mismatch, computed here tick by tick: the engine
    stepped on the stream's frames, each frame's backprop with the weights
    just after its tick, compared with g at the frame the tags pair with."""
    from simulator.build import build
    parts = build(sc)
    eng = parts.engine()
    ticks, every = sc["run"]["ticks"], sc["record"]["every"]
    u, y, _ = parts.stream.take(ticks)
    R = 2 * eng.depth + eng.supervision_delay + 2
    key = "pair" if sc["rule"]["reference"] == "input" else "supervision"
    refs, rows = {}, {k: [] for k in ("x_norm", "delta_norm", "mismatch_cos", "mismatch_rel",
                                      "grad_norm", "ref_norm", "state_x", "state_delta")}
    n = eng.n
    for k in range(ticks):
        eng.step(u[k], y[k])
        t = eng.tick
        refs[t] = reference.backprop(eng.model, u[k], y[k], eng.loss, params=eng.parameters())
        if t % every:
            continue
        X, D = eng.state_views()
        rows["x_norm"].append([np.sqrt(np.sum(a * a)) for a in X])
        rows["delta_norm"].append([np.nan] + [np.sqrt(np.sum(a * a)) for a in D[1:]])
        N = max(int(np.prod(a.shape[1:])) for a in X)
        pad = [np.full((a.shape[0], N), np.nan) for a in X]
        for p, a in zip(pad, X):
            p[:, :a[0].size] = a.reshape(a.shape[0], -1)
        rows["state_x"].append(np.stack(pad))
        pad = [np.full((a.shape[0], N), np.nan) for a in X]
        for p, a in zip(pad, [X[0]] + D[1:]):
            p[:, :a[0].size] = a.reshape(a.shape[0], -1)
        rows["state_delta"].append(np.stack(pad))
        frames, g = eng.tags()[key], eng.gradients()
        out = {k2: np.full(n - 1, np.nan) for k2 in ("mismatch_cos", "mismatch_rel",
                                                      "grad_norm", "ref_norm")}
        for v in eng.model.vertices[1:]:
            if "W" not in v.param_names:
                continue
            gw = g[f"{v.name}.W"]
            out["grad_norm"][v.index - 1] = np.sqrt(np.sum(gw * gw))
            s = int(frames[v.index])
            if s < 0 or s <= t - R:
                continue
            G = refs[s][f"{v.name}.W"]
            out["mismatch_cos"][v.index - 1] = np.sum(gw * G) / np.sqrt(np.sum(gw * gw)
                                                                         * np.sum(G * G))
            out["mismatch_rel"][v.index - 1] = np.sqrt(np.sum((gw - G) ** 2) / np.sum(G * G))
            out["ref_norm"][v.index - 1] = np.sqrt(np.sum(G * G))
        for k2, a in out.items():
            rows[k2].append(a)
    return {k2: np.array(a) for k2, a in rows.items()}


@pytest.mark.parametrize("gram", ["cheaper", "always", "never"])
@pytest.mark.parametrize("name", sorted(RUNS))
def test_recorded_graph_run_matches_per_tick_backprop(name, gram, monkeypatch):
    """Dense and linear vertices measured through Gram products where they
    pay (``gram_pays``), always, or never: the same trace as the oracle's."""
    from simulator.probes import vertex as vertex_metrics
    from simulator.runner import Prepared
    base, overrides, ticks, block = RUNS[name]
    if block is not None:         # blocks of a few ticks: the ring wraps, blocks cut runs of frames
        monkeypatch.setattr(vertex_metrics, "BLOCK_BYTES", block)
    if gram != "cheaper":
        monkeypatch.setattr(vertex_metrics, "gram_pays", lambda *_: gram == "always")
    sc = shipped_with(base, overrides, ticks)
    with np.errstate(all="ignore"):
        trace = Prepared(name, sc).simulate()
        want = _oracle(sc)
    assert np.isfinite(want["mismatch_cos"]).sum() > ticks // (2 * sc["record"]["every"])
    if not sc["record"]["states"]:
        assert "state_x" not in trace
        del want["state_x"], want["state_delta"]
    for key, a in want.items():
        got = trace[key]
        assert got.shape == a.shape, key
        np.testing.assert_array_equal(np.isnan(got), np.isnan(a), err_msg=key)
        np.testing.assert_allclose(got, a, rtol=1e-12, atol=1e-13, err_msg=key)


@pytest.mark.parametrize("name", ["conv frozen hold 1 small blocks", "attention learning batch 2"])
def test_recorded_graph_run_gives_numpys_trace_in_every_namespace(name, device, monkeypatch):
    """Explicit (conv) and Gram (dense, linear on tokens: forced) vertices: the
    same recorded metrics under array-api-strict (and cupy where present) as under numpy."""
    from simulator.probes import vertex as vertex_metrics
    from simulator.runner import Prepared
    monkeypatch.setattr(vertex_metrics, "gram_pays", lambda *_: True)
    base, overrides, ticks, block = RUNS[name]
    if block is not None:
        monkeypatch.setattr(vertex_metrics, "BLOCK_BYTES", block)
    traces = {}
    for dev in ("cpu", device):
        sc = shipped_with(base, {**overrides, ("run", "device"): dev}, ticks)
        with np.errstate(all="ignore"):
            traces[dev] = Prepared(name, sc).simulate()
    assert np.isfinite(traces["cpu"]["mismatch_cos"]).sum() > ticks // 2
    for key in ("mismatch_cos", "mismatch_rel", "grad_norm", "ref_norm", "x_norm"):
        np.testing.assert_allclose(traces[device][key], traces["cpu"][key], rtol=1e-9,
                                   atol=1e-9, equal_nan=True, err_msg=key)
