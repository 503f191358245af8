"""Every executor of the one engine computes the same ticks (issue 20, merge step 2).

Executors: the generic step (``GraphEngine._step_generic``, SPEC §1 vertex by
vertex, fresh arrays) on numpy, on array-api-strict and, where a GPU is
present, on cupy; the fast numpy step (``simulator.engine.fast``: preallocated
buffers, grouped equal-width runs); the compiled jax loop
(``simulator.engine.compiled.CompiledEngine``, jit + lax.scan per chunk), where
jax is installed. Which one runs is decided by the namespace: GraphEngine
takes the fast step exactly when its namespace is numpy itself, so the
generic step on numpy is reached here through ``GenericNumpy`` (the fast
builder switched off; every method is GraphEngine's own).

Oracle: the generic step on numpy. Hypothesis draws points of the golden option
grid (tests/golden/record.py: 5 derivatives × 2 pairings × 4 feedbacks × the
learning modes × equal chain, unequal chain, residual levelled and unlevelled,
conv, attention, plus a run of equal-width layers over a source with a second
child) with a batch size, a supervision delay, a tick count, a chunk length,
float64, seeds of the weights, the feedback and the frames, and sometimes a NaN
or ±Inf in one input or target frame. Every executor runs the same frames
through its public ``run(stream, ticks, recorder, chunk)``; a recorder reads
every tick, and per tick x and δ of every vertex, the formed g and the
paired inputs of every vertex with parameters, the parameters, the feedback
matrices and every tag agree (values to 1e-12 of each array's largest
entry, tags exactly); a non-finite frame stops every executor at the same
first tick, vertex and quantity. Derandomized: CI meets the same points each
run.
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graph_models import ATTENTION, CONV, PATCHES, RESIDUAL, RUN_SKIP
from simulator.backend import cuda_available, to_host
from simulator.errors import NumericalError
from simulator.model import Model
from simulator.engine import compiled
from simulator.engine.tick import GraphEngine
from simulator.options import DERIVATIVE, FEEDBACK, PAIRING

TOL = 1e-12
# jax (XLA) and cupy (cuBLAS) sum in another order than numpy's OpenBLAS, and
# so does the fast numpy executor (its stacked runs keep Wᵀ contiguous, the
# stacked chain engine's layout the goldens replay, so BLAS takes the other
# kernel: seen as 3.7e-12 in δ of an unlevelled residual under ITD-y). ITD
# factors are differences of successive x (ITD-Δy: over those of pre, where
# |Δpre| ≥ ε): on held frames with learning a cancellation whose last bits
# that order changes, so on those executors they are compared to the tick's
# largest δ (g), and ITD-Δy (a quotient of two cancellations, rounding up to
# ~1e-16·|pre|/ε) to 1e-8, as tests/test_compiled_graph.py does.
# Learning amplifies that rounding tick by tick: jax runs stay short (≤ 18
# ticks); at 48 ticks an attention run whose softmax saturates differs by
# 7e-11 in δ of the scores (a cancellation to 1e-292 of terms near 1e3).
OTHER_ORDER = ("fast numpy", "compiled jax", "generic cupy")
TOL_ITD = {"itd-y": 1e-12, "itd-dy": 1e-8}

# name -> (seed -> Model, levelled): the golden grid's models (record.py), seeded.
MODELS = {
    "chain_equal": (lambda s: Model.chain([5, 5, 5, 5, 5], ["tanh", "logistic", "tanh", "linear"],
                                          seed=s, bias_scale=0.3), False),
    "chain_unequal": (lambda s: Model.chain([6, 9, 4, 7, 3], ["tanh", "relu", "tanh", "linear"],
                                            seed=s, bias_scale=0.3), False),
    "residual_levelled": (lambda s: Model.from_layers(RESIDUAL, (5,), seed=s), True),
    "residual_unlevelled": (lambda s: Model.from_layers(RESIDUAL, (5,), seed=s), False),
    "conv": (lambda s: Model.from_layers(CONV, (2, 8, 12), seed=s), False),
    "attention": (lambda s: Model.from_layers(ATTENTION, (3, 5), seed=s), False),
    "run_skip": (lambda s: Model.from_layers(RUN_SKIP, (4,), seed=s), False),
    "patches": (lambda s: Model.from_layers(PATCHES, (2, 4, 6), seed=s), False),
}
MODES = {"frozen": {}, "learning": {"learning_rate": 0.05},
         "accumulate2": {"learning_rate": 0.05, "accumulate": 2},
         "decay": {"learning_rate": 0.05, "weight_decay": 0.1},
         "accumulate2_decay": {"learning_rate": 0.05, "accumulate": 2, "weight_decay": 0.1}}


class GenericNumpy(GraphEngine):
    """GraphEngine with its fast builder off: the generic step on numpy."""

    def _build_fast(self):
        self._fast = False


class Frames:
    """A stream over fixed host frames: ``take(n)`` gives the next n (u, y, ids)."""

    def __init__(self, u, y):
        self.u, self.y, self.at = u, y, 0

    def take(self, n):
        a, self.at = self.at, self.at + n
        return self.u[a:self.at], self.y[a:self.at], np.arange(a, self.at)


class Snapshots:
    """A recorder that keeps host copies of everything compared, every tick."""

    class plan:                  # the chunk is always passed to run explicitly
        chunk = 1

    def __init__(self, engine):
        self.engine, self.ticks = engine, []

    def record(self, tick, u, y, frame_id, repeat):
        e = self.engine
        verts = e.model.vertices
        host = lambda a: np.array(to_host(a))                       # noqa: E731
        self.ticks.append({
            "tick": tick,
            "x": {v.name: host(e.activity(v.index)) for v in verts},
            "δ": {v.name: host(e.delta(v.index)) for v in verts[1:]},
            "g": {k: host(a) for k, a in e.gradients().items()},
            "paired": {f"{v.name}[{k}]": host(x) for v, xs, _ in e.gradient_factors()
                       for k, x in enumerate(xs)},
            "param": {k: host(a) for k, a in e.parameters().items()},
            "B": {k: host(a) for k, a in e.feedback_weights().items()},
            "tags": e.tags()})

    def flush(self):
        pass


def executors():
    """name -> engine class and device, every executor this machine has."""
    out = {"generic numpy": (GenericNumpy, "cpu"), "fast numpy": (GraphEngine, "cpu"),
           "generic array-api-strict": (GraphEngine, "strict")}
    if cuda_available():
        out["generic cupy"] = (GraphEngine, "cuda")
    if compiled.jax_available():
        out["compiled jax"] = (compiled.CompiledEngine, "cpu")
    return out


def rotated(draw, values, shift):
    """One of ``values``, the drawn index shifted by ``shift`` (so points drawn
    alike for different models still meet different options)."""
    values = list(values)
    return values[(draw(st.integers(0, len(values) - 1)) + shift) % len(values)]


@st.composite
def points(draw, model, whole_chunks=False):
    """A point of the grid on ``model``. Every choice is rotated by the model's
    place: the tests run once per model with the same derandomized draws, and
    these then meet different options. ``whole_chunks`` (the jax test): the
    ticks are 2 or 3 chunks, as jax compiles its loop once per chunk length
    (~1–3 CPU-s each), and brsf, which jax refuses, is left out."""
    shift = list(MODELS).index(model)
    if whole_chunks:
        chunk = rotated(draw, range(3, 7), shift)
        ticks = chunk * rotated(draw, (2, 3), shift)
    else:
        ticks = rotated(draw, range(1, 13), 5 * shift)
        chunk = rotated(draw, range(1, ticks + 1), shift)
    feedbacks = [f for f in FEEDBACK if not (whole_chunks and f == "brsf")]
    p = {"model": model, "derivative": rotated(draw, DERIVATIVE, shift),
         "pairing": rotated(draw, PAIRING, shift), "feedback": rotated(draw, feedbacks, shift),
         "mode": rotated(draw, MODES, shift), "batch": rotated(draw, (1, 2, 3), shift),
         "supervision_delay": rotated(draw, (0, 1, 2), shift), "ticks": ticks,
         "chunk": chunk, "hold": rotated(draw, (1, 2, 3), shift),
         "model_seed": draw(st.integers(0, 2 ** 16)) + shift,
         "feedback_seed": draw(st.integers(0, 2 ** 16)) + shift,
         "frame_seed": draw(st.integers(0, 2 ** 16)) + shift, "bad": None}
    if rotated(draw, (False, False, True), shift):         # a third of the points
        p["bad"] = (rotated(draw, range(ticks), 3 * shift), rotated(draw, "uy", shift),
                    rotated(draw, (np.nan, np.inf, -np.inf), shift),
                    draw(st.integers(0, 2 ** 16)))
    return p


def frames(model, p):
    """(u, y) host frames: a new normal frame every ``hold`` ticks; with
    ``bad``, one entry of one frame replaced by NaN or ±Inf."""
    g = np.random.default_rng(p["frame_seed"])
    n, B = -(-p["ticks"] // p["hold"]), p["batch"]
    u = g.normal(0.0, 1.0, (n, B) + tuple(model.input_shape))
    y = g.normal(0.0, 0.5, (n, B) + tuple(model.output_shape))
    u = np.repeat(u, p["hold"], axis=0)[:p["ticks"]]
    y = np.repeat(y, p["hold"], axis=0)[:p["ticks"]]
    if p["bad"] is not None:
        tick, which, value, at = p["bad"]
        frame = (u if which == "u" else y)[tick]
        frame.flat[at % frame.size] = value
    return u, y


def run(executor, p):
    """The snapshots of every tick one executor recorded and the NumericalError
    it stopped with (None if it ran through)."""
    cls, device = executor
    factory, levelled = MODELS[p["model"]]
    model = factory(p["model_seed"])
    engine = cls(model, derivative=p["derivative"], pairing=p["pairing"],
                 feedback=p["feedback"], batch=p["batch"],
                 supervision_delay=p["supervision_delay"], feedback_seed=p["feedback_seed"],
                 levelled=levelled, device=device, dtype="float64", **MODES[p["mode"]])
    recorder = Snapshots(engine)
    error = None
    with np.errstate(all="ignore"):
        try:
            engine.run(Frames(*frames(model, p)), p["ticks"], recorder, chunk=p["chunk"])
        except NumericalError as exc:
            error = (exc.tick, exc.layer, exc.what)
    return recorder.ticks, error


def assert_close(got, want, tol, what, scale=None):
    """Non-finite entries equal (a diverging run's g and parameters overflow
    before its x, pre or δ, which the NaN check reads); elsewhere
    max |got − want| ≤ tol · scale (default: the largest finite |want|)."""
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    finite = np.isfinite(want)
    assert np.array_equal(np.isfinite(got), finite), f"{what}: non-finite entries differ"
    assert np.array_equal(got[~finite], want[~finite], equal_nan=True), f"{what}: ±inf differ"
    if not finite.any():
        return
    got, want = got[finite], want[finite]
    if scale is None:
        scale = float(np.max(np.abs(want)))
    err = float(np.max(np.abs(got - want))) / max(scale, 1e-300)
    assert err <= tol, f"{what}: relative difference {err:.3g} > {tol:g}"


def compare(name, got, want, p, last):
    """Every tick both recorded before ``last`` (the first non-finite tick)."""
    itd = name in OTHER_ORDER and p["derivative"] in TOL_ITD
    tol = TOL_ITD[p["derivative"]] if itd else TOL
    for a, b in zip(got, want):
        t = b["tick"]
        assert a["tick"] == t
        if t >= last:
            break
        for key in ("x", "δ", "g", "paired", "param", "B"):
            assert sorted(a[key]) == sorted(b[key]), f"{name}: tick {t} {key} keys"
            scale = None
            if itd and key in ("δ", "g"):
                scale = max((float(np.max(np.abs(w), initial=0.0, where=np.isfinite(w)))
                             for w in b[key].values()), default=1.0)
            for k, w in b[key].items():
                assert_close(a[key][k], w, tol, f"{name}: tick {t} {key}[{k}]", scale)
        for k, w in b["tags"].items():
            np.testing.assert_array_equal(a["tags"][k], w, err_msg=f"{name}: tick {t} tag {k}")


def first_nonfinite(p, n):
    """Where a bad frame must first show (the tick rule): a bad input at its
    tick in the input's activity; a bad target d_y ticks later in the output's
    delta (vertex n − 1), unless that is past the run."""
    if p["bad"] is None:
        return None
    tick, which = p["bad"][:2]
    if which == "u":
        return tick, 0, "activity"
    tick += p["supervision_delay"]
    return (tick, n - 1, "delta") if tick < p["ticks"] else None


def check_executors_agree(p, names):
    """Run point ``p`` on the oracle and on the named executors and compare."""
    table = executors()
    want, want_error = run(table["generic numpy"], p)
    expected = first_nonfinite(p, len(want[0]["x"]))
    if want_error != expected:                  # only a run diverging by itself, earlier
        assert want_error is not None and (expected is None or want_error[0] < expected[0]), \
            f"first non-finite {want_error}, by the tick rule {expected}"
    last = p["ticks"] if want_error is None else want_error[0]
    assert len(want) >= last
    for name in names:
        got, error = run(table[name], p)
        assert error == want_error, f"{name}: first non-finite {error} != {want_error}"
        if error is None:
            assert len(got) == p["ticks"], f"{name}: recorded {len(got)} ticks"
        compare(name, got, want, p, last)


SETTINGS = dict(deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.mark.parametrize("model", list(MODELS))
@settings(max_examples=18, **SETTINGS)
@given(data=st.data())
def test_numpy_executors_agree_every_tick(model, data):
    """Fast numpy and the generic step on array-api-strict against the generic
    step on numpy."""
    check_executors_agree(data.draw(points(model), label="point"),
                          ["fast numpy", "generic array-api-strict"])


@pytest.mark.skipif(not cuda_available(), reason="no cupy GPU here")
@pytest.mark.parametrize("model", list(MODELS))
@settings(max_examples=6, **SETTINGS)
@given(data=st.data())
def test_generic_cuda_agrees_every_tick(model, data):
    """The generic step on cupy against the generic step on numpy (GPU tier)."""
    check_executors_agree(data.draw(points(model), label="point"), ["generic cupy"])


@pytest.mark.skipif(not compiled.jax_available(), reason="the jax extra is not installed")
@pytest.mark.parametrize("model", list(MODELS))
@settings(max_examples=2, **SETTINGS)
@given(data=st.data())
def test_compiled_jax_agrees_every_tick(model, data):
    """The compiled jax loop against the generic step on numpy, two points a
    model (each ~2 CPU-s, nearly all of it compiling)."""
    check_executors_agree(data.draw(points(model, whole_chunks=True), label="point"),
                          ["compiled jax"])


@pytest.mark.parametrize("model", list(MODELS))
@settings(max_examples=3, **SETTINGS)
@given(data=st.data())
def test_dfa_executors_agree_every_tick(model, data):
    """The grid's dfa rows (Nøkland's direct projections of the output's δ): fast
    numpy and array-api-strict against the generic step on numpy."""
    p = dict(data.draw(points(model), label="point"), feedback="dfa")
    check_executors_agree(p, ["fast numpy", "generic array-api-strict"])


@pytest.mark.skipif(not compiled.jax_available(), reason="the jax extra is not installed")
@pytest.mark.parametrize("model", list(MODELS))
@settings(max_examples=1, **SETTINGS)
@given(data=st.data())
def test_dfa_compiled_jax_agrees_every_tick(model, data):
    """The grid's dfa rows on the compiled jax loop."""
    p = dict(data.draw(points(model, whole_chunks=True), label="point"), feedback="dfa")
    check_executors_agree(p, ["compiled jax"])
