"""The scene: the schema of every kind (sections.py, of fields.py's types),
checked (validation.py), read and overridden (loader.py), typed (specs.py)."""
from .loader import (MAX_FILE_BYTES, SCENES_DIR, apply_overrides, describe,  # noqa: F401
                     find_scene, list_scenes, load, set_value)
from .sections import SCHEMAS, TOP, TRAIN_RULES  # noqa: F401
from .fields import show  # noqa: F401
from .validation import validate  # noqa: F401
from .specs import spec_of  # noqa: F401
from .parameters import read_parameters  # noqa: F401
