"""A GIF written one frame at a time: memory O(one frame), whatever the length.

Pillow's GIF writer keeps every frame until the end (it needs them to merge
repeats and to find each frame's changed rectangle), so a long animation
costs its frames' bytes at once. ``GifWriter`` writes the file as it goes
(GIF89a, https://www.w3.org/Graphics/GIF/spec-gif89a.txt):

- at the first frame: the header, the logical screen descriptor, one global
  colour table of 256 entries (the caller's colours, then black) and the
  NETSCAPE2.0 application extension that sets the loop count;
- per frame: a graphic control extension (delay, disposal "do not dispose",
  the transparent index) and an image descriptor placed at the frame's offset,
  followed by the LZW-coded indices. Only the bounding box of the pixels that
  changed since the previous frame is stored, and inside it the unchanged
  pixels become runs of one transparent index (the first index past the
  caller's colours; none when they fill all 256), as Pillow's ``optimize``
  does. A frame identical to the previous one adds its delay to it instead;
- at ``close``: the trailer.

The LZW data comes from Pillow's own C encoder: the changed rectangle is
encoded as a one-frame, non-interlaced 'P' GIF in memory with the same global
palette and ``optimize=False`` (so no index is remapped), and its image data
block is copied. Only the pending frame (its encoded block, to which a repeat
may still add delay), the previous frame's indices and one rectangle are held.
"""
import io

import numpy as np
from PIL import Image

from ..errors import SimulatorError
from ..files import atomic_write

TRAILER = b";"
DISPOSE_NOTHING = 1          # GCE disposal method 1: leave the frame in place


def _u16(value):
    return int(value).to_bytes(2, "little")


def palette_bytes(colours):
    """The 256-entry global colour table (768 bytes) for ``colours`` (k, 3)
    uint8, 1 <= k <= 256: the colours in order, then black."""
    colours = np.asarray(colours)
    if colours.ndim != 2 or colours.shape[1] != 3 or not 1 <= len(colours) <= 256:
        raise SimulatorError(f"GIF palette: expected 1..256 RGB colours (k, 3), "
                             f"got shape {colours.shape}")
    table = np.zeros((256, 3), dtype=np.uint8)
    table[:len(colours)] = colours
    return table.tobytes()


def lzw_block(indices, table):
    """The image data of ``indices`` (h, w) uint8 as a GIF stores it after an
    image descriptor: the LZW minimum code size (8), the data sub-blocks and
    the block terminator. Encoded by Pillow as a one-frame GIF with the global
    colour table ``table`` (768 bytes) and no palette optimisation, so the
    indices are kept one to one."""
    h, w = indices.shape
    image = Image.frombytes("P", (w, h), np.ascontiguousarray(indices, dtype=np.uint8).tobytes())
    image.putpalette(table)
    buf = io.BytesIO()
    image.save(buf, format="GIF", optimize=False, interlace=False)
    return _image_data(buf.getvalue())


def _image_data(gif):
    """The image data block (code size, sub-blocks, terminator) of a
    one-frame GIF, checked to be one non-interlaced image without a local
    colour table."""
    flags = gif[10]
    pos = 13 + (3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0)
    while gif[pos] == 0x21:                             # extensions: skip their sub-blocks
        pos += 2
        while gif[pos]:
            pos += gif[pos] + 1
        pos += 1
    if gif[pos] != 0x2C or gif[pos + 9] & 0xC0:
        raise AssertionError("Pillow wrote an unexpected GIF image block")
    start = pos = pos + 10
    pos += 1                                            # LZW minimum code size
    while gif[pos]:
        pos += gif[pos] + 1
    end = pos + 1
    if gif[end:end + 1] != TRAILER:
        raise AssertionError("Pillow wrote more than one GIF image")
    return gif[start:end]


def changed_box(frame, previous):
    """(top, bottom, left, right) of the pixels where ``frame`` differs from
    ``previous`` and the (bottom - top, right - left) mask of them, or None
    when the two are equal."""
    diff = frame != previous
    rows = np.flatnonzero(diff.any(axis=1))
    if not len(rows):
        return None
    cols = np.flatnonzero(diff.any(axis=0))
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    return (top, bottom, left, right), diff[top:bottom, left:right]


class GifWriter:
    """Writes a looping GIF to the binary file ``file`` frame by frame
    (``add``), each frame a (height, width) uint8 array of indices into
    ``colours`` (k <= 256 RGB rows); every frame is shown ``duration_ms``
    (stored in hundredths of a second, rounded down as Pillow does, after
    repeats are merged); ``loop`` = 0 loops forever. ``close`` writes the rest
    and the trailer; the file itself stays open. ``frames`` counts the frames given, ``stored`` the
    image blocks written."""

    def __init__(self, file, colours, duration_ms, loop=0):
        duration_ms = float(duration_ms)
        if not duration_ms >= 0:
            raise SimulatorError(f"GIF frame duration: expected >= 0 ms, got {duration_ms}")
        self.file = file
        self.colours = len(np.asarray(colours))
        self.table = palette_bytes(colours)
        self.transparent = self.colours if self.colours < 256 else None
        self.duration, self.loop = duration_ms, int(loop)
        self.shape = self.previous = self.pending = None
        self.frames = self.stored = 0
        self.closed = False

    def add(self, frame):
        """Add one frame (height, width) of palette indices."""
        frame = np.asarray(frame)
        if self.closed:
            raise SimulatorError("GIF: frame added after close")
        if frame.ndim != 2 or frame.dtype != np.uint8:
            raise SimulatorError(f"GIF frame: expected (height, width) uint8 palette indices, "
                                 f"got {frame.dtype} {frame.shape}")
        if self.shape is None:
            self._header(frame.shape)
        elif frame.shape != self.shape:
            raise SimulatorError(f"GIF frame: expected {self.shape[0]}x{self.shape[1]} "
                                 f"(height x width) like the first, got {frame.shape}")
        if frame.size and int(frame.max()) >= self.colours:
            raise SimulatorError(f"GIF frame: index {int(frame.max())} past the "
                                 f"{self.colours} palette colours")
        self.frames += 1
        if self.previous is None:
            self._hold(frame, (0, 0), None)
        else:
            change = changed_box(frame, self.previous)
            if change is None:                           # a repeat: show the last one longer
                self.pending[1] += self.duration
                return
            (top, bottom, left, right), mask = change
            region = frame[top:bottom, left:right]
            if self.transparent is not None:
                region = np.where(mask, region, np.uint8(self.transparent))
            self._hold(region, (left, top), self.transparent)
        self.previous = frame.copy()

    def close(self):
        """Write the last frame and the trailer (idempotent)."""
        if self.closed:
            return
        if self.shape is None:
            raise SimulatorError("GIF: no frames to write")
        self._flush()
        self.file.write(TRAILER)
        self.closed = True

    def _header(self, shape):
        h, w = (int(n) for n in shape)
        if not (1 <= h <= 65535 and 1 <= w <= 65535):
            raise SimulatorError(f"GIF frame: expected 1..65535 pixels a side, got {w}x{h}")
        self.shape = (h, w)
        # global colour table present, 8 bits of colour resolution, 256 entries
        self.file.write(b"GIF89a" + _u16(w) + _u16(h) + bytes([0xF7, 0, 0]) + self.table)
        self.file.write(b"!\xff\x0bNETSCAPE2.0\x03\x01" + _u16(self.loop) + b"\x00")

    def _hold(self, region, offset, transparent):
        """Write the frame waiting for its delay, and keep this one's encoding."""
        self._flush()
        self.pending = [lzw_block(region, self.table), self.duration, offset, region.shape,
                        transparent]

    def _flush(self):
        if self.pending is None:
            return
        data, duration, (x, y), (h, w), transparent = self.pending
        packed = DISPOSE_NOTHING << 2 | (transparent is not None)
        self.file.write(b"!\xf9\x04" + bytes([packed]) + _u16(int(duration / 10))
                        + bytes([transparent or 0]) + b"\x00")
        self.file.write(b"," + _u16(x) + _u16(y) + _u16(w) + _u16(h) + b"\x00")
        self.file.write(data)
        self.stored += 1
        self.pending = None


def stream_gif(file, frames, colours, duration_ms, loop=0):
    """Write the frames of the iterable ``frames`` (each (height, width) uint8
    palette indices into ``colours``) to the open binary ``file`` as a GIF,
    one at a time (see GifWriter); returns how many frames were given."""
    writer = GifWriter(file, colours, duration_ms, loop)
    for frame in frames:
        writer.add(frame)
    writer.close()
    return writer.frames


def write_gif(path, frames, colours, duration_ms, loop=0):
    """``stream_gif`` into ``path`` atomically: the GIF appears whole or, when
    making a frame fails, not at all (nothing of it is left behind). Returns
    how many frames were given."""
    count = []
    atomic_write(path, lambda f: count.append(stream_gif(f, frames, colours, duration_ms, loop)),
                 binary=True)
    return count[0]
