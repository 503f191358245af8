"""Provenance tags in closed form: tags are exact bookkeeping (SPEC §1) that
depend on the tick, the network and the options only, never on the frames or
the weights, so after a warm-up each is the tick minus a fixed lag (or stays
−1). TagTable reads the lags of a chain Engine's options off a width-1 probe
engine (cached per options); TagClock reads them off any engine's own tags
as a run goes (the graph engine's)."""
import numpy as np

from ..engine import Engine
from ..network import Network
from .trace import TAG_KEYS


class TagTable:
    """The provenance tags of a chain engine in closed form, for any ticks at once.

    Tags are exact bookkeeping (SPEC §1): they depend on the tick, the depth,
    d_y and the derivative and pairing options only, never on the frames or
    the weights. After a warm-up of W ticks every tag is the tick minus a
    fixed lag, or stays −1: tag(t) = tag(W) + (t − W) where tag(W) ≥ 0. The
    first W + 1 ticks and the lags are read off the engine's own tag rule (a
    width-1 ``Engine`` with those options, stepped 2W + 1 ticks; the shift
    invariance is checked on the second half), so ``rows(ticks)`` is one
    vectorized lookup: an array (len(ticks), len(TAG_KEYS), L + 1)."""

    def __init__(self, depth, derivative="local", pairing="local", supervision_delay=0):
        L, d = int(depth), int(supervision_delay)
        probe = Engine(Network([np.ones((1, 1))] * L, activations="tanh"),
                       derivative=derivative, pairing=pairing, supervision_delay=d)
        warm = 2 * L + d + probe.history + 2
        zero, rows = np.zeros((1, 1)), []
        for _ in range(2 * warm + 1):
            probe.step(zero, zero)
            tags = probe.tags()
            rows.append(np.stack([tags[k] for k in TAG_KEYS]))
        self._table = np.stack(rows)
        self._last = len(rows) - 1
        for t in range(warm, self._last):
            now = self._table[t]
            if not np.array_equal(np.where(now >= 0, now + 1, now), self._table[t + 1]):
                raise RuntimeError(f"tags are not shift-invariant after tick {warm}")

    def rows(self, ticks):
        """Tags at ``ticks`` (ticks ≥ 0): (len(ticks), len(TAG_KEYS), L + 1) int64."""
        t = np.asarray(ticks, dtype=np.int64)
        at = np.minimum(t, self._last)
        base = self._table[at]
        return np.where(base >= 0, base + (t - at)[:, None, None], base)


_TAG_TABLES = {}


def tag_table(engine):
    """The (cached) TagTable of a chain engine's options, or None for an
    engine whose tag rule is not the chain Engine's (then tags are stepped)."""
    try:
        key = (int(engine.depth), engine.derivative, engine.pairing,
               int(engine.supervision_delay))
    except AttributeError:
        return None
    if key not in _TAG_TABLES:
        _TAG_TABLES[key] = TagTable(*key)
    return _TAG_TABLES[key]


class TagClock:
    """A graph engine's tags in closed form. Tags are exact bookkeeping that
    depends on the tick, the graph and the options only (never on frames or
    weights): after a warm-up of W ticks each tag is the tick minus a fixed
    lag, or stays −1. ``observe`` takes the engine's own tags of ticks
    0, 1, … (keys × vertices); once 2W + 1 ticks show every tag moving one
    frame per tick over the second half, ``ready`` is set and ``rows(ticks)``
    gives the tags of any later ticks at once. A tag that ever breaks the
    shift keeps the clock unready, so the tags stay stepped."""

    def __init__(self, warm):
        self.warm, self.ready, self.last = int(warm), False, -1
        self._prev, self._steady_since = None, None

    def observe(self, t, tags):
        prev, self._prev = self._prev, tags
        if prev is None or t < self.warm:
            return
        if np.array_equal(np.where(prev >= 0, prev + 1, prev), tags):
            if self._steady_since is None:
                self._steady_since = t
            if t - self._steady_since >= self.warm:
                self.ready, self.last = True, t
        else:
            self._steady_since = None

    def rows(self, ticks):
        """Tags at ``ticks`` (all after ``last``): (len(ticks), keys, vertices)."""
        t = np.asarray(ticks, dtype=np.int64)
        base = self._prev
        return np.where(base >= 0, base[None] + (t - self.last)[:, None, None], base[None])
