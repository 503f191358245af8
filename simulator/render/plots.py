"""Gradient-mismatch pictures (docs/explanation/waves.md): Eq. 5's g[t,l] against backprop as cosine
and relative error ‖g − G‖/‖G‖ per layer or vertex (grey: no weights) over ticks,
as a heatmap and in the steady state; a big run draws less, and its titles say so.
"""
import numpy as np
from matplotlib import colormaps
from matplotlib.colors import Normalize

from ..files import save_png
from ..analysis.sync import steady_window
from ..analysis import palette
from .raster import MAX_DRAWN_LAYERS, MAX_DRAWN_TICKS, drawn, row_ticks, step_note, style_names
from .rows import picture_rows
from .axes import (fit_suptitle, floored, integer_ticks, log_axis, new_figure, no_data,
                   tick_axis, zero_floor)

DPI = 100
NO_DATA = ("no defined value in this run:\nbackprop's gradient is 0, or the\n"
           "backward wave has not reached the layers")
MAX_CURVES = 24
ALL_CURVES = 4            # a network this small draws a curve for every layer
SMOOTH_FROM = 60          # a run longer than this many ticks also draws running means
SMOOTH_WINDOWS = 25       # ... over 1/25 of the run
LEGEND_PT = 8
LABEL_PT = 8              # vertex names on the axes
MAX_POINTS = 5000
MISSING = "#d9d9d9"
MISSING_TEXT = "#808080"


def _colour(p, rows):
    """The fixed colour of row ``p``: viridis from row 1 on, sync rows amber."""
    if p in rows.sync:
        return palette.LS_COLOUR
    return colormaps["viridis"](0.9 * (p - 1) / max(len(rows) - 2, 1))


def _finite_mean(values, total):
    """Mean of the finite ``values`` by ``total`` (a sum along an axis or a window), else NaN."""
    finite = np.isfinite(values)
    with np.errstate(over="ignore"):        # values near 1e308 sum to inf: drawn so
        sums = total(np.where(finite, values, 0.0))
    count = total(finite.astype(float))
    return np.where(count > 0, sums / np.maximum(count, 1), np.nan)


def _weighted(trace, rows):
    """Rows 1.. whose layer or vertex has weights (any defined mismatch)."""
    if not rows.graph:
        return list(range(1, len(rows)))
    cos = trace["mismatch_cos"]
    return [p for p in range(1, len(rows)) if np.isfinite(cos[:, rows.order[p] - 1]).any()]


def running_mean(values, window, log=False):
    """Centred NaN-aware mean of ``values`` over ``window`` ticks (geometric if ``log``)."""
    v = np.asarray(values, dtype=float)
    kernel = np.ones(int(window))
    mean = _finite_mean(np.log10(v) if log else v, lambda a: np.convolve(a, kernel, mode="same"))
    return 10.0 ** mean if log else mean


def _curves(ax, trace, rows, key, ylabel, title):
    """Curves of ``key`` over ticks for a few rows (the heatmap shows all), log
    for the relative error; a long run draws raw curves thin, running means thick."""
    log = key == "mismatch_rel"
    ticks = trace["tick"]
    k, idx = drawn(0, len(ticks), MAX_POINTS)
    # Every row with weights in a small network, else the first, the sync rows and the last.
    weighted = _weighted(trace, rows)
    shown = weighted if len(weighted) <= ALL_CURVES else sorted(
        {weighted[0], weighted[-1]} | (set(rows.sync) & set(weighted)))[:MAX_CURVES]
    floor = zero_floor(trace[key]) if log else None
    window = 1 if len(idx) <= SMOOTH_FROM else int(np.ceil(len(idx) / SMOOTH_WINDOWS))
    for p in shown:
        values = trace[key][idx, rows.order[p] - 1]
        if log:
            values = floored(values, floor)
        sync = p in rows.sync
        name, mark = (rows.names[p], " (sync)") if rows.graph else (f"layer {p}", " (ls)")
        z = 3 if sync else 2
        if window > 1:
            ax.plot(ticks[idx], values, color=_colour(p, rows), linewidth=0.6, alpha=0.35,
                    zorder=z)
            values = running_mean(values, window, log=log)
        ax.plot(ticks[idx], values, color=_colour(p, rows), linewidth=2.2 if sync else 1.4,
                marker="o" if len(idx) == 1 else None,     # one tick: a point, not a line
                label=name + (mark if sync else ""), zorder=z + 2)
    what = "vertices with weights" if rows.graph else "layers"
    total = len(weighted)
    notes = [f"{len(shown)} of {total} {what}; all in the heatmap"] if len(shown) < total else []
    notes += [f"thick: mean over {window} ticks"] if window > 1 else []
    notes += [step_note((k, 1))] if k > 1 else []
    start, _ = steady_window(trace)
    if start < len(ticks):
        ax.axvline(ticks[start], color="#777777", linestyle=":", linewidth=1.0)
    # Fixed to the run, so a panel with nothing to draw still shows its ticks.
    tick_axis(ax, ticks[0], ticks[-1])
    if log:
        log_axis(ax, trace[key], NO_DATA, floor=floor)
    elif not np.isfinite(trace[key]).any():
        no_data(ax, NO_DATA)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=LEGEND_PT, loc="lower right" if not log else "upper right",
                  ncol=1 if len(shown) <= 5 else 2, framealpha=0.85)
    ax.set_ylabel(ylabel)
    ax.set_title(title + (f"\n({', '.join(notes)})" if notes else ""), fontsize=9)


def _heatmap(ax, fig, trace, rows):
    L = len(rows) - 1
    T = len(trace["tick"])
    k, ticks = drawn(0, T, MAX_DRAWN_TICKS)
    m, layers = drawn(0, L, MAX_DRAWN_LAYERS)               # rows 1..L of the pictures
    first, every = row_ticks(trace)                          # rows are every k-th tick
    cells = trace["mismatch_cos"][np.ix_(ticks, rows.order[layers + 1] - 1)]
    image = ax.imshow(np.ma.masked_invalid(cells.T), origin="lower", aspect="auto",
                      interpolation="nearest", cmap=colormaps["RdBu"].with_extremes(bad=MISSING),
                      norm=Normalize(-1.0, 1.0),
                      extent=(first - 0.5 * every, first + (len(ticks) * k - 0.5) * every,
                              0.5, 0.5 + len(layers) * m))
    ax.set(xlim=(first - 0.5 * every, first + (T - 0.5) * every), ylim=(0.5, L + 0.5),
           xlabel="tick", ylabel="vertex" if rows.graph else "layer")
    integer_ticks(ax.yaxis)
    integer_ticks(ax.xaxis)
    for p in rows.sync:
        for edge in (p - 0.5, p + 0.5):
            ax.axhline(edge, color=palette.LS_COLOUR, linewidth=1.4)
    if rows.graph:
        shown = list(range(1, L + 1, m))
        ax.set_yticks(shown, [rows.names[p] for p in shown], fontsize=LABEL_PT)
        _style_names(ax.get_yticklabels(), shown, rows, trace)
    note = step_note((k, m))
    unit = "vertex" if rows.graph else "layer"
    ax.set_title(f"cosine per {unit} and tick (grey: undefined)" + (f"\n({note})" if note else ""),
                 fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.05, pad=0.02, label="cos(g, ∇ backprop)")


def _style_names(labels, positions, rows, trace):
    """Synchronized rows' labels amber bold, those of rows without weights grey italic."""
    bare = set(range(len(rows))) - set(_weighted(trace, rows))
    style_names(labels, positions, rows.sync, bare, MISSING_TEXT)


def _summary(ax, trace, rows):
    """The steady-state bars (one per layer or vertex) and relative-error dots."""
    n = len(rows)
    positions = np.arange(1, n)
    start, stop = steady_window(trace)
    columns = rows.order[positions] - 1     # the steady means per row, NaN where none is finite
    cos, rel = (_finite_mean(trace[key][start:stop], lambda a: a.sum(axis=0))[columns]
                for key in ("mismatch_cos", "mismatch_rel"))
    ax.bar(positions, np.nan_to_num(cos), color=[_colour(p, rows) for p in positions], width=0.7)
    ax.set(ylim=(min(-0.05, float(np.nanmin(cos, initial=0.0)) - 0.05), 1.05),
           ylabel="mean cosine (bars)")
    if rows.graph:
        ax.set(xlim=(0.4, n - 0.4), xticks=positions)
        ax.set_xticklabels([rows.names[p] for p in positions], fontsize=LABEL_PT,
                           rotation=30 if n > 6 else 0, ha="right" if n > 6 else "center")
    else:
        L, sync = n - 1, rows.sync
        ax.set_xlabel("layer")
        word = "ls" if L % 2 else "closest"
        if L <= 20:
            shown = sorted(set(positions.tolist()) | set(sync))
            names = {l: f"{l}\n{word}" if l in sync else str(l) for l in shown}
        else:
            # Every k-th layer, none close enough to ls to overlap its label, and
            # one label for the pair of closest layers of an even L.
            step = int(np.ceil(L / 10))
            shown = [l for l in positions[::step].tolist() if abs(l - sync[0]) > 1.5 * step]
            shown = sorted(shown + [sync[0]])
            names = {l: str(l) for l in shown}
            names[sync[0]] = f"{','.join(map(str, sync))}\n{word}"
        positions = shown
        ax.set_xticks(shown, [names[l] for l in shown])
    _style_names(ax.get_xticklabels(), positions, rows, trace)
    twin = ax.twinx()
    floor = zero_floor(rel)
    twin.plot(np.arange(1, n), floored(rel, floor), "o", color="#222222", markersize=4)
    log_axis(twin, rel, NO_DATA, floor=floor)
    twin.set_ylabel("mean relative error (dots)")
    span = f"tick {start}" if stop - start == 1 else f"ticks {start}–{stop - 1}"
    title = f"steady state, {span}"
    if rows.graph:
        sync = "amber: sync set" if rows.sync else "sync set empty"
        title += f"\n({sync}; grey names: no weights, no mismatch)"
    ax.set_title(title, fontsize=9)


def mismatch_figure(trace):
    """The mismatch.png figure; returns (figure, {"cos", "rel", "heatmap", "summary": axes})."""
    rows = picture_rows(trace)
    fig = new_figure((11, 7.5), DPI)
    fig.get_layout_engine().set(h_pad=0.08, w_pad=0.08, hspace=0.06, wspace=0.06)
    axes = dict(zip(("cos", "rel", "heatmap", "summary"), fig.subplots(2, 2).ravel()))
    unit = "vertex" if rows.graph else "layer"
    _curves(axes["cos"], trace, rows, "mismatch_cos", "cos(g, ∇ backprop)",
            f"cosine similarity per {unit} (dotted: network filled)")
    axes["cos"].set_ylim(-1.05, 1.05)
    _curves(axes["rel"], trace, rows, "mismatch_rel", "‖g − ∇‖ / ‖∇‖",
            f"relative error per {unit} (0: exact)")
    _heatmap(axes["heatmap"], fig, trace, rows)
    _summary(axes["summary"], trace, rows)
    name = trace.meta.get("name", "") if isinstance(trace.meta, dict) else ""
    fit_suptitle(fig, f"{name}: gradient mismatch of Eq. 5 against backprop".lstrip(": "),
                 fontsize=11)
    return fig, axes


def write_mismatch(path, trace):
    """Write mismatch.png atomically at ``path``; returns ``path``."""
    return save_png(mismatch_figure(trace)[0], path)
