"""The scene: the one schema of every kind (sections.py, of field types in
fields.py), checked and resolved (validation.py), found, read and overridden
(loader.py) and read into typed, frozen specs (specs.py). It imports no
scene-kind module.
"""
from .loader import (MAX_FILE_BYTES, SCENES_DIR, apply_overrides, describe,  # noqa: F401
                     find_scene, list_scenes, load)
from .sections import SCHEMAS, TOP, TRAIN_RULES  # noqa: F401
from .validation import validate  # noqa: F401
from .specs import spec_of  # noqa: F401
