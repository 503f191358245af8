"""The one exception family users see: a SimulatorError is a user mistake or a refused
run, reported by the CLI as one ``error:`` line with exit code 2. It is a ValueError,
so code that catches bad arguments the Python way works."""
import difflib


class SimulatorError(ValueError):
    """Base of every error caused by input (scenes, options, arrays) or by a run that
    had to stop (numerical blow-up, memory budget)."""


class MissingKeyError(SimulatorError, KeyError):
    """A name a mapping-like object does not hold (``trace["nope"]``): also a KeyError,
    so ``except KeyError`` and ``in`` keep working."""

    __str__ = Exception.__str__         # KeyError's would quote the whole message


class SceneError(SimulatorError):
    """A scene file or override is malformed: names the file, key, expected and given."""


class NumericalError(SimulatorError):
    """A NaN or Inf appeared; names the tick and layer (a graph's vertex index and
    ``name``, unless that is the index) where it first showed."""

    def __init__(self, tick, layer, what, name=None):
        self.tick, self.layer, self.what = int(tick), int(layer), what
        where = (f"layer {self.layer}" if name is None or name == str(self.layer)
                 else f"vertex {self.layer} ({name!r})")
        super().__init__(
            f"non-finite {what} at tick {self.tick}, {where}: "
            "the run diverged (lower the learning rate or the weight scale)")


class BudgetError(SimulatorError):
    """Recording would exceed the memory budget; says what to decimate."""


class DeviceError(SimulatorError):
    """The requested device or array library is not available here."""


def closest(word, known):
    """The known name closest to ``word`` (difflib, cutoff 0.6), or None."""
    if not isinstance(word, str) or len(word) > 100:
        return None
    close = difflib.get_close_matches(word, [str(k) for k in known], n=1, cutoff=0.6)
    return close[0] if close else None


def did_you_mean(word, known):
    """' (did you mean 'x'?)' for the closest known name, or ''."""
    close = closest(word, known)
    return f" (did you mean {close!r}?)" if close else ""
