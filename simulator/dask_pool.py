"""A sweep's points as jobs on a Dask distributed cluster (simulator.pool's
counterpart). Nothing waits for ever: a job past its timeout fails with one line
(its thread is abandoned), and so does every unfinished job after ``no_worker_s``
seconds with no worker. Dask is imported only when a scheduler is given.
"""
import concurrent.futures
import logging
import re
import threading
import time

from .errors import SimulatorError

SCHEDULER_TIMEOUT_S = 20  # how long to try reaching a Dask scheduler
WATCH_S = 1.0             # longest a Dask sweep waits between looks at the scheduler
_ADDRESS = re.compile(r"(?:(?:tcp|tls|ws|wss|ucx)://)?"
                      r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})/?")


def check_scheduler(address):
    """``address`` if it is a Dask scheduler address ([protocol://]HOST:PORT or
    inproc://…), else one SimulatorError, before anything connects."""
    if not isinstance(address, str):
        raise SimulatorError("--scheduler: expected an address such as tcp://HOST:PORT, "
                             f"got {address!r}")
    if address.startswith("inproc://") and len(address) > len("inproc://"):
        return address
    match = _ADDRESS.fullmatch(address.strip())
    if match is None or not 1 <= int(match.group(2)) <= 65535:
        raise SimulatorError(f"--scheduler {address!r}: expected a Dask scheduler address such as "
                             "tcp://HOST:PORT or HOST:PORT (port 1..65535)")
    return address.strip()


def distributed_module():
    """The Dask distributed module, or a SimulatorError naming the dist extra."""
    try:
        import distributed
    except ImportError:
        raise SimulatorError("--scheduler needs Dask distributed; install the dist extra: "
                             "pip install -e '.[dist]'") from None
    return distributed


def connect(distributed, scheduler):
    """A Client of the Dask scheduler at ``scheduler``, or one SimulatorError."""
    try:
        return distributed.Client(scheduler, timeout=f"{SCHEDULER_TIMEOUT_S}s")
    except Exception as exc:  # any failure to connect is the address's fault here
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
        raise SimulatorError(f"--scheduler {scheduler!r}: cannot reach the Dask scheduler "
                             f"({reason})") from None


def run_within(timeout_s, fn, fail, timed_out, job):
    """``fn(*job)`` in a thread of its own, as a Dask worker runs it; after ``timeout_s``
    seconds ``fail(job, timed_out(timeout_s))`` instead (the thread is abandoned)."""
    box = {}

    def target():
        box["result"] = fn(*job)

    thread = threading.Thread(target=target, name="tickprop-job", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if "result" in box:
        return box["result"]
    return fail(job, timed_out(timeout_s) if thread.is_alive()
                else "the job ended without a result")


class _WorkerWatch:
    """Tells when a Dask scheduler has had no worker (or was out of reach) for
    ``limit_s`` seconds; a worker seen at any look resets the clock."""

    def __init__(self, client, limit_s):
        self.client, self.limit = client, float(limit_s)
        self.since, self.seen, self.reached = None, False, True

    def lost(self):
        """Look once (one bounded call): the one-line reason past the limit, else None."""
        try:
            n = len(self.client.nthreads(callback_timeout=max(self.limit, WATCH_S)))
        except Exception:  # a scheduler out of reach is a lost cluster here
            n = None
        now = time.monotonic()
        if n:
            self.since, self.seen, self.reached = None, True, True
            return None
        self.reached = n is not None
        self.since = now if self.since is None else self.since
        if now - self.since < self.limit:
            return None
        why = ("the Dask scheduler was out of reach" if not self.reached
               else "no Dask worker (the worker was lost)" if self.seen
               else "no Dask worker (none joined the scheduler)")
        return (f"{why} for {self.limit:g} s (sweep.no_worker_timeout); "
                "re-run the sweep to retry")


def _quiet_loggers(package):
    """Set ``package``'s loggers to CRITICAL; return {logger: old level}."""
    names = [n for n in logging.root.manager.loggerDict
             if n == package or n.startswith(package + ".")]
    levels = {}
    for name in [package] + names:
        log = logging.getLogger(name)
        levels.setdefault(log, log.level)
        log.setLevel(logging.CRITICAL)
    return levels


def _finished(distributed, pending, wait_s):
    """The done futures of ``pending``, waiting at most ``wait_s`` seconds."""
    try:
        return list(distributed.wait(list(pending), timeout=wait_s,
                                     return_when="FIRST_COMPLETED").done)
    except TimeoutError:
        return []
    except concurrent.futures.CancelledError:
        return [f for f in pending if f.done()]


def run_jobs(fn, jobs, timeouts, client, distributed, save, fail, timed_out, no_worker_s):
    """``save`` the result of ``fn(*job)`` for every job, run with its deadline on
    ``client``'s cluster (closed at the end); ``fail(job, message)`` is a failed
    one's. With no worker for ``no_worker_s`` seconds every unfinished job is saved
    failed; on any early exit they are cancelled."""
    futures = {}
    watch = _WorkerWatch(client, no_worker_s)
    wait_s = min(WATCH_S, no_worker_s / 4)
    # A lost scheduler makes Dask log tracebacks while it reconnects, even after
    # close: the sweep says it in one line per point, and Dask stays quiet.
    levels, dropped = _quiet_loggers("distributed"), False
    try:
        watch.lost()                   # a worker there from the start counts as seen
        for job, timeout_s in zip(jobs, timeouts):
            futures[client.submit(run_within, timeout_s, fn, fail, timed_out, job,
                                  pure=False)] = job
        pending = set(futures)
        while pending:
            done = _finished(distributed, pending, wait_s)
            for fut in done:
                pending.discard(fut)
                dropped = dropped or fut.status == "cancelled"
                save(_result_or_failure(fut, futures[fut], fail))
            reason = None if done else watch.lost()
            dropped = dropped or not watch.reached
            if reason is not None:
                if watch.reached:          # a scheduler out of reach cannot be told
                    client.cancel(list(pending))
                for fut in [f for f in futures if f in pending]:
                    pending.discard(fut)
                    save(fail(futures[fut], reason))
    except BaseException:
        if watch.reached:
            client.cancel([f for f in futures if not f.done()])
        raise
    finally:
        client.close()
        if not dropped:
            for log, level in levels.items():
                log.setLevel(level)


def _result_or_failure(fut, job, fail):
    """The job's result, or ``fail``'s if its worker died or Dask cancelled it."""
    try:
        return fut.result()
    except concurrent.futures.CancelledError as exc:
        reason = getattr(exc, "reason", None) or "cancelled"
        return fail(job, f"cancelled by Dask ({reason}); re-run the sweep to retry")
    except Exception as exc:  # a lost worker fails this job only
        return fail(job, f"{type(exc).__name__}: {exc}".splitlines()[0])
