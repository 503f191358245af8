"""Raster and GIF of one backward-travelling quantity per level and tick: the
relaxation wave of Activation Relaxation and the error wave of predictive
coding. Same palette as the diffusion pictures (blue = backward wave), levels
up (input or leaves at the bottom, output at the top), ticks across.

Magnitudes span many decades (errors decay geometrically, an unlevelled Z-IL
graph can overflow), so the shade follows log10 of the value on a scale fixed
for the whole record; +inf is drawn as the strongest shade and marked in the
title, zero as empty. A record without ticks (no relaxation step) draws an
empty raster with a note; a long record is drawn with at most MAX_FRAMES GIF
frames and MAX_COLUMNS raster columns (every k-th tick).
"""
import os

import numpy as np
from matplotlib.figure import Figure

from ..files import atomic_write, save_png
from .axes import no_data
from .palette import BLUE, CURSOR_COLOUR, EMPTY, FLOOR, mix, to_bytes

DECADES = 8
MAX_FRAMES = 600        # GIF frames; a longer record shows every k-th tick
MAX_COLUMNS = 600       # GIF raster columns, likewise
NO_TICKS = "no ticks recorded"


def tick_step(ticks, limit):
    """The smallest k with ceil(ticks / k) <= limit (1 for short records)."""
    return max(1, -(-int(ticks) // int(limit)))


def wave_levels(values):
    """Levels FLOOR..1 from log10 magnitudes over the top DECADES decades of the
    finite maximum; 0 where the value is 0 (nothing there); 1 where infinite."""
    v = np.abs(np.asarray(values, dtype=float))
    finite = np.isfinite(v) & (v > 0)
    if not finite.any():
        return np.where(np.isinf(v), 1.0, 0.0)
    top = np.log10(v[finite].max())
    logv = np.log10(np.where(finite, v, 1.0))
    level = FLOOR + (1.0 - FLOOR) * np.clip((logv - (top - DECADES)) / DECADES, 0.0, 1.0)
    level = np.where(finite, level, 0.0)
    return np.where(np.isinf(v), 1.0, level)


def wave_rgb(values):
    """(levels, ticks, 3) uint8 image, top row = highest level."""
    levels = wave_levels(np.asarray(values).T)[::-1]
    return to_bytes(mix(np.zeros_like(levels), levels))


def write_wave_png(path, values, title, level_label, level_names=None, tick_label="tick"):
    """Raster of ``values`` (ticks × levels, column 0 drawn at the bottom) as a
    PNG written atomically; ``level_names`` label the rows."""
    values = np.asarray(values, dtype=float)
    ticks, n_levels = values.shape
    fig = Figure(figsize=(8, 3.6), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    if ticks:
        ax.imshow(wave_rgb(values), aspect="auto", interpolation="nearest",
                  extent=(-0.5, ticks - 0.5, -0.5, n_levels - 0.5))
    else:
        ax.set_xlim(-0.5, 0.5)
        ax.set_xticks([])
        ax.set_ylim(-0.5, n_levels - 0.5)
        no_data(ax, NO_TICKS)
    ax.set_xlabel(tick_label)
    ax.set_ylabel(level_label)
    ax.set_yticks(range(n_levels))
    if level_names is not None:
        ax.set_yticklabels([str(n) for n in level_names])
    note = " (+inf: overflow)" if np.isinf(values).any() else ""
    ax.set_title(f"{title}\nblue shade: log10 magnitude over {DECADES} decades{note}", fontsize=9)
    fig.tight_layout()
    return save_png(fig, path)


def gif_frames(values, cell=(10, 24), bar_width=120):
    """One uint8 frame per tick (every k-th tick beyond MAX_FRAMES): the raster
    filling up to that tick with a time cursor, and a bar per level (length =
    its shade at that tick) on the right. The raster has one column per tick,
    or per k-th tick beyond MAX_COLUMNS. No ticks: one empty frame."""
    values = np.asarray(values, dtype=float)
    ticks, n_levels = values.shape
    shade = wave_levels(values)
    col_step = tick_step(ticks, MAX_COLUMNS)
    columns = values[::col_step]
    n_cols = columns.shape[0]
    cw, ch = max(1, cell[0] * 60 // max(n_cols, 60)), cell[1]
    big = np.repeat(np.repeat(wave_rgb(columns), ch, axis=0), cw, axis=1) if n_cols else None
    empty = to_bytes(EMPTY)
    cursor = to_bytes(np.array([int(CURSOR_COLOUR[i:i + 2], 16) / 255 for i in (1, 3, 5)]))
    blue = to_bytes(BLUE)
    width = n_cols * cw
    frames = []
    for t in range(0, ticks, tick_step(ticks, MAX_FRAMES)) if ticks else [None]:
        frame = np.empty((n_levels * ch, width + bar_width, 3), dtype=np.uint8)
        frame[...] = empty
        if t is not None:
            c = t // col_step                   # the column that holds tick t
            frame[:, :(c + 1) * cw] = big[:, :(c + 1) * cw]
            frame[:, c * cw:c * cw + max(1, cw // 3)] = cursor
            for level in range(n_levels):
                row = (n_levels - 1 - level) * ch
                length = int(shade[t, level] * (bar_width - 8))
                frame[row + 3:row + ch - 3, width + 4:width + 4 + length] = blue
        frames.append(frame)
    return frames


def write_wave_gif(path, values, fps=20):
    """Animated GIF of the wave (see gif_frames), written atomically."""
    import imageio.v3 as iio

    frames = np.stack(gif_frames(values))
    atomic_write(os.fspath(path), lambda f: iio.imwrite(f, frames, extension=".gif",
                                                          duration=1000 / fps, loop=0),
                 binary=True)
    return path
