"""A pool of worker processes for independent jobs that a dead worker cannot spoil
(``ProcessPoolExecutor`` breaks as a whole when one worker dies, waits for running
jobs on Ctrl-C and outlives a killed parent). Each worker holds one job at a time
over its own pipe: one that dies or runs past its job's timeout fails only that job
and is replaced; leaving ``run_jobs`` in any way terminates every worker; workers
ignore SIGINT and die with their parent (PR_SET_PDEATHSIG, and a watchdog thread).
"""
import collections
import contextlib
import ctypes
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1      # linux/prctl.h
WATCH_PARENT_S = 0.5      # how often a worker checks that its parent lives
TERMINATE_GRACE_S = 1.0   # SIGTERM, then SIGKILL after this long


def _die_with_parent(parent_pid):
    """Make this worker exit when the process that started it goes away."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:      # the parent died before prctl took effect
        os._exit(1)

    def watch():
        while True:
            time.sleep(WATCH_PARENT_S)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="tickprop-watch-parent", daemon=True).start()


def _worker(conn, parent_pid, func, initializer):
    """Worker main loop: receive (index, args), send (index, ok, value)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(parent_pid)
    if initializer is not None:
        initializer()
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        index, args = message
        try:
            reply = (index, True, func(*args))
        except Exception as exc:  # the job's failure goes back to the parent as data
            reply = (index, False, f"{type(exc).__name__}: {exc}".splitlines()[0])
        conn.send(reply)


class _Slot:
    """One live worker: its process, its end of the pipe, the job it holds."""

    def __init__(self, ctx, func, initializer):
        self.conn, child = ctx.Pipe(duplex=True)
        self.process = ctx.Process(target=_worker, args=(child, os.getpid(), func, initializer),
                                   daemon=True, name="tickprop-worker")
        self.process.start()
        child.close()
        self.job, self.deadline = None, None

    def give(self, index, args, timeout):
        self.job = index
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.conn.send((index, args))

    def death_message(self):
        self.process.join(TERMINATE_GRACE_S)
        code = self.process.exitcode
        how = (f"killed by signal {-code}" if code is not None and code < 0
               else f"exit code {code}")
        return f"worker process {self.process.pid} died ({how}) while running this point"


def run_jobs(func, jobs, workers, on_result, timeouts, timed_out, initializer=None,
             fresh=False):
    """``func(*args)`` for every ``args`` in ``jobs`` in ``workers`` processes;
    ``on_result(index, ok, value)`` in the parent as each ends: True and the value,
    or False and one line (func's exception, "worker process N died (...)", or
    ``timed_out(seconds)`` past the job's ``timeouts`` entry, if any). Every worker
    is terminated before this returns or raises. ``fresh``: spawn, not fork (CUDA
    does not survive a fork; ``func`` and ``initializer`` must be importable)."""
    fork = "fork" in multiprocessing.get_all_start_methods() and not fresh
    ctx = multiprocessing.get_context("fork" if fork else "spawn")
    pending = collections.deque(enumerate(jobs))
    timeouts = list(timeouts)
    slots = []
    try:
        while pending or any(s.job is not None for s in slots):
            while pending and len(slots) < workers:
                slots.append(_Slot(ctx, func, initializer))
            for slot in slots:
                if slot.job is None and pending:
                    index, args = pending.popleft()
                    try:
                        slot.give(index, args, timeouts[index])
                    except (BrokenPipeError, OSError):
                        pass    # found dead below, through its sentinel
            busy = [s for s in slots if s.job is not None]
            waitables = [s.conn for s in busy] + [s.process.sentinel for s in busy]
            deadlines = [s.deadline for s in busy if s.deadline is not None]
            wait_s = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
            ready = set(multiprocessing.connection.wait(waitables, wait_s))
            for slot in _past_deadline(busy, ready):
                index, slot.job = slot.job, None
                slots.remove(slot)
                _stop([slot])
                on_result(index, False, timed_out(timeouts[index]))
            for slot in [s for s in busy if s.job is not None]:
                reply = None
                if slot.conn in ready:
                    with contextlib.suppress(EOFError, OSError):
                        reply = slot.conn.recv()
                if reply is not None:
                    slot.job = None
                    on_result(*reply)
                elif slot.conn in ready or slot.process.sentinel in ready:
                    index, slot.job = slot.job, None
                    slots.remove(slot)
                    slot.conn.close()
                    on_result(index, False, slot.death_message())
    finally:
        _stop(slots)


def _past_deadline(busy, ready):
    """The busy slots past their deadline without a reply or a death."""
    now = time.monotonic()
    return [s for s in busy if s.deadline is not None and now >= s.deadline
            and s.conn not in ready and s.process.sentinel not in ready]


def _stop(slots):
    """Terminate every worker (they hold no files), kill those left after a grace, reap all."""
    for slot in slots:
        if slot.process.is_alive():
            slot.process.terminate()
    deadline = time.monotonic() + TERMINATE_GRACE_S
    for slot in slots:
        slot.process.join(max(0.0, deadline - time.monotonic()))
        if slot.process.is_alive():
            slot.process.kill()
            slot.process.join()
        slot.conn.close()

