"""The scene: the one schema of every kind, read once.

    fields.py      a class per field type (Int, Float, Str, ...), each checking
                   its own values and writing its own one-line error
    sections.py    every kind's sections, one field object per key (SCHEMAS)
    validation.py  a parsed scene checked and resolved, every default filled
    loader.py      scene files and run.json (replay) found and read; --set overrides
    specs.py       a resolved scene read once into typed, frozen specs (spec_of)

A bad scene fails before any work with one SceneError naming the file, the
key, what was expected and what was given. The resolved scene is what run.json
stores and replays. This package imports no scene-kind module: the kinds'
code imports their sections from here.
"""
from .loader import (MAX_FILE_BYTES, SCENES_DIR, apply_overrides, describe, find_scene,  # noqa: F401
                     list_scenes, load)
from .sections import SCHEMAS, SUMMARIES, SWEEP_SECTIONS, TOP, TRAIN_RULES  # noqa: F401
from .validation import validate  # noqa: F401
from .specs import SceneSpec, spec_of  # noqa: F401
