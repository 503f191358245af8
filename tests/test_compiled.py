"""The compiled executor (simulator.engine.compiled) on chains against the
numpy executor (``Engine(network)``: preallocated buffers, equal-width runs
stacked; the compiled loop scans the generic step), and routed through scenes and recorders as the
numpy GraphEngine is. The graph grid is tests/test_compiled_graph.py.
Skipped where the optional jax extra is absent."""
import numpy as np
import pytest

from graph_models import RESIDUAL
from oracles import per_layer
from simulator import Model, Network
from simulator.engine import Engine
from simulator.probes import Recorder
from simulator.engine import compiled
from simulator.engine.compiled import CompiledEngine
from simulator.engine.tags import TagClock
from simulator.engine.tick import GraphEngine
from simulator.probes import RecordPlan
from simulator.streams import HeldStream

needs_jax = pytest.mark.skipif(not compiled.jax_available(), reason="the jax extra is not installed")

TICKS = 24
TOL = {"float64": 1e-12, "float32": 2e-5}


def net5(act="tanh", sizes=(3, 4, 5, 4, 4, 2), seed=0):
    L = len(sizes) - 1
    return Network.random(list(sizes), [act] * (L - 1) + ["linear"], seed=seed, bias_scale=0.3)


def frames(sizes, batch, ticks, seed=0, hold=1):
    """Input/target frames, each held ``hold`` ticks (targets ≥ 0 so xent reads them as mass)."""
    rng = np.random.default_rng(seed)
    n = -(-ticks // hold)
    u = np.repeat(rng.normal(size=(n, batch, sizes[0])), hold, axis=0)[:ticks]
    y = np.repeat(rng.uniform(size=(n, batch, sizes[-1])), hold, axis=0)[:ticks]
    return u, y


def assert_close(got, want, tol, what, scale=None):
    got, want = np.asarray(got), np.asarray(want)
    scale = max(float(np.max(np.abs(want))) if scale is None else scale, 1e-300)
    err = float(np.max(np.abs(got - want))) / scale
    assert err <= tol, f"{what}: relative difference {err:.3g} > {tol:g}"


# A covering set on chains: every value of every option, the interactions
# that touch different paths (learning × feedback, frame rings × delay, ITD ×
# learning, logistic's σ(0) ≠ 0, L = 1 and 2, a batch above 16, float32).
CASES = [
    dict(),
    dict(loss="xent", feedback="random", derivative="frame", pairing="frame",
         supervision_delay=5),
    dict(loss="linear", feedback="sign", derivative="none", supervision_delay=1,
         learning_rate=0.05),
    dict(feedback="learned", derivative="itd-dy", learning_rate=0.05, accumulate=3,
         weight_decay=0.1, supervision_delay=2),
    dict(derivative="itd-y", pairing="frame", learning_rate=0.05, act="logistic"),
    dict(loss="xent", feedback="learned", derivative="frame", pairing="frame",
         learning_rate=0.05, weight_decay=0.05, accumulate=2, supervision_delay=5),
    dict(pairing="frame", learning_rate=0.05, act="relu", sizes=(6, 3, 7, 2)),
    dict(learning_rate=0.1, sizes=(3, 2)),
    dict(derivative="frame", learning_rate=0.1, sizes=(3, 5, 2), batch=3),
    dict(learning_rate=0.05, accumulate=2, sizes=(3, 4, 2), batch=17),
    dict(dtype="float32"),
    dict(dtype="float32", feedback="learned", derivative="frame", pairing="frame",
         learning_rate=0.05),
]


@needs_jax
@pytest.mark.parametrize("case", CASES, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items())
                         or "defaults")
def test_compiled_chain_equals_the_numpy_engine_every_tick(case):
    kw = dict(case)
    net = net5(kw.pop("act", "tanh"), kw.pop("sizes", (3, 4, 5, 4, 4, 2)))
    kw.setdefault("batch", 2)
    dt = kw.get("dtype", "float64")
    tol = TOL[dt]
    e, c = Engine(net, feedback_seed=3, **kw), CompiledEngine(net, feedback_seed=3, **kw)
    # Held frames (hold 2) exercise repeated inputs; ITD-Δy divides by Δa, which
    # turns rounding into ~1e-16/|Δa| and is run on fresh frames instead.
    u, y = frames(net.sizes, kw["batch"], TICKS, hold=1 if kw.get("derivative") == "itd-dy" else 2)
    out = c.run_chunk(u, y, record=True)
    L = net.depth
    for k in range(TICKS):
        e.step(u[k].astype(dt), y[k].astype(dt))
        # δ against the tick's largest (as the padded stack is): an ITD factor
        # is a difference of successive x, a cancellation on held frames.
        d_scale = max(float(np.max(np.abs(e.delta(l)))) for l in range(1, L + 1))
        for l in range(L + 1):
            assert_close(out["X"][l][k], e.activity(l), tol, f"x[{k},{l}]")
            if l:
                assert_close(out["D"][l][k], e.delta(l), tol, f"δ[{k},{l}]", d_scale)
                if "params" in out:
                    assert_close(out["params"][f"{l}.W"][k], e.parameters()[f"{l}.W"], tol,
                                 f"W[{k},{l}]")
        np.testing.assert_array_equal(c._clock.state(k), e.tag_state(), err_msg=f"tags at {k}")
    g = c.gradients()
    for l in range(1, L + 1):
        assert_close(c.preactivation(l), e.preactivation(l), tol, f"a[{l}]")
        assert_close(g[f"{l}.W"], e.gradients()[f"{l}.W"], tol, f"g_W[{l}]")
        assert_close(g[f"{l}.b"], e.gradients()[f"{l}.b"], tol, f"g_b[{l}]")
        assert_close(c.parameters()[f"{l}.b"], e.parameters()[f"{l}.b"], tol, f"b[{l}]")
        assert_close(c.feedback_weights()[f"{l}.W"], e.feedback_weights()[f"{l}.W"], tol,
                     f"B[{l}]")
    if kw.get("learning_rate"):            # the test would pass if learning were ignored
        assert max(np.max(np.abs(w - w0)) for w, w0 in zip(per_layer(e.parameters()), net.weights)) > 1e-3


def test_tags_equal_the_graph_engines_far_past_the_clocks_table():
    model = Model.from_layers(RESIDUAL, (5,), seed=3)
    for opts in ({}, {"derivative": "frame", "pairing": "frame", "supervision_delay": 4},
                 {"derivative": "itd-dy", "supervision_delay": 1}, {"derivative": "none"}):
        clock = TagClock.of(GraphEngine(model, **opts))
        e = GraphEngine(model, **opts)
        np.testing.assert_array_equal(clock.state(-1), e.tag_state())
        for t in range(120):
            e.step(np.zeros((1, 5)), np.zeros((1,) + model.output_shape))
            np.testing.assert_array_equal(clock.state(t), e.tag_state(), err_msg=f"{opts} {t}")
        assert clock.last < 120        # the closed form was checked, not only the warm-up


@needs_jax
@pytest.mark.parametrize("learning_rate", [0.0, 0.05])
def test_recorded_run_gives_the_graph_engines_trace(learning_rate):
    model = Model.from_layers(RESIDUAL, (5,), seed=3)
    traces = []
    for cls in (GraphEngine, CompiledEngine):
        n_out = model.output_shape[0]
        stream = HeldStream(5, 2, np.random.default_rng(0), lambda u, ids: np.tanh(u[..., :n_out]),
                            hold=3)
        engine = cls(model, batch=2, learning_rate=learning_rate, supervision_delay=3)
        width = max(int(np.prod(v.shape)) for v in engine.model.vertices)
        plan = RecordPlan(20, engine.n - 1, width, 2, 8, states=True, chunk=8)
        rec = Recorder(engine, plan)
        engine.run(stream, 20, rec)
        traces.append(rec.trace())
    want, got = traces
    assert set(want.arrays) == set(got.arrays)
    for key in want.arrays:
        w, g = np.asarray(want[key]), np.asarray(got[key])
        if w.dtype.kind == "f":
            # ‖g − G‖ comes from gg − 2gG + GG: where g = G, rounding shows as its
            # square root (~1e-8), in either engine.
            atol = 1e-7 if key == "mismatch_rel" else 1e-12
            np.testing.assert_allclose(g, w, rtol=1e-10, atol=atol, err_msg=key)
        else:
            np.testing.assert_array_equal(g, w, err_msg=key)


@needs_jax
@pytest.mark.parametrize("record", [False, True])
def test_a_run_with_a_short_last_chunk_compiles_one_scan(record):
    """20 ticks in chunks of 8 are scans of 8, 8 and 4: the 4 is padded to 8
    (its extra ticks leave the state as it was), so one scan length is
    compiled (jit's cache holds one entry), and the run ends in the state of
    the numpy GraphEngine stepped 20 times (the recorded run's every tick is
    checked in test_recorded_run_gives_the_graph_engines_trace)."""
    model = Model.from_layers(RESIDUAL, (5,), seed=3)
    kw = dict(batch=2, learning_rate=0.05, supervision_delay=3, feedback="learned",
              accumulate=2, pairing="frame")
    engines = []
    for cls in (GraphEngine, CompiledEngine):
        n_out = model.output_shape[0]
        stream = HeldStream(5, 2, np.random.default_rng(0), lambda u, ids: np.tanh(u[..., :n_out]),
                            hold=3)
        engine = cls(model, **kw)
        width = max(int(np.prod(v.shape)) for v in engine.model.vertices)
        plan = RecordPlan(20, engine.n - 1, width, 2, 8, states=False, chunk=8)
        engine.run(stream, 20, Recorder(engine, plan) if record else None, chunk=8)
        engines.append(engine)
    want, got = engines
    assert {k: f._cache_size() for k, f in got._loops.items()} == {
        (record, True): 1, (not record, True): 0, (False, False): 0, (True, False): 0}
    assert got.tick == want.tick == 19
    for key, a in want.parameters().items():
        assert_close(got.parameters()[key], a, 1e-12, key)
    for v in want.model.vertices:
        assert_close(got.activity(v.index), want.activity(v.index), 1e-12, v.name)


@needs_jax
def test_auto_choice_follows_the_measured_rule():
    # bench_compiled.py: jax wins at paper scale and on the small graphs,
    # loses at L 6 w 128 B 16, L 4 w 1024 B 64 and L 64 w 32 B 8.
    def chain(w, L):
        return Network.random([w] * (L + 1), "tanh", seed=0)
    assert compiled.prefers_compiled(chain(16, 9), 1)
    assert compiled.prefers_compiled(Model.from_layers(RESIDUAL, (5,), seed=3), 1)
    assert not compiled.prefers_compiled(chain(32, 64), 8)
    assert not compiled.prefers_compiled(chain(128, 6), 16)
    assert not compiled.prefers_compiled(chain(1024, 4), 64)


@needs_jax
@pytest.mark.parametrize("scene, keys", [
    ("fig3_fast", ("x_norm", "delta_norm", "mismatch_cos", "tag_pair")),
    ("conv_digits", ("x_norm", "delta_norm", "grad_norm", "tag_pair", "tag_input"))])
def test_scene_backend_jax_gives_the_numpy_trace(scene, keys):
    """run.backend = 'jax' (what `--set run.backend=jax` selects) records the
    trace the numpy engine records, to rounding, on a chain and on a graph;
    'auto' picks jax at paper scale."""
    from simulator.runner import simulate_scene
    numpy_trace = simulate_scene(scene, "run.ticks=30")
    jax_trace = simulate_scene(scene, "run.ticks=30", "run.backend='jax'")
    assert jax_trace.meta["backend"] == "jax" and numpy_trace.meta["backend"] == "numpy"
    for key in keys:
        np.testing.assert_allclose(jax_trace[key], numpy_trace[key], rtol=1e-9, atol=1e-7,
                                   equal_nan=True, err_msg=key)
    if scene == "fig3_fast":
        assert simulate_scene(scene, "run.ticks=5", "run.backend='auto'").meta["backend"] == "jax"


def test_scene_backend_jax_refuses_a_gpu_device_in_one_line():
    from simulator import build
    from simulator.errors import SceneError
    from types import SimpleNamespace as spec
    scene = spec(run=spec(backend="jax", device="cuda"), stream=spec(batch=1))
    with pytest.raises(SceneError, match="run.backend"):
        build._tick_backend(scene, net5())
