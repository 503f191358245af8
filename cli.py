"""tickprop command line: parse, call the simulator, print. Nothing else lives here.

Exit codes: 0 success; 2 user error (one ``error:`` line on stderr, nothing
written); 1 internal failure (a bug: the traceback is printed).
"""
import os
import sys

import click

from simulator.errors import BudgetError, SceneError, SimulatorError


def _fail(exc):
    click.echo(f"error: {exc}", err=True)
    sys.exit(2)


class _Group(click.Group):
    """Turns SimulatorError into one line and exit code 2, and keeps click's own
    usage errors at exit 2 too."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except SimulatorError as exc:
            _fail(exc)


def _progress(quiet, length, label):
    """A progress bar on a terminal; nothing with --quiet or when piped."""
    if quiet or not sys.stderr.isatty():
        return None
    return click.progressbar(length=length, label=label, file=sys.stderr)


@click.group(cls=_Group)
@click.version_option(package_name="tickprop")
def main():
    """Backprop diffusion: forward and backward waves in time-delayed networks."""


@main.command()
@click.argument("scene")
@click.option("--out", type=click.Path(file_okay=False), help="Output folder (default outputs/<scene>/).")
@click.option("--ticks", type=int, help="Override run.ticks.")
@click.option("--seed", type=int, help="Override run.seed.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), help="Override run.device.")
@click.option("--dtype", type=click.Choice(["float32", "float64"]), help="Override run.dtype.")
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
              help="Override any scene key (repeatable), e.g. --set rule.feedback=random.")
@click.option("--quiet", is_flag=True, help="No progress bar, no summary.")
def run(scene, out, ticks, seed, device, dtype, overrides, quiet):
    """Run SCENE (a name from `tickprop scenes`, a .toml file, or a run.json to replay)."""
    from simulator import scene as scenes
    from simulator.runner import Prepared, write_run

    name, resolved = scenes.load(scene)
    typed = {f"run.{key}": value for key, value in
             (("ticks", ticks), ("seed", seed), ("device", device), ("dtype", dtype))
             if value is not None}
    if typed or overrides:
        resolved = scenes.apply_overrides(resolved, overrides, scene, typed)
    replay = scene.endswith(".json")
    out = out or os.path.join("outputs", name + ("_replay" if replay else ""))
    if resolved["kind"] == "sweep":
        raise SceneError(f"{name} is a sweep scene: run it with `tickprop sweep {scene}`")
    if resolved["kind"] != "diffusion":
        _run_other(name, resolved, out, quiet)
        return
    try:
        prepared = Prepared(name, resolved)
    except (SceneError, BudgetError) as exc:
        raise type(exc)(f"{scenes.find_scene(scene)}: {exc}") from None
    bar = _progress(quiet, resolved["run"]["ticks"], f"{name}")
    if bar is None:
        trace = prepared.simulate()
    else:
        with bar:
            trace = prepared.simulate(progress=bar.update)
    write_run(out, trace)
    if not quiet:
        t = trace.meta["timings"]
        click.echo(f"{name}: {resolved['run']['ticks']} ticks in {t['simulate_s']:.2f} s "
                   f"({t['ticks_per_s']:.0f} ticks/s) -> {out}")


def _run_other(name, resolved, out, quiet):
    from simulator.runner import run_other_kind

    meta = run_other_kind(name, resolved, out)
    if not quiet:
        click.echo(f"{name}: done in {meta['timings']['run_s']:.2f} s -> {out}")


@main.command()
@click.argument("sweep_scene", metavar="SWEEP")
@click.option("--workers", type=click.IntRange(1, 256), default=1, show_default=True,
              help="Local worker processes.")
@click.option("--scheduler", metavar="ADDRESS", help="Run the points on this Dask scheduler instead.")
@click.option("--out", type=click.Path(file_okay=False), help="Output folder (default outputs/<sweep>/).")
@click.option("--quiet", is_flag=True, help="No progress bar, no summary.")
def sweep(sweep_scene, workers, scheduler, out, quiet):
    """Run the grid of a sweep scene; finished points are kept, so a re-run resumes."""
    from simulator import sweep as sweeps

    name, sweep_cfg, _, _ = sweeps.load_sweep(sweep_scene)
    out = out or os.path.join("outputs", name)
    total = len(sweeps.points_of(sweep_cfg["sweep"]))
    bar = _progress(quiet, total, name)
    if bar is None:
        summary = sweeps.run_sweep(sweep_scene, out, workers=workers, scheduler=scheduler)
    else:
        with bar:
            summary = sweeps.run_sweep(sweep_scene, out, workers=workers, scheduler=scheduler,
                                       progress=bar.update)
    if not quiet:
        click.echo(f"{name}: {summary['points']} points ({summary['ran']} run now, "
                   f"{summary['failed']} failed) in {summary['seconds']:.1f} s -> {summary['csv']}")


@main.command("scenes")
def list_scenes():
    """List the shipped scenes with their one-line descriptions."""
    from simulator import scene as scenes

    names = scenes.list_scenes()
    width = max((len(n) for n in names), default=0)
    for name in names:
        click.echo(f"{name.ljust(width)}  {scenes.describe(name)}")


if __name__ == "__main__":
    main()
