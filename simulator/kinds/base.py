"""What a scene kind is: one ``Kind`` record (registered in kinds/__init__.py).
``prepare(name, scene, options) -> job`` refuses what it can before any output folder
exists; ``job(folder, progress)`` runs, saves what the pictures need and returns run.json's
summary (its ``"timings"`` go to run.json's timings; ``job.warnings``: lines said before it
runs). ``draw(folder, meta, options) -> {file name: path}`` draws from the saved results
and run.json alone, importing matplotlib only to draw. ``summary(folder, meta) -> [lines]``:
a headline, then indented numbers."""
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


def run_keys(*options):
    """{option: its run.<option> scene key} for the typed options given."""
    return {option: f"run.{option}" for option in options}


def done_in(meta):
    """The usual headline: the run's wall time."""
    return f"done in {meta['timings']['run_s']:.2f} s"


def wanted(options, png=True, gif=True):
    """(png, gif): each where the scene and the render ``options`` (False: skip) allow it."""
    return png and options.get("png", True), gif and options.get("gif", True)


@dataclass(frozen=True)
class Kind:
    """One scene kind: how it runs and draws. ``options``: {typed CLI option it
    takes: scene key, or value -> {key: value}}; ``refuse``: {the others: why};
    ``draws``/``selects``: the render options and selectors its pictures honour."""

    name: str
    prepare: Callable
    draw: Callable
    options: Mapping = field(default_factory=dict)
    refuse: Mapping = field(default_factory=dict)
    draws: tuple = ()
    progress: Callable = lambda scene: 0
    summary: Callable = lambda folder, meta: [done_in(meta)]
    selects: tuple = ()

    def __post_init__(self):
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
        """Prepare and run a resolved scene into an existing folder; return its summary."""
        return self.prepare(name, scene, {"png": False, "gif": False})(folder, progress)

    def overrides(self, given):
        """{scene key: value} for the typed CLI options given (None = not given), refusing
        with its reason an option this kind has no use for."""
        out = {}
        for option in (o for o in TYPED_OPTIONS if given.get(o) is not None):
            if option in self.refuse:
                raise SceneError(f"--{option}: {self.refuse[option]}")
            target, value = self.options[option], given[option]
            out.update(target(value) if callable(target) else {target: value})
        return out

    def render_options(self, given):
        """The render options given (None = not given); those this kind lacks refused."""
        out = {k: v for k, v in given.items() if v is not None}
        for option in out:
            if option in RENDER_OPTIONS and option not in self.draws:
                has = f" (it has {', '.join('--' + d for d in self.draws)})" if self.draws else ""
                raise SimulatorError(f"--{option}: a {self.name} run has no such picture "
                                     f"option{has}")
        return out


def saved_section(folder, meta, kind, section):
    """A section of the scene a run.json saved, checked again against the kind's
    schema: an invalid key is a SceneError naming run.json and the key (e.g.
    ``run.json: key 'scene.render.gif'``); a missing key takes its default."""
    fields = SCHEMAS[kind][section]
    scene = meta.get("scene") if isinstance(meta, dict) else None
    given = scene.get(section, {}) if isinstance(scene, dict) else {}
    where = shown(os.path.join(folder, "run.json"))
    if not isinstance(given, dict):
        raise SceneError(f"{where}: key 'scene.{section}': expected a table, got "
                         f"{type(given).__name__}")
    return {key: field.check(given[key], f"{where}: key 'scene.{section}.{key}'")
            if key in given else copy.deepcopy(field.default) for key, field in fields.items()}
