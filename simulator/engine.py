"""The tick engine: every neuron of every layer responds one tick late (SPEC §1).

All layers are stacked into (L+1, B, N) arrays, zero-padded to the widest layer
N, so one tick is a handful of batched array calls whatever the depth: one
matmul moves the whole forward wave, one moves the whole backward wave. The
state at tick t is read, the state at t+1 is written into separate buffers,
then the two are swapped — no layer ever sees a value from its own tick.

Frame numbering: the engine starts empty at tick −1; ``step`` number k makes
tick k and presents input frame k, so a frame's index is the tick at which it
entered layer 0. Tags (integer frame indices, −1 = empty) travel with the
waves by the same tick rule as the values.

NaN/Inf: every tick writes, per quantity and layer, whether x, a, σ' and δ are
all finite into a small device ring (FINITE_RING ticks); the host reads it once
per ring (or at ``check_finite``), so the first non-finite value is found
exactly — tick, layer and which quantity — whatever the chunking, at the cost
of one matrix-vector product of the state block with zeros per tick: 0·v is 0
for every finite v, however large (no overflow), and NaN for NaN or ±Inf, and
a sum is NaN iff one of its terms is (a dot product never skips a zero
factor). Finite values, however large, never trip it.
"""
import numpy as np

from .arguments import check_int, check_number, check_run, check_seed, check_type, shown
from .backend import Backend
from .drive import run_stream
from .errors import NumericalError, SimulatorError
from .model import Model
from .model.tick import FINITE_RING, GraphEngine
from .model.layers import ZERO_AT_ZERO, activate
from .network import Network
from .options import frame_lags, loss_grad, present_target, set_rule_options

# Rows of the delta tag array: supervision frame, output-activity frame, and
# the lowest / highest frame any of its σ' factors came from.
SUP, OUT, SIG_LO, SIG_HI = range(4)
# The state block's quantities (x, a, σ', δ) as NumericalError names them, in
# the order one (tick, layer) reports them; σ' is only non-finite where x is.
FINITE_KINDS = ("activity", "preactivation", "activity", "delta")


def _activation_groups(activations):
    """Contiguous runs of layers 1..L sharing σ, as (first, stop, name)."""
    groups, start = [], 1
    for l in range(2, len(activations) + 2):
        if l == len(activations) + 1 or activations[l - 1] != activations[start - 1]:
            groups.append((start, l, activations[start - 1]))
            start = l
    return groups


class Engine:
    """Backprop diffusion on a time-delayed network (Betti & Gori, Eqs. 1–5).

    Per tick, from the state at t:  x[t+1,0] = u;  a[t+1,l+1] = W_l x[t,l] + b_l;
    δ[t+1,L] = σ'_L ⊙ ∂ℓ/∂x(x[t+1,L], y[t+1−d_y]);  δ[t+1,l] = D[t,l] ⊙ F_l δ[t,l+1];
    and g[t,l] = δ[t,l] x[t,l−1]ᵀ (Eq. 5) estimates ∂ℓ/∂W_{l−1}. Options are the
    named choices of SPEC §1 (see simulator.options); learning applies
    W ← W − η g every tick (or the sum of g every ``accumulate`` ticks).

    ``Engine(model, ...)`` with a ``simulator.Model`` (a graph of layers) returns
    a ``GraphEngine`` on it (same keywords, plus ``levelled``); a ``Network``
    keeps this stacked engine.
    """

    def __new__(cls, network, *args, **kwargs):
        if isinstance(network, Model) and not isinstance(network, Network):
            return GraphEngine(network, *args, **kwargs)
        return super().__new__(cls)

    def __init__(self, network, loss="mse", feedback="transpose", derivative="local",
                 pairing="local", supervision_delay=0, learning_rate=0.0, batch=1,
                 accumulate=1, weight_decay=0.0, feedback_seed=0, feedback_scale=1.0,
                 itd_epsilon=1e-6, device="cpu", dtype="float64"):
        check_type("Engine", "network", network, Network,
                   "a simulator.Network or simulator.Model")
        set_rule_options(self, loss, feedback, derivative, pairing, supervision_delay, batch,
                         accumulate, learning_rate, weight_decay, itd_epsilon)
        check_seed("Engine", feedback_seed, "feedback_seed")
        feedback_scale = check_number("Engine", "feedback_scale", feedback_scale, 0.0)
        self.backend = Backend(device, dtype)
        self.xp = self.backend.xp
        self.activations = list(network.activations)
        self.sizes = network.sizes
        self.depth = network.depth
        self.width = max(self.sizes)
        self._groups = _activation_groups(self.activations)
        self._build_parameters(network, feedback_seed, feedback_scale)
        self._build_state()
        self.tick = -1

    # ----------------------------------------------------------- construction
    def _build_parameters(self, network, feedback_seed, feedback_scale):
        L, N, be = self.depth, self.width, self.backend
        wt = np.zeros((L, N, N))
        bias = np.zeros((L, 1, N))
        for l, (w, b) in enumerate(zip(network.weights, network.biases)):
            wt[l, :w.shape[1], :w.shape[0]] = w.T
            bias[l, 0, :b.shape[0]] = b
        self._WT, self._b = be.asarray(wt), be.asarray(bias)
        self._F = None
        if self.feedback in ("random", "learned"):
            # Fixed random B_l shaped like W_l, drawn on the host (Lillicrap et al.).
            g = np.random.default_rng(feedback_seed)
            fb = np.zeros((L, N, N))
            for l, w in enumerate(network.weights):
                fb[l, :w.shape[0], :w.shape[1]] = g.normal(
                    0.0, feedback_scale / np.sqrt(w.shape[1]), w.shape)
            self._F = be.asarray(fb)
        self._refresh_feedback()
        mask = np.zeros((L + 1, 1, N))
        for l, n in enumerate(self.sizes):
            mask[l, 0, :n] = 1.0
        needs_mask = not all(ZERO_AT_ZERO[a] for a in self.activations)
        # Padded neurons must stay at zero or learning would leak into them.
        self._mask = be.asarray(mask) if needs_mask else None

    def _refresh_feedback(self):
        xp = self.xp
        if self.feedback == "transpose":
            self._F = xp.matrix_transpose(self._WT)
        elif self.feedback == "sign":
            self._F = xp.sign(xp.matrix_transpose(self._WT))

    def _build_state(self):
        L, B, N, be = self.depth, self.batch, self.width, self.backend
        # x, a, σ', δ of one tick live in one (4, L+1, B, N) block, so that one
        # pass over it tells which of them hold a non-finite value.
        self._blk, self._blk_n = be.zeros((4, L + 1, B, N)), be.zeros((4, L + 1, B, N))
        self._X, self._A, self._S, self._D = (self._blk[k, ...] for k in range(4))
        self._Xn, self._An, self._Sn, self._Dn = (self._blk_n[k, ...] for k in range(4))
        self._Q = be.zeros((L - 1, B, N)) if self.derivative == "itd-dy" else None
        d_y = self.supervision_delay
        self._targets = be.zeros((d_y + 1, B, self.sizes[-1]))
        self._tx = np.full(L + 1, -1, dtype=np.int64)          # input tag of x[t,l]
        self._tx_prev = self._tx.copy()
        self._td = np.full((4, L + 1), -1, dtype=np.int64)      # tags of δ[t,l]
        deriv_lags, pair_lags = frame_lags(L)
        lags = []
        if self.derivative == "frame":
            lags += deriv_lags
        if self.pairing == "frame":
            lags += pair_lags
        self.history = max(lags, default=0) + 1 if lags else 0
        R = self.history
        self._ring_x = be.zeros((R * (L + 1), B, N)) if self.pairing == "frame" else None
        self._ring_s = be.zeros((R * (L + 1), B, N)) if self.derivative == "frame" else None
        self._ring_tags = np.full((max(R, 1), L + 1), -1, dtype=np.int64)
        if R:
            # Row (tick % R) of each table holds flat ring indices for every layer,
            # built once so the tick loop never moves indices to the device.
            self._deriv_idx = self._index_table(deriv_lags, range(1, L))
            self._pair_idx = self._index_table(pair_lags, range(0, L))
        if self.learning_rate and self.accumulate > 1:
            self._acc_w = be.zeros((L, N, N))
            self._acc_b = be.zeros((L, 1, N))
        # Row t % FINITE_RING: per (quantity, layer) 0 if all finite, NaN if not.
        self._finite = be.zeros((FINITE_RING, 4 * (L + 1)))
        self._zeros = self.xp.zeros((B * N,), dtype=be.dtype)
        self._finite_rows = (4 * (L + 1), B * N)
        self._finite_from = 0          # first tick whose flags the host has not read

    def _index_table(self, lags, layers):
        R, L = self.history, self.depth
        host = np.array([[((t - lag) % R) * (L + 1) + layer for lag, layer in zip(lags, layers)]
                         for t in range(R)], dtype=np.int64)
        return [self.xp.asarray(row) for row in host], host

    # ------------------------------------------------------------------ tick
    def step(self, u, y):
        """Advance one tick: u (batch, n_0) is the new input frame, y (batch, n_L)
        the new target frame, both arrays of the engine's namespace (numpy arrays
        are accepted on the cpu device). Returns nothing; read the state through
        the accessors. A wrong shape raises SimulatorError naming the expected
        and the given shape; a non-finite value raises NumericalError (at the
        latest FINITE_RING ticks later, or at ``check_finite``) naming the first
        tick and layer where it appeared."""
        xp, L = self.xp, self.depth
        self._check_shape("input frame u", u, self.sizes[0])
        self._check_shape("target frame y", y, self.sizes[-1])
        t = self.tick + 1
        X, A, S, D = self._X, self._A, self._S, self._D
        Xn, An, Sn, Dn = self._Xn, self._An, self._Sn, self._Dn
        deriv = self._derivative(t)                     # D[t−1, l], before Xn is overwritten
        An[1:, ...] = X[:-1, ...] @ self._WT + self._b  # forward wave, all layers at once
        Xn[0, :, :self.sizes[0]] = u
        for lo, hi, name in self._groups:
            Xn[lo:hi, ...], Sn[lo:hi, ...] = activate(xp, name, An[lo:hi, ...])
        if self._mask is not None:
            Xn[...] = Xn * self._mask
        target = self._present_target(t, y)
        nL = self.sizes[-1]
        if target is None:
            Dn[L, ...] = 0.0
        else:
            err = loss_grad(xp, self.loss, Xn[L, :, :nL], target)
            Dn[L, :, :nL] = Sn[L, :, :nL] * err
        if L > 1:
            back = D[2:, ...] @ self._F[1:L, ...]  # backward wave, all layers at once
            Dn[1:L, ...] = back if deriv is None else deriv * back
        self._X, self._Xn, self._A, self._An = Xn, X, An, A
        self._S, self._Sn, self._D, self._Dn = Sn, S, Dn, D
        self._blk, self._blk_n = self._blk_n, self._blk
        self._advance_tags(t, target is not None)
        self.tick = t
        self._record_history(t)
        if self.learning_rate:
            self._learn(t)
        self._flag_finite(t)

    def _check_shape(self, what, array, width):
        shape = getattr(array, "shape", None)
        if (shape is None or tuple(shape) != (self.batch, width)
                or getattr(array.dtype, "kind", "f") not in "fiub"):
            raise SimulatorError(f"Engine.step: {what}: expected a numeric array of shape "
                                 f"(batch, width) = {(self.batch, width)}, got {shown(array)}")

    def _flag_finite(self, t):
        """Store, for tick t, per quantity and layer, 0 if all of x, a, σ', δ are
        finite and NaN if not: the state block times zeros (module docstring),
        one matrix-vector product, on numpy straight into the ring's row."""
        xp = self.xp
        flat = xp.reshape(self._blk, self._finite_rows)
        if xp is np:
            np.matmul(flat, self._zeros, out=self._finite[t % FINITE_RING])
        else:
            self._finite[t % FINITE_RING, :] = flat @ self._zeros
        if t - self._finite_from + 1 == FINITE_RING:
            self.check_finite()

    def _present_target(self, t, y):
        return present_target(self._targets, t, y, self.supervision_delay)

    def _derivative(self, t):
        """D[t−1, l] for l = 1..L−1 (None means the factor 1)."""
        xp, L = self.xp, self.depth
        kind = self.derivative
        if kind == "none" or L < 2:
            return None
        if kind == "local":
            return self._S[1:L, ...]
        if kind == "frame":
            return xp.take(self._ring_s, self._deriv_idx[0][(t - 1) % self.history], axis=0)
        dx = self._X[1:L, ...] - self._Xn[1:L, ...]  # _Xn still holds tick t−2
        if kind == "itd-y":
            return dx
        da = self._A[1:L, ...] - self._An[1:L, ...]
        finite = xp.abs(da) >= self.itd_epsilon
        safe = xp.where(finite, da, xp.ones_like(da))
        self._Q = xp.where(finite, dx / safe, self._Q)
        return self._Q

    def _advance_tags(self, t, supervised):
        L = self.depth
        tx, td = self._tx, self._td
        lo_new, hi_new = self._derivative_tags(t)
        self._tx_prev = tx.copy()
        tx[1:] = tx[:-1]
        tx[0] = t
        td[:, 1:L] = td[:, 2:]
        if lo_new is not None:
            td[SIG_LO, 1:L] = np.minimum(td[SIG_LO, 1:L], lo_new)
            td[SIG_HI, 1:L] = np.maximum(td[SIG_HI, 1:L], hi_new)
        if supervised:
            td[:, L] = (t - self.supervision_delay, tx[L], tx[L], tx[L])
        else:
            td[:, L] = -1
        self._ring_tags[t % self._ring_tags.shape[0]] = tx

    def _derivative_tags(self, t):
        """Frame range of the σ' factor that D[t−1, l] contributes, l = 1..L−1."""
        L, kind = self.depth, self.derivative
        if kind == "none" or L < 2:
            return None, None
        # Copies: _advance_tags shifts _tx in place after calling this.
        if kind == "local":
            tags = self._tx[1:L].copy()
            return tags, tags
        if kind == "frame":
            rows = self._deriv_idx[1][(t - 1) % self.history]
            tags = self._ring_tags[rows // (L + 1), np.arange(1, L)]
            return tags, tags
        return self._tx_prev[1:L].copy(), self._tx[1:L].copy()

    def _record_history(self, t):
        L, R = self.depth, self.history
        if not R:
            return
        rows = slice((t % R) * (L + 1), (t % R + 1) * (L + 1))
        if self._ring_x is not None:
            self._ring_x[rows, ...] = self._X
        if self._ring_s is not None:
            self._ring_s[rows, ...] = self._S

    def _paired_inputs(self):
        """x[., l−1] paired with δ[t, l] in g, for l = 1..L, stacked (L, B, N)."""
        if self.pairing == "local":
            return self._X[:-1, ...]
        return self.xp.take(self._ring_x, self._pair_idx[0][self.tick % self.history], axis=0)

    def _learn(self, t):
        xp = self.xp
        # η is folded into the small (L, B, N) delta, not the (L, N, N) gradient:
        # at large widths a pass over the weights costs as much as a matmul.
        scaled = self.learning_rate * self._D[1:, ...]
        step_w = xp.matrix_transpose(self._paired_inputs()) @ scaled
        step_b = xp.sum(scaled, axis=1, keepdims=True)
        if self.accumulate > 1:
            self._acc_w += step_w
            self._acc_b += step_b
            if (t + 1) % self.accumulate:
                return
            step_w, step_b = self._acc_w, self._acc_b
        self._apply_update(step_w, step_b)
        if self.accumulate > 1:
            self._acc_w = xp.zeros_like(step_w)
            self._acc_b = xp.zeros_like(step_b)

    def _apply_update(self, step_w, step_b):
        """W ← (1 − ηλ) W − η g given step = η g, in place."""
        xp = self.xp
        if self.weight_decay:
            keep = 1.0 - self.learning_rate * self.weight_decay
            self._WT *= keep
            if self.feedback == "learned":
                self._F *= keep
        self._WT -= step_w
        self._b -= step_b
        if self.feedback == "learned":
            # Eq. 6 of Millidge et al. / Kolen–Pollack: B_l gets W_l's own update.
            self._F -= xp.matrix_transpose(step_w)
        self._refresh_feedback()

    def run(self, stream, ticks, recorder=None, progress=None, chunk=None):
        """Step ``ticks`` times on frames from ``stream``.

        Frames are generated on the host ``chunk`` ticks at a time (default: the
        recorder's plan.chunk, else 256) and moved to the device once per chunk; the recorder (if any) sees every tick; NaN/Inf
        stops the run (NumericalError) with the tick, layer and quantity where
        it first appeared, the same whatever the chunk size.
        """
        check_run("Engine.run", stream, ticks, recorder, progress, chunk)
        run_stream(self, stream, ticks, recorder, progress, chunk)

    def check_finite(self):
        """Raise NumericalError naming the first tick since the last check at which
        some x, a or δ entry was NaN or ±Inf, its lowest such layer and which
        quantity (activity before preactivation before delta at one layer).
        One host transfer of the per-tick flags; finite values never trip it."""
        start, stop = self._finite_from, self.tick + 1
        if stop <= start:
            return
        flags = np.asarray(self.backend.to_host(self._finite))
        ticks = np.arange(start, stop)
        ok = np.isfinite(flags[ticks % FINITE_RING]).reshape(len(ticks), 4, self.depth + 1)
        self._finite_from = stop
        if ok.all():
            return
        i, layer, kind = np.argwhere(~ok.transpose(0, 2, 1))[0]
        raise NumericalError(ticks[i], layer, FINITE_KINDS[kind])

    # ------------------------------------------------------------- accessors
    def gradients(self):
        """g[t,l] = δ[t,l] x[·,l−1]ᵀ summed over the batch (Eq. 5), as a list shaped
        like the weights: entry i estimates ∂ℓ/∂W_i. The x is the current one
        (pairing `local`) or the one of the delta's frame (pairing `frame`)."""
        xp = self.xp
        g = xp.matrix_transpose(self._D[1:, ...]) @ self._paired_inputs()
        return [g[i, :self.sizes[i + 1], :self.sizes[i]] for i in range(self.depth)]

    def bias_gradients(self):
        """δ[t,l] summed over the batch: the estimate of ∂ℓ/∂b_{l−1}."""
        d = self.xp.sum(self._D[1:, ...], axis=1)
        return [d[i, :self.sizes[i + 1]] for i in range(self.depth)]

    def weights(self):
        """Copies of the current W_l (learning updates the engine's own in place)."""
        w = self.xp.matrix_transpose(self._WT)
        return [self._copy(w[i, :self.sizes[i + 1], :self.sizes[i]]) for i in range(self.depth)]

    def biases(self):
        """Copies of the current b_l."""
        return [self._copy(self._b[i, 0, :self.sizes[i + 1]]) for i in range(self.depth)]

    def feedback_matrices(self):
        """Copies of F_l shaped like W_l, for l = 0..L−1 (F_0 is never used)."""
        return [self._copy(self._F[i, :self.sizes[i + 1], :self.sizes[i]])
                for i in range(self.depth)]

    def _copy(self, view):
        return self.xp.asarray(view, copy=True)

    def network(self):
        """The current weights as a host Network (for the reference)."""
        be = self.backend
        return Network([be.to_host(w) for w in self.weights()],
                       [be.to_host(b) for b in self.biases()], self.activations)

    def activity(self, layer):
        """A copy of x[t, layer] for layer 0..L, shape (batch, n_layer)."""
        layer = check_int("Engine.activity", "layer", layer, 0, self.depth)
        return self._copy(self._X[layer, :, :self.sizes[layer]])

    def preactivation(self, layer):
        """A copy of a[t, layer] for layer 1..L, shape (batch, n_layer)."""
        layer = check_int("Engine.preactivation", "layer", layer, 1, self.depth)
        return self._copy(self._A[layer, :, :self.sizes[layer]])

    def delta(self, layer):
        """A copy of δ[t, layer] for layer 1..L, shape (batch, n_layer)."""
        layer = check_int("Engine.delta", "layer", layer, 1, self.depth)
        return self._copy(self._D[layer, :, :self.sizes[layer]])

    def tags(self):
        """Host copies of the provenance tags at the current tick.

        Keys: ``input`` (frame in x[t,l]), ``supervision``, ``output`` (frame of
        the output activity in δ[t,l]), ``sigma_lo``/``sigma_hi`` (frame range of
        its σ' factors) and ``pair`` (frame of the x that g[t,l] pairs with);
        arrays of length L+1, −1 where empty (layer 0 has no delta).
        """
        td = self._td
        return {"input": self._tx.copy(), "supervision": td[SUP].copy(),
                "output": td[OUT].copy(), "sigma_lo": td[SIG_LO].copy(),
                "sigma_hi": td[SIG_HI].copy(), "pair": self._pair_tags()}

    def write_tags(self, rows, row):
        """Write the tags of ``tags()`` straight into row ``row`` of the host
        arrays ``rows`` (input, supervision, output, sigma_lo, sigma_hi, pair —
        the order of probes.trace.TAG_KEYS): what a recorder does every tick, without
        the copies."""
        td = self._td
        rows[0][row] = self._tx
        rows[1][row] = td[SUP]
        rows[2][row] = td[OUT]
        rows[3][row] = td[SIG_LO]
        rows[4][row] = td[SIG_HI]
        pair = rows[5][row]
        pair[0] = -1
        if self.pairing == "local":
            pair[1:] = self._tx[:-1]
        else:
            pair[1:] = self._pair_tags()[1:]

    def _pair_tags(self):
        L = self.depth
        out = np.full(L + 1, -1, dtype=np.int64)
        if self.pairing == "local":
            out[1:] = self._tx[:-1]
        else:
            rows = self._pair_idx[1][self.tick % self.history]
            out[1:] = self._ring_tags[rows // (L + 1), np.arange(0, L)]
        return out

    # padded stacks, for probes that vectorize over layers
    def stacked_state_views(self):
        """(X, D, paired X) as padded (L+1|L, B, N) device arrays: LIVE VIEWS of
        the engine's buffers, valid only until the next ``step`` (which reuses
        them) and never to be written into. Probes read them within one tick;
        anything kept longer must be copied (or use activity/delta, which copy)."""
        return self._X, self._D, self._paired_inputs()


