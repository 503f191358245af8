"""``tickprop render``'s selectors read into what Trace.select takes: ``--ticks A:B``
(stop excluded, either end optional, a lone A one tick) and comma-separated
``--layers``/``--neurons`` of indices, ``A:B`` ranges and (``--layers``) vertex names.
A malformed value is one SimulatorError."""
import re

from .errors import SimulatorError

_RANGE = re.compile(r"^\s*(\d*)\s*:\s*(\d*)\s*$")
_INDEX = re.compile(r"^\s*\d+\s*$")


def parse_ticks(text):
    """(start, stop) ticks of ``--ticks`` text (None for an open end)."""
    if text is None:
        return None
    m = _RANGE.match(text)
    if m is None and _INDEX.match(text):
        return int(text), int(text) + 1
    if m is None:
        raise SimulatorError(f"--ticks {text!r}: expected START:STOP ticks (stop excluded), "
                             "e.g. 20:60, 20: or :60")
    start, stop = (int(v) if v else None for v in m.groups())
    if start is not None and stop is not None and stop <= start:
        raise SimulatorError(f"--ticks {text!r}: expected START < STOP")
    return start, stop


def parse_list(text, option, names=False):
    """Indices, ``slice`` ranges and (with ``names``) names of a comma-separated
    ``--layers``/``--neurons`` text; None when not given."""
    if text is None:
        return None
    items = [t.strip() for t in text.split(",")]
    if not text.strip() or any(not t for t in items):
        raise SimulatorError(f"--{option} {text!r}: expected a comma-separated list of indices "
                             f"and A:B ranges{' or names' if names else ''}, e.g. 0,4:7")
    out = []
    for item in items:
        m = _RANGE.match(item)
        if m is not None:
            start, stop = (int(v) if v else None for v in m.groups())
            if start is not None and stop is not None and stop <= start:
                raise SimulatorError(f"--{option} {item!r}: expected a range A:B with A < B")
            out.append(slice(start, stop))
        elif _INDEX.match(item):
            out.append(int(item))
        elif names and re.match(r"^[\w.+-]+$", item):
            out.append(item)
        else:
            raise SimulatorError(f"--{option} {item!r}: expected an index >= 0 or an A:B range"
                                 f"{' or a vertex name' if names else ''}")
    return out


def plain(selection):
    """A selection with ranges written back as 'A:B' text (JSON for run.json)."""
    def one(v):
        if isinstance(v, slice):
            return f"{'' if v.start is None else v.start}:{'' if v.stop is None else v.stop}"
        return v
    return {key: [one(v) for v in value] if isinstance(value, (list, tuple)) else one(value)
            for key, value in selection.items() if value is not None}
