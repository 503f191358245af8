"""Regenerate the README pictures in docs/: the wave raster and a short GIF of
each of the three paper scenes (Betti & Gori, Figs. 1–3), each well under 1 MB.

    python docs/make_pictures.py
"""
import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from simulator import scene  # noqa: E402
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


if __name__ == "__main__":
    for scene_name, args in PICTURES.items():
        make(scene_name, *args)
