"""A GIF written one frame at a time (memory: one frame, whatever the length),
only each frame's changed box stored, its LZW data from Pillow's encoder. The
block layout: docs/design/gifstream.md.
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


def lzw_block(indices, table):
    """The image data block of ``indices`` (h, w) uint8, LZW-coded by Pillow with the
    global colour table ``table`` (768 bytes)."""
    h, w = indices.shape
    image = Image.frombytes("P", (w, h), np.ascontiguousarray(indices, dtype=np.uint8).tobytes())
    image.putpalette(table)
    buf = io.BytesIO()
    image.save(buf, format="GIF", optimize=False, interlace=False)
    gif = buf.getvalue()
    flags = gif[10]
    pos = 13 + (3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0)
    while gif[pos] == 0x21:                             # extensions: skip their sub-blocks
        pos += 2
        while gif[pos]:
            pos += gif[pos] + 1
        pos += 1
    if gif[pos] != 0x2C or gif[pos + 9] & 0xC0:         # no local table, not interlaced
        raise AssertionError("Pillow wrote an unexpected GIF image block")
    start = pos = pos + 10
    pos += 1                                            # LZW minimum code size
    while gif[pos]:
        pos += gif[pos] + 1
    end = pos + 1
    if gif[end:end + 1] != TRAILER:
        raise AssertionError("Pillow wrote more than one GIF image")
    return gif[start:end]


def _write_frame(file, pending):
    """Write a held frame: its graphic control extension, descriptor and data."""
    data, duration, (x, y), (h, w), transparent = pending
    packed = DISPOSE_NOTHING << 2 | (transparent is not None)
    file.write(b"!\xf9\x04" + bytes([packed]) + _u16(int(duration / 10))
               + bytes([transparent or 0]) + b"\x00")
    file.write(b"," + _u16(x) + _u16(y) + _u16(w) + _u16(h) + b"\x00")
    file.write(data)


def stream_gif(file, frames, colours, duration_ms, loop=0):
    """Write ``frames`` ((height, width) uint8 indices into ``colours``, ≤ 256 RGB rows)
    to the binary ``file`` as a GIF looping ``loop`` times (0: forever), each shown
    ``duration_ms`` (rounded down to 10 ms as Pillow does); returns the frame count."""
    duration_ms = float(duration_ms)
    if not duration_ms >= 0:
        raise SimulatorError(f"GIF frame duration: expected >= 0 ms, got {duration_ms}")
    colours = np.asarray(colours)
    if colours.ndim != 2 or colours.shape[1] != 3 or not 1 <= len(colours) <= 256:
        raise SimulatorError(f"GIF palette: expected 1..256 RGB colours (k, 3), "
                             f"got shape {colours.shape}")
    table = np.zeros((256, 3), dtype=np.uint8)          # the colours, then black
    table[:len(colours)] = colours
    table, k = table.tobytes(), len(colours)
    transparent = k if k < 256 else None
    previous = pending = None          # pending: the last frame, which a repeat lengthens
    count = 0
    for frame in frames:
        frame = np.asarray(frame)
        if frame.ndim != 2 or frame.dtype != np.uint8:
            raise SimulatorError(f"GIF frame: expected (height, width) uint8 palette indices, "
                                 f"got {frame.dtype} {frame.shape}")
        if previous is None:
            h, w = frame.shape
            if not (1 <= h <= 65535 and 1 <= w <= 65535):
                raise SimulatorError(f"GIF frame: expected 1..65535 pixels a side, got {w}x{h}")
            # global colour table present, 8 bits of colour resolution, 256 entries
            file.write(b"GIF89a" + _u16(w) + _u16(h) + bytes([0xF7, 0, 0]) + table)
            file.write(b"!\xff\x0bNETSCAPE2.0\x03\x01" + _u16(loop) + b"\x00")
        elif frame.shape != previous.shape:
            raise SimulatorError(f"GIF frame: expected {h}x{w} "
                                 f"(height x width) like the first, got {frame.shape}")
        if frame.size and int(frame.max()) >= k:
            raise SimulatorError(f"GIF frame: index {int(frame.max())} past the "
                                 f"{k} palette colours")
        count += 1
        if previous is None:
            region, offset, clear = frame, (0, 0), None
        else:
            diff = frame != previous
            rows = np.flatnonzero(diff.any(axis=1))
            if not len(rows):                           # a repeat: show the last one longer
                pending[1] += duration_ms
                continue
            cols = np.flatnonzero(diff.any(axis=0))
            top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
            region, offset, clear = frame[top:bottom, left:right], (left, top), transparent
            if transparent is not None:
                region = np.where(diff[top:bottom, left:right], region, np.uint8(transparent))
        if pending is not None:
            _write_frame(file, pending)
        pending = [lzw_block(region, table), duration_ms, offset, region.shape, clear]
        previous = frame.copy()
    if pending is None:
        raise SimulatorError("GIF: no frames to write")
    _write_frame(file, pending)
    file.write(TRAILER)
    return count


def write_gif(path, frames, colours, duration_ms, loop=0):
    """``stream_gif`` into ``path`` atomically: whole or, if a frame fails, not at all."""
    count = []
    atomic_write(path, lambda f: count.append(stream_gif(f, frames, colours, duration_ms, loop)),
                 binary=True)
    return count[0]
