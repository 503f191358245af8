"""How many BLAS threads a run uses, chosen once per process and reported (README
"BLAS threads"). A tick's matrix products are small: a second BLAS thread helps a
large network on a quiet machine (about 1.75× at width 1024, batch 64) but costs ×10
and more on busy cores, where BLAS threads spin.
"""
import os

from threadpoolctl import threadpool_info, threadpool_limits

from .errors import SimulatorError

MAX_AUTO = 4
_LIMITER = None   # the process-wide limit in force (kept so it stays applied)
_REQUESTED = 0    # run.threads / --threads of the current run (0: automatic)
_WORKER = False   # this process is one of several workers (a sweep's)


def usable_cores():
    """Cores this process may run on (its CPU affinity where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:    # not on Linux
        return os.cpu_count() or 1


def choose(requested=0, workers=1, load=None, cores=None):
    """(threads, why): ``requested`` > 0 wins; else 1 for ``workers`` > 1 or a busy
    machine (``load`` ≥ cores / 2), else the usable cores up to MAX_AUTO."""
    if isinstance(requested, bool) or not isinstance(requested, int) or requested < 0:
        raise SimulatorError(f"threads: expected an integer >= 0 (0 = automatic), "
                             f"got {requested!r}")
    if requested:
        return requested, "set by run.threads / --threads"
    cores = usable_cores() if cores is None else int(cores)
    if workers > 1:
        return 1, f"automatic: one per process ({workers} workers share the machine)"
    load = os.getloadavg()[0] if load is None else float(load)
    if load >= cores / 2:
        return 1, f"automatic: the machine is busy (load {load:.1f} on {cores} cores)"
    n = max(1, min(cores, MAX_AUTO))
    return n, f"automatic: {cores} usable cores, load {load:.1f}"


def apply(threads):
    """Limit every BLAS library loaded to ``threads`` (threadpoolctl: environment
    variables act only before numpy loads)."""
    global _LIMITER
    _LIMITER = threadpool_limits(limits=int(threads), user_api="blas")


def one_blas_thread():
    """A context manager holding BLAS to one thread, for work running its own threads."""
    return threadpool_limits(limits=1, user_api="blas")


def report(threads, why):
    """What run.json records: the threads, why, and each BLAS library's threads."""
    libs = [{"library": i.get("internal_api"), "version": i.get("version"),
             "threads": i.get("num_threads")}
            for i in threadpool_info() if i.get("user_api") == "blas"]
    return {"blas_threads": int(threads), "why": why, "libraries": libs}


def worker():
    """Mark this process as a sweep's worker: one BLAS thread unless a scene asks."""
    global _WORKER
    _WORKER = True
    apply(1)


def own_threads():
    """Python threads for work that runs its own (one BLAS thread each): what --threads
    asked, 1 in a sweep worker, else the usable cores up to MAX_AUTO (no load test:
    waiting Python threads sleep, idle BLAS threads spin)."""
    if _REQUESTED:
        return _REQUESTED
    return 1 if _WORKER else max(1, min(usable_cores(), MAX_AUTO))


def setup(requested=0):
    """Choose, apply and report (every run's entry, kinds.run_scene)."""
    global _REQUESTED
    _REQUESTED = 0 if isinstance(requested, bool) or not isinstance(requested, int) else requested
    threads, why = choose(requested, 2 if _WORKER else 1)
    apply(threads)
    return report(threads, why)

