"""Sweep throughput with 1 and 2 local worker processes (points per minute)
and the speed-up, on the same grid in the same run.

    python benchmarks/bench_sweep.py [--quick]

The grid is a slice of sweep_speed_depth (diffusion points, metrics on, states
off): depth × hold × seed, each point a full scene run. Every measurement
starts from an empty output folder, so nothing is resumed. It also times the
up-front check of a sweep: resolving, validating and hashing every point of
the shipped sweeps before any runs.
"""
import argparse
import os
import tempfile
import time

from simulator import sweep

GRID = """description = "bench_sweep grid"
kind = "sweep"

[sweep]
base = "fig3_fast"
seeds = {seeds}

[sweep.set]
"run.ticks" = {ticks}
"record.states" = false

[sweep.grid]
"network.depth" = [3, 5, 7, 9]
"stream.hold" = [1, 4, 16]
"""


def measure(path, workers):
    """Points per minute of a fresh sweep of ``path`` with ``workers`` processes."""
    with tempfile.TemporaryDirectory() as out:
        result = sweep.run_sweep(path, out, workers=workers)
    return result["points"], result["seconds"], result["points_per_minute"]


def plan_cost(name):
    """(points, milliseconds) to resolve, validate and hash every point of ``name``."""
    t0 = time.perf_counter()
    points = sweep.plan_sweep(name)[4]
    return len(points), 1e3 * (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer seeds and ticks")
    args = ap.parse_args()
    for name in ("sweep_speed_depth", "sweep_rules"):
        n, ms = plan_cost(name)
        print(f"{name}: {n} points resolved, checked and hashed in {ms:.0f} ms ({1e3 * ms / n:.0f} us/point)")
    seeds, ticks = ("[0]", 512) if args.quick else ("[0, 1, 2]", 2048)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "bench.toml")
        with open(path, "w") as f:
            f.write(GRID.format(seeds=seeds, ticks=ticks))
        rates = {}
        for workers in (1, 2):
            n, seconds, rate = measure(path, workers)
            rates[workers] = rate
            print(f"workers={workers}: {n} points in {seconds:.1f} s = {rate:.1f} points/min")
    print(f"speed-up 2 vs 1 workers: {rates[2] / rates[1]:.2f}x (cores: {os.cpu_count()})")


if __name__ == "__main__":
    main()
