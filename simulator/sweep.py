"""Sweeps: a grid of scene overrides run as independent points (SPEC §9).

A `sweep` scene names a base scene, a grid {"section.key": [values, ...]},
fixed overrides for every point, and seeds. Each point (one grid cell × one
seed) is a full scene run — a diffusion run summarised by its steady-state
gradient mismatch per layer, or a training run summarised by its final test
accuracy and loss — executed in local worker processes or, given a scheduler
address, on a Dask distributed cluster. Every finished point is written at once
as its own JSON file in ``<out>/points/``, so an interrupted sweep resumes with
the missing points only, and a failing point is stored with its error while
the others go on. ``sweep.csv`` is assembled from the point files, rows sorted
by parameters, so any scheduler gives the same table; pictures come last.
"""
import concurrent.futures
import csv
import hashlib
import io
import itertools
import json
import math
import os
import time
import traceback

import numpy as np

from . import scene as scene_mod
from .errors import SceneError, SimulatorError
from .probes import atomic_write, write_json
from .scene import SUMMARIES, SWEEP_SECTIONS  # noqa: F401 (the sweep schema lives in scene.py)


def _toml_value(value):
    """A Python value written as TOML text for scene.apply_overrides."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise SceneError(f"cannot use {value!r} ({type(value).__name__}) as a sweep value")


def points_of(sweep):
    """The points of a resolved sweep section: list of {"section.key": value},
    the grid's product (first axis slowest) with run.seed last."""
    axes = list(sweep["grid"].items())
    out = []
    for combo in itertools.product(*[values for _, values in axes]):
        for seed in sweep["seeds"]:
            params = {key: value for (key, _), value in zip(axes, combo)}
            params["run.seed"] = seed
            out.append(params)
    return out


def point_id(params):
    """A stable file name for a point: a hash of its parameters."""
    text = json.dumps(params, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def run_point(base_name, base_scene, fixed, params, options):
    """Run one point and return its record {params, status, error, summary,
    seconds}; never raises for a point's own failure (bad override, blow-up,
    any exception), which is recorded as status 'failed' with its message."""
    t0 = time.perf_counter()
    record = {"id": point_id(params), "params": params, "status": "ok", "error": "",
              "summary": {}}
    try:
        items = list(fixed.items()) + list(params.items())
        sets = [f"{key}={_toml_value(value)}" for key, value in items]
        scene = scene_mod.apply_overrides(base_scene, sets, f"{base_name} (sweep point)")
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            record["summary"] = summarize_point(base_name, scene, options)
    except Exception as exc:  # a point's failure is data, not the sweep's end
        record["status"] = "failed"
        record["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0]
        if not isinstance(exc, SimulatorError):
            record["traceback"] = traceback.format_exc()
    record["seconds"] = time.perf_counter() - t0
    return record


def summarize_point(name, scene, options):
    """Summary numbers of one resolved scene: steady-state mismatch per layer
    for a diffusion scene, final test accuracy/loss for a train scene."""
    kind = options["summary"]
    if kind == "auto":
        kind = "training" if scene["kind"] == "train" else "mismatch"
    if kind == "training":
        if scene["kind"] != "train":
            raise SceneError(f"sweep.summary 'training' needs a train base scene, got {scene['kind']}")
        from .training import train_scene
        _, summary = train_scene(scene)
        rules = scene["train"]["rules"]
        if len(rules) == 1:
            # One rule per point: generic column names, so a rule axis gives one column.
            prefix = rules[0] + "."
            summary = {k[len(prefix):]: v for k, v in summary.items()}
        return summary
    if scene["kind"] != "diffusion":
        raise SceneError(f"sweep.summary 'mismatch' needs a diffusion base scene, got {scene['kind']}")
    from .runner import Prepared
    trace = Prepared(name, scene).simulate()
    return steady_mismatch(trace["mismatch_cos"], trace["mismatch_rel"], options["steady_from"])


def steady_mismatch(cos, rel, steady_from):
    """Mean cosine and relative error per layer over the steady part of a run
    (ticks from max(2L, steady_from·T), when both waves have crossed the
    network), their mean over layers, and the synchronization layer's cosine."""
    T, L = cos.shape
    start = min(max(2 * L, int(steady_from * T)), T - 1)
    out = {}
    per_layer = [float(np.nanmean(cos[start:, l])) if np.isfinite(cos[start:, l]).any()
                 else float("nan") for l in range(L)]
    per_rel = [float(np.nanmean(rel[start:, l])) if np.isfinite(rel[start:, l]).any()
               else float("nan") for l in range(L)]
    for l in range(L):
        out[f"cos_l{l + 1:02d}"] = per_layer[l]
        out[f"rel_l{l + 1:02d}"] = per_rel[l]
    out["mean_cos"] = float(np.nanmean(per_layer))
    out["mean_rel"] = float(np.nanmean(per_rel))
    ls = sync_layer(L)
    out["ls"] = ls
    out["cos_ls"] = per_layer[ls - 1]
    others = [c for l, c in enumerate(per_layer, start=1) if l != ls]
    out["cos_others"] = float(np.nanmean(others)) if others else float("nan")
    return out


def sync_layer(L):
    """ls = (L+1)/2, the lower middle layer for even L (SPEC §1 fact C)."""
    return (L + 1) // 2


# ------------------------------------------------------------------ running
def load_sweep(sweep_path_or_name):
    """(name, resolved sweep scene, base name, resolved base scene)."""
    name, sweep_scene = scene_mod.load(sweep_path_or_name)
    if sweep_scene["kind"] != "sweep":
        raise SceneError(f"{name}: key 'kind': expected 'sweep', got {sweep_scene['kind']!r}")
    base_name, base = scene_mod.load(sweep_scene["sweep"]["base"])
    if base["kind"] == "sweep":
        raise SceneError(f"{name}: key 'sweep.base': a sweep cannot sweep a sweep")
    return name, sweep_scene, base_name, base


def run_sweep(sweep_path_or_name, out_dir, workers=1, scheduler=None, progress=None):
    """Run every point of a sweep scene not already in ``<out_dir>/points/``
    (resume), in ``workers`` local processes or on the Dask cluster at
    ``scheduler``; then write sweep.csv and the pictures. ``progress(n)`` is
    called per finished point. Returns a summary dict (counts, paths, seconds)."""
    name, sweep_scene, base_name, base = load_sweep(sweep_path_or_name)
    sw = sweep_scene["sweep"]
    options = {"summary": sw["summary"], "steady_from": sw["steady_from"]}
    points_dir = os.path.join(out_dir, "points")
    os.makedirs(points_dir, exist_ok=True)
    todo = [p for p in points_of(sw)
            if not os.path.isfile(os.path.join(points_dir, point_id(p) + ".json"))]
    all_points = points_of(sw)
    if progress is not None and len(all_points) > len(todo):
        progress(len(all_points) - len(todo))
    jobs = [(base_name, base, sw["set"], p, options) for p in todo]
    t0 = time.perf_counter()
    save = _saver(points_dir, progress)
    if scheduler:
        _run_dask(jobs, scheduler, save)
    else:
        _run_local(jobs, workers, save)
    elapsed = time.perf_counter() - t0
    records = read_points(points_dir, all_points)
    csv_path = write_csv(os.path.join(out_dir, "sweep.csv"), records, list(sw["grid"]) + ["run.seed"])
    pictures = render_sweep(records, sw, out_dir, title=f"{name}: {sweep_scene['description']}")
    failed = sum(r["status"] != "ok" for r in records)
    return {"name": name, "points": len(all_points), "ran": len(todo), "failed": failed,
            "csv": csv_path, "pictures": pictures, "seconds": elapsed,
            "points_per_minute": 60.0 * len(todo) / elapsed if todo and elapsed > 0 else float("nan")}


def _saver(points_dir, progress):
    def save(record):
        path = os.path.join(points_dir, record["id"] + ".json")
        write_json(path, record, indent=1)
        if progress is not None:
            progress(1)
    return save


def _run_local(jobs, workers, save):
    """Points in a pool of ``workers`` processes, each saved as it finishes."""
    if not jobs:
        return
    if int(workers) < 1:
        raise SimulatorError(f"--workers: expected at least 1, got {workers}")
    with concurrent.futures.ProcessPoolExecutor(max_workers=int(workers),
                                                initializer=_one_blas_thread) as pool:
        futures = {pool.submit(run_point, *job): job for job in jobs}
        for fut in concurrent.futures.as_completed(futures):
            save(_result_or_failure(fut, futures[fut]))


def _one_blas_thread():
    """Worker processes are the parallelism: a multi-threaded BLAS in each of
    them would oversubscribe the cores and make more workers slower."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(1)


def _run_dask(jobs, scheduler, save):
    """Points on the Dask distributed cluster at ``scheduler`` (the `dist` extra)."""
    try:
        from distributed import Client, as_completed
    except ImportError as exc:
        raise SimulatorError("--scheduler needs Dask distributed; install the dist extra: "
                             "pip install -e '.[dist]'") from exc
    if not jobs:
        return
    try:
        client = Client(scheduler, timeout="20s")
    except (OSError, TimeoutError) as exc:
        raise SimulatorError(f"--scheduler {scheduler!r}: cannot reach the Dask scheduler ({exc})") from None
    try:
        futures = {}
        for job in jobs:
            fut = client.submit(run_point, *job, pure=False)
            futures[fut] = job
        for fut in as_completed(list(futures)):
            save(_result_or_failure(fut, futures[fut]))
    finally:
        client.close()


def _result_or_failure(fut, job):
    """The point's record, or a failure record if its worker itself died."""
    try:
        return fut.result()
    except Exception as exc:  # a lost worker fails this point only
        params = job[3]
        return {"id": point_id(params), "params": params, "status": "failed",
                "error": f"{type(exc).__name__}: {exc}".splitlines()[0], "summary": {},
                "seconds": float("nan")}


def read_points(points_dir, points):
    """Records of the given points that have a file in points_dir."""
    out = []
    for params in points:
        path = os.path.join(points_dir, point_id(params) + ".json")
        if os.path.isfile(path):
            with open(path) as f:
                out.append(json.load(f))
    return out


def _sort_key(value):
    if isinstance(value, bool):
        return (0, int(value), "")
    if isinstance(value, (int, float)):
        return (0, value, "")
    return (1, 0, json.dumps(value))


def write_csv(path, records, param_keys):
    """sweep.csv: one row per point — its parameters, status, error and summary
    numbers — sorted by parameters, columns fixed by the grid then sorted
    summary names, so the same points always give the same bytes."""
    summary_keys = sorted({k for r in records for k in r["summary"]})
    rows = sorted(records, key=lambda r: [_sort_key(r["params"].get(k)) for k in param_keys])
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(param_keys + ["status", "error"] + summary_keys)
    for r in rows:
        writer.writerow([_cell(r["params"].get(k)) for k in param_keys] + [r["status"], r["error"]]
                        + [_cell(r["summary"].get(k)) for k in summary_keys])
    atomic_write(path, lambda f: f.write(buf.getvalue()))
    return path


def _cell(value):
    if value is None:
        return ""
    if isinstance(value, list):
        return json.dumps(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else repr(value)
    return str(value)


# ------------------------------------------------------------------ analysis
def mean_over_seeds(records, keys, value):
    """{tuple of params[keys]: (mean, std, n)} of summary[value] over the ok points."""
    groups = {}
    for r in records:
        v = r["summary"].get(value)
        if r["status"] != "ok" or v is None:
            continue
        groups.setdefault(tuple(_hashable(r["params"].get(k)) for k in keys), []).append(float(v))
    return {k: (float(np.nanmean(v)) if np.isfinite(v).any() else float("nan"),
                float(np.nanstd(v)) if np.isfinite(v).any() else float("nan"), len(v))
            for k, v in groups.items()}


def _hashable(value):
    return tuple(value) if isinstance(value, list) else value


def boundary(records, threshold=0.9, value="mean_cos"):
    """h*(L): for each depth, the smallest hold whose seed-averaged ``value`` is
    ≥ threshold (None if no hold reaches it). Keys: depth -> hold."""
    means = mean_over_seeds(records, ["network.depth", "stream.hold"], value)
    out = {}
    for depth in sorted({d for d, _ in means}):
        holds = sorted(h for d, h in means if d == depth and means[(d, h)][0] >= threshold)
        out[depth] = holds[0] if holds else None
    return out


def layer_boundaries(records, threshold=0.9):
    """h*(L, l): per depth and layer, the smallest hold with seed-averaged
    steady cosine ≥ threshold. Keys: depth -> [h* for l = 1..L] (None = never)."""
    out = {}
    depths = sorted({r["params"].get("network.depth") for r in records if r["status"] == "ok"})
    for depth in depths:
        mine = [r for r in records if r["params"].get("network.depth") == depth]
        out[depth] = [boundary(mine, threshold, f"cos_l{l:02d}").get(depth) for l in range(1, depth + 1)]
    return out


def fit_boundary(hstar):
    """Least-squares fits of h*(L): linear h* = a·L + b and power h* = c·L^p,
    over the depths that reach the threshold. Returns a dict (NaN if < 2 points)."""
    pts = [(L, h) for L, h in hstar.items() if h is not None]
    if len(pts) < 2:
        return {"slope": float("nan"), "intercept": float("nan"), "power": float("nan"),
                "coefficient": float("nan")}
    L, h = np.array(pts, dtype=float).T
    slope, intercept = np.polyfit(L, h, 1)
    power, logc = np.polyfit(np.log(L), np.log(h), 1)
    return {"slope": float(slope), "intercept": float(intercept), "power": float(power),
            "coefficient": float(np.exp(logc))}


def render_sweep(records, sweep, out_dir, title=""):
    """The sweep's pictures, by what its grid varies: phase.png (mismatch over
    hold × depth) when it varies network.depth and stream.hold with mismatch
    summaries; accuracy.png (final accuracy over hold per rule) when it varies
    stream.hold with training summaries. Returns {file name: path}."""
    from .render.phase import render_accuracy, render_phase
    grid = sweep["grid"]
    ok = [r for r in records if r["status"] == "ok"]
    written = {}
    if "stream.hold" in grid and "network.depth" in grid and any("mean_cos" in r["summary"] for r in ok):
        path = os.path.join(out_dir, "phase.png")
        hstar = boundary(ok, sweep["threshold"])
        written["phase.png"] = render_phase(ok, hstar, sweep["threshold"], path, title=title)
        write_json(os.path.join(out_dir, "boundary.json"), {
            "threshold": sweep["threshold"], "h_star": {str(k): v for k, v in hstar.items()},
            "h_star_layers": {str(k): v for k, v in layer_boundaries(ok, sweep["threshold"]).items()},
            "fit": fit_boundary(hstar), "paper_tau_s": {str(k): k - 1 for k in hstar}}, indent=1)
        written["boundary.json"] = os.path.join(out_dir, "boundary.json")
    if "stream.hold" in grid and any("final_accuracy" in r["summary"] for r in ok):
        path = os.path.join(out_dir, "accuracy.png")
        written["accuracy.png"] = render_accuracy(ok, path, title=title)
    return written


__all__ = ["SWEEP_SECTIONS", "run_sweep", "run_point", "points_of", "point_id", "write_csv",
           "boundary", "layer_boundaries", "fit_boundary", "steady_mismatch", "mean_over_seeds"]
