"""What the exact NaN/Inf check costs: a tick with its per-tick finiteness
flags against the same tick without them.

    PYTHONPATH=. python benchmarks/bench_nan.py [--quick] [--rounds N] [--device cuda]

The engine (chains and graphs alike) writes, every tick, a flag per vertex
(layer) and quantity into a device ring that the host reads once per 256
ticks (on numpy: one dot product of the flat block that holds every vertex's
x, pre and δ with zeros, the per-vertex row written only on a tick that is
not finite; elsewhere one product per array). Per case the same
scene's engine is stepped on the same frames twice, interleaved in one
process: once as shipped, once with its ``_flag_finite`` replaced by a no-op
(the bare tick, nothing checked); checked / bare is the check's cost. Best of
the rounds (the machine is shared). Cases: the chain sizes of bench_run
(784-256-64-10 batch 16 f32, the paper's L = 9 width 16 batch 1, L = 6 width
128 batch 16) and the graphs of the shipped ``conv_digits`` (learning on) and
``residual_levelling`` scenes.
"""
import argparse
import copy
import os
import time

import numpy as np

from allocator import ensure
from bench_run import _sync
from bench_run import scene as chain_scene
from simulator import threads
from simulator.build import build
from simulator.scene import load

CASES = [  # name, scene maker, ticks
    ("chain 784-256-64-10 B=16 f32", lambda d: chain_scene([784, 256, 64, 10], 16, "float32",
                                                           2000, device=d), 2000),
    ("chain L=9 w=16 B=1 f64", lambda d: chain_scene((9, 16), 1, "float64", 4000, device=d),
     4000),
    ("chain L=6 w=128 B=16 f64", lambda d: chain_scene((6, 128), 16, "float64", 1000,
                                                       device=d), 1000),
    ("graph conv_digits", lambda d: shipped("conv_digits", d), 3000),
    ("graph residual_levelling", lambda d: shipped("residual_levelling", d), 4000),
]


def shipped(name, device):
    _, sc = load(name)
    sc = copy.deepcopy(sc)
    sc["run"]["device"] = device
    return sc


def stepper(sc, ticks, checked):
    """A function timing ``ticks`` steps of a fresh engine of ``sc`` on the
    scene's frames, with (``checked``) or without the finiteness flags."""
    parts = build(sc)
    engine = parts.engine()
    if not checked:
        engine._flag_finite = lambda t: None
    u_host, y_host, _ = parts.stream.take(ticks)
    u, y = engine.backend.asarray(u_host), engine.backend.asarray(y_host)
    device = sc["run"]["device"]

    def run():
        _sync(device)
        t = time.perf_counter()
        for k in range(ticks):
            engine.step(u[k], y[k])
        if checked:
            engine.check_finite()
        _sync(device)
        return time.perf_counter() - t
    return run


def main():
    ensure()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a quarter of the ticks, 3 rounds")
    ap.add_argument("--rounds", type=int, default=7, help="interleaved rounds (best quoted)")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="run.device")
    ap.add_argument("--threads", type=int, default=0,
                    help="BLAS threads (0: automatic, as `tickprop run` chooses)")
    args = ap.parse_args()
    rounds = 3 if args.quick else args.rounds
    blas = threads.setup(args.threads)
    print(f"BLAS threads: {blas['blas_threads']} ({blas['why']}); device {args.device}")
    print(f"{'case':32s} {'bare us/tick':>13s} {'checked us/tick':>16s} {'checked/bare':>13s}")
    for name, make, ticks in CASES:
        ticks = max(50, ticks // 4) if args.quick else ticks
        sc = make(args.device)
        sc["run"]["ticks"] = ticks
        runs = (stepper(sc, ticks, False), stepper(sc, ticks, True))
        for run in runs:
            run()                                   # warm-up
        times = [[run() for run in runs] for _ in range(rounds)]
        bare, checked = (min(col) for col in zip(*times))
        print(f"{name:32s} {1e6 * bare / ticks:13.1f} {1e6 * checked / ticks:16.1f} "
              f"{checked / bare:12.3f}x")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
