"""Regenerate the README pictures in docs/: the wave raster and a short GIF of
each of the three paper scenes (Betti & Gori, Figs. 1–3), each well under 1 MB,
and the rasters of the graph scenes (residual_levelling unlevelled above
levelled, conv_digits).

    python docs/make_pictures.py
"""
import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import imageio.v3 as iio  # noqa: E402
import numpy as np  # noqa: E402

from simulator import scene  # noqa: E402
from simulator.files import save_png  # noqa: E402
from simulator.render.raster import raster_figure  # noqa: E402
from simulator.render import write_pictures  # noqa: E402
from simulator.runner import Prepared  # noqa: E402

# scene -> (ticks, raster windows, GIF frame step, GIF size)
PICTURES = {
    "fig1_constant": (40, (), 1, (560, 320)),
    "fig2_slow": (400, [(0, 40), (300, 400)], 8, (560, 320)),
    "fig3_fast": (60, (), 1, (560, 320)),
}


def make(name, ticks, windows, every, size):
    scene_name, resolved = scene.load(name)
    resolved = scene.apply_overrides(resolved, [f"run.ticks={ticks}"], "docs")
    trace = Prepared(scene_name, resolved).simulate()
    with tempfile.TemporaryDirectory() as folder:
        written = write_pictures(folder, trace, every=every, size=size, color="both",
                                 windows=windows)
        targets = {"waves.png": f"{name}_waves.png", "waves.gif": f"{name}.gif"}
        for source, target in targets.items():
            shutil.copyfile(written[source], os.path.join(HERE, target))
            print(f"docs/{target}: {os.path.getsize(os.path.join(HERE, target)) / 1024:.0f} KiB")


def simulate(name, *overrides):
    scene_name, resolved = scene.load(name)
    resolved = scene.apply_overrides(resolved, list(overrides), "docs")
    return Prepared(scene_name, resolved).simulate()


def make_graphs():
    """residual_levelling_waves.png (unlevelled above levelled, magnitude) and
    conv_digits_waves.png (both colourings)."""
    with tempfile.TemporaryDirectory() as folder:
        parts = []
        for levelled in ("false", "true"):
            trace = simulate("residual_levelling", "run.ticks=20",
                             f"network.levelled={levelled}")
            path = os.path.join(folder, f"{levelled}.png")
            save_png(raster_figure(trace, color="magnitude")[0], path)
            parts.append(iio.imread(path)[..., :3])
        width = max(p.shape[1] for p in parts)
        parts = [np.pad(p, ((0, 0), (0, width - p.shape[1]), (0, 0)), constant_values=255)
                 for p in parts]
        target = os.path.join(HERE, "residual_levelling_waves.png")
        iio.imwrite(target, np.vstack(parts))
        print(f"docs/residual_levelling_waves.png: {os.path.getsize(target) / 1024:.0f} KiB")
    trace = simulate("conv_digits", "run.ticks=80")
    target = os.path.join(HERE, "conv_digits_waves.png")
    save_png(raster_figure(trace, color="both")[0], target)
    print(f"docs/conv_digits_waves.png: {os.path.getsize(target) / 1024:.0f} KiB")


if __name__ == "__main__":
    for scene_name, args in PICTURES.items():
        make(scene_name, *args)
    make_graphs()
