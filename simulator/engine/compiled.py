"""The graph engine's tick as one compiled loop: ``jax.jit`` + ``jax.lax.scan``.

At paper scale a numpy tick is interpreter overhead, so ``CompiledEngine``
scans ``_tick``, GraphEngine's generic step written functionally on a pytree
state, over a chunk of ticks. A tick costs the XLA kernels it launches, so the
carry stacks each quantity by vertex shape and a dense group's parameters
(``Plan.pack``). jax is an optional extra; float64 enables its 64-bit mode only
inside this module's calls. Tags never enter the loop (``TagClock``).
"""
import importlib.util

import numpy as np

from ..arguments import check_run, check_type
from ..backend import Backend
from .compiled_learn import learn
from .direct import direct_cotangents
from .drive import repeated_frames, stream_chunks
from ..errors import DeviceError, NumericalError, SimulatorError
from ..model.graph import Model
from ..model.reference import vertex_params
from ..options import resolve_levelled, set_rule_options
from .fast import ring_read, runs
from .tags import TAG_ROWS, TagClock
from .tick import FINITE_QUANTITIES, GraphEngine, finite_slots

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
    return True


def prefers_compiled(model, batch):
    """Whether the compiled loop is the faster executor (the rule above; False without jax)."""
    largest = max((int(np.prod(s)) for k, s in model.param_shapes().items() if k.endswith(".W")),
                  default=0)
    return jax_available() and batch * largest <= SMALL_VERTEX_MACS and len(model) <= MAX_VERTICES


class Plan:
    """What the tick needs of model and options, resolved once from ``probe`` (a GraphEngine)."""

    def __init__(self, eng, probe, model):
        self.model, verts = model, model.vertices
        n = len(model)
        self.n, self.out = n, model.output
        self.loss_grad, self.batch = probe._loss_grad, eng.batch   # ∂ℓ/∂x, resolved once
        self.lr, self.acc = eng.learning_rate, eng.accumulate if eng.learning_rate else 1
        self.keep = 1.0 - eng.learning_rate * eng.weight_decay
        self.decay = bool(eng.weight_decay)
        self.eps, self.delay = eng.itd_epsilon, eng.supervision_delay
        kind, self.pairing, self.feedback = eng.derivative, eng.pairing, eng.feedback
        self.derivative = kind
        self.sigma, self.factored = probe._sigma, probe._factored
        self.factor_set, self.reads = probe._factor_set, probe._reads
        self.deriv_lag, self.pair_lag = probe._deriv_lag, probe._pair_lag
        self.params = [i for i in range(1, n) if verts[i].param_names]
        self.keep_s = kind in ("local", "frame")
        self.keep_prev = kind in ("itd-y", "itd-dy") or (
            kind != "frame" and any(self.reads))
        x_need, s_need = probe._ring_lags
        self.ring_x = {p: lag + 1 for p, lag in x_need.items()}
        self.ring_s = {v: lag + 1 for v, lag in s_need.items()}
        self.backward = [c for c in verts[1:] if any(c.parents)]
        # dense vertices of one weight shape: one batched matmul per group (they
        # read only tick t); σ and σ' one loop per run of one activation
        dense = [v.index for v in verts if v.kind == "dense"]
        self.groups = [g for g in _classes(dense, lambda i: verts[i].layer.param_shapes["W"])
                       if len(g) > 1]
        self.runs = {g: [(lo, hi) for lo, hi, _ in runs([verts[i].cfg.get("activation")
                                                          for i in g])] for g in self.groups}
        self.stacked = [tuple(f"{verts[i].name}.{k}" for i in g) for g in self.groups
                        for k in ("W", "b")]
        shape = [v.shape for v in verts].__getitem__
        self.hidden = _classes(range(1, n - 1), shape)   # δ = D ⊙ cotangent, one per shape
        self.weighted = [i for i in range(1, n) if "W" in verts[i].param_names]
        # feedback: a fixed or learned B in s["F"] (drawn), or sign(W) ∘ s["M"] (signed)
        self.signed = list(probe._mag)
        self.drawn = [i for i in self.weighted if probe._F[i] is not None and not probe._mag]
        self.direct = probe._dfa_cols       # dfa: per vertex its columns of s["BT"]
        self.slots = finite_slots(model)
        # the carry stacks per-vertex arrays of one shape (``pack``): one buffer,
        # loop and carry copy per shape; a tick works per vertex (``unpack``)
        held_s = [i for i in range(n) if self.sigma[i] and (self.keep_s or i == self.out)]
        self.layout = {"X": _classes(range(n), shape), "S": _classes(held_s, shape),
                       "D": _classes(range(1, n), shape)}
        self.layout.update(P=self.layout["X"], Xp=self.layout["X"], Pp=self.layout["X"])

    def pack(self, s):
        """``s`` with its per-vertex tuples stacked by shape and its groups'
        parameters (and accumulators) stacked per group: the carry's form."""
        out = dict(s)
        for key, classes in self.layout.items():
            if key in s:
                out[key] = tuple(jnp.stack([s[key][i] for i in c]) for c in classes)
        return self._stack_params(out, True)

    def unpack(self, s):
        """``s`` with per-vertex tuples again (None where a vertex holds none)."""
        out = dict(s)
        for key, classes in self.layout.items():
            if key in s:
                one = [None] * self.n
                for c, a in zip(classes, s[key]):
                    for j, i in enumerate(c):
                        one[i] = a[j]
                out[key] = tuple(one)
        return self._stack_params(out, False)

    def _stack_params(self, s, stack):
        """``s`` with its groups' parameters (and accumulators) stacked or split."""
        for key in ("params", "A"):
            if key in s:
                d = s[key] = dict(s[key])
                for keys in self.stacked:
                    if stack:
                        d["|".join(keys)] = jnp.stack([d.pop(k) for k in keys])
                    else:
                        d.update(zip(keys, d.pop("|".join(keys))))
        return s

    def per_vertex(self, out):
        """Recorded scan outputs ``out`` (host) with per-vertex X, P, D (views,
        ticks first), ``x_norm`` and ``delta_norm`` (ticks, vertices) and, pairing
        `local`, the pairs."""
        norms = iter(out.pop("norms"))
        for key in ("x_norm", "delta_norm"):
            out[key] = np.full((len(out["X"][0]), self.n), np.nan)
            for c in self.layout[key[0].upper()]:
                out[key][:, list(c)] = next(norms)
        for key in ("X", "P", "D"):
            one = [None] * self.n
            for c, a in zip(self.layout[key], out[key]):
                for j, i in enumerate(c):
                    one[i] = a[:, j]
            out[key] = tuple(one)
        out.setdefault("pairs", {i: [out["X"][p] for p in self.model.vertices[i].parents]
                                 for i in self.params})
        return out

    @staticmethod
    def finite(s):
        """0 when every x, pre and δ of packed state ``s`` is finite, else NaN
        (all the flag slots hold: σ of a finite pre is finite)."""
        flags = [jnp.sum(a * 0.0) for key in ("X", "P", "D") for a in s[key]]
        return sum(flags[1:], flags[0])


def _classes(members, key):
    """``members`` (vertex indices) grouped by ``key``, in order."""
    by_key = {}
    for i in members:
        by_key.setdefault(key(i), []).append(i)
    return [tuple(c) for c in by_key.values()]


def initial_state(plan, host, dtype):
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
    if plan.drawn:
        fb = host.feedback_weights()
        s["F"] = {i: jnp.asarray(fb[f"{m.vertices[i].name}.W"], dtype) for i in plan.drawn}
    if plan.direct:
        s["BT"] = jnp.asarray(host._dfa_BT, dtype)
    if plan.signed:
        s["M"] = {i: jnp.asarray(host._mag[i], dtype) for i in plan.signed}
    if plan.lr and plan.acc > 1:
        s["A"] = {k: jnp.zeros_like(a) for k, a in s["params"].items()}
    return plan.pack(s)


def _feedback(plan, s):
    """Per vertex index the backward weights B in place of W (None: W itself)."""
    F = [None] * plan.n
    for i in plan.drawn:
        F[i] = s["F"][i]
    for i in plan.signed:
        F[i] = jnp.sign(s["params"][f"{plan.model.vertices[i].name}.W"]) * s["M"][i]
    return F


def _factors(plan, s, t):
    """D[t−1, v] per vertex index (None: the factor 1), and the new ITD quotients."""
    out, kind, Q = [None] * plan.n, plan.derivative, dict(s.get("Q", {}))
    for i in plan.factor_set:
        if kind == "local":
            out[i] = s["S"][i]
        elif kind == "frame":
            out[i] = ring_read(s["RS"][i], t - 1 - plan.deriv_lag[i])
        elif kind == "itd-y":
            out[i] = s["X"][i] - s["Xp"][i]
        else:
            dx, da = s["X"][i] - s["Xp"][i], s["P"][i] - s["Pp"][i]
            finite = jnp.abs(da) >= plan.eps
            Q[i] = out[i] = jnp.where(finite, dx / jnp.where(finite, da, jnp.ones_like(da)), Q[i])
    return out, (Q if kind == "itd-dy" else None)


def _tick(plan, s, uy, exact=False):
    """GraphEngine's generic step from state ``s`` (tick t−1) on (u, y), functionally."""
    u, y = uy
    verts, n, o, xp = plan.model.vertices, plan.n, plan.out, jnp
    t = s["t"] + 1
    X, P, D = s["X"], s["P"], s["D"]
    vp = [vertex_params(s["params"], v) if v.layer else {} for v in verts]
    F = _feedback(plan, s)
    factors, Q = _factors(plan, s, t)
    Xn, Pn, Sn, Dn = [u] + [None] * (n - 1), [u] + [None] * (n - 1), [None] * n, [None] * n
    for g in plan.groups:                                           # forward
        # contracting W's leading axis spares XLA's CPU dot a transpose of x
        pre = jnp.einsum("kbi,kij->kbj", jnp.stack([X[verts[i].parents[0]] for i in g]),
                         jnp.swapaxes(jnp.stack([vp[i]["W"] for i in g]), 1, 2))
        pre = pre + jnp.stack([vp[i]["b"] for i in g])[:, None, :]
        for lo, hi in plan.runs[g]:
            layer = verts[g[lo]].layer
            x, d = (pre[lo:hi], None) if layer.linear else layer.activate(xp, pre[lo:hi])
            for j, i in enumerate(g[lo:hi]):
                Pn[i], Xn[i] = pre[lo + j], x[j]
                if s["S"][i] is not None:
                    Sn[i] = jnp.ones_like(Pn[i]) if d is None else d[j]
    for v in verts[1:]:
        i = v.index
        if Pn[i] is None:
            Pn[i], Xn[i] = v.layer.value(xp, vp[i], [X[p] for p in v.parents])
            if s["S"][i] is not None:
                Sn[i] = v.layer.derivative(xp, Pn[i])
    new = dict(s, t=t)
    if plan.delay:                                                  # output delta
        ring = s["T"].at[t % (plan.delay + 1)].set(y)
        new["T"], target = ring, ring[(t - plan.delay) % (plan.delay + 1)]
    else:
        target = y
    err = plan.loss_grad(xp, Xn[o], target)
    Dn[o] = err if Sn[o] is None else Sn[o] * err
    if plan.delay:
        Dn[o] = jnp.where(t >= plan.delay, Dn[o], jnp.zeros_like(Dn[o]))
    if plan.direct:                                                 # dfa: B δ_out
        cot = direct_cotangents(xp, plan.direct, s["BT"], D[o], n)
    else:
        cot, backs = [None] * n, {}
        for g in plan.groups:
            back = jnp.einsum("kbj,kji->kbi", jnp.stack([D[i] for i in g]),
                              jnp.stack([vp[i]["W"] if F[i] is None else F[i] for i in g]))
            backs.update({i: [back[j]] for j, i in enumerate(g)})
        for c in plan.backward:
            ci = c.index
            back = backs.get(ci)
            if back is None:
                inputs = ([X[p] for p in c.parents] if not plan.reads[ci] else
                          [ring_read(s["RX"][p], t - 1 - plan.pair_lag[(p, ci)]) for p in c.parents]
                          if plan.derivative == "frame" else [s["Xp"][p] for p in c.parents])
                back = c.layer.vjp(xp, vp[ci], inputs, P[ci], D[ci], weights=F[ci])
            for p, b in zip(c.parents, back):
                if p:
                    cot[p] = b if cot[p] is None else cot[p] + b
    for c in plan.hidden:
        fs = [factors[i] for i in c]
        dc = jnp.stack([cot[i] for i in c])
        if any(f is not None for f in fs):
            dc = jnp.stack([jnp.ones_like(cot[i]) if f is None else f
                            for i, f in zip(c, fs)]) * dc
        for j, i in enumerate(c):
            Dn[i] = dc[j]
    new.update(X=tuple(Xn), P=tuple(Pn), S=tuple(Sn), D=tuple(Dn))
    if plan.keep_prev:
        new["Xp"], new["Pp"] = X, P
    if Q is not None:
        new["Q"] = Q
    new["RX"] = {p: r.at[t % r.shape[0]].set(Xn[p]) for p, r in s["RX"].items()}  # history
    new["RS"] = {v: r.at[t % r.shape[0]].set(Sn[v]) for v, r in s["RS"].items()}
    pairs = {i: paired(plan, new, verts[i]) for i in plan.params}
    if plan.lr:
        new = learn(jnp, plan, new, pairs)
    # ``exact``: one NaN/Inf flag per slot; else chunk_loop flags the packed state
    out = {}
    if exact:
        out["finite"] = jnp.stack([jnp.sum((Xn, Pn, Dn)[q][i] * 0.0) for q, i in plan.slots])
    return new, out, pairs


def paired(plan, s, v):
    """The parents' x that g[t,v] pairs with: now (`local`) or of δ[t,v]'s frame."""
    if plan.pairing == "local":
        return [s["X"][p] for p in v.parents]
    return [ring_read(s["RX"][p], s["t"] - plan.pair_lag[(p, v.index)]) for p in v.parents]


def chunk_loop(plan, record, exact=False, masked=False):
    """The jitted chunk loop: (state, U, Y, live) -> (state, per-tick
    outputs); the state passed in stays valid (a chunk with a NaN/Inf is
    replayed from it). ``masked``: a tick whose ``live`` flag is False leaves
    the state as it was (a padded last chunk; ~0.15 s more to compile)."""
    learning = bool(plan.lr)
    fixed_keys = ("M", "BT") if learning else ("params", "F", "M", "BT")

    def run(state, U, Y, live):
        fixed = {k: state[k] for k in fixed_keys if k in state}

        def tick(moving, xs):
            u, y, on = xs
            new, out, pairs = _tick(plan, plan.unpack({**moving, **fixed}), (u, y), exact)
            if record:
                if plan.pairing != "local":     # else the parents' x (``per_vertex``)
                    out["pairs"] = pairs
                if learning:
                    out["params"] = new["params"]
                    if "F" in new:
                        out["F"] = new["F"]
            new = plan.pack(new)
            if record:                          # stacked by shape: a few outputs a tick
                out.update(X=new["X"], P=new["P"], D=new["D"], norms=tuple(
                    jnp.sqrt(jnp.sum(a * a, axis=tuple(range(1, a.ndim))))
                    for key in "XD" for a in new[key]))     # the recorder's, ~8× cheaper
            if not exact:
                out["finite"] = plan.finite(new)
            kept = {k: a for k, a in new.items() if k not in fixed}
            if masked:
                kept = jax.tree_util.tree_map(lambda a, b: jax.lax.select(on, a, b), kept, moving)
            return kept, out

        moving = {k: a for k, a in state.items() if k not in fixed}
        final, out = jax.lax.scan(tick, moving, (U, Y, live))
        return {**final, **fixed}, out

    return jax.jit(run)


class CompiledEngine:
    """GraphEngine's tick rule compiled with jax: ``run_chunk(U, Y)`` scans a
    chunk of ticks in one call. GraphEngine's keywords (``device`` "cpu" or
    "jax") and surface, accessors returning host numpy arrays (``xp`` is numpy)."""

    def __init__(self, model, loss="mse", feedback="transpose", derivative="local",
                 pairing="local", supervision_delay="auto", learning_rate=0.0, batch=1,
                 accumulate=1, weight_decay=0.0, feedback_seed=0, feedback_scale=1.0,
                 itd_epsilon=1e-6, device="cpu", dtype="float64", levelled="auto"):
        if not _load_jax():
            raise DeviceError(f"the compiled tick loop needs jax: {INSTALL_HINT}")
        if device not in ("cpu", "jax"):
            raise DeviceError(f"the compiled tick loop runs on the cpu; got device {device!r}")
        check_type("CompiledEngine", "model", model, Model, "a simulator.Model")
        set_rule_options(self, loss, feedback, derivative, pairing, supervision_delay, batch,
                         accumulate, learning_rate, weight_decay, itd_epsilon, model.depth)
        levelled = resolve_levelled("CompiledEngine", levelled, self.learning_rate, model)
        if self.feedback == "brsf":     # host draws after every update
            raise SimulatorError("feedback 'brsf' draws on the host after every update, which "
                                 "the jax loop cannot: use the numpy executor (run.backend numpy)")
        # a batch-1 zero-weight GraphEngine checks the options, levels the model,
        # draws the feedback and is the tag clock's probe (tags ignore values)
        zero = model.with_parameters({k: np.zeros_like(a) for k, a in model.parameters().items()})
        probe = GraphEngine(zero, loss=loss, feedback=feedback, derivative=derivative,
                            pairing=pairing, supervision_delay=self.supervision_delay,
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
        self._mag = {i: np.asarray(probe._mag[i]) for i in self._plan.signed}
        self._dfa_B = probe._dfa_B
        with self._scope():
            self._state = initial_state(self._plan, probe, dtype)
            self._loops = {(r, m): chunk_loop(self._plan, r, masked=m)
                           for r in (False, True) for m in (False, True)}
        self._clock = TagClock.of(probe)
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
        return self._plan.per_vertex(host) if record else None

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
            U, Y = u_host[lo:hi].astype(dt, copy=False), y_host[lo:hi].astype(dt, copy=False)
            if hasattr(recorder, "record_block"):       # the Recorder: the scan at once
                params = out.get("params")
                recorder.record_block(
                    first, out["X"], out["D"], U, Y, frame_ids[lo:hi], repeats[lo:hi],
                    {i: (out["pairs"][i], out["D"][i]) for i in self._plan.params},
                    self._clock.state, params and (lambda k: {key: a[k] for key, a in
                                                               params.items()}),
                    (out["x_norm"], out["delta_norm"]))
                continue
            end = self.tick
            try:                                        # any other recorder: tick by tick
                for k in range(hi - lo):
                    self._view, self.tick = jax.tree_util.tree_map(lambda a: a[k], out), first + k
                    recorder.record(self.tick, U[k], Y[k], int(frame_ids[lo + k]),
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
        """{"<layer>.W": copy of B} for the feedback in use (W itself for `transpose`);
        under ``dfa`` {"<vertex>.B": copy of B_v}."""
        _, params, F = self._now()
        if self._plan.direct:
            return {f"{self.names[i]}.B": np.array(b) for i, b in self._dfa_B.items()}
        keys = {i: f"{self.model.vertices[i].name}.W" for i in self._plan.weighted}
        return {k: np.sign(params[k]) * self._mag[i] if i in self._mag else
                np.array(params[k]) if F is None else np.array(F[i])
                for i, k in keys.items()}

    def current_model(self):
        """The engine's model (levelled if asked) with the current parameters."""
        return self.model.with_parameters(self.parameters())

    TAG_ROWS = TAG_ROWS

    def tag_state(self):
        """GraphEngine.tag_state() at the current tick (TagClock)."""
        return self._clock.state(self.tick)

    def tags(self):
        """Provenance tags at the current tick, as GraphEngine.tags()."""
        return dict(zip(TAG_ROWS, self.tag_state()))
