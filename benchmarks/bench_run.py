"""What users run — a recorded run — against the bare engine, same sizes, same run.

    PYTHONPATH=. python benchmarks/bench_run.py [--quick]

For each size the same scene is simulated twice, interleaved: once bare
(``Engine.step`` on the stream's frames, nothing recorded) and once as
``tickprop run`` simulates it (``Prepared.simulate``: default recording —
norms, tags, metrics against the per-frame backprop reference, states where
the scene records them). The ratio recorded / bare is what recording costs
over the bare step; recorded / unrecorded (``Engine.run`` on the stream, no
recorder) leaves out the stream's own cost (its teacher targets), which a
run pays recorded or not. A
new frame every tick (hold 1) is the recorder's worst case (every frame needs
its own reference). The last part times the whole command (`tickprop run
scenes/fig3_fast.toml --ticks N --no-png --no-gif`, a fresh process, start-up,
trace.npz included) against its simulation alone.

Sizes (the issue's): paper scale L = 9, width 16, batch 1, f64; L = 6, width
128, batch 16; L = 4, width 1024, batch 64, f32; L = 64, width 32, batch 1;
and an unequal-width image-shaped chain 784-256-64-10, batch 16, f32.
``--device cuda`` runs the same comparison on cupy (the recorded run's
``simulate_s`` ends with the trace copied to the host; the bare loop is
synchronised before its clock stops).
"""
import argparse
import os
import subprocess
import sys
import time

import numpy as np

from allocator import ensure
from simulator import threads
from simulator.build import build
from simulator.runner import Prepared
from simulator.scene import load, validate

SIZES = [  # name, sizes or (depth, width), batch, dtype, ticks
    ("paper L=9 w=16 B=1 f64", (9, 16), 1, "float64", 4000),
    ("L=6 w=128 B=16 f64", (6, 128), 16, "float64", 1000),
    ("L=4 w=1024 B=64 f32", (4, 1024), 64, "float32", 100),
    ("L=64 w=32 B=1 f64", (64, 32), 1, "float64", 300),
    ("784-256-64-10 B=16 f32", [784, 256, 64, 10], 16, "float32", 600),
]


def _sync(device):
    """Wait for the device's queued work (cupy launches asynchronously)."""
    if device == "cuda":
        import cupy
        cupy.cuda.Device().synchronize()


def scene(shape, batch, dtype, ticks, hold=1, device="cpu"):
    net = ({"sizes": shape} if isinstance(shape, list)
           else {"depth": shape[0], "width": shape[1], "inputs": shape[1],
                 "outputs": shape[1]})
    return validate({"network": net,
                     "stream": {"kind": "held", "hold": hold, "batch": batch},
                     "run": {"ticks": ticks, "dtype": dtype, "device": device},
                     "record": {"memory_budget": "16GiB"}}, "bench_run")


def bare(sc):
    """Seconds of ``ticks`` bare Engine.step calls on the scene's frames."""
    parts = build(sc)
    engine = parts.engine()
    ticks = sc["run"]["ticks"]
    u_host, y_host, _ = parts.stream.take(ticks)
    u, y = engine.backend.asarray(u_host), engine.backend.asarray(y_host)
    device = sc["run"]["device"]
    _sync(device)
    t = time.perf_counter()
    for k in range(ticks):
        engine.step(u[k], y[k])
    _sync(device)
    return time.perf_counter() - t


def unrecorded(sc):
    """Seconds of ``Engine.run`` on the scene's stream with no recorder: the
    bare engine plus drawing the frames (the teacher's targets included),
    which the recorded run pays too; recorded / unrecorded is the recorder's
    own cost."""
    parts = build(sc)
    engine = parts.engine()
    t = time.perf_counter()
    engine.run(parts.stream, sc["run"]["ticks"])
    _sync(sc["run"]["device"])
    return time.perf_counter() - t


def recorded(sc):
    """Seconds of the recorded ticks of ``Prepared.simulate`` (the run of
    `tickprop run`): its ``simulate_s``, the ticks with their recording, without
    building the engine and recorder (which bare() does not time either)."""
    return Prepared("bench_run", sc).simulate().meta["timings"]["simulate_s"]


def best(fn, arg, repeats):
    fn(arg)  # warm-up: first-call imports and allocations stay out
    return min(fn(arg) for _ in range(repeats))


def command(ticks):
    """Wall seconds of the whole `tickprop run` command in a fresh process."""
    out = os.path.join("/tmp", f"bench_run_{os.getpid()}")
    cmd = [sys.executable, "cli.py", "run", "scenes/fig3_fast.toml", "--ticks", str(ticks),
           "--no-png", "--no-gif", "--quiet", "--out", out, "--force"]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, env=dict(os.environ, PYTHONPATH="."))
    return time.perf_counter() - t


def main():
    ensure()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer ticks and repeats")
    ap.add_argument("--threads", type=int, default=0,
                    help="BLAS threads (0: automatic, as `tickprop run` chooses)")
    ap.add_argument("--only", default="", help="only the sizes whose name contains this")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                    help="run.device of every run (cuda: cupy; the whole-command part is cpu only)")
    args = ap.parse_args()
    repeats = 1 if args.quick else 3
    blas = threads.setup(args.threads)          # as `tickprop run` does
    print(f"BLAS threads: {blas['blas_threads']} ({blas['why']})")
    print(f"{'size':26s} {'bare t/s':>10s} {'recorded t/s':>13s} {'recorded/bare':>14s} "
          f"{'recorded/unrecorded':>20s}")
    for name, shape, batch, dtype, ticks in SIZES:
        if args.only not in name:
            continue
        ticks = max(20, ticks // 4) if args.quick else ticks
        sc = scene(shape, batch, dtype, ticks, device=args.device)
        t_bare, t_rec = best(bare, sc, repeats), best(recorded, sc, repeats)
        t_run = best(unrecorded, sc, repeats)
        print(f"{name:26s} {ticks / t_bare:10.0f} {ticks / t_rec:13.0f} "
              f"{t_rec / t_bare:13.2f}x {t_rec / t_run:19.2f}x")
    if args.device != "cpu":
        return
    ticks = 2000 if args.quick else 20000
    _, f3 = load("fig3_fast")
    f3["run"]["ticks"] = ticks
    t_sim = best(recorded, f3, repeats)
    t_cmd = min(command(ticks) for _ in range(repeats))
    print(f"\nfig3_fast, {ticks} ticks: simulation {ticks / t_sim:.0f} ticks/s; the whole "
          f"command {t_cmd:.2f} s ({ticks / t_cmd:.0f} ticks/s, start-up and trace.npz "
          f"included: {t_cmd / t_sim:.2f}x the simulation)")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
