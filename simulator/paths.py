"""Where the shipped scenes are: ``scenes/`` beside ``simulator/`` in a checkout or
editable install, else ``<prefix>/share/tickprop/scenes`` (setup.cfg's
``[options.data_files]``; prefix: the environment's data path or user base)."""
import os
import site
import sys
import sysconfig

_CHECKOUT_SCENES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "scenes")
_SHARE = os.path.join("share", "tickprop", "scenes")


def scene_dirs():
    """The folders that may hold shipped scenes, in search order."""
    prefixes = [sysconfig.get_path("data"), sys.prefix, getattr(site, "USER_BASE", None)]
    dirs = [_CHECKOUT_SCENES]
    for prefix in prefixes:
        if prefix and os.path.join(prefix, _SHARE) not in dirs:
            dirs.append(os.path.join(prefix, _SHARE))
    return dirs


def scenes_dir():
    """The first of scene_dirs() holding a .toml, else the checkout's (for errors)."""
    for folder in scene_dirs():
        if os.path.isdir(folder) and any(f.endswith(".toml") for f in os.listdir(folder)):
            return folder
    return _CHECKOUT_SCENES
