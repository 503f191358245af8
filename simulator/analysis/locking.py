"""Backprop's locked schedule against the tick engine's pipelined one (SPEC §5).

Rows are the computing layers 1..L, columns steps (ticks), and a cell holds the
frame whose work that layer does at that step (−1: idle). Backprop is forward-
and backward-locked: frame s runs forward through layers 1..L, then backward
from L down to 1, one layer per step, 2L steps, while every other layer waits;
the next frame starts only then. The tick engine (SPEC §1, pipelined as in
Fact B) keeps every layer busy every tick: frame s does its forward work at
layer l at tick s + l − 1 and its backward work at tick s + 2L − l − 1 (the
output layer does both in one tick), so a new frame enters every tick.
Ticks here start at the first computing step (the engine's tick 1, since tick
0 only presents frame 0 to layer 0).
"""
import numpy as np

from ..errors import SimulatorError

MAX_CELLS = 20_000_000


def _check(depth, frames):
    for name, value in (("depth", depth), ("frames", frames)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise SimulatorError(f"locking: {name} must be an integer >= 1, got {value!r}")
    depth, frames = int(depth), int(frames)
    if depth * 2 * depth * frames > MAX_CELLS:
        raise SimulatorError(f"locking: depth {depth} x {frames} frames needs "
                             f"{2 * depth * depth * frames} cells (over {MAX_CELLS}); "
                             "draw fewer frames")
    return depth, frames


def locked_schedule(depth, frames):
    """(forward, backward) occupancy of backprop, each (L, 2L·frames) int64."""
    L, F = depth, frames
    T = 2 * L * F
    fwd = np.full((L, T), -1, dtype=np.int64)
    bwd = np.full((L, T), -1, dtype=np.int64)
    layers = np.arange(L)
    for s in range(F):
        base = 2 * L * s
        fwd[layers, base + layers] = s                    # layer l at step l − 1
        bwd[layers, base + 2 * L - 1 - layers] = s        # layer L first, layer 1 last
    return fwd, bwd


def pipelined_schedule(depth, frames):
    """(forward, backward) occupancy of the tick engine, each (L, frames + 2L − 2)."""
    L, F = depth, frames
    T = F + 2 * L - 2
    fwd = np.full((L, T), -1, dtype=np.int64)
    bwd = np.full((L, T), -1, dtype=np.int64)
    s = np.arange(F)
    for l in range(1, L + 1):
        fwd[l - 1, s + l - 1] = s
        bwd[l - 1, s + 2 * L - l - 1] = s
    return fwd, bwd


def _summary(fwd, bwd, frames, steady_rate, steady_use, latency):
    busy = (fwd >= 0) | (bwd >= 0)
    L, T = busy.shape
    occupancy = np.where(fwd >= 0, fwd, bwd)
    return {
        "forward": fwd, "backward": bwd, "occupancy": occupancy, "busy": busy,
        "ticks": int(T),
        "utilisation": float(busy.mean()),
        "frames_per_tick": frames / T,
        "steady_utilisation": steady_use,
        "steady_frames_per_tick": steady_rate,
        "latency": latency,
    }


def schedules(depth, frames):
    """Both schedules for ``frames`` frames through ``depth`` layers (SPEC §5).

    Returns {"depth", "frames", "backprop": {...}, "pipelined": {...}} where each
    schedule has ``forward`` / ``backward`` (L, T) arrays of the frame whose
    forward / backward work a layer does at a tick (−1 idle), ``occupancy`` (the
    forward frame, else the backward one, else −1), ``busy``, ``ticks`` T,
    ``utilisation`` (share of layer-ticks doing any work), ``frames_per_tick``
    (frames / T, fill and drain included), their steady-state values (backprop
    1/L and 1/(2L); pipelined 1 and 1) and ``latency`` (ticks from a frame's first
    work to its last: 2L locked, 2L − 1 pipelined since the output layer does
    forward and backward work in one tick).
    """
    L, F = _check(depth, frames)
    bp = _summary(*locked_schedule(L, F), F, 1.0 / (2 * L), 1.0 / L, 2 * L)
    pp = _summary(*pipelined_schedule(L, F), F, 1.0, 1.0, 2 * L - 1)
    return {"depth": L, "frames": F, "backprop": bp, "pipelined": pp}
