"""The graph engine's tick as one compiled loop: ``jax.jit`` + ``jax.lax.scan``.

At paper scale a tick is a few kFLOP, so a numpy tick is interpreter
overhead; jitting one step does not help, the loop over ticks has to move
into compiled code. ``CompiledEngine`` runs SPEC §1 on ANY Model (chains,
conv, residual, attention) as GraphEngine's generic step does — the layers'
own ``value``/``vjp``/``param_grads`` in the jax.numpy namespace — written as
one pure function ``tick(state, (u_t, y_t)) -> (state, per-tick outputs)``
built once from the model and the resolved options (no option name is looked
at inside it) and scanned over a chunk of ticks; jit compiles it once per
chunk length. The state is a pytree: per vertex x, pre, σ', δ, the previous
x and pre where ITD or a VJP that reads its inputs needs them, the ITD
quotients, the target ring of d_y, the history rings of the ``frame``
options and, with learning, the parameters, feedback and accumulators.
Frozen parameters stay out of the scan's carry (a carried array that never
changes is still copied every iteration). The numbers equal the numpy
GraphEngine's to rounding (XLA's matmuls, not OpenBLAS's).

jax is an optional extra (``pip install 'tickprop[jax]'``); without it,
constructing a CompiledEngine raises one DeviceError naming that command.
float64 runs enable jax's 64-bit mode only inside this module's calls
(``jax.enable_x64`` as a context), so it never leaks into other jax users.

Provenance tags never enter the compiled loop: they depend on the tick, the
model and the options only, so ``TagClock`` steps a batch-1 numpy
GraphEngine with the same model and options through its warm-up (the
authoritative tag rule, not a copy of it), after which every tag is the tick
minus a fixed lag and ``tags(t)`` is closed form. NaN/Inf: every tick returns
one flag per (vertex, quantity) slot of GraphEngine's report order, so a run
stops naming the same first tick, vertex and quantity as GraphEngine.
"""
import importlib.util

import numpy as np

from ..arguments import check_run
from ..backend import Backend
from ..drive import repeated_frames, stream_chunks
from ..errors import DeviceError, NumericalError, SimulatorError
from ..network import Network
from ..options import loss_grad, set_rule_options
from .graph import Model
from .reference import vertex_params
from .tick import FINITE_QUANTITIES, GraphEngine, distances

# The optional extra, loaded on first use (``_load_jax``): importing jax
# costs about a second, which no run on the numpy backend should pay.
jax = jnp = None

INSTALL_HINT = "pip install 'tickprop[jax]'"
# Bytes of per-tick outputs one recorded scan may return; longer chunks are
# cut into scans of at most this much.
RECORD_BYTES = 256 * 2 ** 20
# The measured rule of run.backend = "auto" (bench_compiled.py, one core):
# the compiled loop wins 2.9–8.5× where every vertex's work is tiny (paper
# scale, residual_levelling, conv_digits: batch × largest weight ≤ 2^14) and
# loses where a vertex's GEMM dominates (L 6 w 128 B 16 learning: 0.71×) or
# where numpy stacks a long equal-width chain into one batched matmul
# (L 64 w 32 B 8: 0.6×), so "auto" picks numpy there.
SMALL_VERTEX_MACS = 2 ** 14
MAX_VERTICES = 32


def jax_available():
    """True when the optional jax extra is installed (looked up, not imported)."""
    return jax is not None or importlib.util.find_spec("jax") is not None


def _load_jax():
    """Import jax and jax.numpy into this module's globals (once); False without the extra."""
    global jax, jnp
    if jax is None:
        try:
            import jax as _jax
            import jax.numpy as _jnp
        except ImportError:
            return False
        jax, jnp = _jax, _jnp
    return True


def prefers_compiled(model, batch):
    """Whether the compiled loop is the faster executor for ``model`` (a Model
    or a Network) at ``batch``, by the measured rule above: True while batch ×
    the largest weight stays within SMALL_VERTEX_MACS and the model has at most
    MAX_VERTICES vertices; False otherwise and without jax."""
    if isinstance(model, Network):
        weights, n = model.weights, len(model.weights) + 1
    else:
        weights = [a for k, a in model.parameters().items() if k.endswith(".W")]
        n = len(model)
    largest = max((int(np.prod(np.shape(w))) for w in weights), default=0)
    return jax_available() and batch * largest <= SMALL_VERTEX_MACS and n <= MAX_VERTICES


class TagClock:
    """Provenance tags of every tick, from GraphEngine's own tag rule.

    ``probe`` is a batch-1 GraphEngine with the run's model and options; it
    steps on zero frames through its warm-up (every tag written at least
    once); after it each tag is the tick minus a fixed lag (or stays −1),
    which is checked here, so ``tags(t)`` for any later t is that shift."""

    def __init__(self, probe):
        self._before = probe.tags()
        warm = 2 * probe.depth + probe.supervision_delay + probe.history + 2
        u = np.zeros((1,) + tuple(probe.model.input_shape))
        y = np.zeros((1,) + tuple(probe.model.output_shape))
        self._table = []
        with np.errstate(all="ignore"):
            for _ in range(2 * warm + 1):
                probe.step(u, y)
                self._table.append(probe.tags())
        self._last = len(self._table) - 1
        for t in range(warm, self._last):
            nxt = self._shift(self._table[t], 1)
            if any(not np.array_equal(nxt[k], self._table[t + 1][k]) for k in nxt):
                raise SimulatorError(f"tags are not shift-invariant after tick {warm}")

    @staticmethod
    def _shift(tags, n):
        return {k: np.where(v >= 0, v + n, v) for k, v in tags.items()}

    def tags(self, t):
        """The GraphEngine.tags() dict at tick t (t = −1: before the first step)."""
        if t < 0:
            return {k: v.copy() for k, v in self._before.items()}
        if t <= self._last:
            return {k: v.copy() for k, v in self._table[t].items()}
        return self._shift(self._table[self._last], t - self._last)


class _Plan:
    """What the tick needs from the model and the options, resolved once."""

    def __init__(self, eng, model):
        self.model, verts = model, model.vertices
        n = len(model)
        self.n, self.out = n, model.output
        self.loss, self.batch = eng.loss, eng.batch
        self.lr, self.acc = eng.learning_rate, eng.accumulate if eng.learning_rate else 1
        self.keep = 1.0 - eng.learning_rate * eng.weight_decay
        self.decay = bool(eng.weight_decay)
        self.eps, self.delay = eng.itd_epsilon, eng.supervision_delay
        kind, self.pairing, self.feedback = eng.derivative, eng.pairing, eng.feedback
        self.derivative = kind
        D = model.depth
        fwd, bwd = distances(model)
        self.sigma = [v.layer is not None and "activation" in v.cfg for v in verts]
        self.factored = [i for i in range(1, n - 1) if self.sigma[i]]
        self.nonlinear = [i for i in self.factored if not verts[i].layer.linear]
        self.params = [i for i in range(1, n) if verts[i].param_names]
        self.reads = [v.layer is not None and v.layer.reads_inputs for v in verts]
        self.deriv_lag = {v: bwd[v] + D - fwd[v] - 1 for v in self.factored}
        self.pair_lag = {(p, v.index): bwd[v.index] + D - fwd[p]
                         for v in verts[1:] for p in set(v.parents)}
        self.keep_s = kind in ("local", "frame")
        self.keep_prev = kind in ("itd-y", "itd-dy") or (
            kind != "frame" and any(self.reads))
        x_need = {}
        for (p, v), lag in self.pair_lag.items():
            if (self.pairing == "frame" and v in self.params) or (
                    kind == "frame" and self.reads[v]):
                x_need[p] = max(x_need.get(p, 0), lag)
        self.ring_x = {p: lag + 1 for p, lag in x_need.items()}
        self.ring_s = ({v: lag + 1 for v, lag in self.deriv_lag.items()}
                       if kind == "frame" else {})
        self.backward = [c for c in verts[1:] if any(c.parents)]
        # Dense vertices with one weight shape: their forward, VJP and weight
        # gradient read only tick t, so each is one batched matmul per group.
        shapes = {}
        for v in verts[1:]:
            if v.kind == "dense":
                shapes.setdefault(v.layer.param_shapes["W"], []).append(v.index)
        self.groups = [tuple(g) for g in shapes.values() if len(g) > 1]
        self.weighted = [i for i in range(1, n) if "W" in verts[i].param_names]
        # The (quantity, vertex) flag slots in GraphEngine's report order.
        self.slots = [(q, v.index) for v in verts for q in range(3)
                      if q == 0 or (q == 1 and v.layer is not None and not v.layer.linear)
                      or (q == 2 and v.index)]


def _initial_state(plan, host, dtype):
    """The pytree at tick −1: zeros, the model's parameters, the host engine's feedback."""
    m, B = plan.model, plan.batch

    def zeros(i, lead=()):
        return jnp.zeros(tuple(lead) + (B,) + m.vertices[i].shape, dtype)

    n = plan.n
    s = {"t": jnp.asarray(-1), "X": tuple(zeros(i) for i in range(n)),
         "P": tuple(zeros(i) for i in range(n)),
         "S": tuple(zeros(i) if plan.sigma[i] and (plan.keep_s or i == plan.out) else None
                    for i in range(n)),
         "D": (None,) + tuple(zeros(i) for i in range(1, n)),
         "RX": {p: zeros(p, (r,)) for p, r in plan.ring_x.items()},
         "RS": {v: zeros(v, (r,)) for v, r in plan.ring_s.items()}}
    if plan.keep_prev:
        s["Xp"], s["Pp"] = (tuple(zeros(i) for i in range(n)) for _ in range(2))
    if plan.derivative == "itd-dy":
        s["Q"] = {i: zeros(i) for i in plan.factored}
    if plan.delay:
        s["T"] = jnp.zeros((plan.delay + 1, B) + tuple(m.output_shape), dtype)
    s["params"] = {k: jnp.asarray(a, dtype) for k, a in m.parameters().items()}
    if plan.feedback in ("random", "learned"):
        fb = host.feedback_weights()
        s["F"] = {i: jnp.asarray(fb[f"{m.vertices[i].name}.W"], dtype) for i in plan.weighted}
    if plan.lr and plan.acc > 1:
        s["A"] = {k: jnp.zeros_like(a) for k, a in s["params"].items()}
    return s


def _feedback(plan, s):
    """Per vertex index the backward weights B in place of W (None: W itself)."""
    F = [None] * plan.n
    verts = plan.model.vertices
    if plan.feedback == "sign":
        for i in plan.weighted:
            F[i] = jnp.sign(s["params"][f"{verts[i].name}.W"])
    elif plan.feedback in ("random", "learned"):
        for i in plan.weighted:
            F[i] = s["F"][i]
    return F


def _factors(plan, s, t):
    """D[t−1, v] per vertex index (None: the factor 1), and the new ITD quotients."""
    out, kind = [None] * plan.n, plan.derivative
    if kind == "local":
        for i in plan.nonlinear:
            out[i] = s["S"][i]
    elif kind == "frame":
        for i in plan.factored:
            ring = s["RS"][i]
            out[i] = ring[(t - 1 - plan.deriv_lag[i]) % ring.shape[0]]
    elif kind in ("itd-y", "itd-dy"):
        Q = dict(s.get("Q", {}))
        for i in plan.factored:
            dx = s["X"][i] - s["Xp"][i]
            if kind == "itd-y":
                out[i] = dx
                continue
            da = s["P"][i] - s["Pp"][i]
            finite = jnp.abs(da) >= plan.eps
            safe = jnp.where(finite, da, jnp.ones_like(da))
            Q[i] = out[i] = jnp.where(finite, dx / safe, Q[i])
        return out, (Q if kind == "itd-dy" else None)
    return out, None


def _tick(plan, s, uy):
    """One tick of SPEC §1 from state ``s`` (tick t−1) on (u, y): GraphEngine's
    generic step, functionally."""
    u, y = uy
    verts, n, o, xp = plan.model.vertices, plan.n, plan.out, jnp
    t = s["t"] + 1
    X, P, D = s["X"], s["P"], s["D"]
    vp = [vertex_params(s["params"], v) if v.layer else {} for v in verts]
    F = _feedback(plan, s)
    factors, Q = _factors(plan, s, t)
    Xn, Pn, Sn, Dn = [u], [u], [None] * n, [None] * n
    pres = {}
    for g in plan.groups:                                           # forward
        pre = jnp.einsum("kbi,kji->kbj", jnp.stack([X[verts[i].parents[0]] for i in g]),
                         jnp.stack([vp[i]["W"] for i in g]))
        pre = pre + jnp.stack([vp[i]["b"] for i in g])[:, None, :]
        pres.update({i: pre[j] for j, i in enumerate(g)})
    for v in verts[1:]:
        i = v.index
        Pn.append(None)
        Xn.append(None)
        if i in pres:
            Pn[i] = pres[i]
            Xn[i] = Pn[i] if v.layer.linear else v.layer.activate(xp, Pn[i])[0]
        else:
            Pn[i], Xn[i] = v.layer.value(xp, vp[i], [X[p] for p in v.parents])
        if s["S"][i] is not None:
            Sn[i] = v.layer.derivative(xp, Pn[i])
    new = dict(s, t=t)
    if plan.delay:                                                  # output delta
        ring = s["T"].at[t % (plan.delay + 1)].set(y)
        new["T"], target = ring, ring[(t - plan.delay) % (plan.delay + 1)]
    else:
        target = y
    err = loss_grad(xp, plan.loss, Xn[o], target)
    Dn[o] = err if Sn[o] is None else Sn[o] * err
    if plan.delay:
        Dn[o] = jnp.where(t >= plan.delay, Dn[o], jnp.zeros_like(Dn[o]))
    cot, backs = [None] * n, {}                                     # backward
    for g in plan.groups:
        back = jnp.einsum("kbj,kji->kbi", jnp.stack([D[i] for i in g]),
                          jnp.stack([vp[i]["W"] if F[i] is None else F[i] for i in g]))
        backs.update({i: [back[j]] for j, i in enumerate(g)})
    for c in plan.backward:
        ci = c.index
        if ci in backs:
            back = backs[ci]
        elif not plan.reads[ci]:
            inputs = [X[p] for p in c.parents]
        elif plan.derivative == "frame":
            inputs = [_read(s["RX"][p], t - 1 - plan.pair_lag[(p, ci)]) for p in c.parents]
        else:
            inputs = [s["Xp"][p] for p in c.parents]
        if ci not in backs:
            back = c.layer.vjp(xp, vp[ci], inputs, P[ci], D[ci], weights=F[ci])
        for p, b in zip(c.parents, back):
            if p:
                cot[p] = b if cot[p] is None else cot[p] + b
    for i in range(1, n - 1):
        Dn[i] = cot[i] if factors[i] is None else factors[i] * cot[i]
    new.update(X=tuple(Xn), P=tuple(Pn), S=tuple(Sn), D=tuple(Dn))
    if plan.keep_prev:
        new["Xp"], new["Pp"] = X, P
    if Q is not None:
        new["Q"] = Q
    new["RX"] = {p: r.at[t % r.shape[0]].set(Xn[p]) for p, r in s["RX"].items()}  # history
    new["RS"] = {v: r.at[t % r.shape[0]].set(Sn[v]) for v, r in s["RS"].items()}
    pairs = {i: _paired(plan, new, verts[i]) for i in plan.params}
    if plan.lr:
        new = _learn(plan, new, pairs)
    out = {"finite": jnp.stack([jnp.sum((Xn, Pn, Dn)[q][i] * 0.0) for q, i in plan.slots])}
    return new, out, pairs


def _read(ring, tick):
    return ring[tick % ring.shape[0]]


def _paired(plan, s, v):
    """The parents' x that g[t,v] pairs with: now (`local`) or of δ[t,v]'s frame."""
    if plan.pairing == "local":
        return [s["X"][p] for p in v.parents]
    return [_read(s["RX"][p], s["t"] - plan.pair_lag[(p, v.index)]) for p in v.parents]


def _learn(plan, s, pairs):
    """W ← (1 − ηλ) W − η g (every ``accumulate`` ticks, the sum of the steps);
    learned feedback gets W's own update (Kolen–Pollack)."""
    verts, steps, grouped = plan.model.vertices, {}, set()
    for g in plan.groups:
        e = jnp.stack([plan.lr * s["D"][i] for i in g])
        gw = jnp.einsum("kbj,kbi->kji", e, jnp.stack([pairs[i][0] for i in g]))
        gb = jnp.sum(e, axis=1)
        for j, i in enumerate(g):
            steps.update({f"{verts[i].name}.W": gw[j], f"{verts[i].name}.b": gb[j]})
        grouped.update(g)
    for i in plan.params:
        if i in grouped:
            continue
        v = verts[i]
        g = v.layer.param_grads(jnp, pairs[i], plan.lr * s["D"][i])
        steps.update({f"{v.name}.{k}": g[k] for k in v.param_names})
    s = dict(s)
    if plan.acc > 1:
        steps = {k: s["A"][k] + a for k, a in steps.items()}
        apply = (s["t"] + 1) % plan.acc == 0
    params, F = dict(s["params"]), dict(s.get("F", {}))
    learned = plan.feedback == "learned"
    for i in plan.params:
        v = verts[i]
        for k in v.param_names:
            key = f"{v.name}.{k}"
            a = params[key]
            if k == "W" and plan.decay:
                a = a * plan.keep
                if learned:
                    F[i] = F[i] * plan.keep
            a = a - steps[key]
            if k == "W" and learned:
                F[i] = F[i] - steps[key]
            params[key] = a
    if plan.acc > 1:
        params = {k: jnp.where(apply, a, s["params"][k]) for k, a in params.items()}
        F = {i: jnp.where(apply, f, s["F"][i]) for i, f in F.items()}
        s["A"] = {k: jnp.where(apply, jnp.zeros_like(a), a) for k, a in steps.items()}
    s["params"] = params
    if learned:
        s["F"] = F
    return s


def _chunk_loop(plan, record):
    """The jitted chunk loop: (state, U, Y) -> (state, per-tick outputs)."""
    learning = bool(plan.lr)
    fixed_keys = () if learning else ("params", "F")

    def run(state, U, Y):
        fixed = {k: state[k] for k in fixed_keys if k in state}

        def tick(moving, uy):
            new, out, pairs = _tick(plan, {**moving, **fixed}, uy)
            if record:
                out.update(X=new["X"], P=new["P"], D=new["D"], pairs=pairs)
                if learning:
                    out["params"] = new["params"]
                    if "F" in new:
                        out["F"] = new["F"]
            return {k: a for k, a in new.items() if k not in fixed}, out

        moving = {k: a for k, a in state.items() if k not in fixed}
        final, out = jax.lax.scan(tick, moving, (U, Y))
        return {**final, **fixed}, out

    return jax.jit(run, donate_argnums=0)


class CompiledEngine:
    """GraphEngine's tick rule (SPEC §1, "Graphs") compiled with jax:
    ``run_chunk(U, Y)`` scans a whole chunk of ticks in one call.

    Same keywords as ``GraphEngine`` (a ``Network`` is run as
    ``Model.from_network``; ``device`` must be "cpu" or "jax": the loop runs on
    jax's default CPU device) and its surface: ``step``, ``run``,
    ``check_finite``, ``state_views``, ``gradient_factors``, the accessors
    (``activity``, ``preactivation``, ``delta``, ``gradients``,
    ``parameters``, ``feedback_weights``, ``tags`` …) as host numpy arrays;
    ``xp`` and ``backend`` are numpy's, so a recorder keeps its buffers on
    the host."""

    def __init__(self, model, loss="mse", feedback="transpose", derivative="local",
                 pairing="local", supervision_delay=0, learning_rate=0.0, batch=1,
                 accumulate=1, weight_decay=0.0, feedback_seed=0, feedback_scale=1.0,
                 itd_epsilon=1e-6, device="cpu", dtype="float64", levelled=False):
        if not _load_jax():
            raise DeviceError(f"the compiled tick loop needs jax: {INSTALL_HINT}")
        if device not in ("cpu", "jax"):
            raise DeviceError(f"the compiled tick loop runs on the cpu; got device {device!r}")
        if isinstance(model, Network):
            model = Model.from_network(model)
        set_rule_options(self, loss, feedback, derivative, pairing, supervision_delay, batch,
                         accumulate, learning_rate, weight_decay, itd_epsilon)
        # A batch-1 numpy GraphEngine with the same model (parameters zeroed:
        # tags never depend on values) and options checks them, levels the
        # model, draws the random feedback (one source of truth) and is the
        # tag clock's probe.
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
        self._plan = _Plan(self, self.model)
        with self._scope():
            self._state = _initial_state(self._plan, probe, dtype)
            self._loops = {r: _chunk_loop(self._plan, r) for r in (False, True)}
        self._clock = TagClock(probe)
        self._u_shape = (self.batch,) + tuple(self.model.input_shape)
        self._y_shape = (self.batch,) + tuple(self.model.output_shape)
        self.tick = -1
        self._view = None

    def _scope(self):
        return jax.enable_x64(self._x64)

    # ----------------------------------------------------------------- ticks
    def run_chunk(self, U, Y, record=False):
        """Advance len(U) ticks in one compiled scan: U (ticks, batch, *input
        shape) input frames, Y (ticks, batch, *output shape) targets. Without
        ``record`` returns None; with it, the per-tick outputs as host arrays
        stacked over the chunk: ``X``, ``P``, ``D`` (tuples over vertices),
        ``pairs`` ({vertex index: paired inputs}) and, with learning,
        ``params`` (and ``F``). A NaN/Inf raises NumericalError naming its first
        tick, vertex and quantity, as GraphEngine.check_finite does."""
        n = self._check_chunk(U, Y)
        start = self.tick + 1
        with self._scope():
            self._state, out = self._loops[bool(record)](self._state, self._frames(U),
                                                         self._frames(Y))
            host = jax.tree_util.tree_map(np.asarray, out)
        self.tick += n
        bad = ~np.isfinite(host.pop("finite"))
        if bad.any():
            row, slot = np.argwhere(bad)[0]
            q, i = self._plan.slots[slot]
            raise NumericalError(start + int(row), i, FINITE_QUANTITIES[q], name=self.names[i])
        return host if record else None

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
        """Step ``ticks`` times on frames from ``stream``, ``chunk`` ticks per
        compiled scan (default: the recorder's plan.chunk, else 256). With a
        recorder each chunk comes back as stacked per-tick states and the
        recorder sees every tick from them, as simulator.drive.run_stream
        feeds it from GraphEngine."""
        check_run("CompiledEngine.run", stream, ticks, recorder, progress, chunk)
        last = None
        for u_host, y_host, frame_ids in stream_chunks(stream, ticks, recorder, chunk):
            if recorder is None:
                self.run_chunk(u_host, y_host)
            else:
                last = self._run_recorded(u_host, y_host, frame_ids, recorder, last)
                recorder.flush()
            if progress is not None:
                progress(len(u_host))

    def _run_recorded(self, u_host, y_host, frame_ids, recorder, last):
        per_tick = sum(3 * self.batch * int(np.prod(v.shape)) for v in self.model.vertices)
        if self.learning_rate:
            per_tick += 2 * sum(a.size for a in self._state["params"].values())
        step = max(1, min(len(u_host), RECORD_BYTES // (per_tick * 8)))
        dt = self.backend.host_dtype
        repeats = (repeated_frames(u_host, y_host, last) if not self.learning_rate
                   else np.zeros(len(u_host), dtype=bool))
        for lo in range(0, len(u_host), step):
            hi = min(lo + step, len(u_host))
            first = self.tick + 1
            out = self.run_chunk(u_host[lo:hi], y_host[lo:hi], record=True)
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
        """The host state of the replayed tick (inside ``run``), else the current
        one: X, P, D, pairs, params, F."""
        if self._view is not None:
            v = self._view
            params = v.get("params")
            F = v.get("F")
        else:
            with self._scope():
                s = self._state
                v = jax.tree_util.tree_map(np.asarray, {
                    "X": s["X"], "P": s["P"], "D": s["D"],
                    "pairs": {i: _paired(self._plan, s, self.model.vertices[i])
                              for i in self._plan.params}})
            params, F = None, None
        if params is None:
            params = {k: np.asarray(a) for k, a in self._state["params"].items()}
        if F is None and "F" in self._state:
            F = {i: np.asarray(a) for i, a in self._state["F"].items()}
        return v, params, F

    def _index(self, vertex):
        if isinstance(vertex, str):
            return self.model.vertex(vertex).index
        i = int(vertex)
        if not 0 <= i < self.n:
            raise SimulatorError(f"vertex index {i} out of range 0..{self.n - 1}")
        return i

    def state_views(self):
        """(x per vertex, δ per vertex (None for the input)) as host arrays."""
        v = self._now()[0]
        return list(v["X"]), list(v["D"])

    def activity(self, vertex):
        """x[t, v] (a host copy), shape (batch, *shape of v)."""
        return np.array(self._now()[0]["X"][self._index(vertex)])

    def preactivation(self, vertex):
        """pre[t, v] (a host copy)."""
        return np.array(self._now()[0]["P"][self._index(vertex)])

    def delta(self, vertex):
        """δ[t, v] (a host copy); v ≥ 1."""
        i = self._index(vertex)
        if i == 0:
            raise SimulatorError("the input vertex has no delta")
        return np.array(self._now()[0]["D"][i])

    def gradient_factors(self):
        """[(vertex, paired inputs, δ[t,v])] of every vertex with parameters."""
        v = self._now()[0]
        return [(self.model.vertices[i], list(v["pairs"][i]), v["D"][i])
                for i in self._plan.params]

    def gradients(self):
        """{"<layer>.W", "<layer>.b": g[t]} keyed like ``model.parameters()``,
        as GraphEngine.gradients (Eq. 5 of Betti & Gori per vertex)."""
        out = {}
        for v, inputs, delta in self.gradient_factors():
            g = v.layer.param_grads(np, inputs, delta)
            out.update({f"{v.name}.{k}": g[k] for k in v.param_names})
        return out

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
