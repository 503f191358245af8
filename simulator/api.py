"""The notebook API: ``simulate`` runs a diffusion scene and returns its Trace, no
files written: ``simulator.simulate("fig1_constant", ticks=50, **{"network.depth": 5})``.
Overrides are the CLI's: ``ticks``, ``seed``, ``device``, ``dtype`` and any
``"section.key"`` (a Python value), or ``--set``'s strings (``"network.depth=5"``),
refused with the CLI's messages.
"""
import os
import warnings

from . import kinds, threads, view  # noqa: F401  (view wires Trace's notebook viewer)
from .arguments import fail
from .build import pairing_warnings
from .errors import SceneError, SimulatorError, did_you_mean
from .probes import Trace
from .runner import Prepared
from .scene import apply_overrides, load, set_value, show, validate
from .kinds.base import TYPED_OPTIONS


OVERRIDES = ("a dict {'ticks': 50, 'section.key': value}, or 'section.key=value' strings "
             "as `tickprop run --set` takes them (one, or a list)")


def resolve(scene_or_path, overrides=None, **more):
    """(name, resolved scene) of a scene name, path or dict, with ``overrides`` (a dict,
    or --set's 'section.key=value' strings, 'ticks=50' too) and ``more`` applied, with
    the CLI's checks and one-line messages, each mistake named 'override ...'."""
    return _override(*_load(scene_or_path), overrides, more)


def _load(scene_or_path):
    if isinstance(scene_or_path, dict):
        return "scene", validate(dict(scene_or_path), "scene")
    if isinstance(scene_or_path, (str, os.PathLike)):
        return load(os.fspath(scene_or_path))
    fail("simulate", "scene_or_path", "a scene name, a .toml or run.json path, or a scene "
         "dict", scene_or_path)


def _override(name, resolved, overrides, more):
    if isinstance(overrides, str):
        overrides = [overrides]
    if isinstance(overrides, dict):
        items = list(overrides.items())
    elif overrides is None or (isinstance(overrides, (list, tuple))
                               and all(isinstance(o, str) for o in overrides)):
        items = list(overrides or [])
    else:
        fail("simulate", "overrides", OVERRIDES, overrides)
    typed, sets = {}, []
    for item in items + list(more.items()):
        pair = isinstance(item, tuple)
        key = item[0] if pair else item.partition("=")[0]
        if not isinstance(key, str):
            fail("simulate", "overrides", "string keys ('ticks', 'section.key')", key)
        what = f"{name}: override {show(key if pair else item)}"
        if not pair and "=" not in item:
            sets.append(item)                  # refused as --set refuses it
        elif key.strip() in TYPED_OPTIONS:
            typed[key.strip()] = item[1] if pair else set_value(item.partition("=")[2], what)
        elif "." not in key:
            raise SceneError(f"{what}: expected one of {', '.join(TYPED_OPTIONS)} or a "
                             f"'section.key' of the scene{did_you_mean(key, TYPED_OPTIONS)}")
        else:
            sets.append(item)
    if not typed and not sets:
        return name, resolved
    values = kinds.get(resolved["kind"]).overrides(typed)
    return name, apply_overrides(resolved, sets, name, values, label=f"{name}: override")


def simulate(scene_or_path, overrides=None, /, out=None, **more):
    """The Trace of a diffusion scene (name, .toml, run.json or dict) with overrides (a
    dict or --set strings, and/or keywords); with ``out``, saved there as `tickprop run
    --out` does and read back. Another kind or a bad override is a SimulatorError; a
    learning run whose updates pair different frames warns (UserWarning) first."""
    name, resolved = _load(scene_or_path)
    if resolved["kind"] != "diffusion":
        raise SimulatorError(f"{name}: simulate returns the Trace of a diffusion scene; this "
                             f"one is of kind {resolved['kind']!r} (run it with `tickprop run "
                             f"{name}`)")
    name, resolved = _override(name, resolved, overrides, more)
    if out is not None and (not isinstance(out, (str, os.PathLike)) or not os.fspath(out)):
        fail("simulate", "out", "None or a folder path to save the run in", out)
    if out is not None:
        kinds.run_scene(name, resolved, os.fspath(out), warn=_warn)
        return Trace.load(os.fspath(out))
    prepared = Prepared(name, resolved)
    for line in pairing_warnings(prepared.spec, prepared.spec.rule, prepared.network):
        _warn(line)
    threads.setup(prepared.spec.run.threads)      # BLAS threads as `tickprop run` picks them
    return prepared.simulate()


def _warn(line):
    """A run's warning line (the CLI's ``warning:`` line) as a Python warning."""
    warnings.warn(line, UserWarning, stacklevel=3)

