"""Provenance tags of ``GraphEngine`` (SPEC "Graphs"): which input frame
every x and δ holds, and the frames of its σ' factors and pairing.

The tags of tick t are computed from those of t−1 by a gather fixed by the
graph (x: min/max over its parents; δ: over its children and its σ' factor);
on a levelled graph each vertex carries one frame (lo = hi), on an
unlevelled one the ``*_hi`` rows give the newest. Once a run is steady (local
or no σ' factors, local pairing) every later tick is a shift of the steady
one and is computed on reading instead (``_build_tags``).
"""
import numpy as np

# Rows of the delta tag table.
SUP_LO, SUP_HI, OUT_LO, OUT_HI, SIG_LO, SIG_HI = range(6)
# Rows of ``tag_state()``: x's (lo, hi), the delta table's, the pairing's (lo, hi).
TAG_ROWS = ("input", "input_hi", "supervision", "supervision_hi", "output", "output_hi",
            "sigma_lo", "sigma_hi", "pair", "pair_hi")


class GraphTags:
    """Mixin of ``GraphEngine``: the tag state, its per-tick update and ``tags()``."""

    TAG_ROWS = TAG_ROWS

    def _build_tags(self):
        """Tag state and the gather that advances it (``_advance_tags``).

        The tags of tick t live in one flat int buffer: rows x lo, x hi, then
        the six δ rows (SUP_LO … SIG_HI), n entries each, followed by slots for
        t, the supervision frame, −1 and the σ' factor tags of ``frame``/``itd``
        derivatives. Every new tag is the min (lo rows) or max (hi rows) of a
        few old entries and slots, fixed by the graph: an index matrix (K, 8, n)
        built here, padded to K by repeating an entry. Three buffers rotate so
        the tags of t−1 (``_tx_prev``) survive the write of t+1.
        """
        n, o = self.n, self.out
        verts, f = self.model.vertices, self._factored
        T, S, M1 = 8 * n, 8 * n + 1, 8 * n + 2
        sig0 = 8 * n + 3
        size = sig0 + 2 * len(f)
        slot = {v: j for j, v in enumerate(f)}
        kind = self.derivative
        cands = [[None] * n for _ in range(8)]
        for r in range(8):
            lo = r % 2 == 0
            for v in range(n):
                if r < 2:
                    c = [T] if v == 0 else [r * n + p for p in verts[v].parents]
                elif v == 0:
                    c = [M1]
                elif v == o:
                    if r < 4:
                        c = [S]
                    else:
                        c = [(0 if lo else 1) * n + p for p in verts[v].parents]
                else:
                    c = [r * n + ch for ch in sorted({ch for ch, _ in self._children[v]})]
                    if r >= 6 and v in slot and kind != "none":
                        if kind == "local":
                            c.append((0 if lo else 1) * n + v)
                        else:
                            c.append(sig0 + (0 if lo else len(f)) + slot[v])
                cands[r][v] = c
        K = max(len(c) for row in cands for c in row)
        idx = np.empty((K, 8, n), dtype=np.intp)
        for r in range(8):
            for v in range(n):
                c = cands[r][v]
                idx[:, r, v] = c + [c[0]] * (K - len(c))
        self._tag_idx = idx
        rows = [list(v.parents) for v in verts[1:]]
        P = max(len(r) for r in rows)
        self._pair_par = np.array([r + r[:1] * (P - len(r)) for r in rows], dtype=np.intp)
        self._pair_lags = np.array([[self._pair_lag[(p, v.index)] for p in r]
                                    for v, r in zip(verts[1:], self._pair_par.tolist())],
                                   dtype=np.int64)
        self._tag_gather = np.empty((K, 8, n), dtype=np.int64)
        self._tag_bufs = [np.full(size, -1, dtype=np.int64) for _ in range(3)]
        self._tag_cur = 0
        # Per buffer: (flat buffer, state (8, n), its lo rows, hi rows, x rows, δ rows).
        self._tag_views = []
        for buf in self._tag_bufs:
            st = buf[:8 * n].reshape(8, n)
            self._tag_views.append((buf, st, st[0::2], st[1::2], st[:2], st[2:]))
        self._tag_g = (self._tag_gather[:, 0::2], self._tag_gather[:, 1::2])
        self._tag_slots = (T, S, sig0, sig0 + len(f))
        self._tag_ring_on = self.pairing == "frame" or kind == "frame"
        self._tag_sig_slots = kind not in ("none", "local") and len(f) > 0
        self._tx_a, self._td_a = self._tag_views[0][4], self._tag_views[0][5]
        self._tx_prev = self._tag_views[2][4]
        # Steady state (local/none σ', local pairing, so nothing reads tag
        # history): once a supervised tick's tags are those of the tick before
        # shifted by one frame (every entry ≥ 0 plus one, the −1 entries kept),
        # the update commutes with that shift (min/max commute with the
        # monotone map −1 ↦ −1, s ↦ s + 1, and t, t − d_y shift with it), so
        # every later tick is the same shift: tags are then computed on reading
        # from the steady tick's (``_tx``/``_td``) and ticks skip the update.
        self._tag_lazy_ok = kind in ("local", "none") and self.pairing == "local"
        self._tag_steady = None   # (tick, state (8, n), 0/1 increments) once steady

    @property
    def _tx(self):
        """Input tags (lo, hi) of x[t, v] at the current tick, (2, n)."""
        if self._tag_steady is None:
            return self._tx_a
        return self._tag_state()[:2]

    @property
    def _td(self):
        """Delta tags (rows SUP_LO … SIG_HI) at the current tick, (6, n)."""
        if self._tag_steady is None:
            return self._td_a
        return self._tag_state()[2:]

    def _tag_state(self):
        t0, base, inc = self._tag_steady
        return base + inc * (self.tick - t0)

    # (lo, hi) int arrays over ``self._factored``: the frame range of the σ'
    # factor D[t−1, v] contributes (None without one), chosen as ``_factor_tags``.
    def _factor_tags_none(self, t):
        return None

    def _factor_tags_local(self, t):
        f = self._factored_idx
        return self._tx[0, f], self._tx[1, f]

    def _factor_tags_frame(self, t):
        f = self._factored_idx
        rows = self._ring_tags[(t - 1 - self._deriv_lag_arr) % self._ring_tags.shape[0], :, f]
        return rows[:, 0], rows[:, 1]

    def _factor_tags_itd(self, t):
        f = self._factored_idx
        return self._tx_prev[0, f], self._tx[1, f]

    def _advance_tags(self, t, supervised):
        """Tags of tick t from those of t−1 in a few array calls whatever the
        graph: x takes the (min, max) over its parents, δ over its children and
        its σ' factor (one gather through ``_tag_idx``, then a min and a max
        reduction; see ``_build_tags``)."""
        if self._tag_steady is not None:
            return
        T, S, sig_lo, sig_hi = self._tag_slots
        old = self._tag_bufs[self._tag_cur]
        if self._tag_sig_slots:
            sig = self._factor_tags(t)
            nf = len(self._factored)
            old[sig_lo:sig_lo + nf] = sig[0]
            old[sig_hi:sig_hi + nf] = sig[1]
        old[T] = t
        old[S] = t - self.supervision_delay if supervised else -1
        cur = (self._tag_cur + 1) % 3
        _, new, new_lo, new_hi, tx, td = self._tag_views[cur]
        g_lo, g_hi = self._tag_g
        old.take(self._tag_idx, out=self._tag_gather)
        np.minimum.reduce(g_lo, axis=0, out=new_lo)
        np.maximum.reduce(g_hi, axis=0, out=new_hi)
        if not supervised:
            new[2:, self.out] = -1
        self._tx_prev = self._tx_a
        self._tag_cur = cur
        self._tx_a, self._td_a = tx, td
        if self._tag_ring_on:
            self._ring_tags[t % self._ring_tags.shape[0]] = tx
        if self._tag_lazy_ok and supervised and not t % 8:
            was = self._tag_views[(cur + 2) % 3][1]
            if np.array_equal(new, np.where(was >= 0, was + 1, was)):
                self._tag_steady = (t, new.copy(), (new >= 0).astype(np.int64))

    def tags(self):
        """Host copies of the provenance tags at the current tick, arrays over
        vertices in model order, −1 where empty (the input has no delta).

        As ``Engine.tags()``: ``input`` (frame in x[t,v]), ``supervision``,
        ``output`` (frame of the output activity in δ[t,v]), ``sigma_lo``/
        ``sigma_hi`` (frame range of its σ' factors), ``pair`` (frame of the x
        that g[t,v] pairs with). A vertex of an unlevelled graph mixes frames:
        each key then gives the OLDEST frame and ``<key>_hi`` the newest (equal
        on a levelled graph).
        """
        return dict(zip(TAG_ROWS, self.tag_state()))

    def tag_state(self):
        """Every tag of the current tick as one new int array (10, vertices),
        rows named by ``TAG_ROWS``: what ``tags()`` gives, in one piece (a
        recorder reads it every tick of its warm-up)."""
        return np.concatenate([self._tx, self._td, self._pair_tags()])

    def _pair_tags(self):
        """(lo, hi) pair tags per vertex: the min/max over its parents of the
        input tags they had at the pairing's lag, in one gather (``_build_tags``'
        parent table, a short row padded by repeating its first parent)."""
        out = np.empty((2, self.n), dtype=np.int64)
        out[:, 0] = -1
        par = self._pair_par
        if not self._pair_frame:
            rows = self._tx[:, par]                                    # (2, n − 1, P)
        else:
            ring = self._ring_tags
            rows = np.moveaxis(ring[(self.tick - self._pair_lags) % ring.shape[0], :, par], -1, 0)
        out[0, 1:] = rows[0].min(axis=-1)
        out[1, 1:] = rows[1].max(axis=-1)
        return out
