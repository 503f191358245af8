"""Provenance tags of GraphEngine (docs/explanation/models.md): which input frame every x and δ
holds, and the frames of its σ' factors and pairing. The tags of t are a gather of
t−1's fixed by the graph (min for the oldest frame, max for the newest); once a run
is steady, every later tick is a shift, computed on reading. TagClock gives the
compiled executor the same tags in closed form from a batch-1 probe engine.
"""
import numpy as np

from ..errors import SimulatorError

# rows of ``tag_state()``: x's (lo, hi), δ's supervision, output and σ' (lo, hi), pairing's
TAG_ROWS = ("input", "input_hi", "supervision", "supervision_hi", "output", "output_hi",
            "sigma_lo", "sigma_hi", "pair", "pair_hi")


class GraphTags:
    """Mixin of ``GraphEngine``: the tag state, its per-tick update and ``tags()``."""

    TAG_ROWS = TAG_ROWS

    def _build_tags(self):
        """Tick t's tags are one flat int buffer (TAG_ROWS but the pairing's, n
        entries each, then slots for t, the supervision frame, −1 and the σ'
        factor tags); each new tag is the min (lo) or max (hi) of old entries
        picked by ``_tag_idx`` (K, 8, n). Three buffers rotate."""
        n, o = self.n, self.out
        verts, f = self.model.vertices, self._factored
        T, S, M1, sig0 = range(8 * n, 8 * n + 4)     # slots after the 8 rows
        size = sig0 + 2 * len(f)
        slot = {v: j for j, v in enumerate(f)}
        kind = self.derivative
        cands = []
        for r in range(8):
            x_row = (r % 2) * n           # the x row of this row's side (lo or hi)
            for v in range(n):
                if r < 2:
                    c = [T] if v == 0 else [r * n + p for p in verts[v].parents]
                elif v == 0:
                    c = [M1]
                elif v == o:
                    c = [S] if r < 4 else [x_row + p for p in verts[v].parents]
                else:           # δ from its children's, or under dfa the output's
                    c = ([r * n + o] if self._dfa else
                         [r * n + ch for ch in sorted({ch for ch, _ in self._children[v]})])
                    if r >= 6 and v in slot and kind != "none":
                        c.append(x_row + v if kind == "local"
                                 else sig0 + (r % 2) * len(f) + slot[v])
                cands.append(c)
        self._tag_idx = idx = _padded(cands).T.reshape(-1, 8, n)
        K = idx.shape[0]
        self._pair_par = _padded([list(v.parents) for v in verts[1:]])
        self._pair_lags = np.array([[self._pair_lag[(p, v.index)] for p in r]
                                    for v, r in zip(verts[1:], self._pair_par.tolist())],
                                   dtype=np.int64)
        self._tag_gather = np.empty((K, 8, n), dtype=np.int64)
        self._tag_bufs = [np.full(size, -1, dtype=np.int64) for _ in range(3)]
        self._tag_cur = 0
        # per buffer: (flat buffer, state (8, n), lo rows, hi rows, x rows, δ rows)
        states = [buf[:8 * n].reshape(8, n) for buf in self._tag_bufs]
        self._tag_views = [(buf, st, st[0::2], st[1::2], st[:2], st[2:])
                           for buf, st in zip(self._tag_bufs, states)]
        self._tag_g = (self._tag_gather[:, 0::2], self._tag_gather[:, 1::2])
        self._tag_slots = (T, S, sig0, sig0 + len(f))
        self._tag_ring_on = self.pairing == "frame" or kind == "frame"
        self._tag_sig_slots = kind not in ("none", "local") and len(f) > 0
        self._tx_a, self._td_a = self._tag_views[0][4], self._tag_views[0][5]
        self._tx_prev = self._tag_views[2][4]
        # Steady state (nothing reads tag history): once a supervised tick's
        # tags are the last tick's shifted by one frame (−1 kept), the update
        # commutes with that monotone shift, so every later tick is the same
        # shift, computed on reading (``_tx``/``_td``) with no update.
        self._tag_lazy_ok = kind in ("local", "none") and self.pairing == "local"
        self._tag_steady = None   # (tick, state (8, n), 0/1 increments) once steady

    @property
    def _tx(self):
        """Input tags (lo, hi) of x[t, v] at the current tick, (2, n)."""
        return self._tx_a if self._tag_steady is None else self._tag_state()[:2]

    @property
    def _td(self):
        """Delta tags (supervision … sigma_hi) at the current tick, (6, n)."""
        return self._td_a if self._tag_steady is None else self._tag_state()[2:]

    def _tag_state(self):
        t0, base, inc = self._tag_steady
        return base + inc * (self.tick - t0)

    # (lo, hi) over ``_factored``: the frames of D[t−1, v] (``_factor_tags``)
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
        """Tags of tick t from t−1's: one gather through ``_tag_idx``, a min and a max."""
        if self._tag_steady is not None:
            return
        T, S, sig_lo, sig_hi = self._tag_slots
        old = self._tag_bufs[self._tag_cur]
        if self._tag_sig_slots:
            nf = len(self._factored)
            old[sig_lo:sig_lo + nf], old[sig_hi:sig_hi + nf] = self._factor_tags(t)
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
        """{TAG_ROWS key: per-vertex frames} at the current tick, −1 where empty:
        ``input`` (in x[t,v]), ``supervision`` and ``output`` (in δ[t,v]),
        ``sigma_lo``/``sigma_hi`` (its σ' factors), ``pair`` (the x g[t,v]
        pairs with); each the OLDEST frame, ``<key>_hi`` the newest."""
        return dict(zip(TAG_ROWS, self.tag_state()))

    def tag_state(self):
        """``tags()`` as one new int array (10, vertices), rows ``TAG_ROWS``."""
        out = np.empty((10, self.n), dtype=np.int64)
        out[:8] = self._tag_views[self._tag_cur][1] if self._tag_steady is None else (
            self._tag_state())
        self._pair_tags(out[:2], out[8:])
        return out

    def tags_shift(self):
        """Whether every later tick's tags are this tick's, one frame later a tick (−1 kept)."""
        return self._tag_steady is not None

    def _pair_tags(self, tx, out):
        """(lo, hi) pair tags into ``out``: min/max over the parents of their input tags
        ``tx`` at the pairing's lag (parent rows padded by repeating the first)."""
        out[:, 0] = -1
        par = self._pair_par
        if not self._pair_frame:
            if par.shape[1] == 1:                                      # one parent each
                np.take(tx, par[:, 0], axis=1, out=out[:, 1:])
                return
            rows = tx[:, par]                                          # (2, n − 1, P)
        else:
            ring = self._ring_tags
            rows = np.moveaxis(ring[(self.tick - self._pair_lags) % ring.shape[0], :, par], -1, 0)
        np.min(rows[0], axis=-1, out=out[0, 1:])
        np.max(rows[1], axis=-1, out=out[1, 1:])


def _padded(rows):
    """Lists padded to one length by repeating their first entry, as an int array."""
    K = max(len(r) for r in rows)
    return np.array([r + r[:1] * (K - len(r)) for r in rows], dtype=np.intp)


def warm_ticks(engine):
    """Ticks after which an engine's tags are a shift (bounds every lag of the tick rule)."""
    return 2 * engine.depth + engine.supervision_delay + engine.history + 2


class TagClock:
    """An engine's tags in closed form: they depend on the tick, graph and options only
    (the tick rule), so after a warm-up of W ticks each is the tick minus a fixed lag, or −1.
    ``observe`` takes the tag states of ticks 0, 1, … (rows × vertices); once W more
    ticks move every tag one frame a tick, ``ready`` is set and ``rows(ticks)`` gives
    later ones. ``TagClock.of(probe)`` runs the warm-up on a probe engine and keeps it."""

    def __init__(self, warm):
        self.warm, self.ready, self.last = int(warm), False, -1
        self._prev, self._steady_since, self._early = None, None, None

    def observe(self, t, tags):
        prev, self._prev = self._prev, tags
        if prev is None or t < self.warm:
            return
        if np.array_equal(np.where(prev >= 0, prev + 1, prev), tags):
            if self._steady_since is None:
                self._steady_since = t
            if t - self._steady_since >= self.warm:
                self.ready, self.last = True, t
        else:
            self._steady_since = None

    def settle(self, t, tags):
        """Ready from tick t on (``tags`` its state): the engine has proved every
        later tick a shift of this one (``GraphTags.tags_shift``)."""
        self.ready, self.last, self._prev = True, t, tags

    def rows(self, ticks):
        """Tags at ``ticks`` (all after ``last``): (len(ticks), rows, vertices)."""
        t = np.asarray(ticks, dtype=np.int64)
        base = self._prev
        return np.where(base >= 0, base[None] + (t - self.last)[:, None, None], base[None])

    @classmethod
    def of(cls, probe):
        """The clock of every tick of ``probe``'s run (a batch-1 GraphEngine with the
        run's model and options, stepped here on zero frames until its tags are a
        shift); ``state(t)`` then gives ``tag_state()`` at any tick t ≥ −1."""
        clock = cls(warm_ticks(probe))
        clock._early = [probe.tag_state()]           # entry t + 1 holds tick t's
        u = np.zeros((1,) + tuple(probe.model.input_shape))
        y = np.zeros((1,) + tuple(probe.model.output_shape))
        with np.errstate(all="ignore"):
            while not clock.ready:
                if probe.tick > 4 * clock.warm:
                    raise SimulatorError(f"tags are not shift-invariant after tick {clock.warm}")
                probe.step(u, y)
                clock._early.append(probe.tag_state())
                clock.observe(probe.tick, clock._early[-1])
        return clock

    def state(self, t):
        """``tag_state()`` at tick t, from the kept warm-up or in closed form."""
        return self._early[t + 1].copy() if t <= self.last else self.rows([t])[0]
