"""Axis helpers every plot shares, so degenerate data draw instead of raising.

A run may be valid and still give a panel nothing to show: exact zeros (the
clamped top layer, an exact gradient), NaN everywhere (a quantity undefined
because a gradient is 0 or the backward wave never arrived), no ticks at all.
``log_axis`` draws zeros at LOG_FLOOR and fixes the limits from the finite
values, so matplotlib's 'Data cannot be log-scaled' and NaN axis limits cannot
happen; ``no_data`` writes a note where there is nothing to draw.
"""
import numpy as np

# Values of exactly 0 are drawn at this floor so a log axis shows them.
LOG_FLOOR = 1e-17
# The log axis shown when a panel has no finite value at all.
EMPTY_LOG_RANGE = (LOG_FLOOR, 10.0)
NOTE_COLOUR = "#555555"


def floored(values):
    """``values`` as floats with zeros (and anything below) raised to LOG_FLOOR; NaN stays NaN."""
    return np.fmax(np.asarray(values, dtype=float), LOG_FLOOR)


def no_data(ax, text):
    """Write ``text`` in the middle of ``ax`` (a panel with nothing to draw)."""
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=9,
            color=NOTE_COLOUR, bbox=dict(facecolor="white", edgecolor="#bbbbbb", alpha=0.9))


def log_axis(ax, values, note, margin=3.0):
    """Put ``ax``'s y axis on a log scale with limits fixed from the finite
    ``values`` (zeros count at LOG_FLOOR, where they are drawn), widened by the
    factor ``margin`` both ways; with no finite value, a fixed range and the
    ``note`` in the middle of the panel. Returns whether there was any value."""
    v = np.asarray(values, dtype=float)
    v = np.maximum(v[np.isfinite(v)], LOG_FLOOR)
    ax.set_yscale("log")
    if v.size:
        ax.set_ylim(float(v.min()) / margin, float(v.max()) * margin)
        return True
    ax.set_ylim(*EMPTY_LOG_RANGE)
    no_data(ax, note)
    return False
