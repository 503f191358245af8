"""Feeding a stream into a tick engine, chunk by chunk (streams into the tick rule):
frames are made on the host and moved to the device once per chunk.
"""
import numpy as np


def changed_rows(flat, maybe=None):
    """Per row of ``flat`` (n, m): does it differ from the row before (row 0: yes)?
    First values are compared first, whole rows only where those agree; ``maybe``
    (n,) marks the rows that can differ at all (the others copy the row before)."""
    new = np.ones(len(flat), dtype=bool)
    new[1:] = flat[1:, 0] != flat[:-1, 0]
    same = ~new[1:] if maybe is None else ~new[1:] & maybe[1:]
    check = np.flatnonzero(same) + 1
    new[check] = (flat[check] != flat[check - 1]).any(axis=1)
    return new


def repeated_frames(u, y, last):
    """Per tick of a chunk: are its (u, y) those of the tick before (``last``
    for the first)?"""
    n = len(u)
    same = ~(changed_rows(u.reshape(n, -1)) | changed_rows(y.reshape(n, -1)))
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

