"""The wave raster (Betti & Gori, Figs. 1–3): ticks across, layers (or a graph's
vertices by level) up; red where x carries a frame, blue where δ ≠ 0, purple both,
ls (or the sync set) in amber, a dark line where g pairs x and δ of one frame.
"""
import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from ..files import save_png
from ..errors import SimulatorError
from ..analysis import palette
from .axes import new_figure
from .lint import mark_categorical
from .rows import picture_rows

DPI = 100
PANEL_HEIGHT_IN = 2.3
TOP_IN, BOTTOM_IN, GAP_IN = 0.35, 1.45, 0.75     # margins: titles, legend + tick labels
WIDTH_IN = 10.0
MAX_DRAWN_TICKS = 2000
MAX_DRAWN_LAYERS = 400
STRIP_IN = 0.4          # width of a graph panel's edge strip
SKIP_COLOUR, EDGE_COLOUR, IDENTITY_COLOUR = "#222222", "#9a9a9a", "#777777"
# Pixels a tick at least in a panel of a whole run (else its first and last
# ticks are shown); a fast stream's one-tick stripes need cells closer to square.
MIN_TICK_PX, MIN_STRIPE_TICK_PX = 5, 8
SYNC_AT, SYNC_WIDTH = 0.25, 1.6    # sync overlay: height in its row (0 = bottom), points
# g is backprop's gradient where its relative error is at most this (as kinds.diffusion's)
EXACT_REL = {"float64": 1e-6, "float32": 1e-3}
EXACT_MARK = dict(marker="D", markersize=5.5, markerfacecolor="white", markeredgecolor="#111111",
                  markeredgewidth=1.0, linestyle="none")


def drawn(start, stop, limit):
    """(k, every k-th index of [start, stop)), k the smallest step giving ≤ ``limit``."""
    k = max(1, -(-(int(stop) - int(start)) // int(limit)))
    return k, np.arange(int(start), int(stop), k)


def colourings(color):
    """The colourings a ``color`` argument asks for: 'magnitude', 'tag' or 'both'."""
    if color == "both":
        return ("magnitude", "tag")
    if color not in ("magnitude", "tag"):
        raise SimulatorError(f"color: expected magnitude, tag or both, got {color!r}")
    return (color,)


def _tag(trace, key, newest=False):
    """``tag_<key>``, or when ``newest`` a graph's newest frame ``tag_<key>_hi``."""
    if newest and f"tag_{key}_hi" in trace:
        return np.asarray(trace[f"tag_{key}_hi"])
    return np.asarray(trace["tag_" + key])


def _oldest(trace, key):
    """Tag ``key``'s frame: a graph's oldest, else the newest a skip brought; −1: none."""
    lo = _tag(trace, key)
    return np.where(lo >= 0, lo, _tag(trace, key, newest=True))


def _cells(trace, ticks=None, layers=None):
    """np.ix_ of the ``ticks`` and ``layers`` index arrays (None: all)."""
    T, n = trace["tag_input"].shape
    return np.ix_(np.arange(T) if ticks is None else np.asarray(ticks),
                  np.arange(n) if layers is None else np.asarray(layers))


def presence(trace):
    """Boolean (T, L+1) masks of the forward (x carries a frame) and backward (δ ≠ 0) waves."""
    fwd = _tag(trace, "input", newest=True) >= 0
    bwd = np.asarray(trace["delta_norm"], dtype=float) > 0       # NaN (layer 0) is False
    bwd[:, 0] = False
    return fwd, bwd


def layer_scales(trace):
    """Per-layer maxima of ‖x‖ and ‖δ‖ over the run (the fixed colour scale)."""
    return (np.nan_to_num(trace["x_norm"]).max(axis=0),
            np.nan_to_num(trace["delta_norm"]).max(axis=0))


def sync_cells(trace, ticks=None, layers=None):
    """Boolean (ticks, layers): where the pair and supervision tags (a graph's oldest
    and newest) name one stream frame; for a new frame every tick, ls only (Eq. 6)."""
    cells = _cells(trace, ticks, layers)
    tags = [_tag(trace, key, newest)[cells] for key in ("pair", "supervision")
            for newest in (False, True)]
    present = np.logical_and.reduce([t >= 0 for t in tags])
    frames = [trace.stream_frames_of(t) for t in tags]
    same = np.logical_and.reduce([f == frames[0] for f in frames[1:]])
    return present & same


def exact_from(trace):
    """{trace column: the first tick from which its g stays backprop's gradient
    (relative error ≤ EXACT_REL of the run's dtype) to the end}; never exact: left out."""
    if "mismatch_rel" not in trace:
        return {}
    dtype = str(trace.meta.get("scene", {}).get("run", {}).get("dtype", "float64"))
    rel = np.asarray(trace["mismatch_rel"], dtype=float)
    good = np.isfinite(rel) & (rel <= EXACT_REL.get(dtype, EXACT_REL["float32"]))
    out = {}
    for col in np.flatnonzero(good[-1]) if len(good) else ():
        bad = np.flatnonzero(~good[:, col])
        out[int(col) + 1] = int(trace["tick"][bad[-1] + 1 if len(bad) else 0])
    return out


def raster_rgb(trace, color="magnitude", ticks=None, layers=None):
    """The raster as RGB floats (layers, ticks, 3) of the index arrays given or all; by tag,
    x shaded by its input frame, δ by its supervision frame, averaged (Fig. 2B)."""
    cells = _cells(trace, ticks, layers)
    fwd, bwd = presence(trace)
    if color == "magnitude":
        xs, ds = layer_scales(trace)
        rgb = palette.mix(
            palette.magnitude_levels(trace["x_norm"][cells], fwd[cells], xs[cells[1][0]]),
            palette.magnitude_levels(trace["delta_norm"][cells], bwd[cells], ds[cells[1][0]]))
    elif color == "tag":
        step = int(np.min(np.diff(cells[0][:, 0]))) if cells[0].shape[0] > 1 else 1
        period = palette.tag_period(trace["stream_frame"], step)
        x_frames = trace.stream_frames_of(_oldest(trace, "input")[cells])
        d_frames = trace.stream_frames_of(np.where(bwd, _oldest(trace, "supervision"), -1)[cells])
        rgb = palette.mix(palette.tag_levels(x_frames, fwd[cells], period),
                          palette.tag_levels(d_frames, bwd[cells], period),
                          strength="mean", lean=palette.TAG_LEAN)
    else:
        raise SimulatorError(f"color: expected magnitude or tag, got {color!r}")
    return np.transpose(rgb, (1, 0, 2))


def _drawn(trace, window, rows):
    """(k, m, ticks, trace columns) of a row window drawn every k-th tick, m-th row."""
    rows = picture_rows(trace) if rows is None else rows
    k, ticks = drawn(window[0], window[1], MAX_DRAWN_TICKS)
    m, drawn_rows = drawn(0, len(rows), MAX_DRAWN_LAYERS)
    return k, m, ticks, rows.order[drawn_rows]


def panel_image(trace, window, color="magnitude", rows=None):
    """(RGB (rows, columns, 3) of a (start, stop) row window as drawn, steps (k, m))."""
    k, m, ticks, columns = _drawn(trace, window, rows)
    return raster_rgb(trace, color, ticks, columns), (k, m)


def step_note(steps):
    """'' or a note such as 'every 10th tick, every 2nd layer drawn'."""
    parts = [f"every {_ordinal(k)} {what}" for k, what in zip(steps, ("tick", "layer")) if k > 1]
    return (", ".join(parts) + " drawn") if parts else ""


def _ordinal(k):
    suffix = "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{k}{suffix}"


def row_ticks(trace):
    """(first, every): row r of the trace holds tick first + r·every (record.every)."""
    t = trace["tick"]
    if len(t) < 2:
        return (int(t[0]) if len(t) else 0), 1
    return int(t[0]), max(int(t[1] - t[0]), 1)


def check_windows(trace, windows):
    """Validated (start, stop) tick ranges as the row ranges that hold them."""
    T = len(trace["tick"])
    first, every = row_ticks(trace)
    last = first + T * every          # one past the ticks the last row stands for
    out = []
    for w in windows:
        try:
            start, stop = (int(v) for v in w)
        except (TypeError, ValueError):
            raise SimulatorError(f"render window {w!r}: expected (start, stop) ticks") from None
        if not 0 <= start < stop <= last:
            raise SimulatorError(f"render window {w!r}: expected 0 <= start < stop <= {last} "
                                 f"(the run has {last} ticks)")
        lo = max(0, -(-(start - first) // every))
        hi = max(lo + 1, min(T, -(-(stop - first) // every)))
        out.append((lo, hi))
    return out


def draw_panel(ax, rgb, window, rows, steps, ticks, title="", strip=True, sync=None, exact=None):
    """Draw ``panel_image``'s ``rgb`` and ``steps`` of row ``window`` on ``ax`` in ticks
    (``row_ticks``): sync rows outlined, a graph's edges (``strip``), a line through the
    ``sync`` cells, a diamond where ``exact`` ({row: tick}) says g becomes backprop's."""
    start, stop = window
    k, m = steps
    first, every = ticks
    x = lambda row: first + (row - 0.5) * every        # noqa: E731 (left edge of a row)
    # the colours are classes (forward, backward, both, empty) the legend names
    mark_categorical(ax.imshow(rgb, origin="lower", aspect="auto", interpolation="nearest",
                               extent=(x(start), x(start + rgb.shape[1] * k), -0.5,
                                       -0.5 + rgb.shape[0] * m)))
    if sync is not None:
        _sync_overlay(ax, sync, x(start), every * k, m)
    if exact:
        lo, hi = x(start), x(stop)
        # on the sync line, where the pairing of one frame becomes backprop's gradient
        shown = [(t, r - 0.5 + SYNC_AT * m) for r, t in exact.items()
                 if lo <= t <= hi and r % m == 0]
        if shown:
            ax.plot(*np.transpose(shown), zorder=4, clip_on=False, **EXACT_MARK)
    for l in rows.sync:
        for edge in (l - 0.5, l + 0.5):
            ax.axhline(edge, color=palette.LS_COLOUR, linewidth=1.6)
    groups = np.split(np.asarray(rows.sync), np.flatnonzero(np.diff(rows.sync) != 1) + 1)
    for group in (g for g in groups if len(g)):          # one label per run of sync rows
        ax.annotate(rows.sync_label, xy=(1.0, float(np.mean(group))),
                    xycoords=("axes fraction", "data"), xytext=(3, 0), textcoords="offset points",
                    va="center", fontsize=8, color=palette.LS_COLOUR, fontweight="bold")
    ax.set(xlim=(x(start), x(stop)), ylim=(-0.5, len(rows) - 0.5), xlabel="tick",
           ylabel=rows.axis_label)
    # whole ticks at round steps (a short run is not labelled 2.5, 7.5, ...)
    ax.xaxis.set_major_locator(MaxNLocator(nbins="auto", integer=True, steps=[1, 2, 5, 10]))
    if rows.graph:
        _graph_rows(ax, rows, m if strip else 0)
    else:
        ax.set_yticks(range(0, len(rows), max(1, int(np.ceil(len(rows) / 12)))))
    if title:
        ax.set_title(title, fontsize=9)


def _sync_overlay(ax, sync, left, width, m):
    """A line through each run of True cells of ``sync``, SYNC_AT up its row."""
    segments = []
    for i, row in enumerate(sync):
        edges = np.flatnonzero(np.diff(np.concatenate(([0], row.astype(np.int8), [0]))))
        y = -0.5 + (i + SYNC_AT) * m
        segments += [((left + a * width, y), (left + b * width, y))
                     for a, b in zip(edges[::2], edges[1::2])]
    if segments:
        ax.add_collection(LineCollection(segments, colors=palette.SYNC_COLOUR,
                                         linewidths=SYNC_WIDTH, capstyle="butt"))


def style_names(labels, positions, sync, grey=(), grey_colour=None):
    """Tick ``labels`` of rows ``positions``: those in ``sync`` amber bold, in ``grey``
    italic in ``grey_colour``."""
    for label, p in zip(labels, positions):
        if p in sync:
            label.set(color=palette.LS_COLOUR, fontweight="bold")
        elif p in grey:
            label.set(color=grey_colour, fontstyle="italic")


def _graph_rows(ax, rows, m=1):
    """Label a graph panel's rows; when every row is drawn (m = 1), edges as arcs left."""
    shown = list(range(0, len(rows), max(m, 1)))
    ax.set_yticks(shown, [rows.labels[r] for r in shown], fontsize=8)
    style_names(ax.get_yticklabels(), shown, rows.sync,
                [r for r in shown if rows.identity[r]], IDENTITY_COLOUR)
    if m != 1 or not rows.edges:
        return
    frac = STRIP_IN / (ax.get_position().width * ax.figure.get_figwidth())
    ax.tick_params(axis="y", pad=STRIP_IN * 72 + 2, length=0)
    strip = ax.inset_axes([-frac, 0.0, frac, 1.0])
    strip.set(xlim=(0.0, 1.0), ylim=ax.get_ylim())
    strip.axis("off")
    longest = max(abs(c - p) for p, c, _ in rows.edges)
    theta = np.linspace(0.0, np.pi, 25)
    end = 0.9
    for p, c, gap in sorted(rows.edges, key=lambda e: -abs(e[1] - e[0])):
        bulge = 0.12 + 0.72 * (abs(c - p) - 1) / max(longest - 1, 1)
        xs = end - bulge * np.sin(theta)
        ys = p + (c - p) * (1 - np.cos(theta)) / 2
        skip = gap > 1
        colour = SKIP_COLOUR if skip else EDGE_COLOUR
        strip.plot(xs[:-2], ys[:-2], color=colour, linewidth=1.5 if skip else 0.9,
                   solid_capstyle="butt")
        strip.annotate("", xy=(xs[-1], ys[-1]), xytext=(xs[-3], ys[-3]),
                       arrowprops=dict(arrowstyle="-|>", color=colour, linewidth=0.8,
                                       mutation_scale=6 if skip else 5, shrinkA=0, shrinkB=0))
    strip.plot(np.full(len(rows), end), np.arange(len(rows)), "o", color="#444444", markersize=2.2)


def _legend_handles(rows, exact=False):
    """The legend's patches and lines (``exact``: with the diamonds of ``exact_from``)."""
    sync_set = ("sync set" if rows.graph else "ls") + ": forward steps = backward steps"
    if rows.graph and not rows.sync:
        sync_set += " (empty here)"
    handles = [
        Patch(color=palette.RED, label="forward wave: x carries a frame"),
        Patch(color=palette.BLUE, label="backward wave: δ ≠ 0 (error of the target)"),
        Patch(color=palette.PURPLE, label="both: red-blue neuron"),
        Patch(facecolor=palette.EMPTY, edgecolor="#999999", label="empty"),
        Patch(facecolor="none", edgecolor=palette.LS_COLOUR, linewidth=1.6, label=sync_set),
        Line2D([], [], color=palette.SYNC_COLOUR, linewidth=SYNC_WIDTH,
               label="g pairs x and δ of one stream frame" + (" (exact only from ◇)" * exact)),
    ]
    if exact:
        handles.append(Line2D([], [], label="g = backprop's gradient from this tick on",
                              **EXACT_MARK))
    if rows.graph and rows.edges:
        handles.append(Line2D([], [], color=EDGE_COLOUR, linewidth=0.9,
                              label="left strip: edge parent → child"))
        if any(gap > 1 for _, _, gap in rows.edges):
            handles.append(Line2D([], [], color=SKIP_COLOUR, linewidth=1.5,
                                  label="skip edge over levels: child mixes frames"))
    return handles


def _shading(color, period):
    """How ``color`` shades the cells; ``period``: the tag stripes' (0: cycling)."""
    if color == "magnitude":
        return "shade ∝ norm / layer max"
    if period:
        return f"dark stripe = every {_ordinal(period)} stream frame (x: its input, δ: its target)"
    return "shades alternate with the stream frame of x and of δ's target"


def _window_title(window, index, count, ticks=(0, 1), total=None):
    """'ticks a–b', '(A) filling: ticks a–b' of two, '(A) start: … of N' of a cut run."""
    first, every = ticks
    span = f"ticks {first + window[0] * every}–{first + (window[1] - 1) * every}"
    if total is not None:
        return f"{('(A) start', '(B) end')[index]}: {span} of {total}"
    return f"{('(A) filling', '(B) stationary')[index]}: {span}" if count == 2 else span


def raster_figure(trace, windows=(), color="both"):
    """(waves.png figure, [(axes, row window, colouring)]): a row per tick window (none: the
    run, or its first and last ticks), a column per colouring."""
    ticks = row_ticks(trace)
    kinds = colourings(color)
    order = picture_rows(trace)
    cols = len(kinds)
    left, right, wspace = 0.07, 0.94, 0.25
    if order.graph:     # room for the vertex names and the edge strip
        left_in = 0.06 * max(len(label) for label in order.labels) + STRIP_IN + 0.45
        left, right = left_in / WIDTH_IN, 0.92   # a graph's 'sync set' label is wider than ls
        panel = (WIDTH_IN * (right - left) - (left_in + 0.5) * (cols - 1)) / cols
        wspace = (left_in + 0.5) / panel
    panel_px = WIDTH_IN * (right - left) / (cols + wspace * (cols - 1)) * DPI
    total = None
    if windows:
        windows = check_windows(trace, windows)
    else:
        T = len(trace["tick"])
        stripes = palette.tag_period(trace["stream_frame"])
        fit = max(1, int(panel_px // (MIN_STRIPE_TICK_PX if stripes else MIN_TICK_PX)))
        windows = [(0, T)] if T <= fit else [(0, fit), (T - fit, T)]
        if T > fit:
            total = ticks[0] + T * ticks[1]
    rows = len(windows)
    panel_in = PANEL_HEIGHT_IN if not order.graph else max(PANEL_HEIGHT_IN, 0.22 * len(order))
    height = TOP_IN + BOTTOM_IN + panel_in * rows + GAP_IN * (rows - 1)
    fig = new_figure((WIDTH_IN, height), DPI, layout=None)
    grid = fig.add_gridspec(rows, cols, left=left, right=right,
                            bottom=BOTTOM_IN / height, top=1 - TOP_IN / height,
                            hspace=GAP_IN / panel_in, wspace=wspace)
    name = trace.meta.get("name", "")
    if order.graph:
        levelled = trace.meta.get("resolved", {}).get(
            "levelled", trace.meta.get("scene", {}).get("network", {}).get("levelled") is True)
        skips = any(gap > 1 for _, _, gap in order.edges)
        name += " (levelled)" if levelled else (" (unlevelled)" if skips else "")
    panels, periods = [], set()
    exact = {order.position(c): t for c, t in exact_from(trace).items()}
    for i, window in enumerate(windows):
        for j, kind in enumerate(kinds):
            ax = fig.add_subplot(grid[i, j])
            rgb, steps = panel_image(trace, window, kind, rows=order)
            if kind == "tag":
                periods.add(palette.tag_period(trace["stream_frame"], steps[0]))
            title = f"{name} — {_window_title(window, i, rows, ticks, total)} — colour by {kind}"
            note = step_note(steps)
            title = title.lstrip(" —") + (f"\n({note})" if note else "")
            sync = sync_cells(trace, *_drawn(trace, window, order)[2:]).T
            draw_panel(ax, rgb, window, order, steps, ticks, title=title, sync=sync, exact=exact)
            panels.append((ax, window, kind))
    period = max(periods) if periods else 0
    notes = "; ".join(f"{k}: {_shading(k, period)}" for k in kinds)
    fig.legend(handles=_legend_handles(order, bool(exact)), loc="lower center", ncol=3, fontsize=8,
               frameon=False, title=notes, title_fontsize=8)
    return fig, panels


def write_raster(path, trace, windows=(), color="both"):
    """Write waves.png atomically at ``path``; returns ``path``."""
    return save_png(raster_figure(trace, windows, color)[0], path)
