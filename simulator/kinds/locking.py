"""The locking kind (docs/explanation/waves.md, locking): backprop's locked schedule beside
the tick engine's pipeline, saved as locking.npz (both occupancy tables) with the numbers in
run.json, and drawn as locking.png and locking.gif."""
import os

from ..analysis.locking import schedules
from ..files import write_npz
from ..runfiles import read_locking
from ..scene import spec_of
from .base import Kind, done_in, saved_section, wanted


def prepare(name, scene, options=None):
    """The job counts both schedules."""
    lk, both = spec_of(scene).locking, ("backprop", "pipelined")

    def job(folder, progress=None):
        result = schedules(lk.depth, lk.frames)
        write_npz(os.path.join(folder, "locking.npz"), {f"{kind}_{part}": result[kind][part]
                  for kind in both for part in ("forward", "backward")})
        return {kind: {k: result[kind][k] for k in ("ticks", "utilisation", "frames_per_tick",
                                                    "latency")} for kind in both}
    return job


def draw(folder, meta, options):
    """locking.png and (if locking.gif) locking.gif from depth and frames alone (closed
    forms); a damaged locking.npz is refused all the same."""
    read_locking(folder)
    lk = saved_section(folder, meta, "locking", "locking")
    png, gif = wanted(options, gif=lk["gif"])
    if not (png or gif):
        return {}       # matplotlib is imported only to draw
    from ..render.locking import write_locking
    return write_locking(folder, lk["depth"], lk["frames"], png=png, gif=gif,
                         every=options.get("every", lk["every"]),
                         size=options.get("size"))


def summary(folder, meta):
    """Headline, then per schedule its ticks, utilisation, frames/tick, latency."""
    lines = [done_in(meta)]
    for kind in ("backprop", "pipelined"):
        n = meta["summary"][kind]
        lines.append(f"  {kind:9}  {n['ticks']} ticks, utilisation {n['utilisation']:.3f}, "
                     f"{n['frames_per_tick']:.3f} frames/tick, latency {n['latency']} ticks")
    return lines


KIND = Kind("locking", prepare, draw,
            refuse={"ticks": "locking scenes have no run.ticks; their length follows from "
                             "locking.depth and locking.frames",
                    "seed": "locking scenes have no seed; they are deterministic",
                    "device": "locking scenes have no device; they count ticks, no arithmetic",
                    "dtype": "locking scenes have no dtype; they count ticks, no arithmetic"},
            draws=("every", "size"), summary=summary)
