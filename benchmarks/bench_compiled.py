"""Ticks per second of the compiled executor (simulator.engine.compiled, jax
jit + lax.scan of the graph engine's step) against the numpy GraphEngine
(its fast path; the engine Engine(Model) builds), measured in the same run:
interleaved rounds, fastest round of each, after a warm-up (compilation and
first-call allocations stay out; the compile time of each chunk length is
reported on its own, as the CPU time of the first scan of that length).
Prints a table; never asserts.

    python benchmarks/bench_compiled.py [--quick] [--threads 1] [--chunk 256]

Sizes (chains: tanh hidden layers, linear output, mse; frozen and learning):
  paper     L = 9,  width 16,   batch 1,  float64
  medium    L = 6,  width 128,  batch 16, float64
  large     L = 4,  width 1024, batch 64, float32
  deep      L = 64, width 32,   batch 8,  float64
and the graphs of two shipped scenes with their own options (batch, rule):
  residual  scenes/residual_levelling.toml (dense + add, unlevelled)
  conv      scenes/conv_digits.toml (conv2d, avg pool, flatten, dense)

Both sides get the same number of threads (default 1: the machine is
usually shared, and one thread per process is what a sweep runs): BLAS
through OPENBLAS/OMP/MKL_NUM_THREADS, XLA through its Eigen pool flags and,
for one thread, the process pinned to one core. The
script re-runs itself with those variables and glibc told to keep freed
memory for reuse (as bench_pc.py does), so fresh multi-MB arrays do not
page-fault on every numpy tick. Rates are ticks per second of the process's
CPU time (``time.process_time``, all its threads), not of the wall clock:
on a shared machine the wall clock mostly measures how long the process
waited for a core, while CPU time still counts only its own work (cache and
memory-bandwidth contention from neighbours remain). ``--wall`` times the
wall clock instead (right on a quiet machine). The load average is printed
beside the numbers.
"""
import argparse
import os
import sys
import time

ALLOCATOR = {"MALLOC_MMAP_THRESHOLD_": str(256 << 20), "MALLOC_TRIM_THRESHOLD_": str(1 << 30)}
SIZES = {  # name: (depth, width, batch, dtype, numpy ticks per round)
    "paper": (9, 16, 1, "float64", 2000),
    "medium": (6, 128, 16, "float64", 500),
    "large": (4, 1024, 64, "float32", 16),
    "deep": (64, 32, 8, "float64", 200),
}
SCENES = {"residual": ("residual_levelling", 2000), "conv": ("conv_digits", 500)}
COMPILE_CHUNKS = (64, 256)


def _threads_env(threads):
    n = str(threads)
    return {"OPENBLAS_NUM_THREADS": n, "OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n,
            "XLA_FLAGS": (f"--xla_cpu_multi_thread_eigen={'true' if threads > 1 else 'false'} "
                          f"intra_op_parallelism_threads={n}")}


def _reexec(threads):
    """Run again with the thread and allocator settings in the environment
    (they are read once, when numpy and jax load)."""
    if os.environ.get("TICKPROP_BENCH_CHILD") == "1" or not sys.platform.startswith("linux"):
        return
    if threads == 1:
        # One pinned core: XLA sizes its intra-op pool from the CPUs it may
        # use (the XLA_FLAGS above only reach its Eigen matmuls) and would
        # otherwise split even tiny loop fusions across threads.
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    env = {**os.environ, **ALLOCATOR, **_threads_env(threads), "TICKPROP_BENCH_CHILD": "1"}
    os.execve(sys.executable, [sys.executable, *sys.argv], env)


CLOCK = time.process_time


def _case(name, learning_rate, chunk):
    """(model, engine keywords, U, Y, numpy ticks per round) of one size."""
    import numpy as np

    from simulator import Model
    from simulator.build import build
    from simulator.scene import apply_overrides, load

    rng = np.random.default_rng(0)
    if name in SIZES:
        L, W, B, dtype, n_np = SIZES[name]
        model = Model.chain([W] * (L + 1), ["tanh"] * (L - 1) + ["linear"], seed=0)
        kw = dict(batch=B, dtype=dtype)
    else:
        scene, n_np = SCENES[name]
        _, resolved = load(scene)
        resolved = apply_overrides(resolved, [f"rule.learning_rate={learning_rate!r}"], scene)
        parts = build(resolved)
        model, kw = parts.network, dict(parts.engine_args)
        dtype = kw.get("dtype", "float64")
    kw["learning_rate"] = learning_rate
    B = kw["batch"]
    U = rng.normal(size=(chunk, B) + tuple(model.input_shape)).astype(dtype)
    Y = rng.normal(size=(chunk, B) + tuple(model.output_shape)).astype(dtype)
    return model, kw, U, Y, min(n_np, chunk)


def measure(name, learning_rate, chunk, rounds):
    """(numpy ticks/s, compiled ticks/s, {chunk length: compile s}) at size
    ``name``, fastest round of each."""
    # Imported here, not at the top: numpy and jax read their thread settings
    # when they load, which must happen after _reexec has set them.
    from simulator.engine.compiled import CompiledEngine
    from simulator.engine.tick import GraphEngine

    model, kw, U, Y, n_np = _case(name, learning_rate, chunk)
    eng, comp = GraphEngine(model, **kw), CompiledEngine(model, **kw)
    compile_s = {}
    for n in sorted(set(COMPILE_CHUNKS) | {chunk}):
        t = CLOCK()
        comp.run_chunk(U[:n] if n <= chunk else U.repeat(-(-n // chunk), 0)[:n],
                       Y[:n] if n <= chunk else Y.repeat(-(-n // chunk), 0)[:n])
        compile_s[n] = CLOCK() - t

    def numpy_round():
        t = CLOCK()
        for k in range(n_np):
            eng.step(U[k], Y[k])
        eng.check_finite()
        return n_np / (CLOCK() - t)

    def compiled_round():
        t = CLOCK()
        comp.run_chunk(U, Y)
        return chunk / (CLOCK() - t)

    numpy_round(), compiled_round()                      # warm-up: allocate
    best_np = best_c = 0.0
    for _ in range(rounds):
        best_np = max(best_np, numpy_round())
        best_c = max(best_c, compiled_round())
    return best_np, best_c, compile_s


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds")
    ap.add_argument("--threads", type=int, default=1, help="BLAS and XLA threads (both)")
    ap.add_argument("--chunk", type=int, default=256, help="ticks per compiled scan")
    ap.add_argument("--sizes", default=",".join([*SIZES, *SCENES]),
                    help="comma-separated subset")
    ap.add_argument("--wall", action="store_true", help="time the wall clock, not CPU time")
    args = ap.parse_args()
    unknown = [n for n in args.sizes.split(",") if n not in SIZES and n not in SCENES]
    if unknown:
        ap.error(f"--sizes: unknown {', '.join(unknown)}; expected some of "
                 f"{', '.join([*SIZES, *SCENES])}")
    global CLOCK
    if args.wall:
        CLOCK = time.perf_counter
    _reexec(args.threads)
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
    rounds = 3 if args.quick else 7
    with open("/proc/loadavg") if os.path.exists("/proc/loadavg") else open(os.devnull) as f:
        load = f.read().split()[:3]
    print(f"threads {args.threads}, chunk {args.chunk}, load average {' '.join(load)}, "
          f"{os.cpu_count()} cpus, {'wall clock' if args.wall else 'CPU time'}")
    lens = sorted(set(COMPILE_CHUNKS) | {args.chunk})
    print(f"{'size':>8} {'learning':>8} {'numpy t/s':>11} {'jax t/s':>11} {'ratio':>7}  "
          + " ".join(f"{'compile ' + str(n):>12}" for n in lens))
    for name in args.sizes.split(","):
        for lr in (0.0, 1e-4):
            t_np, t_c, comp = measure(name, lr, args.chunk, rounds)
            print(f"{name:>8} {'on' if lr else 'off':>8} {t_np:11.0f} {t_c:11.0f} "
                  f"{t_c / t_np:6.2f}x  " + " ".join(f"{comp[n]:11.2f}s" for n in lens),
                  flush=True)


if __name__ == "__main__":
    main()
