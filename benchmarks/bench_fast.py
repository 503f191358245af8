"""The graph engine's fast numpy executor against today's stacked chain engine
for every option set, and the chain door against a hand-written numpy tick.

    PYTHONPATH=. python benchmarks/bench_fast.py [--quick]

1. Per option set (the four feedbacks; ``frame`` derivative; ``frame``
   pairing; both; itd-y; itd-dy; accumulate 2), learning on (η = 1e-4),
   float64, tanh hidden layers and a linear output, the same chain through
   ``GraphEngine(net)`` (``graph``: equal-width runs
   grouped into stacked blocks) and ``Engine(net)`` (``stacked``: every layer
   padded to the widest) at paper scale (L = 9, width 16, B = 1), L = 6 width
   128 B = 16 and L = 64 width 32 B = 8. Target graph/stacked ≤ 1.
2. The chain door ``Engine(Model.chain(sizes))`` on 784-32-32-10,
   784-256-256-10 and 2048-64-64-64-10 (B = 16, float32, learning on) against
   ``bench_graph.HandDense``, a hand-written per-layer numpy tick doing the
   same work. Target graph/hand ≤ 1.2.

One BLAS thread; the engines of a row are timed in interleaved rounds and
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
from simulator import Engine, Model, Network  # noqa: E402

ETA = 1e-4
OPTIONS = [
    ("transpose", {}),
    ("random", {"feedback": "random"}),
    ("sign", {"feedback": "sign"}),
    ("learned", {"feedback": "learned"}),
    ("frame derivative", {"derivative": "frame"}),
    ("frame pairing", {"pairing": "frame"}),
    ("frame both", {"derivative": "frame", "pairing": "frame"}),
    ("itd-y", {"derivative": "itd-y"}),
    ("itd-dy", {"derivative": "itd-dy"}),
    ("accumulate 2", {"accumulate": 2}),
]
SIZES = [("paper L=9 w=16 B=1", 9, 16, 1, 3000),
         ("L=6 w=128 B=16", 6, 128, 16, 600),
         ("L=64 w=32 B=8", 64, 32, 8, 150)]
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
    worst = 0.0
    print("\n1. option sets: graph (grouped runs) vs stacked Engine(Network), float64")
    print(f"{'size':22s} {'options':18s} {'graph':>10s} {'stacked':>10s} {'graph/stacked':>14s}")
    for name, L, w, B, n in SIZES:
        net = Network.random([w] * (L + 1), ["tanh"] * (L - 1) + ["linear"], seed=0)
        u, y = frames(w, w, B, "float64")
        for label, opts in OPTIONS:
            kw = dict(learning_rate=ETA, batch=B, **opts)
            graph = Engine(Model.chain([w] * (L + 1), ["tanh"] * (L - 1) + ["linear"], seed=0),
                           **kw)
            stacked = Engine(net, **kw)
            assert graph._groups, "the chain must be grouped"
            t = interleaved({"graph": graph.step, "stacked": stacked.step}, u, y,
                            max(5, int(n * q)), rounds)
            r = t["graph"] / t["stacked"]
            worst = max(worst, r)
            print(f"{name:22s} {label:18s} {t['graph'] * 1e6:8.1f}us {t['stacked'] * 1e6:8.1f}us "
                  f"{r:13.2f}x", flush=True)
    print(f"worst graph/stacked: {worst:.2f}x (target <= 1)")
    print("\n2. chain door Engine(Model.chain(sizes)) vs a hand-written numpy tick, "
          "B=16 float32")
    print(f"{'sizes':22s} {'graph':>10s} {'hand':>10s} {'graph/hand':>11s}")
    for sizes, n in CHAINS:
        acts = ["tanh"] * (len(sizes) - 2) + ["linear"]
        u, y = frames(sizes[0], sizes[-1], 16, "float32")
        graph = Engine(Model.chain(sizes, acts, seed=0), learning_rate=ETA, batch=16,
                       dtype="float32")
        hand = HandDense(Model.from_layers(dense_layers(sizes), (sizes[0],), seed=0), 16,
                         "float32")
        t = interleaved({"graph": graph.step, "hand": hand.step}, u, y, max(5, int(n * q)),
                        rounds)
        print(f"{'-'.join(map(str, sizes)):22s} {t['graph'] * 1e6:8.1f}us "
              f"{t['hand'] * 1e6:8.1f}us {t['graph'] / t['hand']:10.2f}x", flush=True)


if __name__ == "__main__":
    main()
