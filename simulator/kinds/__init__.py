"""The registry of scene kinds: each kind is one ``Kind`` record (kinds/base.py)
in one module, registered once here. ``run_scene`` runs a resolved scene of any
kind into an output folder (atomically, run.json last); ``redraw`` draws a saved
run's pictures again from its files, for every kind.
"""
import os
import time

from ..errors import SceneError, SimulatorError
from .. import files
from ..runner import run_metadata
from . import ar_converge, ar_train, diffusion, locking, pc_table, pc_wave, sweep, train
from .base import RENDER_OPTIONS, TYPED_OPTIONS, Kind, load_json

KINDS = {}
for _module in (diffusion, train, ar_converge, ar_train, pc_table, pc_wave, locking, sweep):
    if _module.KIND.name in KINDS:
        raise ValueError(f"scene kind {_module.KIND.name!r} registered twice")
    KINDS[_module.KIND.name] = _module.KIND


def get(kind):
    """The registered Kind of that name (SceneError naming the known ones if none)."""
    try:
        return KINDS[kind]
    except (KeyError, TypeError):
        raise SceneError(f"key 'kind': expected one of {', '.join(KINDS)}, got {kind!r}") from None


def run_scene(name, scene, out_dir, progress=None, draw_options=None, force=False):
    """Run a resolved scene of any kind into ``out_dir``: the kind prepares (and
    refuses) before any folder exists, then runs, saves its results, draws its
    pictures (``draw_options``: png/gif False to skip) and run.json is written
    last, all into a temporary folder that replaces ``out_dir`` at the end
    (simulator.files.write_folder: only a tickprop output, or any folder but the
    protected ones with ``force``).
    Returns the run.json content."""
    kind = get(scene["kind"])
    options = kind.render_options(draw_options or {})
    job = kind.prepare(name, scene, options)

    holder = {}

    def fill(folder):
        t0 = time.perf_counter()
        summary = job(folder, progress)
        timings = summary.pop("timings", {}) if isinstance(summary, dict) else {}
        meta = run_metadata(name, scene)
        meta.update(kind=kind.name, summary=summary,
                    timings=dict(timings, run_s=time.perf_counter() - t0))
        meta["pictures"] = sorted(kind.draw(folder, meta, options))
        holder["meta"] = meta
        return meta
    parent = os.path.dirname(os.path.abspath(out_dir))
    made_parent = not os.path.exists(parent)
    try:
        files.write_folder(out_dir, fill, force)
    except BaseException:
        # A failed run leaves nothing behind, not even the parent folder
        # (e.g. outputs/) that it created for its output.
        if made_parent:
            try:
                os.rmdir(parent)
            except OSError:
                pass
        raise
    return holder["meta"]


def read_run(folder):
    """(Kind, run.json content) of a saved run folder; a folder without a
    readable tickprop run.json is one SimulatorError naming the file."""
    if not os.path.isfile(os.path.join(folder, "run.json")):
        raise SimulatorError(f"{folder}: not a tickprop run folder (no run.json in it)")
    meta = load_json(folder, "run.json")
    scene = meta.get("scene") if isinstance(meta, dict) else None
    kind = meta.get("kind") if isinstance(meta, dict) else None
    kind = kind or (scene.get("kind", "diffusion") if isinstance(scene, dict) else None)
    if not isinstance(kind, str) or kind not in KINDS:
        raise SimulatorError(f"{os.path.join(folder, 'run.json')}: not a tickprop run.json "
                             f"(kind {kind!r})")
    return KINDS[kind], meta


def redraw(folder, options=None):
    """Draw a saved run's pictures again from its saved results (no simulation);
    ``options`` are render options (every, size, color; png/gif False), those
    the kind's pictures do not have refused by name. Returns (kind name,
    {file name: path})."""
    kind, meta = read_run(folder)
    return kind.name, kind.draw(folder, meta, kind.render_options(options or {}))


__all__ = ["KINDS", "Kind", "TYPED_OPTIONS", "RENDER_OPTIONS", "get", "run_scene", "read_run",
           "redraw"]
