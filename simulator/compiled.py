"""The chain tick engine as one compiled loop: ``jax.jit`` + ``jax.lax.scan``.

At paper scale a tick is ~9 kFLOP, so numpy's ``Engine.step`` is interpreter
overhead; jitting one step does not help, the loop over ticks has to move into
compiled code. ``CompiledEngine`` runs the stacked algorithm of SPEC §1 —
exactly ``simulator.engine.Engine``'s update order on the same zero-padded
(L+1, B, N) layout, every rule option — as a pure function
``tick(state, (u_t, y_t)) -> (state, per-tick outputs)`` scanned over a chunk
of ticks. The results equal numpy's to rounding (the matmuls are XLA's, not
OpenBLAS's).

jax is an optional extra (``pip install 'tickprop[jax]'``); without it,
constructing a CompiledEngine raises one DeviceError naming that command.
float64 runs enable jax's 64-bit mode only inside this module's calls
(``jax.enable_x64`` as a context), so it never leaks into other jax users.

Provenance tags are host bookkeeping and never enter the compiled loop: they
depend on the tick, the depth and the options only (not on any value), so
``TagClock`` steps a width-1 numpy Engine with the same depth and options
through its warm-up — the authoritative tag rule, not a copy of it — after
which every tag is the tick minus a fixed lag and ``tags(t)`` is closed form.
"""
import functools
import importlib.util
from typing import NamedTuple

import numpy as np

from .backend import Backend
from .drive import repeated_frames, stream_chunks
from .engine import FINITE_KINDS, Engine, _activation_groups
from .errors import DeviceError, NumericalError, SimulatorError
from .model import Model
from .network import ZERO_AT_ZERO, Network, activate
from .options import frame_lags, loss_grad, set_rule_options

# The optional extra, loaded on first use (``_load_jax``): importing jax
# costs about a second, which no run on the numpy backend should pay.
jax = jnp = None

INSTALL_HINT = "pip install 'tickprop[jax]'"
# Bytes of per-tick outputs one recorded scan may return; longer chunks are
# cut into scans of at most this much (large networks with learning record
# their weights every tick for the reference).
RECORD_BYTES = 256 * 2 ** 20
# Batches up to this size form the weight step as a sum of rank-one products.
RANK_ONE_BATCH = 16


# Multiply-adds per tick above which the tick is GEMM-bound: both backends
# then spend it in a matmul library and the compiled loop gains nothing
# (L = 4, width 1024, batch 64: 0.95–1.13× numpy, measured), so "auto" picks numpy.
GEMM_BOUND_MACS = 2 ** 24


def jax_available():
    """True when the optional jax extra is installed (looked up, not imported)."""
    return jax is not None or importlib.util.find_spec("jax") is not None


def _load_jax():
    """Import jax and jax.numpy into this module's globals (once); False
    without the extra."""
    global jax, jnp
    if jax is None:
        try:
            import jax as _jax
            import jax.numpy as _jnp
        except ImportError:
            return False
        jax, jnp = _jax, _jnp
    return True


def prefers_compiled(sizes, batch):
    """Whether the compiled loop is the faster backend for a chain of layer
    ``sizes`` at ``batch``: True while a tick's forward multiply-adds,
    batch·Σ n_l n_{l+1}, stay below GEMM_BOUND_MACS (interpreter-bound ticks,
    where it wins 1.1–6× in bench_compiled.py), False above (numpy's BLAS is
    as fast or faster) and False without jax."""
    macs = batch * sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    return jax_available() and macs < GEMM_BOUND_MACS


class _Config(NamedTuple):
    """Everything static about one compiled loop (the jit cache key)."""
    depth: int
    width: int
    batch: int
    sizes: tuple
    groups: tuple
    loss: str
    feedback: str
    derivative: str
    pairing: str
    delay: int
    history: int
    learning_rate: float
    weight_decay: float
    accumulate: int
    itd_epsilon: float
    masked: bool
    dtype: str
    record: bool
    record_weights: bool


# ------------------------------------------------------------------ tick rule
def _derivative(cfg, s, t):
    """D[t−1, l] for l = 1..L−1 (None = the factor 1), and the new ITD quotient."""
    L, kind = cfg.depth, cfg.derivative
    if kind == "none" or L < 2:
        return None, s.get("Q")
    if kind == "local":
        return s["S"][1:L], None
    if kind == "frame":
        lags = jnp.asarray(frame_lags(L)[0])
        idx = ((t - 1 - lags) % cfg.history) * (L + 1) + jnp.arange(1, L)
        return jnp.take(s["RS"], idx, axis=0), None
    dx = s["X"][1:L] - s["Xp"][1:L]
    if kind == "itd-y":
        return dx, None
    da = s["A"][1:L] - s["Ap"][1:L]
    finite = jnp.abs(da) >= cfg.itd_epsilon
    safe = jnp.where(finite, da, jnp.ones_like(da))
    q = jnp.where(finite, dx / safe, s["Q"])
    return q, q


def _backward_matrices(cfg, s):
    """F_l for l = 1..L−1, (L−1, n_{l+1}, n_l) padded, as one contiguous array."""
    L = cfg.depth
    if cfg.feedback in ("random", "learned"):
        return s["F"][1:L]
    w = jnp.swapaxes(s["WT"][1:L], -1, -2)
    return w if cfg.feedback == "transpose" else jnp.sign(w)


def _backward(cfg, s, d):
    """F_l δ[t, l+1] for l = 1..L−1, from the stacked deltas ``d`` (L+1, B, N).
    With frozen weights the feedback matrices are formed once per chunk,
    outside the loop (``FB``); with learning, the whole stack is multiplied
    (transpose/sign feedback contracting with Wᵀ's second axis) and layer 0's
    unused product dropped, rather than copying a slice of W every tick."""
    if "FB" in s:
        return d[2:] @ s["FB"]
    if cfg.feedback == "transpose":
        return jnp.einsum("lbj,lij->lbi", d[1:], s["WT"])[1:]
    if cfg.feedback == "sign":
        return jnp.einsum("lbj,lij->lbi", d[1:], jnp.sign(s["WT"]))[1:]
    return (d[1:] @ s["F"])[1:]


def _tick(cfg, s, uy):
    """One tick of SPEC §1 from state ``s`` (tick t−1) on input/target (u, y):
    the same operations, in the same order, as Engine.step."""
    u, y = uy
    L, B, N = cfg.depth, cfg.batch, cfg.width
    n0, nL = cfg.sizes[0], cfg.sizes[-1]
    dt = s["X"].dtype
    t = s["t"] + 1
    X, D = s["X"], s["D"]
    deriv, q = _derivative(cfg, s, t)
    a_up = X[:-1] @ s["WT"] + s["b"]                       # forward wave, all layers
    outs = [activate(jnp, name, a_up[lo - 1:hi - 1]) for lo, hi, name in cfg.groups]
    zero_layer = jnp.zeros((1, B, N), dt)
    An = jnp.concatenate([zero_layer, a_up])
    Xn = jnp.concatenate([jnp.pad(u, ((0, 0), (0, N - n0)))[None]] + [o[0] for o in outs])
    Sn = jnp.concatenate([zero_layer] + [o[1] for o in outs])
    if cfg.masked:
        mask = np.zeros((L + 1, 1, N))
        for l, n in enumerate(cfg.sizes):
            mask[l, 0, :n] = 1.0
        Xn = Xn * jnp.asarray(mask, dt)
    d = cfg.delay
    ring = s["T"].at[t % (d + 1)].set(y)
    target = ring[(t - d) % (d + 1)]
    dL = Sn[L, :, :nL] * loss_grad(jnp, cfg.loss, Xn[L, :, :nL], target)
    if d:
        dL = jnp.where(t >= d, dL, jnp.zeros_like(dL))
    parts = [zero_layer]
    if L > 1:
        back = _backward(cfg, s, D)                        # backward wave, all layers
        parts.append(back if deriv is None else deriv * back)
    parts.append(jnp.pad(dL, ((0, 0), (0, N - nL)))[None])
    Dn = jnp.concatenate(parts)
    new = dict(s, t=t, X=Xn, A=An, S=Sn, D=Dn, T=ring)
    if "Xp" in s:
        new["Xp"], new["Ap"] = X, s["A"]
    if q is not None:
        new["Q"] = q
    R = cfg.history
    if R:
        start = (t % R) * (L + 1)
        if "RX" in s:
            new["RX"] = jax.lax.dynamic_update_slice_in_dim(s["RX"], Xn, start, axis=0)
        if "RS" in s:
            new["RS"] = jax.lax.dynamic_update_slice_in_dim(s["RS"], Sn, start, axis=0)
    pair = _paired(cfg, new)
    if cfg.learning_rate:
        new = _learn(cfg, new, pair)
    out = {"finite": _finite_flags(cfg, (Xn, An, Sn, Dn))}
    if cfg.record:
        out["x"], out["delta"] = Xn, Dn
        if cfg.pairing == "frame":
            out["pair"] = pair
    if cfg.record_weights:
        out["WT"], out["b"] = new["WT"], new["b"]
    return new, out


def _finite_flags(cfg, arrays):
    """Per quantity and layer, True iff all finite (4, L+1). As Engine does:
    v − v is 0 for finite v and NaN for NaN/±Inf (never an overflow), and one
    matrix-vector product with ones sums it — far cheaper in XLA than a
    reduction of isfinite."""
    L, n = cfg.depth, cfg.batch * cfg.width
    ones = jnp.ones((n,), arrays[0].dtype)
    sums = jnp.stack([jnp.reshape(a - a, (L + 1, n)) @ ones for a in arrays])
    return sums == 0


def _paired(cfg, s):
    """x[., l−1] paired with δ[t, l] in g, l = 1..L, stacked (L, B, N)."""
    L = cfg.depth
    if cfg.pairing == "local":
        return s["X"][:-1]
    lags = jnp.asarray(frame_lags(L)[1])
    idx = ((s["t"] - lags) % cfg.history) * (L + 1) + jnp.arange(0, L)
    return jnp.take(s["RX"], idx, axis=0)


def _learn(cfg, s, pair):
    scaled = cfg.learning_rate * s["D"][1:]
    if cfg.batch <= RANK_ONE_BATCH:
        # A sum of B rank-one products fuses into one pass over W; XLA's
        # batched dot with an inner dimension of B ≤ 16 is 1.4–2× slower.
        step_w = pair[:, 0, :, None] * scaled[:, 0, None, :]
        for k in range(1, cfg.batch):
            step_w = step_w + pair[:, k, :, None] * scaled[:, k, None, :]
    else:
        step_w = jnp.einsum("lbi,lbj->lij", pair, scaled)
    step_b = jnp.sum(scaled, axis=1, keepdims=True)
    if cfg.accumulate == 1:
        return _apply_update(cfg, s, step_w, step_b)
    s = dict(s, AW=s["AW"] + step_w, AB=s["AB"] + step_b)

    def apply(s):
        s = _apply_update(cfg, s, s["AW"], s["AB"])
        return dict(s, AW=jnp.zeros_like(s["AW"]), AB=jnp.zeros_like(s["AB"]))

    return jax.lax.cond((s["t"] + 1) % cfg.accumulate == 0, apply, lambda s: s, s)


def _apply_update(cfg, s, step_w, step_b):
    """W ← (1 − ηλ) W − η g given step = η g (Engine._apply_update)."""
    s = dict(s)
    if cfg.weight_decay:
        keep = 1.0 - cfg.learning_rate * cfg.weight_decay
        s["WT"] = s["WT"] * keep
        if cfg.feedback == "learned":
            s["F"] = s["F"] * keep
    s["WT"] = s["WT"] - step_w
    s["b"] = s["b"] - step_b
    if cfg.feedback == "learned":
        s["F"] = s["F"] - jnp.swapaxes(step_w, -1, -2)
    return s


PARAMETERS = ("WT", "b", "F", "FB")


@functools.lru_cache(maxsize=64)
def _compiled(cfg):
    """The jitted chunk loop for one configuration (shared by equal engines)."""

    def run(state, U, Y):
        if cfg.learning_rate:
            return jax.lax.scan(functools.partial(_tick, cfg), state, (U, Y))
        # Frozen weights stay out of the loop's carry: a carried array that
        # never changes is still copied every iteration (a third of a deep tick).
        fixed = {k: v for k, v in state.items() if k in PARAMETERS}
        if cfg.depth > 1:
            fixed["FB"] = _backward_matrices(cfg, fixed)

        def tick(s, uy):
            new, out = _tick(cfg, {**s, **fixed}, uy)
            return {k: v for k, v in new.items() if k not in PARAMETERS}, out

        moving = {k: v for k, v in state.items() if k not in PARAMETERS}
        final, out = jax.lax.scan(tick, moving, (U, Y))
        return {**final, **{k: v for k, v in fixed.items() if k != "FB"}}, out

    return jax.jit(run, donate_argnums=0)


# ------------------------------------------------------------------ host tags
class TagClock:
    """Provenance tags of every tick, from the engine's own tag rule.

    Tags depend on the tick, the depth, d_y and the derivative/pairing options
    only. A width-1 numpy Engine with those options steps through the warm-up
    (every tag written at least once); after it each tag is the tick minus a
    fixed lag (or stays −1), which is checked here, so ``tags(t)`` for any
    later t is that shift — no per-tick host work in the compiled loop."""

    def __init__(self, depth, derivative, pairing, supervision_delay):
        L, d = depth, supervision_delay
        net = Network([np.ones((1, 1))] * L, activations="tanh")
        probe = Engine(net, derivative=derivative, pairing=pairing, supervision_delay=d)
        self._before = probe.tags()
        warm = 2 * L + d + probe.history + 2
        zero = np.zeros((1, 1))
        self._table = []
        for _ in range(2 * warm + 1):
            probe.step(zero, zero)
            self._table.append(probe.tags())
        self._last = len(self._table) - 1
        for t in range(warm, self._last):
            if any(not np.array_equal(self._shift(self._table[t], 1)[k], self._table[t + 1][k])
                   for k in self._before):
                raise RuntimeError(f"tags are not shift-invariant after tick {warm}")

    @staticmethod
    def _shift(tags, n):
        return {k: np.where(v >= 0, v + n, v) for k, v in tags.items()}

    def tags(self, t):
        """The Engine.tags() dict at tick t (t = −1: before the first step)."""
        if t < 0:
            return {k: v.copy() for k, v in self._before.items()}
        if t <= self._last:
            return {k: v.copy() for k, v in self._table[t].items()}
        return self._shift(self._table[self._last], t - self._last)


# ------------------------------------------------------------------- engine
class CompiledEngine:
    """Engine's tick rule (SPEC §1) compiled with jax: ``run_chunk(U, Y)`` scans
    a whole chunk of ticks in one call.

    Same keywords as ``simulator.engine.Engine`` (``device`` must be "cpu" or
    "jax"; the loop runs on jax's default CPU device) and the same surface:
    ``step``, ``run``, ``check_finite``, the accessors (``activity``,
    ``delta``, ``gradients``, ``weights``, ``tags``, …) and ``stacked_state_views``
    for a Recorder. Accessors return host numpy arrays; ``xp`` and ``backend``
    are numpy's, so a Recorder keeps its buffers on the host.
    """

    def __init__(self, network, loss="mse", feedback="transpose", derivative="local",
                 pairing="local", supervision_delay=0, learning_rate=0.0, batch=1,
                 accumulate=1, weight_decay=0.0, feedback_seed=0, feedback_scale=1.0,
                 itd_epsilon=1e-6, device="cpu", dtype="float64"):
        if not _load_jax():
            raise DeviceError(f"the compiled tick loop needs jax: {INSTALL_HINT}")
        if isinstance(network, Model):
            raise SimulatorError("the compiled tick loop runs chain networks (a Network); "
                                 "run a graph Model with the numpy Engine")
        if device not in ("cpu", "jax"):
            raise DeviceError(f"the compiled tick loop runs on the cpu; got device {device!r}")
        set_rule_options(self, loss, feedback, derivative, pairing, supervision_delay, batch,
                         accumulate, learning_rate, weight_decay, itd_epsilon)
        self.backend = Backend("cpu", dtype)
        self.xp = np
        self.activations = list(network.activations)
        self.sizes = network.sizes
        self.depth = network.depth
        self.width = max(self.sizes)
        self._x64 = dtype == "float64"
        # The numpy engine builds the padded parameters, feedback and history
        # sizes; its arrays seed the compiled state (one source of truth).
        seed = Engine(network, loss=loss, feedback=feedback, derivative=derivative,
                      pairing=pairing, supervision_delay=supervision_delay, batch=batch,
                      feedback_seed=feedback_seed, feedback_scale=feedback_scale,
                      dtype=dtype)
        self.history = seed.history
        self._clock = TagClock(self.depth, derivative, pairing, supervision_delay)
        base = dict(
            depth=self.depth, width=self.width, batch=self.batch, sizes=tuple(self.sizes),
            groups=tuple(_activation_groups(self.activations)), loss=self.loss,
            feedback=self.feedback, derivative=self.derivative, pairing=self.pairing,
            delay=self.supervision_delay, history=self.history,
            learning_rate=self.learning_rate, weight_decay=self.weight_decay,
            accumulate=self.accumulate if self.learning_rate else 1,
            itd_epsilon=self.itd_epsilon,
            masked=not all(ZERO_AT_ZERO[a] for a in self.activations), dtype=dtype)
        self._cfg = {(r, w): _Config(**base, record=r, record_weights=w)
                     for r in (False, True) for w in (False, True)}
        with self._scope():
            self._state = self._initial_state(seed)
        self.tick = -1
        self._view = None

    def _scope(self):
        return jax.enable_x64(self._x64)

    def _initial_state(self, seed):
        L, B, N = self.depth, self.batch, self.width
        dt = self.backend.dtype_name

        def zeros(*shape):
            return jnp.zeros(shape, dt)

        s = {"t": jnp.asarray(-1), "X": zeros(L + 1, B, N), "A": zeros(L + 1, B, N),
             "S": zeros(L + 1, B, N), "D": zeros(L + 1, B, N),
             "T": zeros(self.supervision_delay + 1, B, self.sizes[-1]),
             "WT": jnp.asarray(seed._WT, dt), "b": jnp.asarray(seed._b, dt)}
        if self.feedback in ("random", "learned"):
            s["F"] = jnp.asarray(seed._F, dt)
        if self.derivative in ("itd-y", "itd-dy"):
            s["Xp"], s["Ap"] = zeros(L + 1, B, N), zeros(L + 1, B, N)
        if self.derivative == "itd-dy" and L > 1:
            s["Q"] = zeros(L - 1, B, N)
        R = self.history
        if self.pairing == "frame":
            s["RX"] = zeros(R * (L + 1), B, N)
        if self.derivative == "frame":
            s["RS"] = zeros(R * (L + 1), B, N)
        if self.learning_rate and self.accumulate > 1:
            s["AW"], s["AB"] = zeros(L, N, N), zeros(L, 1, N)
        return s

    # ----------------------------------------------------------------- ticks
    def run_chunk(self, U, Y, record=False, record_weights=None):
        """Advance len(U) ticks in one compiled scan: U (ticks, batch, n_0) input
        frames, Y (ticks, batch, n_L) targets (host or jax arrays). Without
        ``record`` returns None; with it, a dict of host arrays stacked over the
        chunk's ticks — ``x`` and ``delta`` (ticks, L+1, B, N), ``pair``
        (ticks, L, B, N, pairing `frame` only) and, where ``record_weights``
        (default: learning on), ``WT`` (ticks, L, N, N) and ``b`` — one host
        transfer per chunk. A NaN/Inf raises NumericalError naming its first
        tick, layer and quantity, as Engine.check_finite does."""
        n = self._check_chunk(U, Y)
        if record_weights is None:
            record_weights = bool(record and self.learning_rate)
        cfg = self._cfg[(bool(record), bool(record_weights))]
        start = self.tick + 1
        with self._scope():
            # Host frames go in as numpy arrays of the run's dtype: jit moves
            # them itself, cheaper than a separate jnp.asarray per chunk.
            self._state, out = _compiled(cfg)(self._state, self._frames(U), self._frames(Y))
            host = {k: np.asarray(v) for k, v in out.items()}
        self.tick += n
        finite = host.pop("finite")
        if not finite.all():
            i, layer, kind = np.argwhere(~finite.transpose(0, 2, 1))[0]
            raise NumericalError(start + i, layer, FINITE_KINDS[kind])
        return host if record else None

    def _frames(self, a):
        if isinstance(a, jax.Array):
            return a.astype(self.backend.dtype_name)
        return np.asarray(a, dtype=self.backend.host_dtype)

    def _check_chunk(self, U, Y):
        shape_u, shape_y = tuple(getattr(U, "shape", ())), tuple(getattr(Y, "shape", ()))
        n = shape_u[0] if shape_u else 0
        want_u, want_y = (n, self.batch, self.sizes[0]), (n, self.batch, self.sizes[-1])
        if shape_u != want_u or shape_y != want_y or n < 1:
            raise SimulatorError(
                f"CompiledEngine.run_chunk: U and Y must have shapes (ticks, batch, width) = "
                f"{want_u} and {want_y}, got {shape_u} and {shape_y}")
        return n

    def step(self, u, y):
        """One tick (a chunk of one; prefer ``run_chunk`` — this is the slow path)."""
        for what, a, w in (("input frame u", u, self.sizes[0]),
                           ("target frame y", y, self.sizes[-1])):
            shape = tuple(getattr(a, "shape", ()))
            if shape != (self.batch, w):
                raise SimulatorError(f"CompiledEngine.step: {what} must have shape (batch, "
                                     f"width) = {(self.batch, w)}, got {shape}")
        self.run_chunk(np.asarray(u)[None], np.asarray(y)[None])

    def check_finite(self):
        """Nothing to do: every chunk is checked as it returns."""

    def run(self, stream, ticks, recorder=None, progress=None, chunk=None):
        """Step ``ticks`` times on frames from ``stream``, ``chunk`` ticks per
        compiled scan (default: the recorder's plan.chunk, else 256). With a
        recorder each chunk comes back as stacked per-tick states and the
        recorder sees every tick from them (as simulator.drive.run_stream feeds
        it from Engine), with the tags of that tick and, with learning on, the
        weights of that tick."""
        frozen = not self.learning_rate
        last = None
        for u_host, y_host, frame_ids in stream_chunks(stream, ticks, recorder, chunk):
            n = len(u_host)
            if recorder is None:
                self.run_chunk(u_host, y_host)
            else:
                last = self._run_recorded(u_host, y_host, frame_ids, recorder, frozen, last)
                recorder.flush()
            if progress is not None:
                progress(n)

    def _run_recorded(self, u_host, y_host, frame_ids, recorder, frozen, last):
        per_tick = (self._view_bytes(False) + (0 if frozen else self._view_bytes(True)))
        step = max(1, min(len(u_host), RECORD_BYTES // per_tick))
        dt = self.backend.host_dtype
        repeats = (repeated_frames(u_host, y_host, last) if frozen
                   else np.zeros(len(u_host), dtype=bool))
        for lo in range(0, len(u_host), step):
            hi = min(lo + step, len(u_host))
            first = self.tick + 1
            out = self.run_chunk(u_host[lo:hi], y_host[lo:hi], record=True)
            end = self.tick
            try:
                for k in range(hi - lo):
                    self._view, self.tick = (out, k), first + k
                    u, y = u_host[lo + k].astype(dt), y_host[lo + k].astype(dt)
                    recorder.record(self.tick, u, y, int(frame_ids[lo + k]),
                                    bool(repeats[lo + k]))
            finally:
                self._view, self.tick = None, end
        return u_host[-1], y_host[-1]

    def _view_bytes(self, weights):
        L, B, N = self.depth, self.batch, self.width
        n = L * N * N + L * N if weights else (2 * (L + 1) + L) * B * N
        return n * self.backend.host_dtype.itemsize

    # ------------------------------------------------------------- accessors
    def _host_state(self, key):
        """A host copy of one state array: the replayed tick's inside ``run``'s
        recorder loop, else the current one."""
        if self._view is not None:
            out, k = self._view
            if key in ("X", "D"):
                return out["x" if key == "X" else "delta"][k]
            if key == "P":
                return out["pair"][k] if "pair" in out else out["x"][k][:-1]
            if key in out:
                return out[key][k]
        if key == "P":
            with self._scope():
                return np.asarray(_paired(self._cfg[(False, False)], self._state))
        if key == "F" and self.feedback in ("transpose", "sign"):
            w = np.swapaxes(self._host_state("WT"), -1, -2)
            return w if self.feedback == "transpose" else np.sign(w)
        return np.array(self._state[key])

    def stacked_state_views(self):
        """(X, D, paired X) as padded host arrays (L+1|L, B, N), as Engine's."""
        return self._host_state("X"), self._host_state("D"), self._host_state("P")

    def gradients(self):
        """g[t,l] = δ[t,l] x[·,l−1]ᵀ summed over the batch (Eq. 5), shaped like the weights."""
        g = np.swapaxes(self._host_state("D")[1:], -1, -2) @ self._host_state("P")
        return [g[i, :self.sizes[i + 1], :self.sizes[i]] for i in range(self.depth)]

    def bias_gradients(self):
        """δ[t,l] summed over the batch: the estimate of ∂ℓ/∂b_{l−1}."""
        d = np.sum(self._host_state("D")[1:], axis=1)
        return [d[i, :self.sizes[i + 1]] for i in range(self.depth)]

    def weights(self):
        """Host copies of the current W_l."""
        w = np.swapaxes(self._host_state("WT"), -1, -2)
        return [w[i, :self.sizes[i + 1], :self.sizes[i]].copy() for i in range(self.depth)]

    def biases(self):
        """Host copies of the current b_l."""
        b = self._host_state("b")
        return [b[i, 0, :self.sizes[i + 1]].copy() for i in range(self.depth)]

    def feedback_matrices(self):
        """Host copies of F_l shaped like W_l (F_0 is never used)."""
        f = self._host_state("F")
        return [f[i, :self.sizes[i + 1], :self.sizes[i]].copy() for i in range(self.depth)]

    def network(self):
        """The current weights as a host Network (for the reference)."""
        return Network(self.weights(), self.biases(), self.activations)

    def activity(self, layer):
        """A copy of x[t, layer], shape (batch, n_layer)."""
        return self._host_state("X")[layer, :, :self.sizes[layer]].copy()

    def preactivation(self, layer):
        """A copy of a[t, layer] for layer 1..L (current state only)."""
        return np.array(self._state["A"][layer, :, :self.sizes[layer]])

    def delta(self, layer):
        """A copy of δ[t, layer] for layer 1..L, shape (batch, n_layer)."""
        return self._host_state("D")[layer, :, :self.sizes[layer]].copy()

    def tags(self):
        """Provenance tags at the current tick, as Engine.tags() (see TagClock)."""
        return self._clock.tags(self.tick)
