"""The fast numpy executor of ``GraphEngine``: the generic step's numbers on
preallocated buffers, for every option set. Three sets of per-vertex x, pre,
σ', δ rotate (t+1 is written while t and t−1 are read). A run of two or more
dense vertices of one width over a parent of that width (each but the last
with no other child) shares one stacked block, so its forward, backward,
factors, history and update are one call each.
"""
import math

import numpy as np

from ..model.layers import ACTIVATIONS
from ..model.reference import vertex_params
from ..options import draw_magnitude


def runs(names):
    """Contiguous runs of equal names as (start, stop, name)."""
    out, start = [], 0
    for i in range(1, len(names) + 1):
        if i == len(names) or names[i] != names[start]:
            out.append((start, i, names[start]))
            start = i
    return out


def ring_read(ring, tick):
    """The entry of tick ``tick`` in a history ring (axis 0, modulo its length)."""
    return ring[tick % ring.shape[0], ...]


def _tanh(pre, x, s):
    np.tanh(pre, out=x)
    if s is not None:
        np.multiply(x, x, out=s)
        np.subtract(1.0, s, out=s)


def _linear(pre, x, s):
    np.copyto(x, pre)


def activator(name):
    """In place x = σ(pre) and (unless s is None) s = σ'(pre), with the operations
    of ``layers.ACTIVATIONS`` (``linear`` leaves s: it holds ones); resolved once
    per plan, so a tick compares no names."""
    if name in ("tanh", "linear"):
        return _tanh if name == "tanh" else _linear
    f = ACTIVATIONS[name]

    def activate(pre, x, s):
        xa, sa = f(np, pre)
        np.copyto(x, xa)
        if s is not None:
            np.copyto(s, sa)
    return activate


class FastNumpy:
    """Mixin of ``GraphEngine``: the numpy executor."""

    def _build_fast(self):
        self._fast = self.xp is np
        if not self._fast:
            return
        m, n, B, dt = self.model, self.n, self.batch, self.backend.dtype
        verts = m.vertices
        self._dense = [v.kind == "dense" for v in verts]
        self._groups = self._find_groups()
        self._member = {i for g in self._groups for i in g["members"]}
        self._free = [i for i in range(1, n) if i not in self._member]
        self._free_dense = [i for i in self._free if self._dense[i]]
        self._free_other = [i for i in self._free if not self._dense[i]]
        # per-vertex W, b (and B) become views of their run's stacks
        for g in self._groups:
            mem = g["members"]
            keys = [(f"{verts[i].name}.W", f"{verts[i].name}.b") for i in mem]
            # Wᵀ stored contiguous, W its view: the BLAS calls (so the bits) of
            # the recorded goldens
            g["WT"] = np.ascontiguousarray(np.stack([self._params[kw].T for kw, _ in keys]))
            g["W"] = g["WT"].transpose(0, 2, 1)
            g["b"] = np.stack([self._params[kb] for _, kb in keys])
            for j, (kw, kb) in enumerate(keys):
                self._params[kw], self._params[kb] = g["W"][j], g["b"][j]
            g["k"], g["w"] = k, w = g["W"].shape[:2]
            g["b3"] = g["b"][:, None, :]
            g["cot"], g["e"] = np.zeros((k, B, w), dt), np.zeros((k, B, w), dt)
            g["gw"] = np.zeros((k, w, w), dt)
            g["gb"] = np.zeros((k, w), dt)
            acts = [verts[i].layer.activation for i in mem]
            g["runs"] = [(lo + 1, hi + 1, a) for lo, hi, a in runs(acts)]
        self._vp = [vertex_params(self._params, v) if v.layer else {} for v in verts]
        self._refresh_feedback(())
        for g in self._groups:
            mem = g["members"]
            if self._F[mem[0]] is None:          # transpose: B is W itself
                g["F"] = g["W"]
            else:
                g["F"] = np.stack([self._F[i] for i in mem])
                for j, i in enumerate(mem):
                    self._F[i] = g["F"][j]
            # sign-family magnitudes follow the stacking (brsf draws into the views)
            mags = [self._mag.get(i) for i in mem]
            g["M"] = mags[0] if np.ndim(mags[0]) == 0 else np.stack(mags)
            for j, i in enumerate(mem if np.ndim(mags[0]) else ()):
                self._mag[i] = self._mag_be[i] = g["M"][j]
        # per free dense vertex: its VJP, η δ, η g_W and η g_b
        self._scratch = {i: (np.zeros((B,) + verts[verts[i].parents[0]].shape, dt),
                             np.zeros((B,) + verts[i].shape, dt),
                             np.zeros(verts[i].layer.param_shapes["W"], dt),
                             np.zeros(verts[i].layer.param_shapes["b"], dt))
                         for i in self._free_dense}
        self._ones = {i: np.ones((B,) + verts[i].shape, dt) for i in range(1, n)
                      if self._sigma[i] and verts[i].layer.linear}
        self._flats = []
        self._sets = [self._buffer_set(dt) for _ in range(3)]
        self._flat_zeros = np.zeros(self._flats[0].shape, dt)
        # flagged preactivations outside the flat block (fresh arrays)
        self._flag_extra = [(i, np.zeros(B * int(np.prod(verts[i].shape)), dt))
                            for i in self._free_other if not verts[i].layer.linear]
        self._finite_dirty = set()
        self._X, self._P, self._S, self._D = self._sets[0][:4]
        self._X_prev, self._P_prev = self._sets[2][:2]
        self._build_history(dt)
        self._plan_fast()
        self._build_strategies(dt)

    def _find_groups(self):
        """Runs of equal-width dense vertices, ≥ 2 long."""
        verts, groups, owner = self.model.vertices, [], {}
        for v in verts[1:]:
            p = v.parents[0]
            if v.kind != "dense" or len(v.parents) != 1 or verts[p].shape != v.shape:
                continue
            g = owner.get(p)
            if g is not None and g["members"][-1] == p and len(self._children[p]) == 1:
                g["members"].append(v.index)
                owner[v.index] = g
            elif g is None and p not in {h["src"] for h in groups}:
                g = {"src": p, "members": [v.index]}
                groups.append(g)
                owner[v.index] = g
        return [g for g in groups if len(g["members"]) >= 2]

    def _buffer_set(self, dt):
        """One set of x, pre, σ', δ lists (runs' blocks first), and the flat
        block all flagged x, pre and δ are views of (``_flag_fast``)."""
        n, B, verts = self.n, self.batch, self.model.vertices
        X, P, S, D = ([None] * n for _ in range(4))
        srcs = {g["src"] for g in self._groups}
        shared = [bool(i) and self._dense[i] and (verts[i].layer.linear or not self._sigma[i])
                  for i in range(n)]
        own = []
        for i in range(n):
            if i in self._member:
                continue
            shape = (B,) + verts[i].shape
            if i and self._dense[i]:
                own.append((P, i, shape))
            if i not in srcs and not shared[i]:
                own.append((X, i, shape))
            if i:
                own.append((D, i, shape))
        shapes = [(g["k"] + 1, B, g["w"]) for g in self._groups for _ in range(3)]
        shapes += [shape for _, _, shape in own]
        sizes = [math.prod(s) for s in shapes]
        flat = np.zeros(sum(sizes), dt)
        pieces = iter(np.split(flat, np.cumsum(sizes)[:-1]))
        blocks = []
        for g in self._groups:
            Xb, Pb, Db = (next(pieces).reshape(g["k"] + 1, B, g["w"]) for _ in range(3))
            Sb = np.zeros(Xb.shape, dt)
            X[g["src"]] = Xb[0]
            for j, i in enumerate(g["members"], 1):
                X[i], P[i], S[i], D[i] = Xb[j], Pb[j], Sb[j], Db[j]
                if verts[i].layer.linear:
                    Sb[j] = 1.0
            blocks.append((Xb, Pb, Sb, Db))
        for lst, i, shape in own:
            lst[i] = next(pieces).reshape(shape)
        for i in range(n):
            if P[i] is None:
                P[i] = np.zeros((B,) + verts[i].shape, dt)
            if X[i] is None:
                X[i] = P[i]
            if S[i] is None and self._sigma[i]:
                S[i] = self._ones[i] if i in self._ones else np.zeros((B,) + verts[i].shape, dt)
        self._flats.append(flat)
        return X, P, S, D, blocks

    def _build_history(self, dt):
        """One ring per run and quantity (the vertices' rings become views of
        it) and gather tables reading each member at its own lag."""
        B = self.batch
        self._hist_blocks, covered_x, covered_s = [], set(), set()
        for gi, g in enumerate(self._groups):
            k, w, block = g["k"], g["w"], [g["src"]] + g["members"]
            g["ring_x"] = g["ring_s"] = None
            for q, rings, first, covered in ((0, self._ring_x, 0, covered_x),
                                             (2, self._ring_s, 1, covered_s)):
                have = [j for j in range(first, k + 1) if block[j] in rings]
                if not have:
                    continue
                R = max(rings[block[j]].shape[0] for j in have)
                ring = np.zeros((R, k + 1, B, w), dt)
                for j in range(first, k + 1):
                    rings[block[j]] = ring[:, j]
                    covered.add(block[j])
                g["ring_x" if q == 0 else "ring_s"] = ring
                self._hist_blocks.append((ring, gi, q))
            if self._pair_frame and g["ring_x"] is not None:
                lags = [self._pair_lag[(block[j - 1], block[j])] for j in range(1, k + 1)]
                g["ptab"], g["ring_x_flat"] = _gather(g["ring_x"], lags, 0)
                g["xpair"] = np.zeros((k, B, w), dt)
            if self._vjp_frame:
                lags = [self._deriv_lag[block[j]] for j in range(1, k)]
                g["dtab"], g["ring_s_flat"] = _gather(g["ring_s"], lags, 1)
        self._hist_x = [(p, r) for p, r in self._ring_x.items() if p not in covered_x]
        self._hist_s = [(v, r) for v, r in self._ring_s.items() if v not in covered_s]
        self._has_history = bool(self._hist_blocks or self._hist_x or self._hist_s)

    def _plan_fast(self):
        """Per-tick work resolved once (views of each run's blocks per buffer
        set, per free vertex its arrays): a tick does no lookups or slicing."""
        verts, n = self.model.vertices, self.n
        keep_s = self._keep_s
        self._gviews = []
        for X, P, S, D, blk in self._sets:
            per = []
            for g, (Xb, Pb, Sb, Db) in zip(self._groups, blk):
                k = g["k"]
                runs = [(activator(act), Pb[lo:hi], Xb[lo:hi], Sb[lo:hi])
                        for lo, hi, act in g["runs"]]
                # the backward reads δ of the members whose VJP goes somewhere:
                # not the first's when the run hangs off the input
                fed = Db[2:] if g["src"] == 0 else Db[1:]
                per.append((Xb[:k], Pb[1:], runs, Db[1:], Sb[1:k], Db[1:k], Xb[1:k], Pb[1:k],
                            (Xb, Pb, Sb, Db), fed))
            self._gviews.append(per)
        for g in self._groups:
            g["cot1"], g["cot0"], g["eT"] = g["cot"][1:], g["cot"][0], g["e"].transpose(0, 2, 1)
            first = 1 if g["src"] == 0 else 0       # the input takes no cotangent
            g["F_fed"], g["cot_fed"] = g["F"][first:], g["cot"][first:]
        # per buffer set, the runs whose members follow their source (``state_blocks``)
        chained = [g["members"] == list(range(g["src"] + 1, g["src"] + 1 + g["k"]))
                   for g in self._groups]
        self._state_blocks = [[(g["src"], Xb, Db[1:]) for g, c, (Xb, _, _, Db)
                               in zip(self._groups, chained, sets[4]) if c]
                              for sets in self._sets]
        X0, P0 = self._sets[0][:2]
        self._fwd_dense = [(i, verts[i].parents[0], self._vp[i]["W"].T, self._vp[i]["b"],
                            verts[i].layer.linear, activator(verts[i].layer.activation),
                            keep_s or i == self.out, X0[i] is P0[i]) for i in self._free_dense]
        self._fwd_other = [(i, self._sigma[i] and (keep_s or i == self.out))
                           for i in self._free_other]
        # backward: the children that send a cotangent, and per vertex the
        # (child, position) contributions in child order (runs send cot[0])
        bw_free = [c for c in self._free if any(verts[c].parents)]
        contrib = [[] for _ in range(n)]
        for gi, g in enumerate(self._groups):
            if g["src"]:
                contrib[g["src"]].append((g["members"][0], -1, gi))
        for c in bw_free:
            for k, p in enumerate(verts[c].parents):
                if p:
                    contrib[p].append((c, k, None))
        self._bw_plan = [(c, self._vp[c]["W"], self._scratch[c][0]) if self._dense[c]
                         else (c, None, None) for c in bw_free]
        for lst in contrib:
            lst.sort(key=lambda e: e[0])
        self._bw_into = [(i, contrib[i]) for i in range(1, n - 1) if contrib[i]]
        self._learn_dense = [(i, verts[i].parents[0], self._scratch[i][1],
                              self._scratch[i][1].T, self._scratch[i][2], self._scratch[i][3],
                              self._vp[i]["W"], self._vp[i]["b"],
                              self._pair_lag[(verts[i].parents[0], i)])
                             for i in self._free_dense if self._has_params[i]]
        self._learn_other = [i for i in self._free_other if self._has_params[i]]

    def _build_strategies(self, dt):
        """The option choices of the tick as functions and flags, once."""
        B, verts = self.batch, self.model.vertices
        kind = self.derivative
        # D[t−1] of a run's rows 1..k−1 (the members it feeds): ``_group_<kind>``
        for g in self._groups:
            for key in (("fac", "da", "Q") if kind == "itd-dy" else ("fac",)
                        if kind in ("frame", "itd-y") else ()):
                g[key] = np.zeros((g["k"] - 1, B, g["w"]), dt)
            for j, i in enumerate(g["members"][:-1] if kind == "itd-dy" else ()):
                self._Q[i] = g["Q"][j]
        self._fac_group = getattr(self, "_group_" + kind.replace("-", "_"))
        factor_set = set(self._factor_set)
        self._fac_plan = [(i, got, i in factor_set) for i, got in self._bw_into]
        # dfa: per vertex its columns of the one projection B δ_out (``direct``)
        self._back_fast = self._back_direct_fast if self._dfa else self._back_vjp_fast
        self._dfa_proj = np.zeros((B, 0 if self._dfa_BT is None else self._dfa_BT.shape[1]), dt)
        self._dfa_plan = [(i, self._dfa_proj[:, lo:hi].reshape((B,) + shape), i in factor_set)
                          for i, lo, hi, shape in self._dfa_cols]
        # ∂ℓ/∂x into δ_out (mse's x − y in place)
        self._out_err = (np.subtract if self.loss == "mse" else
                         lambda x, y, out: np.copyto(out, self._loss_grad(np, x, y)))
        self._out_sigma = self._sigma[self.out] and self.out not in self._ones
        # sign family after a due update: brsf's draws, then F = sign(W) ∘ magnitude
        self._resign = [] if not self._mag else (
            [(g["W"], g["F"], g["M"]) for g in self._groups]
            + [(self._vp[i]["W"], self._F[i], self._mag[i]) for i in self._free if i in self._mag])
        self._redraw_fast = [(self._mag[i], self._fb_shapes[i]) for i in self._redraw]
        # δᵀx at batch 1 is an outer product, which numpy's matmul runs through
        # its slow non-BLAS loop; a broadcast multiply gives the same numbers
        self._outer = np.multiply if B == 1 else np.matmul
        self._acc_on = self.learning_rate and self.accumulate > 1
        if self._acc_on:
            for g in self._groups:
                g["acc"] = np.zeros_like(g["gw"]), np.zeros_like(g["gb"])
        self._acc_dense = {i: (np.zeros_like(gw), np.zeros_like(gb))
                           for i, _, _, _, gw, gb, _, _, _ in self._learn_dense
                           if self._acc_on}

    def _flag_fast(self, t, ring):
        """Flag tick t with one dot product of the flat block with zeros (and
        each preactivation outside it); per-slot flags only when non-finite."""
        f = self._flats[(t + 1) % 3].dot(self._flat_zeros)
        P = self._P
        for i, zeros in self._flag_extra:
            f += P[i].ravel().dot(zeros)
        row = t % ring.shape[0]
        if f != f:
            arrays = (self._X, P, self._D)
            ring[row] = [arrays[q][i].ravel().dot(zeros) for q, i, zeros in self._finite_slots]
            self._finite_dirty.add(row)
        elif row in self._finite_dirty:
            ring[row] = 0.0
            self._finite_dirty.discard(row)

    # ------------------------------------------------------------------ tick
    def _step_fast(self, u, y):
        """``_step_generic`` into preallocated buffers, runs first as batched calls."""
        t = self.tick + 1
        verts = self.model.vertices
        cur, new = self._sets[t % 3], self._sets[(t + 1) % 3]
        X, P, S, D, _ = cur
        Xn, Pn, Sn, Dn, _ = new
        gv, gvn, gvp = self._gviews[t % 3], self._gviews[(t + 1) % 3], self._gviews[(t + 2) % 3]
        matmul = np.matmul
        np.copyto(Xn[0], u)
        # forward: runs, then dense vertices, then other kinds
        for g, cv, nv in zip(self._groups, gv, gvn):
            P1n = nv[1]
            matmul(cv[0], g["WT"], out=P1n)
            P1n += g["b3"]
            for activate, pre, x, s in nv[2]:
                activate(pre, x, s)
        for i, p, WT, b, linear, activate, want_s, shared in self._fwd_dense:
            pre = Pn[i]
            matmul(X[p], WT, out=pre)
            pre += b
            if linear:
                if not shared:
                    np.copyto(Xn[i], pre)
            else:
                activate(pre, Xn[i], Sn[i] if want_s else None)
        for i, want_s in self._fwd_other:
            v = verts[i]
            pre, out = v.layer.value(np, self._vp[i], [X[p] for p in v.parents])
            # pre and out may be views of a parent's buffer (flatten, identity, tokens),
            # which the next ticks overwrite: ITD's differences read this tick's pre later
            np.copyto(Pn[i], pre)
            np.copyto(Xn[i], out)
            if want_s:
                Sn[i] = v.layer.derivative(np, pre)
        # output delta
        target = self._present_target(t, y)
        o = self.out
        if target is None:
            Dn[o][...] = 0
        else:
            self._out_err(Xn[o], target, Dn[o])
            if self._out_sigma:
                Dn[o] *= Sn[o]
        self._back_fast(t, X, P, D, Dn, gv, gvn, gvp)
        self._advance(t, (Xn, Pn, Sn, Dn), target is not None)
        if self._has_history:
            self._record_fast(t, gvn)
        if self.learning_rate:
            self._learn_fast(t, gvn)

    def _back_vjp_fast(self, t, X, P, D, Dn, gv, gvn, gvp):
        """δ[t] from the children's δ[t−1]: one batched VJP per run (its factor
        D[t−1] on its block), then the other children."""
        matmul, verts = np.matmul, self.model.vertices
        for g, cv, nv, pv in zip(self._groups, gv, gvn, gvp):
            matmul(cv[9], g["F_fed"], out=g["cot_fed"])
            _times(self._fac_group(g, t, cv, pv), g["cot1"], nv[5])
        backs, Fs = {}, self._F
        for c, W, scratch in self._bw_plan:
            if W is not None:
                F = Fs[c]
                backs[c] = [matmul(D[c], W if F is None else F, out=scratch)]
            else:
                v = verts[c]
                backs[c] = v.layer.vjp(np, self._vp[c], self._vjp_inputs(t, v, X), P[c], D[c],
                                       weights=Fs[c])
        groups, factor = self._groups, self._factor
        for i, got, factored in self._fac_plan:
            total = None
            for c, k, gi in got:
                b = groups[gi]["cot0"] if gi is not None else backs[c][k]
                total = b if total is None else total + b
            # into δ's own buffer: a VJP may return a scratch or a view
            _times(factor(i, t) if factored else None, total, Dn[i])

    def _back_direct_fast(self, t, X, P, D, Dn, gv, gvn, gvp):
        """dfa: δ[t, v] = D[t−1, v] ⊙ B_v δ[t−1, out], one product for every v."""
        np.matmul(D[self.out].reshape(self._dfa_proj.shape[0], -1), self._dfa_BT,
                  out=self._dfa_proj)
        factor = self._factor
        for i, proj, factored in self._dfa_plan:
            _times(factor(i, t) if factored else None, proj, Dn[i])

    def _record_fast(self, t, gvn):
        """History of tick t: each run's block once, other vertices one by one."""
        for ring, gi, q in self._hist_blocks:
            ring[t % ring.shape[0]] = gvn[gi][8][q]
        for p, ring in self._hist_x:
            ring[t % ring.shape[0]] = self._X[p]
        for v, ring in self._hist_s:
            ring[t % ring.shape[0]] = self._S[v]

    def _learn_fast(self, t, gv):
        """``GraphEngine._learn`` in place, one batched update per run."""
        lr, verts = self.learning_rate, self.model.vertices
        keep = 1.0 - lr * self.weight_decay
        learned, acc = self._learned, self._acc_on
        due = not acc or not (t + 1) % self.accumulate
        X, D = self._X, self._D
        for g, cv in zip(self._groups, gv):
            xs = (np.take(g["ring_x_flat"], g["ptab"][t % len(g["ptab"])], axis=0, out=g["xpair"])
                  if self._pair_frame else cv[0])
            self._learn_block(cv[3], xs, g["e"], g["eT"], g["gw"], g["gb"], g["W"], g["b"],
                              g["F"] if learned else None, g.get("acc"), due, keep)
        for i, p, e, eT, gw, gb, W, b, lag in self._learn_dense:
            xs = ring_read(self._ring_x[p], t - lag) if self._pair_frame else X[p]
            self._learn_block(D[i], xs, e, eT, gw, gb, W, b, self._F[i] if learned else None,
                              self._acc_dense.get(i), due, keep)
        for i in self._learn_other:
            self._learn_vertex(verts[i], due, keep)
        if due:
            for out, shape in self._redraw_fast:
                draw_magnitude(self._fb_rng, shape, self._fb_scale, out)
            for W, F, mag in self._resign:
                np.multiply(np.sign(W, out=F), mag, out=F)

    # D[t−1] of a run's rows 1..k−1 (cv: the run's views at t−1, pv: at t−2)
    def _group_none(self, g, t, cv, pv):
        return None

    def _group_local(self, g, t, cv, pv):
        return cv[4]

    def _group_frame(self, g, t, cv, pv):
        tab = g["dtab"]
        return np.take(g["ring_s_flat"], tab[(t - 1) % len(tab)], axis=0, out=g["fac"])

    def _group_itd_y(self, g, t, cv, pv):
        return np.subtract(cv[6], pv[6], out=g["fac"])

    def _group_itd_dy(self, g, t, cv, pv):
        dx = np.subtract(cv[6], pv[6], out=g["fac"])
        da = np.subtract(cv[7], pv[7], out=g["da"])
        finite = np.abs(da) >= self.itd_epsilon
        np.copyto(g["Q"], dx / np.where(finite, da, 1.0), where=finite)
        return g["Q"]

    def _learn_block(self, d, xs, e, eT, gw, gb, W, b, F, accs, due, keep):
        """η g = η δᵀx of a dense vertex or (stacked) run into W, b (and F)."""
        np.multiply(d, self.learning_rate, out=e)
        sw = self._outer(eT, xs, out=gw)
        sb = np.add.reduce(e, axis=e.ndim - 2, out=gb)
        if accs is not None:
            aw, ab = accs
            aw += sw
            ab += sb
            if not due:
                return
            sw, sb = aw, ab
        apply_step(W, b, F, sw, sb, self.weight_decay, keep)
        if accs is not None:
            sw[...] = 0
            sb[...] = 0


def _times(f, x, out):
    """out = f ⊙ x (x where f is None), in place."""
    if f is None:
        np.copyto(out, x)
    else:
        np.multiply(f, x, out=out)


def _gather(ring, lags, first):
    """Per ring row r, the rows of the flat (R·(k+1), B, w) ``ring`` that hold
    block entries first, first+1, ... at their ``lags``; and that flat view."""
    R, k1 = ring.shape[:2]
    tab = [np.array([((r - lag) % R) * k1 + j for j, lag in enumerate(lags, first)],
                    dtype=np.intp) for r in range(R)]
    return tab, ring.reshape((R * k1,) + ring.shape[2:])


def apply_step(W, b, F, sw, sb, decay, keep):
    """W ← keep·W − sw (F likewise when learned), b ← b − sb, in place."""
    if decay:
        W *= keep
        if F is not None:
            F *= keep
    W -= sw
    if F is not None:
        F -= sw
    if b is not None:
        b -= sb

