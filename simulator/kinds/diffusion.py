"""The diffusion kind: the tick engine on a stream (Betti & Gori), saved as a
Trace (trace.npz) and drawn as waves.png, mismatch.png and waves.gif."""
import numpy as np

from ..probes import Trace
from ..build import pairing_warnings, seeds
from ..experiments.training import evaluate, held_out
from ..runner import Prepared, check_picture_size, clip_windows
from ..analysis.sync import finite_mean, steady_window
from ..engine.tick import synchronized_layers
from ..scene import spec_of
from .base import (RENDER_OPTIONS, SELECTORS, TYPED_OPTIONS, Kind, run_keys, saved_section,
                   wanted)

# Relative error of g against backprop at or below which a layer counts as
# exact: the Gram-matrix rounding floor of the mismatch (simulator.metrics).
EXACT_REL = {"float64": 1e-6, "float32": 1e-3}
MAX_SUMMARY_ROWS = 12       # deeper networks list evenly spaced layers and ls


def prepare(name, scene, options=None):
    """Build and check the run (sizes, memory budget with the GIF's frames when
    it will be drawn, device, picture size)."""
    options = options or {}
    prepared = Prepared(name, scene, gif=options.get("gif", True) is not False,
                        png=options.get("png", True) is not False)
    check_picture_size(list(prepared.spec.render.size))

    def job(folder, progress=None):
        trace = prepared.simulate(progress)
        trace.save(folder, compress=prepared.spec.record.compress)
        out = {"ticks": prepared.plan.ticks, "record_bytes": trace.meta["record_bytes"],
               "backend": trace.meta["backend"], "timings": trace.meta["timings"],
               "resolved": trace.meta["resolved"]}
        if prepared.final_model is not None:
            out["held_out"] = held_out_scores(prepared)
        return out
    job.warnings = pairing_warnings(prepared.spec, prepared.spec.rule, prepared.network)
    return job


def held_out_scores(prepared):
    """A learning run's held-out accuracy (labels; else None) and mean loss, before
    and after: {"accuracy": [before, after], "loss": [...], "samples": n}."""
    spec = prepared.spec
    x, y = held_out(spec, prepared.network, seeds(spec.run.seed).teacher)
    scores = [evaluate(m, x, y, spec.rule.loss, spec.target.kind == "labels")
              for m in (prepared.network, prepared.final_model)]
    return {key: [None if not np.isfinite(s[j]) else float(s[j]) for s in scores]
            for j, key in enumerate(("accuracy", "loss"))} | {"samples": len(x)}


def draw(folder, meta, options):
    """waves.png, mismatch.png and waves.gif from trace.npz, the scene's [render] choices
    overridden by ``options`` (every, size, color; png/gif False to skip)."""
    trace = Trace.load(folder, meta)      # a damaged trace.npz is one SimulatorError
    render = saved_section(folder, meta, "diffusion", "render")
    render.update({k: options[k] for k in RENDER_OPTIONS if k in options})
    png, gif = wanted(options, render["png"], render["gif"])
    if not (png or gif):
        return {}       # matplotlib is imported only to draw
    from ..render import write_pictures
    selection = options.get("select") or {}
    if any(v is not None for v in selection.values()):
        trace = trace.select(**selection)
        if selection.get("ticks") is not None:
            render["windows"] = []          # the selected ticks are the one window
    check_picture_size(render["size"])
    return write_pictures(folder, trace, png=png, gif=gif, every=render["every"],
                          size=tuple(render["size"]), color=render["color"],
                          windows=clip_windows(render["windows"], trace))


def layer_results(trace):
    """([per layer (chain: 1..L) or weighted vertex (graph): {name, cos, rel: means
    over the steady window, exact_from: first tick g is exact (EXACT_REL) or None,
    sync}], (start, stop) rows of the steady window)."""
    start, stop = steady_window(trace)
    dtype = str(trace.meta.get("scene", {}).get("run", {}).get("dtype", "float64"))
    tol = EXACT_REL.get(dtype, EXACT_REL["float32"])
    cos, rel = trace["mismatch_cos"], trace["mismatch_rel"]
    if "vertex_names" in trace:
        names = [str(n) for n in trace["vertex_names"]]
        sync = set(np.flatnonzero(np.asarray(trace["vertex_sync"], dtype=bool)).tolist())
    else:
        names = [str(l) for l in range(trace.depth + 1)]
        sync = set(synchronized_layers(trace.depth)) if trace.depth % 2 else set()
    rows = []
    for col in range(cos.shape[1]):
        if not np.isfinite(cos[:, col]).any():
            continue                                        # a vertex without weights
        # the first row from which rel stays finite and <= tol to the end
        good = np.isfinite(rel[:, col]) & (rel[:, col] <= tol)
        bad = np.flatnonzero(~good)
        first = None if not len(good) or not good[-1] else int(bad[-1]) + 1 if len(bad) else 0
        rows.append({"name": names[col + 1], "cos": finite_mean(cos[start:stop, col]),
                     "rel": finite_mean(rel[start:stop, col]),
                     "exact_from": None if first is None else int(trace["tick"][first]),
                     "sync": col + 1 in sync})
    return rows, (start, stop)


def summary(folder, meta):
    """Headline, ``layer_results`` per layer (deep networks: evenly spaced ones and ls),
    the held-out scores."""
    trace = Trace.load(folder, meta)
    rows, (start, stop) = layer_results(trace)
    graph = "vertex_names" in trace
    ticks = trace["tick"]
    span = (f"ticks {int(ticks[start])}–{int(ticks[stop - 1])}" if stop > start
            else "no steady ticks")
    t = meta["timings"]
    lines = [f"{meta['summary']['ticks']} ticks in {t['simulate_s']:.2f} s "
             f"({t['ticks_per_s']:.0f} ticks/s)"]
    if not rows:
        return lines + ["  no layer has a gradient mismatch recorded (record.metrics = false?)"]
    shown = list(range(len(rows)))
    if len(rows) > MAX_SUMMARY_ROWS:
        spaced = np.rint(np.linspace(0, len(rows) - 1, MAX_SUMMARY_ROWS - 2)).astype(int)
        shown = sorted(set(spaced.tolist()) | {i for i, r in enumerate(rows) if r["sync"]})
    unit, mark = ("vertex", "sync set") if graph else ("layer", "ls")
    lines.append(f"  steady state ({span}): g of Eq. 5 against backprop per {unit}"
                 + (f" ({len(shown)} of {len(rows)} shown; `tickprop sync` lists all)"
                    if len(shown) < len(rows) else ""))
    width = max(len(unit), *(len(rows[i]["name"]) for i in shown))
    lines.append(f"  {unit.rjust(width)}  {'cos':>7}  {'rel err':>8}  {'exact from tick':>15}")
    for r in (rows[i] for i in shown):
        cos, rel, exact = ("-" if r[k] is None else f.format(r[k]) for k, f in
                           (("cos", "{:.4f}"), ("rel", "{:.2e}"), ("exact_from", "{}")))
        lines.append(f"  {r['name'].rjust(width)}  {cos:>7}  {rel:>8}  {exact:>15}"
                     f"{'  <- ' + mark if r['sync'] else ''}")
    held = meta["summary"].get("held_out")
    if held:
        what = [f"{k} {after:.4g} (before learning {before:.4g})" for k in ("accuracy", "loss")
                for before, after in [held[k]] if after is not None and before is not None]
        lines.append(f"  held out ({held['samples']} samples): " + ", ".join(what or ["diverged"]))
    if not graph and trace.depth % 2 == 0:
        a, b = synchronized_layers(trace.depth)
        lines.append(f"  L = {trace.depth} is even: no layer is exactly synchronized "
                     f"(layers {a} and {b} are closest)")
    return lines


KIND = Kind("diffusion", prepare, draw, options=run_keys(*TYPED_OPTIONS), draws=RENDER_OPTIONS,
            progress=lambda scene: spec_of(scene).run.ticks, summary=summary, selects=SELECTORS)
