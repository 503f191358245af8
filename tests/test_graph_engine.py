"""The tick engine on graphs (simulator.model.tick.GraphEngine), SPEC "Graphs".

Oracles: today's stacked chain engine (the chain special case), instantaneous
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

from simulator import Engine, Model, Network, SimulatorError
from simulator.backend import Backend, to_host
from simulator.model import reference as R
from simulator.model.tick import GraphEngine, sync_set


def host(a):
    return np.asarray(to_host(a))


def rel(got, want):
    """‖got − want‖ / ‖want‖ over every parameter of a gradient dict (max)."""
    return max(np.linalg.norm(host(got[k]) - want[k]) / max(np.linalg.norm(want[k]), 1e-300)
               for k in want)


def paths(model):
    """(into, out_of): per vertex name, the set of lengths of every path from the
    input to it and from it to the output, by walking the edges."""
    into = {"input": {0}}
    for v in model.vertices[1:]:
        into[v.name] = {n + 1 for p in model.parents(v.name) for n in into[p]}
    out_of = {model.names[-1]: {0}}
    for v in reversed(model.vertices[:-1]):
        out_of[v.name] = {n + 1 for c in model.children(v.name) for n in out_of[c]}
    return into, out_of


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
    return dag(int(kind[3:]))


GRAPHS = ["residual", "conv"] + [f"dag{s}" for s in DAG_SEEDS]


def test_the_shipped_test_graphs_are_unlevelled():
    for kind in GRAPHS:
        assert not graph(kind).is_levelled(), kind


def white_noise(rng, model, n, batch=2):
    u = rng.normal(size=(n, batch) + model.input_shape)
    y = rng.normal(size=(n, batch) + model.output_shape)
    return u, y


# ------------------------------------------------------- chain special case
CHAIN_OPTIONS = [
    {},
    {"derivative": "frame", "pairing": "frame", "supervision_delay": 3},
    {"derivative": "none", "pairing": "frame", "supervision_delay": 1, "loss": "linear"},
    {"derivative": "itd-dy", "learning_rate": 0.05, "feedback": "learned",
     "weight_decay": 0.1, "accumulate": 2},
    {"derivative": "itd-y", "feedback": "sign", "learning_rate": 0.1, "loss": "xent"},
    {"feedback": "random", "learning_rate": 0.1, "feedback_seed": 4, "feedback_scale": 0.5},
    {"derivative": "frame", "pairing": "frame", "learning_rate": 0.05, "weight_decay": 0.01,
     "supervision_delay": 2},
]


@pytest.mark.parametrize("opts", CHAIN_OPTIONS, ids=lambda o: ",".join(
    f"{k}={v}" for k, v in o.items()) or "default")
def test_a_chain_runs_exactly_like_the_stacked_engine(rng, device, opts):
    """GraphEngine(Model.from_network(net)) = Engine(net) tick for tick: activities,
    deltas, gradients (weights and biases), parameters and tags. The σ' tags are
    compared only for `frame` and `none`: for `local` and `itd-*` today's Engine
    reads them one tick late (a view of the tag array it has just shifted);
    test_chain_sigma_tags_follow_the_tick_rule pins the right ones."""
    net = Network.random([4, 6, 5, 3], ["tanh", "relu", "logistic"], seed=7, bias_scale=0.4)
    kw = dict(batch=2, device=device, **opts)
    old, new = Engine(net, **kw), GraphEngine(Model.from_network(net), **kw)
    be = Backend(device)
    sigma_ok = opts.get("derivative", "local") in ("frame", "none")
    for t in range(14):
        u, y = rng.normal(size=(2, 4)), rng.normal(size=(2, 3))
        if opts.get("loss") == "xent":
            y = np.abs(y) / np.abs(y).sum(axis=1, keepdims=True)
        old.step(be.asarray(u), be.asarray(y))
        new.step(be.asarray(u), be.asarray(y))
        for l in range(4):
            np.testing.assert_allclose(host(new.activity(l)), host(old.activity(l)),
                                       rtol=1e-12, atol=1e-14)
            if l:
                np.testing.assert_allclose(host(new.delta(str(l))), host(old.delta(l)),
                                           rtol=1e-12, atol=1e-14)
        g = new.gradients()
        assert list(g) == ["1.W", "1.b", "2.W", "2.b", "3.W", "3.b"]
        for l, (w, b) in enumerate(zip(old.gradients(), old.bias_gradients())):
            np.testing.assert_allclose(host(g[f"{l + 1}.W"]), host(w), rtol=1e-12, atol=1e-14)
            np.testing.assert_allclose(host(g[f"{l + 1}.b"]), host(b), rtol=1e-12, atol=1e-14)
        p = new.parameters()
        for l, (w, b) in enumerate(zip(old.weights(), old.biases())):
            np.testing.assert_allclose(host(p[f"{l + 1}.W"]), host(w), rtol=1e-12, atol=1e-14)
            np.testing.assert_allclose(host(p[f"{l + 1}.b"]), host(b), rtol=1e-12, atol=1e-14)
        want, got = old.tags(), new.tags()
        for k in want:
            if k.startswith("sigma") and not sigma_ok:
                continue
            np.testing.assert_array_equal(got[k], want[k], err_msg=f"tick {t}, {k}")
            if not k.startswith("sigma"):  # a chain carries one frame: lo = hi
                np.testing.assert_array_equal(got[f"{k}_hi"], want[k], err_msg=f"tick {t}, {k}")
