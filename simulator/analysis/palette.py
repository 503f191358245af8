"""The colours every wave picture shares: a cell or neuron is coloured from the
forward wave's level (red) and the backward wave's (blue), in [0, 1] (0: absent),
both present mixing to purple (the paper's "red-blue neurons"); levels come from
magnitudes (one scale per layer for the run, so nothing flickers) or frame tags.
The one palette of the PNGs, GIFs (render/) and view.html (view/).
"""
import numpy as np

RED = np.array([0.84, 0.09, 0.11])
BLUE = np.array([0.13, 0.33, 0.80])
PURPLE = 0.5 * (RED + BLUE)
EMPTY = np.array([0.96, 0.96, 0.96])
LS_COLOUR = "#f2a900"          # amber: the synchronization layer ls
CURSOR_COLOUR = "#111111"
SYNC_COLOUR = "#111111"        # the sync overlay: g pairs x and δ of one stream frame
FLOOR = 0.4                    # the least level of a present wave, so it stays visible
TAG_LEVELS = np.array([1.0, 0.5, 0.8, 0.4])   # shades by frame, neighbours far apart
# Frames thinner than WIDE_BAND columns are striped, STRIPE_SPACING columns apart.
WIDE_BAND = 4
STRIPE_SPACING = 8
TAG_GROUND = 0.45
TAG_LEAN = 1.8                 # tag colouring: a mixed cell's hue leans toward its stronger wave


def from_hex(colour):
    """RGB floats in [0, 1] of a '#rrggbb' colour."""
    return np.array([int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)])


def mix(fwd, bwd, strength="max", lean=1):
    """RGB floats (..., 3) for forward and backward levels ``fwd``, ``bwd`` (in [0, 1],
    0 = absent): red, blue, or where both are present a hue weighted (1 + level) **
    ``lean`` toward the stronger (still purple for ``lean`` ≤ 1.8 and levels ≥ FLOOR),
    lightened toward EMPTY as the ``strength`` of the two falls: their 'max' (a weak
    wave under a strong one shows as hue) or 'mean' (crossing bands of both show)."""
    fwd, bwd = (np.clip(np.nan_to_num(np.asarray(v, dtype=float)), 0.0, 1.0) for v in (fwd, bwd))
    wf, wb = (np.where(v > 0, (1.0 + v) ** lean, 0.0) for v in (fwd, bwd))
    total = wf + wb
    safe = np.where(total > 0, total, 1.0)[..., None]
    hue = (wf[..., None] * RED + wb[..., None] * BLUE) / safe
    level = np.maximum(fwd, bwd)
    if strength == "mean":
        level = np.where((fwd > 0) & (bwd > 0), 0.5 * (fwd + bwd), level)
    return EMPTY + level[..., None] * (hue - EMPTY)


def to_bytes(rgb):
    """uint8 RGB from floats in [0, 1]."""
    return np.clip(np.rint(np.asarray(rgb) * 255.0), 0, 255).astype(np.uint8)


def magnitude_levels(values, present, scale):
    """Levels FLOOR..1 proportional to ``values / scale`` where ``present``, 0 elsewhere;
    ``scale`` broadcasts against ``values`` (e.g. a per-layer maximum)."""
    values = np.abs(np.nan_to_num(np.asarray(values, dtype=float)))
    scale = np.asarray(scale, dtype=float)
    safe = np.where(scale > 0, scale, 1.0)
    level = FLOOR + (1.0 - FLOOR) * np.clip(values / safe, 0.0, 1.0)
    return np.where(present, level, 0.0)


def tag_levels(frames, present, period=0):
    """Levels from integer stream-frame indices, 0 where not ``present``:
    ``period`` 0 (frames at least WIDE_BAND columns wide) a shade per frame
    cycling through TAG_LEVELS; p > 0 (thin frames, drawn as stripes that cross
    visibly) 1 for every p-th frame, TAG_GROUND for the others."""
    frames = np.asarray(frames)
    safe = np.where(present, frames, 0)
    if period:
        level = np.where(np.mod(safe, int(period)) == 0, 1.0, TAG_GROUND)
    else:
        level = TAG_LEVELS[np.mod(safe, len(TAG_LEVELS))]
    return np.where(present, level, 0.0)


def tag_period(stream_frame, step=1):
    """The ``period`` of ``tag_levels`` for a raster of every ``step``-th row of a run whose
    rows show ``stream_frame``: 0 where frames span WIDE_BAND drawn columns or more."""
    frames = np.asarray(stream_frame)
    changes = int(np.count_nonzero(np.diff(frames))) if len(frames) > 1 else 0
    columns = len(frames) / (changes + 1) / max(int(step), 1)
    if columns >= WIDE_BAND:
        return 0
    return max(WIDE_BAND, int(np.ceil(STRIPE_SPACING / max(columns, 1e-9))))


# The viewer's neuron strips: signed values, negative to positive (brown, grey, teal).
SIGNED = ("#8c510a", "#f6f6f6", "#01665e")


def export():
    """The palette as JSON for the viewer (simulator/view): RGB bytes and hex strings."""
    rgb = {name: to_bytes(c).tolist() for name, c in (
        ("red", RED), ("blue", BLUE), ("purple", PURPLE), ("empty", EMPTY),
        ("ls", from_hex(LS_COLOUR)), ("cursor", from_hex(CURSOR_COLOUR)),
        ("sync", from_hex(SYNC_COLOUR)))}
    rgb["signed"] = [to_bytes(from_hex(c)).tolist() for c in SIGNED]
    return {"rgb": rgb, "floor": FLOOR}
