"""The layer dicts of a scene's TOML: fields per kind, defaults, one error
per mistake. ``normalize`` fills every field (pairs as tuples);
``denormalize`` is its inverse up to defaults (TOML-ready lists).
"""
import difflib
import math
import re

from ..errors import SimulatorError
from .layers import ACTIVATIONS

INPUT = "input"
_NAME = re.compile(r"^[A-Za-z0-9_\-]+$")
MISSING = object()  # "given nothing": a required key is absent (also FIELDS' "no default")


class LayerError(SimulatorError):
    """A layer dict (or the input shape) is wrong: the layer (index, name), the
    key, what was expected, what was given and a close match."""

    def __init__(self, index, name, key, expected, given, choices=()):
        self.index, self.name, self.key = index, name, key
        if index is None:
            where = key
        elif name is None:
            where = f"layers[{index}]: {key}"
        else:
            where = f"layers[{index}] ({name!r}): {key}"
        shown = "nothing" if given is MISSING else repr(given)
        detail = f"expected {expected}, given {shown}"
        close = difflib.get_close_matches(str(given), [str(c) for c in choices], n=1)
        if close:
            detail += f"; did you mean {close[0]!r}?"
        # ``detail``: the message without its "where" (a scene names the key itself).
        self.detail = detail
        super().__init__(f"{where}: {detail}")


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _int(lo):
    def check(v):
        if _is_int(v) and v >= lo:
            return v
        raise ValueError(f"an integer >= {lo}")
    return check


def _pair(lo):
    def check(v):
        if _is_int(v) and v >= lo:
            return (v, v)
        if (isinstance(v, (list, tuple)) and len(v) == 2
                and all(_is_int(a) and a >= lo for a in v)):
            return (int(v[0]), int(v[1]))
        raise ValueError(f"an integer >= {lo} or a pair [rows, columns] of them")
    return check


def _real(ok, expected):
    def check(v):
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and ok(v):
            return float(v)
        raise ValueError(expected)
    return check


_number = _real(lambda v: v >= 0, "a finite number >= 0")
_finite = _real(lambda v: v != 0, "a finite non-zero number")


def _bool(v):
    if isinstance(v, bool):
        return v
    raise ValueError("true or false")


def _choice(choices):
    def check(v):
        if v in choices:
            return v
        raise ValueError(f"one of {', '.join(choices)}", choices)
    return check


_ACT = _choice(tuple(ACTIVATIONS))
_INIT = {"scale": (1.0, _number), "bias_scale": (0.0, _number)}

# kind -> {key: (default or MISSING, checker)}; pool's stride None means "= size".
FIELDS = {
    "dense": {"units": (MISSING, _int(1)), "activation": ("tanh", _ACT), **_INIT},
    "conv2d": {"channels": (MISSING, _int(1)), "kernel": (MISSING, _pair(1)),
               "stride": (1, _pair(1)), "padding": (0, _pair(0)),
               "activation": ("tanh", _ACT), **_INIT},
    "pool": {"size": (MISSING, _pair(1)), "stride": (None, _pair(1)),
             "mode": ("avg", _choice(("avg", "max")))},
    "flatten": {},
    "tokens": {},
    "add": {"activation": ("linear", _ACT)},
    "identity": {"activation": ("linear", _ACT)},
    "linear": {"units": (MISSING, _int(1)), "bias": (True, _bool),
               "activation": ("linear", _ACT), **_INIT},
    "matmul": {"transpose": (False, _bool), "factor": (1.0, _finite)},
    "softmax": {},
}
COMMON = ("name", "kind", "from")


def normalize(index, raw, previous):
    """The complete config of layer ``index`` given as dict ``raw``;
    ``previous`` is the name ``from`` defaults to."""
    if not isinstance(raw, dict):
        raise LayerError(index, None, "layer", "a table of keys (name, kind, from, ...)", raw)
    name = raw.get("name", str(index + 1))
    if not isinstance(name, str) or not _NAME.match(name) or name == INPUT:
        raise LayerError(index, name, "name",
                         "a name of letters, digits, _ and - other than 'input'", name)
    kind = raw.get("kind", MISSING)
    if kind not in FIELDS:
        raise LayerError(index, name, "kind", f"one of {', '.join(FIELDS)}", kind, FIELDS)
    fields = FIELDS[kind]
    for key in raw:
        if key not in COMMON and key not in fields:
            allowed = COMMON + tuple(fields)
            raise LayerError(index, name, key,
                             f"a key of a {kind} layer ({', '.join(allowed)})", key, allowed)
    parents = raw.get("from", previous)
    if isinstance(parents, str):
        parents = [parents]
    if (not isinstance(parents, (list, tuple)) or not parents
            or not all(isinstance(p, str) for p in parents)):
        raise LayerError(index, name, "from", "a layer name or a non-empty list of them",
                         raw.get("from"))
    cfg = {"name": name, "kind": kind, "from": tuple(parents)}
    for key, (default, check) in fields.items():
        if key not in raw:
            if default is MISSING:
                raise LayerError(index, name, key, f"a value (kind {kind!r} needs {key})", MISSING)
            cfg[key] = default if default is None else check(default)
            continue
        try:
            cfg[key] = check(raw[key])
        except ValueError as exc:
            choices = exc.args[1] if len(exc.args) > 1 else ()
            raise LayerError(index, name, key, exc.args[0], raw[key], choices) from None
    if kind == "pool" and cfg["stride"] is None:
        cfg["stride"] = cfg["size"]
    return cfg


def denormalize(cfg):
    """A TOML-ready layer dict (lists for pairs and ``from``) of a normalized config."""
    out = {}
    for key, value in cfg.items():
        if isinstance(value, tuple):
            value = list(value)
        if key == "from" and len(value) == 1:
            value = value[0]
        out[key] = value
    return out


def check_input_shape(shape):
    """(B-less) input shape as a tuple of positive ints; a bare int means (n,)."""
    if _is_int(shape):
        shape = (shape,)
    if (isinstance(shape, (list, tuple)) and shape
            and all(_is_int(n) and n >= 1 for n in shape)):
        return tuple(int(n) for n in shape)
    raise LayerError(None, None, "input_shape",
                     "a positive integer or a non-empty list of them, e.g. [1, 28, 28]", shape)
