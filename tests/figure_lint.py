"""The oracle of tests/test_figure_lint.py, a check that a drawn figure reads
well: every text inside the canvas, no text over another, legends and tick
labels large enough, a key on every heat map (simulator.render.lint marks how).

``lint_figure(fig)`` draws the figure (Agg) and returns one line per problem
(an empty list when the figure passes). It looks only at texts that were
actually drawn (a tick label outside the view, an empty string or an invisible
text is not there for a reader), and measures each in display pixels:

- a text whose box leaves the canvas by more than TOLERANCE_PX;
- two texts whose boxes intersect by more than TOLERANCE_PX both ways (rotated
  texts are compared as rotated rectangles, so slanted tick labels side by side
  do not count as touching);
- a legend text or tick label smaller than MIN_FONT_PT points;
- a heat map (an ``AxesImage`` or ``QuadMesh`` in an axes that is not itself a
  colorbar) with no key. An image is keyed when a colorbar of the figure draws
  it (``fig.colorbar(image)``); or when ``mark_keyed(image, colorbar)`` says
  so (an RGB image shaded through a colormap keys itself with a colorbar of a
  stand-in ``ScalarMappable``: the image and the colorbar's axes then share a
  gid); or when it is marked categorical with ``mark_categorical(image)`` (gid
  CATEGORICAL_GID: its colours are classes, e.g. frame numbers) and the figure
  has a legend.
"""
import contextlib

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import QuadMesh
from matplotlib.image import AxesImage
from matplotlib.legend import Legend
from matplotlib.text import Text

from simulator.render.lint import CATEGORICAL_GID

TOLERANCE_PX = 2.0
MIN_FONT_PT = 8.0


@contextlib.contextmanager
def _recording_texts(drawn):
    """While active, every Text that really draws is appended to ``drawn``."""
    original = Text.draw

    def draw(self, renderer):
        if self.get_visible() and self.get_text() != "":
            drawn.append(self)
        return original(self, renderer)

    Text.draw = draw
    try:
        yield
    finally:
        Text.draw = original


def drawn_texts(fig):
    """Draw ``fig`` on an Agg canvas; return (renderer, the Texts that drew)."""
    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    drawn = []
    with _recording_texts(drawn):
        fig.canvas.draw()
    unique = list({id(t): t for t in drawn}.values())
    return fig.canvas.get_renderer(), unique


def _describe(text):
    """A short quoted form of a Text's string (or of a string) for a message."""
    s = " ".join(str(text.get_text() if isinstance(text, Text) else text).split())
    return repr(s if len(s) <= 40 else s[:37] + "...")


def _corners(text, renderer):
    """The drawn rectangle of ``text`` as 4 display-space corners (rotation kept)."""
    box = text.get_window_extent(renderer)
    angle = np.deg2rad(text.get_rotation() % 180.0)
    if abs(np.sin(angle)) < 1e-9 or abs(np.cos(angle)) < 1e-9:
        return np.array([[box.x0, box.y0], [box.x1, box.y0], [box.x1, box.y1], [box.x0, box.y1]])
    rotation = text.get_rotation()
    text.set_rotation(0)
    try:
        flat = text.get_window_extent(renderer)
    finally:
        text.set_rotation(rotation)
    w, h = flat.width / 2, flat.height / 2
    c, s = np.cos(angle), np.sin(angle)
    centre = np.array([(box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2])
    local = np.array([[-w, -h], [w, -h], [w, h], [-w, h]])
    return centre + local @ np.array([[c, s], [-s, c]])


def _overlap(a, b):
    """How deep convex polygons ``a`` and ``b`` (corners in order) intersect:
    the smallest overlap of their projections over both polygons' edge
    normals (separating axis theorem); <= 0 when they do not touch."""
    depth = np.inf
    for poly in (a, b):
        edges = np.roll(poly, -1, axis=0) - poly
        for nx, ny in edges:
            norm = np.hypot(nx, ny)
            if norm == 0:
                continue
            axis = np.array([-ny, nx]) / norm
            pa, pb = a @ axis, b @ axis
            depth = min(depth, min(pa.max(), pb.max()) - max(pa.min(), pb.min()))
    return depth


def _small_fonts(fig, drawn):
    """Drawn legend texts and tick labels below MIN_FONT_PT."""
    kinds = {}
    for legend in fig.findobj(Legend):
        for t in list(legend.get_texts()) + [legend.get_title()]:
            kinds[id(t)] = "legend text"
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                kinds[id(tick.label1)] = kinds[id(tick.label2)] = "tick label"
    problems = []
    for t in drawn:
        kind = kinds.get(id(t))
        if kind and t.get_fontsize() < MIN_FONT_PT - 1e-9:
            problems.append(f"{kind} {_describe(t)} is {t.get_fontsize():g} pt "
                            f"(at least {MIN_FONT_PT:g} pt)")
    return problems


def _unkeyed_heatmaps(fig):
    """Heat maps in an axes with neither a colorbar nor a categorical mark + legend."""
    colorbars = [ax._colorbar for ax in fig.axes if getattr(ax, "_colorbar", None) is not None]
    bar_axes = {id(cb.ax) for cb in colorbars}
    keyed_gids = {cb.ax.get_gid() for cb in colorbars} - {None}
    has_legend = bool(fig.findobj(Legend))
    problems = []
    for ax in fig.axes:
        if id(ax) in bar_axes or not ax.get_visible():
            continue
        maps = list(ax.images) + [c for c in ax.collections if isinstance(c, QuadMesh)]
        for image in maps:
            if not image.get_visible():
                continue
            if any(cb.mappable is image for cb in colorbars):
                continue
            gid = image.get_gid()
            if gid is not None and gid in keyed_gids:
                continue
            if gid == CATEGORICAL_GID and has_legend:
                continue
            kind = "image" if isinstance(image, AxesImage) else "mesh"
            where = ax.get_title() or ax.get_ylabel() or "an axes"
            why = ("marked categorical but the figure has no legend" if gid == CATEGORICAL_GID
                   else "has no colorbar (nor a categorical mark with a legend)")
            problems.append(f"heat map ({kind}) in {_describe(where)} {why}")
    return problems


def lint_figure(fig):
    """Problems of a matplotlib Figure as a reader would meet them, after
    drawing it: texts partly outside the canvas, texts overlapping each other
    by more than TOLERANCE_PX, legend texts and tick labels under MIN_FONT_PT
    points, heat maps without a colorbar (or, for a ``mark_categorical``
    image, without a legend). Returns a list of one-line descriptions, empty
    when the figure passes."""
    renderer, drawn = drawn_texts(fig)
    width, height = fig.canvas.get_width_height()
    problems = []
    boxes = []
    for t in drawn:
        box = t.get_window_extent(renderer)
        if not np.all(np.isfinite([box.x0, box.y0, box.x1, box.y1])):
            continue
        if (box.x0 < -TOLERANCE_PX or box.y0 < -TOLERANCE_PX or box.x1 > width + TOLERANCE_PX
                or box.y1 > height + TOLERANCE_PX):
            problems.append(f"text {_describe(t)} leaves the {width}x{height} canvas "
                            f"(box x {box.x0:.0f}..{box.x1:.0f}, y {box.y0:.0f}..{box.y1:.0f})")
        boxes.append((t, box))
    for i, (a, box_a) in enumerate(boxes):
        corners_a = None
        for b, box_b in boxes[i + 1:]:
            if (min(box_a.x1, box_b.x1) - max(box_a.x0, box_b.x0) <= TOLERANCE_PX
                    or min(box_a.y1, box_b.y1) - max(box_a.y0, box_b.y0) <= TOLERANCE_PX):
                continue
            corners_a = _corners(a, renderer) if corners_a is None else corners_a
            if _overlap(corners_a, _corners(b, renderer)) > TOLERANCE_PX:
                problems.append(f"text {_describe(a)} overlaps text {_describe(b)}")
    problems += _small_fonts(fig, drawn)
    problems += _unkeyed_heatmaps(fig)
    return problems


__all__ = ["MIN_FONT_PT", "TOLERANCE_PX", "drawn_texts", "lint_figure"]
