"""The scene: the one schema of every kind, read once. fields.py: a class per
field type, each checking its values and writing its one-line error;
sections.py: every kind's sections (SCHEMAS); validation.py: a parsed scene
checked and resolved, every default filled (what run.json stores and
replays); loader.py: scene files and run.json found and read, --set
overrides; specs.py: a resolved scene read once into typed, frozen specs.
This package imports no scene-kind module.
"""
from .loader import (MAX_FILE_BYTES, SCENES_DIR, apply_overrides, describe,  # noqa: F401
                     find_scene, list_scenes, load)
from .sections import SCHEMAS, TOP, TRAIN_RULES  # noqa: F401
from .validation import validate  # noqa: F401
from .specs import spec_of  # noqa: F401
