"""Argument checks of the public Python API, made once where a call enters. Each
names the call, the argument, what was expected and what was given, in one
SimulatorError (``Model.chain: seed: expected an integer >= 0, got 'x' (str)``), and
returns the value as the call uses it.
"""
import os

import numpy as np

from .errors import SimulatorError


def shown(value):
    """An array by shape and dtype, anything else by its repr (60 characters) and type."""
    shape = getattr(value, "shape", None)
    if shape is not None and not isinstance(value, (str, bytes)):
        return f"an array of shape {tuple(shape)} and dtype {getattr(value, 'dtype', '?')}"
    text = repr(value)
    text = text if len(text) <= 60 else text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def fail(call, name, expected, value):
    """The one SimulatorError of a bad argument."""
    raise SimulatorError(f"{call}: {name}: expected {expected}, got {shown(value)}")


def check_int(call, name, value, low=None, high=None):
    """``value`` as an int within [low, high] (bools and non-integral numbers refused)."""
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    if not ok or (low is not None and value < low) or (high is not None and value > high):
        fail(call, name, "an integer" if low is None else f"an integer >= {low}" if high is None
             else f"an integer in {low}..{high}", value)
    return int(value)


def check_number(call, name, value, low=None):
    """``value`` as a finite float >= ``low`` (bools and strings refused)."""
    ok = (isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
          or isinstance(value, (float, np.floating)) and bool(np.isfinite(value)))
    if not ok or (low is not None and value < low):
        fail(call, name, "a finite number" + (f" >= {low:g}" if low is not None else ""), value)
    return float(value)


def check_bool(call, name, value):
    """``value`` as a bool (True or False, numpy's included; nothing else)."""
    if not isinstance(value, (bool, np.bool_)):
        fail(call, name, "True or False", value)
    return bool(value)


def check_seed(call, value, name="seed"):
    """A seed of the host Generator: an integer >= 0."""
    return check_int(call, name, value, 0)


def check_type(call, name, value, types, expected):
    """``value`` if an instance of ``types``, else the error saying ``expected``."""
    if not isinstance(value, types):
        fail(call, name, expected, value)
    return value


def check_path(call, name, value, folder=False):
    """A str of a path whose folder exists (with ``folder``: an existing folder)."""
    if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
        fail(call, name, "a folder path" if folder else "a file path", value)
    path = os.fspath(value)
    where = path if folder else (os.path.dirname(path) or ".")
    if not os.path.isdir(where):
        fail(call, name, "an existing folder" if folder
             else f"a path in an existing folder ({where!r} is none)", value)
    return path


def check_array(call, name, value, shape=None, ndim=None):
    """A numeric array of any array-API namespace (a list is refused: its namespace is
    unknown), of ``shape`` or ``ndim`` when given."""
    got = getattr(value, "shape", None)
    dtype = getattr(value, "dtype", None)
    if got is None or dtype is None or isinstance(value, (str, bytes)):
        fail(call, name, _array_words(shape, ndim) + " (wrap a list in numpy.asarray)", value)
    if (getattr(dtype, "kind", "f") not in "fiub"
            or (shape is not None and tuple(got) != tuple(shape))
            or (ndim is not None and len(got) != ndim)):
        fail(call, name, _array_words(shape, ndim), value)
    return value


def _array_words(shape, ndim):
    if shape is not None:
        return f"a numeric array of shape {tuple(shape)}"
    return "a numeric array" + (f" of {ndim} dimensions" if ndim is not None else "")


def check_keyed_arrays(call, name, value, shapes, subset=False):
    """A dict {key: array} with the keys (with ``subset``: some) and shapes of ``shapes``."""
    if not isinstance(value, dict):
        fail(call, name, "a dict {'<layer>.W': array, ...} keyed like model.parameters()",
             value)
    missing = [] if subset else [k for k in shapes if k not in value]
    extra = [k for k in value if k not in shapes]
    if missing or extra:
        raise SimulatorError(f"{call}: {name}: expected the keys {', '.join(map(repr, shapes))}"
                             f"; missing {missing}, unexpected {extra}")
    for key, array in value.items():
        if tuple(getattr(array, "shape", np.shape(array))) != tuple(shapes[key]):
            fail(call, f"{name}[{key!r}]", f"an array of shape {tuple(shapes[key])}", array)
    return value


def check_run(call, stream, ticks, recorder=None, progress=None, chunk=None):
    """The arguments of an engine's ``run``."""
    if not callable(getattr(stream, "take", None)):
        fail(call, "stream", "a stream (an object with take(n), e.g. "
             "simulator.streams.make_stream)", stream)
    check_int(call, "ticks", ticks, 0)
    if recorder is not None and not (all(callable(getattr(recorder, m, None))
                                         for m in ("record", "flush"))
                                     and hasattr(recorder, "plan")):
        fail(call, "recorder", "None or a recorder (record and flush methods, a plan)",
             recorder)
    if progress is not None and not callable(progress):
        fail(call, "progress", "None or a function progress(n)", progress)
    if chunk is not None:
        check_int(call, "chunk", chunk, 1)

