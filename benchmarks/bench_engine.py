"""Tick cost against a hand-written numpy backprop step on the same network,
measured in the same run (ratios, not absolute times, are the result).

    python benchmarks/bench_engine.py [--quick]

1. paper scale: L = 9, width 16, batch 1, float64, metrics off
2. large scale: L = 4, width 1024, batch 64, float32
3. ticks per second with reference and metrics on, paper scale
4. peak memory of a 10,000-tick paper-scale run with full states recorded,
   against the size of the recorded arrays

The equal-work comparison is learning ON: the tick forms g and updates W, the
baseline runs backprop and the SGD update. With learning off the baseline
is forward + backward deltas only (no weight gradients), the same 2L − 1
matrix products as the tick. Runs under benchmarks/allocator.py's settings.
"""
import argparse
import time
import tracemalloc

import numpy as np

from allocator import ensure
from simulator import threads
from simulator.build import build
from simulator.runner import Prepared
from simulator.scene import validate


def paper_scene(depth, width, batch=1, dtype="float64", learning_rate=0.0, ticks=1,
                states=False):
    """A diffusion scene of ``depth`` tanh layers (linear output) of ``width``
    neurons, fed a held teacher stream (hold 16), built by simulator.build."""
    return validate({"network": {"depth": depth, "width": width, "inputs": width,
                                 "outputs": width},
                     "stream": {"kind": "held", "hold": 16, "batch": batch},
                     "rule": {"learning_rate": learning_rate},
                     "run": {"ticks": ticks, "dtype": dtype},
                     "record": {"states": states, "metrics": True, "memory_budget": "16GiB"}},
                    "bench_engine")


def backprop_step(ws, bs, u, y, xp=np, grads=True):
    """Forward, backward and weight gradients, tanh hidden / linear out, in the
    array module ``xp`` (numpy here, cupy in bench_gpu); ``grads=False`` stops
    at the deltas (what a tick with learning off computes)."""
    xs, ds = [u], []
    for i, (w, b) in enumerate(zip(ws, bs)):
        a = xs[-1] @ w.T + b
        if i < len(ws) - 1:
            x = xp.tanh(a)
            ds.append(1.0 - x * x)
        else:
            x = a
        xs.append(x)
    delta = xs[-1] - y
    grads_on, grads = grads, [None] * len(ws)
    for i in range(len(ws) - 1, -1, -1):
        if grads_on:
            grads[i] = delta.T @ xs[i]
        if i:
            delta = (delta @ ws[i]) * ds[i - 1]
    return grads


def sgd_step(ws, bs, u, y, eta):
    """The backprop baseline of a learning tick: backprop, then W ← W − η g in place."""
    for w, g in zip(ws, backprop_step(ws, bs, u, y)):
        w -= eta * g


def best_of(fn, n, repeats=5):
    """Best per-call time of ``n`` calls, over ``repeats`` runs (least noisy),
    after one warm-up call (first-call allocations and imports stay out)."""
    fn()
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t) / n)
    return best


def tick_vs_backprop(depth, width, batch, dtype, n, learning_rate=0.0):
    parts = build(paper_scene(depth, width, batch, dtype, learning_rate))
    net = parts.network
    rng = np.random.default_rng(0)
    u = rng.normal(size=(batch, width)).astype(dtype)
    y = rng.normal(size=(batch, width)).astype(dtype)
    ws = [w.astype(dtype) for w in net.weights]
    bs = [b.astype(dtype) for b in net.biases]
    engine = parts.engine()
    t_tick = best_of(lambda: engine.step(u, y), n)
    if learning_rate:
        t_bp = best_of(lambda: sgd_step(ws, bs, u, y, learning_rate), n)
    else:
        t_bp = best_of(lambda: backprop_step(ws, bs, u, y, grads=False), n)
    return t_tick, t_bp


def recorded_rate(ticks, states):
    prepared = Prepared("bench_engine", paper_scene(9, 16, ticks=ticks, states=states))
    t = time.perf_counter()
    trace = prepared.simulate()
    return ticks / (time.perf_counter() - t), trace, prepared.plan


def main():
    ensure()
    blas = threads.setup()
    print(f"BLAS threads: {blas['blas_threads']} ({blas['why']})")
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = ap.parse_args()
    n_small, n_large = (500, 5) if args.quick else (3000, 20)

    t_tick, t_bp = tick_vs_backprop(9, 16, 1, "float64", n_small)
    print(f"paper scale (L=9, w=16, B=1, f64): tick {t_tick * 1e6:.1f} us, "
          f"backprop step {t_bp * 1e6:.1f} us, ratio {t_tick / t_bp:.2f}x (target <= 1.0x)")
    t_tick, t_bp = tick_vs_backprop(4, 1024, 64, "float32", n_large)
    print(f"large scale (L=4, w=1024, B=64, f32): tick {t_tick * 1e3:.2f} ms, "
          f"backprop step {t_bp * 1e3:.2f} ms, ratio {t_tick / t_bp:.2f}x (target <= 1.1x)")

    t_tick, t_bp = tick_vs_backprop(9, 16, 1, "float64", n_small, learning_rate=1e-6)
    print(f"EQUAL WORK: paper scale, learning on (tick forms g and updates W; baseline backprop + SGD "
          f"update): ratio {t_tick / t_bp:.2f}x")
    t_tick, t_bp = tick_vs_backprop(4, 1024, 64, "float32", n_large, learning_rate=1e-6)
    print(f"EQUAL WORK: large scale, learning on: ratio {t_tick / t_bp:.2f}x")

    rate, _, _ = recorded_rate(2000 if args.quick else 10000, states=False)
    print(f"paper scale with reference + metrics on: {rate:.0f} ticks/s")

    tracemalloc.start()
    rate, trace, plan = recorded_rate(10000, states=True)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    recorded = sum(a.nbytes for a in trace.arrays.values())
    print(f"10,000-tick paper-scale run, full states: recorded arrays {recorded / 2**20:.1f} MiB "
          f"(estimate {plan.size() / 2**20:.1f} MiB), peak traced memory {peak / 2**20:.1f} MiB "
          f"= {peak / recorded:.2f}x the recording ({rate:.0f} ticks/s)")


if __name__ == "__main__":
    main()
