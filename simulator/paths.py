"""Where tickprop finds the files it ships beside its code (the scenes).

In a checkout (and an editable install) the scenes are the top-level
``scenes/`` folder next to ``simulator/``. A regular install (``pip install .``
or a wheel) copies them as data files to ``<prefix>/share/tickprop/scenes``
(see ``[options.data_files]`` in setup.cfg); ``prefix`` is the environment's
data path, or the user base for ``pip install --user``.
"""
import os
import site
import sys
import sysconfig

_CHECKOUT_SCENES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "scenes")
_SHARE = os.path.join("share", "tickprop", "scenes")


def scene_dirs():
    """The folders that may hold shipped scenes, in the order they are searched."""
    prefixes = [sysconfig.get_path("data"), sys.prefix, getattr(site, "USER_BASE", None)]
    dirs = [_CHECKOUT_SCENES]
    for prefix in prefixes:
        if prefix and os.path.join(prefix, _SHARE) not in dirs:
            dirs.append(os.path.join(prefix, _SHARE))
    return dirs


def scenes_dir():
    """The folder of the shipped scenes: the checkout's ``scenes/`` when tickprop
    runs from a checkout or an editable install, else the installed data files.
    Returns the checkout path (which may not exist) when neither is present, so
    error messages still name a sensible place."""
    for folder in scene_dirs():
        if os.path.isdir(folder) and any(f.endswith(".toml") for f in os.listdir(folder)):
            return folder
    return _CHECKOUT_SCENES
