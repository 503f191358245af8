"""The schedule zoo's pictures (docs/explanation/schedules.md), drawn from a
schedules run's saved arrays alone (analysis/schedule_data.py checks them):
schedules_raster.png (who works on which frame, every schedule on one tick
window), schedules_staleness.png (delay against S(v) and LayerPipe2's 2·S),
schedules_memory.png (weight versions held) and schedules_accuracy.png.
"""
import os
import textwrap

import numpy as np
from matplotlib import colormaps
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ..analysis import palette
from ..analysis.schedule_data import check_schedules
from ..errors import SimulatorError
from ..model.graph import delay_names
from .axes import finish, integer_ticks, new_figure, no_data, quiet
from .indexed import check_size
from .learning import BAND_ALPHA
from .lint import mark_categorical
from .locking import frame_colour, occupancy_rgb
from .plots import running_mean

DPI = 100
COLOURS = {"backprop": "#000000", "gpipe": "#8c564b", "1f1b": "#1f77b4", "2bw": "#17becf",
           "partime": "#2ca02c", "sideways": "#9467bd", "diffusion": "#d62728"}
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LAW_COLOUR = "#555555"
MARKS = 15                    # about this many markers along an accuracy curve
SPREAD = 5                    # schedules' lengths this far apart: ticks on a log axis
BLOWN_UP = 1e3               # a loss this many times its first value: the run diverged
DODGE = 0.7                   # the width over which schedules sit side by side at one S(v)
WINDOW_LEAST, WINDOW_PERIODS, WINDOW_MOST = 40, 6, 160   # the raster's tick window
CELL_PT = 7                   # frame numbers inside raster cells
STAGE_IN = 1.2                # a raster's stage rows share about this many inches
MAX_HEIGHT_IN = 24            # the raster figure's height at most (many stages, schedules)
LABEL_ROWS = 14               # a raster names at most this many stages
UNITS = ("B", "KiB", "MiB", "GiB")
FILES = ("schedules_raster.png", "schedules_staleness.png", "schedules_memory.png",
         "schedules_accuracy.png")


def colour(name, k=0):
    """The fixed colour of a schedule (tab10 for a name not in COLOURS)."""
    return COLOURS.get(name, colormaps["tab10"](k % 10))


def _style(data, name):
    k = data["names"].index(name)
    return {"color": colour(name, k), "marker": MARKERS[k % len(MARKERS)]}


def stage_order(data):
    """Stage indices bottom first: by level fwd(v), ties in model order."""
    levels = data["levels"]
    return sorted(range(len(levels)), key=lambda v: (int(levels[v]), v))


def groups(data, key):
    """[[names]] of the schedules whose ``key`` arrays are equal (NaN equal to NaN),
    in run order: one curve per group, labelled with every name."""
    out = []
    for name in data["names"]:
        a = data["schedules"][name][key]
        for g in out:
            b = data["schedules"][g[0]][key]
            if a.shape == b.shape and np.array_equal(a, b, equal_nan=True):
                g.append(name)
                break
        else:
            out.append([name])
    return out


# ------------------------------------------------------------------ raster
def raster_window(data):
    """Ticks 0..W−1 every raster shows: WINDOW_PERIODS locked periods 2D (at least
    WINDOW_LEAST, at most WINDOW_MOST ticks), within the longest schedule."""
    longest = max(len(s["forward"]) for s in data["schedules"].values())
    wanted = max(WINDOW_LEAST, WINDOW_PERIODS * 2 * int(data["depth"]))
    return int(max(1, min(longest, wanted, WINDOW_MOST)))


def raster_figure(data):
    """(Figure, {schedule: Axes}, window W): one raster per schedule on ticks 0..W−1."""
    W, order = raster_window(data), stage_order(data)
    V, names = len(order), data["names"]
    stage = min(max(STAGE_IN / V, 0.17), 0.3)     # inches per stage row
    stage = min(stage, max((MAX_HEIGHT_IN - 1.3) / len(names) - 0.62, 0.4) / V)
    fig = new_figure((12, 1.3 + (0.62 + stage * V) * len(names)), DPI)
    axes = fig.subplots(len(names), 1, sharex=True, squeeze=False)[:, 0]
    numbers = 12 * DPI * 0.85 / W >= 14 and stage * DPI >= 24    # room for frame numbers
    ended = False
    for ax, name in zip(axes, names):
        ended |= _raster_panel(ax, data, name, order, W, numbers, stage * DPI)
    axes[-1].set_xlabel(f"tick (the first {W} of every schedule)")
    integer_ticks(axes[-1].xaxis, least=2)
    handles = [Patch(color=frame_colour(0), label="forward (lower half), colour = frame"),
               Patch(color=frame_colour(0, True), label="backward (upper half), lighter"),
               Patch(facecolor=palette.EMPTY, edgecolor="#999999", label="idle"),
               Line2D([], [], color="black", ls="none", marker="|", ms=7,
                      label="the stage's weights update")]
    if ended:
        handles.append(Patch(facecolor="white", edgecolor="#999999", hatch="///",
                             label="schedule done"))
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8,
               frameon=False)
    return fig, dict(zip(names, axes)), W


def _raster_panel(ax, data, name, order, W, numbers, row_px):
    """One schedule's raster; returns whether it ends inside the window."""
    s = data["schedules"][name]
    T, V = len(s["forward"]), len(order)
    image = occupancy_rgb(s["forward"][:W, order].T, s["backward"][:W, order].T)
    mark_categorical(ax.imshow(image, origin="lower", aspect="auto", interpolation="nearest",
                               extent=(-0.5, min(T, W) - 0.5, 0.5, V + 0.5)))
    for r in range(1, V):
        ax.axhline(r + 0.5, color="white", linewidth=0.8)
    t, r = np.nonzero(np.isfinite(s["delay"][:W, order]))
    ax.plot(t + 0.42, r + 1.25, ls="none", marker="|", ms=min(7.0, 0.35 * row_px),
            color="black", mew=1.6 if row_px > 14 else 0.8)
    if T < W:
        ax.axvspan(T - 0.5, W - 0.5, facecolor="white", edgecolor="#999999", hatch="///", lw=0)
    step = max(1, -(-V // LABEL_ROWS))
    ax.set(xlim=(-0.5, W - 0.5), ylim=(0.5, V + 0.5), yticks=range(1, V + 1, step))
    shown = delay_names(data["vertices"], [])
    ax.set_yticklabels([shown[order[i]] for i in range(0, V, step)], fontsize=8)
    ax.tick_params(axis="x", labelsize=8)
    if numbers:
        for t, r in zip(*np.nonzero(s["forward"][:W, order] >= 0)):
            ax.text(t, r + 0.75, str(s["forward"][t, order[r]]), ha="center", va="center",
                    fontsize=CELL_PT, color="white")
    bare = int((~data["weighted"][order]).sum())
    use = float(np.mean(s["utilisation"][order]))
    ax.set_title(f"{name}: stages busy {100 * use:.0f}% of its {T} ticks"
                 + (f" ({bare} stage{'s' * (bare != 1)} without weights)" if bare else ""),
                 loc="left", fontsize=9)
    return T < W


# --------------------------------------------------------------- staleness
def stage_values(values, weighted, stat=np.nanmedian):
    """Per stage (columns) ``stat`` (the median), the least and the largest finite
    value over ticks, NaN for an unweighted stage or one without any."""
    v = np.where(weighted[None, :], values, np.nan)
    return tuple(quiet(f, v, axis=0) for f in (stat, np.nanmin, np.nanmax))


def _by_stage(ax, data, key, ylabel, law=None, stat=np.nanmedian):
    """Each schedule's ``key`` per stage against S(v), side by side: a marker at
    ``stat``, a least–most bar; ``law`` (slope, intercept, label) a dashed line."""
    after = data["stages_after"].astype(float)
    K = len(data["names"])
    for k, name in enumerate(data["names"]):
        mid, lo, hi = stage_values(data["schedules"][name][key], data["weighted"], stat)
        x = after + (0.0 if K == 1 else DODGE * (k / (K - 1) - 0.5))
        ax.errorbar(x, mid, yerr=[mid - lo, hi - mid], ls="none", ms=5, mfc="none", mew=1.3,
                    elinewidth=1.0, capsize=2, **_style(data, name))
    weighted = after[data["weighted"]] if data["weighted"].any() else after
    top = max(float(weighted.max()), 1.0)            # the stages with weights
    if law is not None:
        xs = np.array([0.0, top])
        ax.plot(xs, law[0] * xs + law[1], color=LAW_COLOUR, ls="--", lw=1.2, zorder=0,
                label=law[2])
        ax.legend(fontsize=8, loc="upper left")
    ax.set(xlabel="S(v): stages after v (longest path to the output)", ylabel=ylabel,
           xlim=(-0.6, top + 0.6))
    integer_ticks(ax.xaxis)
    ax.grid(alpha=0.3)


def _schedule_legend(fig, data):
    handles = [Line2D([], [], ls="none", ms=6, mfc="none", mew=1.3, label=name,
                      **_style(data, name)) for name in data["names"]]
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8,
               frameon=False, title="schedules (side by side at each S(v))",
               title_fontsize=8)


def staleness_figure(data):
    """(Figure, axes): delay and stale updates per stage against S(v) with the law
    2·S; below, the depth sweep's delay per layer, one panel per distinct schedule."""
    sweep = groups(data, "sweep_delay")
    Q = len(data["sweep_depths"])
    ncols = max(2, min(4, len(sweep)))
    rows = -(-len(sweep) // ncols) if Q else 0
    fig = new_figure((12, 3.6 * (1 + rows) + 0.9), DPI)
    parts = np.atleast_1d(fig.subfigures(1 + bool(rows), 1, height_ratios=[1.0] + [rows] *
                                         bool(rows)))
    top = parts[0].subplots(1, 2)
    _by_stage(top[0], data, "delay", "delay [ticks]: weights read → update",
              law=(2, 0, "LayerPipe2: delay = 2·S"))
    _by_stage(top[1], data, "stale", "stale: updates of W_v in between")
    top[0].set_title("gradient delay per stage (median of its updates; bar: least–most)",
                     fontsize=9)
    top[1].set_title("staleness per stage (0: the weights it read are current)", fontsize=9)
    _schedule_legend(parts[0], data)
    axes = {"delay": top[0], "stale": top[1]}
    if not Q:
        return fig, axes
    depths, cmap = data["sweep_depths"], colormaps["viridis"]
    grid = parts[1].subplots(rows, ncols, squeeze=False).ravel()
    for ax in grid[len(sweep):]:
        ax.set_visible(False)
    for i, (ax, group) in enumerate(zip(grid, sweep)):
        delay = data["schedules"][group[0]]["sweep_delay"]
        for q, d in enumerate(depths):
            c = cmap(0.85 * q / max(Q - 1, 1))
            layer = np.arange(1, int(d) + 1)
            ax.plot(layer, 2 * (d - layer), color=c, ls=":", lw=1.0)
            ax.plot(layer, delay[q, :int(d)], color=c, marker=".", lw=1.4, label=f"depth {d}")
        ax.set(xlabel="layer l of a chain", ylabel="steady delay [ticks]")
        ax.set_title(textwrap.fill("sweep: " + ", ".join(group), 38), fontsize=9)
        integer_ticks(ax.xaxis)
        ax.grid(alpha=0.3)
        axes["sweep " + ", ".join(group)] = ax
        if i == 0:
            ax.legend(fontsize=8, title="dotted: 2·(depth − l)", title_fontsize=8)
    return fig, axes


# ------------------------------------------------------------------ memory
def memory_figure(data):
    """(Figure, axes): from the sweep, weight versions held in all (vs depth) and per
    layer at the deepest depth; from the run, peak versions per stage and bytes."""
    fig = new_figure((12, 7.6), DPI)
    grid = fig.add_gridspec(2, 2)
    axes = {k: fig.add_subplot(grid[i // 2, i % 2]) for i, k in
            enumerate(("total", "per_layer", "per_stage", "bytes"))}
    depths = data["sweep_depths"]
    if len(depths):
        d = int(depths.max())
        layer = np.arange(1, d + 1)
        for group in groups(data, "sweep_versions"):
            versions = data["schedules"][group[0]]["sweep_versions"]
            st, label = _style(data, group[0]), ", ".join(group)
            axes["total"].plot(depths, np.nansum(versions, axis=1), lw=1.4, mfc="none",
                               label=label, **st)
            axes["per_layer"].plot(layer, versions[int(np.argmax(depths)), :d], lw=1.4,
                                   mfc="none", label=label, **st)
        axes["per_layer"].plot(layer, 2 * (d - layer) + 1, color=LAW_COLOUR, ls="--", lw=1.0,
                               zorder=0, label="2·S + 1: a stash per frame in flight")
        axes["total"].set(xlabel="chain depth", ylabel="weight versions held, all layers")
        axes["per_layer"].set(xlabel=f"layer l of the depth-{d} chain",
                              ylabel="weight versions held")
        for key, corner in (("total", "upper left"), ("per_layer", "upper right")):
            axes[key].legend(fontsize=8, loc=corner)
            integer_ticks(axes[key].xaxis)
    else:
        for key in ("total", "per_layer"):
            no_data(axes[key], "no depth sweep in this run")
            axes[key].set(xticks=[], yticks=[])
    axes["total"].set_title("sweep: memory against depth", fontsize=9)
    axes["per_layer"].set_title("sweep: versions per layer, deepest chain", fontsize=9)
    _by_stage(axes["per_stage"], data, "versions", "weight versions held",
              law=(2, 1, "2·S + 1: a stash per frame in flight"), stat=np.nanmax)
    axes["per_stage"].set_title("this run: most versions held per stage (bar: down to the "
                                "least)", fontsize=9)
    integer_ticks(axes["per_stage"].yaxis)
    _bytes_panel(axes["bytes"], data)
    _schedule_legend(fig, data)
    return fig, axes


def _bytes_panel(ax, data):
    """Per schedule the most bytes of weights held at once (all stages)."""
    names = data["names"]
    peak = np.array([float(data["schedules"][n]["version_bytes"].sum(axis=1).max(initial=0))
                     for n in names])
    y = np.arange(len(names))[::-1]
    power = _power(peak.max())
    ax.barh(y, peak / 1024 ** power, color=[colour(n, k) for k, n in enumerate(names)],
            height=0.6)
    ax.set(yticks=y, xlim=(0, 1.45 * max(peak.max(), 1.0) / 1024 ** power),
           xlabel=f"weights held [{UNITS[power]}]")
    ax.set_yticklabels(names)
    for yy, p in zip(y, peak):
        k = _power(p)
        text = f"{p:.0f} B" if k == 0 else f"{p / 1024 ** k:.1f} {UNITS[k]}"
        ax.text(p / 1024 ** power, yy, " " + text, va="center", ha="left", fontsize=8)
    ax.set_title("this run: most weight bytes held at once", fontsize=9)
    ax.grid(axis="x", alpha=0.3)


def _power(n):
    """k of the unit 1024^k (B, KiB, MiB or GiB) ``n`` bytes are written in."""
    return int(np.clip(np.log2(max(n, 1.0)) // 10, 0, 3))


# ---------------------------------------------------------------- accuracy
def accuracy_figure(data):
    """(Figure, axes): held-out accuracy at the evaluation ticks, mean ± sd over
    seeds, and the training loss (running mean, seed mean) against tick."""
    fig = new_figure((12, 4.6), DPI)
    axes = dict(zip(("accuracy", "loss"), fig.subplots(1, 2)))
    R, ticks = len(data["seeds"]), data["eval_ticks"]
    ends = []
    for name in data["names"]:
        s, st = data["schedules"][name], _style(data, name)
        mean = quiet(np.nanmean, s["accuracy"], axis=0)
        axes["accuracy"].plot(ticks, mean, lw=1.5, ms=4, label=name,
                              markevery=max(1, len(ticks) // MARKS), **st)
        if R > 1:
            sd = quiet(np.nanstd, s["accuracy"], axis=0, ddof=1)
            axes["accuracy"].fill_between(ticks, mean - sd, mean + sd, color=st["color"],
                                          alpha=BAND_ALPHA / 2, lw=0)
        _loss_curve(axes["loss"], s["loss"], name, st["color"])
        ends.append(s["loss"].shape[1])
    axes["accuracy"].set(ylabel="held-out accuracy", ylim=(0, 1))
    if not len(ticks):
        no_data(axes["accuracy"], "no held-out accuracy (targets are not class labels)")
    axes["accuracy"].set_title("held-out accuracy" + (f", mean ± sd over {R} seeds"
                                                      if R > 1 else ""), fontsize=9)
    finite = np.concatenate([line.get_ydata() for line in axes["loss"].lines])
    finite = finite[np.isfinite(finite) & (finite > 0)]
    if finite.size and finite.max() > 10 * finite.min():
        axes["loss"].set_yscale("log")
    elif not finite.size:
        no_data(axes["loss"], "no training loss at the output")
    axes["loss"].set(ylabel="training loss (running mean)", xlim=(0, max(ends + [1])))
    axes["loss"].set_title("training loss at the output" + (", seed mean" if R > 1 else ""),
                           fontsize=9)
    spread = max(ends) >= SPREAD * max(min(ends), 1)     # locked runs far longer: log ticks
    for ax in axes.values():
        if spread:
            ax.set_xscale("symlog", linthresh=10, linscale=0.5)
            ax.set_xlim(left=0)
        ax.set_xlabel("tick" + (" (log scale)" if spread else ""))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, ncol=2, loc="best")
    return fig, axes


def diverged_at(loss):
    """The first tick where a seed's loss is infinite or BLOWN_UP times its first
    finite value (the run diverged), else None."""
    with np.errstate(invalid="ignore"):
        first = np.array([row[np.isfinite(row)][0] if np.isfinite(row).any() else np.inf
                          for row in loss])
        bad = np.isinf(loss) | (np.abs(loss) > BLOWN_UP * np.abs(first)[:, None])
    ticks = np.flatnonzero(bad.any(axis=0))
    return int(ticks[0]) if len(ticks) else None


def _loss_curve(ax, loss, name, colour):
    """The seed mean's running mean over the ticks with a loss, up to a divergence
    (marked × and named in the legend)."""
    stop = diverged_at(loss)
    mean = quiet(np.nanmean, loss[:, :stop], axis=0)
    at = np.flatnonzero(np.isfinite(mean))       # the ticks with a loss at the output
    if not len(at):                              # e.g. the engine stopped at a NaN at once
        ax.plot([], [], color=colour, lw=1.3, label=f"{name} (no finite loss)")
        return
    curve = running_mean(mean[at], max(1, len(at) // 25))
    ax.plot(at, curve, color=colour, lw=1.3,
            label=name if stop is None else f"{name} (diverged, tick {stop})")
    if stop is not None and len(at):
        ax.plot(at[-1:], curve[-1:], "x", color=colour, ms=8, mew=2)


# ------------------------------------------------------------------- write
FIGURES = dict(zip(FILES, (lambda d: raster_figure(d)[0], lambda d: staleness_figure(d)[0],
                           lambda d: memory_figure(d)[0], lambda d: accuracy_figure(d)[0])))
TITLES = dict(zip(FILES, (
    "Who works on which frame: every schedule on the same ticks (stage rows bottom first, "
    "by level)",
    "Gradient delay against the stages after each one: pipelining needs 2·S (LayerPipe2)",
    "Weight versions held: stashing (1F1B) grows with depth, 2BW holds two",
    "Training over the stream: held-out accuracy and loss against tick")))


def write_schedules(folder, data, png=True, size=None):
    """Write the four schedule pictures of a schedules run's arrays ``data`` (the
    loaded schedules.npz) into ``folder``, ``size`` (width, height) pixels each
    (default: 12 in wide). Returns {file name: path}."""
    if not os.path.isdir(folder):
        raise SimulatorError(f"{folder}: not a folder to write pictures into")
    data = check_schedules(data)
    wh = None if size is None else check_size(size)
    written = {}
    for name, build in FIGURES.items() if png else ():
        fig = build(data)
        if wh is not None:
            fig.set_size_inches(wh[0] / DPI, wh[1] / DPI)
        written[name] = finish(fig, os.path.join(folder, name), TITLES[name])
    return written
