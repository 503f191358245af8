"""Scene field types: ``check(value, where)`` returns the value converted or raises
SceneError "<where>: expected <what the field takes>, got <the value>" (a did-you-mean
for a misspelt choice), ``where`` naming file and key ("scene.toml: key 'network.sizes[2]'").
``show`` never turns a huge integer into text (Python refuses past 4300 digits)."""
import copy
import json
import math
import re
import sys

from ..errors import SceneError, did_you_mean

INT_DIGITS = sys.get_int_max_str_digits() or 4300
_KINDS = ((bool, "a boolean"), (int, "an integer"), (float, "a number"), (str, "a string"),
          ((list, tuple), "a list"), (dict, "a table"))


def _digits(n):
    """Decimal digits of the integer n, without converting it to text."""
    n = abs(n)
    if n == 0:
        return 1
    d = int(n.bit_length() * 0.30102999566398120) + 1
    return d - 1 if n < 10 ** (d - 1) else d


def show(value, typed=False, depth=0):
    """A short printable rendering of a scene value for an error message (TOML spelling,
    long values cut); ``typed`` appends the type, e.g. "'x' (a string)"."""
    limit = 60 if depth == 0 else 20
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
        parts = ([show(v, depth=depth + 1) for v in value[:5]] if depth < 3
                 else ["..."] * bool(value))
        text = "[" + ", ".join(parts + (["..."] if len(value) > 5 and depth < 3 else [])) + "]"
    elif isinstance(value, dict):
        parts = ([f"{show(str(k), depth=depth + 1)} = {show(v, depth=depth + 1)}"
                  for k, v in list(value.items())[:3]] if depth < 3 else ["..."] * bool(value))
        text = "{" + ", ".join(parts + (["..."] if len(value) > 3 and depth < 3 else [])) + "}"
    else:
        text = type(value).__name__
    if len(text) > 2 * limit:
        text = text[:2 * limit] + "..."
    if not typed:
        return text
    kind = next((name for types, name in _KINDS if isinstance(value, types)),
                type(value).__name__)
    return f"{text} ({kind})"


def _number(x):
    """A range bound as a user would write it: 0, 1.5, 1e-09."""
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e7 else f"{x:g}"


def _entry(where, index):
    """The ``where`` of a list entry or (a str ``index``) a table member: "f: key 'a.b[2]'"."""
    part = f".{index}" if isinstance(index, str) else f"[{index}]"
    return f"{where[:-1]}{part}'" if where.endswith("'") else f"{where}{part}"


class Field:
    """One scene key: its default, meaning (``doc``), what it takes (``expected``), ``check``."""

    expected = "a value"

    def __init__(self, default, doc):
        self.default, self.doc = default, doc

    def fail(self, value, where, expected=None, typed=False, hint=""):
        raise SceneError(f"{where}: expected {expected or self.expected}, "
                         f"got {show(value, typed=typed)}{hint}")


class _Bounded(Field):
    """A field whose values lie in low..high."""

    def __init__(self, default, doc, low, high):
        super().__init__(default, doc)
        self.low, self.high = low, high
        self.expected = self.describe()


class Int(_Bounded):
    """An integer in low..high (booleans and floats are refused)."""

    def describe(self):
        return f"an integer in {self.low}..{self.high}"

    def check(self, value, where):
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(value, where, typed=True)
        if not self.low <= value <= self.high:
            self.fail(value, where)
        return value


class Float(_Bounded):
    """A finite number in low..high (an integer is taken as a float)."""

    def describe(self):
        return f"a finite number in {_number(self.low)}..{_number(self.high)}"

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
    """One of ``choices`` when given (with a did-you-mean), else any non-empty string."""

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


class FilePath(Field):
    """A file name ending in ``suffix``, or "" (none)."""

    def __init__(self, default, doc, suffix):
        super().__init__(default, doc)
        self.suffix = suffix
        self.expected = f"a file name ending in {suffix} (or \"\" for none)"

    def check(self, value, where):
        if not isinstance(value, str):
            self.fail(value, where, typed=True)
        if value and (not value.lower().endswith(self.suffix) or "\0" in value):
            self.fail(value, where)
        return value


class Bool(Field):
    """true or false (not 0 or 1)."""

    expected = "true or false"

    def check(self, value, where):
        if not isinstance(value, bool):
            self.fail(value, where, typed=True)
        return value


class OrWord(Field):
    """A value ``field`` takes, or one of the strings ``words`` (e.g. an integer or "causal")."""

    def __init__(self, field, words, default, doc):
        super().__init__(default, doc)
        self.field, self.words = field, tuple(words)
        self.expected = f"{field.expected} or one of {', '.join(map(repr, self.words))}"

    def check(self, value, where):
        if isinstance(value, str):
            if value not in self.words:
                self.fail(value, where, hint=did_you_mean(value, self.words))
            return value
        try:
            return self.field.check(value, where)
        except SceneError:
            self.fail(value, where, typed=True)


class KeyedTable(Field):
    """A table {key: value}, keys among ``keys``, values checked by the Field ``value``."""

    def __init__(self, keys, value, default, doc):
        super().__init__(default, doc)
        self.keys, self.value = tuple(keys), value
        self.expected = f"a table of name = {value.expected}, names among {', '.join(keys)}"

    def check(self, value, where):
        if not isinstance(value, dict):
            self.fail(value, where, typed=True)
        for key in value:
            if key not in self.keys:
                self.fail(key, where, expected=f"names among {', '.join(self.keys)}",
                          hint=did_you_mean(key, self.keys))
        return {k: self.value.check(v, _entry(where, str(k))) for k, v in value.items()}


_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?)\s*([a-zA-Z]*)\s*")


def size_bytes(value):
    """Bytes of a size ('512MiB', '1GiB', '2e9', '1.5GB' or an int), else ValueError."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = _SIZE.fullmatch(value) if isinstance(value, str) else None
    if match is None or match.group(2).lower() not in _UNITS | {"": 1}:
        raise ValueError(f"not a size: {show(value)}")
    number = float(match.group(1)) * _UNITS.get(match.group(2).lower(), 1)
    if not math.isfinite(number):
        raise ValueError(f"not a finite size: {show(value)}")
    return int(number)


class Size(_Bounded):
    """A memory size in low..high bytes, an int or a string such as '1GiB', kept as written."""

    def describe(self):
        return (f"a size from {self.low} bytes to {self.high // 2**40} TiB, such as "
                "'512MiB', '1GiB' or a number of bytes")

    def check(self, value, where):
        try:
            n = size_bytes(value)
        except ValueError:
            self.fail(value, where, typed=not isinstance(value, str))
        if not self.low <= n <= self.high:
            self.fail(value, where)
        return value


class ListOf(Field):
    """A list of min_len..max_len entries (or none: ``empty_ok``) checked by the Field
    ``entry``; ``unique`` refuses repeats; ``single`` takes a bare entry as a list."""

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
            count = f"{len(value)} {'entry' if len(value) == 1 else 'entries'}"
            self.fail(value, where, hint=f" ({count})")
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
        if not (isinstance(value, list) and len(value) == 2 and
                all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
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
    """A table {"section.key": value} of scene overrides (a sweep's ``set``), or with
    ``lists`` of value lists (a sweep's ``grid``, at most ``max_points`` cells); values
    plain TOML (``_plain``)."""

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
            at = _entry(where, f'"{key}"') if where.endswith("'") else f"{where}.{key}"
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
    """Refuse all but strings, booleans, integers up to 2**63, finite numbers (or a list)."""
    if isinstance(value, list) and not nested and len(value) <= 1024:
        for i, v in enumerate(value):
            _plain(v, _entry(where, i), nested=True)
        return
    if not (isinstance(value, (bool, str)) or (isinstance(value, int) and abs(value) < 2**63)
            or (isinstance(value, float) and math.isfinite(value))):
        raise SceneError(f"{where}: expected a string, boolean, integer, finite number"
                         f"{'' if nested else ' or a list of those'}, "
                         f"got {show(value, typed=True)}")


class Layers(Field):
    """At most ``max_len`` layer tables {name, kind, from, ...} of plain values (numbers in
    -high..high, lists of at most 64); the model checks their meaning after every section."""

    def __init__(self, default, doc, high, max_len=512):
        super().__init__(default, doc)
        self.high, self.max_len = high, max_len
        self.expected = (f"a list of at most {max_len} layer tables "
                         "{name, kind, from, ...} ([[network.layers]])")

    def check(self, value, where):
        if not isinstance(value, list) or len(value) > self.max_len:
            self.fail(value, where, typed=True)
        for i, table in enumerate(value):
            at = _entry(where, i)
            if not isinstance(table, dict):
                self.fail(table, at, expected="a layer table {name, kind, from, ...}", typed=True)
            for key, item in table.items():
                self._value(item, _entry(at, key))
        return copy.deepcopy(value)

    def _value(self, item, where, nested=False):
        if isinstance(item, list) and not nested:
            if len(item) > 64:
                self.fail(item, where, expected="a list of at most 64 values")
            for k, v in enumerate(item):
                self._value(v, _entry(where, k), nested=True)
            return
        if not (isinstance(item, (bool, str)) or
                (isinstance(item, int) and abs(item) <= self.high) or
                (isinstance(item, float) and math.isfinite(item) and abs(item) <= self.high)):
            self.fail(item, where, expected=f"a string, boolean, or a number in "
                      f"-{self.high}..{self.high}{'' if nested else ' (or a list of those)'}",
                      typed=not isinstance(item, (int, float)) or isinstance(item, bool))
