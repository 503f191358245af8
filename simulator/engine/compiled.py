"""The graph engine's tick as one compiled loop: ``jax.jit`` + ``jax.lax.scan``.

At paper scale a numpy tick is interpreter overhead, so ``CompiledEngine``
scans GraphEngine's generic step, a pure function (``compiled_step``), over a
chunk of ticks. jax is an optional extra; float64 enables its 64-bit mode only
inside this module's calls. Tags never enter the loop (``TagClock``).
"""
import importlib.util

import numpy as np

from ..arguments import check_run
from ..backend import Backend
from .drive import repeated_frames, stream_chunks
from ..errors import DeviceError, NumericalError, SimulatorError
from ..options import set_rule_options
from . import compiled_step as step
from .compiled_step import chunk_loop, initial_state, paired, Plan
from .tick import FINITE_QUANTITIES, GraphEngine

# loaded on first use (``_load_jax``): importing jax costs about a second
jax = jnp = None

INSTALL_HINT = "pip install 'tickprop[jax]'"
# bytes of per-tick outputs one recorded scan may return
RECORD_BYTES = 256 * 2 ** 20
# run.backend = "auto" (bench_compiled.py, one core): the compiled loop wins
# 5–12× where batch × largest weight ≤ 2^14 and loses where a GEMM dominates
# (L 6 w 128 B 16: 0.70×) or on long chains (L 64 w 32 B 8: 0.67–0.92×).
SMALL_VERTEX_MACS = 2 ** 14
MAX_VERTICES = 32


def jax_available():
    """True when the optional jax extra is installed (looked up, not imported)."""
    return jax is not None or importlib.util.find_spec("jax") is not None


def _load_jax():
    """Import jax into this module's globals (once); False without the extra."""
    global jax, jnp
    if jax is None:
        try:
            import jax as _jax
            import jax.numpy as _jnp
        except ImportError:
            return False
        jax, jnp = _jax, _jnp
        step.bind(_jax, _jnp)
    return True


def prefers_compiled(model, batch):
    """Whether the compiled loop is the faster executor (the rule above; False without jax)."""
    largest = max((int(np.prod(s)) for k, s in model.param_shapes().items() if k.endswith(".W")),
                  default=0)
    return jax_available() and batch * largest <= SMALL_VERTEX_MACS and len(model) <= MAX_VERTICES


class TagClock:
    """Provenance tags of every tick: ``probe`` (a batch-1 GraphEngine with the
    run's model and options) steps zero frames through its warm-up, after
    which every tag is the tick minus a fixed lag (checked) or −1."""

    def __init__(self, probe):
        warm = 2 * probe.depth + probe.supervision_delay + probe.history + 2
        u = np.zeros((1,) + tuple(probe.model.input_shape))
        y = np.zeros((1,) + tuple(probe.model.output_shape))
        self._table = [probe.tags()]              # entry t + 1 holds tick t's
        with np.errstate(all="ignore"):
            for _ in range(2 * warm + 1):
                probe.step(u, y)
                self._table.append(probe.tags())
        self._last = len(self._table) - 2
        for t in range(warm, self._last):
            nxt = self._shift(self._table[t + 1], 1)
            if any(not np.array_equal(nxt[k], self._table[t + 2][k]) for k in nxt):
                raise SimulatorError(f"tags are not shift-invariant after tick {warm}")

    @staticmethod
    def _shift(tags, n):
        return {k: np.where(v >= 0, v + n, v) for k, v in tags.items()}

    def tags(self, t):
        """The GraphEngine.tags() dict at tick t (t = −1: before the first step)."""
        if t <= self._last:
            return {k: v.copy() for k, v in self._table[t + 1].items()}
        return self._shift(self._table[-1], t - self._last)


class CompiledEngine:
    """GraphEngine's tick rule compiled with jax: ``run_chunk(U, Y)`` scans a
    chunk of ticks in one call. GraphEngine's keywords (``device`` "cpu" or
    "jax") and surface, accessors returning host numpy arrays (``xp`` is numpy)."""

    def __init__(self, model, loss="mse", feedback="transpose", derivative="local",
                 pairing="local", supervision_delay=0, learning_rate=0.0, batch=1,
                 accumulate=1, weight_decay=0.0, feedback_seed=0, feedback_scale=1.0,
                 itd_epsilon=1e-6, device="cpu", dtype="float64", levelled=False):
        if not _load_jax():
            raise DeviceError(f"the compiled tick loop needs jax: {INSTALL_HINT}")
        if device not in ("cpu", "jax"):
            raise DeviceError(f"the compiled tick loop runs on the cpu; got device {device!r}")
        set_rule_options(self, loss, feedback, derivative, pairing, supervision_delay, batch,
                         accumulate, learning_rate, weight_decay, itd_epsilon)
        # a batch-1 GraphEngine (zero parameters: tags never depend on values)
        # checks the options, levels the model, draws the feedback, and is the
        # tag clock's probe
        zero = model.with_parameters({k: np.zeros_like(a) for k, a in model.parameters().items()})
        probe = GraphEngine(zero, loss=loss, feedback=feedback, derivative=derivative,
                            pairing=pairing, supervision_delay=supervision_delay,
                            feedback_seed=feedback_seed, feedback_scale=feedback_scale,
                            itd_epsilon=itd_epsilon, dtype=dtype, levelled=levelled)
        self.levelled = probe.levelled
        self.model = model.level() if self.levelled else model
        self.names, self.n, self.depth = probe.names, probe.n, probe.depth
        self.history = probe.history
        self.backend = Backend("cpu", dtype)
        self.xp = np
        self._x64 = dtype == "float64"
        self._plan = Plan(self, probe, self.model)
        with self._scope():
            self._state = initial_state(self._plan, probe, dtype)
            self._loops = {(r, m): chunk_loop(self._plan, r, masked=m)
                           for r in (False, True) for m in (False, True)}
        self._clock = TagClock(probe)
        self._u_shape = (self.batch,) + tuple(self.model.input_shape)
        self._y_shape = (self.batch,) + tuple(self.model.output_shape)
        self.tick = -1
        self._view = self._host = None

    def _scope(self):
        return jax.enable_x64(self._x64)

    # ----------------------------------------------------------------- ticks
    def run_chunk(self, U, Y, record=False, length=None):
        """Advance len(U) ticks in one scan: U (ticks, batch, *input shape), Y
        (ticks, batch, *output shape). With ``record``, returns the per-tick
        host outputs ``X``, ``P``, ``D`` (tuples over vertices), ``pairs`` and,
        with learning, ``params`` (and ``F``). NumericalError as GraphEngine's.
        ``length`` (>= len(U)): the masked scan of that many ticks, the extra
        ones leaving the state as it was (one compile instead of two)."""
        n = self._check_chunk(U, Y)
        start = self.tick + 1
        before, U, Y = self._state, self._frames(U), self._frames(Y)
        pad = max(0, (length or n) - n)
        live = np.arange(n + pad) < n
        if pad:
            U, Y = (np.concatenate([a, np.repeat(a[-1:], pad, axis=0)]) for a in (U, Y))
        with self._scope():
            self._state, out = self._loops[bool(record), length is not None](before, U, Y, live)
            host = jax.tree_util.tree_map(lambda a: np.asarray(a)[:n], out)
        self.tick += n
        bad = ~np.isfinite(host.pop("finite"))
        if bad.any():
            row = int(np.argmax(bad))
            q, i = self._first_slot(before, U[:row + 1], Y[:row + 1])
            raise NumericalError(start + row, i, FINITE_QUANTITIES[q], name=self.names[i])
        return host if record else None

    def _first_slot(self, state, U, Y):
        """(quantity, vertex) of the first non-finite slot at the last of these
        ticks, replayed from ``state`` (compiled on the first NaN/Inf only)."""
        if "exact" not in self._loops:
            self._loops["exact"] = chunk_loop(self._plan, False, exact=True)
        with self._scope():
            out = self._loops["exact"](state, U, Y, np.ones(len(U), dtype=bool))
            flags = np.asarray(out[1]["finite"][-1])
        return self._plan.slots[int(np.argmax(~np.isfinite(flags)))]

    def _frames(self, a):
        if isinstance(a, jax.Array):
            return a.astype(self.backend.dtype_name)
        return np.asarray(a, dtype=self.backend.host_dtype)

    def _check_chunk(self, U, Y):
        shape_u, shape_y = tuple(getattr(U, "shape", ())), tuple(getattr(Y, "shape", ()))
        n = shape_u[0] if shape_u else 0
        want_u, want_y = (n,) + self._u_shape, (n,) + self._y_shape
        if shape_u != want_u or shape_y != want_y or n < 1:
            raise SimulatorError(
                f"CompiledEngine.run_chunk: U and Y must have shapes (ticks, batch, *shape) = "
                f"{want_u} and {want_y}, got {shape_u} and {shape_y}")
        return n

    def step(self, u, y):
        """One tick (a chunk of one; prefer ``run_chunk`` — this is the slow path)."""
        self.run_chunk(np.asarray(u)[None], np.asarray(y)[None])

    def check_finite(self):
        """Nothing to do: every chunk is checked as it returns."""

    def run(self, stream, ticks, recorder=None, progress=None, chunk=None):
        """Step ``ticks`` times on frames from ``stream``, a chunk per scan; a
        recorder sees every tick of the stacked per-tick outputs."""
        check_run("CompiledEngine.run", stream, ticks, recorder, progress, chunk)
        last = scan = None
        for u_host, y_host, frame_ids in stream_chunks(stream, ticks, recorder, chunk):
            if scan is None:        # the first chunk is the longest
                first = len(u_host)
                scan = first if recorder is None else self._record_scan(first)
                # ragged: some scan would be shorter; pad it to one length
                pad = None if first % scan == 0 and ticks % first % scan == 0 else scan
            if recorder is None:
                self.run_chunk(u_host, y_host, length=pad)
            else:
                last = self._run_recorded(u_host, y_host, frame_ids, recorder, last, scan, pad)
                recorder.flush()
            if progress is not None:
                progress(len(u_host))

    def _record_scan(self, chunk):
        """Ticks per recorded scan: ``chunk``, or fewer within RECORD_BYTES."""
        per_tick = sum(3 * self.batch * int(np.prod(v.shape)) for v in self.model.vertices)
        if self.learning_rate:
            per_tick += 2 * sum(a.size for a in self._state["params"].values())
        return max(1, min(chunk, RECORD_BYTES // (per_tick * 8)))

    def _run_recorded(self, u_host, y_host, frame_ids, recorder, last, step, pad):
        dt = self.backend.host_dtype
        repeats = (repeated_frames(u_host, y_host, last) if not self.learning_rate
                   else np.zeros(len(u_host), dtype=bool))
        for lo in range(0, len(u_host), step):
            hi = min(lo + step, len(u_host))
            first = self.tick + 1
            out = self.run_chunk(u_host[lo:hi], y_host[lo:hi], record=True, length=pad)
            end = self.tick
            try:
                for k in range(hi - lo):
                    self._view, self.tick = jax.tree_util.tree_map(lambda a: a[k], out), first + k
                    recorder.record(self.tick, u_host[lo + k].astype(dt),
                                    y_host[lo + k].astype(dt), int(frame_ids[lo + k]),
                                    bool(repeats[lo + k]))
            finally:
                self._view, self.tick = None, end
        return u_host[-1], y_host[-1]

    # ------------------------------------------------------------- accessors
    def _now(self):
        """(X/P/D/pairs, params, F) of the replayed tick in ``run``, else the current one."""
        host, v = self._host_state(), self._view
        if v is None:
            v = {"X": host["X"], "P": host["P"], "D": host["D"],
                 "pairs": {i: paired(self._plan, host, self.model.vertices[i])
                           for i in self._plan.params}}
        return v, v.get("params", host["params"]), v.get("F", host.get("F"))

    def _host_state(self):
        """The current state as per-vertex host arrays, read once per chunk."""
        if self._host is None or self._host[0] is not self._state:
            with self._scope():
                host = jax.tree_util.tree_map(np.asarray, self._state)
            self._host = (self._state, self._plan.unpack(host))
        return self._host[1]

    # per-vertex host x, pre and δ of ``_now``, read by GraphEngine's accessors
    _X, _P, _D = (property(lambda self, k=k: list(self._now()[0][k])) for k in "XPD")
    _index, _copy = GraphEngine._index, GraphEngine._copy
    activity, preactivation, delta = (GraphEngine.activity, GraphEngine.preactivation,
                                      GraphEngine.delta)

    def state_views(self):
        """(x per vertex, δ per vertex (None for the input)) as host arrays."""
        return self._X, self._D

    def gradient_factors(self):
        """[(vertex, paired inputs, δ[t,v])] of every vertex with parameters."""
        v = self._now()[0]
        return [(self.model.vertices[i], list(v["pairs"][i]), v["D"][i])
                for i in self._plan.params]

    gradients = GraphEngine.gradients

    def parameters(self):
        """Host copies of the current parameters keyed like ``model.parameters()``."""
        return {k: np.array(a) for k, a in self._now()[1].items()}

    def feedback_weights(self):
        """{"<layer>.W": copy of B} for the feedback in use (W itself for `transpose`)."""
        _, params, F = self._now()
        out = {}
        for i in self._plan.weighted:
            key = f"{self.model.vertices[i].name}.W"
            w = params[key]
            out[key] = (np.array(w) if self.feedback == "transpose" else
                        np.sign(w) if self.feedback == "sign" else np.array(F[i]))
        return out

    def current_model(self):
        """The engine's model (levelled if asked) with the current parameters."""
        return self.model.with_parameters(self.parameters())

    def tags(self):
        """Provenance tags at the current tick, as GraphEngine.tags() (TagClock)."""
        return self._clock.tags(self.tick)
