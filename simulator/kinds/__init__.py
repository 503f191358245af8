"""The registry of scene kinds (one ``Kind`` per module, kinds/base.py): ``run_scene``
runs a resolved scene into an output folder, ``redraw`` draws a saved run's pictures again."""
import os
import shutil
import time

from ..errors import SceneError, SimulatorError
from .. import files, manifest, outputs, threads
from ..runner import run_metadata
from . import (ar_converge, ar_train, diffusion, locking, pc_table, pc_wave, schedules, sweep,
               train)
from ..selection import plain
from ..runfiles import read_run_meta
from ..scene import spec_of

KINDS = {m.KIND.name: m.KIND for m in (diffusion, train, ar_converge, ar_train, pc_table,
                                         pc_wave, locking, schedules, sweep)}


def get(kind):
    """The registered Kind of that name (SceneError naming the known ones if none)."""
    try:
        return KINDS[kind]
    except (KeyError, TypeError):
        raise SceneError(f"key 'kind': expected one of {', '.join(KINDS)}, got {kind!r}") from None


def run_scene(name, scene, out_dir, progress=None, draw_options=None, force=False,
              blas_threads=None, warn=None):
    """Run a resolved scene into ``out_dir`` (atomically: a failed run leaves nothing);
    return the run.json content. ``draw_options``: png/gif False to skip; BLAS threads:
    ``blas_threads``, else run.threads; warnings go to ``warn(line)`` and run.json."""
    kind = get(scene["kind"])
    options = kind.render_options(draw_options or {})
    job = kind.prepare(name, scene, options)
    warnings = list(getattr(job, "warnings", ()))
    for line in warnings if warn is not None else ():
        warn(line)
    run = spec_of(scene).sections.get("run")      # a locking scene has none
    blas = threads.setup(getattr(run, "threads", 0) if blas_threads is None else blas_threads)
    holder = {}

    def fill(folder):
        t0 = time.perf_counter()
        summary = job(folder, progress)
        timings = summary.pop("timings", {}) if isinstance(summary, dict) else {}
        meta = run_metadata(name, scene)
        if warnings:
            meta["warnings"] = warnings
        meta.update(kind=kind.name, summary=summary, threads=blas,
                    timings=dict(timings, run_s=time.perf_counter() - t0))
        meta["pictures"] = sorted(kind.draw(folder, meta, options))
        if progress is not None:      # its last call: a stop seen late still stops here
            progress(0)
        holder["meta"] = meta
        return meta
    outputs.write_folder(out_dir, fill, force)
    return holder["meta"]


def redraw(folder, options=None, select=None, out=None, force=False):
    """Draw a saved run's pictures again from its results, never simulating;
    return (kind name, {file name: path}, folder written). ``options``: render
    options, ``select``: {ticks, layers, neurons} as Trace.select takes (None =
    all); those the kind lacks are refused by name. Without ``out`` only the
    pictures in ``folder`` are replaced; ``out`` is a new folder with a copy of the
    results (outputs.write_folder). Nothing is written before all are drawn."""
    if not os.path.isfile(os.path.join(folder, "run.json")):
        raise SimulatorError(f"{folder}: not a tickprop run folder (no run.json in it)")
    meta = read_run_meta(folder)          # a dict, its kinds text and its scene a table
    kind = meta.get("kind") or meta.get("scene", {}).get("kind", "diffusion")
    if kind not in KINDS:
        raise SimulatorError(f"{os.path.join(folder, 'run.json')}: not a tickprop run.json "
                             f"(kind {kind!r})")
    kind = KINDS[kind]
    options = kind.render_options(options or {})
    select = {k: v for k, v in (select or {}).items() if v is not None}
    for option in (o for o in select if o not in kind.selects):
        where = ", ".join(k.name for k in KINDS.values() if option in k.selects) or "none"
        raise SimulatorError(f"--{option}: a {kind.name} run has nothing to select it on; it "
                             f"applies to runs of kind {where}")
    if select:
        options["select"] = select
    if out is None:
        return kind.name, _redraw_in_place(kind, folder, meta, options), folder
    a, b = os.path.realpath(folder), os.path.realpath(out)
    if a == b:
        raise SimulatorError(f"--out {out}: is the run folder itself; leave --out out to redraw "
                             "its pictures in place")
    if b.startswith(a + os.sep) or a.startswith(b + os.sep):
        raise SimulatorError(f"--out {out}: {'inside' if b.startswith(a) else 'holds'} the run "
                             f"folder {folder}; choose a folder apart from it")
    written = {}

    def fill(tmp):          # the run's results, without its pictures, manifest, temporaries
        skip = set(meta.get("pictures", ())) | {manifest.MANIFEST}
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            if entry.name not in skip and not entry.name.startswith("."):
                target = os.path.join(tmp, entry.name)
                if entry.is_dir():
                    shutil.copytree(entry.path, target, symlinks=True)
                else:
                    shutil.copy2(entry.path, target)
        try:
            names = kind.draw(tmp, meta, options)
        except SimulatorError as exc:       # about the copied results: name the run's own
            raise files.speak_of(exc, tmp, folder) from None
        written.update({n: os.path.join(out, n) for n in names})
        new = dict(meta, pictures=sorted(names))
        new["rendered_from"] = {"folder": os.path.abspath(folder), "select": plain(select)}
        return new
    outputs.write_folder(out, fill, force)
    return kind.name, written, out


def _redraw_in_place(kind, folder, meta, options):
    """Draw into a scratch folder inside ``folder`` that links the run's files, then
    move each picture over its name; errors name ``folder``, not the scratch."""
    manifest.clean_stale(folder)
    scratch = files.scratch_folder(folder, "render")
    try:
        for entry in os.scandir(folder):
            if not entry.name.startswith(".") and entry.name != manifest.MANIFEST:
                os.symlink(os.path.abspath(entry.path), os.path.join(scratch, entry.name))
        drawn, listed = kind.draw(scratch, meta, options), meta.get("pictures")
        for name in drawn:      # refuse a foreign or changed file before replacing any
            target, status = os.path.join(folder, name), manifest.file_status(folder, name)
            if status == "changed":
                raise SimulatorError(f"{target}: changed since tickprop wrote it; move it away, "
                                     "or render with --out NEW to draw elsewhere")
            if status not in ("missing", "ours") and (
                    status == "foreign" or (listed is not None and name not in listed)):
                raise SimulatorError(f"{target}: not a picture this run wrote (run.json lists "
                                     f"{', '.join(listed or []) or 'none'}); render with --out "
                                     "NEW to draw elsewhere")
        with manifest.recording(folder):
            for name in drawn:
                source = os.path.join(scratch, name)
                if not os.path.islink(source):      # a link: not drawn, the run's own file
                    files.move_into_place(source, os.path.join(folder, name))
    except (SimulatorError, OSError) as exc:
        raise files.speak_of(exc, scratch, folder)
    finally:
        files.remove_scratch(scratch)
    return {name: os.path.join(folder, name) for name in drawn}

