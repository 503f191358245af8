"""The files of a run folder, each read (``simulator.safe_read``: never a hang,
never a pickle, never more than the memory budget) and its layout checked
here once -- its arrays, their shapes, dtypes and the values the drawing code
indexes with -- so ``tickprop render``, ``tickprop view`` and the notebook's
``Trace.load`` see the same file or the same ``ReadError``: run.json,
trace.npz and the other results of each kind (results.json, relaxation.npz,
training.npz, wave.npz, locking.npz). A ``tick`` of strings, a missing
array, a shape that disagrees with ``sizes`` is damage, said in one line.
"""
import os

import numpy as np

from .safe_read import REAL, TEXT, ReadError, read_json, read_npz, shown

def _damaged(name, what):
    return ReadError(f"{name}: damaged ({what}); re-run the scene to write it again")


def _want_shape(name, arrays, key, shape):
    """Refuse ``arrays[key]`` unless its shape is ``shape`` (None: any length)."""
    got = arrays[key].shape
    if len(got) != len(shape) or any(w is not None and g != w for g, w in zip(got, shape)):
        want = "(" + ", ".join("n" if w is None else str(w) for w in shape) + \
               ("," if len(shape) == 1 else "") + ")"
        raise _damaged(name, f"array '{key}' has shape {got}, expected {want}")


def _want_kind(name, arrays, key, kinds, what):
    if arrays[key].dtype.kind not in kinds:
        raise _damaged(name, f"array '{key}' holds {arrays[key].dtype}, expected {what}")


def _want_range(name, arrays, key, low, high=None):
    """Refuse integer values of ``arrays[key]`` outside low..high."""
    a = arrays[key]
    if a.size and (int(a.min()) < low or (high is not None and int(a.max()) > high)):
        span = f"outside {low}..{high}" if high is not None else f"below {low}"
        raise _damaged(name, f"array '{key}' holds values {span}")


def _want_increasing(name, arrays, key):
    a = arrays[key]
    if a.size > 1 and not bool(np.all(np.diff(a) > 0)):
        raise _damaged(name, f"array '{key}' is not strictly increasing")


def _read_archive(folder, file, required, text=(), numbers=None):
    """(arrays of ``folder``/``file`` as read_npz reads them, the name errors
    give it), the arrays named in ``numbers`` (None: all) checked to hold
    numbers where they are there."""
    path = os.path.join(os.fspath(folder), file)
    arrays, name = read_npz(path, required, text=text), shown(path)
    for key in arrays if numbers is None else numbers:
        if key in arrays:
            _want_kind(name, arrays, key, REAL, "numbers")
    return arrays, name


# trace.npz: what the Recorder writes (simulator.probes describes every array).
TAG_KEYS = ("input", "supervision", "output", "sigma_lo", "sigma_hi", "pair")
METRIC_KEYS = ("mismatch_cos", "mismatch_rel", "grad_norm", "ref_norm")
TRACE_TEXT = ("vertex_names", "vertex_kinds", "schema")
TRACE_INTEGERS = ("tick", "stream_frame", "sizes", "state_tick", "state_layers",
                  "vertex_levels", "vertex_bwd", "vertex_edges", "source_tick",
                  "source_stream_frame")
VERTEX_KEYS = ("vertex_names", "vertex_kinds", "vertex_levels", "vertex_bwd", "vertex_sync")


def trace_shapes(arrays):
    """Expected shape of every per-row array a trace must (or may) hold, from
    its own ``sizes`` and ``tick``; the metrics are optional (absent when
    record.metrics = false), as are the graph tags' newest frames."""
    L, T = len(arrays["sizes"]) - 1, len(arrays["tick"])
    want = {"sizes": (L + 1,), "tick": (T,), "stream_frame": (T,),
            "x_norm": (T, L + 1), "delta_norm": (T, L + 1)}
    for key in TAG_KEYS:
        want["tag_" + key] = (T, L + 1)
    for key in METRIC_KEYS:
        want[key] = (T, L)
    for key in ("input", "supervision", "output", "pair"):
        want[f"tag_{key}_hi"] = (T, L + 1)
    return want


REQUIRED_ARRAYS = ("sizes", "tick", "stream_frame", "x_norm", "delta_norm") + tuple(
    "tag_" + k for k in TAG_KEYS)


def check_trace(name, arrays):
    """Refuse a trace (trace.npz's arrays, named ``name`` in errors) that the
    renderers and the viewer could not draw: a missing array, a wrong shape
    or dtype (numbers where numbers are expected, integers for ticks, tags
    and indices), no recorded tick, ticks not increasing, a layer width below
    1, state arrays that do not match their layers, graph vertices whose
    levels or edges point outside the graph."""
    missing = [k for k in REQUIRED_ARRAYS if k not in arrays]
    if missing:
        raise _damaged(name, f"missing arrays {', '.join(missing)}")
    for key in arrays:
        if key in TRACE_INTEGERS or key.startswith("tag_"):      # -1 marks "none"
            _want_kind(name, arrays, key, "i", "signed integers")
        elif key == "vertex_sync":
            _want_kind(name, arrays, key, "biu", "true/false flags")
        elif key not in TRACE_TEXT:
            _want_kind(name, arrays, key, REAL, "numbers")
    sizes, tick = arrays["sizes"], arrays["tick"]
    if sizes.ndim != 1 or len(sizes) < 2 or tick.ndim != 1:
        raise _damaged(name, f"'sizes' must list at least two widths and 'tick' be 1-D, got "
                             f"shapes {sizes.shape} and {tick.shape}")
    if len(tick) == 0:
        raise _damaged(name, "no recorded tick: 'tick' is empty")
    _want_range(name, arrays, "sizes", 1)
    _want_range(name, arrays, "tick", 0)
    _want_increasing(name, arrays, "tick")
    for key, shape in trace_shapes(arrays).items():
        if key in arrays:
            _want_shape(name, arrays, key, shape)
    for key in arrays:
        if key.startswith("tag_"):
            _want_range(name, arrays, key, -1)
    _check_states(name, arrays)
    _check_vertices(name, arrays)
    for key in ("source_tick", "source_stream_frame"):
        if key in arrays:
            _want_shape(name, arrays, key, (None,))
    if ("source_tick" in arrays) != ("source_stream_frame" in arrays) or (
            "source_tick" in arrays and
            arrays["source_tick"].shape != arrays["source_stream_frame"].shape):
        raise _damaged(name, "'source_tick' and 'source_stream_frame' must come together, "
                             "of one length")


def _check_states(name, arrays):
    """The recorded neuron states: (rows, layers, batch, width) of the layers
    in ``state_layers`` at the ticks in ``state_tick``, at least one sample
    and as wide as the widest recorded layer."""
    keys = ("state_x", "state_delta", "state_tick", "state_layers")
    present = [k for k in keys if k in arrays]
    if not present:
        return
    if len(present) < len(keys):
        absent = [k for k in keys if k not in arrays]
        raise _damaged(name, f"{present[0]} without {', '.join(absent)}")
    _want_shape(name, arrays, "state_tick", (None,))
    _want_shape(name, arrays, "state_layers", (None,))
    L = len(arrays["sizes"]) - 1
    _want_range(name, arrays, "state_layers", 0, L)
    _want_increasing(name, arrays, "state_tick")
    S, nl = len(arrays["state_tick"]), len(arrays["state_layers"])
    for key in ("state_x", "state_delta"):
        shape = arrays[key].shape
        if len(shape) != 4 or shape[:2] != (S, nl) or shape[2] < 1:
            raise _damaged(name, f"array '{key}' has shape {shape}, expected ({S}, {nl}, "
                                 "batch, width)")
    if arrays["state_x"].shape != arrays["state_delta"].shape:
        raise _damaged(name, f"'state_x' {arrays['state_x'].shape} and 'state_delta' "
                             f"{arrays['state_delta'].shape} differ")
    layers = arrays["state_layers"].astype(np.int64)
    widest = int(arrays["sizes"][layers].max()) if nl else 0
    if arrays["state_x"].shape[3] < widest:
        raise _damaged(name, f"array 'state_x' holds {arrays['state_x'].shape[3]} neurons per "
                             f"layer, fewer than its widest recorded layer ({widest})")


def _check_vertices(name, arrays):
    """A graph trace's vertices: names, levels and synchronization flags for
    every vertex, levels and distances to the output in 0..L, edges (parent,
    child) between vertices."""
    given = [k for k in VERTEX_KEYS + ("vertex_edges",) if k in arrays]
    if not given:
        return
    for key in ("vertex_names", "vertex_levels", "vertex_sync"):
        if key not in arrays:
            raise _damaged(name, f"{given[0]} without {key}")
    n = len(arrays["sizes"])
    for key in VERTEX_KEYS:
        if key in arrays:
            _want_shape(name, arrays, key, (n,))
    if arrays["vertex_names"].dtype.kind not in TEXT:
        raise _damaged(name, f"array 'vertex_names' holds {arrays['vertex_names'].dtype}, "
                             "expected names")
    for key in ("vertex_levels", "vertex_bwd"):
        if key in arrays:
            _want_range(name, arrays, key, 0, n - 1)
    if "vertex_edges" in arrays:
        edges = arrays["vertex_edges"]
        if edges.ndim != 2 or edges.shape[1] != 2:
            raise _damaged(name, f"array 'vertex_edges' has shape {edges.shape}, expected "
                                 "(edges, 2)")
        _want_range(name, arrays, "vertex_edges", 0, n - 1)


def read_trace(folder):
    """The checked arrays of ``folder``/trace.npz (check_trace), its stored
    ``schema`` entry left out."""
    arrays, name = _read_archive(folder, "trace.npz", (), TRACE_TEXT, numbers=())
    arrays.pop("schema", None)
    check_trace(name, arrays)
    return arrays


def read_run_meta(folder):
    """run.json of a run folder as a dict, checked where readers index it
    (``name``, ``kind`` and ``scene.description`` text, ``scene`` and its
    sections tables, ``pictures`` a list of file names). A folder that does
    not exist, has no run.json, or a damaged one is one ReadError."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise ReadError(f"{folder}: no such run folder")
    path = os.path.join(folder, "run.json")
    if not os.path.lexists(path):
        raise ReadError(f"{folder}: not a tickprop run folder (no run.json in it)")
    meta = read_json(path, dict)
    name = shown(path)
    for key in ("name", "kind"):
        if key in meta and not isinstance(meta[key], str):
            raise _damaged(name, f"'{key}' is {type(meta[key]).__name__}, expected text")
    scene = meta.get("scene", {})
    if not isinstance(scene, dict):
        raise _damaged(name, f"'scene' is {type(scene).__name__}, expected a table")
    for key, value in scene.items():
        if key == "description" and not isinstance(value, str):
            raise _damaged(name, f"'scene.description' is {type(value).__name__}, expected text")
        if key not in ("description", "kind") and not isinstance(value, dict):
            raise _damaged(name, f"'scene.{key}' is {type(value).__name__}, expected a table")
    if "kind" in scene and not isinstance(scene["kind"], str):
        raise _damaged(name, f"'scene.kind' is {type(scene['kind']).__name__}, expected text")
    pictures = meta.get("pictures", [])
    if not isinstance(pictures, list) or not all(isinstance(p, str) for p in pictures):
        raise _damaged(name, "'pictures' must be a list of file names")
    return meta


def read_relaxation(folder):
    """relaxation.npz of an ar_converge run: errors, predicted, changes (and
    norms) of one shape (η_x values, relaxation ticks, layers ≥ 2), eta_x one
    value per η_x; ticks and layers, when there, one per tick and layer."""
    arrays, name = _read_archive(folder, "relaxation.npz",
                                 ("errors", "predicted", "changes", "eta_x"), ("variant",),
                                 ("errors", "predicted", "changes", "norms", "eta_x"))
    eta = arrays["eta_x"]
    _want_shape(name, arrays, "eta_x", (None,))
    errors = arrays["errors"]
    if errors.ndim != 3 or errors.shape[0] != len(eta) or len(eta) < 1 or errors.shape[1] < 1 \
            or errors.shape[2] < 2:
        raise _damaged(name, f"array 'errors' has shape {errors.shape}, expected "
                             f"({len(eta)} η_x values, ticks ≥ 1, layers ≥ 2)")
    for key in ("predicted", "changes", "norms"):
        if key in arrays:
            _want_shape(name, arrays, key, errors.shape)
    for key, n in (("ticks", errors.shape[1]), ("layers", errors.shape[2])):
        if key in arrays:
            _want_shape(name, arrays, key, (n,))
            _want_kind(name, arrays, key, "iu", "integers")
    if "variant" in arrays:
        _want_shape(name, arrays, "variant", ())
    return arrays


def read_training(folder):
    """training.npz of an ar_train run: ``steps`` (at least one evaluation)
    and, per model (backprop first), ``test_<name>`` and ``train_<name>``
    accuracies (seeds × evaluations)."""
    arrays, name = _read_archive(folder, "training.npz",
                                 ("steps", "test_backprop", "train_backprop"))
    _want_shape(name, arrays, "steps", (None,))
    steps = len(arrays["steps"])
    if steps < 1:
        raise _damaged(name, "no evaluation: 'steps' is empty")
    for key in arrays:
        if key.startswith(("test_", "train_")):
            other = ("train_" + key[5:]) if key.startswith("test_") else "test_" + key[6:]
            if other not in arrays:
                raise _damaged(name, f"'{key}' without '{other}'")
            a = arrays[key]
            if a.ndim not in (1, 2) or a.shape[-1] != steps or a.size == 0:
                raise _damaged(name, f"array '{key}' has shape {a.shape}, expected (seeds, "
                                     f"{steps})")
    return arrays


def read_wave(folder):
    """wave.npz of a pc_wave run: ‖ε‖ ``by_level`` (ticks, levels) and
    ``by_vertex`` (ticks, vertices), ``levels`` of every vertex in 0..levels-1."""
    arrays, name = _read_archive(folder, "wave.npz", ("by_level", "by_vertex", "levels"),
                                 numbers=("by_level", "by_vertex"))
    by_level = arrays["by_level"]
    if by_level.ndim != 2 or 0 in by_level.shape:
        raise _damaged(name, f"array 'by_level' has shape {by_level.shape}, expected (ticks ≥ "
                             "1, levels ≥ 1)")
    T, n = by_level.shape
    _want_shape(name, arrays, "levels", (None,))
    _want_kind(name, arrays, "levels", "iu", "integers")
    _want_range(name, arrays, "levels", 0, n - 1)
    _want_shape(name, arrays, "by_vertex", (T, len(arrays["levels"])))
    return arrays


LOCKING_ARRAYS = ("backprop_forward", "backprop_backward", "pipelined_forward",
                  "pipelined_backward")


def read_locking(folder):
    """locking.npz of a locking run: the four occupancy tables (layers × ticks)."""
    arrays, name = _read_archive(folder, "locking.npz", LOCKING_ARRAYS, numbers=())
    for key in LOCKING_ARRAYS:
        _want_shape(name, arrays, key, (None, None))
    return arrays


def read_results(folder):
    """results.json of a train run: ``curves`` {rule: curve}, each curve's
    ``tick``, ``accuracy`` and ``loss`` lists of numbers (null for none) of
    one length (at least one evaluation), ``angles`` (and ``grad_angles``)
    one list of numbers per evaluation, ``diverged`` true or false."""
    path = os.path.join(os.fspath(folder), "results.json")
    results = read_json(path, dict)
    name = shown(path)
    curves = results.get("curves")
    if not isinstance(curves, dict) or not curves:
        raise _damaged(name, "no curves")
    for rule, c in curves.items():
        _check_curve(name, rule, c)
    return results


def _numbers(value):
    """``value`` as a float array if it is a list of numbers (null: NaN), else None."""
    if not isinstance(value, list) or not all(
            v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))
            for v in value):
        return None
    return np.array([np.nan if v is None else v for v in value], dtype=float)


def _check_curve(name, rule, c):
    if not isinstance(c, dict):
        raise _damaged(name, f"curve {rule!r} is not a table")
    n = None
    for key in ("tick", "accuracy", "loss"):
        values = _numbers(c.get(key))
        if values is None or (n is not None and len(values) != n) or not len(values):
            raise _damaged(name, f"curve {rule!r}: '{key}' must be a non-empty list of numbers "
                                 "as long as 'tick'")
        n = len(values)
    for key in ("angles", "grad_angles"):
        if key not in c and key == "grad_angles":
            continue
        rows = c.get(key)
        if not isinstance(rows, list) or len(rows) != n or any(_numbers(r) is None
                                                                 for r in rows):
            raise _damaged(name, f"curve {rule!r}: '{key}' must hold one list of numbers per "
                                 "evaluation")
    if not isinstance(c.get("diverged"), bool):
        raise _damaged(name, f"curve {rule!r}: 'diverged' must be true or false")
    if not isinstance(c.get("error", ""), str):
        raise _damaged(name, f"curve {rule!r}: 'error' must be text")


__all__ = ["read_trace", "check_trace", "read_run_meta", "read_relaxation", "read_training",
           "read_wave", "read_locking", "read_results", "TAG_KEYS", "METRIC_KEYS",
           "REQUIRED_ARRAYS", "trace_shapes"]
