"""The one scene schema: field types, every kind's sections, loading and overrides.

A scene is a TOML file: top-level ``description`` and ``kind``, then sections
of keys. Every key of every kind is declared here once, as a field object of
one of the field types below (Int, Float, Str, Bool, Size, ListOf, Window,
Tuple, Table); each type checks its own values and writes its own error
message, and a list checks every entry with its entry type's message. Loading
fills in the defaults and checks everything before any work, so a bad scene
fails with one SceneError naming the file, the key, what was expected and what
was given, with a did-you-mean for typos::

    fig.toml: key 'network.sizes[2]': expected an integer in 1..65536, got 0

The resolved scene (all defaults filled) is what run.json stores and replays.
This module imports no other scene-kind module: the kinds' code imports their
sections from here.
"""
import copy
import difflib
import json
import math
import os
import re
import sys
import tomllib

from .errors import SceneError
from .network import ACTIVATIONS
from .options import DERIVATIVE, FEEDBACK, LOSSES, PAIRING, REFERENCE
from .streams import INPUTS, TARGETS

SCENES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scenes")
# A scene or run.json larger than this is not one (a binary file given by mistake).
MAX_FILE_BYTES = 16 * 2**20
# Python refuses to turn longer integers into text (sys.get_int_max_str_digits).
_INT_DIGITS = sys.get_int_max_str_digits() or 4300


# ------------------------------------------------------------------ showing values
def _digits(n):
    """Decimal digits of the integer n, without converting it to text."""
    n = abs(n)
    if n == 0:
        return 1
    d = int(n.bit_length() * 0.30102999566398120) + 1
    return d - 1 if n < 10 ** (d - 1) else d


def _kind_name(value):
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


def show(value, typed=False, limit=60):
    """A short, always printable rendering of a scene value for an error
    message (TOML spelling; huge integers as their digit count, long strings
    and lists cut); ``typed`` appends the value's type, e.g. "'x' (a string)"."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int):
        if _digits(value) > 30:
            return f"an integer with {_digits(value)} digits"
        text = str(value)
    elif isinstance(value, float):
        text = repr(value)
    elif isinstance(value, str):
        text = repr(value if len(value) <= limit else value[:limit] + "...")
    elif isinstance(value, (list, tuple)):
        parts = [show(v, limit=limit // 2) for v in value[:5]]
        text = "[" + ", ".join(parts + (["..."] if len(value) > 5 else [])) + "]"
    elif isinstance(value, dict):
        parts = [f"{show(str(k), limit=20)} = {show(v, limit=limit // 2)}"
                 for k, v in list(value.items())[:3]]
        text = "{" + ", ".join(parts + (["..."] if len(value) > 3 else [])) + "}"
    else:
        text = type(value).__name__
    if len(text) > 2 * limit:
        text = text[:2 * limit] + "..."
    return f"{text} ({_kind_name(value)})" if typed else text


def _closest(word, known):
    """The known name closest to ``word`` (difflib, cutoff 0.6), or None."""
    if not isinstance(word, str) or len(word) > 100:
        return None
    close = difflib.get_close_matches(word, [str(k) for k in known], n=1, cutoff=0.6)
    return close[0] if close else None


def did_you_mean(word, known):
    """' (did you mean 'x'?)' for the closest known name, or ''."""
    close = _closest(word, known)
    return f" (did you mean {close!r}?)" if close else ""


_did_you_mean = did_you_mean     # the old private name


def _number(x):
    """A range bound as a user would write it: 0, 1.5, 1e-09."""
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e7 else f"{x:g}"


def _entry(where, index):
    """The ``where`` of a list entry: "f: key 'a.b'" -> "f: key 'a.b[2]'"."""
    return f"{where[:-1]}[{index}]'" if where.endswith("'") else f"{where}[{index}]"


# ------------------------------------------------------------------ field types
class Field:
    """One scene key: its default, its meaning and how to check a value.
    Subclasses say what they accept in ``expected`` and implement ``check``."""

    expected = "a value"

    def __init__(self, default, doc):
        self.default, self.doc = default, doc

    def check(self, value, where):
        """Return the value converted to its type, or raise SceneError naming
        ``where`` (e.g. "scene.toml: key 'run.ticks'"), what was expected and
        what was given."""
        raise NotImplementedError

    def fail(self, value, where, expected=None, typed=False, hint=""):
        """Raise the field's SceneError for ``value``."""
        raise SceneError(f"{where}: expected {expected or self.expected}, "
                         f"got {show(value, typed=typed)}{hint}")


class Int(Field):
    """An integer in low..high (booleans and floats are refused)."""

    def __init__(self, default, doc, low, high):
        super().__init__(default, doc)
        self.low, self.high = low, high
        self.expected = f"an integer in {low}..{high}"

    def check(self, value, where):
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(value, where, typed=True)
        if not self.low <= value <= self.high:
            self.fail(value, where)
        return value


class Float(Field):
    """A finite number in low..high (an integer is taken as a float)."""

    def __init__(self, default, doc, low, high):
        super().__init__(default, doc)
        self.low, self.high = low, high
        self.expected = f"a finite number in {_number(low)}..{_number(high)}"

    def check(self, value, where):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(value, where, typed=True)
        try:
            number = float(value)
        except OverflowError:
            self.fail(value, where)
        if not math.isfinite(number) or not self.low <= number <= self.high:
            self.fail(value, where)
        return number


class Str(Field):
    """A string, one of ``choices`` when given (with a did-you-mean), else any
    non-empty string."""

    def __init__(self, default, doc, choices=None):
        super().__init__(default, doc)
        self.choices = tuple(choices) if choices is not None else None
        self.expected = (f"one of {', '.join(self.choices)}" if self.choices is not None
                         else "a non-empty string")

    def check(self, value, where):
        if not isinstance(value, str):
            self.fail(value, where, typed=True)
        if self.choices is None and not value:
            self.fail(value, where)
        if self.choices is not None and value not in self.choices:
            self.fail(value, where, hint=did_you_mean(value, self.choices))
        return value


class Bool(Field):
    """true or false (not 0 or 1)."""

    expected = "true or false"

    def check(self, value, where):
        if not isinstance(value, bool):
            self.fail(value, where, typed=True)
        return value


_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?)\s*([a-zA-Z]*)\s*")


def size_bytes(value):
    """Bytes of a size a Size field accepts ('512MiB', '1GiB', '2e9', '1.5GB'
    or an integer); ValueError for anything else, inf or NaN included."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = _SIZE.fullmatch(value) if isinstance(value, str) else None
    if match is None or match.group(2).lower() not in _UNITS | {"": 1}:
        raise ValueError(f"not a size: {show(value)}")
    number = float(match.group(1)) * _UNITS.get(match.group(2).lower(), 1)
    if not math.isfinite(number):
        raise ValueError(f"not a finite size: {show(value)}")
    return int(number)


class Size(Field):
    """A memory size: an integer number of bytes or a string such as '1GiB'
    (units B, KB, MB, GB, KiB, MiB, GiB, TiB), between low and high bytes. The
    value is kept as written (run.json stays readable); ``size_bytes`` reads it."""

    def __init__(self, default, doc, low, high):
        super().__init__(default, doc)
        self.low, self.high = low, high
        self.expected = (f"a size from {low} bytes to {high // 2**40} TiB, such as '512MiB', "
                         "'1GiB' or a number of bytes")

    def check(self, value, where):
        try:
            n = size_bytes(value)
        except ValueError:
            typed = not isinstance(value, str)
            self.fail(value, where, typed=typed)
        if not self.low <= n <= self.high:
            self.fail(value, where)
        return value


class ListOf(Field):
    """A list whose every entry is checked by ``entry`` (a Field), with its
    entry's own message and index ("key 'record.layers[2]'"). Its length is in
    min_len..max_len, or 0 when ``empty_ok``; ``unique`` refuses repeats;
    ``single`` also takes one bare entry as a one-entry list."""

    def __init__(self, entry, default, doc, min_len=0, max_len=1024, empty_ok=False,
                 unique=False, single=False):
        super().__init__(default, doc)
        self.entry, self.min_len, self.max_len = entry, min_len, max_len
        self.empty_ok, self.unique, self.single = empty_ok, unique, single
        self.choices = getattr(entry, "choices", None)
        length = f"{min_len}..{max_len} entries" if min_len else f"at most {max_len} entries"
        self.expected = (f"a list of {length}{' (or an empty list)' if empty_ok else ''}, "
                         f"each {entry.expected}")

    def check(self, value, where):
        if self.single and not isinstance(value, list):
            value = [value]
        if not isinstance(value, list):
            self.fail(value, where, typed=True)
        if not (self.min_len <= len(value) <= self.max_len or (self.empty_ok and not value)):
            self.fail(value, where, hint=f" ({len(value)} entries)")
        out = [self.entry.check(v, _entry(where, i)) for i, v in enumerate(value)]
        if self.unique and len({json.dumps(v) for v in out}) != len(out):
            self.fail(value, where, expected=self.expected + ", each at most once")
        return out


class Window(Field):
    """A tick window [start, stop] with 0 <= start < stop <= high."""

    def __init__(self, default, doc, high):
        super().__init__(default, doc)
        self.high = high
        self.expected = f"a tick window [start, stop] with 0 <= start < stop <= {high}"

    def check(self, value, where):
        ok = (isinstance(value, list) and len(value) == 2 and
              all(isinstance(v, int) and not isinstance(v, bool) for v in value))
        if not ok:
            self.fail(value, where, typed=True)
        if not 0 <= value[0] < value[1] <= self.high:
            self.fail(value, where)
        return list(value)


class Tuple(Field):
    """A list of fixed length, entry i checked by ``entries[i]`` (named ``names[i]``)."""

    def __init__(self, entries, names, default, doc):
        super().__init__(default, doc)
        self.entries, self.names = entries, names
        self.expected = ("[" + ", ".join(names) + "] with " +
                         ", ".join(f"{n} {e.expected}" for n, e in zip(names, entries)))

    def check(self, value, where):
        if not isinstance(value, list) or len(value) != len(self.entries):
            self.fail(value, where, typed=True)
        return [e.check(v, _entry(where, i)) for i, (e, v) in enumerate(zip(self.entries, value))]


_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*")


class Table(Field):
    """A table {"section.key": value} of scene overrides (a sweep's ``set``),
    or with ``lists`` of non-empty value lists (a sweep's ``grid``, whose
    product has at most ``max_points`` cells). Values are plain TOML: strings,
    booleans, integers up to 2**63, finite numbers, or lists of those."""

    def __init__(self, default, doc, lists, max_points=10_000):
        super().__init__(default, doc)
        self.lists, self.max_points = lists, max_points
        self.expected = ("a table of \"section.key\" = [values, ...]" if lists
                         else "a table of \"section.key\" = value")

    def check(self, value, where):
        if not isinstance(value, dict):
            self.fail(value, where, typed=True)
        cells = 1
        for key, item in value.items():
            if not _KEY.fullmatch(key):
                self.fail(key, where, expected="keys like \"stream.hold\"")
            at = f"{where[:-1]}.\"{key}\"'" if where.endswith("'") else f"{where}.{key}"
            if self.lists:
                if not isinstance(item, list) or not item or len(item) > 1000:
                    raise SceneError(f"{where}: expected a non-empty list of at most 1000 "
                                     f"values for {key!r}, got {show(item, typed=True)}")
                for i, v in enumerate(item):
                    _plain(v, _entry(at, i))
                cells *= len(item)
            else:
                _plain(item, at)
        if cells > self.max_points:
            raise SceneError(f"{where}: expected at most {self.max_points} grid cells, "
                             f"got {cells}")
        return copy.deepcopy(value)


def _plain(value, where, nested=False):
    """Refuse a value that is no plain TOML scene value (see Table)."""
    if isinstance(value, list) and not nested and len(value) <= 1024:
        for i, v in enumerate(value):
            _plain(v, _entry(where, i), nested=True)
        return
    ok = (isinstance(value, (bool, str)) or
          (isinstance(value, int) and abs(value) < 2**63) or
          (isinstance(value, float) and math.isfinite(value)))
    if not ok:
        raise SceneError(f"{where}: expected a string, boolean, integer, finite number"
                         f"{'' if nested else ' or a list of those'}, got {show(value, typed=True)}")


# ------------------------------------------------------------------ the sections
ACTS = tuple(ACTIVATIONS)
WIDTH = 65536           # widest layer
DEPTH = 512             # deepest network (L)
TICKS = 10**8           # longest run
BIG = 1e6               # largest rate, scale or decay (beyond it every run diverges)
SEED = 2**32 - 1        # largest seed


def _width(doc):
    return Int(16, doc, 1, WIDTH)


NETWORK = {
    "depth": Int(9, "L, the index of the output layer (L+1 levels)", 1, DEPTH),
    "width": _width("neurons per hidden layer"),
    "inputs": _width("neurons in layer 0"),
    "outputs": _width("neurons in layer L"),
    "sizes": ListOf(Int(16, "width", 1, WIDTH), [],
                    "explicit widths of layers 0..L (overrides depth/width/inputs/outputs)",
                    min_len=2, max_len=DEPTH + 1, empty_ok=True),
    "hidden": Str("tanh", "σ of layers 1..L−1", ACTS),
    "output": Str("linear", "σ of layer L", ACTS),
    "scale": Float(1.0, "weights ~ N(0, scale²/n_in)", 0.0, BIG),
    "bias_scale": Float(0.0, "biases ~ N(0, bias_scale²)", 0.0, BIG),
}
STREAM = {
    "kind": Str("held", "input stream", INPUTS),
    "batch": Int(1, "independent streams side by side", 1, WIDTH),
    "hold": Int(16, "ticks each frame is held (held, dataset)", 1, TICKS),
    "crossfade": Int(0, "ticks of linear blend into each new frame", 0, TICKS),
    "tau": Float(8.0, "correlation time of smooth noise, ticks", 1e-9, TICKS),
    "period": Float(32.0, "period of sine inputs, ticks", 1e-9, TICKS),
    "amplitude": Float(1.0, "input scale", 0.0, BIG),
}
TARGET = {
    "kind": Str("teacher", "teacher network or dataset labels", TARGETS),
    "scale": Float(1.0, "teacher weight scale", 0.0, BIG),
}
RULE = {
    "loss": Str("mse", "ℓ", tuple(LOSSES)),
    "feedback": Str("transpose", "F_l in the backward wave", FEEDBACK),
    "derivative": Str("local", "D[t,l] in the backward wave", DERIVATIVE),
    "pairing": Str("local", "which x g pairs δ with", PAIRING),
    "supervision_delay": Int(0, "d_y: target of frame t−d_y at tick t", 0, 4 * DEPTH),
    "learning_rate": Float(0.0, "η; 0 freezes the weights", 0.0, BIG),
    "accumulate": Int(1, "apply the summed g every k ticks", 1, TICKS),
    "weight_decay": Float(0.0, "decay of W (and learned B) per update", 0.0, BIG),
    "feedback_scale": Float(1.0, "random B ~ N(0, scale²/n_in)", 0.0, BIG),
    "itd_epsilon": Float(1e-6, "itd-dy keeps the last quotient where |Δa| < ε", 0.0, BIG),
    "reference": Str("input", "frame the mismatch compares with", REFERENCE),
}
RUN = {
    "ticks": Int(200, "ticks to simulate", 1, TICKS),
    "seed": Int(0, "seeds every random draw", 0, SEED),
    "device": Str("cpu", "cpu (numpy) or cuda (cupy)", ("cpu", "cuda")),
    "dtype": Str("float64", "float32 or float64", ("float32", "float64")),
}
RECORD = {
    "states": Bool(True, "record full neuron states"),
    "every": Int(1, "record states every k ticks", 1, TICKS),
    "layers": ListOf(Int(0, "layer", 0, DEPTH), [],
                     "layers whose states are recorded (empty = all)", max_len=DEPTH + 1),
    "metrics": Bool(True, "reference gradients and mismatch per tick"),
    "chunk": Int(256, "ticks per host transfer", 1, WIDTH),
    "memory_budget": Size("1GiB", "refuse runs whose recording exceeds this", 1, 2**50),
}
RENDER = {
    "png": Bool(True, "write waves.png and mismatch.png"),
    "gif": Bool(True, "write waves.gif"),
    "every": Int(1, "one GIF frame every k ticks", 1, TICKS),
    "size": Tuple([Int(720, "width", 320, 4000), Int(400, "height", 200, 4000)],
                  ["width", "height"], [720, 400], "GIF width and height in pixels"),
    "color": Str("both", "raster colouring", ("magnitude", "tag", "both")),
    "windows": ListOf(Window([0, 1], "window", TICKS), [],
                      "tick windows [start, stop] drawn as raster panels (empty = the whole run)",
                      max_len=16),
}
SEED_DEVICE = {k: RUN[k] for k in ("seed", "device", "dtype")}

AR_VARIANTS = ("exact", "random", "learned", "no-derivative", "learned-no-derivative")
ETA_X = Float(0.1, "relaxation rate", 1e-9, 1.999999)
AR_NETWORK = {
    "sizes": ListOf(Int(16, "width", 1, WIDTH), [64, 300, 300, 100, 10],
                    "widths of layers 0..L (a hidden layer at least)", min_len=3,
                    max_len=DEPTH + 1),
    "hidden": Str("relu", "σ of layers 1..L−1", ACTS),
    "output": Str("linear", "σ of layer L", ACTS),
    "scale": Float(1.0, "weights ~ N(0, scale²/n_in)", 0.0, BIG),
    "bias_scale": Float(0.0, "biases ~ N(0, bias_scale²)", 0.0, BIG),
}
AR_COMMON = {
    "iterations": Int(100, "relaxation ticks K per update", 1, 10**6),
    "loss": Str("mse", "ℓ", tuple(LOSSES)),
    "init": Str("forward", "relaxation starts from the forward sweep or zero", ("forward", "zero")),
    "feedback_scale": Float(1.0, "random ψ ~ N(0, scale²/n_in)", 0.0, BIG),
}
AR_CONVERGE = dict(AR_COMMON, **{
    "variant": Str("exact", "AR variant (paper 001 Eqs. 5–8)", AR_VARIANTS),
    "eta_x": ListOf(ETA_X, [0.05, 0.1, 0.2, 0.5, 1.0], "relaxation rates to compare",
                    min_len=1, max_len=64),
    "batch": Int(64, "samples relaxed together", 1, WIDTH),
    "data": Str("digits", "digits images or gaussian inputs", ("digits", "gaussian")),
})
AR_TRAIN = dict(AR_COMMON, **{
    "variants": ListOf(Str("exact", "variant", AR_VARIANTS), list(AR_VARIANTS),
                       "AR variants trained beside backprop", min_len=1,
                       max_len=len(AR_VARIANTS), unique=True),
    "eta_x": ETA_X,
})
SEEDS = ListOf(Int(0, "seed", 0, SEED), [0, 1, 2], "one run per seed", min_len=1, max_len=1000)
TRAIN_BATCHES = {
    "lr": Float(0.05, "SGD rate on the batch-mean gradient", 1e-12, BIG),
    "batch": Int(64, "minibatch size", 1, WIDTH),
    "epochs": Int(20, "sweeps through the training digits", 1, 10**5),
    "seeds": SEEDS,
    "eval_every": Int(0, "minibatches between evaluations (0 = once per epoch)", 0, 10**8),
    "test_fraction": Float(0.25, "share of digits held out", 0.01, 0.99),
}

PC_ARCHITECTURES = ("mlp", "cnn", "rnn", "residual", "attention")
PC_TABLE = {
    "dtypes": ListOf(Str("float64", "dtype", ("float32", "float64")), ["float64", "float32"],
                     "precisions of Table 1", min_len=1, max_len=2, unique=True),
    "levelled": Str("both", "Table 1 on levelled graphs, unlevelled ones, or both",
                    ("both", "levelled", "unlevelled")),
    "il_steps": Int(20, "IL inference ticks T in Table 2", 1, 10**5),
    "repeats": Int(10, "Table 2 keeps the fastest of this many runs", 1, 1000),
}
PC_WAVE = {
    "architecture": Str("residual", "graph builder", PC_ARCHITECTURES),
    "method": Str("zil", "Z-IL (γ = 1, level k learns at tick k) or IL", ("zil", "il")),
    "levelled": Bool(True, "insert identity vertices first (Algorithm 2)"),
    "il_steps": Int(20, "IL inference ticks T", 1, 10**5),
    "gamma": Float(0.1, "IL inference rate γ", 1e-9, BIG),
    "lr": Float(0.01, "parameter learning rate α", 0.0, BIG),
}
PC_RUN = {k: RUN[k] for k in ("seed", "dtype")}
LOCKING = {
    "depth": Int(9, "L, the index of the output layer", 1, 64),
    "frames": Int(6, "frames pushed through both schedules", 1, 200),
    "gif": Bool(True, "also write locking.gif (a tick cursor over both)"),
    "every": Int(1, "one GIF frame every k ticks", 1, 10**6),
}

# The learning rules of a `train` scene (simulator.training.RULES says what each runs).
TRAIN_RULES = ("diffusion", "random", "sign", "learned", "itd-y", "itd-dy", "backprop")
TRAIN = {
    "rules": ListOf(Str("diffusion", "rule", TRAIN_RULES), ["diffusion", "backprop"],
                    "learning rules to train, one run each (one name = a one-rule list)",
                    min_len=1, max_len=len(TRAIN_RULES), unique=True, single=True),
    "learning_rate": Float(0.01, "η, applied every tick", 0.0, BIG),
    "loss": Str("xent", "ℓ", ("mse", "xent", "linear")),
    "supervision_delay": Int(0, "d_y: target of frame t−d_y at tick t", 0, 4 * DEPTH),
    "eval_every": Int(200, "ticks between test evaluations", 1, TICKS),
    "eval_size": Int(0, "test samples (0 = the whole test split)", 0, 10**6),
    "feedback_scale": Float(1.0, "random B ~ N(0, scale²/n_in)", 0.0, BIG),
    "weight_decay": Float(0.0, "decay of W per update", 0.0, BIG),
    "itd_epsilon": Float(1e-6, "itd-dy keeps the last quotient where |Δa| < ε", 0.0, BIG),
}
TRAIN_SECTIONS = {"network": NETWORK, "stream": STREAM, "target": TARGET, "train": TRAIN,
                  "run": RUN}

SUMMARIES = ("auto", "mismatch", "training")
SWEEP = {
    "base": Str("fig3_fast", "the scene every point starts from (name or path)"),
    "grid": Table({}, "axes: \"section.key\" = [values]; the points are their product",
                  lists=True),
    "set": Table({}, "overrides applied to every point before the grid's", lists=False),
    "seeds": ListOf(Int(0, "seed", 0, SEED), [0], "run.seed values; every grid cell runs each",
                    min_len=1, max_len=100),
    "summary": Str("auto", "what a point reports (auto: by the base kind)", SUMMARIES),
    "steady_from": Float(0.5, "steady state = ticks after this fraction of the run", 0.0, 0.99),
    "threshold": Float(0.9, "mean cosine that defines the boundary h*(L)", -1.0, 1.0),
}
SWEEP_SECTIONS = {"sweep": SWEEP}

SCHEMAS = {
    "diffusion": {"network": NETWORK, "stream": STREAM, "target": TARGET,
                  "rule": RULE, "run": RUN, "record": RECORD, "render": RENDER},
    "train": TRAIN_SECTIONS,
    "sweep": SWEEP_SECTIONS,
    "ar_converge": {"network": AR_NETWORK, "relaxation": AR_CONVERGE, "run": SEED_DEVICE},
    "ar_train": {"network": AR_NETWORK, "relaxation": AR_TRAIN, "train": TRAIN_BATCHES,
                 "run": SEED_DEVICE},
    "pc_table": {"table": PC_TABLE, "run": {"seed": RUN["seed"]}},
    "pc_wave": {"wave": PC_WAVE, "run": PC_RUN},
    "locking": {"locking": LOCKING},
}
TOP = ("description", "kind")


def register_kind(kind, sections):
    """Declare the sections ({section: {key: Field}}) of another scene kind."""
    SCHEMAS[kind] = sections


# ------------------------------------------------------------------ validation
def _kind_of(raw, source):
    kind = raw.get("kind", "diffusion")
    if not isinstance(kind, str):
        raise SceneError(f"{source}: key 'kind': expected a string naming the scene kind "
                         f"(one of {', '.join(SCHEMAS)}), got {show(kind, typed=True)}")
    if kind not in SCHEMAS:
        raise SceneError(f"{source}: key 'kind': expected one of {', '.join(SCHEMAS)}, "
                         f"got {show(kind)}{did_you_mean(kind, SCHEMAS)}")
    return kind


def _owners(name, sections_of_kind=None):
    """Where a section or key name is known elsewhere, as a hint."""
    if sections_of_kind is not None:
        kinds = [k for k, sch in SCHEMAS.items() if name in sch]
        return (f"; [{name}] belongs to {' or '.join(repr(k) for k in kinds)} scenes (set kind)"
                if kinds else "")
    sections = sorted({s for sch in SCHEMAS.values() for s, f in sch.items() if name in f})
    return f"; {name!r} is a key of [{'] or ['.join(sections)}]" if sections else ""


def validate(raw, source):
    """Check a parsed scene (a dict from TOML or run.json) and return it
    resolved, every default filled; raise SceneError naming ``source``, the key,
    what was expected and what was given. An empty scene (no kind, no section)
    is refused: it is always a mistake."""
    if not isinstance(raw, dict):
        raise SceneError(f"{source}: expected a table of sections, got {show(raw, typed=True)}")
    if "kind" not in raw and not any(name not in TOP for name in raw):
        raise SceneError(f"{source}: the scene is empty: expected a 'kind' and sections "
                         "(start from a shipped scene, see `tickprop scenes`)")
    kind = _kind_of(raw, source)
    schema = SCHEMAS[kind]
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise SceneError(f"{source}: key 'description': expected a string, "
                         f"got {show(description, typed=True)}")
    resolved = {"description": description, "kind": kind}
    for name, value in raw.items():
        if name in TOP:
            continue
        if name not in schema:
            if isinstance(value, dict):
                raise SceneError(f"{source}: unknown section {show(name)}"
                                 f"{did_you_mean(name, list(schema))}; a {kind} scene has "
                                 f"{', '.join(schema)}{_owners(name, schema)}")
            raise SceneError(f"{source}: unknown top-level key {show(name)}"
                             f"{did_you_mean(name, list(schema) + list(TOP))}; the top level "
                             f"holds description, kind and sections{_owners(name)}")
        if not isinstance(value, dict):
            raise SceneError(f"{source}: {name!r} must be a section ([{name}]), "
                             f"got {show(value, typed=True)}")
    for section, fields in schema.items():
        given = raw.get(section, {})
        for key in given:
            if key not in fields:
                raise SceneError(f"{source}: unknown key {show(section + '.' + str(key))}"
                                 f"{did_you_mean(key, fields)}; [{section}] accepts "
                                 f"{', '.join(fields)}")
        resolved[section] = {
            key: field.check(given[key], f"{source}: key '{section}.{key}'") if key in given
            else copy.deepcopy(field.default)
            for key, field in fields.items()}
    return resolved


# ------------------------------------------------------------------ files
def list_scenes():
    """Names of the scenes shipped in scenes/."""
    if not os.path.isdir(SCENES_DIR):
        return []
    return sorted(f[:-5] for f in os.listdir(SCENES_DIR) if f.endswith(".toml"))


def find_scene(name_or_path):
    """Path of a scene given as a file path (a .toml scene or a run.json) or as
    a name in scenes/; SceneError with a did-you-mean when there is none."""
    if os.path.isdir(name_or_path):
        inside = os.path.join(name_or_path, "run.json")
        hint = f" (did you mean {inside!r}?)" if os.path.isfile(inside) else ""
        raise SceneError(f"{name_or_path!r} is a folder: expected a scene name, a .toml scene "
                         f"file or a run.json{hint}")
    if os.path.isfile(name_or_path):
        return name_or_path
    candidate = os.path.join(SCENES_DIR, name_or_path + ".toml")
    if os.path.isfile(candidate):
        return candidate
    folder, base = os.path.split(name_or_path)
    if folder or name_or_path.endswith((".toml", ".json")):
        try:
            near = sorted(os.listdir(folder or "."))
        except OSError:
            near = []
        close = _closest(base, near)
        hint = f" (did you mean {os.path.join(folder, close)!r}?)" if close else ""
        raise SceneError(f"scene file {show(name_or_path)} not found{hint}")
    raise SceneError(f"scene {show(name_or_path)} not found (neither a file nor a name in "
                     f"{SCENES_DIR}){did_you_mean(name_or_path, list_scenes())}")


def _read_text(path):
    """The text of a scene or run.json file, or SceneError saying why not."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise SceneError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(data) > MAX_FILE_BYTES:
        raise SceneError(f"{path}: expected a scene file of at most "
                         f"{MAX_FILE_BYTES // 2**20} MiB, got a larger file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SceneError(f"{path}: not a text file (not UTF-8 at byte {exc.start})") from None


def _parse_toml(text, source):
    """tomllib.loads with every failure turned into one SceneError."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SceneError(f"{source}: not valid TOML ({exc})") from None
    except RecursionError:
        raise SceneError(f"{source}: not valid TOML (arrays or tables nested too deeply)") from None
    except ValueError:
        # Only an integer over Python's digit limit gets here.
        match = re.search(r"[0-9][0-9_]{%d,}" % _INT_DIGITS, text)
        where = f" line {text.count(chr(10), 0, match.start()) + 1}:" if match else ""
        digits = len(match.group(0).replace("_", "")) if match else _INT_DIGITS + 1
        raise SceneError(f"{source}: not valid TOML:{where} an integer with {digits} digits "
                         f"(at most {_INT_DIGITS} are read)") from None


def load(name_or_path):
    """Load a TOML scene or a run.json (replay); return (name, resolved scene)."""
    path = find_scene(name_or_path)
    if path.endswith(".json"):
        return load_run_json(path)
    raw = _parse_toml(_read_text(path), path)
    name = os.path.splitext(os.path.basename(path))[0]
    return name, validate(raw, path)


_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,199}")


def load_run_json(path):
    """The name and resolved scene stored in a run.json, validated again; the
    name must be a plain file name (a replay's folder stays in outputs/)."""
    text = _read_text(path)
    try:
        meta = json.loads(text)
    except (ValueError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)[:120]
        raise SceneError(f"{path}: not a tickprop run.json (not valid JSON: {reason})") from None
    if not isinstance(meta, dict) or "scene" not in meta or "name" not in meta:
        raise SceneError(f"{path}: not a tickprop run.json (expected an object with "
                         "'name' and 'scene')")
    name = meta["name"]
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name.strip(".") == "":
        raise SceneError(f"{path}: key 'name': expected a plain scene name (letters, digits, "
                         f"'_', '-', '.', '+'), got {show(name, typed=True)}")
    if not isinstance(meta["scene"], dict):
        raise SceneError(f"{path}: key 'scene': expected a table of sections, "
                         f"got {show(meta['scene'], typed=True)}")
    return name, validate(meta["scene"], path)


# ------------------------------------------------------------------ overrides
def _set_value(text, item):
    """The value of one --set: TOML when it parses (numbers, booleans, lists,
    inline tables, quoted strings), else the text itself as a string."""
    try:
        doc = tomllib.loads(f"v = {text}")
    except tomllib.TOMLDecodeError:
        return text
    except RecursionError:
        raise SceneError(f"--set {show(item)}: the value is nested too deeply") from None
    except ValueError:
        raise SceneError(f"--set {show(item)}: an integer with more than {_INT_DIGITS} digits") from None
    if set(doc) != {"v"}:
        raise SceneError(f"--set {show(item)}: expected one value after '='")
    return doc["v"]


def _section_of(raw, kind, section, name, what):
    """raw[section] after checking section.name exists for this kind."""
    schema = SCHEMAS[kind]
    if section not in schema:
        raise SceneError(f"{what}: unknown section {show(section)}"
                         f"{did_you_mean(section, list(schema))}; a {kind} scene has "
                         f"{', '.join(schema)}")
    if name not in schema[section]:
        raise SceneError(f"{what}: unknown key {show(section + '.' + name)}"
                         f"{did_you_mean(name, schema[section])}; [{section}] accepts "
                         f"{', '.join(schema[section])}")
    if not isinstance(raw.get(section), dict):
        raw[section] = {}
    return raw[section]


def apply_overrides(scene, overrides, source, values=None):
    """Apply 'section.key=value' overrides (``--set``; values parsed as TOML,
    else taken as strings), after ``values`` ({'section.key': python value},
    from typed CLI options), and return the scene validated again. Unknown
    sections and keys are refused naming the override, with a did-you-mean."""
    raw = copy.deepcopy(scene)
    kind = _kind_of(raw, source)
    for key, value in (values or {}).items():
        section, _, name = key.partition(".")
        _section_of(raw, kind, section, name, f"{source}: {key}")[name] = value
    for item in overrides:
        key, eq, text = item.partition("=")
        parts = key.strip().split(".")
        if not eq or len(parts) != 2 or not all(parts):
            raise SceneError(f"--set {show(item)}: expected SECTION.KEY=VALUE, "
                             "e.g. rule.feedback=random")
        section, name = parts
        value = _set_value(text, item)
        _section_of(raw, kind, section, name, f"--set {show(item)}")[name] = value
    return validate(raw, source)


def describe(name):
    """The one-line description of a shipped scene (or its load error)."""
    try:
        return load(name)[1]["description"]
    except SceneError as exc:
        return f"(invalid: {exc})"


def network_sizes(net):
    """Widths of layers 0..L from a resolved [network] section."""
    if net["sizes"]:
        if len(net["sizes"]) < 2:
            raise SceneError("key 'network.sizes': expected at least two widths (layers 0 and L)")
        return list(net["sizes"])
    return [net["inputs"]] + [net["width"]] * (net["depth"] - 1) + [net["outputs"]]
