"""Backprop's locked schedule against the tick engine's pipelined one (the locking scene): rows
layers 1..L, columns steps from the engine's tick 1, a cell the frame worked on (−1 idle).
Both are the schedule zoo's closed forms on a chain (analysis/timetables.py: ``backprop``,
period 2L, and ``partime``, the engine's clock), read from tick 1: locked, frame s goes
forward through 1..L and back, 2L steps, before the next starts; pipelined (Fact B), it works
at layer l forward at tick s + l − 1, backward s + 2L − l − 1."""
import numpy as np

from ..errors import SimulatorError
from ..model.graph import Model
from .timetables import timetable

MAX_CELLS = 20_000_000


def _schedule(name, L, F, steady_rate, steady_use, latency):
    """The (L, T) tables of timetable ``name`` on an L-layer chain, from step 0 = tick 1."""
    table = timetable(name, Model.chain_skeleton([1] * (L + 1), ["linear"] * L), F)
    fwd, bwd = (np.ascontiguousarray(table[k][1:].T) for k in ("forward", "backward"))
    busy = (fwd >= 0) | (bwd >= 0)
    T = fwd.shape[1]
    return {"forward": fwd, "backward": bwd, "occupancy": np.where(fwd >= 0, fwd, bwd),
            "busy": busy, "ticks": int(T), "utilisation": float(busy.mean()),
            "frames_per_tick": F / T, "steady_utilisation": steady_use,
            "steady_frames_per_tick": steady_rate, "latency": latency}


def schedules(depth, frames):
    """{"depth", "frames", "backprop", "pipelined"}: each schedule's (L, T) ``forward`` /
    ``backward`` frame tables, ``occupancy``, ``busy``, ``ticks`` T, ``utilisation`` and
    ``frames_per_tick`` (fill and drain included), their steady values and ``latency``
    (2L locked, 2L − 1 pipelined: the output layer works both ways in one tick)."""
    for name, value in (("depth", depth), ("frames", frames)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise SimulatorError(f"locking: {name} must be an integer >= 1, got {value!r}")
    L, F = int(depth), int(frames)
    if L * 2 * L * F > MAX_CELLS:
        raise SimulatorError(f"locking: depth {L} x {F} frames needs {2 * L * L * F} cells "
                             f"(over {MAX_CELLS}); draw fewer frames")
    bp = _schedule("backprop", L, F, 1.0 / (2 * L), 1.0 / L, 2 * L)
    pp = _schedule("partime", L, F, 1.0, 1.0, 2 * L - 1)
    return {"depth": L, "frames": F, "backprop": bp, "pipelined": pp}
