"""The tick engine on graphs (simulator.engine.tick.GraphEngine), SPEC "Graphs".

Oracles: the golden chain runs recorded with the stacked chain engine
(tests/test_golden.py replays them through ``Engine(Network)``), instantaneous
graph backprop ``simulator.model.reference.backprop`` (itself checked against
central finite differences in test_model_graph), and path lengths enumerated
here from the graph's edges (first exact ticks, frames, the sync set). The
engine is never compared with itself.

Notation: fwd(v) = longest path input → v, bwd(v) = longest path v → output,
D = fwd(output), all on the graph the engine runs on (``model.level()`` when
levelled). Ticks count from 0 (the first ``step``); frame s is the input given
at tick s.
"""
import numpy as np
import pytest
from test_model_graph import random_dag

from simulator import Model, Network, SimulatorError
from simulator.backend import Backend, to_host
from simulator.model import reference as R
from simulator.engine.tick import GraphEngine, sync_set
from oracles import paths
from graph_models import ATTENTION


def host(a):
    return np.asarray(to_host(a))


def rel(got, want):
    """‖got − want‖ / ‖want‖ over every parameter of a gradient dict (max)."""
    return max(np.linalg.norm(host(got[k]) - want[k]) / max(np.linalg.norm(want[k]), 1e-300)
               for k in want)


def param_vertices(model):
    return [v.name for v in model.vertices[1:] if v.param_names]


def keys_of(model, name):
    return [f"{name}.{p}" for p in model.vertex(name).param_names]


# ------------------------------------------------------------------ graphs
def residual_layers(act="tanh"):
    """input → h1 → h2 → h3 → r = add(h3, h1) → out: a skip of two vertices."""
    return [{"name": "h1", "kind": "dense", "units": 5, "activation": act, "bias_scale": 0.4},
            {"name": "h2", "kind": "dense", "units": 5, "activation": act, "bias_scale": 0.4},
            {"name": "h3", "kind": "dense", "units": 5, "activation": act, "bias_scale": 0.4},
            {"name": "r", "kind": "add", "from": ["h3", "h1"], "activation": act},
            {"name": "out", "kind": "dense", "units": 3, "activation": "linear",
             "bias_scale": 0.4}]


def conv_layers(act="tanh", mode="max"):
    """conv2d → conv2d → pool → conv2d → flatten → dense, plus a 1×1 conv skip
    from the input merged before the pool (unlevelled)."""
    return [{"name": "c1", "kind": "conv2d", "channels": 3, "kernel": 3, "padding": 1,
             "activation": act, "bias_scale": 0.3},
            {"name": "c1b", "kind": "conv2d", "channels": 3, "kernel": 3, "padding": 1,
             "activation": act, "bias_scale": 0.3},
            {"name": "side", "kind": "conv2d", "from": "input", "channels": 3, "kernel": 1,
             "activation": act},
            {"name": "m", "kind": "add", "from": ["c1b", "side"]},
            {"name": "p", "kind": "pool", "size": 2, "mode": mode},
            {"name": "c2", "kind": "conv2d", "channels": 2, "kernel": 2, "activation": act,
             "bias_scale": 0.3},
            {"name": "f", "kind": "flatten"},
            {"name": "out", "kind": "dense", "units": 3, "activation": "linear",
             "bias_scale": 0.3}]


CONV_INPUT = (2, 6, 6)


def dag(seed):
    g = np.random.default_rng(seed)
    return Model.from_layers(random_dag(g, n_layers=7), (3,), seed=seed)


# Unlevelled random DAGs (seeds chosen so that levelling changes them).
DAG_SEEDS = [1, 2, 5]


def graph(kind):
    if kind == "residual":
        return Model.from_layers(residual_layers(), (4,), seed=3)
    if kind == "conv":
        return Model.from_layers(conv_layers(), CONV_INPUT, seed=4)
    if kind == "attention":
        return Model.from_layers(ATTENTION, (3, 5), seed=4)
    return dag(int(kind[3:]))


GRAPHS = ["residual", "conv", "attention"] + [f"dag{s}" for s in DAG_SEEDS]


def test_the_shipped_test_graphs_are_unlevelled():
    for kind in GRAPHS:
        assert not graph(kind).is_levelled(), kind


def white_noise(rng, model, n, batch=2):
    u = rng.normal(size=(n, batch) + model.input_shape)
    y = rng.normal(size=(n, batch) + model.output_shape)
    return u, y


# ------------------------------------------------------- chain special case
@pytest.mark.parametrize("derivative", ["local", "itd-y"])
def test_chain_sigma_tags_follow_the_tick_rule(rng, derivative):
    """On a chain of L layers δ[t,l] = D[t−1,l] ⊙ F δ[t−1,l+1]: its σ' factors
    come from D[t−1−k, l+k] (local: the frame of x[t−1−k, l+k] = t−1−l−2k; itd:
    also the frame before it) and the output's σ' at tick t−(L−l), frame
    t−2L+l. So once filled sigma_hi = t−1−l and sigma_lo = t−2L+l (l < L), and
    the output layer's own σ' has frame t−L."""
    L = 4
    net = Network.random([3] * (L + 1), ["tanh"] * L, seed=2)
    eng = GraphEngine(net, derivative=derivative)
    for t in range(3 * L):
        eng.step(rng.normal(size=(1, 3)), rng.normal(size=(1, 3)))
    tags, t = eng.tags(), eng.tick
    layers = np.arange(1, L)
    np.testing.assert_array_equal(tags["sigma_hi"][1:L], t - 1 - layers)
    np.testing.assert_array_equal(tags["sigma_lo"][1:L], t - 2 * L + layers)
    assert tags["sigma_lo"][L] == tags["sigma_hi"][L] == t - L


def test_inputs_of_the_wrong_shape_are_one_error():
    eng = GraphEngine(graph("residual"), batch=2)
    with pytest.raises(SimulatorError, match="expects"):
        eng.step(np.zeros((2, 5)), np.zeros((2, 3)))
    with pytest.raises(SimulatorError, match="expects"):
        eng.step(np.zeros((2, 4)), np.zeros((1, 3)))


# ------------------------------------------------------------ provenance tags
@pytest.mark.parametrize("levelled", [False, True])
@pytest.mark.parametrize("kind", ["residual", "conv", "dag2"])
def test_tags_carry_the_frames_of_every_path(rng, kind, levelled):
    """Frame s enters the input at tick s and reaches v along a path of length k
    at tick s + k, so x[t,v] holds frames t − k for k in into(v); δ[t,v] holds the
    supervision frames t − j for j in out_of(v) (d_y = 0) and the output-activity
    frames t − j − k', k' in into(output); g pairs with the parents' x. Each tag
    is (oldest, newest): unlevelled, a merge mixes frames; levelled, one frame."""
    model = graph(kind)
    run = model.level() if levelled else model
    into, out_of = paths(run)
    eng = GraphEngine(model, batch=2, levelled=levelled)
    u, y = white_noise(rng, model, 3 * run.depth)
    for k in range(len(u)):
        eng.step(u[k], y[k])
    t, tags = eng.tick, eng.tags()
    assert eng.names == run.names
    mixed = 0
    for v in run.vertices:
        i, name = v.index, v.name
        assert (tags["input"][i], tags["input_hi"][i]) == (t - max(into[name]),
                                                           t - min(into[name])), name
        mixed += tags["input"][i] != tags["input_hi"][i]
        if i == 0:
            continue
        pair = set().union(*(into[p] for p in run.parents(name)))
        assert (tags["pair"][i], tags["pair_hi"][i]) == (t - max(pair), t - min(pair)), name
        assert (tags["supervision"][i], tags["supervision_hi"][i]) == (
            t - max(out_of[name]), t - min(out_of[name])), name
        into_out = into[run.names[-1]]
        assert (tags["output"][i], tags["output_hi"][i]) == (
            t - max(out_of[name]) - max(into_out), t - min(out_of[name]) - min(into_out)), name
    assert (mixed == 0) == levelled


def test_levelling_is_visible_at_the_residual_merge(rng):
    """The add r = h3 + h1 reads h3 (3 ticks from the input) and h1 (1 tick): its
    inputs carry two frames two apart; after levelling, one frame."""
    model = graph("residual")
    for levelled, spread in ((False, 2), (True, 0)):
        eng = GraphEngine(model, levelled=levelled)
        for _ in range(8):
            eng.step(rng.normal(size=(1, 4)), rng.normal(size=(1, 3)))
        tags, r = eng.tags(), eng.names.index("r")
        assert tags["pair_hi"][r] - tags["pair"][r] == spread
        assert tags["input_hi"][r] - tags["input"][r] == spread


# ------------------------------------------------------------------ fact A′
@pytest.mark.parametrize("levelled", [False, True])
@pytest.mark.parametrize("kind", GRAPHS)
def test_fact_a_prime_constant_input_gives_backprop_from_a_derived_tick(rng, device, kind,
                                                                        levelled):
    """A′: constant u and y, frozen weights, default options. x[t,v] is exact from
    tick fwd(v) (induction over parents); the output δ from tick D; δ[t,v] needs
    δ[t−1,c] exact for every child c (and σ'(pre[t−1,v]), exact earlier), so it is
    exact from tick D + bwd(v). Hence g of a parameter of v equals backprop's
    gradient from tick  T(v) = D + bwd(v)  on (and not at T(v) − 1); every
    parameter is exact from  max_v T(v)  (2L − 1 on a chain: fact A). Levelled,
    bwd(v) = D − level(v), so T(v) = 2D − level(v)."""
    model = graph(kind)
    run = model.level() if levelled else model
    into, out_of = paths(run)
    D = max(into[run.names[-1]])
    be = Backend(device)
    u = rng.normal(size=(2,) + model.input_shape)
    y = rng.normal(size=(2,) + model.output_shape)
    want = R.backprop(model, u, y, "mse")
    eng = GraphEngine(model, batch=2, levelled=levelled, device=device)
    first = {v: D + max(out_of[v]) for v in param_vertices(model)}
    for t in range(max(first.values()) + 3):
        eng.step(be.asarray(u), be.asarray(y))
        g = eng.gradients()
        assert list(g) == list(want)
        for v, t0 in first.items():
            keys = keys_of(model, v)
            err = rel({k: g[k] for k in keys}, {k: want[k] for k in keys})
            if t >= t0:
                assert err < 1e-10, (v, t, t0, err)
            elif t == t0 - 1 and any(np.any(want[k]) for k in keys):  # (a dead relu is 0 always)
                assert err > 1e-6, (v, t, t0, err)


# ------------------------------------------------------------------ fact B′
@pytest.mark.parametrize("kind", GRAPHS)
def test_fact_b_prime_levelled_frame_options_are_pipelined_backprop(rng, device, kind):
    """B′: levelled graph, `frame` derivative and pairing, d_y = D, frozen weights,
    white noise. Levelled, every path input → v has length level(v) and every
    path v → output D − level(v); x[t,out] is frame t − D, met by target
    y[t − D]; one tick per vertex back, δ[t,v] belongs to frame
    s = t − 2D + level(v), its σ' read from history at lag 2D − 2 level(v) − 1
    and the parents' x at lag 2D − 2 level(v) + 1. So g[t,v] = backprop of frame
    t − 2D + level(v) exactly, from tick 2D − level(v) (s = 0) on."""
    model = graph(kind)
    run = model.level()
    into, _ = paths(run)
    D = max(into[run.names[-1]])
    u, y = white_noise(rng, model, 3 * D + 3)
    eng = GraphEngine(model, batch=2, levelled=True, derivative="frame", pairing="frame",
                      supervision_delay=D, device=device)
    be = Backend(device)
    want = [R.backprop(model, u[s], y[s]) for s in range(len(u))]
    checked = 0
    for t in range(len(u)):
        eng.step(be.asarray(u[t]), be.asarray(y[t]))
        g = eng.gradients()
        for v in param_vertices(model):
            (level,) = into[v]
            s = t - 2 * D + level
            if s >= 0:
                keys = keys_of(model, v)
                err = rel({k: g[k] for k in keys}, {k: want[s][k] for k in keys})
                assert err < 1e-10, (v, t, s, err)
                checked += 1
    assert checked > 2 * len(param_vertices(model))


@pytest.mark.parametrize("kind", GRAPHS)
def test_fact_b_prime_is_not_exact_unlevelled(rng, kind):
    """Unlevelled, the same options read history at the longest paths' lags (the
    oldest frame in each δ: s = t − D − bwd(v)), but x and δ at a merge mix
    frames, so g is no single frame's gradient. The gap (relative error against
    frame s, median over ticks once filled, worst parameter vertex) is printed;
    it must be clearly non-zero."""
    model = graph(kind)
    into, out_of = paths(model)
    D = max(into[model.names[-1]])
    u, y = white_noise(rng, model, 4 * D + 8)
    eng = GraphEngine(model, batch=2, derivative="frame", pairing="frame", supervision_delay=D)
    want = [R.backprop(model, u[s], y[s]) for s in range(len(u))]
    errs = {v: [] for v in param_vertices(model)}
    for t in range(len(u)):
        eng.step(u[t], y[t])
        if t < 2 * D + 2:
            continue
        g = eng.gradients()
        for v in errs:
            s = t - D - max(out_of[v])
            keys = keys_of(model, v)
            errs[v].append(rel({k: g[k] for k in keys}, {k: want[s][k] for k in keys}))
    med = {v: float(np.median(e)) for v, e in errs.items()}
    print(f"\nB' gap unlevelled {kind}: median relative error per vertex "
          + ", ".join(f"{v}={e:.3g}" for v, e in med.items()))
    assert max(med.values()) > 1e-2


# ---------------------------------------------------------------- facts C′/D′
def linear_conv_layers():
    """conv2d → avg pool → conv2d → flatten → dense: D = 5, sync vertex c2."""
    return [{"name": "c1", "kind": "conv2d", "channels": 2, "kernel": 3, "padding": 1,
             "activation": "linear", "bias_scale": 0.3},
            {"name": "p", "kind": "pool", "size": 2, "mode": "avg"},
            {"name": "c2", "kind": "conv2d", "channels": 2, "kernel": 2, "activation": "linear",
             "bias_scale": 0.3},
            {"name": "f", "kind": "flatten"},
            {"name": "out", "kind": "dense", "units": 3, "activation": "linear"}]


def linear_graph(kind):
    if kind.startswith("residual"):
        return Model.from_layers(residual_layers("linear"), (4,), seed=5)
    if kind == "conv":
        return Model.from_layers(linear_conv_layers(), CONV_INPUT, seed=6)
    g = np.random.default_rng(int(kind[3:]))
    layers = [{**l, "activation": "linear"} for l in random_dag(g, n_layers=7)]
    return Model.from_layers(layers, (3,), seed=7)


@pytest.mark.parametrize("kind", ["residual", "residual-levelled", "conv", "dag1", "dag2"])
def test_facts_c_d_prime_the_sync_set_is_exact_for_linear_layers(rng, kind):
    """C′/D′: linear layers, `linear` loss (its output gradient −y does not depend
    on the output), d_y = 0, white noise. δ[t,v] = Σ over paths of length j from
    v to the output of a fixed linear map of y[t − j]; x[t,p] likewise of
    u[t − k], k over the paths into p. If every path into v's inputs has one
    length a, every path out of v one length b, and a = b (the sync set), then
    g[t,v] is backprop's gradient of frame t − b exactly from tick b on; else
    not. Tags say the same: pair tag = supervision tag (one frame) iff synced."""
    model = linear_graph(kind)
    run = model.level() if kind.endswith("levelled") else model
    into, out_of = paths(run)
    synced = [v for v in run.names[1:] if len(into[v]) == 1 and len(out_of[v]) == 1
              and min(into[v]) - 1 == min(out_of[v])]
    assert sync_set(run) == synced
    D = max(into[run.names[-1]])
    u, y = white_noise(rng, model, 3 * D + 4)
    eng = GraphEngine(model, batch=2, loss="linear", levelled=kind.endswith("levelled"))
    want = [R.backprop(model, u[s], y[s], "linear") for s in range(len(u))]
    params = param_vertices(model)
    for t in range(len(u)):
        eng.step(u[t], y[t])
        g = eng.gradients()
        for v in params:
            s = t - max(out_of[v])
            keys = keys_of(model, v)
            if v in synced and s >= 0:
                err = rel({k: g[k] for k in keys}, {k: want[s][k] for k in keys})
                assert err < 1e-10, (v, t, err)
            elif v not in synced and t >= 2 * D:
                err = rel({k: g[k] for k in keys}, {k: want[s][k] for k in keys})
                assert err > 1e-3, (v, t, err)
    tags = eng.tags()
    for v in run.vertices[1:]:
        i = v.index
        one = {tags["pair"][i], tags["pair_hi"][i], tags["supervision"][i],
               tags["supervision_hi"][i]}
        assert (len(one) == 1) == (v.name in synced), v.name
    if kind in ("residual", "conv"):
        assert set(synced) & set(params)


@pytest.mark.parametrize("L, want", [(1, ["1"]), (3, ["2"]), (4, []), (5, ["3"])])
def test_sync_set_of_a_chain_is_the_middle_layer(L, want):
    """Fact C: on a chain l_s = (L+1)/2 for odd L, none for even L."""
    net = Network.random([2] * (L + 1), seed=0)
    assert sync_set(net) == want


def max_pool_vjp(x, delta):
    """2×2 stride-2 max-pool VJP written out: each window's cotangent goes to its
    first maximum in row-major order."""
    out = np.zeros_like(x)
    b, c, h, w = x.shape
    for i in np.ndindex(b, c, h // 2, w // 2):
        n, ch, r, q = i
        win = x[n, ch, 2 * r:2 * r + 2, 2 * q:2 * q + 2].ravel()
        k = int(np.argmax(win))
        out[n, ch, 2 * r + k // 2, 2 * q + k % 2] = delta[i]
    return out


def test_max_pool_routes_by_the_inputs_that_made_its_value(rng):
    """`local`: the pool's VJP at tick t−1 (making δ[t, c]) routes by the window
    maxima of x[t−2, c], the input that produced the pool's value at t−1 — the
    pool's own state, as σ' is a layer's own state."""
    layers = [{"name": "c", "kind": "conv2d", "channels": 2, "kernel": 3, "padding": 1,
               "activation": "linear"},
              {"name": "p", "kind": "pool", "size": 2, "mode": "max"},
              {"name": "f", "kind": "flatten"},
              {"name": "out", "kind": "dense", "units": 2, "activation": "linear"}]
    model = Model.from_layers(layers, (1, 4, 4), seed=1)
    eng = GraphEngine(model, batch=2)
    xs, ds, told_apart = [], [], 0
    for t in range(9):
        eng.step(rng.normal(size=(2, 1, 4, 4)), rng.normal(size=(2, 2)))
        xs.append(host(eng.activity("c")))
        ds.append(host(eng.delta("p")))
        if t >= 2:
            want = max_pool_vjp(xs[t - 2], ds[t - 1])
            np.testing.assert_allclose(host(eng.delta("c")), want, rtol=1e-13, atol=1e-15)
            told_apart += not np.allclose(want, max_pool_vjp(xs[t - 1], ds[t - 1]))
    assert told_apart >= 4  # routing by x[t−1, c] would give other deltas


# ------------------------------------------------------------- Model.chain
def test_model_chain_has_the_weights_of_network_random():
    kw = dict(seed=5, scale=0.7, bias_scale=0.3)
    net = Network.random([7, 4, 6, 3], ["tanh", "relu", "linear"], **kw)
    p = Model.chain([7, 4, 6, 3], ["tanh", "relu", "linear"], **kw).parameters()
    assert list(p) == ["1.W", "1.b", "2.W", "2.b", "3.W", "3.b"]
    for l, (w, b) in enumerate(zip(net.weights, net.biases), 1):
        np.testing.assert_array_equal(p[f"{l}.W"], w)
        np.testing.assert_array_equal(p[f"{l}.b"], b)
    m = Model.chain([3, 5, 2], "tanh")
    assert [v.layer.activation for v in m.vertices[1:]] == ["tanh", "tanh"]
