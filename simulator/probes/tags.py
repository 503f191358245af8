"""Provenance tags in closed form: tags are exact bookkeeping (SPEC §1) that
depend on the tick, the network and the options only, never on the frames or
the weights, so after a warm-up each is the tick minus a fixed lag (or stays
−1). TagClock reads them off the engine's own tags as a run goes."""
import numpy as np


class TagClock:
    """An engine's tags in closed form. Tags are exact bookkeeping that
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
