"""The tick engine on any Model: the tick rule (docs/explanation/model.md) vertex by vertex.

Every vertex responds one tick late from its parents' state at t:

    x[t+1, input] = u[t+1];   pre[t+1,v], x[t+1,v] = f_v(x[t, parents(v)])
    δ[t+1, out]   = σ'_out(pre[t+1,out]) ⊙ ∂ℓ/∂x(x[t+1,out], y[t+1−d_y])
    δ[t+1, v]     = D[t,v] ⊙ Σ_{children c, positions k} VJP_{c→v,k}(δ[t,c])
    g[t, v]       = param_grads(paired inputs of v, δ[t,v])

D[t,v] is the derivative option; VJPs use the feedback weights. The ``frame``
options take δ[t,v] to be of frame s = t − D − bwd(v) (fwd/bwd: longest paths
input → v → output, D = fwd(output); under ``dfa`` bwd(v) = 1 but for the
output, ``direct``) and read σ'(v) and parent p's x at s + fwd(v), s + fwd(p).
NaN/Inf flags (v·0 per slot) fill a ring of FINITE_RING ticks.
Provenance tags are engine.tags (GraphTags).
"""
import math

import numpy as np

from ..arguments import check_number, check_run, check_seed, check_type, shown
from ..backend import Backend
from .direct import delta_paths, direct_bwd, direct_cotangents, direct_draws
from .drive import repeated_frames, stream_chunks
from ..errors import NumericalError, SimulatorError
from ..options import (FEEDBACK, SIGN_FAMILY, check_choice, draw_magnitude, feedback_draws,
                       loss_gradient, present_target, resolve_levelled, set_rule_options)
from .fast import FastNumpy, apply_step, ring_read
from .tags import GraphTags
from ..model.graph import Model
from ..model.reference import vertex_params

FINITE_RING = 256
FINITE_QUANTITIES = ("activity", "preactivation", "delta")


def path_lengths(model):
    """(into, out_of): per vertex index, the sets of path lengths input → v, v → output."""
    into = [set() for _ in model.vertices]
    into[0] = {0}
    for v in model.vertices[1:]:
        into[v.index] = {n + 1 for p in v.parents for n in into[p]}
    out_of = [set() for _ in model.vertices]
    out_of[-1] = {0}
    for v in reversed(model.vertices[:-1]):
        out_of[v.index] = {n + 1 for c in model.vertices if v.index in c.parents
                           for n in out_of[c.index]}
    return into, out_of


def distances(model):
    """(fwd, bwd): per vertex index, the longest path input → v and v → output."""
    return tuple([max(lengths) for lengths in side] for side in path_lengths(model))


def finite_slots(model):
    """The (quantity, vertex) NaN/Inf flags in report order: per vertex its
    activity, its preactivation where a nonlinear σ makes it differ, its δ."""
    return [(q, v.index) for v in model.vertices for q in range(3)
            if q == 0 or (q == 1 and v.layer is not None and not v.layer.linear)
            or (q == 2 and v.index)]


def synchronized_layers(depth):
    """Eq. 6 of Betti & Gori, ls = (L+1)/2: (ls,) for odd L, else the two nearest."""
    depth = int(depth)
    if depth < 1:
        raise SimulatorError(f"depth must be >= 1, got {depth}")
    return ((depth + 1) // 2,) if depth % 2 else (depth // 2, depth // 2 + 1)


def sync_set(model, feedback="transpose"):
    """Names of the synchronized vertices (facts C′/D′): every path into v's
    inputs has one length a, every path v → output one length b (under ``dfa``
    the one δ path, ``direct_bwd``), and a = b, so g[t,v] pairs x and δ of one
    frame (on a chain, Eq. 6's l_s)."""
    check_type("sync_set", "model", model, Model, "a simulator.Model "
               "(Model.chain(sizes, ...) for a chain)")
    into, out_of = path_lengths(model)
    out_of = delta_paths(model, check_choice("feedback", feedback, FEEDBACK), out_of)
    return [v.name for v in model.vertices[1:] if len(into[v.index]) == len(out_of[v.index]) == 1
            and min(into[v.index]) - 1 == min(out_of[v.index])]


class GraphEngine(FastNumpy, GraphTags):
    """Backprop diffusion on a graph of time-delayed layers (docs/explanation/model.md).

    Keywords: the rule options (``simulator.options``, docs/explanation/model.md) and
    ``levelled`` (run on ``model.level()``); "auto" (the defaults of
    ``supervision_delay`` and ``levelled``): causal d_y = D and levelled when
    learning, d_y = 0 and as given when frozen (``options.resolve_delay``).
    Vertices are addressed by index (model order) or name; dicts are keyed like
    ``model.parameters()``.
    """

    def __init__(self, model, loss="mse", feedback="transpose", derivative="local",
                 pairing="local", supervision_delay="auto", learning_rate=0.0, batch=1,
                 accumulate=1, weight_decay=0.0, feedback_seed=0, feedback_scale=1.0,
                 itd_epsilon=1e-6, device="cpu", dtype="float64", levelled="auto"):
        check_type("GraphEngine", "model", model, Model, "a simulator.Model "
                   "(Model.chain(sizes, ...) for a chain)")
        set_rule_options(self, loss, feedback, derivative, pairing, supervision_delay, batch,
                         accumulate, learning_rate, weight_decay, itd_epsilon, model.depth)
        check_seed("GraphEngine", feedback_seed, "feedback_seed")
        feedback_scale = check_number("GraphEngine", "feedback_scale", feedback_scale, 0.0)
        self.levelled = resolve_levelled("GraphEngine", levelled, self.learning_rate, model)
        self.model = model.level() if self.levelled else model
        self.backend = Backend(device, dtype)
        self.xp = self.backend.xp
        self._plan()
        self._build_parameters(feedback_seed, feedback_scale)
        self._build_state()
        self._build_finite()
        self.tick = -1
        self._u_shape = (self.batch,) + tuple(self.model.input_shape)
        self._y_shape = (self.batch,) + tuple(self.model.output_shape)

    # ----------------------------------------------------------- construction
    def _plan(self):
        m = self.model
        self.names = m.names
        self.depth = m.depth
        self.n = n = len(m)
        self.out = m.output
        fwd, bwd = distances(m)
        # dfa: every δ but the output's is one projection of the output's (``direct``)
        self._dfa = self.feedback == "dfa"
        if self._dfa:
            bwd = direct_bwd(m)
            self._backward = self._backward_direct
        self._children = [[] for _ in range(n)]
        for p, c, k in m.edges():
            self._children[p].append((c, k))
        # Vertices with an activation get the derivative factor D[t,v].
        self._sigma = [v.layer is not None and "activation" in v.cfg for v in m.vertices]
        self._factored = [i for i in range(1, n - 1) if self._sigma[i]]
        self._has_params = [bool(v.param_names) for v in m.vertices]
        self._reads = [v.layer is not None and v.layer.reads_inputs for v in m.vertices]
        D = self.depth
        # frame options: σ' of v for δ[t+1,v] is read at t − deriv_lag[v]; x of
        # parent p of v for δ[t,v] at t − pair_lag[(p, v)]
        self._deriv_lag = {v: bwd[v] + D - fwd[v] - 1 for v in self._factored}
        self._pair_lag = {(p, v.index): bwd[v.index] + D - fwd[p]
                          for v in m.vertices[1:] for p in set(v.parents)}
        kind = self.derivative
        self._vjp_frame = kind == "frame"
        self._keep_s = kind in ("local", "frame")         # σ' kept beyond the output
        self._loss_grad = loss_gradient(self.loss)
        self._pair_frame = self.pairing == "frame"
        self._learned = self.feedback == "learned"
        name = kind.replace("-", "_")
        # D[t−1, v] of vertex v is ``_factor(v, t)``, for v in ``_factor_set``
        self._factor = getattr(self, f"_factor_{name}", None)
        self._factor_set = ([i for i in self._factored if not m.vertices[i].layer.linear]
                            if kind == "local" else [] if kind == "none" else self._factored)
        tags = "none" if not self._factored else "itd" if kind.startswith("itd") else name
        self._factor_tags = getattr(self, f"_factor_tags_{tags}")
        self._factored_idx = np.array(self._factored, dtype=np.int64)
        self._deriv_lag_arr = np.array([self._deriv_lag[i] for i in self._factored],
                                       dtype=np.int64)

    def _build_parameters(self, feedback_seed, feedback_scale):
        be, m = self.backend, self.model
        self._params = {k: be.asarray(a) for k, a in m.parameters().items()}
        self._vp = [vertex_params(self._params, v) if v.layer else {} for v in m.vertices]
        self._F = [None] * self.n
        shapes = {v.index: v.layer.param_shapes["W"] for v in m.vertices[1:]
                  if "W" in v.param_names}
        # drawn on the host in vertex order (simulator.options.feedback_draws); dfa
        # draws its B_v instead (no weight has a feedback matrix)
        self._fb_rng, draws = feedback_draws(self.feedback, feedback_seed, feedback_scale,
                                             [] if self._dfa else list(shapes.values()))
        self._dfa_cols, BT, Bv = (direct_draws(m, feedback_seed, feedback_scale) if self._dfa
                                  else ([], None, {}))
        self._dfa_BT = None if BT is None else be.asarray(BT)
        self._dfa_B = {i: be.asarray(b) for i, b in Bv.items()}
        self._fb_scale, self._fb_shapes = feedback_scale, shapes
        signed = self.feedback in SIGN_FAMILY
        # sign family: host magnitudes (float or array) and their backend copies
        self._mag = dict(zip(shapes, draws)) if signed else {}
        self._mag_be = {i: a if np.ndim(a) == 0 else be.asarray(a) for i, a in self._mag.items()}
        self._redraw = list(self._mag) if self.feedback == "brsf" else []
        for i, d in zip(shapes, draws):
            if not signed and d is not None:
                self._F[i] = be.asarray(d)
        self._refresh_feedback(())

    def _refresh_feedback(self, redraw):
        """Sign family: F = sign(W) ∘ magnitude; brsf (``redraw``: its vertices)
        first draws new magnitudes into the host buffers, in vertex order."""
        for i in redraw:
            draw_magnitude(self._fb_rng, self._fb_shapes[i], self._fb_scale, self._mag[i])
            self._mag_be[i] = self.backend.asarray(self._mag[i])
        for i, mag in self._mag_be.items():
            self._F[i] = self.xp.sign(self._vp[i]["W"]) * mag

    def _zeros(self, i, lead=()):
        return self.backend.zeros(tuple(lead) + (self.batch,) + self.model.vertices[i].shape)

    def _build_state(self):
        n = self.n
        self._X, self._X_prev, self._P, self._P_prev = (
            [self._zeros(i) for i in range(n)] for _ in range(4))
        self._S = [None] * n
        self._D = [None] + [self._zeros(i) for i in range(1, n)]
        self._Q = ({i: self._zeros(i) for i in self._factored}
                   if self.derivative == "itd-dy" else None)
        d_y = self.supervision_delay
        self._targets = self.backend.zeros((d_y + 1, self.batch) + self.model.output_shape)
        self._build_tags()
        # history rings of the frame options: x of the parents that pairing or
        # a VJP reading its inputs needs, σ' of factored vertices
        x_need = {}
        for (p, v), lag in self._pair_lag.items():
            if ((self._pair_frame and self._has_params[v])
                    or (self._vjp_frame and self._reads[v] and not self._dfa)):
                x_need[p] = max(x_need.get(p, 0), lag)
        s_need = dict(self._deriv_lag) if self._vjp_frame else {}
        self._ring_lags = x_need, s_need
        self._ring_x = {p: self._zeros(p, (lag + 1,)) for p, lag in x_need.items()}
        self._ring_s = {v: self._zeros(v, (lag + 1,)) for v, lag in s_need.items()}
        self.history = 1 + max([*x_need.values(), *s_need.values(),
                                *(self._pair_lag.values() if self._pair_frame else ())], default=-1)
        self._ring_tags = np.full((max(self.history, 1), 2, n), -1, dtype=np.int64)
        if self.learning_rate and self.accumulate > 1:
            self._acc = {k: self.xp.zeros_like(a) for k, a in self._params.items()}
        self._build_fast()

    # ------------------------------------------------------------------ tick
    def step(self, u, y):
        """Advance one tick on u (batch, *input_shape) and y (batch,
        *output_shape); SimulatorError for a bad array, NumericalError (within
        FINITE_RING ticks or at ``check_finite``) for a NaN/Inf."""
        if (getattr(u, "shape", None) != self._u_shape
                or getattr(y, "shape", None) != self._y_shape
                or getattr(u.dtype, "kind", "f") not in "fiub"
                or getattr(y.dtype, "kind", "f") not in "fiub"):
            self._check_shape("input frame u", u, self.model.input_shape)
            self._check_shape("target frame y", y, self.model.output_shape)
        if self._fast:
            self._step_fast(u, y)
        else:
            self._step_generic(u, y)
        self._flag_finite(self.tick)

    def _build_finite(self):
        """Flag slots (quantity, vertex, zeros of its size), the ring and the
        first tick whose flags the host has not read."""
        verts = self.model.vertices
        self._finite_slots = [(q, i, self.backend.zeros((self.batch * math.prod(verts[i].shape),)))
                              for q, i in finite_slots(self.model)]
        self._finite = self.backend.zeros((FINITE_RING, len(self._finite_slots)))
        self._finite_from = 0

    def _flag_finite(self, t):
        """Write tick t's row of flags (on numpy ``_flag_fast``)."""
        if self._fast:
            self._flag_fast(t, self._finite)
        else:
            xp, arrays = self.xp, (self._X, self._P, self._D)
            self._finite[t % FINITE_RING, :] = xp.stack(
                [xp.vecdot(xp.reshape(arrays[q][i], (-1,)), zeros)
                 for q, i, zeros in self._finite_slots])
        if t - self._finite_from + 1 == FINITE_RING:
            self.check_finite()

    def _step_generic(self, u, y):
        """One tick in any array namespace: fresh arrays per vertex."""
        xp, m = self.xp, self.model
        t = self.tick + 1
        X, P, Dl = self._X, self._P, self._D
        factors = [None] * self.n                        # D[t−1, v]
        for i in self._factor_set:
            factors[i] = self._factor(i, t)
        Xn, Pn, Sn, Dn = [u], [u], [None] * self.n, [None] * self.n
        keep_s = self._keep_s
        for v in m.vertices[1:]:
            i = v.index
            pre, out = v.layer.value(xp, self._vp[i], [X[p] for p in v.parents])
            Pn.append(pre)
            Xn.append(out)
            if self._sigma[i] and (keep_s or i == self.out):
                Sn[i] = v.layer.derivative(xp, pre)
        target = self._present_target(t, y)
        o = self.out
        if target is None:
            Dn[o] = xp.zeros_like(Xn[o])
        else:
            err = self._loss_grad(xp, Xn[o], target)
            Dn[o] = err if Sn[o] is None else Sn[o] * err
        cot = self._backward(t, X, P, Dl)
        for i in range(1, self.n - 1):
            f = factors[i]
            Dn[i] = cot[i] if f is None else f * cot[i]
        self._advance(t, (Xn, Pn, Sn, Dn), target is not None)
        self._record_history(t)
        if self.learning_rate:
            self._learn(t)

    def _advance(self, t, new, supervised):
        """Make ``new`` (x, pre, σ', δ lists) the state of tick t."""
        self._X_prev, self._P_prev = self._X, self._P
        self._X, self._P, self._S, self._D = new
        self._advance_tags(t, supervised)
        self.tick = t

    def _check_shape(self, what, a, shape):
        want = (self.batch,) + tuple(shape)
        got = getattr(a, "shape", None)
        side = "input" if what.endswith("u") else "output"
        if got is None or tuple(got) != want or getattr(a.dtype, "kind", "f") not in "fiub":
            raise SimulatorError(f"GraphEngine.step: {what}: expected a numeric array of shape "
                                 f"{want} (the engine expects batch {self.batch}, then the "
                                 f"{side} shape), got {shown(a)}")

    def _backward(self, t, X, P, Dl):
        """Σ over children of their VJPs of δ[t−1, c], per vertex (None for the input)."""
        xp = self.xp
        cot = [None] * self.n
        for c in self.model.vertices[1:]:
            ci = c.index
            if not any(c.parents):
                continue  # the input needs no cotangent
            inputs = self._vjp_inputs(t, c, X)
            back = c.layer.vjp(xp, self._vp[ci], inputs, P[ci], Dl[ci], weights=self._F[ci])
            for p, b in zip(c.parents, back):
                if p:
                    cot[p] = b if cot[p] is None else cot[p] + b
        return cot

    def _backward_direct(self, t, X, P, Dl):
        """dfa: B_v δ[t−1, out] per vertex but the input and output (``direct``)."""
        return direct_cotangents(self.xp, self._dfa_cols, self._dfa_BT, Dl[self.out], self.n)

    def _vjp_inputs(self, t, c, X):
        """Where c's VJP is evaluated if it reads its inputs: `local`, the inputs
        of its value at t−1 (x[t−2, parents]); `frame`, those of δ[t−1,c]'s frame."""
        if not self._reads[c.index]:
            return [X[p] for p in c.parents]
        if self._vjp_frame:
            return [ring_read(self._ring_x[p], t - 1 - self._pair_lag[(p, c.index)])
                    for p in c.parents]
        return [self._X_prev[p] for p in c.parents]

    def _present_target(self, t, y):
        if not self.supervision_delay and self._fast and y.dtype == self._targets.dtype:
            return y  # d_y = 0: the ring would only copy y
        return present_target(self._targets, t, y, self.supervision_delay)

    def _factor_local(self, i, t):
        return self._S[i]

    def _factor_frame(self, i, t):
        return ring_read(self._ring_s[i], t - 1 - self._deriv_lag[i])

    def _factor_itd_y(self, i, t):
        return self._X[i] - self._X_prev[i]

    def _factor_itd_dy(self, i, t):
        xp = self.xp
        dx = self._X[i] - self._X_prev[i]
        da = self._P[i] - self._P_prev[i]
        finite = xp.abs(da) >= self.itd_epsilon
        safe = xp.where(finite, da, xp.ones_like(da))
        self._Q[i] = xp.where(finite, dx / safe, self._Q[i])
        return self._Q[i]

    def _record_history(self, t):
        for p, ring in self._ring_x.items():
            ring[t % ring.shape[0], ...] = self._X[p]
        for v, ring in self._ring_s.items():
            ring[t % ring.shape[0], ...] = self._S[v]

    def _paired_inputs(self, v):
        """The parents' x that g[t,v] pairs with: now, or of δ[t,v]'s frame."""
        if not self._pair_frame:
            return [self._X[p] for p in v.parents]
        return [ring_read(self._ring_x[p], self.tick - self._pair_lag[(p, v.index)])
                for p in v.parents]

    def _learn(self, t):
        """W ← (1 − ηλ) W − η g per vertex; with ``accumulate`` a, the sum of a
        ticks' steps every a-th tick; learned feedback takes W's step
        (Kolen–Pollack; Millidge et al. 2020, Eq. 6), sign-family feedback is refreshed."""
        keep = 1.0 - self.learning_rate * self.weight_decay
        due = not (t + 1) % self.accumulate
        for v in self.model.vertices[1:]:
            if self._has_params[v.index]:
                self._learn_vertex(v, due, keep)
        if due:
            self._refresh_feedback(self._redraw)

    def _learn_vertex(self, v, due, keep):
        # η is folded into δ (param_grads is linear in δ): step = η g
        i, acc = v.index, self.accumulate > 1
        steps = v.layer.param_grads(self.xp, self._paired_inputs(v),
                                    self.learning_rate * self._D[i])
        for k in v.param_names:
            key, step = f"{v.name}.{k}", steps[k]
            if acc:
                self._acc[key] += step
                if not due:
                    continue
                step = self._acc[key]
                self._acc[key] = self.xp.zeros_like(step)
            if k == "W":
                apply_step(self._vp[i][k], None, self._F[i] if self._learned else None, step, None,
                       self.weight_decay, keep)
            else:
                self._vp[i][k] -= step

    def run(self, stream, ticks, recorder=None, progress=None, chunk=None):
        """Step ``ticks`` times on frames from ``stream`` (chunks as
        ``drive.stream_chunks``; the recorder flushed and the NaN/Inf flags
        read once per chunk). With frozen weights a repeated (u, y) reaches the
        recorder as ``repeat`` (decided on the host copies); ``progress(n)`` per chunk."""
        check_run("GraphEngine.run", stream, ticks, recorder, progress, chunk)
        frozen, last = not self.learning_rate, None
        for u_host, y_host, frame_ids in stream_chunks(stream, ticks, recorder, chunk):
            n = len(u_host)
            u, y = self.backend.asarray(u_host), self.backend.asarray(y_host)
            if recorder is not None:
                repeats = (repeated_frames(u_host, y_host, last) if frozen
                           else np.zeros(n, dtype=bool)).tolist()
                last = (u_host[-1], y_host[-1])
                ids = frame_ids.tolist()
            for k in range(n):
                uk, yk = u[k, ...], y[k, ...]
                self.step(uk, yk)
                if recorder is not None:
                    recorder.record(self.tick, uk, yk, ids[k], repeats[k])
            if recorder is not None:
                recorder.flush()
            self.check_finite()
            if progress is not None:
                progress(n)

    def check_finite(self):
        """Raise NumericalError naming the first NaN/Inf since the last check
        (tick, vertex, quantity), from one host read of the flags."""
        start, stop = self._finite_from, self.tick + 1
        if stop <= start:
            return
        flags = np.asarray(self.backend.to_host(self._finite))
        ticks = np.arange(start, stop)
        bad = ~np.isfinite(flags[ticks % FINITE_RING])
        self._finite_from = stop
        if not bad.any():
            return
        row, slot = np.argwhere(bad)[0]
        q, i, _ = self._finite_slots[slot]
        raise NumericalError(ticks[row], i, FINITE_QUANTITIES[q], name=self.names[i])

    # ------------------------------------------------------------- accessors
    def _index(self, vertex):
        if isinstance(vertex, str):
            return self.model.vertex(vertex).index
        if isinstance(vertex, (bool, np.bool_)) or not isinstance(vertex, (int, np.integer)):
            raise SimulatorError(f"GraphEngine: vertex (layer): expected an index in "
                                 f"0..{self.n - 1} or a name ({', '.join(self.names)}), "
                                 f"got {shown(vertex)}")
        i = int(vertex)
        if not 0 <= i < self.n:
            raise SimulatorError(f"vertex (layer) index: expected 0..{self.n - 1}, got {i}")
        return i

    def _copy(self, a):
        return self.xp.asarray(a, copy=True)

    def state_views(self):
        """(x per vertex, δ per vertex (None for the input)): LIVE VIEWS, valid
        until the next ``step``, never to be written; copy to keep."""
        return self._X, self._D

    def state_blocks(self):
        """[(first, X, D)]: the fast path's stacked runs with consecutive indices,
        X (k+1, batch, w) x of first..first+k, D (k, batch, w) δ of
        first+1..first+k; live views as ``state_views``."""
        return self._state_blocks[(self.tick + 1) % 3] if self._fast else []

    def activity(self, vertex):
        """x[t, v] (a copy), shape (batch, *shape of v); v by index or name."""
        return self._copy(self._X[self._index(vertex)])

    def preactivation(self, vertex):
        """pre[t, v] (a copy)."""
        return self._copy(self._P[self._index(vertex)])

    def delta(self, vertex):
        """δ[t, v] = the estimate of ∂ℓ/∂pre_v (a copy); v ≥ 1."""
        i = self._index(vertex)
        if i == 0:
            raise SimulatorError("the input vertex (layer 0) has no delta")
        return self._copy(self._D[i])

    def gradients(self):
        """g[t] keyed like ``model.parameters()``: per vertex δ[t,v] paired with
        its inputs (Eq. 5 of Betti & Gori), summed over the batch."""
        out = {}
        for v, inputs, delta in self.gradient_factors():
            g = v.layer.param_grads(self.xp, inputs, delta)
            out.update({f"{v.name}.{k}": g[k] for k in v.param_names})
        return out

    def gradient_factors(self):
        """[(vertex, paired inputs, δ[t,v])] per vertex with parameters (live views)."""
        return [(v, self._paired_inputs(v), self._D[v.index])
                for v in self.model.vertices[1:] if self._has_params[v.index]]

    def parameters(self):
        """Copies of the current parameters keyed like ``model.parameters()``."""
        return {k: self._copy(a) for k, a in self._params.items()}

    def feedback_weights(self):
        """{"<layer>.W": copy of B} for the feedback in use (W itself for `transpose`);
        under ``dfa`` {"<vertex>.B": copy of B_v} per vertex but the input and output."""
        if self._dfa:
            return {f"{self.names[i]}.B": self._copy(b) for i, b in self._dfa_B.items()}
        out = {}
        for v in self.model.vertices[1:]:
            if "W" in v.param_names:
                f = self._F[v.index]
                out[f"{v.name}.W"] = self._copy(self._vp[v.index]["W"] if f is None else f)
        return out

    def current_model(self):
        """The engine's model (levelled if asked) with the current parameters."""
        return self.model.with_parameters({k: self.backend.to_host(a)
                                           for k, a in self._params.items()})

