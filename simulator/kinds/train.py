"""The train kind: online learning on a stream, every rule from the same
weights on the same frames (simulator.training), saved as results.json (the
curves) and drawn as learning.png."""
import os
import time

from ..files import write_json
from ..errors import SimulatorError
from ..training import Setup, train_scene
from .base import Kind, load_json


def prepare(name, scene, options=None):
    """Build the shared pieces (network, test set, a first stream) so a bad
    scene is refused here; the job trains every rule and saves results.json."""
    setup = Setup(scene)

    def job(folder, progress=None):
        t0 = time.perf_counter()
        curves, summary = train_scene(scene, progress, setup)
        elapsed = time.perf_counter() - t0
        write_json(os.path.join(folder, "results.json"),
                   {"name": name, "scene": scene, "curves": curves, "summary": summary,
                    "seconds": elapsed})
        return dict(summary, seconds=elapsed)
    return job


def draw(folder, meta, options):
    """learning.png (test accuracy, test loss, W–F angles per rule against
    tick) from results.json."""
    # matplotlib loads only when a picture is drawn: `tickprop --help` stays quick.
    from ..render.learning import render_learning

    results = load_json(folder, "results.json")
    if not isinstance(results, dict) or not isinstance(results.get("curves"), dict):
        raise SimulatorError(f"{os.path.join(folder, 'results.json')}: damaged (no curves)")
    if not options.get("png", True):
        return {}
    title = f"{meta.get('name', '')}: {meta.get('scene', {}).get('description', '')}"
    return {"learning.png": render_learning(results["curves"],
                                            os.path.join(folder, "learning.png"), title=title)}


def _progress(scene):
    return scene["run"]["ticks"] * len(scene["train"]["rules"])


KIND = Kind("train", prepare, draw,
            options={"ticks": "run.ticks", "seed": "run.seed", "device": "run.device",
                     "dtype": "run.dtype"},
            progress=_progress)
