"""The diffusion kind: the tick engine on a stream (Betti & Gori), saved as a
Trace (trace.npz) and drawn as waves.png, mismatch.png and waves.gif."""

from ..errors import SimulatorError
from ..probes import Trace
from ..runner import Prepared, check_picture_size, clip_windows
from ..scene import RENDER
from .base import Kind, scene_of


def prepare(name, scene, options=None):
    """Build and check the run (sizes, memory budget -- the GIF's frames
    included when it will be drawn -- device, picture size)."""
    prepared = Prepared(name, scene, gif=(options or {}).get("gif", True) is not False)
    check_picture_size(scene["render"]["size"])

    def job(folder, progress=None):
        trace = prepared.simulate(progress)
        trace.save(folder)
        return {"ticks": prepared.plan.ticks, "record_bytes": trace.meta["record_bytes"],
                "timings": trace.meta["timings"]}
    return job


def draw(folder, meta, options):
    """waves.png, mismatch.png and waves.gif from trace.npz, with the scene's
    [render] choices (defaults if the run.json has none) overridden by
    ``options`` (every, size, color; png/gif False to skip)."""
    # matplotlib loads only when a picture is drawn: `tickprop --help` stays quick.
    from ..render import write_pictures

    trace = Trace.load(folder, meta)      # a damaged trace.npz is one SimulatorError
    try:
        render = dict(scene_of(meta, "render"))
    except SimulatorError:
        render = {k: f.default for k, f in RENDER.items()}
    render.update({k: options[k] for k in ("every", "size", "color") if k in options})
    check_picture_size(render["size"])
    return write_pictures(folder, trace, png=render["png"] and options.get("png", True),
                          gif=render["gif"] and options.get("gif", True), every=render["every"],
                          size=tuple(render["size"]), color=render["color"],
                          windows=clip_windows(render["windows"], trace))


def _progress(scene):
    return scene["run"]["ticks"]


def _headline(meta):
    t, ticks = meta["timings"], meta["summary"]["ticks"]
    return f"{ticks} ticks in {t['simulate_s']:.2f} s ({t['ticks_per_s']:.0f} ticks/s)"


KIND = Kind("diffusion", prepare, draw,
            options={"ticks": "run.ticks", "seed": "run.seed", "device": "run.device",
                     "dtype": "run.dtype"},
            draws=("every", "size", "color"), progress=_progress, headline=_headline)
