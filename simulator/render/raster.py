"""The wave raster (Betti & Gori, Figs. 1–3): time across, layers up.

Each cell (tick t, layer l) is coloured by the palette from two levels: the
forward wave is present where x[t,l] carries a frame (input tag ≥ 0), the
backward wave where δ[t,l] ≠ 0 (layers ≥ 1). With d_y = 0 the target is there
from tick 0, so the error against the still-empty output starts a blue wave
at layer L that descends one layer per tick while the red one climbs; they
meet near ls and every cell behind both is purple (the paper's Fig. 1).
Levels come from magnitudes (‖x‖, ‖δ‖ over the layer's maximum in the run) or
from the frame tags: x by its input frame, δ by its supervision frame (the
frame of the target that made it). Slow streams get shades alternating with
the stream frame (broad bands whose edges cross at ls, Fig. 2B); fast streams
(frames shorter than palette.WIDE_BAND columns) get a dark stripe every p-th
frame on a light ground, so x's diagonals climb and δ's descend as lines
(red-purple and blue-purple where both waves are there) instead of a
checkerboard (Fig. 3). The synchronization layer ls = (L+1)/2 is outlined in
amber (for even L the two closest layers are), and a dark line runs through
every cell whose g pairs x and δ of one stream frame (``sync_cells``): a solid
line along ls for a new frame every tick, every row solid for h ≫ L.

A run too long for MIN_TICK_PX pixels a tick (MIN_STRIPE_TICK_PX for a fast
stream) and drawn without windows shows its first and its last ticks that
fit, said in the panel titles ("(A) start: ticks 0–47 of 200"); render
windows choose others.
A panel draws at most MAX_DRAWN_TICKS columns and MAX_DRAWN_LAYERS rows (more
than its pixels): a longer window or a deeper network shows every k-th tick or
layer, said in the panel title, and only the cells drawn are ever coloured, so
the memory of a picture does not grow with the run.

A graph trace (``rows.picture_rows``) draws one row per vertex ordered by level,
labelled by name and level, outlines the synchronization set (``vertex_sync``)
instead of ls, and draws the graph in a strip left of each panel: an arc per
edge, dark where it skips levels (the child then mixes frames of different
ages); identity vertices inserted by levelling have grey italic labels.
"""
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.collections import LineCollection
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ..files import save_png
from ..errors import SimulatorError
from . import palette
from .lint import mark_categorical
from .rows import chain_rows, picture_rows

COLOURINGS = ("magnitude", "tag")
DPI = 100
PANEL_HEIGHT_IN = 2.3
TOP_IN, BOTTOM_IN, GAP_IN = 0.35, 1.45, 0.75     # margins: titles, legend + tick labels
WIDTH_IN = 10.0
MAX_DRAWN_TICKS = 2000
MAX_DRAWN_LAYERS = 400
STRIP_IN = 0.4          # width of a graph panel's edge strip
SKIP_COLOUR, EDGE_COLOUR, IDENTITY_COLOUR = "#222222", "#9a9a9a", "#777777"
# A panel of a whole run draws each tick at least MIN_TICK_PX wide, and
# MIN_STRIPE_TICK_PX for a fast stream (tag stripes), whose one-tick diagonals
# need cells closer to square to read as lines rather than a brick pattern.
MIN_TICK_PX, MIN_STRIPE_TICK_PX = 5, 8
SYNC_AT, SYNC_WIDTH = 0.25, 1.6    # sync overlay: height in its row (0 = bottom), points
TAG_LEAN = 1.8           # tag colouring: hue of a mixed cell leans toward its stronger wave


def drawn(start, stop, limit):
    """(step k, indices start, start+k, … < stop): every k-th of the cells in
    [start, stop), with k the smallest step that gives at most ``limit``."""
    k = max(1, -(-(int(stop) - int(start)) // int(limit)))
    return k, np.arange(int(start), int(stop), k)


def colourings(color):
    """The colourings a ``color`` argument asks for: 'magnitude', 'tag' or 'both'."""
    if color == "both":
        return COLOURINGS
    if color not in COLOURINGS:
        raise SimulatorError(f"color: expected magnitude, tag or both, got {color!r}")
    return (color,)


def _tag(trace, key, newest=False):
    """The tag array ``tag_<key>`` (a graph's newest frame ``tag_<key>_hi`` when
    ``newest`` and the trace has it)."""
    if newest and f"tag_{key}_hi" in trace:
        return np.asarray(trace[f"tag_{key}_hi"])
    return np.asarray(trace["tag_" + key])


def presence(trace):
    """Boolean (T, L+1) masks: where the forward wave is present (x carries a
    frame: an input tag ≥ 0, on a graph the newest frame of any path) and
    where the backward wave is (δ ≠ 0, layers ≥ 1). The backward wave starts
    at the output on the first supervised tick, before any forward frame has
    arrived there: the error of the target against the still-empty output is
    the blue wave that descends to meet the red one (Betti & Gori, Fig. 1)."""
    fwd = _tag(trace, "input", newest=True) >= 0
    bwd = np.asarray(trace["delta_norm"], dtype=float) > 0       # NaN (layer 0) is False
    bwd[:, 0] = False
    return fwd, bwd


def forward_tags(trace):
    """The frame an x cell is shaded by in tag colouring: its input frame (on a
    graph the oldest, else the newest a skip path brought); −1 where x carries
    no frame."""
    lo = _tag(trace, "input")
    return np.where(lo >= 0, lo, _tag(trace, "input", newest=True))


def backward_tags(trace):
    """The frame a δ cell is shaded by in tag colouring: its supervision frame
    (the target that made the error; Eq. 4's index, the one Eq. 6 synchronizes
    with the input), which exists from the first supervised tick; on a graph
    the oldest supervision frame, else the newest. −1 where δ is zero."""
    sup = _tag(trace, "supervision")
    sup = np.where(sup >= 0, sup, _tag(trace, "supervision", newest=True))
    return np.where(presence(trace)[1], sup, -1)


def layer_scales(trace):
    """Per-layer maxima of ‖x‖ and ‖δ‖ over the run (the fixed colour scale)."""
    x = np.nan_to_num(trace["x_norm"])
    d = np.nan_to_num(trace["delta_norm"])
    return x.max(axis=0), d.max(axis=0)


def stream_frames(trace, tags):
    """Stream-frame indices that integer tick tags name (−1 stays −1): a frame held
    h ticks has one index, so tag colouring shows one band per held frame. A
    trace that keeps a row every k ticks gives the frame of the row at or
    before the tagged tick; a trace cut by ``Trace.select`` maps through the
    ticks of the trace it was cut from (its tags may name earlier ticks)."""
    if hasattr(trace, "stream_frames_of"):
        return trace.stream_frames_of(tags)
    frames = np.asarray(trace["stream_frame"])
    tags = np.asarray(tags)
    first, every = row_ticks(trace)
    rows = np.clip((tags - first) // every, 0, len(frames) - 1)
    return np.where(tags >= 0, frames[rows], -1)


def tag_period(trace, step=1):
    """0 when the stream's frames last at least palette.WIDE_BAND columns of a
    panel drawing every ``step``-th row (tag shades then cycle frame by frame:
    broad bands), else the period p ≥ WIDE_BAND of the stripes that mark every p-th
    frame (a fast stream: thin lines, so the crossing diagonals of x and δ
    stay apart instead of averaging into a checkerboard)."""
    frames = np.asarray(trace["stream_frame"])
    changes = int(np.count_nonzero(np.diff(frames))) if len(frames) > 1 else 0
    columns = len(frames) / (changes + 1) / max(int(step), 1)
    if columns >= palette.WIDE_BAND:
        return 0
    return max(palette.WIDE_BAND, int(np.ceil(palette.STRIPE_SPACING / max(columns, 1e-9))))


def sync_cells(trace, ticks=None, layers=None):
    """Boolean (ticks, layers): the cells where g pairs x and δ of the same
    stream frame: the frame of the x that g pairs with (``tag_pair``) and δ's
    supervision frame (``tag_supervision``) are both there and name one stream
    frame (on a graph the oldest and the newest of each too). With a new frame
    every tick only ls qualifies (Eq. 6, fact C); with frames held h ≫ L
    almost every cell does. Every tick and layer, or the index arrays given."""
    T, n = trace["tag_input"].shape
    cells = np.ix_(np.arange(T) if ticks is None else np.asarray(ticks),
                   np.arange(n) if layers is None else np.asarray(layers))
    tags = [_tag(trace, key, newest)[cells] for key in ("pair", "supervision")
            for newest in (False, True)]
    present = np.logical_and.reduce([t >= 0 for t in tags])
    frames = [stream_frames(trace, t) for t in tags]
    same = np.logical_and.reduce([f == frames[0] for f in frames[1:]])
    return present & same


def wave_levels(trace, color="magnitude", ticks=None, layers=None, period=None):
    """Forward and backward levels in [0, 1] for the palette, shaped (ticks,
    layers): every tick and layer (T, L+1), or only the ``ticks`` and
    ``layers`` index arrays given (scales still come from the whole run).
    Tag colouring shades x by its input frame and δ by its supervision frame,
    cycling (``period`` 0) or striping every p-th frame (``tag_period``,
    computed when None)."""
    T, n = trace["tag_input"].shape
    cells = np.ix_(np.arange(T) if ticks is None else np.asarray(ticks),
                   np.arange(n) if layers is None else np.asarray(layers))
    fwd, bwd = (mask[cells] for mask in presence(trace))
    if color == "magnitude":
        xs, ds = layer_scales(trace)
        return (palette.magnitude_levels(trace["x_norm"][cells], fwd, xs[cells[1][0]]),
                palette.magnitude_levels(trace["delta_norm"][cells], bwd, ds[cells[1][0]]))
    if color == "tag":
        if period is None:
            step = int(np.min(np.diff(cells[0][:, 0]))) if cells[0].shape[0] > 1 else 1
            period = tag_period(trace, step)
        return (palette.tag_levels(stream_frames(trace, forward_tags(trace)[cells]), fwd, period),
                palette.tag_levels(stream_frames(trace, backward_tags(trace)[cells]), bwd,
                                   period))
    raise SimulatorError(f"color: expected magnitude or tag, got {color!r}")


def raster_rgb(trace, color="magnitude", ticks=None, layers=None):
    """The raster as RGB floats shaped (layers, ticks, 3): row l is layer l,
    column t tick t (every tick and layer, or the index arrays given)."""
    f, b = wave_levels(trace, color, ticks, layers)
    # Tag shades of both waves must show where they cross (an X of band edges,
    # the paper's Fig. 2B), so tag colouring averages the two levels.
    # Their hues lean harder toward the stronger wave, so a stripe of x and one
    # of δ stay apart (red-purple, blue-purple) where they cross.
    if color == "tag":
        rgb = palette.mix(f, b, strength="mean", lean=TAG_LEAN)
    else:
        rgb = palette.mix(f, b)
    return np.transpose(rgb, (1, 0, 2))


def panel_image(trace, window, color="magnitude", rows=None):
    """The raster of one (start, stop) window as drawn: RGB (rows, columns, 3)
    of every k-th tick and m-th row of ``rows`` (``picture_rows(trace)`` if
    None: layers in order, or a graph's vertices by level; k = m = 1 unless the
    window or the network exceeds MAX_DRAWN_TICKS / MAX_DRAWN_LAYERS), and (k, m)."""
    rows = picture_rows(trace) if rows is None else rows
    k, ticks = drawn(window[0], window[1], MAX_DRAWN_TICKS)
    m, drawn_rows = drawn(0, len(rows), MAX_DRAWN_LAYERS)
    return raster_rgb(trace, color, ticks, rows.order[drawn_rows]), (k, m)


def panel_sync(trace, window, rows=None):
    """The sync overlay of one (start, stop) window, laid out as ``panel_image``
    draws it: boolean (rows, columns), True where g pairs x and δ of one stream
    frame (``sync_cells``)."""
    rows = picture_rows(trace) if rows is None else rows
    _, ticks = drawn(window[0], window[1], MAX_DRAWN_TICKS)
    _, drawn_rows = drawn(0, len(rows), MAX_DRAWN_LAYERS)
    return sync_cells(trace, ticks, rows.order[drawn_rows]).T


def step_note(steps):
    """'' or a note such as 'every 10th tick, every 2nd layer drawn'."""
    parts = [f"every {_ordinal(k)} {what}" for k, what in zip(steps, ("tick", "layer")) if k > 1]
    return (", ".join(parts) + " drawn") if parts else ""


def _ordinal(k):
    suffix = "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{k}{suffix}"


def row_ticks(trace):
    """(first tick, ticks per row): a trace keeps a row every ``record.every``
    ticks, so row r holds tick ``first + r * every`` (every = 1: row = tick)."""
    t = trace["tick"]
    if len(t) < 2:
        return (int(t[0]) if len(t) else 0), 1
    return int(t[0]), max(int(t[1] - t[0]), 1)


def check_windows(trace, windows):
    """Validated (start, stop) tick ranges turned into the (start, stop) ROW
    ranges that hold them; the whole run when ``windows`` is empty."""
    T = len(trace["tick"])
    if not windows:
        return [(0, T)]
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


def draw_panel(ax, rgb, window, depth, title="", ls_label=True, steps=(1, 1), ticks=(0, 1),
               rows=None, strip=True, sync=None):
    """Draw ``rgb`` (rows, columns, 3), the image of the row ``window`` from
    ``panel_image`` (every k-th row and m-th layer for ``steps`` = (k, m)), on
    ``ax`` with the synchronization layer(s) outlined. The x axis is in ticks:
    with ``ticks`` = (first, every) from ``row_ticks``, row r is tick
    first + r·every, and its cell spans every ticks centred there (every = 1:
    the cell of tick t and layer l starts at (t − 0.5, l − 0.5)). ``rows``
    (``rows.picture_rows``) says what each picture row shows; None: the chain
    of ``depth`` layers; ``strip`` draws a graph's edges left of the panel;
    ``sync`` (boolean, the shape of ``rgb`` without colour, from ``panel_sync``)
    draws a dark line through the lower part of every synchronized cell, so a
    row synchronized tick after tick shows a solid line."""
    rows = chain_rows(depth) if rows is None else rows
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
    for l in rows.sync:
        for edge in (l - 0.5, l + 0.5):
            ax.axhline(edge, color=palette.LS_COLOUR, linewidth=1.6)
    if ls_label:
        for group in _runs(rows.sync):
            ax.annotate(rows.sync_label, xy=(1.0, float(np.mean(group))),
                        xycoords=("axes fraction", "data"), xytext=(3, 0),
                        textcoords="offset points", va="center",
                        fontsize=8, color=palette.LS_COLOUR, fontweight="bold")
    ax.set_xlim(x(start), x(stop))
    ax.set_ylim(-0.5, len(rows) - 0.5)
    ax.set_xlabel("tick")
    ax.set_ylabel(rows.axis_label)
    if rows.graph:
        _graph_rows(ax, rows, m if strip else 0)
    else:
        step = max(1, int(np.ceil(len(rows) / 12)))
        ax.set_yticks(range(0, len(rows), step))
    if title:
        ax.set_title(title, fontsize=9)


def _sync_overlay(ax, sync, left, width, m=1):
    """One horizontal segment per run of synchronized cells of each image row
    of ``sync`` (cells ``width`` ticks wide from ``left``; image row i spans
    layers −0.5 + i·m … −0.5 + (i+1)·m), at SYNC_AT of the row's height."""
    sync = np.asarray(sync, dtype=bool)
    segments = []
    for i, row in enumerate(sync):
        edges = np.flatnonzero(np.diff(np.concatenate(([0], row.astype(np.int8), [0]))))
        y = -0.5 + (i + SYNC_AT) * m
        segments += [((left + a * width, y), (left + b * width, y))
                     for a, b in zip(edges[::2], edges[1::2])]
    if segments:
        ax.add_collection(LineCollection(segments, colors=palette.SYNC_COLOUR,
                                         linewidths=SYNC_WIDTH, capstyle="butt"))


def _runs(rows):
    """Consecutive runs of the sorted row numbers ``rows`` (one label each)."""
    groups = []
    for r in rows:
        if groups and r == groups[-1][-1] + 1:
            groups[-1].append(r)
        else:
            groups.append([r])
    return groups


def _graph_rows(ax, rows, m=1):
    """Label every row of a graph panel by vertex name and level (sync set in
    amber, identity vertices grey italic) and draw the edges as arcs in a strip
    left of the panel (only when every row is drawn, m = 1; m = 0: no strip)."""
    shown = list(range(0, len(rows), max(m, 1)))
    fig = ax.figure
    ax.set_yticks(shown)
    ax.set_yticklabels([rows.labels[r] for r in shown], fontsize=8)
    for label, r in zip(ax.get_yticklabels(), shown):
        if r in rows.sync:
            label.set_color(palette.LS_COLOUR)
            label.set_fontweight("bold")
        elif rows.identity[r]:
            label.set_color(IDENTITY_COLOUR)
            label.set_fontstyle("italic")
    if m != 1 or not rows.edges:
        return
    width_in = ax.get_position().width * fig.get_figwidth()
    frac = STRIP_IN / width_in
    ax.tick_params(axis="y", pad=STRIP_IN * 72 + 2, length=0)
    strip = ax.inset_axes([-frac, 0.0, frac, 1.0])
    strip.set_xlim(0.0, 1.0)
    strip.set_ylim(ax.get_ylim())
    strip.axis("off")
    longest = max(abs(c - p) for p, c, _ in rows.edges)
    theta = np.linspace(0.0, np.pi, 25)
    end = 0.9
    for p, c, gap in sorted(rows.edges, key=lambda e: -abs(e[1] - e[0])):
        span = abs(c - p)
        bulge = 0.12 + 0.72 * (span - 1) / max(longest - 1, 1)
        xs = end - bulge * np.sin(theta)
        ys = p + (c - p) * (1 - np.cos(theta)) / 2
        skip = gap > 1
        colour = SKIP_COLOUR if skip else EDGE_COLOUR
        strip.plot(xs[:-2], ys[:-2], color=colour, linewidth=1.5 if skip else 0.9,
                   solid_capstyle="butt")
        strip.annotate("", xy=(xs[-1], ys[-1]), xytext=(xs[-3], ys[-3]),
                       arrowprops=dict(arrowstyle="-|>", color=colour, linewidth=0.8,
                                       mutation_scale=6 if skip else 5, shrinkA=0, shrinkB=0))
    strip.plot(np.full(len(rows), end), np.arange(len(rows)), "o", color="#444444",
               markersize=2.2)


def legend_handles(color, rows=None, period=0, sync=False):
    """Patches saying what the colours mean (shared with the GIF); a graph's
    ``rows`` get the sync set and the edge strip explained; ``period`` is the
    tag stripes' (``tag_period``; 0: shades cycle); ``sync`` adds the overlay.
    Returns (handles, a note on how ``color`` shades the cells)."""
    if period:
        tag = f"dark stripe = every {_ordinal(period)} stream frame (x: its input, δ: its target)"
    else:
        tag = "shades alternate with the stream frame of x and of δ's target"
    how = {"magnitude": "shade ∝ norm / layer max", "tag": tag}
    if rows is not None and rows.graph:
        sync_set = "sync set: forward steps = backward steps" + ("" if rows.sync else " (empty here)")
    else:
        sync_set = "ls: forward steps = backward steps"
    handles = [
        Patch(color=palette.RED, label="forward wave: x carries a frame"),
        Patch(color=palette.BLUE, label="backward wave: δ ≠ 0 (error of the target)"),
        Patch(color=palette.PURPLE, label="both: red-blue neuron"),
        Patch(facecolor=palette.EMPTY, edgecolor="#999999", label="empty"),
        Patch(facecolor="none", edgecolor=palette.LS_COLOUR, linewidth=1.6, label=sync_set),
    ]
    if sync:
        handles.append(Line2D([], [], color=palette.SYNC_COLOUR, linewidth=SYNC_WIDTH,
                              label="g pairs x and δ of one stream frame"))
    if rows is not None and rows.graph and rows.edges:
        handles.append(Line2D([], [], color=EDGE_COLOUR, linewidth=0.9,
                              label="left strip: edge parent → child"))
        if any(gap > 1 for _, _, gap in rows.edges):
            handles.append(Line2D([], [], color=SKIP_COLOUR, linewidth=1.5,
                                  label="skip edge over levels: child mixes frames"))
    return handles, how.get(color, "")


def _window_title(window, index, count, ticks=(0, 1), total=None):
    """'(A) filling: ticks a–b' for the two windows of a scene, 'ticks a–b'
    for one, '(A) start: ticks a–b of N' when ``total`` (N ticks) says the
    windows were chosen because the whole run does not fit."""
    first, every = ticks
    start, stop = first + window[0] * every, first + (window[1] - 1) * every + 1
    if total is not None:
        return f"{('(A) start', '(B) end')[index]}: ticks {start}–{stop - 1} of {total}"
    if count == 2:
        phase = ("(A) filling", "(B) stationary")[index]
        return f"{phase}: ticks {start}–{stop - 1}"
    return f"ticks {start}–{stop - 1}"


def fitting_windows(rows, panel_px, min_px=MIN_TICK_PX):
    """Row windows of a run of ``rows`` recorded rows drawn in panels
    ``panel_px`` pixels wide: the whole run when each row gets at least
    ``min_px`` pixels, else the first and the last rows that fit (no moiré:
    a fast stream's one-tick stripes stay several pixels wide), and whether
    the run was cut."""
    fit = max(1, int(panel_px // min_px))
    if rows <= fit:
        return [(0, rows)], False
    return [(0, fit), (rows - fit, rows)], True


def raster_figure(trace, windows=(), color="both"):
    """The waves.png figure: one row per window (whole run if none, or its first
    and last ticks when it is too long for MIN_TICK_PX pixels a tick), one
    column per colouring, the sync overlay on every panel. Returns (figure,
    panels) with panels a list of (axes, window, colouring) so callers can map
    ticks and layers to pixels (windows in rows, as ``check_windows`` gives)."""
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
        fast = tag_period(trace) > 0
        windows, cut = fitting_windows(len(trace["tick"]), panel_px,
                                       MIN_STRIPE_TICK_PX if fast else MIN_TICK_PX)
        if cut:
            total = ticks[0] + len(trace["tick"]) * ticks[1]
    rows = len(windows)
    panel_in = PANEL_HEIGHT_IN if not order.graph else max(PANEL_HEIGHT_IN, 0.22 * len(order))
    height = TOP_IN + BOTTOM_IN + panel_in * rows + GAP_IN * (rows - 1)
    fig = Figure(figsize=(WIDTH_IN, height), dpi=DPI)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(rows, cols, left=left, right=right,
                            bottom=BOTTOM_IN / height, top=1 - TOP_IN / height,
                            hspace=GAP_IN / panel_in, wspace=wspace)
    name = trace.meta.get("name", "")
    if order.graph:
        levelled = trace.meta.get("scene", {}).get("network", {}).get("levelled")
        skips = any(gap > 1 for _, _, gap in order.edges)
        name += " (levelled)" if levelled else (" (unlevelled)" if skips else "")
    panels, periods = [], set()
    for i, window in enumerate(windows):
        for j, kind in enumerate(kinds):
            ax = fig.add_subplot(grid[i, j])
            rgb, steps = panel_image(trace, window, kind, rows=order)
            if kind == "tag":
                periods.add(tag_period(trace, steps[0]))
            title = f"{name} — {_window_title(window, i, rows, ticks, total)} — colour by {kind}"
            note = step_note(steps)
            title = title.lstrip(" —") + (f"\n({note})" if note else "")
            draw_panel(ax, rgb, window, trace.depth, title=title, steps=steps, ticks=ticks,
                       rows=order, sync=panel_sync(trace, window, order))
            panels.append((ax, window, kind))
    period = max(periods) if periods else 0
    handles, _ = legend_handles(kinds[0], order, sync=True)
    notes = "; ".join(f"{k}: {legend_handles(k, period=period)[1]}" for k in kinds)
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=8, frameon=False,
               title=notes, title_fontsize=8)
    return fig, panels


def write_raster(path, trace, windows=(), color="both"):
    """Write waves.png atomically at ``path``."""
    fig, _ = raster_figure(trace, windows, color)
    save_png(fig, path)
    return path
