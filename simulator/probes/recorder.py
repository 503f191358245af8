"""The Recorder: what a run keeps of every ``record.every``-th tick.

Every row the Recorder keeps norms of x and δ, the provenance tags and both
mismatch metrics against the reference gradient of the frame chosen by
``reference`` ("input": the frame of the x that g pairs with; "supervision":
the frame of δ's target); the reference ring itself is filled every tick.
Full neuron states are optional, at the same rows, for chosen layers.
Device-side values go into preallocated block buffers that are moved to the
host once per block (never per neuron, never per tick).
"""
import numpy as np

from ..errors import SimulatorError
from ..metrics import cosine_and_relative
from ..reference import factors_of
from .plan import block_ticks, states_in_place
from .tags import tag_table
from .trace import METRIC_KEYS, TAG_KEYS, Trace, _blank_padding

REFERENCES = ("input", "supervision")


def gram(xp, d1, x1, d2, x2):
    """⟨d1ᵀ x1, d2ᵀ x2⟩_F over the last two axes (batch, neurons) of stacked
    factors: Gram products of the batch, or, for a batch of one, the product
    of two dot products (the same number without a tiny matrix product per layer)."""
    if d1.shape[-2] == 1:
        return (xp.vecdot(d1[..., 0, :], d2[..., 0, :])
                * xp.vecdot(x1[..., 0, :], x2[..., 0, :]))
    dd = d1 @ xp.matrix_transpose(d2)
    xx = x1 @ xp.matrix_transpose(x2)
    return xp.sum(dd * xx, axis=(-2, -1))


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


def ring_pieces(ring, i0, lo, hi):
    """Slots of a reference ring of ``ring`` frames (tick i in slot i % ring)
    holding ticks i0 + lo .. i0 + hi − 1, as contiguous pieces (pos_lo,
    pos_hi, slot_lo, slot_hi): at most two (the ring wraps)."""
    out, p = [], lo
    while p < hi:
        s = (i0 + p) % ring
        q = min(hi, p + ring - s)
        out.append((p, q, s, s + q - p))
        p = q
    return out


def repeat_sources(frames, ref_frame, ring):
    """For a block of pending ``frames`` (tick index i, ..., repeat flag) the
    reference to use per frame: (src, fresh) with ``fresh`` the positions of
    the frames needing their own backprop and ``src[k]`` the index into
    ``fresh`` of frame k's reference, or −1 for a leading repeat whose
    reference is the ring slot of the tick before (``ref_frame`` says which
    frame each of the ``ring`` slots holds)."""
    src, fresh = np.empty(len(frames), dtype=np.int64), []
    for k, (i, _, _, rep) in enumerate(frames):
        if rep and i > 0 and (k > 0 or ref_frame[(i - 1) % ring] == i - 1):
            src[k] = src[k - 1] if k else -1
        else:
            src[k] = len(fresh)
            fresh.append(k)
    return src, fresh


class Recorder:
    """Records an Engine into host arrays, a row every ``plan.every`` ticks (see RecordPlan).

    A recorded tick costs two copies: x and δ of every layer go into a block
    buffer of K rows (and, pairing `frame` with metrics, the paired x); on
    numpy with every layer's states recorded (the default) that buffer is the
    host state arrays' rows themselves, so the states need no second copy;
    everything else is done per block in a few batched calls: norms
    (sqrt(sum(x²)) over the block), states (one transfer), tags (closed form,
    TagTable, where the engine's options make them deterministic — always for
    the chain Engine), and the mismatch. The backprop reference of the
    block's frames goes into a ring of 2L + d_y + 2 + K frames: with frozen
    weights ONE forward and backward pass over the block's distinct frames
    stacked into one batch, with weights read once per run, its factors
    written per layer straight into the ring's slots; learning on, per tick
    with that tick's weights, as it must. The mismatch of all K rows comes
    from two batched Gram products. Nothing is allocated for what the plan
    does not record (no metric arrays without ``plan.metrics``).
    """

    def __init__(self, engine, plan, reference="input"):
        if reference not in REFERENCES:
            raise SimulatorError(f"unknown reference {reference!r}; expected input or supervision")
        self.engine, self.plan, self.reference = engine, plan, reference
        self.xp = engine.xp
        L, B, N = engine.depth, engine.batch, engine.width
        T = plan.rows
        self._every, self._metrics = plan.every, plan.metrics
        self._host = {
            "x_norm": np.full((T, L + 1), np.nan), "delta_norm": np.full((T, L + 1), np.nan),
            "stream_frame": np.full(T, -1, dtype=np.int64),
            "tick": np.arange(0, plan.ticks, plan.every, dtype=np.int64),
        }
        for key in TAG_KEYS:
            self._host["tag_" + key] = np.full((T, L + 1), -1, dtype=np.int64)
        self._tag_rows = [self._host["tag_" + key] for key in TAG_KEYS]
        self._pair_rows = self._host["tag_pair" if reference == "input" else "tag_supervision"]
        self._tags = tag_table(engine)
        be = engine.backend
        self._K = K = block_ticks(plan, L + 1, B, N, plan.itemsize)
        # x and δ of every layer of the pending rows: (K, 2, L + 1, B, N); on
        # numpy with every layer's states recorded, the host state arrays'
        # rows are that buffer (one copy a tick, not two)
        self._direct = states_in_place(plan, L, be.device)
        self._blk = None if self._direct else be.zeros((K, 2, L + 1, B, N))
        self._blk_ticks = []
        self._blk_p = None
        self._R = 2 * L + engine.supervision_delay + 2     # frames a pairing reaches back
        if plan.metrics:
            for k in METRIC_KEYS:
                self._host[k] = np.full((T, L), np.nan)
            if getattr(engine, "pairing", "local") != "local":
                self._blk_p = be.zeros((K, L, B, N))
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
        if plan.states:
            S, nl = plan.state_ticks, len(plan.layers)
            self._host["state_x"] = np.full((S, nl, B, N), np.nan, dtype=be.host_dtype)
            self._host["state_delta"] = np.full((S, nl, B, N), np.nan, dtype=be.host_dtype)
            self._host["state_tick"] = self._host["tick"].copy()
            self._state_layers = (None if list(plan.layers) == list(range(L + 1)) else
                                  self.xp.asarray(np.array(plan.layers, dtype=np.int64)))

    # --------------------------------------------------------------- per tick
    def record(self, i, u, y, frame_id, repeat=False):
        """Record tick i (the engine has just made it), whose input/target were u, y;
        ``repeat`` says u, y and the weights are those of tick i − 1. Ticks that
        are not a multiple of ``plan.every`` only feed the reference ring."""
        metrics = self._metrics
        if metrics:
            if self._frozen:
                self._frames.append((i, u, y, repeat))
            else:
                self._reference_now(i, u, y, repeat)
        if i % self._every:
            if metrics and len(self._frames) >= self._K:
                self._process_block()
            return
        X, D, Xp = self.engine.stacked_state_views()
        k = len(self._blk_ticks)
        row = i // self._every
        if self._direct:
            self._host["state_x"][row, ...] = X
            self._host["state_delta"][row, ...] = D
        else:
            self._blk[k, 0, ...] = X
            self._blk[k, 1, ...] = D
        if self._blk_p is not None:
            self._blk_p[k, ...] = Xp
        self._blk_ticks.append(i)
        self._host["stream_frame"][row] = frame_id
        if self._tags is None:
            self._step_tags(row)
        if k + 1 == self._K or (metrics and len(self._frames) >= self._K):
            self._process_block()

    def _step_tags(self, row):
        """Tags of an engine without a TagTable: read from it, this tick."""
        eng = self.engine
        write_tags = getattr(eng, "write_tags", None)
        if write_tags is not None:
            write_tags(self._tag_rows, row)
            return
        tags = eng.tags()
        for key, rows in zip(TAG_KEYS, self._tag_rows):
            rows[row] = tags[key]

    # ------------------------------------------------------------- reference
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

    # --------------------------------------------------------------- blocks
    def _process_block(self):
        """References of the pending frames, then, for the pending rows (they
        are consecutive rows), norms, tags, states and the mismatch in a few
        batched calls each, written into the host arrays."""
        if self._metrics and self._frozen and self._frames:
            self._reference_block()
        ticks, self._blk_ticks = self._blk_ticks, []
        n = len(ticks)
        if not n:
            return
        xp, be, host = self.xp, self.engine.backend, self._host
        r0 = ticks[0] // self._every
        rows = slice(r0, r0 + n)
        bx, bd = self._block(rows, n)
        for key, b in (("x_norm", bx), ("delta_norm", bd)):
            flat = xp.reshape(b, b.shape[:2] + (-1,))
            host[key][rows] = be.to_host(xp.sqrt(xp.vecdot(flat, flat)))    # (n, L + 1)
        if self._tags is not None:
            tags = self._tags.rows(ticks)
            for j, arr in enumerate(self._tag_rows):
                arr[rows] = tags[:, j]
        if self.plan.states and not self._direct:
            blk = self._blk[:n, ...]
            both = blk if self._state_layers is None else xp.take(blk, self._state_layers, axis=2)
            both = be.to_host(both)
            host["state_x"][rows] = both[:, 0]
            host["state_delta"][rows] = both[:, 1]
        if self._metrics:
            self._measure(np.asarray(ticks), rows)

    def _block(self, rows, n):
        """x and δ (n, L + 1, B, N) of the pending rows: views of the block
        buffer, or of the host state arrays' ``rows`` when they are the buffer."""
        if self._direct:
            return self._host["state_x"][rows], self._host["state_delta"][rows]
        return self._blk[:n, 0, ...], self._blk[:n, 1, ...]

    def _measure(self, ticks, rows):
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
        bx, bd = self._block(rows, n)
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

    # ---------------------------------------------------------------- chunks
    def flush(self):
        """Measure and move to the host whatever is pending (run_stream calls
        it once per chunk; NaN/Inf is the engine's to find)."""
        if self._blk_ticks or (self._metrics and self._frames):
            self._process_block()

    def trace(self, meta=None):
        """The finished recording as a Trace (host arrays only). Without
        metrics the trace holds no metric arrays (readers see NaN for them,
        Trace.__getitem__)."""
        self.flush()
        arrays = dict(self._host)
        arrays["delta_norm"][:, 0] = np.nan
        arrays["sizes"] = np.array(self.engine.sizes, dtype=np.int64)
        if self.plan.states:
            arrays["state_layers"] = np.array(self.plan.layers, dtype=np.int64)
            _blank_padding(arrays, self.engine.sizes, self.plan.layers)
        return Trace(arrays, meta or {})
