"""NaN/Inf is found exactly: the first tick, layer (vertex) and quantity,
whatever the chunk size and with or without recording, on chains (the
``Engine`` door of a Network) and graphs; finite values never trip it. Oracles: a twin
engine stepped tick by tick with every accessor looked at (chains), and a
non-finite value put where it must first show (graphs)."""
import numpy as np
import pytest

from graph_models import ATTENTION, CONV, RESIDUAL
from simulator import Model, Network
from simulator import scene as scenes
from simulator.backend import to_host
from simulator.engine import Engine
from simulator.errors import NumericalError
from simulator.engine.tick import GraphEngine
from simulator.probes import Recorder, RecordPlan
from simulator.runner import Prepared
from simulator.streams import ConstantStream, HeldStream

KINDS = ("activity", "preactivation", "delta")
NAN, INF = float("nan"), float("inf")


def diverging():
    net = Network.random([2, 3, 3, 2], ["linear", "linear", "linear"], seed=0, scale=30.0)
    stream = HeldStream(2, 1, np.random.default_rng(0), lambda u, ids: u * 3.0, hold=1)
    return net, dict(learning_rate=50.0), stream


def first_nonfinite(net, engine_kw, u, y):
    """(tick, layer, quantity) of the first non-finite accessor value, by stepping."""
    engine = Engine(net, **engine_kw)
    with np.errstate(all="ignore"):
        for t in range(len(u)):
            engine.step(u[t], y[t])
            for l in range(net.depth + 1):
                values = (engine.activity(l), engine.preactivation(l) if l else 0.0,
                          engine.delta(l) if l else 0.0)
                for kind, v in zip(KINDS, values):
                    if not np.isfinite(v).all():
                        return t, l, kind
    return None


@pytest.mark.parametrize("record", [None, 1, 3], ids=["bare", "every1", "every3"])
@pytest.mark.parametrize("chunk", [1, 7, 256])
def test_first_nonfinite_tick_layer_and_quantity_whatever_the_chunk(chunk, record):
    net, kw, stream = diverging()
    u, y, _ = diverging()[2].take(300)          # the same frames, from a twin stream
    want = first_nonfinite(net, kw, u, y)
    assert want is not None
    engine = Engine(net, **kw)
    plan = RecordPlan(300, 3, 3, 1, 8, states=record == 1, every=record or 1, chunk=chunk)
    rec = Recorder(engine, plan) if record else None
    with np.errstate(all="ignore"), pytest.raises(NumericalError) as err:
        engine.run(stream, 300, rec, chunk=None if record else chunk)
    assert (err.value.tick, err.value.layer, err.value.what) == want
    assert f"tick {want[0]}, layer {want[1]}" in str(err.value)


@pytest.mark.parametrize("chunk", [1, 7, 256])
def test_a_diverging_scene_reports_the_same_tick_for_every_chunk(chunk):
    name, resolved = scenes.load("fig3_fast")
    resolved = scenes.apply_overrides(resolved, ["rule.learning_rate=50.0", "network.scale=30.0",
                                                 "run.ticks=300", f"record.chunk={chunk}"], name)
    with pytest.raises(NumericalError) as err:
        Prepared(name, resolved).simulate()
    prepared = Prepared(name, resolved)
    u, y, _ = prepared.stream.take(300)
    assert (err.value.tick, err.value.layer, err.value.what) == first_nonfinite(
        prepared.network, {k: v for k, v in prepared.engine_args.items()}, u, y)


def test_large_finite_values_never_trip_it():
    # x ~ 1e200: finite, but every per-layer norm would overflow (1e400).
    net = Network.random([2, 3, 3, 2], "linear", seed=1)
    engine = Engine(net)
    stream = ConstantStream(2, 1, np.random.default_rng(1), lambda u, ids: 0.0 * u,
                            amplitude=1e200)
    rec = Recorder(engine, RecordPlan(40, 3, 3, 1, 8, chunk=16))
    with np.errstate(all="ignore"):
        engine.run(stream, 40, rec)
    assert np.isfinite(engine.activity(3)).all() and np.abs(engine.activity(3)).max() > 1e190


@pytest.mark.parametrize("dtype, big", [("float64", 1e307), ("float32", 3e37)])
def test_large_finite_values_near_the_dtype_limit_never_trip_the_chain_check(device, dtype, big):
    # identity weights and x ~ big: no value overflows, but any sum of a layer's would
    net = Network([np.eye(8) / 4] * 3, [np.zeros(8)] * 3, "linear")
    engine = Engine(net, batch=4, device=device, dtype=dtype)
    u = np.full((40, 4, 8), big)
    with np.errstate(all="ignore"):
        engine.run(Frames(u, -u), 40, chunk=16)
        engine.check_finite()
    x = np.asarray(to_host(engine.activity(3)))
    assert np.isfinite(x).all() and np.abs(x).min() > big / 100


@pytest.mark.parametrize("value", [NAN, INF, -INF])
def test_a_non_finite_target_in_the_last_neuron_is_the_output_delta(device, value):
    net = Network.random([3, 5, 4], "tanh", seed=2)
    engine = Engine(net, batch=2, device=device)
    g = np.random.default_rng(3)
    u, y = g.normal(size=(60, 2, 3)), g.normal(size=(60, 2, 4))
    y[37, 1, 3] = value
    with np.errstate(all="ignore"), pytest.raises(NumericalError) as err:
        engine.run(Frames(u, y), 60, chunk=16)
    assert (err.value.tick, err.value.layer, err.value.what) == (37, 2, "delta")


def test_an_infinite_preactivation_under_a_saturated_tanh_is_caught():
    # a = +inf gives x = tanh(a) = 1 and σ' = 0: only the preactivation shows it.
    net = Network([np.full((3, 2), 1e10), np.ones((2, 3))], None, ["tanh", "linear"])
    engine = Engine(net)
    with np.errstate(all="ignore"):
        for _ in range(4):
            engine.step(np.full((1, 2), 1e300), np.zeros((1, 2)))
    assert np.isfinite(engine.activity(1)).all() and np.isfinite(engine.delta(1)).all()
    with pytest.raises(NumericalError) as err:
        engine.check_finite()
    assert (err.value.tick, err.value.layer, err.value.what) == (1, 1, "preactivation")


# ------------------------------------------------------------------ graphs
# A NaN or ±Inf is put where it must first show: a parameter (or feedback
# weight) of one vertex is poked between ticks t0 − 1 and t0, or a frame of
# the stream carries it, so tick t0 is the first with a non-finite value, at
# a vertex and quantity known by construction (vertices in model order).
GRAPHS = {"conv": (CONV, (2, 8, 10)), "residual": (RESIDUAL, (4,)),
          "attention": (ATTENTION, (3, 5))}
# graph: [(case, where, poked vertex, key, value, reported vertex, quantity)]
# where: "param" (the vertex's parameter ``key``), "feedback" (its random B, so
# only the deltas its VJP sends to its parent see it), "u" / "y" (the frame).
# The attention block's linear layers have no bias: a poked W is seen by the
# forward wave only under random feedback (with transpose feedback the
# parent's delta, a lower vertex, sees it at the same tick).
INJECTIONS = {
    "conv": [("nan-activity", "param", "c2", "b", NAN, "c2", "activity"),
             ("inf-activity", "param", "o", "b", INF, "o", "activity"),
             ("inf-preactivation", "param", "c1", "b", INF, "c1", "preactivation"),
             ("nan-delta", "feedback", "h", "W", NAN, "f", "delta"),
             ("inf-input", "u", None, None, -INF, "input", "activity")],
    "residual": [("nan-activity", "param", "a2", "b", NAN, "a2", "activity"),
                 ("inf-activity", "param", "b1", "b", -INF, "b1", "activity"),
                 ("inf-preactivation", "param", "a1", "b", INF, "a1", "preactivation"),
                 ("inf-delta", "feedback", "b2", "W", -INF, "a2", "delta"),
                 ("inf-target", "y", None, None, INF, "o", "delta")],
    "attention": [("nan-activity", "param", "V", "W", NAN, "V", "activity"),
                  ("inf-activity", "param", "O", "W", INF, "O", "activity"),
                  ("nan-delta", "feedback", "O", "W", NAN, "M", "delta"),
                  ("nan-target", "y", None, None, NAN, "o", "delta")],
}
CASES = [(g, case) for g, cases in INJECTIONS.items() for case in cases]
TICKS, T0 = 300, 263        # past one flag ring (256 ticks); 263 is no multiple of 3 or 7


class Frames:
    """A stream of given host frames (u, y: ticks × batch × shape)."""

    def __init__(self, u, y):
        self.u, self.y, self.t = u, y, 0

    def take(self, n):
        s = slice(self.t, self.t + n)
        self.t += n
        return self.u[s], self.y[s], np.arange(s.start, s.start + len(self.u[s]))


def _poke(array, value):
    array[(0,) * array.ndim] = value


def injected(graph, case, device="cpu"):
    """(engine, stream, expected (tick, vertex index, quantity)): a graph
    engine whose ``step`` pokes the case's value in just before tick T0."""
    layers, shape = GRAPHS[graph]
    model = Model.from_layers(layers, shape, seed=4)
    _, where, vertex, key, value, shows, quantity = case
    random = where == "feedback" or graph == "attention"
    engine = GraphEngine(model, batch=2, device=device,
                         feedback="random" if random else "transpose")
    g = np.random.default_rng(5)
    u = g.normal(size=(TICKS, 2) + model.input_shape)
    y = g.normal(size=(TICKS, 2) + model.output_shape)
    if where in ("u", "y"):
        (u if where == "u" else y)[T0, 1, ...] = value
    real = engine.step

    def poking_step(u_t, y_t):
        if engine.tick + 1 == T0 and where == "param":
            _poke(engine._params[f"{vertex}.{key}"], value)
        elif engine.tick + 1 == T0 and where == "feedback":
            _poke(engine._F[model.vertex(vertex).index], value)
        real(u_t, y_t)

    engine.step = poking_step
    return engine, Frames(u, y), (T0, model.vertex(shows).index, quantity)


def graph_recorder(engine, chunk, every):
    sizes = [int(np.prod(v.shape)) for v in engine.model.vertices]
    plan = RecordPlan(TICKS, len(sizes) - 1, max(sizes), engine.batch, 8, states=every == 1,
                      every=every, chunk=chunk)
    return Recorder(engine, plan)


@pytest.mark.parametrize("record", [None, 1, 3], ids=["bare", "every1", "every3"])
@pytest.mark.parametrize("chunk", [1, 7, 256])
@pytest.mark.parametrize("graph, case", CASES, ids=[f"{g}-{c[0]}" for g, c in CASES])
def test_graph_nan_and_inf_are_located_exactly_whatever_the_chunk(graph, case, chunk, record):
    engine, stream, want = injected(graph, case)
    rec = None if record is None else graph_recorder(engine, chunk, record)
    with np.errstate(all="ignore"), pytest.raises(NumericalError) as err:
        engine.run(stream, TICKS, rec, chunk=chunk if rec is None else None)
    assert (err.value.tick, err.value.layer, err.value.what) == want
    name = engine.model.vertices[want[1]].name
    assert f"tick {T0}, vertex {want[1]} ({name!r})" in str(err.value)


@pytest.mark.parametrize("graph, case", [CASES[2], CASES[8], CASES[12]],
                         ids=["conv-preactivation", "residual-delta", "attention-delta"])
def test_graph_nan_location_under_every_array_namespace(device, graph, case):
    engine, stream, want = injected(graph, case, device)
    with np.errstate(all="ignore"), pytest.raises(NumericalError) as err:
        engine.run(stream, TICKS, chunk=7)
    assert (err.value.tick, err.value.layer, err.value.what) == want


@pytest.mark.parametrize("dtype, big", [("float64", 1e307), ("float32", 3e37)])
def test_large_finite_values_never_trip_the_graph_check(device, dtype, big):
    # every value ~big: finite, but any sum or norm of a vertex overflows
    layers = [{"name": "a", "kind": "dense", "units": 6, "activation": "linear"},
              {"name": "b", "kind": "dense", "units": 6, "activation": "linear", "from": "input"},
              {"name": "r", "kind": "add", "from": ["a", "b"], "activation": "linear"},
              {"name": "o", "kind": "dense", "units": 6, "activation": "linear"}]
    model = Model.from_layers(layers, (6,), seed=0)
    eye = np.eye(6) / 4
    model = model.with_parameters({k: (eye if k.endswith("W") else np.zeros(6))
                                   for k in model.parameters()})
    engine = GraphEngine(model, batch=3, device=device, dtype=dtype)
    u = np.full((40, 3, 6), big)
    with np.errstate(all="ignore"):
        engine.run(Frames(u, -u), 40, chunk=16)
        engine.check_finite()
    x = np.asarray(to_host(engine.activity("o")))
    assert np.isfinite(x).all() and np.abs(x).min() > big / 100


def test_chain_and_graph_engines_name_the_same_first_nonfinite_tick():
    net, kw, stream = diverging()
    u, y, _ = diverging()[2].take(300)
    want = first_nonfinite(net, kw, u, y)
    found = []
    for engine in (Engine(net, **kw), GraphEngine(net, **kw)):
        with np.errstate(all="ignore"), pytest.raises(NumericalError) as err:
            engine.run(Frames(u, y), 300, chunk=7)
        found.append((err.value.tick, err.value.layer, err.value.what))
    assert found[0] == found[1] == want
