"""Gradient-mismatch pictures (SPEC §6): how far Eq. 5's g[t,l] is from backprop.

mismatch.png has four panels: per-layer cosine similarity over ticks, per-layer
relative error ‖g − G‖/‖G‖ over ticks (log scale), a layer × tick heatmap of the
cosine, and the steady-state per-layer summary (mean cosine bars, mean relative
error dots) with ls marked. A deep network draws at most MAX_CURVES layer curves
(evenly spaced, ls always among them), a long run at most MAX_POINTS points per
curve and the heatmap at most the raster's cells (every k-th tick / layer); the
panel titles say so. The steady window is the one the sync report uses
(from the tick the network is filled), so the picture and the table agree.

A graph trace (``rows.picture_rows``) has one curve, heatmap row and bar per
vertex, in level order and named; vertices without weights have no mismatch
(NaN: grey in the heatmap, grey italic names, no curve) and the
synchronization set (``vertex_sync``) takes the amber of ls.
"""
import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..files import save_png
from ..analysis.sync import steady_window
from ..engine.tick import synchronized_layers
from . import palette
from .raster import MAX_DRAWN_LAYERS, MAX_DRAWN_TICKS, drawn, row_ticks, step_note
from .rows import picture_rows
from .axes import fit_suptitle, floored, log_axis, no_data, zero_floor

DPI = 100
# What an all-NaN panel says (too few ticks for the backward wave to arrive, or
# a zero backprop gradient).
NO_DATA = ("no defined value in this run:\nbackprop's gradient is 0, or the\n"
           "backward wave has not reached the layers")
HEATMAP = "RdBu"
MAX_CURVES = 24
ALL_CURVES = 4            # a network this small draws a curve for every layer
SMOOTH_FROM = 60          # a run longer than this many ticks also draws running means
SMOOTH_WINDOWS = 25       # ... over 1/25 of the run
LEGEND_PT = 8
LABEL_PT = 8              # vertex names on the axes
MAX_POINTS = 5000
MISSING = "#d9d9d9"
MISSING_TEXT = "#808080"


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
        with np.errstate(over="ignore"):        # values near 1e308 sum to inf: drawn so
            total = np.where(finite, block, 0.0).sum(axis=0)
        out.append(np.where(count > 0, total / np.maximum(count, 1), np.nan))
    return out[0], out[1]


def curve_layers(depth, limit=MAX_CURVES):
    """The layers 1..L drawn as curves: all of them in a network of at most
    ALL_CURVES layers; else layer 1, the synchronization layer(s) and layer L
    (at most ``limit``); the heatmap shows every layer."""
    if depth <= min(ALL_CURVES, limit):
        return list(range(1, depth + 1))
    return sorted({1, depth} | set(synchronized_layers(depth)))[:limit]


def _graph_colour(p, order):
    """The colour of the vertex on row ``p`` of a graph's Rows ``order``."""
    if p in order.sync:
        return palette.LS_COLOUR
    return colormaps["viridis"](0.9 * (p - 1) / max(len(order) - 2, 1))


def _weighted(trace, order):
    """Rows 1.. of a graph whose vertex has any defined mismatch (has weights)."""
    cos = trace["mismatch_cos"]
    return [p for p in range(1, len(order)) if np.isfinite(cos[:, order.order[p] - 1]).any()]


def _graph_curves(trace, order):
    """Rows of a graph drawn as curves: every vertex with weights when there are
    at most ALL_CURVES, else the first, the sync set and the last of them."""
    weighted = _weighted(trace, order)
    if len(weighted) <= ALL_CURVES:
        return weighted, len(weighted)
    keep = {weighted[0], weighted[-1]} | (set(order.sync) & set(weighted))
    return sorted(keep)[:MAX_CURVES], len(weighted)


def running_mean(values, window, log=False):
    """Centred mean of ``values`` over ``window`` ticks, NaN-aware (a window of
    only NaN is NaN); ``log``: the geometric mean (of positive values)."""
    v = np.asarray(values, dtype=float)
    if window <= 1:
        return v
    v = np.log10(v) if log else v
    finite = np.isfinite(v)
    kernel = np.ones(int(window))
    total = np.convolve(np.where(finite, v, 0.0), kernel, mode="same")
    count = np.convolve(finite.astype(float), kernel, mode="same")
    mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return 10.0 ** mean if log else mean


def smoothing(ticks):
    """Ticks of the running mean drawn over a long run (1: none)."""
    return 1 if ticks <= SMOOTH_FROM else int(np.ceil(ticks / SMOOTH_WINDOWS))


def _curves(ax, trace, key, log):
    """Curves of ``key`` over ticks for a few layers (``curve_layers``: the
    synchronization layer(s), the first and the last; every layer of a small
    network), the heatmap showing all; a long run draws each raw curve thin and
    its running mean thick. Returns a note on what the panel shows."""
    L = trace.depth
    ticks = trace["tick"]
    k, rows = drawn(0, len(ticks), MAX_POINTS)
    order = picture_rows(trace)
    if order.graph:
        layers, total = _graph_curves(trace, order)
        what = "vertices with weights"
    else:
        layers, total, what = curve_layers(L), L, "layers"
    floor = zero_floor(trace[key]) if log else None
    window = smoothing(len(rows))
    for l in layers:
        values = trace[key][rows, order.order[l] - 1]
        if log:
            values = floored(values, floor)
        sync = l in order.sync
        if order.graph:
            colour = _graph_colour(l, order)
            label = str(trace["vertex_names"][order.order[l]]) + (" (sync)" if sync else "")
        else:
            colour = layer_colour(l, L)
            label = f"layer {l}" + (" (ls)" if sync else "")
        z = 3 if sync else 2
        if window > 1:
            ax.plot(ticks[rows], values, color=colour, linewidth=0.6, alpha=0.35, zorder=z)
            values = running_mean(values, window, log=log)
        ax.plot(ticks[rows], values, color=colour, linewidth=2.2 if sync else 1.4,
                marker="o" if len(rows) == 1 else None,     # one tick: a point, not a line
                label=label, zorder=z + 2)
    notes = [f"{len(layers)} of {total} {what}; all in the heatmap"] if len(layers) < total else []
    notes += [f"thick: mean over {window} ticks"] if window > 1 else []
    notes += [step_note((k, 1))] if k > 1 else []
    note = ", ".join(notes)
    start, _ = steady_window(trace)
    if start < len(ticks):
        ax.axvline(ticks[start], color="#777777", linestyle=":", linewidth=1.0)
    ax.set_xlabel("tick")
    # Fixed to the run, so a panel with nothing to draw still shows its ticks.
    pad = 0.5 if len(ticks) < 2 else 0.0
    ax.set_xlim(ticks[0] - pad, ticks[-1] + pad)
    ax.xaxis.set_major_locator(MaxNLocator(nbins="auto", integer=True, min_n_ticks=1))
    if log:
        log_axis(ax, trace[key], NO_DATA, floor=floor)
    elif not np.isfinite(trace[key]).any():
        no_data(ax, NO_DATA)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=LEGEND_PT, loc="lower right" if not log else "upper right",
                  ncol=1 if len(layers) <= 5 else 2, framealpha=0.85)
    return f"\n({note})" if note else ""


def _heatmap(ax, fig, trace):
    order = picture_rows(trace)
    L = len(order) - 1
    T = len(trace["tick"])
    cmap = colormaps[HEATMAP].with_extremes(bad=MISSING)
    k, ticks = drawn(0, T, MAX_DRAWN_TICKS)
    m, layers = drawn(0, L, MAX_DRAWN_LAYERS)               # rows 1..L of the pictures
    first, every = row_ticks(trace)                          # rows are every k-th tick
    columns = order.order[layers + 1] - 1                    # their mismatch columns
    cells = trace["mismatch_cos"][np.ix_(ticks, columns)]
    image = ax.imshow(np.ma.masked_invalid(cells.T), origin="lower",
                      aspect="auto", interpolation="nearest", cmap=cmap, norm=Normalize(-1.0, 1.0),
                      extent=(first - 0.5 * every, first + (len(ticks) * k - 0.5) * every,
                              0.5, 0.5 + len(layers) * m))
    ax.set_xlim(first - 0.5 * every, first + (T - 0.5) * every)
    ax.set_ylim(0.5, L + 0.5)
    ax.yaxis.set_major_locator(MaxNLocator(nbins="auto", integer=True, min_n_ticks=1))
    for l in order.sync:
        for edge in (l - 0.5, l + 0.5):
            ax.axhline(edge, color=palette.LS_COLOUR, linewidth=1.4)
    ax.set_xlabel("tick")
    ax.xaxis.set_major_locator(MaxNLocator(nbins="auto", integer=True, min_n_ticks=1))
    ax.set_ylabel("layer")
    if order.graph:
        shown = list(range(1, L + 1, m))
        ax.set_yticks(shown)
        ax.set_yticklabels([_name(trace, order, p) for p in shown], fontsize=LABEL_PT)
        _style_names(ax.get_yticklabels(), shown, trace, order)
        ax.set_ylabel("vertex")
    note = step_note((k, m))
    unit = "vertex" if order.graph else "layer"
    ax.set_title(f"cosine per {unit} and tick (grey: undefined)" + (f"\n({note})" if note else ""),
                 fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.05, pad=0.02, label="cos(g, ∇ backprop)")


def _name(trace, order, p):
    return str(trace["vertex_names"][order.order[p]])


def _style_names(labels, positions, trace, order):
    """Sync-set names amber bold, names of vertices without weights grey italic."""
    weighted = set(_weighted(trace, order))
    for label, p in zip(labels, positions):
        if p in order.sync:
            label.set_color(palette.LS_COLOUR)
            label.set_fontweight("bold")
        elif p not in weighted:
            label.set_color(MISSING_TEXT)
            label.set_fontstyle("italic")


def _graph_summary(ax, trace, order):
    """The steady-state bars of a graph: one per vertex in level order, named."""
    cos, rel = steady_means(trace)
    n = len(order)
    positions = np.arange(1, n)
    columns = order.order[positions] - 1
    cos, rel = cos[columns], rel[columns]
    ax.bar(positions, np.nan_to_num(cos), color=[_graph_colour(p, order) for p in positions],
           width=0.7)
    ax.set_ylim(min(-0.05, float(np.nanmin(cos, initial=0.0)) - 0.05), 1.05)
    ax.set_xlim(0.4, n - 0.4)
    ax.set_ylabel("mean cosine (bars)")
    ax.set_xticks(positions)
    ax.set_xticklabels([_name(trace, order, p) for p in positions], fontsize=LABEL_PT,
                       rotation=30 if n > 6 else 0, ha="right" if n > 6 else "center")
    _style_names(ax.get_xticklabels(), positions, trace, order)
    return positions, rel


def _summary(ax, trace):
    order = picture_rows(trace)
    if order.graph:
        layers, rel = _graph_summary(ax, trace, order)
        _summary_errors(ax, trace, layers, rel)
        sync = "amber: sync set" if order.sync else "sync set empty"
        ax.set_title(ax.get_title() + f"\n({sync}; grey names: no weights, no mismatch)",
                     fontsize=9)
        return
    L = trace.depth
    cos, rel = steady_means(trace)
    layers = np.arange(1, L + 1)
    colours = [layer_colour(l, L) for l in layers]
    ax.bar(layers, np.nan_to_num(cos), color=colours, width=0.7)
    ax.set_ylim(min(-0.05, float(np.nanmin(cos, initial=0.0)) - 0.05), 1.05)
    ax.set_xlabel("layer")
    ax.set_ylabel("mean cosine (bars)")
    sync = synchronized_layers(L)
    word = "ls" if L % 2 else "closest"
    if L <= 20:
        shown = sorted(set(layers.tolist()) | set(sync))
        names = {l: f"{l}\n{word}" if l in sync else str(l) for l in shown}
    else:
        # Every k-th layer, none close enough to ls to overlap its label, and
        # one label for the pair of closest layers of an even L.
        step = int(np.ceil(L / 10))
        shown = [l for l in layers[::step].tolist() if abs(l - sync[0]) > 1.5 * step]
        shown = sorted(shown + [sync[0]])
        names = {l: str(l) for l in shown}
        names[sync[0]] = f"{','.join(map(str, sync))}\n{word}"
    ax.set_xticks(shown)
    ax.set_xticklabels([names[l] for l in shown])
    for label, l in zip(ax.get_xticklabels(), shown):
        if l in sync:
            label.set_color(palette.LS_COLOUR)
            label.set_fontweight("bold")
    _summary_errors(ax, trace, layers, rel)


def _summary_errors(ax, trace, layers, rel):
    """The relative-error dots on a log twin axis and the steady window title."""
    twin = ax.twinx()
    floor = zero_floor(rel)
    twin.plot(layers, floored(rel, floor), "o", color="#222222", markersize=4)
    log_axis(twin, rel, NO_DATA, floor=floor)
    twin.set_ylabel("mean relative error (dots)")
    start, stop = steady_window(trace)
    span = f"tick {start}" if stop - start == 1 else f"ticks {start}–{stop - 1}"
    ax.set_title(f"steady state, {span}", fontsize=9)


def mismatch_figure(trace):
    """The mismatch.png figure (2 × 2 panels: cosine and relative error over
    ticks for a few layers, the cosine heatmap of every layer, the steady
    state per layer); returns (figure, axes dict: cos, rel, heatmap, summary)."""
    fig = Figure(figsize=(11, 7.5), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    fig.get_layout_engine().set(h_pad=0.08, w_pad=0.08, hspace=0.06, wspace=0.06)
    grid = fig.add_gridspec(2, 2)
    axes = {"cos": fig.add_subplot(grid[0, 0]), "rel": fig.add_subplot(grid[0, 1]),
            "heatmap": fig.add_subplot(grid[1, 0]), "summary": fig.add_subplot(grid[1, 1])}
    note = _curves(axes["cos"], trace, "mismatch_cos", log=False)
    axes["cos"].set_ylabel("cos(g, ∇ backprop)")
    axes["cos"].set_ylim(-1.05, 1.05)
    unit = "vertex" if picture_rows(trace).graph else "layer"
    axes["cos"].set_title(f"cosine similarity per {unit} (dotted: network filled)" + note,
                          fontsize=9)
    note = _curves(axes["rel"], trace, "mismatch_rel", log=True)
    axes["rel"].set_ylabel("‖g − ∇‖ / ‖∇‖")
    axes["rel"].set_title(f"relative error per {unit} (0: exact)" + note, fontsize=9)
    _heatmap(axes["heatmap"], fig, trace)
    _summary(axes["summary"], trace)
    name = trace.meta.get("name", "") if isinstance(trace.meta, dict) else ""
    fit_suptitle(fig, f"{name}: gradient mismatch of Eq. 5 against backprop".lstrip(": "),
                 fontsize=11)
    return fig, axes


def write_mismatch(path, trace):
    """Write mismatch.png atomically at ``path``."""
    fig, _ = mismatch_figure(trace)
    save_png(fig, path)
    return path
