"""Figure and axis helpers every plot shares, so degenerate data draw instead
of raising: exact zeros sit on a log axis's floor, ticked "0" (``zero_floor``,
``log_axis``, limits from the finite values only); a panel without a finite
value gets a note (``no_data``).
"""
import textwrap
import warnings

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import (FixedLocator, Locator, LogFormatterSciNotation, LogLocator,
                               MaxNLocator, NullLocator)

from ..files import save_png

LOG_FLOOR = 1e-17                       # zeros' floor when a panel has no positive value
EMPTY_LOG_RANGE = (LOG_FLOOR, 10.0)     # the log axis of a panel without a finite value
LOG_LIMIT = 1e100    # the widest log axis drawn: decade ticks overflow towards 1e308
TITLE_MARGIN_PX = 8


def new_figure(size, dpi=100, layout="constrained"):
    """A Figure of ``size`` inches on the Agg canvas (no pyplot)."""
    fig = Figure(figsize=size, dpi=dpi, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def integer_ticks(axis, least=1):
    """Integer tick positions (at least ``least`` of them) on ``axis``."""
    axis.set_major_locator(MaxNLocator(nbins="auto", integer=True, min_n_ticks=least))


def tick_axis(ax, first, last, label="tick"):
    """``ax``'s x axis over ticks ``first``..``last`` (± half a tick if one), integer ticks."""
    pad = 0.5 if first == last else 0.0
    ax.set(xlim=(first - pad, last + pad), xlabel=label)
    integer_ticks(ax.xaxis)


def finish(fig, path, title=""):
    """Write ``fig`` with the suptitle ``title`` (if any) as a PNG at ``path``; returns ``path``."""
    if title:
        fit_suptitle(fig, title, fontsize=9)
    return save_png(fig, path)


def quiet(func, *args, **kwargs):
    """``func(*args, **kwargs)`` with numpy's warnings of all-NaN or empty slices silenced
    (a seed or stage without values draws nothing)."""
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return func(*args, **kwargs)


def zero_floor(values):
    """Where exact zeros of ``values`` sit on a log axis: a decade below the smallest
    positive finite value's decade (LOG_FLOOR if none)."""
    v = np.asarray(values, dtype=float)
    positive = v[np.isfinite(v) & (v > 0)]
    if not positive.size:
        return LOG_FLOOR
    return float(10.0 ** (np.floor(np.log10(positive.min())) - 1))


def floored(values, floor):
    """``values`` as floats, zeros (anything below ``floor``) raised to ``floor``; NaN stays."""
    return np.maximum(np.asarray(values, dtype=float), floor)


def no_data(ax, text):
    """Write ``text`` in the middle of ``ax`` (a panel with nothing to draw)."""
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=9,
            color="#555555", bbox=dict(facecolor="white", edgecolor="#bbbbbb", alpha=0.9))


class _FromFloor(Locator):
    """The ticks of ``base`` above ``floor`` (and ``floor`` itself when ``mark``)."""

    def __init__(self, base, floor, mark):
        self.base, self.floor, self.mark = base, floor, mark

    def set_axis(self, axis):
        super().set_axis(axis)
        self.base.set_axis(axis)

    def __call__(self):
        return self.tick_values(*self.axis.get_view_interval())

    def tick_values(self, vmin, vmax):
        ticks = [t for t in self.base.tick_values(vmin, vmax) if t > self.floor * 1.5]
        return ([self.floor] if self.mark else []) + ticks


class _ZeroFormatter(LogFormatterSciNotation):
    """Log labels, with "0" at the zero floor."""

    def __init__(self, floor, **kwargs):
        super().__init__(**kwargs)
        self.floor = floor

    def __call__(self, x, pos=None):
        if np.isclose(x, self.floor, rtol=1e-6, atol=0.0):
            return "0"
        return super().__call__(x, pos)


def log_axis(ax, values, note, margin=3.0, floor=None):
    """Put ``ax``'s y axis on a log scale, limits from the finite ``values`` widened by
    ``margin``; exact zeros (drawn at ``floored(v, floor)``) get a tick "0" and a dotted
    line; no finite value: a fixed range and ``note``. Returns whether there was one."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    floor = zero_floor(v) if floor is None else floor
    with np.errstate(over="ignore"):     # autoscaling around a saved 1e308 overflows
        ax.set_yscale("log")
    if not v.size:
        ax.set_ylim(*EMPTY_LOG_RANGE)
        no_data(ax, note)
        return False
    zeros = bool((v <= 0).any())
    v = np.maximum(v, floor)
    # widened, but within what a log axis can tick (a saved 1e308 must not widen to inf)
    lo = min(max(float(v.min()) / margin, 1 / LOG_LIMIT), LOG_LIMIT / margin ** 2)
    hi = max(min(float(v.max()) * margin, LOG_LIMIT), lo * margin ** 2)
    ax.set_ylim(lo, hi)
    if zeros and v.max() <= floor:
        # Nothing but zeros: the "0" tick alone (no decades to label around it).
        ax.yaxis.set_major_locator(FixedLocator([floor]))
        ax.yaxis.set_minor_locator(NullLocator())
    elif zeros:
        ax.yaxis.set_major_locator(_FromFloor(LogLocator(), floor, True))
        ax.yaxis.set_minor_locator(_FromFloor(LogLocator(subs="auto"), floor, False))
    if zeros:
        ax.yaxis.set_major_formatter(_ZeroFormatter(floor))
        ax.axhline(floor, color="#999999", linewidth=0.8, linestyle=":", zorder=1)
    return True


def fit_suptitle(fig, text, fontsize=10):
    """Set ``text`` as ``fig``'s suptitle (a ``new_figure``), wrapped at words to
    stay TITLE_MARGIN_PX inside the canvas. Returns the title Text."""
    renderer = fig.canvas.get_renderer()
    room = fig.bbox.width - 2 * TITLE_MARGIN_PX
    width = max(len(line) for line in str(text).splitlines() or [""])
    while True:
        wrapped = "\n".join(textwrap.fill(line, max(width, 10)) if line else line
                            for line in str(text).splitlines())
        title = fig.suptitle(wrapped, fontsize=fontsize)
        if width <= 10 or title.get_window_extent(renderer).width <= room:
            return title
        width = int(width * 0.9)
