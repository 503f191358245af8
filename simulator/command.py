"""The tickprop command (click): parse, call the simulator, print. It is entered
through simulator.__main__, which sets the start-up Ctrl-C handler first.

Exit codes: 0 success (a sweep with some failed points included); 2 user error
(one ``error:`` line, nothing written); 3 every point of a sweep failed (one
``error:`` line; the points and sweep.csv are written); 130 Ctrl-C, 143 SIGTERM
(one line, nothing left behind); 1 a bug (traceback), or a ``reproduce`` check
that failed and is not a listed known failure (the evidence is written).
"""
import json
import os
import pathlib
import signal
import sys
import threading
import webbrowser

import click

from . import files, kinds, outputs
from . import scene as scenes
from . import sweep as sweeps
from .analysis.sync import format_sync, sync_report
from .dask_pool import check_scheduler
from .errors import BudgetError, SceneError, SimulatorError
from .experiments import reproduce as reproducing
from .kinds.import_model import import_command
from .kinds.sweep import summary_lines as sweep_lines
from .runner import Prepared
from .selection import parse_list, parse_ticks
from .view import write_view


FORCE_HELP = "Replace an existing --out folder that is not a tickprop output."
EXIT_ALL_FAILED = 3         # the work ran and all of it failed (every point of a sweep)


def _fail(exc):
    click.echo(f"error: {exc}", err=True)
    sys.exit(2)


def _exit_interrupted(code):
    """Exit with ``code``. A KeyboardInterrupt that escaped an eval() (numpy's f2py
    evaluates strings while it imports) stays marked unhandled and would end the
    process by SIGINT instead; evaluating a string again clears that mark."""
    eval("None")
    sys.exit(code)


# click >= 8.2 raises this for a group called without a command.
_NoArgsIsHelp = getattr(click.exceptions, "NoArgsIsHelpError", ())


class _Terminated(KeyboardInterrupt):
    """SIGTERM, unwound like Ctrl-C so every temporary file is removed."""


def _on_sigterm(signum, frame):
    if os.getpid() != _on_sigterm.pid:          # a forked worker: die as asked
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        return
    _on_sigterm.pending = True
    raise _Terminated()


_on_sigterm.pending = False


def _checked(update=None):
    """The progress callable a kind is given (called at least once per chunk): it
    raises again a SIGTERM whose exception was swallowed on its way up (a C
    extension calling back into Python may clear it), then moves the bar."""
    def tick(n):
        if _on_sigterm.pending:
            raise _Terminated()
        if update is not None:
            update(n)
    return tick


class _Group(click.Group):
    """SimulatorError, an uncaught OSError and click's usage errors: one ``error:``
    line and exit 2; Ctrl-C and SIGTERM: one line and exit 130 / 143."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _NoArgsIsHelp as exc:       # bare `tickprop`: the help, not an error
            click.echo(exc.ctx.get_help())
            sys.exit(0)
        except click.UsageError as exc:
            where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            click.echo(f"error: {exc.format_message()}{where}", err=True)
            sys.exit(2)
        except click.ClickException as exc:
            click.echo(f"error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            click.echo("interrupted", err=True)
            _exit_interrupted(130)
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx):
        previous = hook = None
        if threading.current_thread() is threading.main_thread():
            _on_sigterm.pid, _on_sigterm.pending = os.getpid(), False
            previous = signal.signal(signal.SIGTERM, _on_sigterm)
            hook, sys.unraisablehook = sys.unraisablehook, _redeliver(sys.unraisablehook)
        try:
            return super().invoke(ctx)
        except SimulatorError as exc:
            _fail(exc)
        except OSError as exc:
            _fail(files.output_error(exc))     # 'cannot write' only for write errnos
        except KeyboardInterrupt as exc:
            _stop(exc, half_imported=_in_import(exc))
        except ImportError as exc:
            # Ctrl-C that broke a C extension's import (matplotlib's ft2font)
            # comes out as ImportError('initialization failed') from it.
            interrupt = _interrupt_behind(exc)
            if interrupt is None:
                raise
            _stop(interrupt, half_imported=True)
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
            if hook is not None:
                sys.unraisablehook = hook


def _stop(interrupt, half_imported=False):
    """The one line and exit 130 (Ctrl-C) or 143 (SIGTERM), all cleaned up. After an
    extension's import was broken half-way (``half_imported``) the interpreter's
    shutdown can abort on it, so the process then ends at once."""
    terminated = isinstance(interrupt, _Terminated)
    code = 143 if terminated else 130
    click.echo("terminated" if terminated else "interrupted", err=True)
    if half_imported:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    _exit_interrupted(code)


def _in_import(exc):
    """Was ``exc`` raised in a module's top-level code (a half-imported extension)?"""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_name != "<module>":
        tb = tb.tb_next
    return tb is not None


def _interrupt_behind(exc):
    """The KeyboardInterrupt behind ``exc`` (its causes and contexts), or None."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


REDELIVER_S = 0.01       # how long a dropped Ctrl-C waits to be delivered again


def _redeliver(hook):
    """An unraisable-exception hook that delivers again a Ctrl-C (or SIGTERM) that
    landed in a finalizer or weakref callback, where Python would drop it; other
    unraisable exceptions go to ``hook``."""
    def handle(unraisable):
        if unraisable.exc_type is not None and issubclass(unraisable.exc_type,
                                                           KeyboardInterrupt):
            signum = (signal.SIGTERM if issubclass(unraisable.exc_type, _Terminated)
                      else signal.SIGINT)
            # A moment later from another thread: raised here, it would land
            # in this hook and be dropped again.
            later = threading.Timer(REDELIVER_S, os.kill, (os.getpid(), signum))
            later.daemon = True
            later.start()
            return
        hook(unraisable)
    return handle


def _say(name, lines, out):
    """A run's summary on stdout: '<name>: <headline>', the kind's lines, the folder."""
    click.echo("\n".join([f"{name}: {lines[0]}", *lines[1:], f"-> {out}"]))


def _progress(quiet, length, label):
    """A progress bar on a terminal; nothing with --quiet or when piped."""
    if quiet or not sys.stderr.isatty():
        return None
    return click.progressbar(length=length, label=label, file=sys.stderr)


def _under(bar, work, *args, **kwargs):
    """``work(*args, progress=…, **kwargs)``, under ``bar`` if there is one; the
    progress callable is ``_checked`` either way."""
    if bar is None:
        return work(*args, progress=_checked(), **kwargs)
    with bar:
        return work(*args, progress=_checked(bar.update), **kwargs)


@click.group(cls=_Group)
@click.version_option(package_name="tickprop")
def main():
    """Backprop diffusion: forward and backward waves in time-delayed networks."""


@main.command()
@click.argument("scene")
@click.option("--out", type=click.Path(file_okay=False),
              help="Output folder (default outputs/<scene>/).")
@click.option("--ticks", type=int, help="Override run.ticks.")
@click.option("--seed", type=int, help="Override run.seed.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), help="Override run.device.")
@click.option("--dtype", type=click.Choice(["float32", "float64"]), help="Override run.dtype.")
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
              help="Override any scene key (repeatable), e.g. --set rule.feedback=random.")
@click.option("--no-png", is_flag=True, help="Skip the PNG pictures.")
@click.option("--no-gif", is_flag=True, help="Skip the GIF animations.")
@click.option("--quiet", is_flag=True, help="No progress bar, no summary.")
@click.option("--force", is_flag=True, help=FORCE_HELP)
@click.option("--threads", type=click.IntRange(0, 1024),
              help="BLAS threads (0 = automatic; default: the scene's run.threads).")
def run(scene, out, ticks, seed, device, dtype, overrides, no_png, no_gif, quiet, force,
        threads):
    """Run SCENE (a name from `tickprop scenes`, a .toml file, or a run.json to replay)."""
    name, resolved = scenes.load(scene)
    kind = kinds.get(resolved["kind"])
    typed = kind.overrides({"ticks": ticks, "seed": seed, "device": device, "dtype": dtype})
    if typed or overrides:
        resolved = scenes.apply_overrides(resolved, overrides, scene, typed)
    out = out or outputs.default_out(name + ("_replay" if scene.endswith(".json") else ""))
    outputs.check_out(out, force)                   # before any work
    meta = _run_kind(name, resolved, out, quiet, scenes.find_scene(scene),
                     {"png": False if no_png else None, "gif": False if no_gif else None}, force,
                     threads)
    if not quiet:
        _say(name, kind.summary(out, meta), out)


def _run_kind(name, resolved, out, quiet, where, draw_options=None, force=False, threads=None):
    """Run a resolved scene through its kind with a progress bar; scene errors
    found while preparing name ``where`` (the scene file)."""
    kind = kinds.get(resolved["kind"])
    length = kind.progress(resolved)
    bar = _progress(quiet, length, name) if length else None
    args = dict(draw_options=draw_options, force=force, blas_threads=threads,
                warn=lambda line: click.echo(f"warning: {line}", err=True))
    try:
        return _under(bar, kinds.run_scene, name, resolved, out, **args)
    except (SceneError, BudgetError) as exc:
        raise type(exc)(f"{where}: {exc}") from None


@main.command()
@click.argument("sweep_scene", metavar="SWEEP")
@click.option("--workers", type=click.IntRange(1, 256), default=1, show_default=True,
              help="Local worker processes.")
@click.option("--scheduler", metavar="ADDRESS",
              help="Run the points on this Dask scheduler instead.")
@click.option("--out", type=click.Path(file_okay=False),
              help="Output folder (default outputs/<sweep>/).")
@click.option("--quiet", is_flag=True, help="No progress bar, no summary.")
@click.option("--force", is_flag=True, help=FORCE_HELP)
def sweep(sweep_scene, workers, scheduler, out, quiet, force):
    """Run the grid of a sweep scene; finished points are kept, so a re-run resumes."""
    if scheduler:
        check_scheduler(scheduler)
    name, _, _, _, points = sweeps.plan_sweep(sweep_scene)   # every point checked before any work
    out = out or outputs.default_out(name)
    summary = _under(_progress(quiet, len(points), name), sweeps.run_sweep, sweep_scene, out,
                     workers=workers, scheduler=scheduler, force=force)
    if not quiet:
        _say(name, sweep_lines(summary), summary["csv"])
    if summary["points"] and summary["failed"] == summary["points"]:
        first = next(r for r in summary["records"] if r["status"] != "ok")
        click.echo(f"error: every point of {name} failed ({summary['failed']} of "
                   f"{summary['points']}; see {summary['csv']}); the first: {first['error']}",
                   err=True)
        sys.exit(EXIT_ALL_FAILED)


@main.command()
@click.argument("source", metavar="RUN_DIR", type=click.Path())
@click.option("--out", type=click.Path(file_okay=False),
              help="Write a new folder (RUN_DIR's results + the new pictures); RUN_DIR is "
                   "left as it is. Without it the pictures in RUN_DIR are replaced.")
@click.option("--force", is_flag=True, help=FORCE_HELP)
@click.option("--ticks", metavar="A:B", help="Draw ticks A..B-1 only (A: or :B open-ended).")
@click.option("--layers", metavar="LIST",
              help="Layers to draw: indices, A:B ranges or vertex names, e.g. 4:7 or h1,out "
                   "(the input layer is always kept).")
@click.option("--neurons", metavar="LIST",
              help="Neuron indices each layer shows in the GIF (recorded states), e.g. 0:8.")
@click.option("--every", type=click.IntRange(1), help="One GIF frame every K ticks.")
@click.option("--size", metavar="WxH", help="Picture size in pixels, e.g. 720x400.")
@click.option("--color", type=click.Choice(["magnitude", "tag", "both"]), help="Raster colouring.")
@click.option("--no-png", is_flag=True, help="Skip the PNG pictures.")
@click.option("--no-gif", is_flag=True, help="Skip the GIF animations.")
def render(source, out, force, ticks, layers, neurons, every, size, color, no_png, no_gif):
    """Re-draw the pictures of a saved run of any kind (its folder, or its
    trace.npz / run.json) from its saved results, without simulating."""
    folder = (os.path.dirname(source) or ".") if os.path.isfile(source) else source
    options = {"every": every, "color": color, "size": None if size is None else _parse_size(size),
               "png": False if no_png else None, "gif": False if no_gif else None}
    select = {"ticks": parse_ticks(ticks), "layers": parse_list(layers, "layers", names=True),
              "neurons": parse_list(neurons, "neurons")}
    if out is not None:
        outputs.check_out(out, force)                # before any work
    kind, written, where = kinds.redraw(folder, options, select, out=out, force=force)
    click.echo(f"{kind} pictures re-drawn in {where}: {', '.join(sorted(written)) or 'none'}")


def _parse_size(text):
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise SimulatorError(f"--size {text!r}: expected WIDTHxHEIGHT, e.g. 720x400") from None
    if not (320 <= w <= 4000 and 200 <= h <= 4000):
        raise SimulatorError(f"--size {text!r}: expected a width in 320..4000 and a height "
                             "in 200..4000 pixels")
    return [w, h]


@main.command()
@click.argument("scene", required=False)
@click.option("--depth", type=click.IntRange(1, 512),
              help="Inspect the default scene at this depth L.")
@click.option("--ticks", type=click.IntRange(1), help="Override run.ticks.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def sync(scene, depth, ticks, as_json):
    """Per-layer synchronization table of SCENE (or of the default scene at --depth L)."""
    if scene is None and depth is None:
        raise SimulatorError("give a SCENE or --depth L")
    name, resolved = scenes.load(scene or "fig3_fast")
    if resolved["kind"] != "diffusion":
        raise SimulatorError(f"{name}: sync inspects diffusion scenes, this one is "
                             f"{resolved['kind']!r}")
    typed = {"record.states": False, "record.every": 1}    # the report reads every tick
    if depth is not None and resolved["network"]["layers"]:
        raise SimulatorError(f"{name}: --depth sets the depth of a chain; this scene's network "
                             "is a graph (network.layers)")
    if depth is not None:
        typed.update({"network.depth": depth, "network.sizes": []})
        typed["run.ticks"] = ticks or max(resolved["run"]["ticks"], 8 * depth)
    elif ticks is not None:
        typed["run.ticks"] = ticks
    resolved = scenes.apply_overrides(resolved, [], scene or "--depth", typed)
    report = sync_report(Prepared(name, resolved).simulate())
    click.echo(json.dumps(report, indent=2) if as_json else format_sync(report))


@main.command("pc-table")
@click.option("--dtype", type=click.Choice(["float32", "float64"]), default="float64",
              show_default=True)
@click.option("--levelled/--no-levelled", default=True, show_default=True,
              help="Run Z-IL on levelled graphs (Algorithm 2) or the original ones.")
@click.option("--il-steps", type=click.IntRange(1), default=20, show_default=True, help="IL's T.")
@click.option("--repeats", type=click.IntRange(1), default=10, show_default=True,
              help="Table 2 keeps the fastest of this many runs.")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True)
@click.option("--out", type=click.Path(file_okay=False),
              default=os.path.join("outputs", "pc_table"), show_default=True)
@click.option("--force", is_flag=True, help=FORCE_HELP)
@click.option("--quiet", is_flag=True, help="No progress bar, no tables, no summary.")
def pc_table(dtype, levelled, il_steps, repeats, seed, out, force, quiet):
    """Tables 1 and 2 of Salvatori et al.: BP vs Z-IL divergence and time per
    update (the pc_table scene kind, with its keys as flags)."""
    raw = {"kind": "pc_table", "description": "Tables 1 and 2 of Salvatori et al. (pc-table)",
           "table": {"dtypes": [dtype], "levelled": "levelled" if levelled else "unlevelled",
                     "il_steps": il_steps, "repeats": repeats},
           "run": {"seed": seed}}
    outputs.check_out(out, force)
    meta = _run_kind("pc_table", scenes.validate(raw, "pc-table"), out, quiet, "pc-table",
                     force=force)
    if not quiet:
        click.echo(meta["summary"]["markdown"])
        _say("pc-table", kinds.get("pc_table").summary(out, meta), out)


@main.command()
@click.option("--tier", type=click.Choice(reproducing.TIERS), default="offline",
              show_default=True,
              help="offline: 2 CPU cores, no download; data: the checks that read --data too.")
@click.option("--data", type=click.Path(), help="A local dataset (the data tier only).")
@click.option("--only", multiple=True, metavar="NAME",
              help="Run only this check (repeatable, or comma-separated).")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True,
              help="The first seed of every check.")
@click.option("--out", type=click.Path(file_okay=False), required=True,
              help="The evidence folder: results.json and results.md.")
@click.option("--force", is_flag=True, help=FORCE_HELP)
@click.option("--quiet", is_flag=True, help="No progress bar, no table, no summary.")
def reproduce(tier, data, only, seed, out, force, quiet):
    """Re-measure published numbers as checks (docs/reproduce.md); one line per check:
    name, published, ours, PASS or FAIL. Exit 1 if any check fails."""
    names = reproducing.plan(tier, data, only)       # every mistake before any work
    bar = _progress(quiet, reproducing.STEPS * len(names), "reproduce")
    results, env = _under(bar, reproducing.reproduce, out, tier=tier, data=data, only=only,
                          seed=seed, force=force)
    if not quiet:
        for line in reproducing.table_lines(results):
            click.echo(line)
        click.echo(f"-> {out}")
        click.echo(f"reproduce: {reproducing.headline(results, env)}")
    if reproducing.unexpected(results):
        sys.exit(1)


@main.command("scenes")
def list_scenes():
    """List the shipped scenes with their one-line descriptions."""
    names = scenes.list_scenes()
    width = max((len(n) for n in names), default=0)
    for name in names:
        click.echo(f"{name.ljust(width)}  {scenes.describe(name)}")


@main.command()
@click.argument("source", metavar="RUN_DIR", type=click.Path())
@click.option("--out", type=click.Path(),
              help="Where to write the page (default RUN_DIR/view.html).")
@click.option("--no-open", is_flag=True, help="Write the page only; do not open a browser.")
def view(source, out, no_open):
    """Write one self-contained view.html of a saved diffusion, ar_converge or
    pc_wave run (data embedded, works offline from file://) and open it."""
    path = os.path.abspath(write_view(source, out))
    click.echo(f"view written: {path} ({os.path.getsize(path) / 1024:.0f} KiB)")
    graphical = sys.platform in ("darwin", "win32") or bool(
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    opened = False
    if not no_open and graphical and sys.stdout.isatty():
        try:
            opened = webbrowser.open(pathlib.Path(path).as_uri(), new=2)
        except webbrowser.Error:
            opened = False
    if not opened:
        click.echo(f"open it in a browser: {pathlib.Path(path).as_uri()}")


main.add_command(import_command)        # `tickprop import` (kinds/import_model.py)
