"""What a run records, how often, and what it costs; the Trace it produces.

Per tick and layer the Recorder keeps norms of x and δ, the provenance tags and
both mismatch metrics against the reference gradient of the frame chosen by
``reference`` ("input": the frame of the x that g pairs with; "supervision":
the frame of δ's target). Full neuron states are optional, every k ticks, for
chosen layers. Device-side values go into preallocated chunk buffers that are
moved to the host once per chunk (never per neuron, never per tick).
"""
import json
import os
import tempfile

import numpy as np

from .errors import BudgetError, NumericalError, SceneError, SimulatorError
from .metrics import inner, mismatch
from .reference import factors_of

TAG_KEYS = ("input", "supervision", "output", "sigma_lo", "sigma_hi", "pair")
REFERENCES = ("input", "supervision")


def parse_bytes(text):
    """'1GiB', '512MiB', '2e9' or an int -> bytes."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return int(text)
    units = {"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
             "kb": 10**3, "mb": 10**6, "gb": 10**9, "b": 1}
    s = str(text).strip().lower()
    for unit, factor in units.items():
        if s.endswith(unit):
            try:
                return int(float(s[:-len(unit)]) * factor)
            except ValueError:
                break
    try:
        return int(float(s))
    except ValueError:
        raise SimulatorError(f"cannot read {text!r} as a size (e.g. '1GiB', '512MiB')") from None


def format_bytes(n):
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024


class RecordPlan:
    """Which arrays a run keeps: states every ``every`` ticks for ``layers``."""

    def __init__(self, ticks, depth, width, batch, itemsize, states=False, every=1,
                 layers=None, metrics=True, chunk=256, budget="1GiB"):
        self.ticks, self.depth, self.width, self.batch = ticks, depth, width, batch
        self.itemsize = itemsize
        self.states, self.every = bool(states), max(1, int(every))
        self.layers = list(range(depth + 1)) if not layers else [int(l) for l in layers]
        bad = [l for l in self.layers if not 0 <= l <= depth]
        if bad:
            raise SceneError(f"key 'record.layers': expected layers in 0..{depth}, got {bad}")
        self.metrics, self.chunk = bool(metrics), max(1, int(chunk))
        self.budget = parse_bytes(budget)

    @property
    def state_ticks(self):
        return len(range(0, self.ticks, self.every)) if self.states else 0

    def size(self):
        """Bytes of host memory the recorded arrays will take."""
        T, L = self.ticks, self.depth
        per_tick = 8 * (2 * (L + 1) + 2 * L + 2 * L) + 8 * len(TAG_KEYS) * (L + 1) + 16
        states = 2 * self.state_ticks * len(self.layers) * self.batch * self.width * self.itemsize
        return T * per_tick + states

    def check_budget(self):
        """Refuse, before any work, a recording that does not fit the budget."""
        need = self.size()
        if need <= self.budget:
            return need
        hint = []
        if self.states:
            factor = int(np.ceil(need / self.budget))
            hint.append(f"record states every {self.every * factor} ticks (record.every)")
            hint.append("record fewer layers (record.layers)")
            hint.append("turn off record.states")
        hint.append("run fewer ticks")
        raise BudgetError(
            f"recording would take {format_bytes(need)}, over the memory budget of "
            f"{format_bytes(self.budget)} (record.memory_budget): " + ", or ".join(hint))


class Recorder:
    """Records an Engine tick by tick into host arrays (see RecordPlan)."""

    def __init__(self, engine, plan, reference="input"):
        if reference not in REFERENCES:
            raise SimulatorError(f"unknown reference {reference!r}; expected input or supervision")
        self.engine, self.plan, self.reference = engine, plan, reference
        self.xp = engine.xp
        L, B, N = engine.depth, engine.batch, engine.width
        T, C = plan.ticks, plan.chunk
        self._host = {
            "x_norm": np.full((T, L + 1), np.nan), "delta_norm": np.full((T, L + 1), np.nan),
            "mismatch_cos": np.full((T, L), np.nan), "mismatch_rel": np.full((T, L), np.nan),
            "grad_norm": np.full((T, L), np.nan), "ref_norm": np.full((T, L), np.nan),
            "stream_frame": np.full(T, -1, dtype=np.int64), "tick": np.arange(T, dtype=np.int64),
        }
        for key in TAG_KEYS:
            self._host["tag_" + key] = np.full((T, L + 1), -1, dtype=np.int64)
        be = engine.backend
        self._chunk = {k: be.zeros((C, L + 1)) for k in ("x_norm", "delta_norm")}
        self._chunk.update({k: be.zeros((C, L)) for k in
                            ("mismatch_cos", "mismatch_rel", "grad_norm", "ref_norm")})
        self._pending, self._chunk_start = 0, 0
        self._ref_len = 2 * L + engine.supervision_delay + 2
        if plan.metrics:
            R = self._ref_len
            self._ref_d = be.zeros((R * L, B, N))
            self._ref_x = be.zeros((R * L, B, N))
            self._ref_gg_dev = be.zeros((R, L))
            self._ref_frame = np.full(R, -1, dtype=np.int64)
        if plan.states:
            S, nl = plan.state_ticks, len(plan.layers)
            self._host["state_x"] = np.full((S, nl, B, N), np.nan, dtype=be.host_dtype)
            self._host["state_delta"] = np.full((S, nl, B, N), np.nan, dtype=be.host_dtype)
            self._host["state_tick"] = np.arange(0, T, plan.every, dtype=np.int64)
            self._state_layers = self.xp.asarray(np.array(plan.layers, dtype=np.int64))
            self._state_buf = [], []
            self._state_next = 0

    # --------------------------------------------------------------- per tick
    def record(self, i, u, y, frame_id, repeat=False):
        """Record tick i (the engine has just made it), whose input/target were u, y;
        ``repeat`` says u, y and the weights are those of tick i − 1."""
        eng, xp = self.engine, self.xp
        X, D, Xp = eng.stacked_state_views()
        c = self._pending
        self._chunk["x_norm"][c, ...] = xp.linalg.vector_norm(X, axis=(1, 2))
        self._chunk["delta_norm"][c, ...] = xp.linalg.vector_norm(D, axis=(1, 2))
        tags = eng.tags()
        for key in TAG_KEYS:
            self._host["tag_" + key][i] = tags[key]
        self._host["stream_frame"][i] = frame_id
        if self.plan.metrics:
            self._store_reference(i, u, y, repeat)
            self._measure(i, D[1:, ...], Xp, tags)
        if self.plan.states and i % self.plan.every == 0:
            self._state_buf[0].append(xp.take(X, self._state_layers, axis=0))
            self._state_buf[1].append(xp.take(D, self._state_layers, axis=0))
        self._pending += 1
        if self._pending == self.plan.chunk:
            self.flush()

    def _store_reference(self, i, u, y, repeat):
        """Backprop factors of frame i with the current weights, into the ring."""
        eng, xp = self.engine, self.xp
        L, R = eng.depth, self._ref_len
        slot = i % R
        rows = slice(slot * L, (slot + 1) * L)
        prev = (i - 1) % R
        if repeat and i > 0:
            # A held frame with frozen weights has the same gradient: copy, don't recompute.
            self._ref_d[rows, ...] = self._ref_d[prev * L:(prev + 1) * L, ...]
            self._ref_x[rows, ...] = self._ref_x[prev * L:(prev + 1) * L, ...]
            self._ref_gg_dev[slot, ...] = self._ref_gg_dev[prev, ...]
        else:
            pairs, _ = factors_of(eng.weights(), eng.biases(), eng.activations, u, y, eng.loss)
            for l, (x, d) in enumerate(pairs):
                self._ref_x[slot * L + l, :, :x.shape[1]] = x
                self._ref_d[slot * L + l, :, :d.shape[1]] = d
            gg = inner(xp, self._ref_d[rows, ...], self._ref_x[rows, ...], self._ref_d[rows, ...], self._ref_x[rows, ...])
            self._ref_gg_dev[slot, ...] = gg
        self._ref_frame[slot] = i

    def _measure(self, i, d, xp_pair, tags):
        eng, xp = self.engine, self.xp
        L, R = eng.depth, self._ref_len
        frames = tags["pair" if self.reference == "input" else "supervision"][1:]
        valid = (frames >= 0) & (frames > i - R)
        slots = np.where(valid, frames % R, i % R)
        valid &= self._ref_frame[slots] == frames
        idx = xp.asarray(slots * L + np.arange(L))   # one transfer serves all three takes
        d_ref = xp.take(self._ref_d, idx, axis=0)
        x_ref = xp.take(self._ref_x, idx, axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            cos, rel = mismatch(xp, d, xp_pair, d_ref, x_ref)
        gg = inner(xp, d, xp_pair, d, xp_pair)
        GG = xp.take(xp.reshape(self._ref_gg_dev, (-1,)), idx)
        nan = xp.asarray(np.where(valid, 0.0, np.nan), dtype=cos.dtype)
        c = self._pending
        self._chunk["mismatch_cos"][c, ...] = cos + nan
        self._chunk["mismatch_rel"][c, ...] = rel + nan
        self._chunk["grad_norm"][c, ...] = xp.sqrt(gg)
        self._chunk["ref_norm"][c, ...] = xp.sqrt(GG) + nan

    # ---------------------------------------------------------------- chunks
    def flush(self):
        """Move the pending chunk to the host; stop the run on NaN/Inf."""
        n, start = self._pending, self._chunk_start
        if not n:
            return
        be = self.engine.backend
        for key, buf in self._chunk.items():
            self._host[key][start:start + n] = be.to_host(buf[:n, ...])
        if self.plan.states and self._state_buf[0]:
            k, m = self._state_next, len(self._state_buf[0])
            xs = be.to_host(self.xp.stack(self._state_buf[0]))
            ds = be.to_host(self.xp.stack(self._state_buf[1]))
            self._host["state_x"][k:k + m] = xs
            self._host["state_delta"][k:k + m] = ds
            self._state_next += m
            self._state_buf = [], []
        self._pending, self._chunk_start = 0, start + n
        self._check_finite(start, start + n)

    def _check_finite(self, start, stop):
        for key in ("x_norm", "delta_norm"):
            block = self._host[key][start:stop]
            bad = ~np.isfinite(block)
            if key == "delta_norm":
                bad[:, 0] = False
            if bad.any():
                t, layer = np.argwhere(bad)[0]
                what = "activity" if key == "x_norm" else "delta"
                raise NumericalError(start + t, layer, what)

    def trace(self, meta=None):
        """The finished recording as a Trace (host arrays only)."""
        self.flush()
        arrays = dict(self._host)
        arrays["delta_norm"][:, 0] = np.nan
        arrays["sizes"] = np.array(self.engine.sizes, dtype=np.int64)
        if self.plan.states:
            arrays["state_layers"] = np.array(self.plan.layers, dtype=np.int64)
            _blank_padding(arrays, self.engine.sizes, self.plan.layers)
        return Trace(arrays, meta or {})


def _blank_padding(arrays, sizes, layers):
    """Neurons beyond a layer's width are padding: NaN, so no picture shows them."""
    for j, l in enumerate(layers):
        arrays["state_x"][:, j, :, sizes[l]:] = np.nan
        arrays["state_delta"][:, j, :, sizes[l]:] = np.nan


class Trace:
    """Recorded arrays (trace.npz) plus the run's metadata (run.json)."""

    def __init__(self, arrays, meta):
        self.arrays, self.meta = arrays, meta

    def __getitem__(self, key):
        return self.arrays[key]

    def __contains__(self, key):
        return key in self.arrays

    @property
    def depth(self):
        return len(self.arrays["sizes"]) - 1

    def save(self, folder):
        """Write trace.npz atomically into ``folder``."""
        atomic_write(os.path.join(folder, "trace.npz"),
                     lambda f: np.savez_compressed(f, **self.arrays), binary=True)

    @classmethod
    def load(cls, folder):
        """Load trace.npz (and run.json if present) from a run folder."""
        path = os.path.join(folder, "trace.npz")
        if not os.path.isfile(path):
            raise SimulatorError(f"{folder}: no trace.npz here (expected a run folder)")
        with np.load(path) as data:
            arrays = {k: data[k] for k in data.files}
        meta_path = os.path.join(folder, "run.json")
        meta = {}
        if os.path.isfile(meta_path):
            with open(meta_path) as f:
                meta = json.load(f)
        return cls(arrays, meta)


def atomic_write(path, write, binary=False):
    """Write through ``write(fileobj)`` to a temporary name, then rename: never half a file."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path), suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write(f)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; outputs are for sharing
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_json(path, data, indent=2):
    """Write ``data`` as JSON atomically; numpy scalars and arrays become plain
    numbers and lists, anything else unknown is refused (never silently str()'d)."""
    atomic_write(path, lambda f: json.dump(data, f, indent=indent, default=_plain))


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in JSON")
