"""The locking picture (the locking scene): backprop's locked schedule beside the tick
engine's pipelined one, layer × tick, each panel as wide as its schedule is
long. A layer's row shows forward work in its lower half, backward work
(lighter) in its upper half, coloured by frame; the GIF sweeps a tick cursor.
"""
import os

import numpy as np
from matplotlib import colormaps
from matplotlib.patches import Patch

from ..errors import SimulatorError
from ..analysis.locking import schedules
from . import gifstream, save_png
from ..analysis import palette
from .axes import integer_ticks, new_figure
from .indexed import IndexedPalette, check_size, frame_limit, frame_step, gif_duration
from .lint import mark_categorical

DPI = 100
FRAME_COLOURS = colormaps["tab10"].colors
BACKWARD_LIGHTEN = 0.45
LABEL_LIMIT = 64          # frame numbers are written in cells when the axis is this short
CELL_PT = 7               # frame numbers inside cells (not tick labels)
MIN_SHARE = 0.32          # the least share of the width a schedule's panel gets
NAMES = {"backprop": "backprop: forward- and backward-locked",
         "pipelined": "tick engine: pipelined"}


def frame_colour(frame, backward=False):
    """RGB of a frame's work (backward work lighter)."""
    rgb = np.array(FRAME_COLOURS[int(frame) % len(FRAME_COLOURS)][:3])
    return rgb + BACKWARD_LIGHTEN * (1.0 - rgb) if backward else rgb


def occupancy_rgb(forward, backward):
    """(2L, T, 3) image: row 2(l−1) forward work of layer l, row 2(l−1)+1 backward."""
    image = np.full((2 * forward.shape[0], forward.shape[1], 3), palette.EMPTY)
    for back, occ in enumerate((forward, backward)):
        rows = image[back::2]
        for frame in np.unique(occ[occ >= 0]):
            rows[occ == frame] = frame_colour(frame, back)
    return image


def _panel(ax, name, sched, depth):
    image = occupancy_rgb(sched["forward"], sched["backward"])
    T = sched["ticks"]
    mark_categorical(ax.imshow(image, origin="lower", aspect="auto", interpolation="nearest",
                               extent=(-0.5, T - 0.5, 0.5, depth + 0.5)))
    ax.set(xlim=(-0.5, T - 0.5), ylim=(0.5, depth + 0.5), xlabel=f"tick (0–{T - 1})",
           ylabel="layer", yticks=range(1, depth + 1, max(1, int(np.ceil(depth / 12)))))
    integer_ticks(ax.xaxis, least=2)
    for l in range(1, depth):
        ax.axhline(l + 0.5, color="white", linewidth=1.0)
    if T <= LABEL_LIMIT:
        for l, t in zip(*np.nonzero(sched["forward"] >= 0)):
            ax.text(t, l + 1 - 0.25, str(sched["forward"][l, t]), ha="center", va="center",
                    fontsize=CELL_PT, color="white")
    ax.set_title(f"{NAMES[name]}\nutilisation {100 * sched['utilisation']:.0f}% "
                 f"(steady {100 * sched['steady_utilisation']:.0f}%)\n"
                 f"{sched['frames_per_tick']:.3f} frames/tick "
                 f"(steady {sched['steady_frames_per_tick']:.3g}); done at tick {T}",
                 fontsize=9)


def panel_shares(ticks, least=MIN_SHARE):
    """Panel widths (summing to 1) proportional to ``ticks``, none under ``least``."""
    ticks = np.asarray(ticks, dtype=float)
    share = ticks / ticks.sum()
    small = share < least
    if small.any() and not small.all():
        share[small] = least
        share[~small] *= (1 - least * small.sum()) / share[~small].sum()
    return share


def locking_figure(depth, frames):
    """The locking.png figure; returns (figure, {schedule name: axes}, schedules)."""
    result = schedules(depth, frames)
    L, F = result["depth"], result["frames"]
    height = 2.6 + 0.3 * L
    fig = new_figure((12, height), DPI, layout=None)
    grid = fig.add_gridspec(1, 2, left=0.05, right=0.98, bottom=0.95 / height,
                            top=1 - 1.25 / height, wspace=0.1,
                            width_ratios=panel_shares([result[n]["ticks"] for n in NAMES]))
    axes = {name: fig.add_subplot(grid[0, j]) for j, name in enumerate(NAMES)}
    for name, ax in axes.items():
        _panel(ax, name, result[name], L)
    handles = [Patch(color=frame_colour(0), label="forward work (lower half), colour = frame"),
               Patch(color=frame_colour(0, True), label="backward work (upper half)"),
               Patch(facecolor=palette.EMPTY, edgecolor="#999999", label="idle")]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=9, frameon=False)
    # y: a fixed distance in inches from the top, so a tall figure's title clears the panels'
    fig.suptitle(f"{F} frames through L = {L} layers: backprop needs 2L = {2 * L} ticks per "
                 f"frame; the tick engine takes a new frame every tick\n"
                 f"(each panel on its own tick axis)", fontsize=10, y=1 - 0.08 / height)
    return fig, axes, result


def _locking_frames(fig, axes, span, every):
    """(frames, palette colours) of the GIF: a cursor every ``every`` ticks (or
    every k-th, noted, within the frame limit); ``frames`` yields palette indices."""
    width, height = fig.canvas.get_width_height()
    step = frame_step(span, every, frame_limit(width, height))
    if step != every:
        fig.text(0.99, 0.005, f"GIF: cursor every {step} ticks (frame limit)", ha="right",
                 va="bottom", fontsize=8, color="#555555")
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    pal = IndexedPalette(rgb)
    background = pal.index_exact(rgb)
    dark = pal.index_float(np.array([0.07, 0.07, 0.07]))
    spans = []
    for ax in axes.values():
        top, bottom = height - ax.transData.transform([(0, y) for y in ax.get_ylim()[::-1]])[:, 1]
        spans.append((ax, int(np.ceil(top)), int(np.floor(bottom))))

    def frames():
        for t in range(0, span, step):
            frame = background.copy()
            for ax, top, bottom in spans:
                # A schedule that is done keeps its cursor on its last tick.
                c = int(round(ax.transData.transform((min(t, ax.get_xlim()[1] - 0.5), 0))[0]))
                frame[top:bottom, max(c - 1, 0):c + 1] = dark
            yield frame
    return frames(), pal.colours


def write_locking(folder, depth, frames, png=True, gif=False, every=1, size=None, fps=10):
    """Write locking.png (``png``) and locking.gif (``gif``) into ``folder``, ``size``
    (width, height) pixels (default: 12 in wide). Returns {file name: path}."""
    if not os.path.isdir(folder):
        raise SimulatorError(f"{folder}: not a folder to write pictures into")
    fig, axes, result = locking_figure(depth, frames)
    if size is not None:
        w, h = check_size(size)
        fig.set_size_inches(w / DPI, h / DPI)
    written = {"locking.png": save_png(fig, os.path.join(folder, "locking.png"))} if png else {}
    if gif:       # frame_step checks ``every`` before a frame is drawn
        images, colours = _locking_frames(fig, axes, max(result[n]["ticks"] for n in NAMES),
                                          every)
        written["locking.gif"] = os.path.join(folder, "locking.gif")
        gifstream.write_gif(written["locking.gif"], images, colours, gif_duration(fps))
    return written
