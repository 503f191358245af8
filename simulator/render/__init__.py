"""Renderers: pictures drawn from recorded arrays; they never simulate.

``write_pictures`` draws a diffusion run's waves.png (wave raster), mismatch.png
(gradient mismatch) and waves.gif (animation) from a Trace; each file is
written atomically. Figures are built with ``matplotlib.figure.Figure`` on the
Agg canvas (no pyplot, no display needed). Submodules: palette (shared
colours), raster, animate, plots, locking; convergence (Activation Relaxation).
"""
import os

from ..errors import SimulatorError
from ..files import save_png
from .animate import DEFAULT_SIZE, write_gif
from .plots import write_mismatch
from .raster import colourings, write_raster


def write_pictures(folder, trace, png=True, gif=True, every=1, size=DEFAULT_SIZE,
                   color="both", windows=()):
    """Draw a diffusion run's pictures into ``folder``: waves.png (the wave raster
    of Betti & Gori Figs. 1–3, one row of panels per (start, stop) tick window in
    ``windows`` or the whole run, one column per colouring: 'magnitude', 'tag' or
    'both'), mismatch.png (per-layer cosine and relative error of Eq. 5's g
    against backprop, heatmap, steady-state summary with ls) when ``png``, and
    waves.gif (every ``every``-th tick, ``size`` = (width, height) pixels; its
    raster uses the first colouring) when ``gif``. Returns {file name: path}."""
    if not os.path.isdir(folder):
        raise SimulatorError(f"{folder}: not a folder to write pictures into")
    kinds = colourings(color)
    written = {}
    if png:
        written["waves.png"] = write_raster(os.path.join(folder, "waves.png"), trace,
                                            windows=windows, color=color)
        written["mismatch.png"] = write_mismatch(os.path.join(folder, "mismatch.png"), trace)
    if gif:
        path = os.path.join(folder, "waves.gif")
        write_gif(path, trace, every=every, size=size, color=kinds[0])
        written["waves.gif"] = path
    return written


__all__ = ["DEFAULT_SIZE", "save_png", "write_pictures"]
