"""The Recorder: per ``record.every``-th tick the norms of x and δ, the provenance tags
(in closed form: TagClock), the mismatch against the reference gradient of the frame
``reference`` names ("input": of the x g pairs with; "supervision": of δ's target;
``vertex.VertexMetrics``) and optionally full states, read from any engine's
``state_views`` into preallocated blocks moved to the host once per block."""
import numpy as np

from ..engine.tags import TagClock, warm_ticks
from ..errors import SimulatorError
from .plan import block_ticks, states_in_place
from .trace import METRIC_KEYS, TAG_KEYS, Trace
from .vertex import HI_KEYS, VertexMetrics, vertex_arrays

REFERENCES = ("input", "supervision")


class Recorder:
    """Records an engine into host arrays, a row every ``plan.every`` ticks (RecordPlan;
    for a graph depth n − 1, width the largest vertex): x and δ of a recorded tick go into
    a block of K rows (on cpu with every vertex recorded, the host rows themselves), then
    norms, states, tags and mismatch per block in a few batched calls."""

    def __init__(self, engine, plan, reference="input"):
        if reference not in REFERENCES:
            raise SimulatorError(f"unknown reference {reference!r}; expected input or supervision")
        self.engine, self.plan, self.reference = engine, plan, reference
        self.xp = xp = engine.xp
        be, B, T = engine.backend, engine.batch, plan.rows
        self._sizes = [int(np.prod(v.shape)) for v in engine.model.vertices]
        # None: a plain chain, recorded as layers
        self._vertex = vertex_arrays(engine.model, engine.feedback)
        # per tick: each stacked run of the engine in one copy (``state_blocks``),
        # every other vertex's x and δ on its own (a flat one without a reshape)
        runs = getattr(engine, "state_blocks", lambda: [])()
        in_x = {i for first, X, _ in runs for i in range(first, first + X.shape[0])}
        in_d = {i for first, _, D in runs for i in range(first + 1, first + 1 + D.shape[0])}
        self._runs = bool(runs)
        each = [(l, s, len(v.shape) == 1)
                for l, (s, v) in enumerate(zip(self._sizes, engine.model.vertices))]
        # (x, δ) vertices copied one by one: per tick those outside a run, per block all
        each_d = [c for c in each if c[0] or self._vertex is not None]
        self._each = (each, each_d)
        self._copy_x = [c for c in each if c[0] not in in_x]
        self._copy_d = [c for c in each_d if c[0] not in in_d]
        n, N = engine.n, max(self._sizes)
        self._every = plan.every
        self._host = host = {
            "x_norm": np.full((T, n), np.nan), "delta_norm": np.full((T, n), np.nan),
            "stream_frame": np.full(T, -1, dtype=np.int64),
            "tick": np.arange(0, plan.ticks, plan.every, dtype=np.int64),
        }
        # tags: (host array, engine key); a graph adds the newest frame (_hi)
        self._tag_keys = [("tag_" + k, k) for k in TAG_KEYS] + (
            [(f"tag_{k}_hi", k + "_hi") for k in HI_KEYS] if self._vertex is not None else [])
        for name, _ in self._tag_keys:
            host[name] = np.full((T, n), -1, dtype=np.int64)
        self._tag_rows = [host[name] for name, _ in self._tag_keys]
        # their rows of the engine's ``tag_state``
        self._tag_pick = np.array([engine.TAG_ROWS.index(k) for _, k in self._tag_keys])
        self._clock = TagClock(warm_ticks(engine))
        self._shifts = getattr(engine, "tags_shift", lambda: False)
        self._K = K = block_ticks(plan, n, B, N, plan.itemsize)
        # x and δ of every vertex of the pending rows: (K, 2, n, B, N) (the
        # input's δ row: 0 in a chain trace, x in a graph's), or the host rows
        self._direct = states_in_place(plan, n - 1, be.device)
        self._blk = None if self._direct else be.zeros((K, 2, n, B, N))
        self._blk_ticks = []
        self._given = False                 # norms given by the engine (record_block)
        self._m = None
        if plan.metrics:
            for k in METRIC_KEYS:
                host[k] = np.full((T, n - 1), np.nan)
            self._m = VertexMetrics(engine, plan, host, self._sizes, reference)
        self._factor_copies = self._m is not None and bool(self._m._copied)
        self._frame_col = host["stream_frame"]
        # whether anything but the norms reads the block's x and δ
        self._block_read = plan.states or (self._m is not None and bool(self._m.in_block))
        if plan.states:
            S, nl = plan.rows, len(plan.layers)
            # written now (not np.zeros' pages, faulted in by the first ticks)
            fill = 0.0 if self._direct else np.nan
            host["state_x"] = np.full((S, nl, B, N), fill, dtype=be.host_dtype)
            host["state_delta"] = np.full((S, nl, B, N), fill, dtype=be.host_dtype)
            host["state_tick"] = host["tick"].copy()
            self._state_layers = (None if list(plan.layers) == list(range(n)) else
                                  xp.asarray(np.array(plan.layers, dtype=np.int64)))
        # per stacked run, where its x and δ go: (block or host rows, its vertices, …)
        bx, bd = ((host["state_x"], host["state_delta"]) if self._direct else
                  (self._blk[:, 0, ...], self._blk[:, 1, ...]))
        self._run_to = [(bx[:, f:f + X.shape[0], :, :X.shape[-1]],
                         bd[:, f + 1:f + 1 + D.shape[0], :, :D.shape[-1]]) for f, X, D in runs]
        self._each_tick = bool(self._copy_x or self._copy_d)

    def record(self, i, u, y, frame_id, repeat=False):
        """Record tick i (just made) of input/target u, y (``repeat``: those and
        the weights of tick i − 1); ticks off ``plan.every`` only feed the
        reference ring and the tag clock."""
        m, clock, tags = self._m, self._clock, None
        if not clock.ready:
            tags = self._read_tags()
            clock.observe(i, tags)
            if not clock.ready and self._shifts():
                clock.settle(i, tags)
        if m is not None:
            m.frame(i, u, y, repeat)
        if i % self._every:
            if m is not None and m.due():
                self._process_block()
            return
        k = len(self._blk_ticks)
        row = i // self._every
        self._copy(k, row)
        if self._factor_copies:
            m.copy(k)
        self._blk_ticks.append(i)
        self._frame_col[row] = frame_id
        if tags is not None:
            for arr, t in zip(self._tag_rows, tags):
                arr[row] = t
        if k + 1 == self._K or (m is not None and m.due()):
            self._process_block()

    def record_block(self, i0, X, D, U, Y, frame_ids, repeats, factors, tags, params=None,
                     norms=None):
        """Record ticks i0 … i0 + n − 1 at once from stacked per-tick host arrays (the
        compiled executor's scan): x and δ per vertex (n, B, *shape) (δ of the input
        None), frames U, Y, ``frame_ids``, ``repeats`` (n,), ``factors`` {vertex index:
        (paired inputs, δ)} stacked alike, ``tags(t)`` the engine's ``tag_state()`` at
        tick t (read during the tag clock's warm-up only) and, learning, ``params(k)``
        the weights of tick i0 + k; ``norms``: (‖x‖, ‖δ‖) per tick and vertex when the
        engine took them (then x and δ are copied only for states or the mismatch).
        Whole segments (up to a full block) per copy; the block processing is ``record``'s."""
        self._given = norms is not None
        m, clock, every, n = self._m, self._clock, self._every, len(U)
        lo = 0
        while lo < n:
            i = i0 + lo
            first = -(-i // every) * every          # the segment's first recorded tick
            end = min(i0 + n, first + (self._K - len(self._blk_ticks) - 1) * every + 1)
            if m is not None:
                end = min(end, i + m.room())
            warm = []
            for t in range(i, end):
                if clock.ready:
                    break
                warm.append(tags(t)[self._tag_pick])
                clock.observe(t, warm[-1])
            if m is not None:
                m.frames(i, U[lo:end - i0], Y[lo:end - i0], repeats[lo:end - i0],
                         params and (lambda k, lo=lo: params(lo + k)))
            rec = np.arange(first, end, every)
            if len(rec):
                k, r0, at = len(self._blk_ticks), first // every, slice(first - i0, end - i0, every)
                rows = slice(r0, r0 + len(rec))
                if not self._given or self._block_read:
                    self._put(k, rows, [a[at] for a in X], [a if a is None else a[at] for a in D],
                              self._each, (-1,))
                if self._given:
                    self._host["x_norm"][rows], self._host["delta_norm"][rows] = (
                        a[at] for a in norms)
                if m is not None:
                    m.put(slice(k, k + len(rec)),
                          {v: ([a[at] for a in xs], d[at]) for v, (xs, d) in factors.items()})
                self._blk_ticks.extend(rec.tolist())
                self._host["stream_frame"][rows] = frame_ids[at]
                for t in rec[rec - i < len(warm)].tolist():
                    for arr, tag in zip(self._tag_rows, warm[t - i]):
                        arr[t // every] = tag
            lo = end - i0
            if len(self._blk_ticks) == self._K or (m is not None and m.due()):
                self._process_block()

    def _read_tags(self):
        """The engine's tags of this tick, (tag keys, vertices) in ``_tag_keys`` order."""
        return self.engine.tag_state()[self._tag_pick]

    def _copy(self, k, row):
        """x and δ of every vertex into block row k (or, in place, host row ``row``)."""
        eng = self.engine
        if self._each_tick:
            X, D = eng.state_views()            # live views: read within this tick
            self._put(k, row, X, D, (self._copy_x, self._copy_d), ())
        if self._runs:
            r = row if self._direct else k
            for (to_x, to_d), (_, Xr, Dr) in zip(self._run_to, eng.state_blocks()):
                to_x[r] = Xr
                to_d[r] = Dr

    def _put(self, k, row, X, D, each, lead):
        """x and δ of ``each`` (x, δ) vertices into block row k (or, in place, host row
        ``row``): one tick (``lead`` ()) or, ``row`` a slice, a segment's (``lead`` (-1,))."""
        xp, B = self.xp, self.engine.batch
        if self._direct:
            bx, bd = self._host["state_x"][row, ...], self._host["state_delta"][row, ...]
        else:
            at = slice(k, k + row.stop - row.start) if lead else k
            bx, bd = self._blk[at, 0, ...], self._blk[at, 1, ...]
        for l, s, flat in each[0]:        # a flat vertex needs no reshape
            bx[..., l, :, :s] = X[l] if flat else xp.reshape(X[l], lead + (B, s))
        for l, s, flat in each[1]:        # the input's δ row: x in a graph trace
            a = D[l] if l else X[0]
            bd[..., l, :, :s] = a if flat else xp.reshape(a, lead + (B, s))
        return bx, bd

    def _settle_tags(self, ticks, rows):
        """Closed-form tags of the block's rows after the clock's warm-up."""
        late = ticks > self._clock.last
        if not self._clock.ready or not late.any():
            return
        table, at = self._clock.rows(ticks[late]), np.arange(rows.start, rows.stop)[late]
        for j, arr in enumerate(self._tag_rows):
            arr[at] = table[:, j]

    def _process_block(self):
        """References of the pending frames, then norms, tags, states and the
        mismatch of the pending (consecutive) rows into the host arrays."""
        if self._m is not None:
            self._m.reference()
        ticks, self._blk_ticks = self._blk_ticks, []
        n = len(ticks)
        if not n:
            return
        xp, be, host = self.xp, self.engine.backend, self._host
        ticks = np.asarray(ticks)
        r0 = int(ticks[0]) // self._every
        rows = slice(r0, r0 + n)
        if self._direct:             # the host state arrays' rows are the block
            bx, bd = host["state_x"][rows], host["state_delta"][rows]
        else:
            bx, bd = self._blk[:n, 0, ...], self._blk[:n, 1, ...]
        for key, b in () if self._given else (("x_norm", bx), ("delta_norm", bd)):
            flat = xp.reshape(b, b.shape[:2] + (-1,))
            host[key][rows] = be.to_host(xp.sqrt(xp.vecdot(flat, flat)))    # (n, layers)
        self._settle_tags(ticks, rows)
        if self.plan.states and not self._direct:
            blk = self._blk[:n, ...]
            both = blk if self._state_layers is None else xp.take(blk, self._state_layers, axis=2)
            both = be.to_host(both)
            host["state_x"][rows] = both[:, 0]
            host["state_delta"][rows] = both[:, 1]
        if self._m is not None:
            self._m.measure(ticks, rows, bx, bd)

    def flush(self):
        """Measure and move to the host whatever is pending (once per chunk)."""
        if self._blk_ticks or (self._m is not None and self._m.pending()):
            self._process_block()

    def trace(self, meta=None):
        """The finished recording as a Trace (host arrays only)."""
        self.flush()
        arrays = dict(self._host)
        arrays["delta_norm"][:, 0] = np.nan
        arrays["sizes"] = np.array(self._sizes, dtype=np.int64)
        if self._vertex is not None:
            arrays.update(self._vertex)
        if self.plan.states:
            arrays["state_layers"] = np.array(self.plan.layers, dtype=np.int64)
            for j, l in enumerate(self.plan.layers):    # padding: NaN, so no picture shows it
                arrays["state_x"][:, j, :, self._sizes[l]:] = np.nan
                arrays["state_delta"][:, j, :, self._sizes[l]:] = np.nan
        return Trace(arrays, meta or {})
