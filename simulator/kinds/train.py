"""The train kind: online learning on a stream, every rule from the same weights on
the same frames (simulator.experiments.training), saved as results.json (the
curves) and drawn as learning.png."""
import contextlib
import os
import time

import numpy as np

from .. import threads
from ..errors import SimulatorError
from ..files import write_json
from ..probes import RecordPlan, RunBudget
from ..build import pairing_warnings
from ..experiments.training import RULES, seed_setups, stream_chunk, train_all
from ..runfiles import read_results, seed_curves
from ..scene import spec_of
from .base import TYPED_OPTIONS, Kind, done_in, run_keys


def prepare(name, scene, options=None):
    """Check the memory of every learner (side by side) against train.memory_budget and
    build the shared pieces, refusing a bad scene here; the job trains every rule on every
    seed and saves results.json (``curves``: the first seed's; over several seeds
    ``seeds`` and ``seed_curves`` hold every seed's)."""
    spec = spec_of(scene)
    train_budget(spec).check()
    setups = seed_setups(scene)

    def job(folder, progress=None):
        # the run's cores go to the learners (rules x seeds) side by side, one BLAS thread each
        workers = min(threads.own_threads(), len(spec.train.rules) * len(setups))
        t0 = time.perf_counter()
        with threads.one_blas_thread() if workers > 1 else contextlib.nullcontext():
            runs, summary = train_all(scene, progress, setups, workers)
        elapsed = time.perf_counter() - t0
        more = {} if len(runs) == 1 else {"seeds": [s for s, _ in runs],
                                          "seed_curves": [c for _, c in runs]}
        write_json(os.path.join(folder, "results.json"),
                   {"name": name, "scene": scene, "curves": runs[0][1], **more,
                    "summary": summary, "seconds": elapsed, "rule_threads": workers,
                    "warnings": list(getattr(job, "warnings", []))})
        return dict(summary, seconds=elapsed, resolved={
            "supervision_delay": spec.supervision_delay, "levelled": bool(spec.levelled)})
    if any(RULES[rule] is not None for rule in spec.train.rules):
        job.warnings = pairing_warnings(spec, spec.train, setups[0].model)
    return job


def train_budget(spec):
    """The RunBudget of a train scene: every learner (rule x seed) alive at once, each
    charged as the costliest engine (learned feedback); no recording."""
    run, tr = spec.run, spec.train
    sizes, _ = spec.network.shape
    batch = spec.stream.batch
    plan = RecordPlan(run.ticks, len(sizes) - 1, max(sizes), batch,
                      np.dtype(run.dtype).itemsize, states=False, metrics=False,
                      chunk=stream_chunk(batch, sizes[0], sizes[-1]), budget=tr.memory_budget)
    skeleton = spec.network.run_skeleton(spec.levelled)
    budget = RunBudget(plan, skeleton, feedback="learned",
                       supervision_delay=spec.supervision_delay, learning_rate=1.0,
                       target=spec.target.kind, budget_key="train.memory_budget",
                       device=run.device)
    # beyond one engine: each learner's float64 gradient and the initial model
    params = 8 * sum(int(np.prod(a)) for a in skeleton.param_shapes().values())
    budget.items.update({"learner work": params, "initial model": params})
    # what each learner holds for the whole run (rules and seeds learn in lockstep)
    seeds = max(1, len(tr.seeds))
    budget.held(("stream frames", "teacher forward"), seeds)
    return budget.held(("weights", "state buffers", "history rings", "targets ring",
                        "learner work"), len(tr.rules) * seeds)


def draw(folder, meta, options):
    """learning.png: test accuracy, test loss, W–F angles per rule against tick
    (over several seeds: each rule's mean with a ±sd band)."""
    results = read_results(folder)
    if not options.get("png", True):
        return {}       # matplotlib is imported only to draw
    from ..render.learning import render_learning
    title = f"{meta.get('name', '')}: {meta.get('scene', {}).get('description', '')}"
    runs = [c for _, c in seed_curves(results)]
    return {"learning.png": render_learning(runs[0], os.path.join(folder, "learning.png"),
                                            title=title, seeds=runs if len(runs) > 1 else None,
                                            **picture_names(meta.get("scene", {}), results))}


def picture_names(scene, results=None):
    """learning.png's labels: the weight matrices its angle panels draw in the curves'
    order (angles: those not on the input, training.alignment_angles), the accuracy of
    a guess, and the run's warnings as why a tick-engine rule may end at chance; {} if
    the scene cannot say."""
    try:
        spec = spec_of(scene)
        model = spec.network.run_skeleton(spec.levelled)
    except (SimulatorError, KeyError, TypeError):   # not a scene: the picture says W1, W2
        return {}
    keys = [k[:-2] for k in model.param_shapes() if k.endswith(".W")]
    name = (lambda k: k) if spec.network.graph else (lambda k: f"layer {k}")
    return {"layers": {"grad_angles": [name(k) for k in keys],
                       "angles": [name(k) for k in keys if any(model.vertex(k).parents)]},
            "chance": 1.0 / max(1, int(np.prod(model.output_shape))),
            "why": {rule: " ".join((results or {}).get("warnings") or [])
                    for rule in spec.train.rules if RULES[rule] is not None
                    and (results or {}).get("warnings")}}


def summary(folder, meta):
    """Headline, then per rule its final test accuracy (best in brackets) or loss; over
    several seeds the mean ± sd over those that did not diverge."""
    runs = [c for _, c in seed_curves(read_results(folder))]
    curves = runs[0]
    lines = [f"{done_in(meta)}: final test result per rule"
             + (f", mean ± sd over {len(runs)} seeds" if len(runs) > 1 else "")]
    resolved = meta.get("summary", {}).get("resolved")
    if resolved:
        lines.append(f"  tick-engine rules: supervision delay d_y = "
                     f"{resolved['supervision_delay']}"
                     + (", the graph levelled" if resolved["levelled"] else ""))
    train = meta.get("scene", {}).get("train", {})
    if isinstance(train, dict) and isinstance(train.get("rates"), dict) and train["rates"]:
        lines.append(f"  learning rate {train.get('learning_rate')}, but "
                     + ", ".join(f"{r} {eta}" for r, eta in train["rates"].items()))
    width = max((len(r) for r in curves), default=4)
    for rule, c in curves.items():
        if len(runs) > 1:
            lines.append(f"  {rule.ljust(width)}  " + _over_seeds([r[rule] for r in runs]))
            continue
        acc = np.asarray(c.get("accuracy", []), dtype=float)
        loss = np.asarray(c.get("loss", []), dtype=float)
        tick = c.get("tick", [None])[-1] if c.get("tick") else None
        if c.get("diverged"):
            text = "diverged" + (f" ({c['error']})" if c.get("error") else "")
        elif len(acc) and np.isfinite(acc[-1]):
            text = f"accuracy {acc[-1]:.4f} (best {np.nanmax(acc):.4f}), loss {loss[-1]:.4g}"
        elif len(loss):
            text = f"loss {loss[-1]:.4g} (from {loss[0]:.4g})"
        else:
            text = "no evaluation"
        lines.append(f"  {rule.ljust(width)}  {text}" + (f" at tick {tick}" if tick is not None
                                                         and not c.get("diverged") else ""))
    return lines


def _over_seeds(curves):
    """One rule's final accuracy (or loss) as mean ± sd over its seeds' curves."""
    ok = [c for c in curves if not c.get("diverged")]
    bad = f", {len(curves) - len(ok)} diverged" if len(ok) < len(curves) else ""
    if not ok:
        return f"diverged on all {len(curves)} seeds"
    acc = np.array([c["accuracy"][-1] for c in ok], dtype=float)
    loss = np.array([c["loss"][-1] for c in ok], dtype=float)

    def pm(v, fmt):
        sd = format(v.std(ddof=1), fmt) if len(v) > 1 else "nan"
        return f"{format(v.mean(), fmt)} ± {sd}"
    text = (f"accuracy {pm(acc, '.4f')}, loss {pm(loss, '.4g')}" if np.isfinite(acc).all()
            else f"loss {pm(loss, '.4g')}")
    return f"{text} (n = {len(ok)}{bad}) at tick {ok[0]['tick'][-1]}"


def _progress(scene):
    """The ticks of every learner (rule x seed): the progress bar's length."""
    spec = spec_of(scene)
    return spec.run.ticks * len(spec.train.rules) * max(1, len(spec.train.seeds))


KIND = Kind("train", prepare, draw, options=run_keys(*TYPED_OPTIONS), progress=_progress,
            summary=summary)
