"""Raster and GIF of one backward-travelling quantity per level and tick (AR's
relaxation wave, predictive coding's error wave) in blue shades of log10 |value|
on one scale for the whole record; +inf darkest, 0 white. A GIF frame fills the
raster up to its tick, with a cursor and a bar per level.
"""
import os

import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LinearSegmentedColormap, Normalize

from ..files import save_png
from . import gifstream
from .axes import new_figure, no_data
from .indexed import (DEFAULT_SIZE, FONT, IndexedFigure, frame_limit, frame_step, gif_duration,
                      glyphs_for)
from .lint import mark_keyed
from ..analysis.palette import BLUE, CURSOR_COLOUR, EMPTY, FLOOR, from_hex, mix, to_bytes

DECADES = 8
MAX_COLUMNS = 600       # GIF raster columns (a longer record shows every k-th tick)
NO_TICKS = "no ticks recorded"
NAVY = np.array([0.05, 0.14, 0.42])      # the strongest shade (still lighter than the cursor)
INK = "#333333"                          # text and axes of the GIF, lighter than the cursor
ZERO_NOTE = "white: exactly 0"
# light blue (the weakest present wave of the diffusion pictures) -> blue -> navy
WAVE_CMAP = LinearSegmentedColormap.from_list("tickprop_wave", [mix(0.0, FLOOR), BLUE, NAVY])


def wave_range(values):
    """(lo, hi) log10 magnitudes the shading spans: the finite non-zero |values|'
    range, at most DECADES and at least 1 wide; (−1, 0) when there is none."""
    v = np.abs(np.asarray(values, dtype=float))
    finite = v[np.isfinite(v) & (v > 0)]
    if not len(finite):
        return -1.0, 0.0
    hi = float(np.log10(finite.max()))
    lo = max(float(np.log10(finite.min())), hi - DECADES)
    return min(lo, hi - 1.0), hi


def wave_levels(values):
    """Levels FLOOR..1 from log10 magnitudes over ``wave_range``; 0 at 0, 1 at inf."""
    v = np.abs(np.asarray(values, dtype=float))
    finite = np.isfinite(v) & (v > 0)
    lo, hi = wave_range(v)
    logv = np.log10(np.where(finite, v, 1.0))
    level = FLOOR + (1.0 - FLOOR) * np.clip((logv - lo) / (hi - lo), 0.0, 1.0)
    return np.where(np.isinf(v), 1.0, np.where(finite, level, 0.0))


def wave_rgb(values):
    """(levels, ticks, 3) uint8 image of ``values`` (ticks × levels), highest level on top."""
    levels = wave_levels(np.asarray(values).T)[::-1]
    rgb = WAVE_CMAP(np.clip((levels - FLOOR) / (1.0 - FLOOR), 0.0, 1.0))[..., :3]
    return to_bytes(np.where((levels > 0)[..., None], rgb, EMPTY))


def colour_bar(fig, cax, values, fontsize, ax=None):
    """The colour bar of the log10 shading on ``cax`` (or beside ``ax``)."""
    lo, hi = wave_range(values)
    bar = fig.colorbar(ScalarMappable(Normalize(lo, hi), WAVE_CMAP), cax=cax, ax=ax,
                       fraction=0.04, pad=0.02)
    zero = (np.asarray(values, dtype=float) == 0).any()
    bar.set_label("log10 of the value" + (f" ({ZERO_NOTE})" if zero else ""), fontsize=fontsize)
    bar.ax.tick_params(labelsize=fontsize)
    return bar


def _title(title, values):
    return title + (" (+inf: overflow, drawn darkest)" if np.isinf(values).any() else "")


def write_wave_png(path, values, title, level_label, level_names=None, tick_label="tick"):
    """Write the raster of ``values`` (ticks × levels, column 0 at the bottom)
    as a PNG at ``path``, rows labelled ``level_names``; returns ``path``."""
    values = np.asarray(values, dtype=float)
    fig = new_figure((8, 3.8))
    ax = fig.add_subplot(1, 1, 1)
    _level_axes(ax, values.shape, level_label, level_names, tick_label)
    ax.set_title(_title(title, values), fontsize=9)
    bar = colour_bar(fig, None, values, 9, ax=ax)
    if len(values):
        ticks, n_levels = values.shape
        image = ax.imshow(wave_rgb(values), aspect="auto", interpolation="nearest",
                          extent=(-0.5, ticks - 0.5, -0.5, n_levels - 0.5))
        mark_keyed(image, bar)      # the RGB shades follow the bar's colormap
    else:
        ax.set_xticks([])
    return save_png(fig, path)


def _level_axes(ax, shape, level_label, level_names, tick_label, **font):
    """Limits and labels (at most 20 rows) of a (ticks, levels) raster on ``ax``."""
    ticks, n_levels = shape
    ax.set(xlim=(-0.5, max(ticks, 1) - 0.5), ylim=(-0.5, n_levels - 0.5))
    ax.set_xlabel(tick_label, **font)
    ax.set_ylabel(level_label, **font)
    shown = list(range(0, n_levels, max(1, -(-n_levels // 20))))
    ax.set_yticks(shown)
    if level_names is not None:
        names = [str(n) for n in level_names]
        ax.set_yticklabels([names[k] for k in shown], fontsize=font.get("fontsize"))
    elif font:
        ax.tick_params(axis="y", labelsize=font["fontsize"])
    if not ticks:
        no_data(ax, NO_TICKS)


class LevelAnimator(IndexedFigure):
    """A level wave's static figure, drawn once, and its frames (``indices``, ``render``)."""

    def __init__(self, values, size=DEFAULT_SIZE, title="", level_label="level",
                 level_names=None, tick_label="tick"):
        self.values = np.asarray(values, dtype=float)
        self.ticks, self.n_levels = self.values.shape
        self.col_step = frame_step(self.ticks, 1, MAX_COLUMNS)
        self.range = wave_range(self.values)
        self.tick_label = tick_label
        self._figure(size, title, level_label, level_names, tick_label)
        self._index_background()      # the colour bar brings every shade into the palette
        self.glyphs = glyphs_for(FONT, self.dpi)
        self._maps()
        self.cursor = self.palette.index(to_bytes(from_hex(CURSOR_COLOUR)))
        self.blue = self.palette.index(to_bytes(BLUE))

    def _figure(self, size, title, level_label, level_names, tick_label):
        fig = self._start(size)
        small = FONT - 1
        grid = fig.add_gridspec(1, 3, width_ratios=(1.0, 0.2, 0.03), left=0.13, right=0.86,
                                bottom=0.14, top=0.80, wspace=0.08)
        ax = fig.add_subplot(grid[0, 0])
        now = fig.add_subplot(grid[0, 1], sharey=ax)
        cax = fig.add_subplot(grid[0, 2])
        for a in (ax, now, cax):
            a.spines[:].set_edgecolor("#666666")
            a.tick_params(colors="#666666", labelcolor=INK, labelsize=small)
        ax.set_facecolor(EMPTY)
        _level_axes(ax, self.values.shape, level_label, level_names, tick_label,
                    fontsize=small, color=INK)
        lo, hi = self.range
        now.set(xlim=(lo, hi), xticks=[lo, hi])
        now.set_xticklabels([f"{lo:.1f}", f"{hi:.1f}"], fontsize=small)
        now.xaxis.get_majorticklabels()[0].set_ha("left")
        now.xaxis.get_majorticklabels()[1].set_ha("right")
        now.tick_params(labelleft=False)
        now.set_title("now", fontsize=small, color=INK, pad=3)
        now.set_xlabel("log10", fontsize=small, color=INK)
        colour_bar(fig, cax, self.values, small)
        cax.yaxis.label.set_color(INK)
        fig.text(0.01, 0.985, _title(title, self.values), ha="left", va="top",
                 fontsize=FONT + 1, color=INK, wrap=True)
        self.ax, self.now_ax = ax, now

    def _maps(self):
        ax, n = self.ax, self.n_levels
        T = max(self.ticks, 1)
        self.box, xs, ys = self._pixel_grid(ax, T - 0.5, n - 0.5)
        self.col_tick = np.clip(np.rint(xs).astype(int), 0, T - 1)     # tick under a pixel column
        image_row = n - 1 - np.clip(np.rint(ys).astype(int), 0, n - 1)  # top = highest level
        if self.ticks:
            image = wave_rgb(self.values[::self.col_step])        # (levels, columns, 3)
            self.cells = self.palette.index(image[image_row][:, self.col_tick // self.col_step])
        ends = [[int(round(self._to_pixel(self.now_ax, 0, k + d)[1])) for d in (0.35, -0.35)]
                for k in range(n)]
        self.bar_rows = [(a, max(b, a + 1)) for a, b in ends]     # pixel rows of level k's bar
        lo, hi = self.range
        self.bar_x = (self._to_pixel(self.now_ax, lo, 0)[0], self._to_pixel(self.now_ax, hi, 0)[0])
        self.tick_at = (self._to_pixel(ax, T - 0.5, n - 0.5)[0], self.box[0] - 3 * self.scale)

    def frame_ticks(self):
        """Ticks that become frames (every k-th, within the frame limit); [None] without ticks."""
        if not self.ticks:
            return [None]
        return list(range(0, self.ticks, frame_step(self.ticks, 1,
                                                    frame_limit(self.width, self.height))))

    def indices(self, t):
        """The frame of tick ``t`` (None: the empty frame) as palette indices."""
        frame = self.background.copy()
        if t is None:
            return frame
        top, bottom, left, right = self.box
        column = (t // self.col_step) * self.col_step      # the raster column of tick t
        shown = self.col_tick <= column + self.col_step - 1
        frame[top:bottom, left:right][:, shown] = self.cells[:, shown]
        c = int(round(self._to_pixel(self.ax, column, 0)[0]))
        w = max(1, int(round(2 * self.scale)))
        frame[top:bottom, max(c - w // 2, left):max(c - w // 2, left) + w] = self.cursor
        lo, hi = self.range
        x0, x1 = self.bar_x
        for k, (a, b) in enumerate(self.bar_rows):
            v = abs(self.values[t, k])
            if v == 0 or np.isnan(v):
                continue
            pos = 1.0 if np.isinf(v) else float(np.clip((np.log10(v) - lo) / (hi - lo), 0, 1))
            end = int(round(x0 + max(pos, 0.02) * (x1 - x0)))
            frame[a:b, int(round(x0)) + 1:end] = self.blue
        right, bottom = self.tick_at
        self._paint_text(frame, self.glyphs, f"{self.tick_label} {t}", right, bottom,
                         from_hex(INK), "right")
        return frame


def write_wave_gif(path, values, fps=20, title="", level_label="level", level_names=None,
                   tick_label="tick", size=DEFAULT_SIZE):
    """Write the GIF of ``values`` (ticks × levels) at ``path`` frame by frame; returns ``path``."""
    anim = LevelAnimator(values, size, title, level_label, level_names, tick_label)
    gifstream.write_gif(os.fspath(path), (anim.indices(t) for t in anim.frame_ticks()),
                        anim.palette.colours, gif_duration(fps))
    return path
