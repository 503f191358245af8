"""A synthetic schedules.npz dict (the contract of issue 24: the keys the schedules
kind saves) built from hand-written timetables, for the pictures' and the
viewer's tests: frame s forward at stage v at tick s + fwd(v) and backward at
s + D + S(v) (pipelined), locked backprop one frame every 2D ticks, GPipe M
micro-batches then a flush. The numbers are plausible, not simulated."""
import numpy as np

NAMES = ("backprop", "gpipe", "1f1b", "2bw", "partime", "sideways", "diffusion")
COSINE = {"backprop": 1.0, "gpipe": 1.0, "1f1b": 1.0, "2bw": 0.99, "partime": 0.9,
          "sideways": 0.7, "diffusion": 0.8}
PARAM_BYTES = 8 * (16 * 16 + 16)


def _timetable(name, levels, after, depth, frames, micro):
    """(forward, backward, update) of ``name``: (T, V) frame tables (−1 idle) and
    the (frame, read tick) of the update landing at (t, v), or None."""
    V = len(levels)
    if name == "backprop":
        period, starts = 2 * depth, [2 * depth * s for s in range(frames)]
        back = [[st + depth + int(after[v]) for v in range(V)] for st in starts]
        fwd = [[st + int(levels[v]) - 1 for v in range(V)] for st in starts]
        T = period * frames
    elif name == "gpipe":
        period = 2 * (micro - 1) + 2 * depth
        fwd, back = [], []
        for s in range(frames):
            b, j = divmod(s, micro)
            fwd.append([b * period + j + int(levels[v]) - 1 for v in range(V)])
            back.append([b * period + micro - 1 + depth + j + int(after[v]) for v in range(V)])
        T = period * -(-frames // micro)
    else:
        fwd = [[s + int(levels[v]) for v in range(V)] for s in range(frames)]
        back = [[s + depth + int(after[v]) for v in range(V)] for s in range(frames)]
        T = frames + 2 * depth
    forward, backward = np.full((2, T, V), -1, dtype=np.int64)
    updates = {}
    for s in range(frames):
        for v in range(V):
            forward[fwd[s][v], v] = s
            backward[back[s][v], v] = s
            if name not in ("gpipe", "2bw") or s % micro == micro - 1:
                first = s - s % micro if name == "gpipe" else s
                updates[(back[s][v], v)] = (s, fwd[first][v])
    return forward, backward, updates


def synthetic_schedules(levels=(1, 2, 3, 4), after=None, frames=16, seeds=2, micro=4,
                        sweep=(2, 4, 8), weighted=None, names=NAMES):
    """The contract's dict for a model whose stages have ``levels`` fwd(v) and
    ``after`` S(v) (a chain's D − fwd by default); ``seeds`` training runs."""
    levels = np.asarray(levels, dtype=np.int64)
    depth = int(levels.max())
    after = depth - levels if after is None else np.asarray(after, dtype=np.int64)
    V = len(levels)
    weighted = np.ones(V, dtype=bool) if weighted is None else np.asarray(weighted, dtype=bool)
    gen = np.random.default_rng(0)
    eval_ticks = np.arange(0, 2 * depth * frames + 1, 2 * depth * frames // 8, dtype=np.int64)
    data = {"names": np.array(names), "vertices": np.array([f"h{v + 1}" for v in range(V - 1)]
                                                            + ["out"]),
            "levels": levels, "stages_after": after, "depth": np.int64(depth),
            "weighted": weighted, "seeds": np.arange(seeds, dtype=np.int64),
            "eval_ticks": eval_ticks, "sweep_depths": np.asarray(sweep, dtype=np.int64)}
    W = max(sweep) if len(sweep) else 0
    for k, name in enumerate(names):
        fwd, bwd, updates = _timetable(name, levels, after, depth, frames, micro)
        T = len(fwd)
        delay, stale, cosine, rel = np.full((4, T, V), np.nan)
        for (t, v), (s, read) in updates.items():
            if not weighted[v]:
                continue
            delay[t, v] = t - read
            stale[t, v] = 0 if name in ("backprop", "gpipe") else (
                min(1, s // micro) if name == "2bw" else min(s, 2 * after[v]))
            cosine[t, v] = COSINE[name]
            rel[t, v] = np.sqrt(max(0.0, 2 - 2 * COSINE[name]))
        stash = np.zeros((T, V), dtype=np.int64)
        for v in range(V):
            for t in range(T):
                done = np.any(fwd[:t + 1, v][:, None] == np.arange(frames), axis=0)
                back = np.any(bwd[:t + 1, v][:, None] == np.arange(frames), axis=0)
                stash[t, v] = np.count_nonzero(done & ~back)
        versions = {"1f1b": 1 + stash, "2bw": np.full((T, V), 2)}.get(
            name, np.ones((T, V), dtype=np.int64)) * weighted
        ticks = np.arange(T)
        rate = 1.0 / (1 + 0.02 * k)
        loss = np.where((bwd[:, -1] >= 0)[None, :], 2.3 * np.exp(-ticks / (40 * depth) * rate)
                        + 0.05 * gen.standard_normal((seeds, T)) ** 2, np.nan)
        acc = 0.1 + 0.8 * (1 - np.exp(-eval_ticks / (60.0 * depth) * rate))
        acc = acc[None, :] + 0.03 * gen.standard_normal((seeds, len(eval_ticks)))
        acc[:, eval_ticks >= T] = np.nan
        depths = np.asarray(sweep)
        layer = np.arange(1, W + 1)[None, :]
        s_after = np.where(layer <= depths[:, None], depths[:, None] - layer, np.nan)
        sdelay = {"backprop": 2 * s_after + 1, "gpipe": 2 * (micro - 1) + 2 * s_after}.get(
            name, 2 * s_after)
        sversions = {"1f1b": 2 * s_after + 1, "2bw": 2 + 0 * s_after}.get(name, 1 + 0 * s_after)
        busy = ((fwd >= 0) | (bwd >= 0)).mean(axis=0)
        for key, value in (("forward", fwd), ("backward", bwd), ("delay", delay),
                           ("stale", stale), ("cosine", cosine), ("rel_error", rel),
                           ("versions", versions),
                           ("version_bytes", versions * PARAM_BYTES),
                           ("utilisation", busy), ("loss", loss), ("accuracy", acc),
                           ("sweep_delay", sdelay), ("sweep_versions", sversions)):
            data[f"{name}__{key}"] = np.asarray(value)
    return data
