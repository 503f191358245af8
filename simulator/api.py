"""The notebook API: ``simulate`` runs a diffusion scene and returns its Trace,
no files written: ``simulator.simulate("fig1_constant", ticks=50,
**{"network.depth": 5})``. Overrides are the CLI's: ``ticks``, ``seed``,
``device``, ``dtype`` and any ``"section.key"`` of the scene (a Python value).
"""
import difflib
import os
import warnings

from . import kinds
from .arguments import fail
from .build import pairing_warnings
from .errors import SimulatorError
from .probes import Trace
from .runner import Prepared
from .scene import apply_overrides, load, validate
from .kinds.base import TYPED_OPTIONS
from .view import trace_html

# A Trace's notebook view is the viewer (a floor above probes/): wired here, at the top.
Trace.html_viewer = staticmethod(trace_html)


def resolve(scene_or_path, overrides=None, **more):
    """(name, resolved scene) of a scene name, path or dict, with ``overrides``
    (a dict) and ``more`` applied."""
    if isinstance(scene_or_path, dict):
        name, resolved = "scene", validate(dict(scene_or_path), "scene")
    elif isinstance(scene_or_path, (str, os.PathLike)):
        name, resolved = load(os.fspath(scene_or_path))
    else:
        fail("simulate", "scene_or_path", "a scene name, a .toml or run.json path, or a scene "
             "dict", scene_or_path)
    if overrides is not None and not isinstance(overrides, dict):
        fail("simulate", "overrides", "a dict {'ticks': 50, 'section.key': value, ...}",
             overrides)
    given = dict(overrides or {}, **more)
    for key in given:
        if not isinstance(key, str):
            fail("simulate", "overrides", "string keys ('ticks', 'section.key')", key)
    if not given:
        return name, resolved
    kind = kinds.get(resolved["kind"])
    typed = kind.overrides({k: given.get(k) for k in TYPED_OPTIONS})
    for key, value in given.items():
        if key in TYPED_OPTIONS:
            continue
        if "." not in key:
            hint = difflib.get_close_matches(key, TYPED_OPTIONS, n=1)
            raise SimulatorError(f"override {key!r}: expected one of {', '.join(TYPED_OPTIONS)} "
                                 "or a 'section.key' of the scene"
                                 + (f"; did you mean {hint[0]!r}?" if hint else ""))
        typed[key] = value
    return name, apply_overrides(resolved, [], name, typed)


def simulate(scene_or_path, overrides=None, /, out=None, **more):
    """The Trace of a diffusion scene (name, .toml, run.json or dict) with overrides
    (a dict and/or keywords), with ``out`` saved there as ``tickprop run --out``
    does and read back. Another kind or a bad override raises SimulatorError; a
    learning run whose updates pair different frames warns (UserWarning) first."""
    name, resolved = resolve(scene_or_path, overrides, **more)
    if out is not None and (not isinstance(out, (str, os.PathLike)) or not os.fspath(out)):
        fail("simulate", "out", "None or a folder path to save the run in", out)
    if resolved["kind"] != "diffusion":
        raise SimulatorError(f"{name}: simulate returns the Trace of a diffusion scene; this "
                             f"one is of kind {resolved['kind']!r} (run it with `tickprop run "
                             f"{name}`)")
    if out is not None:
        kinds.run_scene(name, resolved, os.fspath(out), warn=_warn)
        return Trace.load(os.fspath(out))
    prepared = Prepared(name, resolved)
    for line in pairing_warnings(prepared.spec, prepared.spec.rule, prepared.network):
        _warn(line)
    return prepared.simulate()


def _warn(line):
    """A run's warning line (the CLI's ``warning:`` line) as a Python warning."""
    warnings.warn(line, UserWarning, stacklevel=3)

