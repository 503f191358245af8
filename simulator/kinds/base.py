"""What a scene kind is: one record that says how it runs and how it draws.

A ``Kind`` is registered once (simulator/kinds/__init__.py) and everything that
runs or draws a scene goes through it: ``tickprop run`` and ``tickprop render``
for every kind, ``tickprop pc-table`` as an alias of the pc_table kind.

- ``prepare(name, scene, options) -> job`` builds and checks everything that
  can be refused (before any output folder exists; ``options`` are the draw
  options, so a kind can count the pictures it will draw in its budget); ``job(folder, progress)`` then
  does the experiment, saves into ``folder`` every array its pictures need and
  returns the summary that run.json stores (a ``"timings"`` entry of it goes to
  run.json's timings instead).
- ``draw(folder, meta, options) -> {file name: path}`` re-draws the kind's
  pictures from the saved results in ``folder`` and ``meta`` (the run.json
  content) only, never simulating; ``options`` holds the render options the
  user gave (``png``/``gif`` False to skip, and those named in ``draws``).
- ``options`` maps the typed CLI options (--ticks/--seed/--device/--dtype) the
  kind accepts to the scene key each sets (or to a function value -> {key:
  value}); ``refuse`` says, per option it has no use for, why, in one line.
  Every typed option is in exactly one of the two.
- ``summary(folder, meta) -> [lines]`` says the result on the terminal, read
  back from the saved results in ``folder`` (so a test can recompute it from
  the files): its first line is the headline, the others (indented) the
  numbers of that kind. ``selects`` names the ``tickprop render`` selectors
  (ticks, layers, neurons) the kind's pictures honour; the others are refused.
"""
import copy
import os
from dataclasses import dataclass, field
from typing import Callable, Mapping

from ..errors import SceneError, SimulatorError
from ..safe_read import shown
from ..scene import SCHEMAS

TYPED_OPTIONS = ("ticks", "seed", "device", "dtype")
RENDER_OPTIONS = ("every", "size", "color")      # --no-png/--no-gif apply to every kind
SELECTORS = ("ticks", "layers", "neurons")        # tickprop render's choice of what is drawn


def _no_progress(scene):
    return 0


def _done_in(meta):
    return f"done in {meta['timings']['run_s']:.2f} s"


def _headline_only(kind):
    def summary(folder, meta):
        return [kind.headline(meta)]
    return summary


@dataclass(frozen=True)
class Kind:
    """One scene kind: how it runs, how it draws, which CLI options it takes."""

    name: str
    prepare: Callable
    draw: Callable
    options: Mapping = field(default_factory=dict)
    refuse: Mapping = field(default_factory=dict)
    draws: tuple = ()
    progress: Callable = _no_progress
    headline: Callable = _done_in
    summary: Callable = None
    selects: tuple = ()

    def __post_init__(self):
        if self.summary is None:
            object.__setattr__(self, "summary", _headline_only(self))
        both = set(self.options) & set(self.refuse)
        missing = set(TYPED_OPTIONS) - set(self.options) - set(self.refuse)
        extra = (set(self.options) | set(self.refuse)) - set(TYPED_OPTIONS)
        if (both or missing or extra or set(self.draws) - set(RENDER_OPTIONS)
                or set(self.selects) - set(SELECTORS)):
            raise ValueError(f"kind {self.name!r}: every option of {TYPED_OPTIONS} must be "
                             f"accepted or refused once (both {both}, missing {missing}, "
                             f"unknown {extra}); draws must be among {RENDER_OPTIONS}, "
                             f"selects among {SELECTORS}")

    def run(self, name, scene, folder, progress=None):
        """Prepare and run a resolved scene of this kind into an existing folder;
        return its summary."""
        return self.prepare(name, scene, {"png": False, "gif": False})(folder, progress)

    def overrides(self, given):
        """{scene key: value} for the typed CLI options given (None = not given);
        an option this kind has no use for is refused with its reason."""
        out = {}
        for option in TYPED_OPTIONS:
            value = given.get(option)
            if value is None:
                continue
            if option in self.refuse:
                raise SceneError(f"--{option}: {self.refuse[option]}")
            target = self.options[option]
            out.update(target(value) if callable(target) else {target: value})
        return out

    def render_options(self, given):
        """The render options given (None = not given), refusing by name those
        this kind's pictures do not have."""
        out = {k: v for k, v in given.items() if v is not None}
        for option in out:
            if option in RENDER_OPTIONS and option not in self.draws:
                has = f" (it has {', '.join('--' + d for d in self.draws)})" if self.draws else ""
                raise SimulatorError(f"--{option}: a {self.name} run has no such picture "
                                     f"option{has}")
        return out

    def check_selection(self, selection, kinds_with):
        """Refuse a render selector (--ticks/--layers/--neurons) this kind's
        pictures do not honour, naming the kinds it applies to
        (``kinds_with``: {selector: [kind names]})."""
        for option, value in selection.items():
            if value is not None and option not in self.selects:
                where = ", ".join(kinds_with.get(option, [])) or "none"
                raise SimulatorError(f"--{option}: a {self.name} run has nothing to select it "
                                     f"on; it applies to runs of kind {where}")


def saved_section(folder, meta, kind, section):
    """A section of the scene a run.json saved, checked again against the
    kind's schema (simulator.scene) as a scene file would be: each key the
    run.json holds must be valid (SceneError naming run.json and the key,
    e.g. ``run.json: key 'scene.render.gif'``), a key or the whole section
    it lacks takes the schema's default (a run.json of an earlier version)."""
    fields = SCHEMAS[kind][section]
    scene = meta.get("scene") if isinstance(meta, dict) else None
    given = scene.get(section, {}) if isinstance(scene, dict) else {}
    where = shown(os.path.join(folder, "run.json"))
    if not isinstance(given, dict):
        raise SceneError(f"{where}: key 'scene.{section}': expected a table, got "
                         f"{type(given).__name__}")
    return {key: field.check(given[key], f"{where}: key 'scene.{section}.{key}'")
            if key in given else copy.deepcopy(field.default) for key, field in fields.items()}
