"""The recorder's mismatch metrics, vertex by vertex: each weighted vertex's g for W
against the oracle's W gradient on the frame its tag names (the oldest where it mixes
several), with that frame's weights, from a ring of 2D + d_y + 2 + K references. A
dense/linear vertex whose factors are smaller than its W (``gram_pays``) is compared
through Gram products of δ and x (``metrics.gram``), neither g nor its reference formed.
Frozen weights: a block's distinct frames in ONE batched backprop; learning: per tick."""
import numpy as np

from ..metrics import cosine_and_relative, gram
from ..model import reference as graph_reference
from ..engine.direct import direct_bwd
from ..engine.tick import distances, sync_set

HI_KEYS = ("input", "supervision", "output", "pair")


def is_plain_chain(model):
    """Whether ``model`` is dense layers each on the one before over a flat input: recorded
    as layers, no vertex mixes frames (no ``vertex_*`` arrays, no ``_hi`` tags)."""
    return len(model.input_shape) == 1 and all(
        v.kind == "dense" and tuple(v.parents) == (v.index - 1,) for v in model.vertices[1:])


def vertex_arrays(model, feedback="transpose"):
    """The per-vertex arrays of a graph trace; None for a plain chain. ``bwd`` is
    the δ path's length: under ``dfa`` 1 for every vertex but the output (so a dfa
    chain's trace carries them too: its sync set is not Eq. 6's ls)."""
    if is_plain_chain(model) and feedback != "dfa":
        return None
    fwd, bwd = distances(model)
    if feedback == "dfa":
        bwd = direct_bwd(model)
    synced = set(sync_set(model, feedback))
    return {"vertex_names": np.array(model.names),
            "vertex_kinds": np.array([v.kind for v in model.vertices]),
            "vertex_levels": np.array(fwd, dtype=np.int64),
            "vertex_bwd": np.array(bwd, dtype=np.int64),
            "vertex_sync": np.array([v.name in synced for v in model.vertices]),
            "vertex_edges": np.array([(p, c) for p, c, _ in model.edges()],
                                     dtype=np.int64).reshape(-1, 2)}


def gram_pays(rows, out, inp):
    """Whether a dense/linear vertex (W gradient δᵀx over rows) is measured through Gram
    products: where its factors, rows · (out + in), are smaller than its W gradient, out ·
    in (bench_graph_record.py: a chain 6 × 128 at batch 16 costs 4× its tick, not 13.4×)."""
    return rows * (out + inp) < out * inp


def metric_layout(model, batch):
    """How the recorder holds the W gradients of ``model``'s weighted vertices
    (``model`` may be a skeleton): (their indices; per vertex its Gram rows,
    None where g is formed; values per frame of the explicit W gradients; of
    the Gram factors δ and x)."""
    shapes = model.param_shapes()
    weighted = [v.index for v in model.vertices[1:] if "W" in v.param_names]
    rows, explicit, factors = [], 0, 0
    for i in weighted:
        v = model.vertices[i]
        out, inp = shapes[f"{v.name}.W"][0], shapes[f"{v.name}.W"][-1]
        r = int(batch) * int(np.prod(v.shape[:-1]))
        if v.kind in ("dense", "linear") and gram_pays(r, int(out), int(inp)):
            rows.append(r)
            factors += r * (int(out) + int(inp))
        else:
            rows.append(None)
            explicit += int(np.prod(shapes[f"{v.name}.W"]))
    return weighted, rows, explicit, factors


BLOCK_BYTES = 16 * 2**20
VIEW_BYTES = 256 * 2**10


def metric_block(chunk, batch, vertex_values, weights, itemsize):
    """Ticks per metric block (1 to a chunk): as many as fit BLOCK_BYTES of ``weights``
    values a row (W gradients, Gram factors) and of one batched backprop (~4 ×
    ``vertex_values`` a frame row)."""
    per_tick = itemsize * max(weights, 4 * batch * vertex_values, 1)
    return max(1, min(int(chunk), BLOCK_BYTES // per_tick))


def ring_pieces(ring, i0, lo, hi):
    """Slots of a ring of ``ring`` frames (tick i in slot i % ring) holding
    ticks i0 + lo .. i0 + hi − 1: at most two (pos_lo, pos_hi, slot_lo, slot_hi)."""
    out, p = [], lo
    while p < hi:
        s = (i0 + p) % ring
        q = min(hi, p + ring - s)
        out.append((p, q, s, s + q - p))
        p = q
    return out


def repeat_sources(i0, repeats, ref_frame, ring):
    """(src, fresh) for the pending frames of ticks i0, i0 + 1, … (``repeats``: each
    repeats the frame before): ``fresh`` the indices of the frames needing their own
    backprop, ``src[k]`` the index into ``fresh`` of frame k's reference, −1 for a
    leading repeat of the ring's previous tick (``ref_frame``: the frame each slot holds)."""
    new = ~np.asarray(repeats, dtype=bool)
    new[0] |= i0 == 0 or ref_frame[(i0 - 1) % ring] != i0 - 1
    return np.cumsum(new) - 1, np.flatnonzero(new)


def _concat(xp, parts, axis):
    return parts[0] if len(parts) == 1 else xp.concat(parts, axis=axis)


def _stack_into(xp, parts, out):
    """``xp.stack(parts, axis=1)`` written into ``out`` (numpy: in one call)."""
    if isinstance(out, np.ndarray):
        np.stack(parts, axis=1, out=out)
    else:
        for col, a in enumerate(parts):
            out[:, col, ...] = a


def _gather(xp, a, idx):
    """``a``'s flat elements at the host indices ``idx``, shaped like ``idx``."""
    return xp.reshape(xp.take(xp.reshape(a, (-1,)), xp.asarray(idx.reshape(-1))), idx.shape)


class VertexMetrics:
    """A Recorder's metrics: ``frame`` feeds every tick to the reference ring,
    ``copy`` keeps a recorded row's factors of g, ``reference`` backprops the
    pending frames and ``measure`` writes a block's mismatch into ``host``."""

    def __init__(self, engine, plan, host, sizes, reference):
        self.engine, self.xp, self._host, self._sizes = engine, engine.xp, host, sizes
        eng = engine
        self._pair_key = "tag_pair" if reference == "input" else "tag_supervision"
        model, be, B = engine.model, engine.backend, engine.batch
        # the W gradients: a flat segment per explicit vertex, Gram factors per
        # dense/linear vertex (``metric_layout``)
        self._weighted, rows, _, factor_values = metric_layout(model, B)
        self._gv = [model.vertices[v] for v in self._weighted]
        self._grows = rows                            # Gram rows per weighted vertex, or None
        self._gcols = [j for j, r in enumerate(rows) if r is not None]
        self._ecols = [j for j, r in enumerate(rows) if r is None]
        self._wkeys = [f"{self._gv[j].name}.W" for j in self._ecols]
        shapes = model.param_shapes()
        bounds = np.cumsum([0] + [int(np.prod(shapes[k])) for k in self._wkeys])
        self._segments = list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))
        PW = int(bounds[-1])
        self._seg_of = np.repeat(np.arange(len(self._wkeys)), np.diff(bounds))
        self._K = K = metric_block(plan.chunk, B, sum(sizes), PW + factor_values, plan.itemsize)
        self._itemsize = plan.itemsize
        self._R = R = 2 * eng.depth + eng.supervision_delay + 2   # frames a pairing reaches
        self._ring = RR = R + K
        # A Gram vertex of a flat dense layer paired with its parent's current
        # x (pairing `local`) reads δ and x off the Recorder's block rows.
        self.in_block = {j for j in self._gcols
                          if eng.pairing == "local" and len(self._gv[j].shape) == 1
                          and len(self._gv[j].parents) == 1
                          and len(model.vertices[self._gv[j].parents[0]].shape) == 1}
        # Gram columns in runs: consecutive block-read vertices, each on the one
        # before, of one W shape (a chain's equal layers), take one Gram product
        self._gruns = []
        for j in self._gcols:
            if self._gruns and self._chained(self._gruns[-1][-1], j, shapes):
                self._gruns[-1].append(j)
            else:
                self._gruns.append([j])
        # the ring: per slot (frame i in slot i % RR) the explicit W gradients,
        # each Gram run's δ and x (slot, vertex, rows, width), ⟨G, G⟩ per vertex
        self._ref = [be.zeros((RR, PW))] if PW else []
        for run in self._gruns:
            w = shapes[f"{self._gv[run[0]].name}.W"]
            r, m = rows[run[0]], len(run)
            self._ref += [be.zeros((RR, m, r, w[0])), be.zeros((RR, m, r, w[-1]))]
        self._ref_gg = be.zeros((RR, max(1, len(self._weighted))))
        self._ref.append(self._ref_gg)
        self._ref_frame = np.full(RR, -1, dtype=np.int64)
        # explicit g of the pending rows, formed per block from copies of each
        # recorded tick's factors (δ and the inputs g pairs it with)
        self._blk_g = be.zeros((K, PW)) if PW else None
        self._copied = [j for j in range(len(self._gv)) if j not in self.in_block]
        self._blk_d = {j: be.zeros((K, B) + tuple(self._gv[j].shape)) for j in self._copied}
        self._blk_x = {j: [be.zeros((K, B) + tuple(model.vertices[p].shape))
                           for p in self._gv[j].parents] for j in self._copied}
        self._since = 0                               # ticks since the last block
        # frozen: the pending (tick, u, y, repeat, False) or (first tick, U, Y, repeats, True)
        self._frames = []
        self._frozen = not eng.learning_rate
        self._params = None                           # frozen: read once per run

    def frame(self, i, u, y, repeat):
        """Tick i's frame: kept for the block's reference (frozen) or referenced now."""
        if self._frozen:
            self._frames.append((i, u, y, repeat, False))
        elif self._gv:
            self._reference_now(i, u, y, self.engine.parameters())
        self._since += 1

    def frames(self, i0, U, Y, repeats, params=None):
        """``frame`` for ticks i0 … i0 + len(U) − 1 (learning: ``params(k)`` the
        weights of tick i0 + k)."""
        if self._frozen:
            self._frames.append((i0, U, Y, repeats, True))
        elif self._gv:
            for k in range(len(U)):
                self._reference_now(i0 + k, U[k], Y[k], params(k))
        self._since += len(U)

    def due(self):
        """Whether K ticks passed since the last block (the ring holds no more)."""
        return self._since >= self._K

    def room(self):
        """Ticks until ``due``."""
        return self._K - self._since

    def pending(self):
        """Whether ticks were fed since the last block."""
        return bool(self._frames) or self._since > 0

    def copy(self, k):
        """Row k of the block: the factors (δ, paired inputs) of every weighted
        vertex that does not read them off the Recorder's block."""
        if self._copied:
            self.put(k, {v.index: (x, d) for v, x, d in self.engine.gradient_factors()})

    def put(self, at, factors):
        """``factors`` {vertex index: (paired inputs, δ)} into block row(s) ``at``."""
        for j in self._copied:
            inputs, delta = factors[self._gv[j].index]
            self._blk_d[j][at, ...] = delta
            for q, a in enumerate(inputs):
                self._blk_x[j][q][at, ...] = a

    def _chained(self, i, j, shapes):
        a, b = self._gv[i], self._gv[j]
        return (i in self.in_block and j in self.in_block and b.index == a.index + 1
                and a.parents[0] == a.index - 1 and b.parents[0] == b.index - 1
                and shapes[f"{a.name}.W"] == shapes[f"{b.name}.W"])

    def _block_gradients(self, n):
        """The explicit W gradients g[t] of the first n pending rows into
        ``_blk_g``: per vertex one ``frame_param_grads`` (a tick as a frame)."""
        xp, B = self.xp, self.engine.batch
        for seg, j in enumerate(self._ecols):
            v = self._gv[j]
            d = xp.reshape(self._blk_d[j][:n, ...], (n * B,) + tuple(v.shape))
            xs = [xp.reshape(a[:n, ...], (n * B,) + tuple(a.shape[2:])) for a in self._blk_x[j]]
            gw = graph_reference.frame_param_grads(xp, v.layer, xs, d, n, B)["W"]
            lo, hi = self._segments[seg]
            self._blk_g[:n, lo:hi] = xp.reshape(gw, (n, hi - lo))

    def _gram_factors(self, j, d, x, lead):
        """δ and x of Gram vertex j as (lead, rows, out) and (lead, rows, in)."""
        xp, rows = self.xp, self._grows[j]
        return xp.reshape(d, (lead, rows, d.shape[-1])), xp.reshape(x, (lead, rows, x.shape[-1]))

    def _segment_sums(self, a):
        """(rows, segments): sums of ``a`` (rows, PW) over each explicit vertex's columns."""
        xp = self.xp
        return xp.stack([xp.sum(a[:, lo:hi], axis=1) for lo, hi in self._segments], axis=1)

    def _reference_rows(self, outs, deltas, F, B, grads, into=None):
        """Ring rows (``_ref`` order) of F frames from the oracle's factors of
        their F·B rows: explicit W gradients (``grads(vertex, inputs, delta)``,
        each (F, *W shape)), each Gram run's δ and x, ⟨G, G⟩ per vertex. ``into``:
        the ring pieces (``ring_pieces``) the F frames go to; each Gram run's δ and
        x are then written there straight, not stacked first (their rows: None)."""
        xp = self.xp
        gg = [None] * len(self._gv)
        out = []
        if self._wkeys:
            G = [grads(self._gv[j], [outs[p] for p in self._gv[j].parents],
                       deltas[self._gv[j].index]) for j in self._ecols]
            G = _concat(xp, [xp.reshape(a, (F, -1)) for a in G], -1)
            out.append(G)
            sums = self._segment_sums(G * G)
            for seg, j in enumerate(self._ecols):
                gg[j] = sums[:, seg]
        first = len(out)
        for q, run in enumerate(self._gruns):
            ds, xs = zip(*(self._gram_factors(j, deltas[self._gv[j].index],
                                              outs[self._gv[j].parents[0]], F) for j in run))
            if into is None:
                d, x = xp.stack(ds, axis=1), xp.stack(xs, axis=1)      # (F, m, rows, width)
                out += [d, x]
                g = gram(xp, d, x, d, x)
            else:
                ring_d, ring_x = self._ref[first + 2 * q], self._ref[first + 2 * q + 1]
                parts = []
                for p, r, a, b in into:
                    rd, rx = ring_d[a:b, ...], ring_x[a:b, ...]
                    _stack_into(xp, [dj[p:r, ...] for dj in ds], rd)
                    _stack_into(xp, [xj[p:r, ...] for xj in xs], rx)
                    parts.append(gram(xp, rd, rx, rd, rx))
                out += [None, None]
                g = _concat(xp, parts, 0)
            for c, j in enumerate(run):
                gg[j] = g[:, c]
        out.append(xp.stack(gg, axis=1))
        return out

    def _reference_now(self, i, u, y, params):
        """Learning on: the reference of frame i with the weights ``params`` of tick i."""
        eng, xp, slot = self.engine, self.xp, i % self._ring
        outs, deltas, _ = graph_reference.factors(eng.model, u, y, eng.loss, params=params)
        rows = self._reference_rows(
            outs, deltas, 1, u.shape[0],
            lambda v, inputs, d: xp.expand_dims(v.layer.param_grads(xp, inputs, d)["W"], axis=0),
            into=[(0, 1, slot, slot + 1)])
        for ring, row in zip(self._ref, rows):
            if row is not None:
                ring[slot:slot + 1, ...] = row
        self._ref_frame[slot] = i

    def reference(self):
        """Frozen weights: the references of the pending frames that repeat no
        frame before in ONE batched backprop, into the ring (a repeat copies)."""
        self._since = 0
        frames, self._frames = self._frames, []
        if not (frames and self._gv):
            return
        eng, xp, RR = self.engine, self.xp, self._ring
        i0, stacked = frames[0][0], frames[0][4]
        reps = (np.concatenate([f[3] for f in frames]) if stacked else
                np.array([f[3] for f in frames], dtype=bool))
        n = len(reps)
        src, fresh = repeat_sources(i0, reps, self._ref_frame, RR)
        if self._params is None:
            self._params = eng.parameters()
        pieces = ring_pieces(RR, i0, 0, n)
        # every frame fresh (a new frame every tick): the rows go to the ring straight
        into = pieces if len(fresh) == n else None
        parts = []
        if src[0] < 0:                                 # leading repeats: the slot before
            prev = (i0 - 1) % RR
            parts.append([ring[prev:prev + 1, ...] for ring in self._ref])
        if len(fresh):
            U, Y = (self._fresh(frames, j, fresh, stacked) for j in (1, 2))
            F, B = len(fresh), int(U.shape[1])
            outs, deltas, _ = graph_reference.factors(
                eng.model, xp.reshape(U, (F * B,) + tuple(U.shape[2:])),
                xp.reshape(Y, (F * B,) + tuple(Y.shape[2:])), eng.loss, params=self._params)
            parts.append(self._reference_rows(
                outs, deltas, F, B,
                lambda v, inputs, d: graph_reference.frame_param_grads(
                    xp, v.layer, inputs, d, F, B)["W"], into=into))
        rows = [None if p[-1] is None else _concat(xp, p, 0) for p in zip(*parts)]
        pick = src + (1 if src[0] < 0 else 0)
        if not np.array_equal(pick, np.arange(rows[-1].shape[0])):
            take = xp.asarray(pick)
            rows = [xp.take(r, take, axis=0) for r in rows]
        for p, q, a, b in pieces:
            for ring, r in zip(self._ref, rows):
                if r is not None:
                    ring[a:b, ...] = r[p:q, ...]
        ticks = i0 + np.arange(n)
        self._ref_frame[ticks % RR] = ticks

    def _fresh(self, frames, j, fresh, stacked):
        """The ``fresh`` pending frames' inputs (j = 1) or targets (j = 2), stacked."""
        xp = self.xp
        if not stacked:
            rows = [frames[k][j] for k in fresh]
            # numpy builds one array of many small ones ~4x faster than np.stack
            return np.array(rows) if isinstance(rows[0], np.ndarray) else xp.stack(rows)
        a = _concat(xp, [f[j] for f in frames], 0)
        return a if len(fresh) == a.shape[0] else xp.take(a, xp.asarray(fresh), axis=0)

    def _run_factors(self, run, n, bx, bd):
        """δ and x (n, m, rows, width) of a Gram run's n pending rows: views of
        the Recorder's block (``bx``, ``bd``) or the run's one copy."""
        j, xp = run[0], self.xp
        if j in self.in_block:
            v, m = self._gv[j], len(run)
            p = v.parents[0]
            return (bd[:n, v.index:v.index + m, :, :v.shape[0]],
                    bx[:n, p:p + m, :, :self._sizes[p]])
        d, x = self._gram_factors(j, self._blk_d[j][:n, ...], self._blk_x[j][0][:n, ...], n)
        return xp.expand_dims(d, axis=1), xp.expand_dims(x, axis=1)

    def _run_slots(self, ring, slots):
        """A run's ring (RR, m, rows, width) at ``slots`` (n, m), each vertex at its
        own: a view for one vertex at consecutive slots, else a gather."""
        xp, (n, m) = self.xp, slots.shape
        s0 = int(slots[0, 0])
        if m == 1 and s0 + n <= ring.shape[0] and np.array_equal(slots[:, 0], s0 + np.arange(n)):
            return ring[s0:s0 + n, ...]
        flat = xp.reshape(ring, (-1,) + tuple(ring.shape[2:]))
        idx = xp.asarray((slots * m + np.arange(m)).reshape(-1))
        return xp.reshape(xp.take(flat, idx, axis=0), slots.shape + tuple(ring.shape[2:]))

    def _gram_ref(self, d, x, ring_d, ring_x, slots):
        """⟨g, G⟩ (n, m) of a run's rows against its ring's references at ``slots``
        (n, m): per vertex on views of the ring where each vertex's slots follow on
        (mod the ring: a new frame every tick), else on one gather of them all."""
        xp, (n, m), RR = self.xp, slots.shape, ring_d.shape[0]
        # a vertex's views cost a few Python calls: they pay where its gather
        # would copy more than VIEW_BYTES (not at paper scale or L = 64, width 32, batch 1)
        big = n * d.shape[-2] * (d.shape[-1] + x.shape[-1]) * self._itemsize >= VIEW_BYTES
        if not big or not all(np.array_equal(slots[:, c], (slots[0, c] + np.arange(n)) % RR)
                              for c in range(m)):
            return gram(xp, d, x, self._run_slots(ring_d, slots), self._run_slots(ring_x, slots))
        return xp.stack([_concat(xp, [gram(xp, d[p:r, c, ...], x[p:r, c, ...],
                                           ring_d[a:b, c, ...], ring_x[a:b, c, ...])
                                      for p, r, a, b in ring_pieces(RR, int(slots[0, c]), 0, n)],
                                 0) for c in range(m)], axis=1)

    @np.errstate(divide="ignore", invalid="ignore")     # a zero gradient gives NaN
    def measure(self, ticks, rows, bx=None, bd=None):
        """Mismatch of the block's rows (``ticks``, host ``rows``) against the
        ring's references of their paired frames, batched over the rows."""
        xp, be, host = self.xp, self.engine.backend, self._host
        for k in ("mismatch_cos", "mismatch_rel", "grad_norm", "ref_norm"):
            host[k][rows] = np.nan
        if not self._gv:
            return
        n, R, RR = len(ticks), self._R, self._ring
        cols = np.array(self._weighted)
        frames = host[self._pair_key][rows][:, cols]               # (n, weighted)
        t = ticks[:, None]
        valid = (frames >= 0) & (frames > t - R)
        slots = np.where(valid, frames % RR, t % RR)
        valid &= self._ref_frame[slots] == frames
        nan = np.where(valid, 0.0, np.nan)
        C = self._ref_gg.shape[1]            # ⟨G, G⟩ of vertex j at slot s: flat s·C + j
        out = {}
        if self._wkeys:
            e = np.array(self._ecols)
            self._block_gradients(n)
            PW = self._blk_g.shape[1]
            g = self._blk_g[:n, :]
            ref = _gather(xp, self._ref[0], slots[:, e][:, self._seg_of] * PW + np.arange(PW))
            diff = g - ref
            gg, gG, dd = (self._segment_sums(a) for a in (g * g, g * ref, diff * diff))
            GGe = _gather(xp, self._ref_gg, slots[:, e] * C + e)
            out[tuple(e)] = (gG / xp.sqrt(gg * GGe), xp.sqrt(dd / GGe), gg, GGe)
        if self._gcols:
            first = 1 if self._wkeys else 0
            gg, gG = [], []
            for q, run in enumerate(self._gruns):
                d, x = self._run_factors(run, n, bx, bd)               # (n, m, rows, width)
                gg.append(gram(xp, d, x, d, x))
                gG.append(self._gram_ref(d, x, self._ref[first + 2 * q],
                                         self._ref[first + 2 * q + 1], slots[:, run]))
            gg, gG = _concat(xp, gg, 1), _concat(xp, gG, 1)
            g_ = np.array(self._gcols)
            GGg = _gather(xp, self._ref_gg, slots[:, g_] * C + g_)
            cos, rel = cosine_and_relative(xp, gg, gG, GGg)
            out[tuple(g_)] = (cos, rel, gg, GGg)
        for js, (cos, rel, gg, GGj) in out.items():
            c, mask = cols[list(js)] - 1, nan[:, list(js)]
            host["mismatch_cos"][rows, c] = be.to_host(cos) + mask
            host["mismatch_rel"][rows, c] = be.to_host(rel) + mask
            host["grad_norm"][rows, c] = be.to_host(xp.sqrt(gg))
            host["ref_norm"][rows, c] = be.to_host(xp.sqrt(GGj)) + mask
