"""Sweeps: a grid of scene overrides run as independent points (SPEC §9).

A `sweep` scene names a base scene, a grid {"section.key": [values, ...]},
fixed overrides for every point, and seeds. Each point (one grid cell × one
seed) is a full scene run — a diffusion run summarised by its steady-state
gradient mismatch per layer, or a training run summarised by its final test
accuracy and loss — executed in local worker processes or, given a scheduler
address, on a Dask distributed cluster.

Every point is resolved (base scene, then sweep.set, then its grid values and
seed) and validated before any runs, so a bad key or value stops the sweep
with one error. A point is named by the hash of its resolved scene and summary
options (``simulator.points.point_key``), so editing the sweep or its base never reuses a stale
point. Every finished point is written atomically as its own JSON file in
``<out>/points/``, holding its scene and key, checked again when read: an
interrupted sweep resumes with the missing points only, failed and damaged
points are run again, and a failing point (or a dying worker, see
``simulator.pool``) is stored with its error while the others go on.
``sweep.csv`` is assembled from the point files, rows sorted by parameters, so
any scheduler gives the same table; pictures come last.

Nothing waits for ever. A point that runs longer than its timeout
(``sweep.point_timeout``, or derived from its ticks: ``point_timeout``) fails
with one line: a local worker process is stopped (``simulator.pool``); on
Dask the point's thread is abandoned and its worker takes the next point
(``simulator.dask_pool``). A Dask sweep watches the scheduler while points
are pending: with no worker for ``sweep.no_worker_timeout`` seconds every
unfinished point fails with one line and the sweep finishes with what is done
(csv and pictures).
"""
import collections
import copy
import itertools
import json
import math
import os
import time
import traceback
from typing import NamedTuple

import numpy as np

from . import dask_pool, files, outputs, pool, threads
from . import scene as scene_mod
from .errors import SceneError, SimulatorError, closest
from .points import POINT_FORMAT, point_key, point_path, read_point
from .runner import Prepared
from .engine.tick import synchronized_layers
from .experiments.training import train_scene


# The automatic point timeout (sweep.point_timeout = 0): start-up allowance plus
# an allowance per tick of each rule, some 100x what a tick of a shipped scene takes.
POINT_START_S = 600.0
POINT_TICK_S = 0.1


class Point(NamedTuple):
    """One point of a sweep: its grid values and seed (``params``), the scene
    it runs (resolved: base, then sweep.set, then params, every default
    filled) and its ``key``, the hash that names its file."""
    params: dict
    scene: dict
    key: str


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


def summary_options(sweep, base_name, base, where):
    """The options a point's summary depends on: the summary kind ('auto'
    resolved by the base scene's kind) and, for mismatch summaries, where the
    steady state starts. Raises SceneError if the base kind has no summary."""
    kind = sweep["summary"]
    if kind == "auto":
        kind = "training" if base["kind"] == "train" else "mismatch"
    need = "train" if kind == "training" else "diffusion"
    if base["kind"] != need:
        raise SceneError(f"{where}: key 'sweep.summary': a {kind!r} summary needs a {need} base "
                         f"scene, got {base_name!r} of kind {base['kind']!r}")
    return {"summary": kind, "steady_from": sweep["steady_from"]} if kind == "mismatch" \
        else {"summary": kind}


def resolve_point(scene, overrides, where):
    """``scene`` with {"section.key": value} ``overrides`` applied and validated
    again (every default filled); an unknown section or key, or a bad value,
    raises SceneError starting with ``where`` (file and sweep table)."""
    raw = copy.deepcopy(scene)
    for key, value in overrides.items():
        section, field = key.split(".")
        if section in scene_mod.TOP or not isinstance(raw.get(section), dict):
            known = [k for k, v in raw.items() if isinstance(v, dict)]
            close = closest(section, known)
            hint = f" (did you mean '{close}.{field}'?)" if close else ""
            raise SceneError(f"{where}: unknown section {section!r} in key {key!r}{hint}; "
                             f"a {raw['kind']} scene has {', '.join(known)}")
        raw[section][field] = copy.deepcopy(value)
    return scene_mod.validate(raw, where)


def plan_sweep(sweep_path_or_name):
    """Load a sweep scene and resolve every one of its points before any runs:
    (name, resolved sweep scene, base name, summary options, [Point]). A bad
    key or value in sweep.set or sweep.grid is one SceneError naming the sweep
    file, the table, the key, what was expected and what was given."""
    name, sweep_scene, base_name, base = load_sweep(sweep_path_or_name)
    path = scene_mod.find_scene(sweep_path_or_name)
    sw = sweep_scene["sweep"]
    options = summary_options(sw, base_name, base, path)
    for table in ("set", "grid"):
        if "run.seed" in sw[table]:
            raise SceneError(f"{path}: key 'sweep.{table}' entry 'run.seed': the seeds of a "
                             f"sweep are given by sweep.seeds, got {sw[table]['run.seed']!r}")
    fixed = resolve_point(base, sw["set"], f"{path}: sweep.set")
    points = []
    for params in points_of(sw):
        scene = resolve_point(fixed, params, f"{path}: sweep.grid")
        points.append(Point(params, scene, point_key(scene, options)))
    return name, sweep_scene, base_name, options, points


def run_point(base_name, scene, options, params, key):
    """Run one point (its resolved scene) and return its record {format, key,
    params, scene, options, status, error, summary, seconds}; never raises for
    a point's own failure (blow-up, any exception), which is recorded as
    status 'failed' with its message."""
    t0 = time.perf_counter()
    record = _record(key, params, scene, options)
    try:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            record["summary"] = summarize_point(base_name, scene, options)
    except Exception as exc:  # a point's failure is data, not the sweep's end
        record["status"] = "failed"
        record["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0]
        if not isinstance(exc, SimulatorError):
            record["traceback"] = traceback.format_exc()
    record["seconds"] = time.perf_counter() - t0
    return record


def point_timeout(scene, sweep):
    """Seconds a point of resolved ``scene`` may run: ``sweep.point_timeout``
    when set (> 0), else POINT_START_S plus POINT_TICK_S per tick of each run
    the point makes (a train point runs once per rule; the ar rule relaxes
    ``train.ar_iterations`` steps a tick)."""
    if sweep["point_timeout"] > 0:
        return float(sweep["point_timeout"])
    ticks = scene["run"]["ticks"]
    if scene["kind"] == "train":
        train = scene["train"]
        ticks *= sum(train["ar_iterations"] if rule == "ar" else 1 for rule in train["rules"])
    return POINT_START_S + POINT_TICK_S * ticks


def timeout_message(seconds):
    """The one line of a point that ran past its timeout."""
    return (f"the point ran past its timeout of {seconds:g} s (sweep.point_timeout); "
            "re-run the sweep to retry, or raise sweep.point_timeout")


def _record(key, params, scene, options, status="ok", error=""):
    return {"format": POINT_FORMAT, "key": key, "params": params, "scene": scene,
            "options": options, "status": status, "error": error, "summary": {},
            "seconds": float("nan")}


def summarize_point(name, scene, options):
    """Summary numbers of one resolved scene (``options`` from summary_options,
    which checked its kind): steady-state mismatch per layer for a diffusion
    scene, final test accuracy/loss for a train scene."""
    if options["summary"] == "training":
        _, summary = train_scene(scene)
        rules = scene["train"]["rules"]
        if len(rules) == 1:
            # One rule per point: generic column names, so a rule axis gives one column.
            prefix = rules[0] + "."
            summary = {k[len(prefix):]: v for k, v in summary.items()}
        return summary
    trace = Prepared(name, scene).simulate()
    return steady_mismatch(trace["mismatch_cos"], trace["mismatch_rel"], options["steady_from"])


def steady_mismatch(cos, rel, steady_from):
    """Mean cosine and relative error per layer over the steady part of a run
    (ticks from max(2L, steady_from·T), when both waves have crossed the
    network), their mean over layers, and the cosine of ls (the lower of the two
    closest layers for even L)."""
    T, L = cos.shape
    start = min(max(2 * L, int(steady_from * T)), T - 1)
    out = {}
    per_layer, per_rel = ([float(np.nanmean(a[start:, l])) if np.isfinite(a[start:, l]).any()
                           else float("nan") for l in range(L)] for a in (cos, rel))
    for l in range(L):
        out[f"cos_l{l + 1:02d}"] = per_layer[l]
        out[f"rel_l{l + 1:02d}"] = per_rel[l]
    out["mean_cos"] = float(np.nanmean(per_layer))
    out["mean_rel"] = float(np.nanmean(per_rel))
    ls = synchronized_layers(L)[0]
    out["ls"] = ls
    out["cos_ls"] = per_layer[ls - 1]
    others = [c for l, c in enumerate(per_layer, start=1) if l != ls]
    out["cos_others"] = float(np.nanmean(others)) if others else float("nan")
    return out


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


def run_sweep(sweep_path_or_name, out_dir, workers=1, scheduler=None, progress=None,
              force=False):
    """Run every point of a sweep scene that has no valid finished file in
    ``<out_dir>/points/`` (missing, failed or damaged points run again; files
    are named by point_key), in ``workers`` local processes or on the Dask
    cluster at ``scheduler``; then write sweep.csv and the pictures. Every
    point is resolved and checked, and ``out_dir`` claimed
    (simulator.outputs.claim_folder: a foreign folder is refused unless
    ``force``), before any runs; every file is listed in the folder's
    manifest as it is written. ``progress(n)`` is called
    per finished point. Ctrl-C (KeyboardInterrupt) stops at once: the workers
    are killed, the points finished so far stay. Returns a summary dict
    (counts, paths, seconds, records)."""
    if int(workers) < 1:
        raise SimulatorError(f"--workers: expected at least 1, got {workers}")
    distributed = None
    if scheduler:
        scheduler = dask_pool.check_scheduler(scheduler)
        distributed = dask_pool.distributed_module()
    name, sweep_scene, base_name, options, points = plan_sweep(sweep_path_or_name)
    with outputs.claimed(out_dir, force, {"name": name, "kind": "sweep"}):
        return _run_claimed(name, sweep_scene, base_name, options, points, out_dir, workers,
                            scheduler, distributed, progress)


def _run_claimed(name, sweep_scene, base_name, options, points, out_dir, workers, scheduler,
                 distributed, progress):
    """run_sweep's work once ``out_dir`` is claimed and recorded."""
    sw = sweep_scene["sweep"]
    points_dir = os.path.join(out_dir, "points")
    records, damaged = {}, 0
    for point in points:
        if point.key not in records:
            record, was_damaged = read_point(points_dir, point.key)
            damaged += was_damaged
            if record is not None:
                records[point.key] = record
    copies = collections.Counter(p.key for p in points)
    todo = {p.key: p for p in points
            if p.key not in records or records[p.key]["status"] != "ok"}
    ready = len(points) - sum(copies[k] for k in todo)
    if progress is not None and ready:
        progress(ready)
    jobs = [(base_name, p.scene, options, p.params, p.key) for p in todo.values()]
    timeouts = [point_timeout(p.scene, sw) for p in todo.values()]

    def save(record):
        files.write_json(point_path(points_dir, record["key"]), record, indent=1)
        records[record["key"]] = record
        if progress is not None:
            progress(copies[record["key"]])

    client = dask_pool.connect(distributed, scheduler) if jobs and distributed is not None else None
    os.makedirs(points_dir, exist_ok=True)
    t0 = time.perf_counter()
    if client is not None:
        dask_pool.run_jobs(run_point, jobs, timeouts, client, distributed, save, _failure,
                           timeout_message, sw["no_worker_timeout"])
    elif jobs:
        _run_local(jobs, timeouts, int(workers), save)
    elapsed = time.perf_counter() - t0
    # a point's params are how this sweep names it (another sweep may have run the same scene)
    done = [dict(records[p.key], params=p.params) for p in points if p.key in records]
    csv_path = write_csv(os.path.join(out_dir, "sweep.csv"), done, list(sw["grid"]) + ["run.seed"])
    pictures = render_sweep(done, sw, out_dir, title=f"{name}: {sweep_scene['description']}")
    failed = sum(r["status"] != "ok" for r in done)
    return {"name": name, "points": len(points), "ran": len(jobs), "failed": failed,
            "damaged": damaged, "csv": csv_path, "pictures": pictures, "seconds": elapsed,
            "points_per_minute": 60.0 * len(jobs) / elapsed if jobs and elapsed > 0 else float("nan"),
            "records": done}


def sweep_records(sweep_path_or_name, out_dir):
    """The valid point records of a sweep found in ``<out_dir>/points/``, in
    point order (points not run yet or damaged are left out)."""
    _, _, _, _, points = plan_sweep(sweep_path_or_name)
    points_dir = os.path.join(out_dir, "points")
    out = []
    for point in points:
        record, _ = read_point(points_dir, point.key)
        if record is not None:
            out.append(dict(record, params=point.params))
    return out


def _run_local(jobs, timeouts, workers, save):
    """Points in ``workers`` processes, each saved as it finishes; a worker
    that dies fails only its own point, and one whose point runs past its
    timeout (``timeouts``, seconds per job) is stopped and fails that point."""
    def finished(index, ok, value):
        save(value if ok else _failure(jobs[index], value))
    # Worker processes are the parallelism: a multi-threaded BLAS in each of
    # them would oversubscribe the cores and make more workers slower.
    # A forked child cannot use a CUDA context its parent made (the parent's
    # checks build the points): points on the GPU run in spawned workers.
    gpu = any(job[1].get("run", {}).get("device") == "cuda" for job in jobs)
    pool.run_jobs(run_point, jobs, workers, finished, initializer=threads.worker, fresh=gpu,
                  timeouts=timeouts, timed_out=timeout_message)


def _failure(job, message):
    _, scene, options, params, key = job
    return _record(key, params, scene, options, status="failed", error=message)


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
    return files.write_csv(path, param_keys + ["status", "error"] + summary_keys, [
        [_cell(r["params"].get(k)) for k in param_keys] + [r["status"], r["error"]]
        + [_cell(r["summary"].get(k)) for k in summary_keys] for r in rows])


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


def boundary(records, threshold=0.9, value="mean_cos", axis="stream.hold"):
    """The boundary of each depth along ``axis``: h*(L), the smallest hold whose
    seed-averaged ``value`` is ≥ threshold, or, for axis ``stream.speed``
    (moving streams), v*(L), the largest speed that still reaches it (None if
    no grid value does). Keys: depth -> hold (speed)."""
    means = mean_over_seeds(records, ["network.depth", axis], value)
    pick = max if axis == "stream.speed" else min
    out = {}
    for depth in sorted({d for d, _ in means}):
        passing = [h for d, h in means if d == depth and means[(d, h)][0] >= threshold]
        out[depth] = pick(passing) if passing else None
    return out


def layer_boundaries(records, threshold=0.9, axis="stream.hold"):
    """h*(L, l) (or v*(L, l) along ``stream.speed``): per depth and layer, the
    boundary of the seed-averaged steady cosine of layer l (see ``boundary``).
    Keys: depth -> [boundary for l = 1..L] (None = never)."""
    out = {}
    depths = sorted({r["params"].get("network.depth") for r in records if r["status"] == "ok"})
    for depth in depths:
        mine = [r for r in records if r["params"].get("network.depth") == depth]
        out[depth] = [boundary(mine, threshold, f"cos_l{l:02d}", axis).get(depth)
                      for l in range(1, depth + 1)]
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
    hold × depth, or speed × depth for a moving stream) and boundary.json when
    it varies network.depth and stream.hold (or stream.speed) with mismatch
    summaries; accuracy.png (final accuracy over hold per rule) when it varies
    stream.hold with training summaries. Returns {file name: path}."""
    # matplotlib loads only when a picture is drawn: sweep workers and
    # `tickprop --help` stay quick.
    from .render.phase import render_accuracy, render_phase

    grid = sweep["grid"]
    ok = [r for r in records if r["status"] == "ok"]
    written = {}
    axis = "stream.speed" if "stream.speed" in grid else "stream.hold"
    if axis in grid and "network.depth" in grid and any("mean_cos" in r["summary"] for r in ok):
        path = os.path.join(out_dir, "phase.png")
        star = boundary(ok, sweep["threshold"], axis=axis)
        written["phase.png"] = render_phase(ok, star, sweep["threshold"], path, title=title,
                                            axis=axis)
        name = "v_star" if axis == "stream.speed" else "h_star"
        files.write_json(os.path.join(out_dir, "boundary.json"), {
            "threshold": sweep["threshold"], name: {str(k): v for k, v in star.items()},
            name + "_layers": {str(k): v for k, v in
                               layer_boundaries(ok, sweep["threshold"], axis).items()},
            "fit": fit_boundary(star), "paper_tau_s": {str(k): k - 1 for k in star}}, indent=1)
        written["boundary.json"] = os.path.join(out_dir, "boundary.json")
    if "stream.hold" in grid and any("final_accuracy" in r["summary"] for r in ok):
        path = os.path.join(out_dir, "accuracy.png")
        written["accuracy.png"] = render_accuracy(ok, path, title=title)
    return written


__all__ = ["Point", "run_sweep", "plan_sweep", "run_point", "points_of",
           "point_timeout", "sweep_records", "write_csv",
           "boundary", "layer_boundaries", "fit_boundary", "steady_mismatch", "mean_over_seeds"]
