"""Turn a resolved diffusion scene into a run: build, simulate, record, write.

Data flows one way (ARCHITECTURE.md): scene -> Network + Stream + Engine ->
Recorder -> Trace -> files. Everything that can be refused (bad sizes, memory
budget, missing device) is refused in ``prepare`` before any tick runs.
"""
import importlib.metadata
import json
import os
import platform
import shutil
import tempfile
import time

import numpy as np

from .backend import Backend
from .engine import Engine
from .errors import SceneError
from .network import Network
from .probes import Recorder, RecordPlan, RunBudget, Trace, write_json
from .scene import network_sizes
from .streams import DatasetStream, make_stream, make_teacher, teacher_target


def seeds(seed):
    """Independent child seeds for network, teacher, stream and feedback."""
    children = np.random.SeedSequence(seed).spawn(4)
    return [int(c.generate_state(1)[0]) for c in children]


class Prepared:
    """Everything a run needs, built and checked, nothing simulated yet."""

    def __init__(self, name, scene, gif=False):
        self.name, self.scene = name, scene
        net_cfg, rule, run = scene["network"], scene["rule"], scene["run"]
        sizes = network_sizes(net_cfg)
        acts = [net_cfg["hidden"]] * (len(sizes) - 2) + [net_cfg["output"]]
        s_net, s_teacher, s_stream, s_fb = seeds(run["seed"])
        self.engine_args = dict(
            loss=rule["loss"], feedback=rule["feedback"], derivative=rule["derivative"],
            pairing=rule["pairing"], supervision_delay=rule["supervision_delay"],
            learning_rate=rule["learning_rate"], batch=scene["stream"]["batch"],
            accumulate=rule["accumulate"], weight_decay=rule["weight_decay"],
            feedback_seed=s_fb, feedback_scale=rule["feedback_scale"],
            itd_epsilon=rule["itd_epsilon"], device=run["device"], dtype=run["dtype"])
        rec = scene["record"]
        self.plan = RecordPlan(run["ticks"], len(sizes) - 1, max(sizes), scene["stream"]["batch"],
                               np.dtype(run["dtype"]).itemsize, states=rec["states"],
                               every=rec["every"], layers=rec["layers"], metrics=rec["metrics"],
                               chunk=rec["chunk"], budget=rec["memory_budget"])
        # The whole run (weights, buffers, rings, recording, GIF when ``gif``
        # says it will be drawn) is checked before anything is allocated.
        render = scene.get("render") or {}
        self.budget = RunBudget(
            self.plan, sizes, target=scene["target"]["kind"],
            gif=(render["every"], render["size"]) if gif and render.get("gif") else None,
            **{k: rule[k] for k in ("feedback", "derivative", "pairing", "supervision_delay",
                                    "learning_rate", "accumulate")})
        self.record_bytes = self.budget.check()
        self.network = Network.random(sizes, acts, seed=s_net, scale=net_cfg["scale"],
                                      bias_scale=net_cfg["bias_scale"])
        Backend(run["device"], run["dtype"])          # fail early on a missing device
        self.stream = build_stream(scene, sizes, acts, s_teacher, s_stream)

    def simulate(self, progress=None):
        """Run the ticks; return the Trace with timings in its metadata."""
        t0 = time.perf_counter()
        engine = Engine(self.network, **self.engine_args)
        recorder = Recorder(engine, self.plan, reference=self.scene["rule"]["reference"])
        t1 = time.perf_counter()
        # A blow-up is reported once, as NumericalError with tick and layer,
        # not as a stream of numpy warnings before it.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            engine.run(self.stream, self.plan.ticks, recorder, progress)
        t2 = time.perf_counter()
        meta = run_metadata(self.name, self.scene)
        meta["timings"] = {"build_s": t1 - t0, "simulate_s": t2 - t1,
                           "ticks_per_s": self.plan.ticks / max(t2 - t1, 1e-12)}
        meta["record_bytes"] = self.record_bytes
        return recorder.trace(meta)


def simulate_scene(name, *overrides):
    """Load a diffusion scene by name or path, apply 'section.key=value'
    overrides, simulate it and return the Trace (no files written)."""
    from . import scene as scenes
    scene_name, resolved = scenes.load(name)
    if overrides:
        resolved = scenes.apply_overrides(resolved, list(overrides), name)
    return Prepared(scene_name, resolved).simulate()


def build_stream(scene, sizes, acts, s_teacher, s_stream):
    """The scene's input stream with its target rule."""
    st, tg = scene["stream"], scene["target"]
    rng = np.random.default_rng(s_stream)
    if st["kind"] == "dataset":
        from .datasets import load_digits
        if tg["kind"] != "labels":
            raise SceneError("key 'target.kind': a dataset stream takes 'labels'")
        data = load_digits(seed=scene["run"]["seed"])
        return DatasetStream(sizes[0], st["batch"], rng, data.train_x, data.train_targets,
                             hold=st["hold"], crossfade=st["crossfade"])
    if tg["kind"] == "labels":
        raise SceneError("key 'target.kind': 'labels' needs stream.kind = 'dataset'")
    teacher = make_teacher(sizes, acts, s_teacher, tg["scale"])
    target = teacher_target(teacher, scene["rule"]["loss"])
    params = {"amplitude": st["amplitude"]}
    if st["kind"] == "held":
        params.update(hold=st["hold"], crossfade=st["crossfade"])
    elif st["kind"] == "smooth":
        params["tau"] = st["tau"]
    elif st["kind"] == "sine":
        params["period"] = st["period"]
    if st["kind"] == "held" and st["crossfade"] >= st["hold"] and st["crossfade"]:
        raise SceneError(f"key 'stream.crossfade': expected fewer than stream.hold = {st['hold']} "
                         f"ticks, got {st['crossfade']}")
    return make_stream(st["kind"], sizes[0], st["batch"], rng, target, **params)


def run_metadata(name, scene):
    """What run.json says besides the arrays: scene, versions, machine."""
    from . import __version__
    versions = {"tickprop": __version__, "python": platform.python_version(),
                "numpy": np.__version__}
    for dist in ("matplotlib", "imageio", "click", "array-api-compat", "cupy-cuda12x"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    return {"name": name, "scene": scene, "seed": scene.get("run", {}).get("seed"),
            "versions": versions, "machine": platform.platform()}


def write_run(out_dir, trace, extra_writers=()):
    """Write trace.npz, pictures and run.json into out_dir, atomically as a whole."""
    def fill(folder):
        trace.save(folder)
        for writer in extra_writers:
            writer(folder, trace)
        return trace.meta
    return write_outputs(out_dir, fill)


def write_outputs(out_dir, fill):
    """Let ``fill(folder)`` write a run's files and return its run.json content;
    everything goes to a temporary sibling folder that replaces out_dir at the end,
    so a failed or interrupted run never leaves half an output behind."""
    parent = os.path.dirname(os.path.abspath(out_dir)) or "."
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix="." + os.path.basename(out_dir) + ".tmp-")
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700; the finished folder is for sharing
        meta = fill(tmp)
        write_json(os.path.join(tmp, "run.json"), meta)
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def run_other_kind(name, scene, out_dir, progress=None):
    """Run a non-diffusion scene (see simulator.kinds) into out_dir; return run.json."""
    from .kinds import RUNNERS

    def fill(folder):
        t0 = time.perf_counter()
        summary = RUNNERS[scene["kind"]](name, scene, folder, progress)
        meta = run_metadata(name, scene)
        meta["summary"] = summary
        meta["timings"] = {"run_s": time.perf_counter() - t0}
        return meta
    write_outputs(out_dir, fill)
    return json.load(open(os.path.join(out_dir, "run.json")))


def _replace_dir(new, target):
    old = None
    if os.path.exists(target):
        old = tempfile.mkdtemp(dir=os.path.dirname(os.path.abspath(target)), prefix=".old-")
        os.rename(target, os.path.join(old, "x"))
    os.rename(new, target)
    if old:
        shutil.rmtree(old, ignore_errors=True)


def clip_windows(windows, ticks):
    """Raster windows cut to the ticks a run has (a run shortened with --ticks
    still draws what it has); windows left empty are dropped."""
    clipped = [(min(a, ticks), min(b, ticks)) for a, b in windows]
    return [(a, b) for a, b in clipped if a < b]


def picture_writer(render, png=True, gif=True):
    """A write_run writer drawing the scene's pictures (``png``/``gif`` can
    only turn the scene's own choices off, as --no-png/--no-gif do)."""
    size = render["size"]
    if len(size) != 2 or not (320 <= size[0] <= 4000 and 200 <= size[1] <= 4000):
        raise SceneError(f"key 'render.size': expected [width, height] with width in "
                         f"320..4000 and height in 200..4000, got {size}")

    def write(folder, trace):
        from .render import write_pictures
        write_pictures(folder, trace, png=render["png"] and png, gif=render["gif"] and gif,
                       every=render["every"], size=tuple(render["size"]),
                       color=render["color"], windows=clip_windows(render["windows"], len(trace["tick"])))
    return write


__all__ = ["Prepared", "write_run", "Trace", "picture_writer"]
