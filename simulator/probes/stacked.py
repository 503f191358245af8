"""The mismatch of a chain engine's layers, stacked: every layer's x and δ
N wide (the engine's padded width) in one array, so that a block's Gram
products, the reference ring and its writes are a few calls for all layers.

The backprop reference (``factors_of``, plain chain backprop independent of
the engine) of the block's frames goes into a ring of 2L + d_y + 2 + K frames:
with frozen weights ONE forward and backward pass over the block's distinct
frames stacked into one batch, with weights read once per run, its factors
written per layer straight into the ring's slots; learning on, per tick with
that tick's weights, as it must. The mismatch of all K rows comes from two
batched Gram products.
"""
import numpy as np
from array_api_compat import array_namespace

from ..metrics import cosine_and_relative
from ..model.layers import activate
from ..options import loss_and_grad
from .ring import gram, repeat_sources, ring_pieces


def factors_of(weights, biases, activations, u, y, loss="mse"):
    """Per layer l = 1..L the backprop factors (x^{l-1}, δ^l) of batch (u, y),
    weights and biases already arrays in u's namespace: one loop forward, one
    backward (δ^L = σ'_L ⊙ ∂ℓ/∂x^L, δ^l = σ'_l ⊙ (δ^{l+1} W_l)); and ℓ."""
    xp = array_namespace(u)
    xs, ds = [u], [None]
    for w, b, act in zip(weights, biases, activations):
        x, d = activate(xp, act, xs[-1] @ xp.matrix_transpose(w) + b)
        xs.append(x)
        ds.append(d)
    value, grad = loss_and_grad(xp, loss, xs[-1], y)
    deltas = [None] * len(xs)
    deltas[-1] = ds[-1] * grad
    for l in range(len(xs) - 2, 0, -1):
        deltas[l] = ds[l] * (deltas[l + 1] @ weights[l])
    return [(xs[l - 1], deltas[l]) for l in range(1, len(xs))], value


def _layer_lags(lag, valid):
    """Per layer (column), the one lag (tick − paired frame) of its valid rows,
    or None when some layer's valid rows have more than one; a layer with no
    valid row gets lag 0 (its rows are NaN whatever is read)."""
    big = np.iinfo(np.int64).max
    hi = np.where(valid, lag, -big).max(axis=0)
    lo = np.where(valid, lag, big).min(axis=0)
    none = ~valid.any(axis=0)
    if not np.all((hi == lo) | none):
        return None
    return np.where(none, 0, hi)


class StackedMetrics:
    """The metrics of a Recorder on a chain engine (``stacked_state_views``):
    ``frame`` feeds every tick to the reference ring, ``copy`` keeps what a
    recorded row needs beyond the Recorder's block (the paired x, pairing
    `frame`), ``reference`` does the pending frames' backprop and ``measure``
    the block's mismatch, into the Recorder's ``host`` arrays."""

    def __init__(self, engine, K, host, pair_rows, every):
        self.engine, self.xp, self._K = engine, engine.xp, K
        self._host, self._pair_rows, self._every = host, pair_rows, every
        be = engine.backend
        L, B, N = engine.depth, engine.batch, engine.width
        self._R = 2 * L + engine.supervision_delay + 2     # frames a pairing reaches back
        self._blk_p = (be.zeros((K, L, B, N)) if getattr(engine, "pairing", "local") != "local"
                       else None)
        self._ring = RR = self._R + K
        sizes = engine.sizes
        # padded Gram work (x and δ of every layer N wide) over the true work
        self._padded_waste = 2 * L * N / max(1, sum(sizes[:-1]) + sum(sizes[1:]))
        self._ref_d = be.zeros((RR, L, B, N))
        self._ref_x = be.zeros((RR, L, B, N))
        self._ref_gg = be.zeros((RR, L))
        self._ref_frame = np.full(RR, -1, dtype=np.int64)
        self._frames = []             # frozen: (tick, u, y, repeat) not yet referenced
        self._frozen = not engine.learning_rate
        self._params = None           # frozen: the weights and biases, read once

    def frame(self, i, u, y, repeat):
        """Tick i's frame: kept for the block's batched reference (frozen) or
        referenced now (learning on)."""
        if self._frozen:
            self._frames.append((i, u, y, repeat))
        else:
            self._reference_now(i, u, y, repeat)

    def due(self):
        """Whether the pending frames fill a block (the ring holds no more)."""
        return len(self._frames) >= self._K

    def pending(self):
        """Whether frames wait for their reference."""
        return bool(self._frames)

    def copy(self, k, views):
        """Row k of the block: the paired x (pairing `frame`) of ``views``."""
        if self._blk_p is not None:
            self._blk_p[k, ...] = views[2]

    def reference(self):
        """The pending frames' references into the ring (frozen weights)."""
        if self._frozen and self._frames:
            self._reference_block()

    def _ranges(self, i0, lo, hi):
        """Ring slots of ticks i0 + lo .. i0 + hi − 1 (``ring_pieces``)."""
        return ring_pieces(self._ring, i0, lo, hi)

    def _reference_now(self, i, u, y, repeat):
        """Learning on: backprop of frame i with the weights of tick i, into the ring."""
        RR, slot = self._ring, i % self._ring
        prev = (i - 1) % RR
        if repeat and i > 0 and self._ref_frame[prev] == i - 1:
            self._ref_d[slot, ...] = self._ref_d[prev, ...]
            self._ref_x[slot, ...] = self._ref_x[prev, ...]
            self._ref_gg[slot, ...] = self._ref_gg[prev, ...]
        else:
            eng = self.engine
            self._write_reference(i, np.zeros(1, dtype=np.int64), [u], [y],
                                  eng.weights(), eng.biases())
        self._ref_frame[slot] = i

    def _reference_block(self):
        """Frozen weights: one batched backprop over the pending frames that are
        not repeats of the frame before, written straight into the ring."""
        frames, self._frames = self._frames, []
        RR, i0 = self._ring, frames[0][0]
        src, fresh = repeat_sources(frames, self._ref_frame, RR)
        if self._params is None:
            self._params = (self.engine.weights(), self.engine.biases())
        self._write_reference(i0, src, [frames[k][1] for k in fresh],
                              [frames[k][2] for k in fresh], *self._params)
        ticks = i0 + np.arange(len(frames))
        self._ref_frame[ticks % RR] = ticks

    def _write_reference(self, i0, src, us, ys, weights, biases):
        """Ring slots of ticks i0 .. i0 + len(src) − 1: tick i0 + k takes the
        backprop factors of frame src[k] of (us, ys), computed here in one
        batched pass; src −1 (a leading repeat) takes the slot of tick i0 − 1."""
        eng, xp = self.engine, self.xp
        n = len(src)
        m = int(np.argmax(src >= 0)) if (src >= 0).any() else n
        if m:
            prev = (i0 - 1) % self._ring
            for _, _, a, b in self._ranges(i0, 0, m):
                self._ref_d[a:b, ...] = self._ref_d[prev:prev + 1, ...]
                self._ref_x[a:b, ...] = self._ref_x[prev:prev + 1, ...]
                self._ref_gg[a:b, ...] = self._ref_gg[prev:prev + 1, ...]
        if not us:
            return
        F, B = len(us), us[0].shape[0]
        U = xp.stack(us) if F > 1 else xp.expand_dims(us[0], axis=0)
        Y = xp.stack(ys) if F > 1 else xp.expand_dims(ys[0], axis=0)
        pairs, _ = factors_of(weights, biases, eng.activations,
                              xp.reshape(U, (F * B, U.shape[2])),
                              xp.reshape(Y, (F * B, Y.shape[2])), eng.loss)
        keep = src[m:]
        spread = None if np.array_equal(keep, np.arange(F)) else xp.asarray(keep)
        pieces = self._ranges(i0, m, n)
        N = self._ref_x.shape[-1]
        if all(x.shape[1] == d.shape[1] == N for x, d in pairs):
            # every layer as wide as the ring: the layers stacked once
            # (F, L, B, N), ⟨G, G⟩ of each distinct frame in one call, and one
            # spread and one copy per ring piece instead of some per layer
            X = xp.stack([xp.reshape(x, (F, B, N)) for x, _ in pairs], axis=1)
            D = xp.stack([xp.reshape(d, (F, B, N)) for _, d in pairs], axis=1)
            GG = gram(xp, D, X, D, X)
            if spread is not None:
                X, D = xp.take(X, spread, axis=0), xp.take(D, spread, axis=0)
                GG = xp.take(GG, spread, axis=0)
            for p, q, a, b in pieces:
                self._ref_x[a:b, ...] = X[p - m:q - m, ...]
                self._ref_d[a:b, ...] = D[p - m:q - m, ...]
                self._ref_gg[a:b, ...] = GG[p - m:q - m, ...]
            return
        # layers of unequal widths: ⟨G, G⟩ per layer on the true widths of the
        # distinct frames where padding would more than double the Gram work or
        # frames repeat (a held frame's ⟨G, G⟩ is formed once, not per tick),
        # else on the ring in one call
        per_layer = self._padded_waste > 2 or spread is not None
        gg = []
        for l, (x, d) in enumerate(pairs):
            x3 = xp.reshape(x, (F, B, x.shape[1]))
            d3 = xp.reshape(d, (F, B, d.shape[1]))
            if per_layer:
                gg.append(gram(xp, d3, x3, d3, x3))
            if spread is not None:
                x3, d3 = xp.take(x3, spread, axis=0), xp.take(d3, spread, axis=0)
            nx, nd = x3.shape[2], d3.shape[2]
            for p, q, a, b in pieces:
                self._ref_x[a:b, l, :, :nx] = x3[p - m:q - m, ...]
                self._ref_d[a:b, l, :, :nd] = d3[p - m:q - m, ...]
        if per_layer:
            GG = xp.stack(gg, axis=1)
            if spread is not None:
                GG = xp.take(GG, spread, axis=0)
        for p, q, a, b in pieces:
            if per_layer:
                self._ref_gg[a:b, ...] = GG[p - m:q - m, ...]
            else:
                d4, x4 = self._ref_d[a:b, ...], self._ref_x[a:b, ...]
                self._ref_gg[a:b, ...] = gram(xp, d4, x4, d4, x4)

    def measure(self, ticks, rows, bx, bd):
        """Mismatch of the block's rows against the ring's references of their
        paired frames: two batched Gram products."""
        xp, be, host = self.xp, self.engine.backend, self._host
        L, R, RR = self.engine.depth, self._R, self._ring
        n = len(ticks)
        B, N = self.engine.batch, self.engine.width
        t = ticks[:, None]
        frames = self._pair_rows[rows, 1:]                          # (n, L)
        valid = (frames >= 0) & (frames > t - R)
        slots = np.where(valid, frames % RR, t % RR)
        valid &= self._ref_frame[slots] == frames
        ix = xp.asarray((slots * L + np.arange(L)).reshape(-1))
        GG = xp.reshape(xp.take(xp.reshape(self._ref_gg, (-1,)), ix), (n, L))
        d = bd[:, 1:, ...]
        x = bx[:, :L, ...] if self._blk_p is None else self._blk_p[:n, ...]
        gg = gram(xp, d, x, d, x)
        # slices pay a few calls per layer, gathers copy B·N per layer and row:
        # measured, slices win from batch 2 on (L = 6, w 128, B 16: 2.01x ->
        # 1.91x recorded/bare) and lose at batch 1 (L = 64: 2.42x -> 2.50x)
        lags = _layer_lags(t - frames, valid) if self._every == 1 and B > 1 else None
        if lags is None:
            # lags that change within the block (a warm-up, tags read from the
            # engine) or rows apart: gather each row's reference factors
            d_ref = xp.reshape(xp.take(xp.reshape(self._ref_d, (RR * L, B, N)), ix, axis=0),
                               (n, L, B, N))
            x_ref = xp.reshape(xp.take(xp.reshape(self._ref_x, (RR * L, B, N)), ix, axis=0),
                               (n, L, B, N))
            gG = gram(xp, d, x, d_ref, x_ref)
        else:
            # every tick a row, each layer pairing it with the frame a fixed lag
            # back: the layer's references are consecutive ring slots, read as
            # slices, not gathered into copies
            cols = []
            for l in range(L):
                parts = [gram(xp, d[p:q, l, ...], x[p:q, l, ...],
                               self._ref_d[a:b, l, ...], self._ref_x[a:b, l, ...])
                         for p, q, a, b in self._ranges(int(ticks[0]) - int(lags[l]), 0, n)]
                cols.append(parts[0] if len(parts) == 1 else xp.concat(parts))
            gG = xp.stack(cols, axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            cos, rel = cosine_and_relative(xp, gg, gG, GG)
            nan = np.where(valid, 0.0, np.nan)
            host["mismatch_cos"][rows] = be.to_host(cos) + nan
            host["mismatch_rel"][rows] = be.to_host(rel) + nan
            host["grad_norm"][rows] = be.to_host(xp.sqrt(gg))
            host["ref_norm"][rows] = be.to_host(xp.sqrt(GG)) + nan
