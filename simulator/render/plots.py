"""Gradient-mismatch pictures (SPEC §6): how far Eq. 5's g[t,l] is from backprop.

mismatch.png has four panels: per-layer cosine similarity over ticks, per-layer
relative error ‖g − G‖/‖G‖ over ticks (log scale), a layer × tick heatmap of the
cosine, and the steady-state per-layer summary (mean cosine bars, mean relative
error dots) with ls marked. The steady window is the one the sync report uses
(from the tick the network is filled), so the picture and the table agree.
"""
import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..sync import steady_window, synchronized_layers
from . import palette
from .axes import LOG_FLOOR, log_axis, no_data

DPI = 100
# What an all-NaN panel says (too few ticks for the backward wave to arrive, or
# a zero backprop gradient).
NO_DATA = ("no defined value in this run:\nbackprop's gradient is 0, or the\n"
           "backward wave has not reached the layers")
HEATMAP = "RdBu"
MISSING = "#d9d9d9"


def layer_colour(layer, depth):
    """The fixed colour of layer ``layer``'s curve (viridis from layer 1 to L);
    the synchronization layer(s) use the amber of every other picture."""
    if layer in synchronized_layers(depth):
        return palette.LS_COLOUR
    return colormaps["viridis"](0.9 * (layer - 1) / max(depth - 1, 1))


def steady_means(trace):
    """Per-layer (mean cosine, mean relative error) over the steady window; NaN
    where a layer has no defined value there."""
    start, stop = steady_window(trace)
    out = []
    for key in ("mismatch_cos", "mismatch_rel"):
        block = trace[key][start:stop]
        finite = np.isfinite(block)
        count = finite.sum(axis=0)
        total = np.where(finite, block, 0.0).sum(axis=0)
        out.append(np.where(count > 0, total / np.maximum(count, 1), np.nan))
    return out[0], out[1]


def _curves(ax, trace, key, log):
    L = trace.depth
    ticks = trace["tick"]
    for l in range(1, L + 1):
        values = trace[key][:, l - 1]
        if log:
            values = np.maximum(values, LOG_FLOOR)
        sync = l in synchronized_layers(L)
        ax.plot(ticks, values, color=layer_colour(l, L), linewidth=2.0 if sync else 1.0,
                label=f"layer {l}" + (" (ls)" if sync else ""), zorder=3 if sync else 2)
    start, _ = steady_window(trace)
    ax.axvline(start, color="#777777", linestyle=":", linewidth=1.0)
    ax.set_xlabel("tick")
    # Fixed to the run, so a panel with nothing to draw still shows its ticks.
    pad = 0.5 if len(ticks) < 2 else 0.0
    ax.set_xlim(ticks[0] - pad, ticks[-1] + pad)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    if log:
        log_axis(ax, trace[key], NO_DATA)
    elif not np.isfinite(trace[key]).any():
        no_data(ax, NO_DATA)


def _heatmap(ax, fig, trace):
    L = trace.depth
    T = len(trace["tick"])
    cmap = colormaps[HEATMAP].with_extremes(bad=MISSING)
    image = ax.imshow(np.ma.masked_invalid(trace["mismatch_cos"].T), origin="lower",
                      aspect="auto", interpolation="nearest", cmap=cmap,
                      norm=Normalize(-1.0, 1.0), extent=(-0.5, T - 0.5, 0.5, L + 0.5))
    for l in synchronized_layers(L):
        for edge in (l - 0.5, l + 0.5):
            ax.axhline(edge, color=palette.LS_COLOUR, linewidth=1.4)
    ax.set_xlabel("tick")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.set_ylabel("layer")
    ax.set_title("cosine, layer × tick (grey: undefined)", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.05, pad=0.02)


def _summary(ax, trace):
    L = trace.depth
    cos, rel = steady_means(trace)
    layers = np.arange(1, L + 1)
    colours = [layer_colour(l, L) for l in layers]
    ax.bar(layers, np.nan_to_num(cos), color=colours, width=0.7)
    ax.set_ylim(min(-0.05, float(np.nanmin(cos, initial=0.0)) - 0.05), 1.05)
    ax.set_xlabel("layer")
    ax.set_ylabel("mean cosine (bars)")
    shown = list(layers if L <= 20 else layers[::int(np.ceil(L / 10))])
    sync = synchronized_layers(L)
    shown = sorted(set(shown) | set(sync))
    ax.set_xticks(shown)
    word = "ls" if L % 2 else "closest"
    ax.set_xticklabels([f"{l}\n{word}" if l in sync else str(l) for l in shown])
    for label, l in zip(ax.get_xticklabels(), shown):
        if l in sync:
            label.set_color(palette.LS_COLOUR)
            label.set_fontweight("bold")
    twin = ax.twinx()
    twin.plot(layers, np.maximum(rel, LOG_FLOOR), "o", color="#222222", markersize=4)
    log_axis(twin, rel, NO_DATA)
    twin.set_ylabel("mean relative error (dots)")
    start, stop = steady_window(trace)
    span = f"tick {start}" if stop - start == 1 else f"ticks {start}–{stop - 1}"
    ax.set_title(f"steady state, {span}", fontsize=9)


def mismatch_figure(trace):
    """The mismatch.png figure (2 × 2 panels); returns (figure, axes dict)."""
    fig = Figure(figsize=(11, 7.5), dpi=DPI)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2, 2, left=0.07, right=0.93, bottom=0.08, top=0.9,
                            hspace=0.35, wspace=0.3)
    axes = {"cos": fig.add_subplot(grid[0, 0]), "rel": fig.add_subplot(grid[0, 1]),
            "heatmap": fig.add_subplot(grid[1, 0]), "summary": fig.add_subplot(grid[1, 1])}
    _curves(axes["cos"], trace, "mismatch_cos", log=False)
    axes["cos"].set_ylabel("cos(g, ∇ backprop)")
    axes["cos"].set_ylim(-1.05, 1.05)
    axes["cos"].set_title("cosine similarity per layer (dotted: network filled)", fontsize=9)
    _curves(axes["rel"], trace, "mismatch_rel", log=True)
    axes["rel"].set_ylabel("‖g − ∇‖ / ‖∇‖")
    axes["rel"].set_title("relative error per layer", fontsize=9)
    if trace.depth <= 12:
        axes["rel"].legend(fontsize=7, ncol=2, loc="best")
    _heatmap(axes["heatmap"], fig, trace)
    _summary(axes["summary"], trace)
    name = trace.meta.get("name", "") if isinstance(trace.meta, dict) else ""
    fig.suptitle(f"{name}: gradient mismatch of Eq. 5 against backprop".lstrip(": "), fontsize=11)
    return fig, axes


def write_mismatch(path, trace):
    """Write mismatch.png atomically at ``path``."""
    from . import save_png
    fig, _ = mismatch_figure(trace)
    save_png(fig, path)
    return path
