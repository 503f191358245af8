"""The Recorder: what a run keeps of every ``record.every``-th tick, from
either engine's per-vertex (per-layer) states.

Every row the Recorder keeps norms of x and δ, the provenance tags and both
mismatch metrics against the reference gradient of the frame chosen by
``reference`` ("input": the frame of the x that g pairs with; "supervision":
the frame of δ's target); the reference ring itself is filled every tick.
Full neuron states are optional, at the same rows, for chosen layers
(vertices). Device-side values go into preallocated block buffers that are
moved to the host once per block (never per neuron, never per tick).

One Recorder records both engines: a chain engine (``stacked_state_views``:
every layer N wide in one array, copied in one call a tick) and a graph
engine (``GraphEngine.state_views``: each vertex's x and δ, copied flattened
into the block, zero beyond its size). What differs is read off the engine
once: the tags' closed form (``TagTable`` of a chain Engine's options,
``TagClock`` read off a graph engine as it runs) and the metrics
(``StackedMetrics``: the layers' factors stacked; ``VertexMetrics``: per
vertex, Gram products for dense/linear, explicit g otherwise).
"""
import numpy as np

from ..errors import SimulatorError
from .plan import block_ticks, states_in_place
from .stacked import StackedMetrics
from .tags import TagClock, tag_table
from .trace import METRIC_KEYS, TAG_KEYS, Trace, _blank_padding
from .vertex import HI_KEYS, VertexMetrics, vertex_arrays

REFERENCES = ("input", "supervision")


class Recorder:
    """Records an engine into host arrays, a row every ``plan.every`` ticks
    (see RecordPlan; for a graph its depth is n − 1 and its width the largest
    vertex).

    A recorded tick costs two copies: x and δ of every layer (vertex) go into
    a block buffer of K rows (and what the metrics pair them with); on numpy
    with every layer of a chain recorded (the default) that buffer is the
    host state arrays' rows themselves, so the states need no second copy;
    everything else is done per block in a few batched calls: norms
    (sqrt(sum(x²)) over the block), states (one transfer), tags (closed
    form, once settled) and the mismatch. Nothing is allocated for what the
    plan does not record (no metric arrays without ``plan.metrics``).
    """

    def __init__(self, engine, plan, reference="input"):
        if reference not in REFERENCES:
            raise SimulatorError(f"unknown reference {reference!r}; expected input or supervision")
        self.engine, self.plan, self.reference = engine, plan, reference
        self.xp = xp = engine.xp
        be, B, T = engine.backend, engine.batch, plan.rows
        # Engines of a Model (GraphEngine, the compiled CompiledEngine) expose
        # per-vertex state views; the stacked chain engine its padded block.
        self._graph = hasattr(engine, "state_views")
        if self._graph:
            self._vertex = vertex_arrays(engine.model)
            self._sizes = [int(s) for s in self._vertex["sizes"]]
            n, N = engine.n, max(self._sizes)
        else:
            self._vertex, self._sizes = None, list(engine.sizes)
            n, N = engine.depth + 1, engine.width
        self._every, self._metrics = plan.every, plan.metrics
        self._host = host = {
            "x_norm": np.full((T, n), np.nan), "delta_norm": np.full((T, n), np.nan),
            "stream_frame": np.full(T, -1, dtype=np.int64),
            "tick": np.arange(0, plan.ticks, plan.every, dtype=np.int64),
        }
        # tags: (host array, engine key); a graph adds the newest frame (_hi)
        self._tag_keys = [("tag_" + k, k) for k in TAG_KEYS] + (
            [(f"tag_{k}_hi", k + "_hi") for k in HI_KEYS] if self._graph else [])
        for name, _ in self._tag_keys:
            host[name] = np.full((T, n), -1, dtype=np.int64)
        self._tag_rows = [host[name] for name, _ in self._tag_keys]
        # closed form: a chain Engine's TagTable (ready at once), or a clock
        # that reads a graph engine's own tags until every one moves a frame
        # per tick; otherwise (no table) the tags are stepped
        self._table = None if self._graph else tag_table(engine)
        self._clock = (TagClock(2 * engine.depth + engine.supervision_delay + engine.history + 2)
                       if self._graph else None)
        # a graph's metrics keep their own block of factors (VertexMetrics,
        # ``metric_block``) and ask for the block to be processed when full
        self._K = K = block_ticks(plan, n, B, N, plan.itemsize)
        # x and δ of every layer of the pending rows: (K, 2, n, B, N); on
        # numpy with every layer of a chain recorded, the host state arrays'
        # rows are that buffer (one copy a tick, not two)
        self._direct = not self._graph and states_in_place(plan, n - 1, be.device)
        self._blk = None if self._direct else be.zeros((K, 2, n, B, N))
        self._blk_ticks = []
        self._m = None
        if plan.metrics:
            for k in METRIC_KEYS:
                host[k] = np.full((T, n - 1), np.nan)
            self._m = (VertexMetrics(engine, plan, host, self._sizes, reference) if self._graph
                       else StackedMetrics(engine, K, host, host["tag_pair" if reference == "input"
                                                                 else "tag_supervision"],
                                           plan.every))
        if plan.states:
            S, nl = plan.state_ticks, len(plan.layers)
            host["state_x"] = np.full((S, nl, B, N), np.nan, dtype=be.host_dtype)
            host["state_delta"] = np.full((S, nl, B, N), np.nan, dtype=be.host_dtype)
            host["state_tick"] = host["tick"].copy()
            self._state_layers = (None if list(plan.layers) == list(range(n)) else
                                  xp.asarray(np.array(plan.layers, dtype=np.int64)))

    # --------------------------------------------------------------- per tick
    def record(self, i, u, y, frame_id, repeat=False):
        """Record tick i (the engine has just made it), whose input/target were u, y;
        ``repeat`` says u, y and the weights are those of tick i − 1. Ticks that
        are not a multiple of ``plan.every`` only feed the reference ring (and
        a graph's tag clock)."""
        m, clock, tags = self._m, self._clock, None
        if clock is not None and not clock.ready:
            tags = self.engine.tags()
            clock.observe(i, np.stack([tags[k] for _, k in self._tag_keys]))
        if m is not None:
            m.frame(i, u, y, repeat)
        if i % self._every:
            if m is not None and m.due():
                self._process_block()
            return
        k = len(self._blk_ticks)
        row = i // self._every
        views = self._copy(k, row)
        if m is not None:
            m.copy(k, views)
        self._blk_ticks.append(i)
        self._host["stream_frame"][row] = frame_id
        if tags is not None:
            for name, key in self._tag_keys:
                self._host[name][row] = tags[key]
        elif self._table is None and clock is None:
            self._step_tags(row)
        if k + 1 == self._K or (m is not None and m.due()):
            self._process_block()

    def _copy(self, k, row):
        """x and δ of every layer (vertex) into block row k (or, in place, host
        row ``row``); returns the engine's views for the metrics."""
        eng = self.engine
        if not self._graph:
            views = X, D, _ = eng.stacked_state_views()
            if self._direct:
                self._host["state_x"][row, ...] = X
                self._host["state_delta"][row, ...] = D
            else:
                self._blk[k, 0, ...] = X
                self._blk[k, 1, ...] = D
            return views
        xp, blk, B = self.xp, self._blk, eng.batch
        X, D = eng.state_views()            # live views: read within this tick
        for l, s in enumerate(self._sizes):
            blk[k, 0, l, :, :s] = xp.reshape(X[l], (B, s))
            blk[k, 1, l, :, :s] = xp.reshape(D[l] if l else X[0], (B, s))
        return X, D

    def _step_tags(self, row):
        """Tags of a chain engine without a TagTable: read from it, this tick."""
        eng = self.engine
        write_tags = getattr(eng, "write_tags", None)
        if write_tags is not None:
            write_tags(self._tag_rows, row)
            return
        tags = eng.tags()
        for (_, key), rows in zip(self._tag_keys, self._tag_rows):
            rows[row] = tags[key]

    def _settle_tags(self, ticks, rows):
        """Closed-form tags of the block's rows: all of them (TagTable), or
        those after the clock's warm-up (earlier rows were stepped)."""
        if self._table is not None:
            table, at = self._table.rows(ticks), rows
        elif self._clock is not None and self._clock.ready:
            late = ticks > self._clock.last
            if not late.any():
                return
            table, at = self._clock.rows(ticks[late]), np.arange(rows.start, rows.stop)[late]
        else:
            return
        for j, arr in enumerate(self._tag_rows):
            arr[at] = table[:, j]

    # --------------------------------------------------------------- blocks
    def _process_block(self):
        """References of the pending frames, then, for the pending rows (they
        are consecutive rows), norms, tags, states and the mismatch in a few
        batched calls each, written into the host arrays."""
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
        bx, bd = self._block(rows, n)
        for key, b in (("x_norm", bx), ("delta_norm", bd)):
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

    def _block(self, rows, n):
        """x and δ (n, layers, B, N) of the pending rows: views of the block
        buffer, or of the host state arrays' ``rows`` when they are the buffer."""
        if self._direct:
            return self._host["state_x"][rows], self._host["state_delta"][rows]
        return self._blk[:n, 0, ...], self._blk[:n, 1, ...]

    # ---------------------------------------------------------------- chunks
    def flush(self):
        """Measure and move to the host whatever is pending (run_stream calls
        it once per chunk, then lets the engine find NaN/Inf)."""
        if self._blk_ticks or (self._m is not None and self._m.pending()):
            self._process_block()

    def trace(self, meta=None):
        """The finished recording as a Trace (host arrays only). Without
        metrics the trace holds no metric arrays (readers see NaN for them,
        Trace.__getitem__)."""
        self.flush()
        arrays = dict(self._host)
        arrays["delta_norm"][:, 0] = np.nan
        if self._graph:
            arrays.update(self._vertex)
        else:
            arrays["sizes"] = np.array(self._sizes, dtype=np.int64)
        if self.plan.states:
            arrays["state_layers"] = np.array(self.plan.layers, dtype=np.int64)
            _blank_padding(arrays, self._sizes, self.plan.layers)
        return Trace(arrays, meta or {})
