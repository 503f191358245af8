"""The colours every wave picture shares, so the raster, the GIF and the docs agree.

A cell (tick, layer) — or one neuron in the GIF — gets its colour from two
levels in [0, 1]: how strongly the forward wave is there (red) and how
strongly the backward wave is there (blue); 0 means absent. Where both waves
are present the colour is the level-weighted mix of red and blue: the paper's
"red-blue neurons" come out purple. Levels come either from magnitudes (per
layer, on a scale fixed for the whole run so nothing flickers) or from frame
tags: shades that alternate with the stream frame where frames last at least
WIDE_BAND columns (a slow stream shows broad bands), else dark stripes on a
light ground marking every p-th frame (a fast stream shows thin diagonal lines
of x climbing and of δ descending, which cross visibly instead of averaging
into a checkerboard).
"""
import numpy as np

RED = np.array([0.84, 0.09, 0.11])
BLUE = np.array([0.13, 0.33, 0.80])
EMPTY = np.array([0.96, 0.96, 0.96])
LS_COLOUR = "#f2a900"          # amber: the synchronization layer ls
CURSOR_COLOUR = "#111111"
SYNC_COLOUR = "#111111"        # the sync overlay: g pairs x and δ of one stream frame

# Absent is 0; a present wave never drops below this level, so even a tiny
# activity or delta stays visibly red or blue.
FLOOR = 0.4
# Shades cycled by stream frame in tag colouring; neighbours differ strongly so
# consecutive frames are told apart at a glance.
TAG_LEVELS = np.array([1.0, 0.5, 0.8, 0.4])
# Frames shorter than WIDE_BAND columns are striped (every p-th frame dark on
# a TAG_GROUND level, stripes STRIPE_SPACING columns or more apart) rather than
# cycled through TAG_LEVELS.
WIDE_BAND = 4
STRIPE_SPACING = 8
TAG_GROUND = 0.45


def from_hex(colour):
    """RGB floats in [0, 1] of a '#rrggbb' colour."""
    return np.array([int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)])


PURPLE = 0.5 * (RED + BLUE)


def mix(fwd, bwd, strength="max", lean=1):
    """RGB floats (..., 3) for forward levels ``fwd`` and backward levels ``bwd``
    (same shape, in [0, 1], 0 = wave absent): red for forward only, blue for
    backward only, the level-weighted red-blue mix (purple) where both are
    present (leaning toward the stronger), lightened toward EMPTY as the
    ``strength`` of the two levels falls: their 'max' (a weak wave under a
    strong one stays visible as the hue) or their 'mean' (both levels shape the
    lightness, so bands of both waves show where they cross). ``lean`` sharpens
    how far a mixed cell's hue leans toward the stronger wave (weights
    (1 + level) ** lean; up to 1.8 keeps every mean mix of levels ≥ FLOOR purple while the
    stripes of x and of δ stay told apart by hue)."""
    fwd = np.clip(np.nan_to_num(np.asarray(fwd, dtype=float)), 0.0, 1.0)
    bwd = np.clip(np.nan_to_num(np.asarray(bwd, dtype=float)), 0.0, 1.0)
    # Weights 1 + level keep a mixed cell recognisably purple even when one
    # wave is much weaker, while still leaning toward the stronger one.
    wf = np.where(fwd > 0, (1.0 + fwd) ** lean, 0.0)
    wb = np.where(bwd > 0, (1.0 + bwd) ** lean, 0.0)
    total = wf + wb
    safe = np.where(total > 0, total, 1.0)[..., None]
    hue = (wf[..., None] * RED + wb[..., None] * BLUE) / safe
    both = (fwd > 0) & (bwd > 0)
    if strength == "mean":
        level = np.where(both, 0.5 * (fwd + bwd), np.maximum(fwd, bwd))
    else:
        level = np.maximum(fwd, bwd)
    return EMPTY + level[..., None] * (hue - EMPTY)


def to_bytes(rgb):
    """uint8 RGB from floats in [0, 1]."""
    return np.clip(np.rint(np.asarray(rgb) * 255.0), 0, 255).astype(np.uint8)


def magnitude_levels(values, present, scale):
    """Levels FLOOR..1 proportional to ``values / scale`` where ``present``, 0 elsewhere.
    ``scale`` broadcasts against ``values`` (e.g. a per-layer maximum) and is fixed
    for a whole run, so the colour of a value never changes between frames."""
    values = np.abs(np.nan_to_num(np.asarray(values, dtype=float)))
    scale = np.asarray(scale, dtype=float)
    safe = np.where(scale > 0, scale, 1.0)
    level = FLOOR + (1.0 - FLOOR) * np.clip(values / safe, 0.0, 1.0)
    return np.where(present, level, 0.0)


def tag_levels(frames, present, period=0):
    """Levels from integer stream-frame indices, 0 where not ``present``.
    ``period`` 0: a shade per frame, cycling through TAG_LEVELS; p > 0: level
    1 for every p-th frame (index ≡ 0 mod p), TAG_GROUND for the others."""
    frames = np.asarray(frames)
    safe = np.where(present, frames, 0)
    if period:
        level = np.where(np.mod(safe, int(period)) == 0, 1.0, TAG_GROUND)
    else:
        level = TAG_LEVELS[np.mod(safe, len(TAG_LEVELS))]
    return np.where(present, level, 0.0)
