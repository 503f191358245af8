"""The compiled tick loop (simulator.compiled) against the numpy Engine, its
independent oracle: same network, same frames, every SPEC §1 option — x, δ, g,
weights and tags after N ticks equal to rounding, per tick as well as at the
end, whatever the chunking. Skipped where the optional jax extra is absent."""
import numpy as np
import pytest

from graph_models import RESIDUAL
from simulator import Model, Network, SimulatorError
from simulator.engine import Engine
from simulator.probes import Recorder, RecordPlan
from simulator.streams import HeldStream, teacher_target

from simulator import compiled
from simulator.compiled import CompiledEngine

needs_jax = pytest.mark.skipif(not compiled.jax_available(), reason="the jax extra is not installed")

TICKS = 24
TOL = {"float64": 1e-12, "float32": 2e-5}


def net5(act="tanh", sizes=(3, 4, 5, 4, 4, 2), seed=0):
    L = len(sizes) - 1
    return Network.random(list(sizes), [act] * (L - 1) + ["linear"], seed=seed, bias_scale=0.3)


def frames(net, batch, ticks, seed=0, hold=1):
    """Input/target frames, each held ``hold`` ticks (targets ≥ 0 so xent reads them as mass)."""
    rng = np.random.default_rng(seed)
    n = -(-ticks // hold)
    u = np.repeat(rng.normal(size=(n, batch, net.sizes[0])), hold, axis=0)[:ticks]
    y = np.repeat(rng.uniform(size=(n, batch, net.sizes[-1])), hold, axis=0)[:ticks]
    return u, y


def assert_close(got, want, tol, what):
    got, want = np.asarray(got), np.asarray(want)
    scale = max(float(np.max(np.abs(want))), 1e-300)
    err = float(np.max(np.abs(got - want))) / scale
    assert err <= tol, f"{what}: relative difference {err:.3g} > {tol:g}"


def assert_engines_agree(c, e, tol, tick=""):
    L = e.depth
    for l in range(L + 1):
        assert_close(c.activity(l), e.activity(l), tol, f"x[{tick},{l}]")
    for l in range(1, L + 1):
        assert_close(c.delta(l), e.delta(l), tol, f"δ[{tick},{l}]")
        assert_close(c.preactivation(l), e.preactivation(l), tol, f"a[{tick},{l}]")
    for name in ("gradients", "bias_gradients", "weights", "biases", "feedback_matrices"):
        for i, (g, w) in enumerate(zip(getattr(c, name)(), getattr(e, name)())):
            assert_close(g, w, tol, f"{name}[{i}] at tick {tick}")
    te, tc = e.tags(), c.tags()
    for key in te:
        np.testing.assert_array_equal(tc[key], te[key], err_msg=f"tag {key} at tick {tick}")


# A covering set: every value of every option appears, each interaction that
# touches a different code path (learning × feedback, frame rings × delay,
# ITD × learning, masking of a logistic network's padding, L = 1 and 2).
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
    dict(learning_rate=0.05, accumulate=2, sizes=(3, 4, 2), batch=compiled.RANK_ONE_BATCH + 1),
    dict(dtype="float32"),
    dict(dtype="float32", feedback="learned", derivative="frame", pairing="frame",
         learning_rate=0.05),
]


@needs_jax
@pytest.mark.parametrize("case", CASES, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items())
                         or "defaults")
def test_compiled_loop_equals_numpy_engine_every_tick(case):
    kw = dict(case)
    net = net5(kw.pop("act", "tanh"), kw.pop("sizes", (3, 4, 5, 4, 4, 2)))
    kw.setdefault("batch", 2)
    tol = TOL[kw.get("dtype", "float64")]
    e, c = Engine(net, feedback_seed=3, **kw), CompiledEngine(net, feedback_seed=3, **kw)
    # Held frames (hold 2) exercise repeated inputs; ITD-Δy divides by Δa, which
    # turns rounding into ~1e-16/|Δa| and is run on fresh frames instead.
    u, y = frames(net, kw["batch"], TICKS, hold=1 if kw.get("derivative") == "itd-dy" else 2)
    out = c.run_chunk(u, y, record=True)
    assert c.tick == e.tick + TICKS
    for k in range(TICKS):
        e.step(u[k].astype(kw.get("dtype", "float64")), y[k].astype(kw.get("dtype", "float64")))
        X, D, P = e.stacked_state_views()
        assert_close(out["x"][k], X, tol, f"x at tick {k}")
        assert_close(out["delta"][k], D, tol, f"δ at tick {k}")
        if "pair" in out:
            assert_close(out["pair"][k], P, tol, f"paired x at tick {k}")
        if "WT" in out:
            assert_close(out["WT"][k], e._WT, tol, f"weights at tick {k}")
    assert e.tick == TICKS - 1
    assert_engines_agree(c, e, tol, TICKS - 1)
    if kw.get("learning_rate"):            # the test would pass if learning were ignored
        assert max(np.max(np.abs(w - w0)) for w, w0 in zip(e.weights(), net.weights)) > 1e-3


@needs_jax
def test_chunked_and_unchunked_runs_are_identical():
    net = net5()
    kw = dict(feedback="learned", derivative="itd-dy", pairing="frame", learning_rate=0.05,
              accumulate=3, supervision_delay=2, batch=2)
    u, y = frames(net, 2, TICKS, seed=4)
    whole, parts = CompiledEngine(net, **kw), CompiledEngine(net, **kw)
    whole.run_chunk(u, y)
    for k in range(0, TICKS, 8):
        parts.run_chunk(u[k:k + 8], y[k:k + 8])
    assert parts.tick == whole.tick == TICKS - 1
    assert_engines_agree(parts, whole, 0.0, TICKS - 1)


def test_tags_equal_the_engines_at_every_tick_past_the_warm_up():
    net = net5(sizes=(2, 3, 3, 3, 2))
    for opts in ({}, {"derivative": "frame", "pairing": "frame", "supervision_delay": 4},
                 {"derivative": "itd-dy", "supervision_delay": 1}, {"derivative": "none"}):
        clock = compiled.TagClock(net.depth, opts.get("derivative", "local"),
                                  opts.get("pairing", "local"), opts.get("supervision_delay", 0))
        e = Engine(net, **opts)
        assert all(np.array_equal(clock.tags(-1)[k], v) for k, v in e.tags().items())
        for t in range(120):                 # far beyond the clock's own table
            e.step(np.zeros((1, 2)), np.zeros((1, 2)))
            for k, v in e.tags().items():
                np.testing.assert_array_equal(clock.tags(t)[k], v, err_msg=f"{opts} {k} {t}")


@needs_jax
@pytest.mark.parametrize("learning_rate", [0.0, 0.05])
def test_recorded_run_gives_the_numpy_engines_trace(learning_rate):
    net = net5(sizes=(3, 4, 4, 2))
    traces = []
    for cls in (Engine, CompiledEngine):
        teacher = Network.random(net.sizes, net.activations, seed=1)
        stream = HeldStream(3, 2, np.random.default_rng(0), teacher_target(teacher, "mse"),
                            hold=3)
        engine = cls(net, batch=2, learning_rate=learning_rate, supervision_delay=3)
        plan = RecordPlan(20, net.depth, 4, 2, 8, states=True, layers=[0, 2], chunk=8)
        rec = Recorder(engine, plan)
        engine.run(stream, 20, rec)
        traces.append(rec.trace())
    want, got = traces
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
def test_non_finite_values_name_their_first_tick_layer_and_quantity():
    net = net5()
    u, y = frames(net, 1, 10)
    u[6, 0, 1] = np.inf
    c = CompiledEngine(net, batch=1)
    with pytest.raises(SimulatorError) as err:
        c.run_chunk(u, y)
    # x[6,0] = u[6] is the first non-finite value: tick 6, layer 0, the activity.
    assert (err.value.tick, err.value.layer, err.value.what) == (6, 0, "activity")


@needs_jax
@pytest.mark.parametrize("bad", ["shape", "model", "device"])
def test_misuse_is_one_simulator_error(bad):
    net = net5()
    if bad == "shape":
        with pytest.raises(SimulatorError, match=r"\(4, 1, 3\)"):
            CompiledEngine(net).run_chunk(np.zeros((4, 1, 2)), np.zeros((4, 1, 2)))
    elif bad == "device":
        with pytest.raises(SimulatorError, match="cpu"):
            CompiledEngine(net, device="cuda")
    else:
        with pytest.raises(SimulatorError, match="chain"):
            CompiledEngine(Model.from_layers(RESIDUAL, (4,), seed=3))


@needs_jax
def test_auto_choice_keeps_gemm_bound_sizes_on_numpy():
    # Multiply-adds per tick: paper 2.3k, L = 64 width 32 batch 8 524k,
    # L = 4 width 1024 batch 64 268M (measured no faster compiled).
    assert compiled.prefers_compiled([16] * 10, 1)
    assert compiled.prefers_compiled([32] * 65, 8)
    assert not compiled.prefers_compiled([1024] * 5, 64)


def test_missing_extra_is_one_error_naming_the_install(monkeypatch):
    monkeypatch.setattr(compiled, "_load_jax", lambda: False)
    with pytest.raises(SimulatorError, match=r"pip install 'tickprop\[jax\]'"):
        CompiledEngine(net5())


@needs_jax
def test_scene_backend_jax_gives_the_numpy_trace():
    """run.backend = 'jax' (what `--set run.backend=jax` selects) records the
    trace the numpy engine records, to rounding; 'auto' picks jax at paper scale."""
    from simulator.runner import simulate_scene
    numpy_trace = simulate_scene("fig3_fast", "run.ticks=60")
    jax_trace = simulate_scene("fig3_fast", "run.ticks=60", "run.backend='jax'")
    assert jax_trace.meta["backend"] == "jax" and numpy_trace.meta["backend"] == "numpy"
    for key in ("x_norm", "delta_norm", "mismatch_cos", "tag_pair"):
        np.testing.assert_allclose(jax_trace[key], numpy_trace[key], rtol=1e-9, atol=1e-7,
                                   equal_nan=True)
    assert simulate_scene("fig3_fast", "run.ticks=5", "run.backend='auto'").meta["backend"] == "jax"


def test_scene_backend_jax_refuses_graphs_in_one_line():
    from simulator.errors import SceneError
    from simulator.runner import simulate_scene
    with pytest.raises(SceneError, match="run.backend"):
        simulate_scene("conv_digits", "run.ticks=5", "run.backend='jax'")
