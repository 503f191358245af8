"""Recording a run of the tick engine on a graph (GraphEngine), and its budget.

A graph trace has the arrays of a chain trace with "layer" read as "vertex in
model order" (vertex 0 the input, the output last; when the run is levelled,
the vertices of ``model.level()``, identities included): ``x_norm`` and
``delta_norm`` (T, n), the tags (T, n) with the OLDEST frame of each vertex
(``tag_<key>_hi`` the newest: they differ where an unlevelled vertex mixes
frames), ``mismatch_cos``/``mismatch_rel``/``grad_norm``/``ref_norm`` (T, n − 1)
for vertices 1..n−1 (NaN for vertices without weights), ``sizes`` (n,) the
number of values of each vertex, and states flattened per vertex (row-major)
and NaN-padded to the largest. It adds ``vertex_names``, ``vertex_kinds``,
``vertex_levels`` (longest path from the input), ``vertex_bwd`` (longest
path to the output) and ``vertex_sync`` (in the synchronization set).

The mismatch compares each weighted vertex's g for W (its δ paired with its
inputs, ``GraphEngine.gradients()``) with the W gradient of
``simulator.model.reference.backprop`` on the frame the vertex's tag names
(``pair`` for reference "input", ``supervision`` for "supervision"; the oldest
frame where a vertex mixes several), with the weights of the tick that frame
entered: backprop of every frame goes into a ring of 2D + d_y + 2 frames, D
the model's depth, as the chain recorder does. Plain and exact, not fast: one
instantaneous forward and backward pass per tick (skipped for a held frame
with frozen weights).
"""
import numpy as np

from .errors import NumericalError, SimulatorError
from .model import reference as graph_reference
from .model.tick import distances, sync_set
from .probes import REFERENCES, TAG_KEYS, RunBudget, Trace, _blank_padding, _row_bytes

HI_KEYS = ("input", "supervision", "output", "pair")


def vertex_arrays(model):
    """The per-vertex arrays a graph trace carries, for the model the engine runs on."""
    fwd, bwd = distances(model)
    synced = set(sync_set(model))
    return {"vertex_names": np.array(model.names),
            "vertex_kinds": np.array([v.kind for v in model.vertices]),
            "vertex_levels": np.array(fwd, dtype=np.int64),
            "vertex_bwd": np.array(bwd, dtype=np.int64),
            "vertex_sync": np.array([v.name in synced for v in model.vertices]),
            "vertex_edges": np.array([(p, c) for p, c, _ in model.edges()],
                                     dtype=np.int64).reshape(-1, 2),
            "sizes": np.array([int(np.prod(v.shape)) for v in model.vertices], dtype=np.int64)}


class GraphRecorder:
    """Records a GraphEngine into host arrays, a row every ``plan.every`` ticks
    (``plan``: a RecordPlan whose depth is n − 1 and width the largest vertex)."""

    def __init__(self, engine, plan, reference="input"):
        if reference not in REFERENCES:
            raise SimulatorError(f"unknown reference {reference!r}; expected input or supervision")
        self.engine, self.plan, self.reference = engine, plan, reference
        self.xp = engine.xp
        model = engine.model
        n, T, C, B = engine.n, plan.rows, plan.chunk, engine.batch
        self._vertex = vertex_arrays(model)
        self._sizes = [int(s) for s in self._vertex["sizes"]]
        self._weighted = [v.index for v in model.vertices[1:] if "W" in v.param_names]
        self._host = {
            "x_norm": np.full((T, n), np.nan), "delta_norm": np.full((T, n), np.nan),
            "stream_frame": np.full(T, -1, dtype=np.int64),
            "tick": np.arange(0, plan.ticks, plan.every, dtype=np.int64),
        }
        for key in TAG_KEYS:
            self._host["tag_" + key] = np.full((T, n), -1, dtype=np.int64)
        for key in HI_KEYS:
            self._host[f"tag_{key}_hi"] = np.full((T, n), -1, dtype=np.int64)
        be = engine.backend
        self._chunk = {"x_norm": be.zeros((C, n)), "delta_norm": be.zeros((C, n))}
        if plan.metrics:            # nothing kept for metrics that are not recorded
            self._chunk.update({k: be.zeros((C, n - 1)) for k in
                                ("mismatch_cos", "mismatch_rel", "grad_norm", "ref_norm")})
            self._host.update({k: np.full((T, n - 1), np.nan) for k in
                               ("mismatch_cos", "mismatch_rel", "grad_norm", "ref_norm")})
        self._pending, self._chunk_start = 0, 0
        self._ref_len = R = 2 * engine.depth + engine.supervision_delay + 2
        self._ref = [None] * R                         # {key of W: device gradient}
        self._ref_frame = np.full(R, -1, dtype=np.int64)
        if plan.states:
            S, nl = plan.state_ticks, len(plan.layers)
            N = max(self._sizes)
            self._host["state_x"] = np.full((S, nl, B, N), np.nan, dtype=be.host_dtype)
            self._host["state_delta"] = np.full((S, nl, B, N), np.nan, dtype=be.host_dtype)
            self._host["state_tick"] = self._host["tick"].copy()
            self._state_buf = [], []
            self._state_next = 0
            self._pad = {l: be.zeros((B, N - self._sizes[l])) for l in set(plan.layers)
                         if self._sizes[l] < N}

    # --------------------------------------------------------------- per tick
    def record(self, i, u, y, frame_id, repeat=False):
        """Record tick i (the engine has just made it), whose input/target were
        u, y; ``repeat`` says u, y and the weights are those of tick i − 1."""
        eng, xp = self.engine, self.xp
        if self.plan.metrics:
            self._store_reference(i, u, y, repeat)
        if i % self.plan.every:
            return
        row, c = i // self.plan.every, self._pending
        X, D = eng.state_views()            # live views: read within this tick
        sq = xp.stack([xp.sum(a * a) for a in X] + [xp.sum(a * a) for a in D[1:]])
        norms = xp.sqrt(sq)
        n = eng.n
        self._chunk["x_norm"][c, ...] = norms[:n]
        self._chunk["delta_norm"][c, 1:] = norms[n:]
        tags = eng.tags()
        for key in TAG_KEYS:
            self._host["tag_" + key][row] = tags[key]
        for key in HI_KEYS:
            self._host[f"tag_{key}_hi"][row] = tags[key + "_hi"]
        self._host["stream_frame"][row] = frame_id
        if self.plan.metrics:
            self._measure(i, c, tags)
        if self.plan.states:
            self._state_buf[0].append(self._padded(X))
            self._state_buf[1].append(self._padded([X[0]] + D[1:]))
        self._pending += 1
        if self._pending == self.plan.chunk:
            self.flush()

    def _padded(self, arrays):
        xp, B = self.xp, self.engine.batch
        rows = []
        for l in self.plan.layers:
            flat = xp.reshape(arrays[l], (B, -1))
            rows.append(xp.concat([flat, self._pad[l]], axis=1) if l in self._pad else flat)
        return xp.stack(rows)

    def _store_reference(self, i, u, y, repeat):
        """Backprop's W gradients of frame i with the current weights, into the ring."""
        eng, R = self.engine, self._ref_len
        slot = i % R
        if repeat and i > 0 and self._ref[(i - 1) % R] is not None:
            self._ref[slot] = self._ref[(i - 1) % R]   # same frame, same weights: same gradient
        else:
            grads = graph_reference.backprop(eng.model, u, y, eng.loss, params=eng.parameters())
            self._ref[slot] = {k: a for k, a in grads.items() if k.endswith(".W")}
        self._ref_frame[slot] = i

    def _measure(self, i, c, tags):
        with np.errstate(divide="ignore", invalid="ignore"):   # a zero gradient gives NaN
            self._measure_row(i, c, tags)

    def _measure_row(self, i, c, tags):
        eng, xp, R = self.engine, self.xp, self._ref_len
        frames = tags["pair" if self.reference == "input" else "supervision"]
        g = eng.gradients()
        nan = xp.asarray(float("nan"), dtype=self._chunk["x_norm"].dtype)
        for v in self._weighted:
            key = f"{eng.model.vertices[v].name}.W"
            gw = g[key]
            gg = xp.sum(gw * gw)
            self._chunk["grad_norm"][c, v - 1] = xp.sqrt(gg)
            s = int(frames[v])
            if s < 0 or s <= i - R or self._ref_frame[s % R] != s:
                for k in ("mismatch_cos", "mismatch_rel", "ref_norm"):
                    self._chunk[k][c, v - 1] = nan
                continue
            rw = self._ref[s % R][key]
            gG, GG = xp.sum(gw * rw), xp.sum(rw * rw)
            self._chunk["mismatch_cos"][c, v - 1] = gG / xp.sqrt(gg * GG)
            diff = gw - rw
            self._chunk["mismatch_rel"][c, v - 1] = xp.sqrt(xp.sum(diff * diff) / GG)
            self._chunk["ref_norm"][c, v - 1] = xp.sqrt(GG)
        for v in range(1, eng.n):
            if v not in self._weighted:
                for k in ("mismatch_cos", "mismatch_rel", "grad_norm", "ref_norm"):
                    self._chunk[k][c, v - 1] = nan

    # ---------------------------------------------------------------- chunks
    def flush(self):
        """Move the pending rows to the host; stop with NumericalError naming
        the first recorded tick and vertex whose x or δ is NaN (and the engine's
        own check of its current state)."""
        n, start = self._pending, self._chunk_start
        if n:
            be = self.engine.backend
            for key, buf in self._chunk.items():
                self._host[key][start:start + n] = be.to_host(buf[:n, ...])
            if self.plan.states and self._state_buf[0]:
                k, m = self._state_next, len(self._state_buf[0])
                self._host["state_x"][k:k + m] = be.to_host(self.xp.stack(self._state_buf[0]))
                self._host["state_delta"][k:k + m] = be.to_host(self.xp.stack(self._state_buf[1]))
                self._state_next += m
                self._state_buf = [], []
            self._pending, self._chunk_start = 0, start + n
            for what, key in (("activity", "x_norm"), ("delta", "delta_norm")):
                bad = np.argwhere(np.isnan(self._host[key][start:start + n]))
                if len(bad):
                    row, v = bad[0]
                    raise NumericalError(self._host["tick"][start + row], v, what)
        self.engine.check_finite()

    def trace(self, meta=None):
        """The finished recording as a Trace (host arrays only)."""
        self.flush()
        arrays = dict(self._host)
        arrays["delta_norm"][:, 0] = np.nan
        arrays.update(self._vertex)
        if self.plan.states:
            arrays["state_layers"] = np.array(self.plan.layers, dtype=np.int64)
            _blank_padding(arrays, self._sizes, self.plan.layers)
        return Trace(arrays, meta or {})


class GraphBudget(RunBudget):
    """``RunBudget`` of a run of the tick engine on a graph: the same parts,
    sized from the model's parameter shapes and vertex shapes (``model`` may
    be a skeleton, so nothing is allocated), with ``n_in``/``n_out`` the flat
    sizes of the stream's frames."""

    ADVICE = dict(RunBudget.ADVICE, **{
        "weights": "fewer or smaller layers (network.layers: units, channels, kernel)",
        "weight work": "fewer or smaller layers (network.layers: units, channels, kernel)",
        "state buffers": "a smaller stream.batch, network.input_shape or fewer channels "
                         "(network.layers)",
        "history rings": "rule.derivative and rule.pairing other than 'frame' (their rings "
                         "hold up to 2D ticks of state), a smaller stream.batch or model",
        "reference ring": "a smaller rule.supervision_delay (the ring holds 2D + d_y + 2 "
                          "gradients) or record.metrics = false",
        "metric work": "a smaller stream.batch or model, or record.metrics = false",
    })

    def __init__(self, plan, model, feedback="transpose", derivative="local", pairing="local",
                 supervision_delay=0, learning_rate=0.0, accumulate=1, target="teacher",
                 gif=None, distinct=None, pictures=False, budget_key="record.memory_budget"):
        self.plan, self.budget_key, self.pictures = plan, budget_key, pictures
        B, s, C, d_y = int(plan.batch), int(plan.itemsize), plan.chunk, int(supervision_delay)
        shapes = model.param_shapes()
        P = sum(int(np.prod(a)) for a in shapes.values())
        PW = sum(int(np.prod(a)) for k, a in shapes.items() if k.endswith(".W"))
        sizes = [int(np.prod(v.shape)) for v in model.vertices]
        S, N, n = sum(sizes), max(sizes), len(sizes)
        n_in, n_out = sizes[0], sizes[-1]
        D = model.depth
        copies = 1 + (feedback != "transpose") + (accumulate > 1 and learning_rate > 0)
        teacher = 8 * n_in * n_out if target == "teacher" else 0
        items = {"weights": s * P * copies + 8 * P + teacher,
                 "weight work": s * P * (2 if learning_rate else 1),
                 "state buffers": s * B * S * (7 + (derivative == "itd-dy"))}
        frame_rings = (derivative == "frame") + (pairing == "frame")
        items["history rings"] = s * B * S * (2 * D + 1) * frame_rings
        items["targets ring"] = s * (d_y + 1) * B * n_out
        if plan.metrics:
            ref = 2 * D + d_y + 2
            items["reference ring"] = s * ref * PW
            items["metric work"] = s * (P + 3 * B * S)
        items["stream frames"] = (8 + s) * 2 * C * B * (n_in + n_out)
        if target == "teacher":
            F = C if distinct is None else min(C, int(distinct))
            items["teacher forward"] = 8 * F * B * 2 * (n_in + n_out)
        rows = plan.rows
        items["recorded rows"] = (rows * (_row_bytes(n - 1, plan.metrics) + 8 * len(HI_KEYS) * n)
                                  + 6 * s * C * n)
        self._finish(items, N, B, s, C, gif)


__all__ = ["GraphRecorder", "GraphBudget", "vertex_arrays"]
