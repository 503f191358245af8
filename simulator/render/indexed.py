"""GIF frames composed in numpy as indices into one fixed palette (no per-frame
quantizing), over a static matplotlib figure drawn once (``IndexedFigure``), with
glyphs rendered once; and the GIF size and frame-count rules.
"""
import functools

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from ..errors import SimulatorError
from ..analysis import palette

DEFAULT_FPS = 20
MAX_FPS = 50            # browsers clamp shorter GIF delays
MAX_FRAMES = 600        # beyond this the frame step grows (memory and file size)
# The frames' indices (1 byte a pixel) take at most this: a large GIF gets fewer.
MAX_GIF_BYTES = 512 * 2 ** 20
# One GIF palette entry stays free for the encoder's transparent 'unchanged' pixels.
PALETTE_COLOURS = 254
LUT_BLOCK = 4096        # colours of the 32³ lookup cube matched to the palette at once
DPI = 100
# Inks of the wave GIF, always in the palette.
NOT_A_NEURON = np.array([1.0, 1.0, 1.0])
GRAY_BAR = np.array([0.33, 0.33, 0.33])
CURSOR = np.array([0.07, 0.07, 0.07])

DEFAULT_SIZE = (720, 400)     # GIF width and height in pixels
GLYPH_ORIGIN = 2              # pixels left of a glyph in its mask
FONT = 9                      # points at the default size (tags and labels one less)


def check_size(size):
    """(width, height) in pixels, each within 320..4000 x 200..4000."""
    try:
        w, h = (int(v) for v in size)
    except (TypeError, ValueError):
        raise SimulatorError(f"size: expected (width, height) in pixels, got {size!r}") from None
    if not (320 <= w <= 4000 and 200 <= h <= 4000):
        raise SimulatorError(f"size: expected 320..4000 x 200..4000 pixels, got {w}x{h}")
    return w, h


def frame_limit(width, height):
    """How many frames of ``width`` x ``height`` pixels a GIF may hold."""
    return int(max(1, min(MAX_FRAMES, MAX_GIF_BYTES // max(int(width) * int(height), 1))))


def frame_step(ticks, every=1, max_frames=MAX_FRAMES):
    """The step between GIF frames: ``every``, grown until ``ticks`` give ≤ ``max_frames``."""
    if isinstance(every, bool) or int(every) != every or every < 1:
        raise SimulatorError(f"every: expected an integer >= 1, got {every!r}")
    return max(int(every), -(-int(ticks) // int(max_frames)))


def gif_duration(fps=DEFAULT_FPS):
    """Milliseconds a GIF frame is shown at ``fps`` (> 0) frames a second, at most MAX_FPS."""
    fps = float(fps)
    if not fps > 0:
        raise SimulatorError(f"fps: expected a positive number, got {fps}")
    return 1000.0 / min(fps, MAX_FPS)


def _nearest(rgb, pal):
    """Nearest colour of ``pal`` to each row of ``rgb``, by |c − p|² = |c|² − 2c·p + |p|²."""
    return ((rgb ** 2).sum(1)[:, None] - 2.0 * rgb @ pal.T + (pal ** 2).sum(1)[None, :]).argmin(1)


class IndexedPalette:
    """≤ 256 colours (waves, inks, and what Pillow's quantizer finds in the static
    background) and a 32³ lookup table from RGB to the nearest one."""

    def __init__(self, background_rgb):
        levels = np.linspace(0.0, 1.0, 10)
        f, b = np.meshgrid(levels, levels)
        white = np.ones(3)
        inks = (palette.RED, palette.BLUE, palette.from_hex(palette.LS_COLOUR), np.zeros(3),
                GRAY_BAR)
        ramps = [white + a * (ink - white) for ink in inks for a in np.linspace(0.125, 1.0, 8)]
        specials = [palette.EMPTY * 0.9, NOT_A_NEURON, CURSOR, np.array([0.867, 0.867, 0.867])]
        fixed = np.unique(palette.to_bytes(np.vstack([palette.mix(f.ravel(), b.ravel()),
                                                      np.array(ramps), np.array(specials)])),
                          axis=0)
        extra, free = np.zeros((0, 3), dtype=np.uint8), PALETTE_COLOURS - len(fixed)
        if free > 0:            # what else the background needs, by Pillow's quantizer
            image = Image.fromarray(np.ascontiguousarray(background_rgb))
            image = image.quantize(colors=free, dither=0)
            pal = np.array(image.getpalette()[:3 * 256], dtype=np.uint8).reshape(-1, 3)
            extra = pal[np.unique(np.asarray(image))]
        self.colours = np.unique(np.vstack([fixed, extra]), axis=0)[:PALETTE_COLOURS]
        grid = (np.arange(32) * 8 + 4).astype(np.float32)
        cube = np.stack(np.meshgrid(grid, grid, grid, indexing="ij"), axis=-1).reshape(-1, 3)
        lut = np.empty(len(cube), dtype=np.uint8)
        # by blocks: the whole cube's distances would take 33 MB, several times over
        for a in range(0, len(cube), LUT_BLOCK):
            lut[a:a + LUT_BLOCK] = _nearest(cube[a:a + LUT_BLOCK], self.colours.astype(np.float32))
        self.lut = lut.reshape(32, 32, 32)

    def index_exact(self, rgb):
        """Exact nearest palette indices (for the background's few colours: white stays)."""
        rgb = np.asarray(rgb, dtype=np.uint8)
        unique, inverse = np.unique(rgb.reshape(-1, 3), axis=0, return_inverse=True)
        nearest = _nearest(unique.astype(np.float32), self.colours.astype(np.float32))
        nearest = nearest.astype(np.uint8)
        return nearest[inverse.ravel()].reshape(rgb.shape[:-1])

    def index(self, rgb):
        """Palette indices (uint8) for uint8 RGB (..., 3), through the lookup table."""
        q = np.asarray(rgb, dtype=np.uint8) >> 3
        return self.lut[q[..., 0], q[..., 1], q[..., 2]]

    def index_float(self, rgb):
        """Palette indices for RGB floats in [0, 1]."""
        return self.index(palette.to_bytes(rgb))


class Glyphs:
    """Coverage masks of characters, rendered once by Agg at one font size."""

    def __init__(self, fontsize, dpi=DPI):
        self.px = fontsize * dpi / 72.0
        self.height = int(np.ceil(1.5 * self.px)) + 2
        self.base_row = int(np.ceil(1.15 * self.px))       # baseline, rows from the top
        self.side = side = 4 * self.height
        fig = Figure(figsize=(side / dpi, side / dpi), dpi=dpi)
        self.canvas = FigureCanvasAgg(fig)
        bottom = self.height - 1 - self.base_row
        self.text = fig.text(GLYPH_ORIGIN / side, (bottom + 0.5) / side, "", fontsize=fontsize,
                             color="black", va="baseline", ha="left")
        self.cache = {}

    def glyph(self, ch):
        """(coverage (height, width) floats in [0, 1], advance in pixels)."""
        if ch not in self.cache:
            self.text.set_text(ch if ch.strip() else "")
            self.canvas.draw()
            grey = np.asarray(self.canvas.buffer_rgba())[self.side - self.height:, :, 0]
            coverage = 1.0 - grey.astype(float) / 255.0
            advance = (self.text.get_window_extent(self.canvas.get_renderer()).width
                       if ch.strip() else 0.32 * self.px)
            cols = int(np.ceil(advance)) + 4
            self.cache[ch] = (coverage[:, :cols].copy(), float(advance))
        return self.cache[ch]

    def mask(self, text):
        """Coverage of a whole string (height, width) and its width in pixels."""
        parts, pen = [], 0.0
        for ch in text:
            cover, advance = self.glyph(ch)
            parts.append((int(round(pen)), cover))
            pen += advance
        width = max([x + c.shape[1] for x, c in parts], default=1)
        out = np.zeros((self.height, width))
        for x, cover in parts:
            np.maximum(out[:, x:x + cover.shape[1]], cover, out=out[:, x:x + cover.shape[1]])
        return out, pen


@functools.lru_cache(maxsize=16)
def glyphs_for(fontsize, dpi=DPI):
    """The Glyphs of one font size and resolution, shared by the process."""
    return Glyphs(fontsize, dpi)


class IndexedFigure:
    """A GIF's static figure: a subclass draws on ``self.fig`` between ``_start`` and
    ``_index_background`` and composes a frame of palette indices in ``indices``."""

    def _start(self, size):
        """The empty figure of ``size`` pixels, at DPI × its scale to DEFAULT_SIZE."""
        self.width, self.height = check_size(size)
        self.scale = min(self.width / DEFAULT_SIZE[0], self.height / DEFAULT_SIZE[1])
        self.dpi = DPI * self.scale
        self.fig = Figure(figsize=((self.width + 0.01) / self.dpi,
                                   (self.height + 0.01) / self.dpi), dpi=self.dpi)
        self.canvas = FigureCanvasAgg(self.fig)
        return self.fig

    def _index_background(self):
        """Draw the figure and index it: the palette picks its colours up from it."""
        self.canvas.draw()
        rgb = np.asarray(self.canvas.buffer_rgba())[..., :3].copy()
        assert rgb.shape[:2] == (self.height, self.width), rgb.shape
        self.palette = IndexedPalette(rgb)
        self.background = self.palette.index_exact(rgb)
        self.background_rgb = rgb
        self._text_cache = {}

    def render(self, t):
        """The frame for tick ``t`` as uint8 RGB (height, width, 3)."""
        return self.palette.colours[self.indices(t)]

    def _to_pixel(self, ax, x, y):
        """Data (x, y) of ``ax`` -> (column, row) pixel floats, row 0 at the top."""
        dx, dy = ax.transData.transform((x, y))
        return dx, self.height - dy

    def _pixel_grid(self, ax, x1, y1):
        """(pixel box of ``ax``'s data (−0.5, −0.5)..(x1, y1), data x, y of its pixels)."""
        (c0, r1), (c1, r0) = self._to_pixel(ax, -0.5, -0.5), self._to_pixel(ax, x1, y1)
        box = (int(np.ceil(r0)), int(np.floor(r1)), int(np.ceil(c0)), int(np.floor(c1)))
        top, bottom, left, right = box
        inv = ax.transData.inverted()
        cols = np.arange(left, right) + 0.5
        rws = np.arange(top, bottom) + 0.5
        xs = inv.transform(np.column_stack([cols, np.zeros_like(cols)]))[:, 0]
        ys = inv.transform(np.column_stack([np.zeros_like(rws), self.height - rws]))[:, 1]
        return box, xs, ys

    def _paint_text(self, frame, glyphs, text, x, bottom_row, colour, anchor):
        """Blend ``text`` in ``colour`` over the background, the glyph box's bottom at
        pixel row ``bottom_row``; over one colour the patch is made once, then pasted."""
        mask, width = glyphs.mask(text)
        # Glyphs are drawn GLYPH_ORIGIN pixels into their masks.
        left = int(round(x - GLYPH_ORIGIN
                         - {"left": 0.0, "center": width / 2, "right": width}[anchor]))
        top = int(round(bottom_row)) - glyphs.height
        h, w = mask.shape
        r0, c0 = max(top, 0), max(left, 0)
        r1, c1 = min(top + h, self.height), min(left + w, self.width)
        if r1 <= r0 or c1 <= c0:
            return
        under = self.background[r0:r1, c0:c1]
        uniform = bool((under == under.flat[0]).all())
        key = (id(glyphs), text, tuple(np.round(colour, 4)), int(under.flat[0]),
               r0 - top, c0 - left, r1 - r0, c1 - c0)
        if uniform and key in self._text_cache:
            patch, ink = self._text_cache[key]
        else:
            a = mask[r0 - top:r1 - top, c0 - left:c1 - left, None]
            below = self.background_rgb[r0:r1, c0:c1].astype(float) / 255.0
            patch = self.palette.index_float(below * (1.0 - a) + np.asarray(colour) * a)
            ink = a[..., 0] > 0.02
            if uniform:
                self._text_cache[key] = (patch, ink)
        region = frame[r0:r1, c0:c1]
        region[ink] = patch[ink]
