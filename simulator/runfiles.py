"""The files of a run folder (run.json, trace.npz, each kind's results), read through
simulator.safe_read and their layout checked here once (arrays, shapes, dtypes, the
values drawing code indexes with): render, view and ``Trace.load`` see the same file
or the same one-line ``ReadError``.
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
    a = arrays[key]
    if a.size and (int(a.min()) < low or (high is not None and int(a.max()) > high)):
        span = f"outside {low}..{high}" if high is not None else f"below {low}"
        raise _damaged(name, f"array '{key}' holds values {span}")


def _want_increasing(name, arrays, key):
    a = arrays[key]
    if a.size > 1 and not bool(np.all(np.diff(a) > 0)):
        raise _damaged(name, f"array '{key}' is not strictly increasing")


def _read_archive(folder, file, required, text=(), numbers=None):
    """(arrays of ``folder``/``file``, its name in errors); ``numbers`` (None: all) hold numbers."""
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
    """{key: shape} of every per-row array a trace may hold, from its ``sizes`` and ``tick``."""
    L, T = len(arrays["sizes"]) - 1, len(arrays["tick"])
    row = (T, L + 1)
    want = {"sizes": (L + 1,), "tick": (T,), "stream_frame": (T,), "x_norm": row,
            "delta_norm": row, **{"tag_" + k: row for k in TAG_KEYS}}
    want.update(dict.fromkeys(METRIC_KEYS, (T, L)))
    want.update({f"tag_{k}_hi": row for k in ("input", "supervision", "output", "pair")})
    return want


REQUIRED_ARRAYS = ("sizes", "tick", "stream_frame", "x_norm", "delta_norm") + tuple(
    "tag_" + k for k in TAG_KEYS)


def check_trace(name, arrays):
    """Refuse trace.npz's ``arrays`` (``name`` in errors) if render or view could not
    draw them: an array missing, of a wrong shape or dtype, no tick, ticks not
    increasing, a width below 1, states or vertices out of range."""
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
    """state_x, state_delta: (len(state_tick), len(state_layers), batch ≥ 1, width ≥
    the widest recorded layer)."""
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
    """A graph trace's vertices: names, levels and sync flags for each, levels and
    bwd in 0..L, edges (parent, child) between vertices."""
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
    """The checked arrays of ``folder``/trace.npz, but its ``schema``."""
    arrays, name = _read_archive(folder, "trace.npz", (), TRACE_TEXT, numbers=())
    arrays.pop("schema", None)
    check_trace(name, arrays)
    return arrays


def read_run_meta(folder):
    """run.json of the run ``folder`` as a dict, checked where readers index it;
    no such folder, no run.json or a damaged one is one ReadError."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise ReadError(f"{folder}: no such run folder")
    path = os.path.join(folder, "run.json")
    if not os.path.lexists(path):
        raise ReadError(f"{folder}: not a tickprop run folder (no run.json in it)")
    meta = read_json(path, dict)
    name = shown(path)

    def want(key, value, text):
        if not isinstance(value, str if text else dict):
            raise _damaged(name, f"'{key}' is {type(value).__name__}, expected "
                                 f"{'text' if text else 'a table'}")
    for key in ("name", "kind"):
        if key in meta:
            want(key, meta[key], True)
    scene = meta.get("scene", {})
    want("scene", scene, False)
    for key in sorted(scene, key=lambda k: k == "kind"):      # scene.kind last
        want(f"scene.{key}", scene[key], key in ("description", "kind"))
    pictures = meta.get("pictures", [])
    if not isinstance(pictures, list) or not all(isinstance(p, str) for p in pictures):
        raise _damaged(name, "'pictures' must be a list of file names")
    return meta


def read_relaxation(folder):
    """relaxation.npz of an ar_converge run: errors, predicted, changes (norms) of
    shape (η_x values, ticks, layers ≥ 2); eta_x, ticks and layers along them."""
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
    """training.npz of an ar_train run: ``steps`` (≥ 1) and per model
    ``test_<name>``, ``train_<name>`` accuracies (seeds × steps)."""
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
    """wave.npz of a pc_wave run: ‖ε‖ ``by_level`` (ticks, levels), ``by_vertex``
    (ticks, vertices), each vertex's ``levels``."""
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
    """results.json of a train run: ``curves`` {rule: curve}, each checked by
    _check_curve."""
    path = os.path.join(os.fspath(folder), "results.json")
    results = read_json(path, dict)
    name = shown(path)
    curves = results.get("curves")
    if not isinstance(curves, dict) or not curves:
        raise _damaged(name, "no curves")
    for rule, c in curves.items():
        _check_curve(name, rule, c)
    if "seed_curves" in results:
        seeds, runs = results.get("seeds"), results["seed_curves"]
        if not (isinstance(seeds, list) and isinstance(runs, list) and len(seeds) == len(runs)
                and all(isinstance(s, int) for s in seeds)):
            raise _damaged(name, "'seeds' and 'seed_curves' must be lists of one length")
        for run in runs:
            if not isinstance(run, dict) or list(run) != list(curves):
                raise _damaged(name, "every seed's curves must have the rules of 'curves'")
            for rule, c in run.items():
                _check_curve(name, rule, c)
    return results


def seed_curves(results):
    """[(seed, {rule: curve})] of read_results' ``results``: every seed's of a
    several-seed run, else the one run's (its seed from the scene)."""
    if "seed_curves" in results:
        return list(zip(results["seeds"], results["seed_curves"]))
    scene = results.get("scene")
    run = scene.get("run") if isinstance(scene, dict) else None
    seed = run.get("seed") if isinstance(run, dict) else None
    return [(seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
             results["curves"])]


def _numbers(value):
    """``value`` as floats if it is a list of numbers (null: NaN), else None."""
    if not isinstance(value, list) or not all(
            v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))
            for v in value):
        return None
    return np.array([np.nan if v is None else v for v in value], dtype=float)


def _check_curve(name, rule, c):
    """``tick``, ``accuracy``, ``loss``: non-empty lists of numbers (null: none) of
    one length; ``angles`` (``grad_angles``): a list of numbers per
    evaluation; ``diverged`` a bool; ``error`` text."""
    if not isinstance(c, dict):
        raise _damaged(name, f"curve {rule!r} is not a table")
    n = None
    for key in ("tick", "accuracy", "loss"):
        values = _numbers(c.get(key))
        if values is None or (n is not None and len(values) != n) or not len(values):
            raise _damaged(name, f"curve {rule!r}: '{key}' must be a non-empty list of numbers "
                                 "as long as 'tick'")
        n = len(values)
    for key in ["angles"] + (["grad_angles"] if "grad_angles" in c else []):
        rows = c.get(key)
        if not isinstance(rows, list) or len(rows) != n or any(_numbers(r) is None
                                                                 for r in rows):
            raise _damaged(name, f"curve {rule!r}: '{key}' must hold one list of numbers per "
                                 "evaluation")
    if not isinstance(c.get("diverged"), bool):
        raise _damaged(name, f"curve {rule!r}: 'diverged' must be true or false")
    if not isinstance(c.get("error", ""), str):
        raise _damaged(name, f"curve {rule!r}: 'error' must be text")


# schedules.npz of a schedules run (docs/explanation/schedules.md: the zoo contract).
SCHEDULE_GLOBALS = {"names": (None,), "vertices": ("V",), "levels": ("V",),
                    "stages_after": ("V",), "depth": (), "weighted": ("V",), "seeds": ("R",),
                    "eval_ticks": ("E",), "sweep_depths": ("Q",)}
SCHEDULE_ARRAYS = {**dict.fromkeys(("forward", "backward", "versions", "version_bytes"),
                                   ("T", "V")),
                   **dict.fromkeys(("delay", "stale", "cosine", "rel_error"), ("T", "V")),
                   "utilisation": ("V",), "loss": ("R", "T"), "accuracy": ("R", "E"),
                   "sweep_delay": ("Q", "W"), "sweep_versions": ("Q", "W")}
SCHEDULE_INTEGERS = ("levels", "stages_after", "depth", "seeds", "eval_ticks", "sweep_depths",
                     "forward", "backward", "versions", "version_bytes")


def read_schedules(folder):
    """{key: array} of a schedules run's schedules.npz, each array of the contract with
    its shape (V stages, R seeds, E evaluations, Q sweep depths, T ticks a schedule,
    W the deepest sweep), integers where ticks, frames and counts are, frames ≥ −1."""
    head, name = _read_archive(folder, "schedules.npz", ("names",), ("names", "vertices"), ())
    return check_schedule_arrays(name, head)


def check_schedule_arrays(name, head):
    """``head`` ({key: array}) checked as read_schedules does; errors name ``name``."""
    if "names" not in head:
        raise _damaged(name, "missing arrays names")
    names = head["names"]
    if names.ndim != 1 or not len(names) or names.dtype.kind not in TEXT \
            or len(set(names.tolist())) != len(names):
        raise _damaged(name, "'names' must list the schedules, each once")
    keys = list(SCHEDULE_GLOBALS) + [f"{k}__{a}" for k in names.tolist() for a in SCHEDULE_ARRAYS]
    missing = [k for k in keys if k not in head]
    if missing:
        raise _damaged(name, f"missing arrays {', '.join(missing[:6])}"
                             + (" ..." if len(missing) > 6 else ""))
    for key in head:
        base = key.rpartition("__")[2]
        if key == "weighted":
            _want_kind(name, head, key, "b", "true/false flags")
        elif base in SCHEDULE_INTEGERS:
            _want_kind(name, head, key, "iu", "integers")
        elif key not in ("names", "vertices"):
            _want_kind(name, head, key, REAL, "numbers")
    if head["vertices"].dtype.kind not in TEXT:
        raise _damaged(name, "array 'vertices' holds no names")
    dims = {"V": len(head["vertices"]), "R": len(head["seeds"]), "E": len(head["eval_ticks"]),
            "Q": len(head["sweep_depths"])}
    for key, shape in SCHEDULE_GLOBALS.items():
        if shape:
            _want_shape(name, head, key, tuple(dims.get(d) for d in shape))
        elif head[key].shape != ():
            raise _damaged(name, f"array '{key}' has shape {head[key].shape}, expected ()")
    _want_range(name, head, "sweep_depths", 1)
    dims["W"] = int(head["sweep_depths"].max()) if dims["Q"] else 0
    for k in names.tolist():
        dims["T"] = head[f"{k}__forward"].shape[0] if head[f"{k}__forward"].ndim == 2 else None
        for a, shape in SCHEDULE_ARRAYS.items():
            _want_shape(name, head, f"{k}__{a}", tuple(dims[d] for d in shape))
        for a in ("forward", "backward"):
            _want_range(name, head, f"{k}__{a}", -1)
    return head
