"""The schedule zoo's closed forms (docs/explanation/schedules.md): seven ways to train one
Model on one stream on the engine's clock (one layer-stage per tick: a stage does at most one
forward and one backward op a tick; frame s enters the input at tick s for the pipelined
ones). ``timetable`` gives each schedule's table (who works on which frame, when each update
lands, its delay, staleness and the weight versions held); ``depth_sweep`` the tables' delay
and versions on chains. The locking scene's two schedules are two of these;
experiments/schedules.py runs them in float64."""
from dataclasses import dataclass

import numpy as np

from ..arguments import check_int, check_type, fail
from ..engine.tick import distances
from ..errors import SimulatorError
from ..model.graph import Model

SCHEDULES = ("backprop", "gpipe", "1f1b", "2bw", "partime", "sideways", "diffusion")


@dataclass(frozen=True)
class Policy:
    """How a schedule's backward op at stage v for frame s works and when its update lands.
    ``weights``: "current" W_v, or "stashed" (the version s's forward read; 2bw's two
    buffers are this stash with at most two versions alive); ``pair``: the x and σ' of
    frame s ("frame") or the newest ones v holds ("newest"); ``land``: "once" (at the op),
    "micro" (summed over ``micro`` frames, at the group's last op) or "flush" (every stage
    at the tick the group's last backward op ends)."""
    weights: str
    pair: str
    land: str


POLICY = {
    "backprop": Policy("current", "frame", "flush"),
    "gpipe": Policy("current", "frame", "flush"),
    "1f1b": Policy("stashed", "frame", "once"),
    "2bw": Policy("stashed", "frame", "micro"),
    "partime": Policy("current", "frame", "once"),
    "sideways": Policy("current", "newest", "once"),
    "diffusion": Policy("current", "newest", "once"),   # the engine's defaults; rule decides
}


def check_name(call, name):
    if name not in SCHEDULES:
        fail(call, "name", f"one of {', '.join(SCHEDULES)}", name)
    return name


def graph_clock(model):
    """(fwd, bwd, D, weighted) over the stages model.vertices[1:] (int64 arrays, bool)."""
    fwd, bwd = (np.array(a[1:], dtype=np.int64) for a in distances(model))
    weighted = np.array([bool(v.param_names) for v in model.vertices[1:]])
    return fwd, bwd, int(model.depth), weighted


def min_micro_2bw(model):
    """The least ``micro`` that keeps 2bw at two weight versions per stage: the largest
    delay D + bwd(v) − fwd(v) of a weighted stage (PipeDream-2BW's m ≥ d, on a clock where
    a stage does a forward and a backward op per tick), at least 1."""
    fwd, bwd, D, weighted = graph_clock(model)
    return max(1, int((D + bwd - fwd)[weighted].max(initial=0)))


def _micro(call, name, model, micro):
    """The mini-batch size M of gpipe/2bw (None: ``min_micro_2bw``), checked; 1 for the
    schedules without mini-batches (which refuse a ``micro``)."""
    if name not in ("gpipe", "2bw"):
        if micro is not None:
            raise SimulatorError(f"{call}: micro: only gpipe and 2bw have micro-batches; "
                                 f"pass micro=None for {name!r}, got {micro!r}")
        return 1
    least = min_micro_2bw(model)
    if micro is None:
        return least
    micro = check_int(call, "micro", micro, 1)
    if name == "2bw" and micro < least:
        raise SimulatorError(
            f"{call}: micro: 2bw holds two weight versions only if a version outlives every "
            f"frame that read it: micro >= {least} on this model (depth {model.depth}), got "
            f"{micro}; pass micro=None for the least")
    return micro


def _frame_ticks(name, fwd, bwd, D, F, M):
    """(f, b, group, size): per frame s and stage v the tick of its forward op f[s, v] and
    backward op b[s, v] (F, V); per frame its update group; per group its frame count."""
    s = np.arange(F)[:, None]
    group = np.arange(F) if name not in ("gpipe", "2bw") else np.arange(F) // M
    sizes = np.bincount(group)
    if name == "backprop":          # locked: period 2D, the output's ops on two ticks
        P = 2 * D
        return P * s + fwd, P * s + D + 1 + bwd, group, sizes
    if name == "gpipe":             # M frames forward, then back in reverse order, flush
        k = s - (group * M)[:, None]
        m = sizes[group][:, None]
        start = np.concatenate([[0], np.cumsum(2 * sizes + 2 * D - 3)])[group][:, None]
        return start + k + fwd, start + 2 * (m - 1) - k + D + bwd, group, sizes
    return s + fwd, s + D + bwd, group, sizes


def timetable(name, model, frames, micro=None):
    """Closed-form timetable of schedule ``name`` on ``model`` for ``frames`` frames:
    ``forward``/``backward`` (T, V) the frame stage v works on at tick t (−1 idle);
    ``fwd_tick``/``bwd_tick`` (F, V) the same per frame; ``group`` (F,) each frame's
    update; ``update_tick`` (G, V) when group g's update lands at v (−1: v has no weights);
    ``read`` (F, V) the version of W_v frame s's forward read (updates landed before);
    ``delay``/``stale`` (T, V) at update ticks (NaN elsewhere): ticks from the group's
    oldest forward read to the update, and updates of W_v in between; ``versions`` and
    ``version_bytes`` (T, V); ``utilisation`` (V,); ``micro`` (frames per mini-batch of
    gpipe and 2bw; None: ``min_micro_2bw``); ``levels``, ``stages_after``, ``depth``,
    ``weighted``, ``ticks``. Updates land at the end of their tick (a forward op at t reads
    the updates of ticks < t)."""
    call = "timetable"
    check_name(call, name)
    check_type(call, "model", model, Model, "a simulator.Model")
    F = check_int(call, "frames", frames, 1)
    M = _micro(call, name, model, micro)
    fwd, bwd, D, weighted = graph_clock(model)
    V = len(fwd)
    f, b, group, sizes = _frame_ticks(name, fwd, bwd, D, F, M)
    G = len(sizes)
    last = np.full((G, V), -1, dtype=np.int64)
    np.maximum.at(last, group, b)
    if POLICY[name].land == "flush":
        last[:] = last.max(axis=1, keepdims=True)
    first_read = np.full((G, V), np.iinfo(np.int64).max)
    np.minimum.at(first_read, group, f)
    T = int(max(b.max(), last.max())) + 1
    fwd_t, bwd_t = np.full((2, T, V), -1, dtype=np.int64)
    cols = np.broadcast_to(np.arange(V), f.shape)
    frames_ = np.broadcast_to(np.arange(F)[:, None], f.shape)
    fwd_t[f, cols] = frames_
    bwd_t[b, cols] = frames_
    upd = np.where(weighted, last, -1)
    # version read by s at v: updates of v landed on ticks < f[s, v]
    read = np.stack([np.searchsorted(np.sort(last[:, v]), f[:, v], side="left")
                     for v in range(V)], axis=1) if V else np.zeros((F, 0), np.int64)
    delay, stale = np.full((2, T, V), np.nan)
    g_cols = np.broadcast_to(np.arange(V), last.shape)
    order = np.argsort(np.argsort(last, axis=0, kind="stable"), axis=0, kind="stable")
    g_read = np.full((G, V), np.iinfo(np.int64).max)
    np.minimum.at(g_read, group, read)
    delay[last, g_cols] = last - first_read
    stale[last, g_cols] = order - g_read
    delay[:, ~weighted] = stale[:, ~weighted] = np.nan
    versions = _versions(name, f, b, read, last, T, weighted)
    nbytes = np.array([8 * sum(int(np.prod(s)) for s in v.layer.param_shapes.values())
                       if v.layer else 0 for v in model.vertices[1:]], dtype=np.int64)
    busy = (fwd_t >= 0) | (bwd_t >= 0)
    return {"forward": fwd_t, "backward": bwd_t, "fwd_tick": f, "bwd_tick": b, "group": group,
            "update_tick": upd, "read": read, "delay": delay, "stale": stale,
            "versions": versions, "version_bytes": versions * nbytes,
            "utilisation": busy.mean(axis=0), "micro": M, "levels": fwd, "stages_after": bwd,
            "depth": D, "weighted": weighted, "ticks": T}


def _versions(name, f, b, read, last, T, weighted):
    """(T, V) weight versions of each weighted stage held at the end of tick t: the current
    one and, when the backward uses the stash, every version an in-flight frame (forward
    op done, backward op not) read; 0 for stages without weights."""
    V = f.shape[1]
    out = np.zeros((T, V), dtype=np.int64)
    out[:, weighted] = 1
    if POLICY[name].weights != "stashed":
        return out
    t = np.arange(T)
    for v in np.flatnonzero(weighted):
        current = np.searchsorted(np.sort(last[:, v]), t, side="right")   # updates <= t
        live = (f[None, :, v] <= t[:, None]) & (b[None, :, v] > t[:, None])    # (T, F)
        held = np.where(live, read[None, :, v], -1)
        onehot = np.zeros((T, len(last) + 1), dtype=bool)
        rows = np.broadcast_to(t[:, None], held.shape)
        onehot[rows[live], held[live]] = True
        onehot[t, current] = True
        out[:, v] = onehot.sum(axis=1)
    return out


def depth_sweep(name, depths, width, micro=None):
    """{"delay", "versions"} (Q, max depth): per chain depth and layer 1..depth (NaN past
    it) the steady delay (that of the middle update) and the most weight versions held,
    from ``timetable`` on a dense chain of that depth and ``width``."""
    call = "depth_sweep"
    check_name(call, name)
    depths = [check_int(call, "depths[]", d, 1) for d in depths]
    width = check_int(call, "width", width, 1)
    Q, top = len(depths), max(depths, default=0)
    delay, versions = np.full((2, Q, top), np.nan)
    for q, d in enumerate(depths):
        chain = Model.chain_skeleton([width] * (d + 1), ["tanh"] * d)
        M = _micro(call, name, chain, micro)
        tab = timetable(name, chain, 4 * (2 * d + M), micro if micro is None else M)
        mid = tab["update_tick"][len(tab["update_tick"]) // 2]
        delay[q, :d] = tab["delay"][mid, np.arange(d)]
        versions[q, :d] = tab["versions"].max(axis=0)
    return {"delay": delay, "versions": versions}

