"""The locking kind (SPEC §5): backprop's locked schedule beside the tick
engine's pipeline, saved as locking.npz (both occupancy tables) with the
numbers in run.json, and drawn as locking.png and locking.gif."""
import os

from ..analysis.locking import schedules
from ..files import write_npz
from ..runfiles import read_locking
from ..scene import spec_of
from .base import Kind, saved_section

NUMBERS = ("ticks", "utilisation", "frames_per_tick", "latency")


def prepare(name, scene, options=None):
    """Nothing to refuse beyond the schema; the job counts both schedules."""
    lk = spec_of(scene).locking

    def job(folder, progress=None):
        result = schedules(lk.depth, lk.frames)
        write_npz(os.path.join(folder, "locking.npz"),
                  {f"{kind}_{part}": result[kind][part]
                   for kind in ("backprop", "pipelined") for part in ("forward", "backward")})
        return {kind: {k: result[kind][k] for k in NUMBERS} for kind in ("backprop", "pipelined")}
    return job


def draw(folder, meta, options):
    """locking.png (unless ``options`` say png False) and (if the scene's
    locking.gif and ``options`` allow) locking.gif, one frame every ``every`` ticks (option or locking.every), at
    ``size`` pixels if given. The schedules are closed forms of depth and
    frames (simulator.analysis.locking), so the picture is drawn from those two numbers;
    locking.npz must be present all the same (a damaged folder is refused)."""
    read_locking(folder)
    lk = saved_section(folder, meta, "locking", "locking")
    png, gif = options.get("png", True), lk["gif"] and options.get("gif", True)
    if not (png or gif):
        return {}       # nothing to draw: no plotting library is loaded
    # matplotlib loads only when a picture is drawn: `tickprop --help` stays quick.
    from ..render.locking import write_locking

    return write_locking(folder, lk["depth"], lk["frames"], png=png, gif=gif,
                         every=options.get("every", lk["every"]),
                         size=options.get("size"))


def summary(folder, meta):
    """Headline, then per schedule its ticks, utilisation, frames per tick and
    latency (run.json's numbers)."""
    lines = [f"done in {meta['timings']['run_s']:.2f} s"]
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
