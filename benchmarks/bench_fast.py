"""Every chain door against a hand-written per-layer numpy tick.

    PYTHONPATH=. python benchmarks/bench_fast.py [--quick]

The doors to a chain, all the one graph engine (its fast numpy executor:
equal-width runs of dense layers stacked into one block, no padding):
``Engine(Network.random(sizes))`` (the Python API and diffusion scenes),
``Engine(Model.chain(sizes))`` and ``GraphEngine(Model.chain(sizes))`` (what
the ``train`` kind builds, ``training.make_learner``), on 784-32-32-10,
784-256-256-10 and 2048-64-64-64-10 (B = 16, float32, learning on, η = 1e-4,
tanh hidden layers and a linear output) against ``bench_graph.HandDense``, a
hand-written per-layer numpy tick doing the same work. Target door/hand ≤ 1.2.

One BLAS thread; the steppers of a row are timed in interleaved rounds and
each keeps its best round (the machine is shared); ratios, not absolute
times, are the result.
"""
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # before numpy loads, in case threadpoolctl is absent

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from bench_graph import HandDense, dense_layers, one_blas_thread  # noqa: E402
from simulator import Engine, GraphEngine, Model, Network  # noqa: E402

ETA = 1e-4
CHAINS = [([784, 32, 32, 10], 2000), ([784, 256, 256, 10], 400),
          ([2048, 64, 64, 64, 10], 600)]


def interleaved(steppers, u, y, n, rounds):
    """{name: best seconds per tick over ``rounds`` interleaved rounds of n ticks}."""
    for s in steppers.values():
        for _ in range(3):
            s(u, y)
    best = {k: np.inf for k in steppers}
    for _ in range(rounds):
        for k, s in steppers.items():
            t = time.perf_counter()
            for _ in range(n):
                s(u, y)
            best[k] = min(best[k], (time.perf_counter() - t) / n)
    return best


def frames(n_in, n_out, batch, dtype):
    g = np.random.default_rng(0)
    return (g.normal(size=(batch, n_in)).astype(dtype),
            0.5 * g.normal(size=(batch, n_out)).astype(dtype))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer ticks and rounds")
    args = ap.parse_args()
    q, rounds = (0.2, 3) if args.quick else (1.0, 7)
    limits = one_blas_thread()
    print(f"one BLAS thread via {'threadpoolctl' if limits is not None else 'env vars'}; "
          f"learning on; best of {rounds} interleaved rounds")
    print("chain doors vs a hand-written numpy tick, B=16 float32, learning on")
    doors = ("Engine(Network)", "Engine(Model)", "train kind")
    print(f"{'sizes':22s} " + " ".join(f"{d:>16s}" for d in doors) + f" {'hand':>10s}")
    for sizes, n in CHAINS:
        acts = ["tanh"] * (len(sizes) - 2) + ["linear"]
        u, y = frames(sizes[0], sizes[-1], 16, "float32")
        kw = dict(learning_rate=ETA, batch=16, dtype="float32")
        steppers = {
            "Engine(Network)": Engine(Network.random(sizes, acts, seed=0), **kw).step,
            "Engine(Model)": Engine(Model.chain(sizes, acts, seed=0), **kw).step,
            "train kind": GraphEngine(Model.chain(sizes, acts, seed=0), **kw).step,
            "hand": HandDense(Model.from_layers(dense_layers(sizes), (sizes[0],), seed=0), 16,
                              "float32").step}
        t = interleaved(steppers, u, y, max(5, int(n * q)), rounds)
        print(f"{'-'.join(map(str, sizes)):22s} "
              + " ".join(f"{t[d] * 1e6:7.1f}us {t[d] / t['hand']:6.2f}x" for d in doors)
              + f" {t['hand'] * 1e6:8.1f}us", flush=True)


if __name__ == "__main__":
    main()
