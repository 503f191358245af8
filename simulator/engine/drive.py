"""Feeding a stream into a tick engine, chunk by chunk (streams into the tick rule):
frames are made on the host and moved to the device once per chunk.
"""
import numpy as np


def repeated_frames(u, y, last):
    """Per tick of a chunk: are its (u, y) those of the tick before (``last``
    for the first)?"""
    same = np.zeros(len(u), dtype=bool)
    flat_u, flat_y = u.reshape(len(u), -1), y.reshape(len(y), -1)
    same[1:] = (flat_u[1:] == flat_u[:-1]).all(axis=1) & (flat_y[1:] == flat_y[:-1]).all(axis=1)
    if last is not None:
        same[0] = np.array_equal(u[0], last[0]) and np.array_equal(y[0], last[1])
    return same


def stream_chunks(stream, ticks, recorder=None, chunk=None):
    """(u, y, frame ids) host chunks of ``ticks`` frames from ``stream``, each
    at most ``chunk`` ticks (default: the recorder's plan.chunk, else 256)."""
    if chunk is None:
        chunk = recorder.plan.chunk if recorder is not None else 256
    for start in range(0, ticks, chunk):
        yield stream.take(min(chunk, ticks - start))

