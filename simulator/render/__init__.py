"""Renderers: pictures drawn from recorded arrays (matplotlib on Agg, no pyplot).
Here the argument-checked builders of a diffusion Trace's waves.png, mismatch.png
and waves.gif; the other kinds' pictures live in the submodules.
"""
import functools
import inspect
import io
import os

from matplotlib.figure import Figure

from .. import files
from ..arguments import check_int, check_path, check_type, fail
from ..errors import SimulatorError
from ..probes import Trace
from . import animate, plots, raster
from .animate import WaveAnimator
from .indexed import DEFAULT_SIZE
from .raster import colourings


def _entry(func):
    """``func`` with its arguments checked by name (size, color: by the builders)."""
    signature = inspect.signature(func)

    @functools.wraps(func)
    def entry(*args, **kwargs):
        call = f"simulator.render.{func.__name__}"
        try:
            given = signature.bind(*args, **kwargs).arguments
        except TypeError as exc:
            raise SimulatorError(f"{call}: {exc}") from None
        if "trace" in given:
            check_type(call, "trace", given["trace"], Trace,
                       "a simulator.Trace (simulator.simulate or Trace.load(folder))")
        if "fig" in given:
            check_type(call, "fig", given["fig"], Figure, "a matplotlib Figure")
        for name in ("path", "folder"):
            if name in given:
                check_path(call, name, given[name], folder=name == "folder")
        if "every" in given:
            check_int(call, "every", given["every"], 1)
        windows = given.get("windows", ())
        if isinstance(windows, (str, bytes)) or not isinstance(windows, (list, tuple)):
            fail(call, "windows", "a list of (start, stop) tick pairs", windows)
        if "row" in given:
            rows = len(given["trace"].ticks)
            check_int(call, "row", given["row"], -rows, rows - 1)
        return func(*args, **kwargs)
    return entry


raster_figure = _entry(raster.raster_figure)
write_raster = _entry(raster.write_raster)
mismatch_figure = _entry(plots.mismatch_figure)
write_mismatch = _entry(plots.write_mismatch)
render_frames = _entry(animate.render_frames)
write_gif = _entry(animate.write_gif)
save_png = _entry(files.save_png)


@_entry
def waves(trace, windows=(), color="both"):
    """The wave raster Figure of a diffusion Trace (waves.png): a row of panels per
    (start, stop) tick window (none: the run), a column per colouring of ``color``."""
    return raster.raster_figure(trace, windows, color)[0]


@_entry
def mismatch(trace):
    """The gradient-mismatch Figure of a diffusion Trace (mismatch.png)."""
    return plots.mismatch_figure(trace)[0]


@_entry
def gif_figure(trace, size=DEFAULT_SIZE, color="magnitude"):
    """The static part of the wave GIF (network axes, mismatch bars, raster,
    legend) as a Figure of ``size`` = (width, height) pixels."""
    return WaveAnimator(trace, size=size, color=color).fig


@_entry
def gif_frame(trace, row, size=DEFAULT_SIZE, color="magnitude"):
    """The wave GIF's picture of recorded row ``row`` as uint8 RGB (height, width, 3)."""
    return WaveAnimator(trace, size=size, color=color).render(int(row))


@_entry
def write_pictures(folder, trace, png=True, gif=True, every=1, size=DEFAULT_SIZE,
                   color="both", windows=()):
    """Draw a diffusion run's waves.png and mismatch.png (``png``) and waves.gif
    (``gif``: every ``every``-th tick, ``size`` pixels, the first colouring of
    ``color``) into ``folder``. Returns {file name: path}."""
    first = colourings(color)[0]           # checks color, GIF or not
    written = {}
    if png:
        written["waves.png"] = raster.write_raster(os.path.join(folder, "waves.png"), trace,
                                                   windows=windows, color=color)
        written["mismatch.png"] = plots.write_mismatch(os.path.join(folder, "mismatch.png"), trace)
    if gif:
        written["waves.gif"] = os.path.join(folder, "waves.gif")
        animate.write_gif(written["waves.gif"], trace, every=every, size=size, color=first)
    return written


@_entry
def show(fig):
    """Display ``fig`` inline as a PNG when a Jupyter kernel runs this (the inline
    backend does not show non-pyplot Figures); a pyplot figure is then closed so it
    is not shown twice. Elsewhere nothing happens. Returns None."""
    try:
        from IPython import get_ipython
        from IPython.display import Image, display
    except ImportError:
        return None
    if get_ipython() is None:
        return None
    png = io.BytesIO()
    fig.savefig(png, format="png")
    display(Image(png.getvalue()))
    if getattr(fig.canvas, "manager", None) is not None:     # a pyplot figure
        import matplotlib.pyplot as plt
        plt.close(fig)
    return None


__all__ = ["DEFAULT_SIZE", "gif_figure", "gif_frame", "mismatch", "mismatch_figure",
           "raster_figure", "waves", "render_frames", "save_png", "show", "write_gif",
           "write_mismatch", "write_pictures", "write_raster"]
