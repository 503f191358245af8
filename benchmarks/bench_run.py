"""What users run — a recorded run — against the bare engine, same sizes, same run.

    PYTHONPATH=. python benchmarks/bench_run.py [--quick]

For each size the same scene is simulated twice, interleaved: once bare
(``Engine.step`` on the stream's frames, nothing recorded) and once as
``tickprop run`` simulates it (``Prepared.simulate``: default recording —
norms, tags, metrics against the per-frame backprop reference, states where
the scene records them). The ratio recorded / bare is what recording costs
over the bare step; recorded / unrecorded (``Engine.run`` on the stream, no
recorder) leaves out the stream's own cost (its teacher targets), which a
run pays recorded or not. Beside them, timed alone in the same rounds and
quoted as multiples of the bare time: the independent reference (one batched
backprop of every distinct frame, what the recorder computes with frozen
weights) and the stream (frames and teacher targets). Their sum with the bare
time is the floor of any recorded run that keeps the reference independent;
"bookkeeping" is what the recorder costs beyond it (copies, norms, tags,
Gram products). A new frame every tick (hold 1) is the recorder's worst case (every frame needs
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
from simulator.engine.drive import repeated_frames, stream_chunks
from simulator.model import reference
from simulator.model.reference import device_params
from simulator.probes.recorder import Recorder
from simulator.runner import Prepared
from simulator.scene import load, validate

SIZES = [  # name, sizes or (depth, width), batch, dtype, ticks
    ("paper L=9 w=16 B=1 f64", (9, 16), 1, "float64", 4000),
    ("L=6 w=128 B=16 f64", (6, 128), 16, "float64", 1000),
    ("L=4 w=1024 B=64 f32", (4, 1024), 64, "float32", 100),
    ("L=64 w=32 B=1 f64", (64, 32), 1, "float64", 300),
    ("784-256-64-10 B=16 f32", [784, 256, 64, 10], 16, "float32", 600),
]


CLOCK = [time.perf_counter]    # --clock cpu: time.process_time (one BLAS thread, busy machine)


def _now():
    return CLOCK[0]()


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
    t = _now()
    for k in range(ticks):
        engine.step(u[k], y[k])
    _sync(device)
    return _now() - t


def unrecorded(sc):
    """Seconds of ``Engine.run`` on the scene's stream with no recorder: the
    bare engine plus drawing the frames (the teacher's targets included),
    which the recorded run pays too; recorded / unrecorded is the recorder's
    own cost."""
    parts = build(sc)
    engine = parts.engine()
    t = _now()
    engine.run(parts.stream, sc["run"]["ticks"])
    _sync(sc["run"]["device"])
    return _now() - t


def stream_only(sc):
    """Seconds of drawing the run's frames and the teacher's targets alone."""
    prepared = Prepared("bench_run", sc)
    t = _now()
    for _ in stream_chunks(prepared.stream, sc["run"]["ticks"], chunk=prepared.plan.chunk):
        pass
    return _now() - t


def reference_only(sc):
    """Seconds of the independent reference alone: one backprop of every
    distinct frame of the run (batched, as the recorder forms it with frozen
    weights) by the oracle, with the initial weights on the run's device."""
    parts = build(sc)
    model, be = parts.network, parts.engine().backend
    u, y, _ = parts.stream.take(sc["run"]["ticks"])
    keep = ~repeated_frames(u, y, None)
    U = be.asarray(u[keep].reshape(-1, u.shape[-1]))
    Y = be.asarray(y[keep].reshape(-1, y.shape[-1]))
    params = device_params(be.xp, model, be.dtype)
    _sync(sc["run"]["device"])
    t = _now()
    reference.factors(model, U, Y, sc["rule"]["loss"], params)
    _sync(sc["run"]["device"])
    return _now() - t


def recorded(sc):
    """Seconds of the recorded ticks of ``Prepared.simulate`` (the run of
    `tickprop run`, its ``simulate_s``): the ticks with their recording, without
    building the engine and recorder (which bare() does not time either)."""
    prepared = Prepared("bench_run", sc)
    engine = prepared.parts.engine()
    recorder = Recorder(engine, prepared.plan, reference=prepared.spec.rule.reference)
    t = _now()
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        engine.run(prepared.stream, prepared.plan.ticks, recorder)
    _sync(sc["run"]["device"])
    return _now() - t


def best(fn, arg, repeats):
    fn(arg)  # warm-up: first-call imports and allocations stay out
    return min(fn(arg) for _ in range(repeats))


def interleaved(fns, arg, rounds):
    """Best seconds of each of ``fns`` over ``rounds`` interleaved rounds (a
    shared machine's speed drifts by up to 1.7x over seconds: timing each
    function's rounds back to back would compare different machine states)."""
    for fn in fns:
        fn(arg)                                   # warm-up
    times = [[fn(arg) for fn in fns] for _ in range(rounds)]
    return [min(col) for col in zip(*times)]


def command(ticks):
    """Wall seconds of the whole `tickprop run` command in a fresh process."""
    out = os.path.join("/tmp", f"bench_run_{os.getpid()}")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cmd = [sys.executable, "cli.py", "run", "scenes/fig3_fast.toml", "--ticks", str(ticks),
           "--no-png", "--no-gif", "--quiet", "--out", out, "--force"]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=root, env=dict(os.environ, PYTHONPATH=root))
    return time.perf_counter() - t


def main():
    ensure()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer ticks and repeats")
    ap.add_argument("--threads", type=int, default=0,
                    help="BLAS threads (0: automatic, as `tickprop run` chooses)")
    ap.add_argument("--only", default="", help="only the sizes whose name contains this")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (best quoted)")
    ap.add_argument("--hold", type=int, default=1,
                    help="ticks each frame is held (1: a new frame every tick, the worst "
                         "case; fig2_slow holds 64)")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                    help="run.device of every run (cuda: cupy; the whole-command part is cpu only)")
    ap.add_argument("--clock", default="wall", choices=("wall", "cpu"),
                    help="wall: perf_counter; cpu: this process's CPU time (with --threads 1 "
                         "on a shared machine, what other processes' load leaves out)")
    ap.add_argument("--no-command", action="store_true",
                    help="the sizes only, not fig3_fast's simulation and whole command")
    args = ap.parse_args()
    if args.clock == "cpu":
        CLOCK[0] = time.process_time
    repeats = 1 if args.quick else args.rounds
    blas = threads.setup(args.threads)          # as `tickprop run` does
    print(f"BLAS threads: {blas['blas_threads']} ({blas['why']}); a new frame every "
          f"{args.hold} tick(s)")
    print(f"{'size':26s} {'bare t/s':>10s} {'recorded t/s':>13s} {'recorded/bare':>14s} "
          f"{'recorded/unrecorded':>20s} {'reference':>10s} {'stream':>8s} {'floor':>7s} "
          f"{'bookkeeping':>12s}")
    for name, shape, batch, dtype, ticks in SIZES:
        if args.only not in name:
            continue
        ticks = max(20, ticks // 4) if args.quick else ticks
        sc = scene(shape, batch, dtype, ticks, hold=args.hold, device=args.device)
        t_bare, t_rec, t_run, t_ref, t_str = interleaved(
            (bare, recorded, unrecorded, reference_only, stream_only), sc, repeats)
        floor = (t_bare + t_ref + t_str) / t_bare
        print(f"{name:26s} {ticks / t_bare:10.0f} {ticks / t_rec:13.0f} "
              f"{t_rec / t_bare:13.2f}x {t_rec / t_run:19.2f}x {t_ref / t_bare:9.2f}x "
              f"{t_str / t_bare:7.2f}x {floor:6.2f}x {t_rec / t_bare - floor:11.2f}x")
    if args.device != "cpu" or args.no_command:
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
