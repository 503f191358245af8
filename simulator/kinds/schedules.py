"""The schedules kind (docs/explanation/schedules.md): the schedule zoo (backprop, gpipe,
1f1b, 2bw, partime, sideways and the tick engine's diffusion) on one model, stream and
clock (simulator.experiments.schedules), saved as schedules.npz with the headline numbers
in run.json, and drawn as four figures (render.schedules)."""
import dataclasses
import os

import numpy as np

from ..build import build_network, build_stream, engine_options, seeds
from ..datasets import load_dataset
from ..engine.tick import distances
from ..errors import BudgetError, NumericalError, SceneError
from ..analysis.timetables import depth_sweep, min_micro_2bw, timetable
from ..experiments.schedules import run_schedule
from ..experiments.training import held_out, stream_chunk
from ..files import write_npz
from ..probes import format_bytes, parse_bytes
from ..runfiles import read_schedules
from ..scene import spec_of
from ..scene.specs import FrozenTable, RunSpec
from .base import Kind, done_in, wanted

# per-schedule arrays kept from the first seed only (the timetables are the
# seed's, the cosines the contract's seed 0); loss and accuracy come from every seed
FIRST_SEED = ("forward", "backward", "delay", "stale", "cosine", "rel_error", "versions",
              "version_bytes", "utilisation")


def seed_spec(spec, seed):
    """The scene as ``run.seed = seed`` would read it: the stream and held-out
    builders read [run] (float64 on the host: cosines are checked to rounding)."""
    run = RunSpec(ticks=spec.schedules.frames, seed=seed, device="cpu", dtype="float64",
                  threads=spec.run.threads, backend="numpy")
    return dataclasses.replace(spec, sections=FrozenTable(dict(spec.sections, run=run)))


def run_model(spec, seed):
    """The seed's initial Model, levelled when the scene's run is."""
    model = build_network(spec.network, seeds(seed).network)
    return model.level() if spec.levelled else model


def micro(spec, model, name):
    """``name``'s M: schedules.micro for gpipe and 2bw (refused where 2bw would hold more
    than two weight versions); None for "auto" (the least M) and the other schedules."""
    sc = spec.schedules
    if name not in ("gpipe", "2bw") or sc.micro == "auto":
        return None
    least = min_micro_2bw(model)
    if name == "2bw" and sc.micro < least:
        raise SceneError(f"key 'schedules.micro': 2bw holds two weight versions only if each "
                         f"outlives every frame that read it: expected 'auto' or at least "
                         f"{least} on this network (D = {model.depth}), got {sc.micro}")
    return sc.micro


def timetables(spec, model):
    """{schedule: its closed-form timetable for the scene's frames}."""
    return {k: timetable(k, model, spec.schedules.frames, micro=micro(spec, model, k))
            for k in spec.schedules.names}


def stages(model, table):
    """The global arrays of the contract that follow from the model alone."""
    return {"vertices": np.array([v.name for v in model.vertices[1:]]),
            **{k: np.asarray(table[k], dtype=np.int64) for k in ("levels", "stages_after",
                                                                   "depth")},
            "weighted": np.asarray(table["weighted"], dtype=bool)}


def eval_ticks(spec, ticks):
    """Every eval_every-th tick of the longest schedule, and each schedule's last
    (an evaluation at tick t follows t's updates)."""
    every = np.arange(0, max(ticks.values()), spec.schedules.eval_every)
    return np.unique(np.concatenate([every, [T - 1 for T in ticks.values()]])).astype(np.int64)


def prepare(name, scene, options=None):
    """Refuse a scene over schedules.memory_budget or with a misfit stream; the job runs
    every schedule on every seed and saves schedules.npz."""
    spec = spec_of(scene)
    sc = spec.schedules
    first = seed_spec(spec, sc.seeds[0])
    model = run_model(first, sc.seeds[0])
    tables = timetables(spec, model)
    ticks = {k: int(t["ticks"]) for k, t in tables.items()}
    schedules_budget(spec, model, ticks).check()
    build_stream(first, seeds(sc.seeds[0]), sc.loss)        # refuses a misfit before any work
    labels = spec.target.kind == "labels"
    evals = eval_ticks(spec, ticks) if labels else np.zeros(0, dtype=np.int64)

    def job(folder, progress=None):
        arrays = dict(stages(model, next(iter(tables.values()))), names=np.array(sc.names),
                      seeds=np.array(sc.seeds, dtype=np.int64), eval_ticks=evals,
                      sweep_depths=np.array(sc.sweep_depths, dtype=np.int64))
        runs = {k: [] for k in sc.names}
        for i, seed in enumerate(sc.seeds):
            for k, out in seed_runs(spec, seed, evals, progress).items():
                runs[k].append({a: out[a] for a in ("loss", "accuracy")})
                if i == 0:
                    arrays.update({f"{k}__{a}": np.asarray(out[a]) for a in FIRST_SEED})
        for k in sc.names:
            arrays[f"{k}__loss"] = np.stack([np.asarray(r["loss"], float) for r in runs[k]])
            arrays[f"{k}__accuracy"] = np.stack([np.asarray(r["accuracy"], float)
                                                 for r in runs[k]]).reshape(len(sc.seeds), -1)
            # delays and version counts do not depend on the chain's width
            sweep = depth_sweep(k, list(sc.sweep_depths), 1)     # each chain's least M
            arrays[f"{k}__sweep_delay"] = np.asarray(sweep["delay"], float)
            arrays[f"{k}__sweep_versions"] = np.asarray(sweep["versions"], float)
        write_npz(os.path.join(folder, "schedules.npz"), arrays)
        return {"schedules": headline(arrays)}
    return job


def seed_runs(spec, seed, evals, progress=None):
    """{schedule: run_schedule's records} on the scene as run.seed = ``seed``
    draws it: every schedule from the same initial model on the same frames."""
    sc, sspec, sd = spec.schedules, seed_spec(spec, seed), seeds(seed)
    net = run_model(sspec, seed)
    sizes = (int(np.prod(s)) for s in (net.input_shape, net.output_shape))
    u, y = take_frames(build_stream(sspec, sd, sc.loss), sc.frames,
                       stream_chunk(spec.stream.batch, *sizes))
    labels = spec.target.kind == "labels"
    test = held_out(sspec, net, sd.teacher, sc.eval_size) if labels else (None, None)
    # the run's own batch, η and ℓ go in as arguments; the model is levelled already
    # where the scene says so, and the engine must not level it again ("auto")
    rule = {k: v for k, v in engine_options(spec.rule, sspec, sd.feedback).items()
            if k not in ("batch", "dtype", "device")}
    rule["levelled"] = False
    out = {}
    for k in sc.names:
        done = [0]

        def tick(n, done=done):
            done[0] += n
            if progress is not None:
                progress(n)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            try:
                out[k] = run_schedule(k, net, u, y, learning_rate=sc.learning_rate,
                                      loss=sc.loss, micro=micro(spec, net, k),
                                      rule=rule if k == "diffusion" else None,
                                      eval_inputs=test[0], eval_labels=test[1],
                                      eval_ticks=evals, progress=tick)
            except NumericalError:        # the engine stops at a blow-up: nothing to compare
                out[k] = diverged(timetable(k, net, sc.frames, micro=micro(spec, net, k)),
                                  len(evals))
                tick(int(out[k]["loss"].size) - done[0])
    return out


def diverged(table, evals):
    """The records of a run that blew up: its timetable, every number NaN."""
    T, V = table["forward"].shape
    nan = np.full((T, V), np.nan)
    return {**{a: table[a] for a in FIRST_SEED if a in table}, "cosine": nan,
            "rel_error": nan, "loss": np.full(T, np.nan), "accuracy": np.full(evals, np.nan)}


def take_frames(stream, n, chunk):
    """The stream's first ``n`` frames (u, y), drawn ``chunk`` ticks at a time
    into two arrays (drawing all at once takes about three times their bytes)."""
    u = y = None
    for start in range(0, n, chunk):
        a, b, _ = stream.take(min(chunk, n - start))
        if u is None:
            u, y = np.empty((n,) + a.shape[1:]), np.empty((n,) + b.shape[1:])
        u[start:start + len(a)], y[start:start + len(b)] = a, b
    return u, y


def _finite(values, reduce):
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    return float(reduce(values)) if values.size else float("nan")


def headline(data):
    """{schedule: its numbers}: ticks, steady delay at the sweep depths, largest delay and
    staleness (updates between the read and the update), most weight versions (and bytes)
    held at once, mean cosine and relative error to backprop, mean utilisation, final
    held-out accuracy mean and sd over the seeds (each schedule's own last evaluation)."""
    out, depths = {}, data["sweep_depths"].tolist()
    for k in data["names"].tolist():
        g = {a: data[f"{k}__{a}"] for a in ("forward", "delay", "stale", "cosine", "rel_error",
                                            "versions", "version_bytes", "utilisation",
                                            "accuracy", "sweep_delay")}
        T, within = len(g["forward"]), data["eval_ticks"] < len(g["forward"])
        acc = (g["accuracy"][:, within][:, -1] if within.any()
               else np.full(len(data["seeds"]), np.nan))
        out[k] = {"ticks": T,
                  "delay_at_depth": {str(d): _finite(row, np.max)
                                     for d, row in zip(depths, g["sweep_delay"])},
                  "max_delay": _finite(g["delay"], np.max),
                  "max_stale": _finite(g["stale"], np.max),
                  "versions": int(g["versions"].sum(axis=1).max()) if T else 0,
                  "version_bytes": int(g["version_bytes"].sum(axis=1).max()) if T else 0,
                  "cosine": _finite(g["cosine"], np.mean),
                  "rel_error": _finite(g["rel_error"], np.mean),
                  "utilisation": float(np.mean(g["utilisation"])),
                  "accuracy": _finite(acc, np.mean),
                  "accuracy_sd": _finite(acc, lambda v: v.std(ddof=1) if len(v) > 1 else np.nan)}
    return out


def schedules_budget(spec, model, ticks):
    """The itemised peak bytes of a schedules run, whose ``check()`` raises BudgetError
    over schedules.memory_budget."""
    sc, B = spec.schedules, spec.stream.batch
    fwd, bwd = distances(model)
    n_in, n_out = (int(np.prod(s)) for s in (model.input_shape, model.output_shape))
    params = {v.name: sum(int(np.prod(s)) for s in v.layer.param_shapes.values())
              for v in model.vertices[1:]}
    held = [2 * bwd[v.index] + 2 for v in model.vertices[1:]]     # stash depth, + the current
    size = [int(np.prod(v.shape)) for v in model.vertices[1:]]
    test = spec.schedules.eval_size or 10000
    chunk = stream_chunk(B, n_in, n_out)
    data = (load_dataset(spec.stream.data) if spec.stream.kind in ("dataset", "moving")
            else None)
    items = {"stream frames": 8 * sc.frames * B * (n_in + n_out),
             # the stream draws a chunk with about three times its bytes in temporaries
             "stream chunk": 4 * 8 * min(chunk, sc.frames) * B * (n_in + n_out),
             "data set": 0 if data is None else 2 * sum(
                 a.nbytes for a in (data.train_x, data.test_x, data.train_targets)),
             "held-out set": 8 * test * (n_in + n_out) * (spec.target.kind == "labels"),
             "weight versions": 8 * sum(h * params.get(v.name, 0)
                                        for h, v in zip(held, model.vertices[1:])),
             "stashed activity": 8 * 3 * B * sum(h * s for h, s in zip(held, size)),
             "records": 8 * 10 * len(size) * sum(ticks.values())
                        + 8 * len(sc.seeds) * sum(ticks.values())}
    advice = {"stream frames": "fewer schedules.frames or a smaller stream.batch",
              "stream chunk": "a smaller stream.batch or a narrower input",
              "data set": "stream.data = 'digits' (MNIST is 5,000 28x28 images)",
              "held-out set": "a smaller schedules.eval_size",
              "weight versions": "a shallower or narrower network",
              "stashed activity": "a smaller stream.batch or a shallower network",
              "records": "fewer schedules.frames (locked backprop takes 2D ticks a frame)"}
    return _Budget(items, advice, parse_bytes(sc.memory_budget))


@dataclasses.dataclass
class _Budget:
    items: dict
    advice: dict
    budget: int

    def check(self):
        """The predicted bytes, or BudgetError naming the parts over the budget."""
        total = sum(self.items.values())
        if total <= self.budget:
            return total
        big = sorted(self.items.items(), key=lambda kv: -kv[1])[:2]
        raise BudgetError(f"this run would take {format_bytes(total)}, over the memory budget "
                          f"of {format_bytes(self.budget)} (schedules.memory_budget); shrink "
                          + "; ".join(f"{k} {format_bytes(v)}: {self.advice[k]}"
                                      for k, v in big))


def draw(folder, meta, options):
    """The four figures of render.schedules, from schedules.npz alone."""
    data = read_schedules(folder)
    png, _ = wanted(options, gif=False)
    if not png:
        return {}       # matplotlib is imported only to draw
    from ..render.schedules import write_schedules
    return write_schedules(folder, data, png=png, size=options.get("size"))


def summary(folder, meta):
    """Headline, then one row per schedule of ``headline``'s numbers."""
    data = read_schedules(folder)
    rows, depths = headline(data), data["sweep_depths"].tolist()
    seeds_ = len(data["seeds"])
    lines = [f"{done_in(meta)}: {len(rows)} schedules on D = {int(data['depth'])}, "
             f"{seeds_} seed{'s' * (seeds_ > 1)}"]
    head = (["schedule", "ticks"] + [f"delay@{d}" for d in depths]
            + ["stale", "versions", "cos bp", "util", "accuracy"])
    table = [head]
    for k, n in rows.items():
        acc = (f"{n['accuracy']:.3f} ± {n['accuracy_sd']:.3f}" if np.isfinite(n["accuracy"])
               else "-")
        table.append([k, str(n["ticks"])] + [_num(n["delay_at_depth"][str(d)]) for d in depths]
                     + [_num(n["max_stale"]), str(n["versions"]), _num(n["cosine"], ".4f"),
                        f"{n['utilisation']:.3f}", acc])
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in table]
    return lines


def _num(value, fmt=".0f"):
    return "-" if not np.isfinite(value) else format(value, fmt)


def _progress(scene):
    """Ticks of every schedule on every seed (the progress bar's length)."""
    spec = spec_of(scene)
    model = run_model(seed_spec(spec, spec.schedules.seeds[0]), spec.schedules.seeds[0])
    ticks = sum(int(t["ticks"]) for t in timetables(spec, model).values())
    return ticks * len(spec.schedules.seeds)


KIND = Kind("schedules", prepare, draw,
            options={"seed": lambda s: {"schedules.seeds": [s]}},
            refuse={"ticks": "schedules scenes have no run.ticks; each schedule takes the "
                             "ticks its timetable needs for schedules.frames",
                    "device": "schedules scenes run on the host (numpy), no device",
                    "dtype": "schedules scenes run in float64 (cosines to backprop are "
                             "compared to rounding)"},
            draws=("size",), progress=_progress, summary=summary)
