"""The Trace a run produces (trace.npz plus run.json) and its SCHEMA. A plain chain
(``vertex.is_plain_chain``) gives a chain trace: layers 0..L, no ``vertex_*`` arrays or
``tag_<key>_hi`` tags, 0 in layer 0's δ state row; any other model a graph trace, where
"layer" reads "vertex in model order", with those arrays and tags and x in layer 0's δ row.
"""
import difflib
import json
import os

import numpy as np

from ..arguments import check_bool, check_path, shown
from ..errors import MissingKeyError, SimulatorError, did_you_mean
from ..files import atomic_write
from ..runfiles import METRIC_KEYS, TAG_KEYS, read_trace
from ..safe_read import read_json
from ..engine.tick import synchronized_layers


# Dims, unit and meaning of every array of trace.npz (stored in it as the JSON
# string ``schema``, so a trace explains itself). A *row* is one recorded tick;
# a *stream frame* one (input, target) item; tags name a frame by the tick it
# entered layer 0, which ``stream_frame`` turns into the stream frame.
SCHEMA_VERSION = 1
_ROW_LAYERS = ("row", "layer")
_ROW_MISMATCH = ("row", "layer_with_weights")
_TAG = (_ROW_LAYERS, "tick (-1: empty)")
_STATE = ("state_row", "state_layer", "batch", "neuron")
SCHEMA = {
    "tick": (("row",), "tick", "the tick each recorded row was taken at"),
    "stream_frame": (("row",), "stream frame",
                     "index of the stream frame (input/target item) presented at that tick"),
    "sizes": (("layer",), "neurons", "number of values of each layer (vertex), input first"),
    "x_norm": (_ROW_LAYERS, "activation (L2 norm over batch and neurons)", "‖x‖ per layer"),
    "delta_norm": (_ROW_LAYERS, "delta (L2 norm over batch and neurons)",
                   "‖δ‖ per layer; NaN for the input layer"),
    "mismatch_cos": (_ROW_MISMATCH, "cosine (dimensionless)",
                     "cosine of Eq. 5's g against backprop's gradient of the paired frame; "
                     "column l-1 is layer l; NaN where not defined"),
    "mismatch_rel": (_ROW_MISMATCH, "relative error (dimensionless)",
                     "‖g − ∇‖ / ‖∇‖ against backprop; column l-1 is layer l"),
    "grad_norm": (_ROW_MISMATCH, "gradient (Frobenius norm)",
                  "‖g‖ of Eq. 5; column l-1 is layer l"),
    "ref_norm": (_ROW_MISMATCH, "gradient (Frobenius norm)",
                 "‖∇‖ of backprop on the paired frame; column l-1 is layer l"),
    "tag_input": (*_TAG, "frame in x: the tick it entered layer 0"),
    "tag_supervision": (*_TAG, "frame whose target δ carries: the tick it entered layer 0"),
    "tag_output": (*_TAG, "frame of the output activity δ's error is made of"),
    "tag_sigma_lo": (*_TAG, "oldest frame of δ's σ' factors"),
    "tag_sigma_hi": (*_TAG, "newest frame of δ's σ' factors"),
    "tag_pair": (*_TAG, "frame of the x that g pairs with δ"),
    "state_x": (_STATE, "activation", "x of the recorded layers (NaN beyond a layer's width)"),
    "state_delta": (_STATE, "delta", "δ of the recorded layers (NaN beyond a layer's width)"),
    "state_tick": (("state_row",), "tick", "the tick of each recorded state row"),
    "state_layers": (("state_layer",), "layer index", "which layer each state_layer is"),
    "vertex_names": (("layer",), "name", "graph vertex names (input first)"),
    "vertex_kinds": (("layer",), "layer kind", "graph vertex kinds"),
    "vertex_levels": (("layer",), "edges", "longest path from the input"),
    "vertex_bwd": (("layer",), "edges", "longest path to the output"),
    "vertex_sync": (("layer",), "bool", "vertex in the synchronization set"),
    "vertex_edges": (("edge", "parent_child"), "layer index", "graph edges (parent, child)"),
    "source_tick": (("source_row",), "tick",
                    "a selected trace: every row's tick of the trace it was cut from"),
    "source_stream_frame": (("source_row",), "stream frame",
                            "a selected trace: every row's stream frame of the trace it was "
                            "cut from (so tags before the window still name their frame)"),
}
for _key in ("input", "supervision", "output", "pair"):
    SCHEMA[f"tag_{_key}_hi"] = (*_TAG, f"graph: newest frame of tag_{_key} (differs where a "
                                       "vertex mixes frames)")


class Trace:
    """Recorded arrays (trace.npz, ``trace[name]``, described in SCHEMA) plus the
    run's metadata (run.json). Row r was recorded at tick ``trace.ticks[r]``;
    ``select`` cuts a smaller Trace that every renderer draws as it is."""

    def __init__(self, arrays, meta):
        self.arrays, self.meta = arrays, meta

    def __getitem__(self, key):
        """The array ``key`` (a metric array not recorded reads as NaN); a name
        the trace lacks raises MissingKeyError listing the arrays there are."""
        if isinstance(key, str) and key in self.arrays:
            return self.arrays[key]
        if key in METRIC_KEYS and "tick" in self.arrays and "sizes" in self.arrays:
            return np.full((len(self.arrays["tick"]), len(self.arrays["sizes"]) - 1), np.nan)
        names = sorted(self.arrays)
        if not isinstance(key, str):
            raise MissingKeyError(f"Trace[{key!r}]: expected an array name (a string), got "
                                  f"{type(key).__name__}; the trace has {', '.join(names)}")
        raise MissingKeyError(f"Trace[{key!r}]: no such array{did_you_mean(key, names)}; the "
                              f"trace has {', '.join(names) or 'none'} (trace.schema() says "
                              "what each holds)")

    html_viewer = None     # simulator.view.trace_html, wired as simulator.view loads

    def _repr_html_(self):
        """The time-travel viewer of this trace, for notebooks (None: plain repr)."""
        return None if self.html_viewer is None else self.html_viewer(self)

    # A mapping of the recorded arrays: names in trace.npz order, trace[name] the array.
    def __contains__(self, key):
        return key in self.arrays

    def __iter__(self):
        return iter(self.arrays)

    def __len__(self):
        return len(self.arrays)

    def keys(self):
        return self.arrays.keys()

    def values(self):
        return self.arrays.values()

    def items(self):
        return self.arrays.items()

    def __repr__(self):
        """What the trace is (scene, chain or graph, rows and ticks, vertices), then
        one line per array: shape, dtype and unit (SCHEMA)."""
        meta = self.meta if isinstance(self.meta, dict) else {}
        ticks = np.asarray(self.arrays.get("tick", []))
        steps = np.unique(np.diff(ticks)) if len(ticks) > 1 else []
        every = f" every {steps[0]}" if len(steps) == 1 and steps[0] > 1 else ""
        when = f", ticks {ticks[0]}..{ticks[-1]}{every}" if len(ticks) else ""
        names = [str(v) for v in self.arrays.get("vertex_names", [])]
        depth = len(self.arrays.get("sizes", [])) - 1
        if names:
            listed = ", ".join(names[:8]) + (", …" if len(names) > 8 else "")
            where = f"graph trace, {len(names)} vertices: {listed}"
        else:
            where = "chain trace" + (f", layers 0..{depth} (depth {depth})" if depth >= 0 else "")
        head = [f"Trace {meta.get('name', '(unnamed)')!r}"
                + (" (selected)" if "selection" in meta else "")
                + f": {where}; {len(ticks)} rows{when}"]
        shapes = {k: str(tuple(np.shape(v))) for k, v in self.arrays.items()}
        width = max((len(k) for k in shapes), default=0)
        swidth = max((len(v) for v in shapes.values()), default=0)
        for key, value in self.arrays.items():
            unit = SCHEMA[key][1] if key in SCHEMA else "(not described)"
            head.append(f"  {key.ljust(width)}  {shapes[key].ljust(swidth)}  "
                        f"{str(np.asarray(value).dtype):<8} {unit}")
        head.append("  (trace[name]: an array; trace.schema(): what each holds)")
        return "\n".join(head)

    @property
    def depth(self):
        return len(self.arrays["sizes"]) - 1

    @property
    def ticks(self):
        """The tick of every recorded row (array ``tick``)."""
        return self.arrays["tick"]

    def schema(self):
        """{"version", "arrays": {name: {dims, shape, unit, dtype, description}}} of this
        trace's arrays; one SCHEMA lacks gets ``"unit": null``, "not described"."""
        out = {}
        for key, value in self.arrays.items():
            dims, unit, text = SCHEMA.get(key, (tuple(f"dim{i}" for i in range(np.ndim(value))),
                                                None, "not described"))
            out[key] = {"dims": list(dims), "shape": list(np.shape(value)), "unit": unit,
                        "dtype": str(np.asarray(value).dtype), "description": text}
        return {"version": SCHEMA_VERSION, "arrays": out}

    def stream_frames_of(self, tags):
        """Stream frame indices of tick-valued ``tags`` (−1 stays −1, a tick not
        recorded takes the last recorded row's before it; also before a
        selection's window)."""
        try:
            tags = np.asarray(tags)
        except ValueError:            # a ragged list
            tags = np.asarray(None)
        integral = tags.dtype.kind in "iu" or (
            tags.dtype.kind == "f" and bool(np.all(np.isfinite(tags) & (tags == np.round(tags)))))
        if not integral or tags.dtype.kind == "b":
            raise SimulatorError(f"Trace.stream_frames_of: tags: expected integer ticks "
                                 f"(an int or an array of them, -1 for none), got {shown(tags)}")
        tags = tags.astype(np.int64)
        ticks = self.arrays.get("source_tick", self.arrays["tick"])
        frames = self.arrays.get("source_stream_frame", self.arrays["stream_frame"])
        if not len(ticks):
            return np.full(tags.shape, -1, dtype=np.int64)
        row = np.clip(np.searchsorted(ticks, tags, side="right") - 1, 0, len(ticks) - 1)
        return np.where(tags >= 0, frames[row], -1)

    def select(self, ticks=None, layers=None, neurons=None):
        """A smaller Trace that renderers draw unchanged: ``ticks`` (start, stop) (None:
        open) or a slice; ``layers`` indices, names or slices (the input kept; a chain
        comes back as a graph trace); ``neurons`` indices of the recorded states. Selecting
        nothing or what the trace lacks raises SimulatorError naming what it has."""
        arrays = dict(self.arrays)
        meta = dict(self.meta) if isinstance(self.meta, dict) else {}
        chosen = {}
        if ticks is not None:
            arrays, chosen["ticks"] = _select_ticks(arrays, ticks)
        if layers is not None:
            arrays, chosen["layers"] = _select_layers(self, arrays, layers)
        if neurons is not None:
            arrays, chosen["neurons"] = _select_neurons(arrays, neurons)
        if chosen:
            meta["selection"] = {**meta.get("selection", {}), **chosen}
        return Trace(arrays, meta)

    def save(self, folder, compress=False):
        """Write trace.npz atomically into ``folder``, with its ``schema`` entry;
        uncompressed unless ``compress`` (deflating states took 3–5× the run)."""
        folder = check_path("Trace.save", "folder", folder, folder=True)
        check_bool("Trace.save", "compress", compress)
        arrays = dict(self.arrays, schema=np.array(json.dumps(self.schema())))
        write = np.savez_compressed if compress else np.savez
        atomic_write(os.path.join(folder, "trace.npz"), lambda f: write(f, **arrays), binary=True)

    @classmethod
    def load(cls, folder, meta=None):
        """Load trace.npz and run.json (or ``meta`` in its stead) from a run
        folder; a missing or damaged file raises SimulatorError naming it and
        what is wrong (``runfiles.read_trace``, the check render and view make)."""
        arrays = read_trace(folder)
        if meta is None:
            meta = read_json(os.path.join(folder, "run.json"), dict)
        return cls(arrays, meta)


def _row_arrays(arrays):
    """Names of the arrays whose first axis is the recorded row."""
    T = len(arrays["tick"])
    skip = {"sizes", "state_x", "state_delta", "state_tick", "state_layers", "source_tick",
            "source_stream_frame"}
    return [k for k, v in arrays.items() if k not in skip and not k.startswith("vertex_")
            and np.ndim(v) >= 1 and np.shape(v)[0] == T]


def _select_ticks(arrays, ticks):
    """``ticks``: a (start, stop) pair (either None) or a slice."""
    if isinstance(ticks, slice):
        if ticks.step not in (None, 1):
            raise SimulatorError(f"ticks {ticks}: a step is not supported")
        start, stop = ticks.start, ticks.stop
    else:
        try:
            start, stop = ticks
        except (TypeError, ValueError):
            raise SimulatorError(f"ticks {ticks!r}: expected (start, stop)") from None
        for end in (start, stop):
            if end is not None and (isinstance(end, (bool, np.bool_))
                                    or not isinstance(end, (int, np.integer))):
                raise SimulatorError(f"ticks {ticks!r}: expected (start, stop) ticks, each an "
                                     f"integer or None, got {end!r} ({type(end).__name__})")
    t = np.asarray(arrays["tick"])
    first, last = (int(t[0]), int(t[-1])) if len(t) else (0, -1)
    lo = first if start is None else int(start)
    hi = last + 1 if stop is None else int(stop)
    text = _show(slice(start, stop))
    if lo < 0 or hi <= lo:
        raise SimulatorError(f"ticks {text}: expected 0 <= start < stop")
    rows = np.flatnonzero((t >= lo) & (t < hi))
    if not len(rows):
        raise SimulatorError(f"ticks {text}: no recorded tick in it (the run has ticks "
                             f"{first}..{last})")
    out = dict(arrays)
    out.setdefault("source_tick", t.copy())
    out.setdefault("source_stream_frame", np.asarray(arrays["stream_frame"]).copy())
    for key in _row_arrays(arrays):
        out[key] = arrays[key][rows]
    if "state_tick" in arrays:
        keep = np.flatnonzero((arrays["state_tick"] >= lo) & (arrays["state_tick"] < hi))
        for key in ("state_x", "state_delta", "state_tick"):
            out[key] = arrays[key][keep]
    return out, [int(t[rows[0]]), int(t[rows[-1]]) + 1]


def _indices(spec, count, names, what):
    """Sorted unique indices in 0..count-1 from ints, names and slices."""
    items = spec if isinstance(spec, (list, tuple)) else [spec]
    out = set()
    for item in items:
        if isinstance(item, slice):
            got = range(count)[item]
            if not len(got):
                raise SimulatorError(f"{what} {_show(item)}: selects none of 0..{count - 1}")
            out.update(got)
        elif isinstance(item, (int, np.integer)) and not isinstance(item, bool):
            if not 0 <= int(item) < count:
                raise SimulatorError(f"{what} {item}: expected an index in 0..{count - 1}")
            out.add(int(item))
        elif isinstance(item, str) and names is not None and item in names:
            out.add(names.index(item))
        elif isinstance(item, str) and names is not None:
            hint = difflib.get_close_matches(item, names, n=1, cutoff=0.5)
            more = f"; did you mean {hint[0]!r}?" if hint else ""
            raise SimulatorError(f"{what} {item!r}: no such {what[:-1]} (the run has "
                                 f"{', '.join(names[:12])}{', …' if len(names) > 12 else ''})"
                                 f"{more}")
        else:
            raise SimulatorError(f"{what} {item!r}: expected an index in 0..{count - 1}"
                                 + (" or a name" if names is not None else ""))
    if not out:
        raise SimulatorError(f"{what}: selects nothing")
    return sorted(out)


def _show(item):
    if not isinstance(item, slice):
        return str(item)
    return ":".join("" if end is None else str(end) for end in (item.start, item.stop))


def _select_layers(trace, arrays, layers):
    n = trace.depth + 1       # names: a graph's vertex names, '0'..'L' of a chain
    names = [str(v) for v in arrays.get("vertex_names", range(n))]
    keep = sorted(set(_indices(layers, n, names, "layers")) | {0})
    new = dict(arrays)
    col = np.asarray(keep)
    for key in _row_arrays(arrays):
        a = arrays[key]
        if np.ndim(a) == 2 and a.shape[1] == n:
            new[key] = a[:, col]
        elif np.ndim(a) == 2 and a.shape[1] == n - 1:        # metrics of layers 1..
            new[key] = a[:, col[1:] - 1]
    new["sizes"] = np.asarray(arrays["sizes"])[col]
    position = {old: i for i, old in enumerate(keep)}
    if "vertex_names" in arrays:
        for key in ("vertex_names", "vertex_kinds", "vertex_levels", "vertex_bwd", "vertex_sync"):
            if key in arrays:
                new[key] = np.asarray(arrays[key])[col]
        if "vertex_edges" in arrays:
            edges = [(position[p], position[c]) for p, c in
                     np.asarray(arrays["vertex_edges"]).reshape(-1, 2).tolist()
                     if p in position and c in position]
            new["vertex_edges"] = np.array(edges, dtype=np.int64).reshape(-1, 2)
    else:
        L = n - 1
        sync = set(synchronized_layers(L))
        new.update({"vertex_names": np.array([str(l) for l in keep]),
                    "vertex_kinds": np.array(["layer"] * len(keep)),
                    "vertex_levels": np.array(keep, dtype=np.int64),
                    "vertex_bwd": np.array([L - l for l in keep], dtype=np.int64),
                    "vertex_sync": np.array([l in sync for l in keep]),
                    "vertex_edges": np.array([(position[l], position[l + 1]) for l in keep
                                              if l + 1 in position],
                                             dtype=np.int64).reshape(-1, 2)})
    if "state_layers" in arrays:
        recorded = [int(l) for l in arrays["state_layers"]]
        which = [j for j, l in enumerate(recorded) if l in position]
        new["state_layers"] = np.array([position[recorded[j]] for j in which], dtype=np.int64)
        for key in ("state_x", "state_delta"):
            new[key] = arrays[key][:, which]
    return new, [names[i] for i in keep]


def _select_neurons(arrays, neurons):
    if "state_x" not in arrays:
        raise SimulatorError("neurons: this run recorded no neuron states (record.states = "
                             "false), only per-layer norms; re-run with --set record.states=true")
    width = arrays["state_x"].shape[-1]
    keep = np.asarray(_indices(neurons, width, None, "neurons"))
    new = dict(arrays)
    for key in ("state_x", "state_delta"):
        new[key] = arrays[key][..., keep]
    new["sizes"] = np.array([int((keep < s).sum()) for s in arrays["sizes"]], dtype=np.int64)
    return new, keep.tolist()

