"""Feeding a stream into a tick engine, chunk by chunk (SPEC §2 into §1).

One loop for every engine (the stacked chain engine and the graph engine):
frames are generated on the host ``chunk`` ticks at a time and moved to the
device once per chunk; the recorder, if any, sees every tick and is flushed
once per chunk; the engine's NaN/Inf check runs once per chunk.
"""
import numpy as np


def run_stream(engine, stream, ticks, recorder=None, progress=None, chunk=None):
    """Step ``engine`` ``ticks`` times on frames from ``stream``. ``chunk``
    defaults to the recorder's plan.chunk, else 256. With frozen weights a
    repeated (u, y) is passed to the recorder as ``repeat`` (its reference
    gradient is the one just computed), decided on the host copies so the
    device is never synchronised for it. ``progress(n)`` is called per chunk."""
    frozen = not engine.learning_rate
    if chunk is None:
        chunk = recorder.plan.chunk if recorder is not None else 256
    last = None
    for start in range(0, ticks, chunk):
        n = min(chunk, ticks - start)
        u_host, y_host, frame_ids = stream.take(n)
        u, y = engine.backend.asarray(u_host), engine.backend.asarray(y_host)
        for k in range(n):
            engine.step(u[k, ...], y[k, ...])
            if recorder is not None:
                repeat = frozen and last is not None and np.array_equal(
                    u_host[k], last[0]) and np.array_equal(y_host[k], last[1])
                recorder.record(engine.tick, u[k, ...], y[k, ...], int(frame_ids[k]), repeat)
                last = (u_host[k], y_host[k])
        if recorder is not None:
            recorder.flush()
        engine.check_finite()
        if progress is not None:
            progress(n)
