"""Sweeps (docs/how-to/sweep.md, `tickprop sweep`): every point (grid cell × seed) of
scene overrides is resolved before any runs and stored as a JSON file named by the
hash of its resolved scene (``simulator.points``), so a sweep resumes with its
missing, failed or damaged points only.
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


# The automatic point timeout (sweep.point_timeout = 0): start-up plus an allowance
# per tick of each rule, some 100x what a tick of a shipped scene takes.
POINT_START_S = 600.0
POINT_TICK_S = 0.1


class Point(NamedTuple):
    """A point: its grid values and seed, resolved scene, the hash naming its file."""
    params: dict
    scene: dict
    key: str


def resolve_point(scene, overrides, where):
    """``scene`` with {"section.key": value} ``overrides`` applied and validated again;
    a mistake is a SceneError starting with ``where``."""
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
    """(name, resolved sweep scene, base name, summary options, [Point]), every point
    resolved before any runs (a mistake is one SceneError). The options are what a
    summary depends on: its kind ('auto': by the base scene's), ``steady_from``."""
    name, sweep_scene, base_name, base = load_sweep(sweep_path_or_name)
    path = scene_mod.find_scene(sweep_path_or_name)
    sw = sweep_scene["sweep"]
    kind = sw["summary"]
    if kind == "auto":
        kind = "training" if base["kind"] == "train" else "mismatch"
    need = "train" if kind == "training" else "diffusion"
    if base["kind"] != need:
        raise SceneError(f"{path}: key 'sweep.summary': a {kind!r} summary needs a {need} base "
                         f"scene, got {base_name!r} of kind {base['kind']!r}")
    options = dict(summary=kind, **({"steady_from": sw["steady_from"]} if kind == "mismatch"
                                    else {}))
    for table in ("set", "grid"):
        if "run.seed" in sw[table]:
            raise SceneError(f"{path}: key 'sweep.{table}' entry 'run.seed': the seeds of a "
                             f"sweep are given by sweep.seeds, got {sw[table]['run.seed']!r}")
    fixed = resolve_point(base, sw["set"], f"{path}: sweep.set")
    # Points: the grid's product (first axis slowest), run.seed last.
    cells = [dict(zip(sw["grid"], combo), **{"run.seed": seed})
             for combo in itertools.product(*sw["grid"].values()) for seed in sw["seeds"]]
    scenes = [(p, resolve_point(fixed, p, f"{path}: sweep.grid")) for p in cells]
    points = [Point(params, scene, point_key(scene, options)) for params, scene in scenes]
    return name, sweep_scene, base_name, options, points


def run_point(base_name, scene, options, params, key):
    """The record of one point run; its own failure (any exception) is recorded as
    status 'failed' with its message, not raised."""
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
    """Seconds a point may run: ``sweep.point_timeout`` when > 0, else POINT_START_S
    plus POINT_TICK_S per tick of each rule it trains (ar's ``ar_iterations`` times)."""
    if sweep["point_timeout"] > 0:
        return float(sweep["point_timeout"])
    ticks = scene["run"]["ticks"]
    if scene["kind"] == "train":
        train = scene["train"]
        ticks *= sum(train["ar_iterations"] if rule == "ar" else 1 for rule in train["rules"])
    return POINT_START_S + POINT_TICK_S * ticks


def timeout_message(seconds):
    return (f"the point ran past its timeout of {seconds:g} s (sweep.point_timeout); "
            "re-run the sweep to retry, or raise sweep.point_timeout")


def _record(key, params, scene, options, status="ok", error=""):
    return {"format": POINT_FORMAT, "key": key, "params": params, "scene": scene,
            "options": options, "status": status, "error": error, "summary": {},
            "seconds": float("nan")}


def summarize_point(name, scene, options):
    """Summary numbers of a point: the steady mismatch per layer of a diffusion
    scene, the final test accuracy and loss of a train scene."""
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
    (ticks from max(2L, steady_from·T), once both waves crossed the network),
    their means over layers, and the cosine of ls (Eq. 6) and of the others."""
    T, L = cos.shape
    start = min(max(2 * L, int(steady_from * T)), T - 1)
    per_layer, per_rel = ([_nanmean(a[start:, l]) for l in range(L)] for a in (cos, rel))
    out = {f"{name}_l{l + 1:02d}": v[l] for l in range(L)
           for name, v in (("cos", per_layer), ("rel", per_rel))}
    ls = synchronized_layers(L)[0]
    others = [c for l, c in enumerate(per_layer, start=1) if l != ls]
    return dict(out, mean_cos=float(np.nanmean(per_layer)), mean_rel=float(np.nanmean(per_rel)),
                ls=ls, cos_ls=per_layer[ls - 1],
                cos_others=float(np.nanmean(others)) if others else float("nan"))


def _nanmean(values, stat=np.nanmean):
    """``stat`` of the finite values, NaN (and no warning) when there are none."""
    values = np.asarray(values, dtype=float)
    return float(stat(values)) if np.isfinite(values).any() else float("nan")


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
    """Run every point of a sweep scene with no valid file in ``<out_dir>/points/``
    (claimed first: a foreign folder only with ``force``) in ``workers`` local
    processes or on the Dask cluster at ``scheduler``, then write sweep.csv and the
    pictures; ``progress(n)`` per finished point; Ctrl-C stops at once, keeping the
    finished points. Returns a summary dict (counts, paths, seconds, records)."""
    if int(workers) < 1:
        raise SimulatorError(f"--workers: expected at least 1, got {workers}")
    distributed = None
    if scheduler:
        scheduler = dask_pool.check_scheduler(scheduler)
        distributed = dask_pool.distributed_module()
    name, sweep_scene, base_name, options, points = plan_sweep(sweep_path_or_name)
    with outputs.claimed(out_dir, force, {"name": name, "kind": "sweep"}):
        sw = sweep_scene["sweep"]
        points_dir = os.path.join(out_dir, "points")
        records, damaged = _read_points(points_dir, points)
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

        client = dask_pool.connect(distributed, scheduler) if jobs and distributed else None
        os.makedirs(points_dir, exist_ok=True)
        t0 = time.perf_counter()
        if client is not None:
            dask_pool.run_jobs(run_point, jobs, timeouts, client, distributed, save, _failure,
                               timeout_message, sw["no_worker_timeout"])
        elif jobs:
            _run_local(jobs, timeouts, int(workers), save)
        elapsed = time.perf_counter() - t0
        done = _named(points, records)
        csv = write_csv(os.path.join(out_dir, "sweep.csv"), done, list(sw["grid"]) + ["run.seed"])
        pictures = render_sweep(done, sw, out_dir, title=f"{name}: {sweep_scene['description']}")
        rate = 60.0 * len(jobs) / elapsed if jobs and elapsed > 0 else float("nan")
        return {"name": name, "points": len(points), "ran": len(jobs),
                "failed": sum(r["status"] != "ok" for r in done), "damaged": damaged,
                "csv": csv, "pictures": pictures, "seconds": elapsed,
                "points_per_minute": rate, "records": done}


def sweep_records(sweep_path_or_name, out_dir):
    """The valid point records found in ``<out_dir>/points/``, in point order."""
    points = plan_sweep(sweep_path_or_name)[4]
    return _named(points, _read_points(os.path.join(out_dir, "points"), points)[0])


def _read_points(points_dir, points):
    """({key: valid record}, number of points whose file is damaged)."""
    found = {p.key: read_point(points_dir, p.key) for p in points}
    return ({k: r for k, (r, _) in found.items() if r is not None},
            sum(found[p.key][1] for p in points))


def _named(points, records):
    """The records of ``points`` found, in point order, with this sweep's params."""
    return [dict(records[p.key], params=p.params) for p in points if p.key in records]


def _run_local(jobs, timeouts, workers, save):
    """Points in ``workers`` processes, each saved as it finishes; a dying or timed-out
    worker fails only its own point."""
    def finished(index, ok, value):
        save(value if ok else _failure(jobs[index], value))
    # One BLAS thread per worker (more would oversubscribe the cores); GPU points
    # run in spawned workers (a fork cannot use its parent's CUDA context).
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
    """sweep.csv: a row per point (parameters, status, error, summary numbers) sorted
    by parameters, so the same points always give the same bytes."""
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
        at = (r["params"].get(k) for k in keys)
        groups.setdefault(tuple(tuple(p) if isinstance(p, list) else p for p in at),
                          []).append(float(v))
    return {k: (_nanmean(v), _nanmean(v, np.nanstd), len(v)) for k, v in groups.items()}


def boundary(records, threshold=0.9, value="mean_cos", axis="stream.hold"):
    """{depth: h*(L)}, the smallest hold whose seed-averaged ``value`` is ≥ threshold,
    or along ``stream.speed`` v*(L), the largest speed that still reaches it (None
    if no grid value does)."""
    means = mean_over_seeds(records, ["network.depth", axis], value)
    pick = max if axis == "stream.speed" else min
    passing = {d: [h for (e, h), (mean, _, _) in means.items() if e == d and mean >= threshold]
               for d in sorted({d for d, _ in means})}
    return {d: pick(hs) if hs else None for d, hs in passing.items()}


def layer_boundaries(records, threshold=0.9, axis="stream.hold"):
    """{depth: [h*(L, l) for l = 1..L]}: ``boundary`` of each layer's cosine."""
    depths = sorted({r["params"].get("network.depth") for r in records if r["status"] == "ok"})
    return {d: [boundary(records, threshold, f"cos_l{l:02d}", axis).get(d) for l in range(1, d + 1)]
            for d in depths}


def fit_boundary(hstar):
    """Least-squares fits of h*(L) over the depths that reach the threshold:
    linear h* = a·L + b and power h* = c·L^p (NaN with fewer than 2 points)."""
    pts = [(L, h) for L, h in hstar.items() if h is not None]
    if len(pts) < 2:
        return dict.fromkeys(("slope", "intercept", "power", "coefficient"), float("nan"))
    L, h = np.array(pts, dtype=float).T
    slope, intercept = np.polyfit(L, h, 1)
    power, logc = np.polyfit(np.log(L), np.log(h), 1)
    return {"slope": float(slope), "intercept": float(intercept), "power": float(power),
            "coefficient": float(np.exp(logc))}


def render_sweep(records, sweep, out_dir, title=""):
    """{file name: path} of the pictures the grid allows: phase.png and boundary.json
    (mismatch over depth × hold or speed), accuracy.png (final accuracy by hold)."""
    # matplotlib loads only when a picture is drawn: sweep workers stay quick.
    from .render.phase import render_accuracy, render_phase

    grid, threshold = sweep["grid"], sweep["threshold"]
    ok = [r for r in records if r["status"] == "ok"]
    written = {}
    axis = "stream.speed" if "stream.speed" in grid else "stream.hold"
    if axis in grid and "network.depth" in grid and any("mean_cos" in r["summary"] for r in ok):
        star = boundary(ok, threshold, axis=axis)
        written["phase.png"] = render_phase(ok, star, threshold, os.path.join(out_dir, "phase.png"),
                                            title=title, axis=axis)
        name = "v_star" if axis == "stream.speed" else "h_star"
        written["boundary.json"] = files.write_json(os.path.join(out_dir, "boundary.json"), {
            "threshold": threshold, name: {str(k): v for k, v in star.items()},
            name + "_layers": {str(k): v for k, v in layer_boundaries(ok, threshold, axis).items()},
            "fit": fit_boundary(star), "paper_tau_s": {str(k): k - 1 for k in star}}, indent=1)
    if "stream.hold" in grid and any("final_accuracy" in r["summary"] for r in ok):
        written["accuracy.png"] = render_accuracy(ok, os.path.join(out_dir, "accuracy.png"),
                                                  title=title)
    return written

