"""Feeding a stream into a tick engine, chunk by chunk (SPEC §2 into §1):
frames made on the host and moved to the device once per chunk, the recorder
flushed and the NaN/Inf flags read once per chunk.
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


def run_stream(engine, stream, ticks, recorder=None, progress=None, chunk=None):
    """Step ``engine`` ``ticks`` times on frames from ``stream`` (chunks as
    ``stream_chunks``). With frozen weights a repeated (u, y) reaches the
    recorder as ``repeat`` (decided on the host copies); ``progress(n)`` per chunk."""
    frozen = not engine.learning_rate
    last = None
    for u_host, y_host, frame_ids in stream_chunks(stream, ticks, recorder, chunk):
        n = len(u_host)
        u, y = engine.backend.asarray(u_host), engine.backend.asarray(y_host)
        if recorder is not None:
            repeats = repeated_frames(u_host, y_host, last) if frozen else np.zeros(n, dtype=bool)
            last = (u_host[-1], y_host[-1])
            ids = frame_ids.tolist()
        for k in range(n):
            engine.step(u[k, ...], y[k, ...])
            if recorder is not None:
                recorder.record(engine.tick, u[k, ...], y[k, ...], ids[k], bool(repeats[k]))
        if recorder is not None:
            recorder.flush()
        engine.check_finite()
        if progress is not None:
            progress(n)
