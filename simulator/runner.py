"""A resolved diffusion scene run: scene -> parts (simulator.build) -> Engine ->
Recorder -> Trace (ARCHITECTURE.md); ``Prepared`` refuses what it can (sizes,
memory budget, device) before any tick. The run's folder is simulator.kinds'."""
import importlib.metadata
import platform
import time

import numpy as np

from .build import Parts
from .errors import SceneError
from .probes import Recorder, RecordPlan, RunBudget, distinct_frames
from .scene import apply_overrides, load, spec_of
from .version import __version__


class Prepared:
    """Everything a run needs, built and checked, nothing simulated yet. The
    memory budget counts pictures when ``pictures`` says so, else when the
    scene draws a PNG (``png``: not switched off) or a GIF (``gif``: drawn)."""

    def __init__(self, name, scene, gif=False, pictures=None, png=True):
        self.name, self.scene = name, scene
        self.spec = spec = spec_of(scene)
        run, rule, rec, render = spec.run, spec.rule, spec.record, spec.render
        # Sized from the skeleton the engine runs: vertices as layers, the largest as width.
        skeleton = spec.network.run_skeleton(spec.levelled)
        sizes = [int(np.prod(v.shape)) for v in skeleton.vertices]
        self.plan = RecordPlan(run.ticks, len(sizes) - 1, max(sizes), spec.stream.batch,
                               np.dtype(run.dtype).itemsize, states=rec.states,
                               every=rec.every, layers=rec.layers, metrics=rec.metrics,
                               chunk=rec.chunk, budget=rec.memory_budget)
        options = dict(target=spec.target.kind,
                       pictures=(bool((png and render.png) or (gif and render.gif))
                                 if pictures is None else bool(pictures)),
                       distinct=distinct_frames(vars(spec.stream), self.plan.chunk),
                       gif=(render.every, render.size) if gif and render.gif else None,
                       supervision_delay=spec.supervision_delay,
                       **{k: getattr(rule, k) for k in ("feedback", "derivative", "pairing",
                                                        "learning_rate", "accumulate")})
        self.budget = RunBudget(self.plan, skeleton, device=run.device, **options)
        self.record_bytes = self.budget.check()
        self.parts = Parts(spec)
        self.network, self.stream = self.parts.network, self.parts.stream
        self.engine_args = self.parts.engine_args

    def simulate(self, progress=None):
        """Run the ticks; return the Trace with timings in its metadata."""
        t0 = time.perf_counter()
        engine = self.parts.engine()
        recorder = Recorder(engine, self.plan, reference=self.spec.rule.reference)
        t1 = time.perf_counter()
        # A blow-up is reported once (NumericalError), not as numpy warnings.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            engine.run(self.stream, self.plan.ticks, recorder, progress)
        t2 = time.perf_counter()
        meta = run_metadata(self.name, self.scene)
        meta.update(timings={"build_s": t1 - t0, "simulate_s": t2 - t1,
                             "ticks_per_s": self.plan.ticks / max(t2 - t1, 1e-12)},
                    record_bytes=self.record_bytes, backend=self.parts.backend,
                    resolved={"supervision_delay": engine.supervision_delay,
                              "levelled": bool(engine.levelled)})
        self.final_model = engine.current_model() if engine.learning_rate else None
        return recorder.trace(meta)


def simulate_scene(name, *overrides):
    """The Trace of a diffusion scene (name or path) with 'section.key=value'
    overrides (no files written)."""
    scene_name, resolved = load(name)
    if overrides:
        resolved = apply_overrides(resolved, list(overrides), name)
    return Prepared(scene_name, resolved).simulate()


def run_metadata(name, scene):
    """What run.json says besides the arrays: scene, versions, machine."""
    versions = {"tickprop": __version__, "python": platform.python_version(),
                "numpy": np.__version__}
    for dist in ("matplotlib", "imageio", "click", "array-api-compat", "cupy-cuda12x",
                 "cupy-cuda13x", "cupy"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    return {"name": name, "scene": scene, "seed": scene.get("run", {}).get("seed"),
            "versions": versions, "machine": platform.platform()}


def clip_windows(windows, trace):
    """Raster windows cut to the ticks a run has (rows every record.every ticks,
    the last standing for the rest); windows left empty are dropped."""
    t = trace["tick"]
    ticks = int(t[-1]) + (int(t[1] - t[0]) if len(t) > 1 else 1) if len(t) else 0
    clipped = [(min(a, ticks), min(b, ticks)) for a, b in windows]
    return [(a, b) for a, b in clipped if a < b]


def check_picture_size(size):
    """Refuse a render.size outside [320..4000, 200..4000] pixels (SceneError)."""
    if len(size) != 2 or not (320 <= size[0] <= 4000 and 200 <= size[1] <= 4000):
        raise SceneError(f"key 'render.size': expected [width, height] with width in "
                         f"320..4000 and height in 200..4000, got {size}")

