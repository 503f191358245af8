"""Rendering throughput against simulation time, in the same run.

Simulates a paper-scale scene (default fig3_fast: L = 9, 200 ticks, states
recorded), then renders its GIF at the default size, one frame per tick, and
the two PNGs; prints simulation time, GIF build / compose / encode times,
frames per second, seconds per 100 frames, GIF size and the ratio of GIF
rendering to the simulation alone and to the rest of a `tickprop run`
(simulation, trace.npz, PNGs). Targets (issue 3): ≤ 2 s per 100 frames, ≤ 5 MB for 200 frames,
rendering never more than 5× the simulation of those ticks.

    python benchmarks/bench_render.py [--scene fig3_fast] [--ticks 200] [--repeat 3]
"""
import argparse
import io
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from simulator import scene  # noqa: E402
from simulator.render import DEFAULT_SIZE  # noqa: E402
from simulator.render.animate import WaveAnimator, frame_ticks  # noqa: E402
from simulator.render.gifstream import stream_gif  # noqa: E402
from simulator.render.indexed import gif_duration  # noqa: E402
from simulator.render.plots import write_mismatch  # noqa: E402
from simulator.render.raster import write_raster  # noqa: E402
from simulator.runner import Prepared  # noqa: E402

import numpy as np  # noqa: E402


def best_of(repeat, fn):
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scene", default="fig3_fast")
    parser.add_argument("--ticks", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    name, resolved = scene.load(args.scene)
    resolved = scene.apply_overrides(resolved, [f"run.ticks={args.ticks}"], "bench")
    sim_s, trace = best_of(args.repeat, lambda: Prepared(name, resolved).simulate())

    build_s, anim = best_of(args.repeat, lambda: WaveAnimator(trace, size=DEFAULT_SIZE))
    ticks = frame_ticks(trace, 1)

    def compose():
        out = np.empty((len(ticks), anim.height, anim.width), dtype=np.uint8)
        for i, t in enumerate(ticks):
            out[i] = anim.indices(t)
        return out

    compose_s, frames = best_of(args.repeat, compose)

    def encode():
        buf = io.BytesIO()
        stream_gif(buf, frames, anim.palette.colours, gif_duration())
        return buf.getbuffer().nbytes

    encode_s, nbytes = best_of(args.repeat, encode)
    gif_s = build_s + compose_s + encode_s
    n = len(ticks)

    with tempfile.TemporaryDirectory() as folder:
        png_s, _ = best_of(args.repeat, lambda: (
            write_raster(os.path.join(folder, "waves.png"), trace),
            write_mismatch(os.path.join(folder, "mismatch.png"), trace)))
        save_s, _ = best_of(args.repeat, lambda: trace.save(folder))
    rest_s = sim_s + save_s + png_s

    print(f"scene {name}: L = {trace.depth}, {args.ticks} ticks, GIF {DEFAULT_SIZE[0]}x{DEFAULT_SIZE[1]}, "
          f"{n} frames (best of {args.repeat})")
    print(f"  simulation          {sim_s:8.3f} s   ({args.ticks / sim_s:7.0f} ticks/s)")
    print(f"  GIF build           {build_s:8.3f} s   (figure, palette, glyphs: once per GIF)")
    print(f"  GIF compose         {compose_s:8.3f} s   ({1000 * compose_s / n:5.2f} ms/frame)")
    print(f"  GIF encode          {encode_s:8.3f} s   ({1000 * encode_s / n:5.2f} ms/frame)")
    print(f"  GIF total           {gif_s:8.3f} s   ({n / gif_s:6.1f} frames/s, "
          f"{100 * gif_s / n:.2f} s per 100 frames; target <= 2)")
    print(f"  GIF size            {nbytes / 2**20:8.2f} MiB ({nbytes / n / 1024:.1f} KiB/frame; "
          f"target <= 5 MB for 200)")
    print(f"  PNGs (raster+mismatch) {png_s:5.3f} s")
    print(f"  trace.npz save      {save_s:8.3f} s")
    print(f"  GIF / simulation    {gif_s / sim_s:8.2f} x  (target <= 5)")
    print(f"  GIF / rest of run   {gif_s / rest_s:8.2f} x  (simulation + trace.npz + PNGs = {rest_s:.3f} s)")
    print(f"  all pictures / sim  {(gif_s + png_s) / sim_s:8.2f} x")


if __name__ == "__main__":
    main()
