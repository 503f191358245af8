"""What a run records, how often, and what it costs; the Trace it produces.

Every ``record.every``-th tick (a "row") the Recorder keeps norms of x and δ,
the provenance tags and both mismatch metrics against the reference gradient
of the frame chosen by ``reference`` ("input": the frame of the x that g pairs
with; "supervision": the frame of δ's target); the reference ring itself is
filled every tick. Full neuron states are optional, at the same rows, for
chosen layers. Device-side values go into preallocated chunk buffers that are
moved to the host once per chunk (never per neuron, never per tick), so the
memory of a run grows as ticks / every.

RunBudget itemises everything a diffusion run allocates (weights, batch
buffers, rings, stream chunks, recording, GIF frames) so that a run that would
not fit ``record.memory_budget`` is refused before anything is allocated,
with advice naming the knob that shrinks its biggest part.
"""
import difflib
import json
import math
import os

import numpy as np

from .arguments import check_bool, check_path, shown
from .errors import BudgetError, MissingKeyError, SceneError, SimulatorError
from .fields import did_you_mean
from .files import atomic_write
from .engine import Engine
from .metrics import cosine_and_relative
from .network import Network
from .options import frame_lags
from .reference import factors_of
# The trace's file layout (and its one check) lives with the one loader of saved files.
from .runfiles import METRIC_KEYS, TAG_KEYS, read_json, read_trace
from .sync import synchronized_layers
from .view import trace_html

REFERENCES = ("input", "supervision")
GIF_BYTES_PER_PIXEL = 4
# The process itself, whatever the run: Python, numpy and tickprop's modules
# (41.5 MiB resident after `import cli`, measured), rounded up.
INTERPRETER_BYTES = 48 * 2**20
# Drawing pictures: matplotlib and the renderers (32 MiB resident once
# imported) and the figures' canvases and work (up to ~60 MiB on a 100k-tick
# fig3_fast run, measured phase by phase), rounded up.
PICTURE_BYTES = 96 * 2**20
GIF_WORK_FRAMES = 4       # the figure's RGBA buffer, the frame, the previous one, a rectangle
# Parts of the run a budget refusal gives advice for (the biggest first).
MAX_ADVICE = 2


def parse_bytes(text):
    """'1GiB', '512MiB', '2e9' or an int -> bytes."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return int(text)
    units = {"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
             "kb": 10**3, "mb": 10**6, "gb": 10**9, "b": 1}
    s = str(text).strip().lower()
    for unit, factor in units.items():
        if s.endswith(unit):
            try:
                return int(float(s[:-len(unit)]) * factor)
            except ValueError:
                break
    try:
        return int(float(s))
    except ValueError:
        raise SimulatorError(f"cannot read {text!r} as a size (e.g. '1GiB', '512MiB')") from None


def format_bytes(n):
    """Bytes as a short human string ('1.5 GiB'); beyond TiB in TiB."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if unit == "TiB" and abs(n) >= 10000:
            return f"{n:.3g} {unit}"
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024


def _row_bytes(L, metrics=True):
    """Host bytes of one recorded row: norms, metrics (when recorded), tags,
    stream frame, tick."""
    return 8 * (2 * (L + 1) + (4 * L if metrics else 0) + len(TAG_KEYS) * (L + 1) + 2)


class RecordPlan:
    """Which arrays a run keeps: a row every ``every`` ticks (norms, tags,
    metrics and, when ``states``, full states of ``layers``)."""

    def __init__(self, ticks, depth, width, batch, itemsize, states=False, every=1,
                 layers=None, metrics=True, chunk=256, budget="1GiB"):
        self.ticks, self.depth, self.width, self.batch = ticks, depth, width, batch
        self.itemsize = itemsize
        self.states, self.every = bool(states), max(1, int(every))
        self.layers = list(range(depth + 1)) if not layers else [int(l) for l in layers]
        bad = [l for l in self.layers if not 0 <= l <= depth]
        if bad:
            raise SceneError(f"key 'record.layers': expected layers in 0..{depth}, got {bad}")
        self.metrics, self.chunk = bool(metrics), max(1, int(chunk))
        self.budget = parse_bytes(budget)

    @property
    def rows(self):
        """Recorded rows: ticks 0, every, 2·every, … below ``ticks``."""
        return len(range(0, self.ticks, self.every))

    @property
    def state_ticks(self):
        return self.rows if self.states else 0

    def size(self):
        """Bytes of host memory the recorded arrays will take."""
        states = 2 * self.state_ticks * len(self.layers) * self.batch * self.width * self.itemsize
        return self.rows * _row_bytes(self.depth, self.metrics) + states

    def check_budget(self, sizes=None, **run):
        """Refuse, before any allocation, a run that does not fit the budget:
        ``RunBudget(self, sizes, **run).check()`` (sizes default to ``width``
        for every layer). Returns the estimated peak bytes."""
        if sizes is None:
            sizes = [self.width] * (self.depth + 1)
        return RunBudget(self, sizes, **run).check()


def distinct_frames(stream, chunk):
    """Most distinct input frames one chunk of ticks can hold for a resolved
    [stream] section: a held frame (held, dataset) repeats for ``hold`` ticks
    but its first ``crossfade`` ticks each differ; other streams change every tick."""
    if stream.get("kind") in ("held", "dataset"):
        hold, fade = max(1, int(stream["hold"])), int(stream.get("crossfade", 0))
        return min(chunk, (-(-chunk // hold) + 1) * (1 + fade))
    if stream.get("kind") == "constant":
        return 1
    return chunk


class RunBudget:
    """Itemised peak memory of one diffusion run, before anything is allocated.

    ``plan`` (RecordPlan) gives ticks, batch, dtype size, recording and chunk;
    ``sizes`` the layer widths; the rule options say which rings and buffers the
    engine allocates (``target`` 'teacher' or 'labels' says whether a teacher
    network maps the stream); ``gif`` = (render.every, (width, height)) adds
    the GIF frames, None leaves them out; ``pictures`` adds the plotting
    library and figures; ``distinct`` bounds the distinct
    frames of a chunk (``distinct_frames``). ``items`` maps each part to bytes,
    ``total`` is their sum and ``check()`` refuses a run over ``plan.budget``
    naming its biggest parts and the knobs that shrink them (``budget_key``
    names the scene key that sets the budget).
    """

    ADVICE = {
        "weights": "fewer or narrower layers (network.width, network.depth or network.sizes)",
        "state buffers": "a smaller stream.batch or a narrower network (network.width, "
                         "network.sizes)",
        "history rings": "rule.derivative and rule.pairing other than 'frame' (their rings "
                         "hold 2L ticks of state), a smaller stream.batch or network",
        "targets ring": "a smaller rule.supervision_delay",
        "reference ring": "a smaller rule.supervision_delay (the ring holds 2L + d_y + 2 "
                          "frames) or record.metrics = false",
        "metric work": "a smaller stream.batch (the mismatch forms batch x batch Gram "
                       "matrices) or record.metrics = false",
        "record block": "a smaller stream.batch or narrower network",
        "weight work": "fewer or narrower layers (network.width, network.depth or "
                       "network.sizes)",
        "stream frames": "a smaller record.chunk (ticks generated at once) or stream.batch",
        "teacher forward": "a smaller record.chunk (ticks generated at once) or stream.batch",
        "state transfer": "a smaller record.chunk (ticks moved to the host at once), a larger "
                          "record.every or fewer record.layers",
        "recorded rows": "a larger record.every (keep every k-th tick) or fewer run.ticks",
        "recorded states": "",     # computed: the record.every that fits
        "pictures": "no pictures (--no-png --no-gif, or render.png/render.gif = false)",
        "gif frames": "a smaller render.size, or no GIF "
                      "(render.gif = false, --no-gif)",
    }

    # Parts alive only for a moment, never two at once: the peak holds the largest.
    TRANSIENT = ("weight work", "metric work", "teacher forward", "state transfer")

    def __init__(self, plan, sizes, feedback="transpose", derivative="local", pairing="local",
                 supervision_delay=0, learning_rate=0.0, accumulate=1, target="teacher",
                 gif=None, budget_key="record.memory_budget", distinct=None, pictures=False,
                 device="cpu"):
        self.plan, self.budget_key, self.pictures = plan, budget_key, pictures
        sizes = [int(n) for n in sizes]
        L, N, B, s = len(sizes) - 1, max(sizes), int(plan.batch), int(plan.itemsize)
        # on numpy with every layer's states recorded, the recorder writes x and
        # δ straight into the state arrays: no block copy of them, no transfer
        self.direct = states_in_place(plan, L, device)
        n0, nL, total_n = sizes[0], sizes[-1], sum(sizes)
        d_y, C = int(supervision_delay), plan.chunk
        W = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))      # true weight entries
        padded = L * N * N
        host_nets = 8 * W * (2 if target == "teacher" else 1)       # student + teacher
        persistent = s * (padded + L * N) + host_nets
        if feedback != "transpose":
            persistent += s * padded
        build = 8 * padded * (2 if feedback in ("random", "learned") else 1)
        work = 0
        if learning_rate:
            work += s * padded                          # η g, formed as one (L, N, N) array
            if accumulate > 1:
                persistent += s * padded
                work += s * padded                      # the fresh accumulator
            if feedback == "sign":
                work += s * padded                      # refreshed sign(Wᵀ)
        if plan.metrics:
            work = max(work, s * W)                     # weight copies for the reference
        state = (L + 1) * B * N
        items = {"weights": persistent,
                 "weight work": max(build, work),
                 "state buffers": s * state * 13 + (s * (L - 1) * B * N
                                                    if derivative == "itd-dy" else 0)}
        deriv_lags, pair_lags = frame_lags(L)
        lags = (deriv_lags if derivative == "frame" else []) + (
            pair_lags if pairing == "frame" else [])
        R = max(lags) + 1 if lags else 0
        items["history rings"] = s * R * state * ((derivative == "frame") + (pairing == "frame"))
        items["targets ring"] = s * (d_y + 1) * B * nL
        # x and δ of the pending rows (and the paired x, pairing `frame`)
        K = block_ticks(plan, L + 1, B, N, s)
        items["record block"] = s * K * B * N * (
            (0 if self.direct else 2 * (L + 1))
            + (L if plan.metrics and pairing != "local" else 0))
        if plan.metrics:
            ref = 2 * L + d_y + 2 + K
            items["reference ring"] = s * ref * L * (2 * B * N + 1) + 8 * ref
            # one block's backprop (activations, σ', δ of K frames stacked into one
            # batch, padded factors) or its gathered references and Gram products
            items["metric work"] = s * (3 * K * B * total_n + 2 * K * L * B * N
                                        + 3 * K * L * B * B)
        # Two chunks of frames are alive while the next is drawn; the teacher's
        # forward pass over a whole chunk is transient.
        items["stream frames"] = (8 + s) * 2 * C * B * (n0 + nL)
        if target == "teacher":
            # the teacher runs once per distinct frame of a chunk (held ticks repeat)
            F = C if distinct is None else min(C, int(distinct))
            items["teacher forward"] = 8 * F * B * (2 * total_n + 2 * N)
        rows = plan.rows
        items["recorded rows"] = rows * _row_bytes(L, plan.metrics)
        self._finish(items, N, B, s, C, gif)

    def _finish(self, items, width, batch, itemsize, chunk, gif):
        """Add the process itself, the recorded states, their host transfer,
        the pictures and the GIF frames to ``items`` (states are ``width`` wide
        per recorded layer or vertex), then set ``items`` and the peak ``total``
        — what the run's peak resident memory should come to."""
        plan, rows = self.plan, self.plan.rows
        items["interpreter"] = INTERPRETER_BYTES
        if getattr(self, "pictures", False):
            items["pictures"] = PICTURE_BYTES
        if plan.states:
            per_row = 2 * len(plan.layers) * batch * width
            items["recorded states"] = plan.itemsize * per_row * rows
            if not getattr(self, "direct", False):
                items["state transfer"] = (2 * itemsize * per_row
                                           * min(len(range(0, chunk, plan.every)), rows))
        if gif is not None:
            every, (w, h) = gif
            # streamed (render.gifstream): a few frames' worth at a time, not all
            items["gif frames"] = GIF_BYTES_PER_PIXEL * GIF_WORK_FRAMES * int(w) * int(h)
        self.items = {k: int(v) for k, v in items.items() if v}
        self.total = self._peak(self.items)

    @classmethod
    def _peak(cls, items):
        """Lasting parts add up; transient ones are never alive together."""
        return (sum(v for k, v in items.items() if k not in cls.TRANSIENT)
                + max((v for k, v in items.items() if k in cls.TRANSIENT), default=0))

    def held(self, parts, copies):
        """This budget with each of ``parts`` alive ``copies`` times at once
        (several engines learning side by side); returns self."""
        self.items = {k: v * copies if k in parts else v for k, v in self.items.items()}
        self.total = self._peak(self.items)
        return self

    # Parts the run cannot shrink: counted in ``total`` (the predicted peak),
    # not against the budget, which is for what the scene controls.
    FIXED = ("interpreter",)

    def _charged(self, items):
        """The peak of the parts a budget is charged with (all but FIXED)."""
        return self._peak({k: v for k, v in items.items() if k not in self.FIXED})

    def advice(self, item):
        """What shrinks ``item`` (for recorded states: the record.every that fits)."""
        if item != "recorded states":
            return self.ADVICE[item]
        plan = self.plan
        room = plan.budget - self._charged({**self.items, item: 0, "state transfer": 0})
        hint = "record fewer layers (record.layers) or record.states = false"
        if room > 0:
            factor = math.ceil(self.items[item] / room)
            hint = f"record.every = {plan.every * max(factor, 2)}, " + hint
        return hint

    def check(self):
        """Return the predicted peak bytes (``total``, the interpreter
        included), or raise BudgetError before any allocation when the parts
        the scene controls exceed the budget: names their total, the budget
        and the biggest parts (as many as must shrink for the rest to fit)
        with the knob that shrinks each."""
        budget = self.plan.budget
        charged = self._charged(self.items)
        if charged <= budget:
            return self.total
        groups, rest = {}, {k: v for k, v in self.items.items() if k not in self.FIXED}
        for name, size in sorted(rest.items(), key=lambda kv: -kv[1]):
            groups.setdefault(self.advice(name), []).append((name, size))
            rest[name] = 0
            if self._peak(rest) <= budget:
                break
        parts = [" + ".join(f"{n} {format_bytes(b)}" for n, b in named) + f": {advice}"
                 for advice, named in groups.items()]
        shown = parts[:MAX_ADVICE]
        if len(parts) > MAX_ADVICE:
            shown.append(f"then {len(parts) - MAX_ADVICE} smaller part(s)")
        raise BudgetError(
            f"this run would take {format_bytes(charged)}, over the memory budget of "
            f"{format_bytes(budget)} ({self.budget_key}); shrink " + "; ".join(shown))

    def __repr__(self):
        return ("RunBudget(" + ", ".join(f"{k}={format_bytes(v)}" for k, v in self.items.items())
                + f", total={format_bytes(self.total)})")


# Bytes of device memory a recorder may spend on one block of pending rows
# (copies of x and δ of each recorded tick, measured together).
BLOCK_BYTES = 16 * 2**20


def states_in_place(plan, depth, device):
    """Whether a chain recorder writes x and δ straight into the host state
    arrays, whose rows then serve as its block buffer: on numpy (the cpu
    device) when every layer's states are recorded (the default)."""
    return bool(device == "cpu" and plan.states and list(plan.layers) == list(range(depth + 1)))


def block_ticks(plan, layers, batch, width, itemsize):
    """Ticks per record block: as many as fit BLOCK_BYTES of pending x and δ
    copies (2 · layers · batch · width values a tick), at least 1, at most a chunk."""
    per_tick = 2 * layers * batch * width * itemsize
    return max(1, min(plan.chunk, BLOCK_BYTES // max(per_tick, 1)))


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


def _gram(xp, d1, x1, d2, x2):
    """⟨d1ᵀ x1, d2ᵀ x2⟩_F over the last two axes (batch, neurons) of stacked
    factors: Gram products of the batch, or, for a batch of one, the product
    of two dot products (the same number without a tiny matrix product per layer)."""
    if d1.shape[-2] == 1:
        return (xp.vecdot(d1[..., 0, :], d2[..., 0, :])
                * xp.vecdot(x1[..., 0, :], x2[..., 0, :]))
    dd = d1 @ xp.matrix_transpose(d2)
    xx = x1 @ xp.matrix_transpose(x2)
    return xp.sum(dd * xx, axis=(-2, -1))


def _layer_lags(lag, valid):
    """Per layer (column), the one lag (tick − paired frame) of its valid rows,
    or None when some layer's valid rows have more than one; a layer with no
    valid row gets lag 0 (its rows are NaN whatever is read)."""
    big = np.iinfo(np.int64).max
    hi = np.where(valid, lag, -big).max(axis=0)
    lo = np.where(valid, lag, big).min(axis=0)
    none = ~valid.any(axis=0)
    if not np.all((hi == lo) | none):
        return None
    return np.where(none, 0, hi)


def repeat_sources(frames, ref_frame, ring):
    """For a block of pending ``frames`` (tick index i, ..., repeat flag) the
    reference to use per frame: (src, fresh) with ``fresh`` the positions of
    the frames needing their own backprop and ``src[k]`` the index into
    ``fresh`` of frame k's reference, or −1 for a leading repeat whose
    reference is the ring slot of the tick before (``ref_frame`` says which
    frame each of the ``ring`` slots holds)."""
    src, fresh = np.empty(len(frames), dtype=np.int64), []
    for k, (i, _, _, rep) in enumerate(frames):
        if rep and i > 0 and (k > 0 or ref_frame[(i - 1) % ring] == i - 1):
            src[k] = src[k - 1] if k else -1
        else:
            src[k] = len(fresh)
            fresh.append(k)
    return src, fresh


class Recorder:
    """Records an Engine into host arrays, a row every ``plan.every`` ticks (see RecordPlan).

    A recorded tick costs two copies: x and δ of every layer go into a block
    buffer of K rows (and, pairing `frame` with metrics, the paired x); on
    numpy with every layer's states recorded (the default) that buffer is the
    host state arrays' rows themselves, so the states need no second copy;
    everything else is done per block in a few batched calls: norms
    (sqrt(sum(x²)) over the block), states (one transfer), tags (closed form,
    TagTable, where the engine's options make them deterministic — always for
    the chain Engine), and the mismatch. The backprop reference of the
    block's frames goes into a ring of 2L + d_y + 2 + K frames: with frozen
    weights ONE forward and backward pass over the block's distinct frames
    stacked into one batch, with weights read once per run, its factors
    written per layer straight into the ring's slots; learning on, per tick
    with that tick's weights, as it must. The mismatch of all K rows comes
    from two batched Gram products. Nothing is allocated for what the plan
    does not record (no metric arrays without ``plan.metrics``).
    """

    def __init__(self, engine, plan, reference="input"):
        if reference not in REFERENCES:
            raise SimulatorError(f"unknown reference {reference!r}; expected input or supervision")
        self.engine, self.plan, self.reference = engine, plan, reference
        self.xp = engine.xp
        L, B, N = engine.depth, engine.batch, engine.width
        T = plan.rows
        self._every, self._metrics = plan.every, plan.metrics
        self._host = {
            "x_norm": np.full((T, L + 1), np.nan), "delta_norm": np.full((T, L + 1), np.nan),
            "stream_frame": np.full(T, -1, dtype=np.int64),
            "tick": np.arange(0, plan.ticks, plan.every, dtype=np.int64),
        }
        for key in TAG_KEYS:
            self._host["tag_" + key] = np.full((T, L + 1), -1, dtype=np.int64)
        self._tag_rows = [self._host["tag_" + key] for key in TAG_KEYS]
        self._pair_rows = self._host["tag_pair" if reference == "input" else "tag_supervision"]
        self._tags = tag_table(engine)
        be = engine.backend
        self._K = K = block_ticks(plan, L + 1, B, N, plan.itemsize)
        # x and δ of every layer of the pending rows: (K, 2, L + 1, B, N); on
        # numpy with every layer's states recorded, the host state arrays'
        # rows are that buffer (one copy a tick, not two)
        self._direct = states_in_place(plan, L, be.device)
        self._blk = None if self._direct else be.zeros((K, 2, L + 1, B, N))
        self._blk_ticks = []
        self._blk_p = None
        self._R = 2 * L + engine.supervision_delay + 2     # frames a pairing reaches back
        if plan.metrics:
            for k in METRIC_KEYS:
                self._host[k] = np.full((T, L), np.nan)
            if getattr(engine, "pairing", "local") != "local":
                self._blk_p = be.zeros((K, L, B, N))
            self._ring = RR = self._R + K
            sizes = engine.sizes
            # padded Gram work (x and δ of every layer N wide) over the true work
            self._padded_waste = 2 * L * N / max(1, sum(sizes[:-1]) + sum(sizes[1:]))
            self._ref_d = be.zeros((RR, L, B, N))
            self._ref_x = be.zeros((RR, L, B, N))
            self._ref_gg = be.zeros((RR, L))
            self._ref_frame = np.full(RR, -1, dtype=np.int64)
            self._frames = []             # frozen: (tick, u, y, repeat) not yet referenced
            self._frozen = not engine.learning_rate
            self._params = None           # frozen: the weights and biases, read once
        if plan.states:
            S, nl = plan.state_ticks, len(plan.layers)
            self._host["state_x"] = np.full((S, nl, B, N), np.nan, dtype=be.host_dtype)
            self._host["state_delta"] = np.full((S, nl, B, N), np.nan, dtype=be.host_dtype)
            self._host["state_tick"] = self._host["tick"].copy()
            self._state_layers = (None if list(plan.layers) == list(range(L + 1)) else
                                  self.xp.asarray(np.array(plan.layers, dtype=np.int64)))

    # --------------------------------------------------------------- per tick
    def record(self, i, u, y, frame_id, repeat=False):
        """Record tick i (the engine has just made it), whose input/target were u, y;
        ``repeat`` says u, y and the weights are those of tick i − 1. Ticks that
        are not a multiple of ``plan.every`` only feed the reference ring."""
        metrics = self._metrics
        if metrics:
            if self._frozen:
                self._frames.append((i, u, y, repeat))
            else:
                self._reference_now(i, u, y, repeat)
        if i % self._every:
            if metrics and len(self._frames) >= self._K:
                self._process_block()
            return
        X, D, Xp = self.engine.stacked_state_views()
        k = len(self._blk_ticks)
        row = i // self._every
        if self._direct:
            self._host["state_x"][row, ...] = X
            self._host["state_delta"][row, ...] = D
        else:
            self._blk[k, 0, ...] = X
            self._blk[k, 1, ...] = D
        if self._blk_p is not None:
            self._blk_p[k, ...] = Xp
        self._blk_ticks.append(i)
        self._host["stream_frame"][row] = frame_id
        if self._tags is None:
            self._step_tags(row)
        if k + 1 == self._K or (metrics and len(self._frames) >= self._K):
            self._process_block()

    def _step_tags(self, row):
        """Tags of an engine without a TagTable: read from it, this tick."""
        eng = self.engine
        write_tags = getattr(eng, "write_tags", None)
        if write_tags is not None:
            write_tags(self._tag_rows, row)
            return
        tags = eng.tags()
        for key, rows in zip(TAG_KEYS, self._tag_rows):
            rows[row] = tags[key]

    # ------------------------------------------------------------- reference
    def _ranges(self, i0, lo, hi):
        """Ring slots of ticks i0 + lo .. i0 + hi − 1 as contiguous pieces
        (pos_lo, pos_hi, slot_lo, slot_hi): at most two (the ring wraps)."""
        RR, out, p = self._ring, [], lo
        while p < hi:
            s = (i0 + p) % RR
            q = min(hi, p + RR - s)
            out.append((p, q, s, s + q - p))
            p = q
        return out

    def _reference_now(self, i, u, y, repeat):
        """Learning on: backprop of frame i with the weights of tick i, into the ring."""
        RR, slot = self._ring, i % self._ring
        prev = (i - 1) % RR
        if repeat and i > 0 and self._ref_frame[prev] == i - 1:
            self._ref_d[slot, ...] = self._ref_d[prev, ...]
            self._ref_x[slot, ...] = self._ref_x[prev, ...]
            self._ref_gg[slot, ...] = self._ref_gg[prev, ...]
        else:
            eng = self.engine
            self._write_reference(i, np.zeros(1, dtype=np.int64), [u], [y],
                                  eng.weights(), eng.biases())
        self._ref_frame[slot] = i

    def _reference_block(self):
        """Frozen weights: one batched backprop over the pending frames that are
        not repeats of the frame before, written straight into the ring."""
        frames, self._frames = self._frames, []
        RR, i0 = self._ring, frames[0][0]
        src, fresh = repeat_sources(frames, self._ref_frame, RR)
        if self._params is None:
            self._params = (self.engine.weights(), self.engine.biases())
        self._write_reference(i0, src, [frames[k][1] for k in fresh],
                              [frames[k][2] for k in fresh], *self._params)
        ticks = i0 + np.arange(len(frames))
        self._ref_frame[ticks % RR] = ticks

    def _write_reference(self, i0, src, us, ys, weights, biases):
        """Ring slots of ticks i0 .. i0 + len(src) − 1: tick i0 + k takes the
        backprop factors of frame src[k] of (us, ys), computed here in one
        batched pass; src −1 (a leading repeat) takes the slot of tick i0 − 1."""
        eng, xp = self.engine, self.xp
        n = len(src)
        m = int(np.argmax(src >= 0)) if (src >= 0).any() else n
        if m:
            prev = (i0 - 1) % self._ring
            for _, _, a, b in self._ranges(i0, 0, m):
                self._ref_d[a:b, ...] = self._ref_d[prev:prev + 1, ...]
                self._ref_x[a:b, ...] = self._ref_x[prev:prev + 1, ...]
                self._ref_gg[a:b, ...] = self._ref_gg[prev:prev + 1, ...]
        if not us:
            return
        F, B = len(us), us[0].shape[0]
        U = xp.stack(us) if F > 1 else xp.expand_dims(us[0], axis=0)
        Y = xp.stack(ys) if F > 1 else xp.expand_dims(ys[0], axis=0)
        pairs, _ = factors_of(weights, biases, eng.activations,
                              xp.reshape(U, (F * B, U.shape[2])),
                              xp.reshape(Y, (F * B, Y.shape[2])), eng.loss)
        keep = src[m:]
        spread = None if np.array_equal(keep, np.arange(F)) else xp.asarray(keep)
        pieces = self._ranges(i0, m, n)
        N = self._ref_x.shape[-1]
        if all(x.shape[1] == d.shape[1] == N for x, d in pairs):
            # every layer as wide as the ring: the layers stacked once
            # (F, L, B, N), ⟨G, G⟩ of each distinct frame in one call, and one
            # spread and one copy per ring piece instead of some per layer
            X = xp.stack([xp.reshape(x, (F, B, N)) for x, _ in pairs], axis=1)
            D = xp.stack([xp.reshape(d, (F, B, N)) for _, d in pairs], axis=1)
            GG = _gram(xp, D, X, D, X)
            if spread is not None:
                X, D = xp.take(X, spread, axis=0), xp.take(D, spread, axis=0)
                GG = xp.take(GG, spread, axis=0)
            for p, q, a, b in pieces:
                self._ref_x[a:b, ...] = X[p - m:q - m, ...]
                self._ref_d[a:b, ...] = D[p - m:q - m, ...]
                self._ref_gg[a:b, ...] = GG[p - m:q - m, ...]
            return
        # layers of unequal widths: ⟨G, G⟩ per layer on the true widths of the
        # distinct frames where padding would more than double the Gram work or
        # frames repeat (a held frame's ⟨G, G⟩ is formed once, not per tick),
        # else on the ring in one call
        per_layer = self._padded_waste > 2 or spread is not None
        gg = []
        for l, (x, d) in enumerate(pairs):
            x3 = xp.reshape(x, (F, B, x.shape[1]))
            d3 = xp.reshape(d, (F, B, d.shape[1]))
            if per_layer:
                gg.append(_gram(xp, d3, x3, d3, x3))
            if spread is not None:
                x3, d3 = xp.take(x3, spread, axis=0), xp.take(d3, spread, axis=0)
            nx, nd = x3.shape[2], d3.shape[2]
            for p, q, a, b in pieces:
                self._ref_x[a:b, l, :, :nx] = x3[p - m:q - m, ...]
                self._ref_d[a:b, l, :, :nd] = d3[p - m:q - m, ...]
        if per_layer:
            GG = xp.stack(gg, axis=1)
            if spread is not None:
                GG = xp.take(GG, spread, axis=0)
        for p, q, a, b in pieces:
            if per_layer:
                self._ref_gg[a:b, ...] = GG[p - m:q - m, ...]
            else:
                d4, x4 = self._ref_d[a:b, ...], self._ref_x[a:b, ...]
                self._ref_gg[a:b, ...] = _gram(xp, d4, x4, d4, x4)

    # --------------------------------------------------------------- blocks
    def _process_block(self):
        """References of the pending frames, then, for the pending rows (they
        are consecutive rows), norms, tags, states and the mismatch in a few
        batched calls each, written into the host arrays."""
        if self._metrics and self._frozen and self._frames:
            self._reference_block()
        ticks, self._blk_ticks = self._blk_ticks, []
        n = len(ticks)
        if not n:
            return
        xp, be, host = self.xp, self.engine.backend, self._host
        r0 = ticks[0] // self._every
        rows = slice(r0, r0 + n)
        bx, bd = self._block(rows, n)
        for key, b in (("x_norm", bx), ("delta_norm", bd)):
            flat = xp.reshape(b, b.shape[:2] + (-1,))
            host[key][rows] = be.to_host(xp.sqrt(xp.vecdot(flat, flat)))    # (n, L + 1)
        if self._tags is not None:
            tags = self._tags.rows(ticks)
            for j, arr in enumerate(self._tag_rows):
                arr[rows] = tags[:, j]
        if self.plan.states and not self._direct:
            blk = self._blk[:n, ...]
            both = blk if self._state_layers is None else xp.take(blk, self._state_layers, axis=2)
            both = be.to_host(both)
            host["state_x"][rows] = both[:, 0]
            host["state_delta"][rows] = both[:, 1]
        if self._metrics:
            self._measure(np.asarray(ticks), rows)

    def _block(self, rows, n):
        """x and δ (n, L + 1, B, N) of the pending rows: views of the block
        buffer, or of the host state arrays' ``rows`` when they are the buffer."""
        if self._direct:
            return self._host["state_x"][rows], self._host["state_delta"][rows]
        return self._blk[:n, 0, ...], self._blk[:n, 1, ...]

    def _measure(self, ticks, rows):
        """Mismatch of the block's rows against the ring's references of their
        paired frames: two batched Gram products."""
        xp, be, host = self.xp, self.engine.backend, self._host
        L, R, RR = self.engine.depth, self._R, self._ring
        n = len(ticks)
        B, N = self.engine.batch, self.engine.width
        t = ticks[:, None]
        frames = self._pair_rows[rows, 1:]                          # (n, L)
        valid = (frames >= 0) & (frames > t - R)
        slots = np.where(valid, frames % RR, t % RR)
        valid &= self._ref_frame[slots] == frames
        ix = xp.asarray((slots * L + np.arange(L)).reshape(-1))
        GG = xp.reshape(xp.take(xp.reshape(self._ref_gg, (-1,)), ix), (n, L))
        bx, bd = self._block(rows, n)
        d = bd[:, 1:, ...]
        x = bx[:, :L, ...] if self._blk_p is None else self._blk_p[:n, ...]
        gg = _gram(xp, d, x, d, x)
        # slices pay a few calls per layer, gathers copy B·N per layer and row:
        # measured, slices win from batch 2 on (L = 6, w 128, B 16: 2.01x ->
        # 1.91x recorded/bare) and lose at batch 1 (L = 64: 2.42x -> 2.50x)
        lags = _layer_lags(t - frames, valid) if self._every == 1 and B > 1 else None
        if lags is None:
            # lags that change within the block (a warm-up, tags read from the
            # engine) or rows apart: gather each row's reference factors
            d_ref = xp.reshape(xp.take(xp.reshape(self._ref_d, (RR * L, B, N)), ix, axis=0),
                               (n, L, B, N))
            x_ref = xp.reshape(xp.take(xp.reshape(self._ref_x, (RR * L, B, N)), ix, axis=0),
                               (n, L, B, N))
            gG = _gram(xp, d, x, d_ref, x_ref)
        else:
            # every tick a row, each layer pairing it with the frame a fixed lag
            # back: the layer's references are consecutive ring slots, read as
            # slices, not gathered into copies
            cols = []
            for l in range(L):
                parts = [_gram(xp, d[p:q, l, ...], x[p:q, l, ...],
                               self._ref_d[a:b, l, ...], self._ref_x[a:b, l, ...])
                         for p, q, a, b in self._ranges(int(ticks[0]) - int(lags[l]), 0, n)]
                cols.append(parts[0] if len(parts) == 1 else xp.concat(parts))
            gG = xp.stack(cols, axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            cos, rel = cosine_and_relative(xp, gg, gG, GG)
            nan = np.where(valid, 0.0, np.nan)
            host["mismatch_cos"][rows] = be.to_host(cos) + nan
            host["mismatch_rel"][rows] = be.to_host(rel) + nan
            host["grad_norm"][rows] = be.to_host(xp.sqrt(gg))
            host["ref_norm"][rows] = be.to_host(xp.sqrt(GG)) + nan

    # ---------------------------------------------------------------- chunks
    def flush(self):
        """Measure and move to the host whatever is pending (run_stream calls
        it once per chunk; NaN/Inf is the engine's to find)."""
        if self._blk_ticks or (self._metrics and self._frames):
            self._process_block()

    def trace(self, meta=None):
        """The finished recording as a Trace (host arrays only). Without
        metrics the trace holds no metric arrays (readers see NaN for them,
        Trace.__getitem__)."""
        self.flush()
        arrays = dict(self._host)
        arrays["delta_norm"][:, 0] = np.nan
        arrays["sizes"] = np.array(self.engine.sizes, dtype=np.int64)
        if self.plan.states:
            arrays["state_layers"] = np.array(self.plan.layers, dtype=np.int64)
            _blank_padding(arrays, self.engine.sizes, self.plan.layers)
        return Trace(arrays, meta or {})


def _blank_padding(arrays, sizes, layers):
    """Neurons beyond a layer's width are padding: NaN, so no picture shows them."""
    for j, l in enumerate(layers):
        arrays["state_x"][:, j, :, sizes[l]:] = np.nan
        arrays["state_delta"][:, j, :, sizes[l]:] = np.nan


# What every array of trace.npz holds: its dims and unit (stored in the file as
# the JSON string array ``schema``, so a trace read without tickprop explains
# itself). Words: a *tick* is one step of the engine (an index in time); a
# *stream frame* is one item (input, target) the stream presents, held for one
# or more ticks; a *row* is one recorded tick (every record.every ticks). Tags
# name a frame by the tick it entered layer 0 (tag unit "tick"); ``stream_frame``
# turns a row into the stream frame presented then. A *GIF frame* is a picture
# of the animation, never one of these.
SCHEMA_VERSION = 1
_ROW_LAYERS = ("row", "layer")
_ROW_MISMATCH = ("row", "layer_with_weights")
SCHEMA = {
    "tick": (("row",), "tick", "the tick each recorded row was taken at"),
    "stream_frame": (("row",), "stream frame",
                     "index of the stream frame (input/target item) presented at that tick"),
    "sizes": (("layer",), "neurons", "number of values of each layer (vertex), input first"),
    "x_norm": (_ROW_LAYERS, "activation (L2 norm over batch and neurons)", "‖x‖ per layer"),
    "delta_norm": (_ROW_LAYERS, "delta (L2 norm over batch and neurons)",
                   "‖δ‖ per layer; NaN for the input layer"),
    "mismatch_cos": (_ROW_MISMATCH, "cosine (dimensionless)",
                     "cosine of Eq. 5's g against backprop's gradient of the paired frame; "
                     "column l-1 is layer l; NaN where not defined"),
    "mismatch_rel": (_ROW_MISMATCH, "relative error (dimensionless)",
                     "‖g − ∇‖ / ‖∇‖ against backprop; column l-1 is layer l"),
    "grad_norm": (_ROW_MISMATCH, "gradient (Frobenius norm)", "‖g‖ of Eq. 5; column l-1 is layer l"),
    "ref_norm": (_ROW_MISMATCH, "gradient (Frobenius norm)",
                 "‖∇‖ of backprop on the paired frame; column l-1 is layer l"),
    "tag_input": (_ROW_LAYERS, "tick (-1: empty)", "frame in x: the tick it entered layer 0"),
    "tag_supervision": (_ROW_LAYERS, "tick (-1: empty)",
                        "frame whose target δ carries: the tick it entered layer 0"),
    "tag_output": (_ROW_LAYERS, "tick (-1: empty)",
                   "frame of the output activity δ's error is made of"),
    "tag_sigma_lo": (_ROW_LAYERS, "tick (-1: empty)", "oldest frame of δ's σ' factors"),
    "tag_sigma_hi": (_ROW_LAYERS, "tick (-1: empty)", "newest frame of δ's σ' factors"),
    "tag_pair": (_ROW_LAYERS, "tick (-1: empty)", "frame of the x that g pairs with δ"),
    "state_x": (("state_row", "state_layer", "batch", "neuron"), "activation",
                "x of the recorded layers (NaN beyond a layer's width)"),
    "state_delta": (("state_row", "state_layer", "batch", "neuron"), "delta",
                    "δ of the recorded layers (NaN beyond a layer's width)"),
    "state_tick": (("state_row",), "tick", "the tick of each recorded state row"),
    "state_layers": (("state_layer",), "layer index", "which layer each state_layer is"),
    "vertex_names": (("layer",), "name", "graph vertex names (input first)"),
    "vertex_kinds": (("layer",), "layer kind", "graph vertex kinds"),
    "vertex_levels": (("layer",), "edges", "longest path from the input"),
    "vertex_bwd": (("layer",), "edges", "longest path to the output"),
    "vertex_sync": (("layer",), "bool", "vertex in the synchronization set"),
    "vertex_edges": (("edge", "parent_child"), "layer index", "graph edges (parent, child)"),
    "source_tick": (("source_row",), "tick",
                    "a selected trace: every row's tick of the trace it was cut from"),
    "source_stream_frame": (("source_row",), "stream frame",
                            "a selected trace: every row's stream frame of the trace it was "
                            "cut from (so tags before the window still name their frame)"),
}
for _key in ("input", "supervision", "output", "pair"):
    SCHEMA[f"tag_{_key}_hi"] = (_ROW_LAYERS, "tick (-1: empty)",
                                f"graph: newest frame of tag_{_key} (differs where a vertex "
                                "mixes frames)")


def schema_of(arrays):
    """The schema entries ({name: {dims, shape, unit, description}}) of the
    arrays given; an array SCHEMA does not describe gets ``"unit": null`` and
    says so, so an undocumented array is visible (tests require none)."""
    out = {}
    for key, value in arrays.items():
        dims, unit, text = SCHEMA.get(key, (tuple(f"dim{i}" for i in range(np.ndim(value))),
                                            None, "not described"))
        out[key] = {"dims": list(dims), "shape": list(np.shape(value)), "unit": unit,
                    "dtype": str(np.asarray(value).dtype), "description": text}
    return {"version": SCHEMA_VERSION, "arrays": out}


def _interval(value, name):
    """(start, stop) from None, a (start, stop) pair (either None) or a slice."""
    if value is None:
        return None, None
    if isinstance(value, slice):
        if value.step not in (None, 1):
            raise SimulatorError(f"{name} {value}: a step is not supported")
        return value.start, value.stop
    try:
        a, b = value
    except (TypeError, ValueError):
        raise SimulatorError(f"{name} {value!r}: expected (start, stop)") from None
    for end in (a, b):
        if end is not None and (isinstance(end, (bool, np.bool_))
                                or not isinstance(end, (int, np.integer))):
            raise SimulatorError(f"{name} {value!r}: expected (start, stop) ticks, each an "
                                 f"integer or None, got {end!r} ({type(end).__name__})")
    return a, b


class Trace:
    """Recorded arrays (trace.npz) plus the run's metadata (run.json).

    ``trace[name]`` is an array described in SCHEMA (``trace.schema()`` gives
    dims and units). Row r was recorded at tick ``trace.ticks[r]`` while the
    stream presented stream frame ``trace["stream_frame"][r]``; tag arrays
    name frames by the tick they entered (``stream_frames_of`` turns them into
    stream frame indices). ``select`` cuts a smaller Trace (ticks, layers,
    neurons) that every renderer draws as it is.
    """

    def __init__(self, arrays, meta):
        self.arrays, self.meta = arrays, meta

    def __getitem__(self, key):
        """The array ``key``; a metric array of a run recorded without metrics
        (record.metrics = false: not in trace.npz) reads as NaN, made here. A
        name the trace lacks raises MissingKeyError (a SimulatorError and a
        KeyError) naming it and listing the arrays there are."""
        if isinstance(key, str) and key in self.arrays:
            return self.arrays[key]
        if key in METRIC_KEYS and "tick" in self.arrays and "sizes" in self.arrays:
            return np.full((len(self.arrays["tick"]), len(self.arrays["sizes"]) - 1), np.nan)
        names = sorted(self.arrays)
        if not isinstance(key, str):
            raise MissingKeyError(f"Trace[{key!r}]: expected an array name (a string), got "
                                  f"{type(key).__name__}; the trace has {', '.join(names)}")
        raise MissingKeyError(f"Trace[{key!r}]: no such array{did_you_mean(key, names)}; the "
                              f"trace has {', '.join(names) or 'none'} (trace.schema() says "
                              "what each holds)")

    def _repr_html_(self):
        """The time-travel viewer of this trace (simulator.view.trace_html), for notebooks."""
        return trace_html(self)

    def __contains__(self, key):
        return key in self.arrays

    @property
    def depth(self):
        return len(self.arrays["sizes"]) - 1

    @property
    def ticks(self):
        """The tick of every recorded row (array ``tick``)."""
        return self.arrays["tick"]

    def schema(self):
        """Dims, shape, unit and meaning of every array of this trace (schema_of)."""
        return schema_of(self.arrays)

    def stream_frames_of(self, tags):
        """Stream frame indices of tick-valued ``tags`` (−1 stays −1, a tick
        not recorded takes the frame of the last recorded row before it); works
        on a selected trace whose tags name ticks before its window."""
        try:
            tags = np.asarray(tags)
        except ValueError:            # a ragged list
            tags = np.asarray(None)
        integral = tags.dtype.kind in "iu" or (
            tags.dtype.kind == "f" and bool(np.all(np.isfinite(tags) & (tags == np.round(tags)))))
        if not integral or tags.dtype.kind == "b":
            raise SimulatorError(f"Trace.stream_frames_of: tags: expected integer ticks "
                                 f"(an int or an array of them, -1 for none), got {shown(tags)}")
        tags = tags.astype(np.int64)
        ticks = self.arrays.get("source_tick", self.arrays["tick"])
        frames = self.arrays.get("source_stream_frame", self.arrays["stream_frame"])
        if not len(ticks):
            return np.full(tags.shape, -1, dtype=np.int64)
        row = np.clip(np.searchsorted(ticks, tags, side="right") - 1, 0, len(ticks) - 1)
        return np.where(tags >= 0, frames[row], -1)

    def layer_names(self):
        """Names of the layers (vertex names of a graph, '0'..'L' of a chain)."""
        if "vertex_names" in self.arrays:
            return [str(n) for n in self.arrays["vertex_names"]]
        return [str(l) for l in range(self.depth + 1)]

    def select(self, ticks=None, layers=None, neurons=None):
        """A smaller Trace of the same kind that renderers draw unchanged.

        ``ticks``: (start, stop) ticks, stop excluded, either None for open
        (or a slice): the rows recorded in that window. ``layers``: layer
        indices or names (a graph's vertex names; slices allowed); the input
        layer is always kept, since every picture anchors on it (it carries no
        δ and no mismatch), and a chain comes back as a graph trace whose
        vertices are named by their layer index, keep their level and mark
        ls. ``neurons``: neuron indices (per layer, slices allowed) that the
        recorded states keep; norms, tags and metrics stay per layer. A value
        that selects nothing or names what the trace lacks raises
        SimulatorError naming it and what the trace has."""
        arrays = dict(self.arrays)
        meta = dict(self.meta) if isinstance(self.meta, dict) else {}
        chosen = {}
        if ticks is not None:
            arrays, chosen["ticks"] = _select_ticks(arrays, ticks)
        if layers is not None:
            arrays, chosen["layers"] = _select_layers(self, arrays, layers)
        if neurons is not None:
            arrays, chosen["neurons"] = _select_neurons(arrays, neurons)
        if chosen:
            meta["selection"] = {**meta.get("selection", {}), **chosen}
        return Trace(arrays, meta)

    def save(self, folder, compress=False):
        """Write trace.npz atomically into ``folder``, with its ``schema`` entry
        (a JSON string: schema_of the arrays). Uncompressed by default:
        deflating recorded states took 3–5× the simulation; ``compress``
        (record.compress) trades that time for a smaller file."""
        folder = check_path("Trace.save", "folder", folder, folder=True)
        check_bool("Trace.save", "compress", compress)
        arrays = dict(self.arrays, schema=np.array(json.dumps(self.schema())))
        write = np.savez_compressed if compress else np.savez
        atomic_write(os.path.join(folder, "trace.npz"), lambda f: write(f, **arrays), binary=True)

    @classmethod
    def load(cls, folder, meta=None):
        """Load trace.npz and run.json from a run folder (``meta``, when given,
        stands in for run.json: a run draws its pictures before run.json is
        written). A missing or damaged file (not a regular file, not a zip,
        truncated, too large for memory, an array missing, of the wrong shape
        or dtype, no recorded tick, run.json not a JSON object) raises
        SimulatorError naming the file and what is wrong: the one check
        ``tickprop render`` and ``tickprop view`` make too
        (simulator.runfiles.read_trace). The stored schema entry is not an
        array of the trace (``schema()`` rebuilds it)."""
        arrays = read_trace(folder)
        if meta is None:
            meta = read_json(os.path.join(folder, "run.json"), dict)
        return cls(arrays, meta)


_ROW_KEYS = ("tick", "stream_frame")


def _row_arrays(arrays):
    """Names of the arrays whose first axis is the recorded row."""
    T = len(arrays["tick"])
    skip = {"sizes", "state_x", "state_delta", "state_tick", "state_layers", "source_tick",
            "source_stream_frame"}
    return [k for k, v in arrays.items() if k not in skip and not k.startswith("vertex_")
            and np.ndim(v) >= 1 and np.shape(v)[0] == T]


def _select_ticks(arrays, ticks):
    start, stop = _interval(ticks, "ticks")
    t = np.asarray(arrays["tick"])
    first, last = (int(t[0]), int(t[-1])) if len(t) else (0, -1)
    lo = first if start is None else int(start)
    hi = last + 1 if stop is None else int(stop)
    text = f"{'' if start is None else start}:{'' if stop is None else stop}"
    if lo < 0 or hi <= lo:
        raise SimulatorError(f"ticks {text}: expected 0 <= start < stop")
    rows = np.flatnonzero((t >= lo) & (t < hi))
    if not len(rows):
        raise SimulatorError(f"ticks {text}: no recorded tick in it (the run has ticks "
                             f"{first}..{last})")
    out = dict(arrays)
    out.setdefault("source_tick", t.copy())
    out.setdefault("source_stream_frame", np.asarray(arrays["stream_frame"]).copy())
    for key in _row_arrays(arrays):
        out[key] = arrays[key][rows]
    if "state_tick" in arrays:
        keep = np.flatnonzero((arrays["state_tick"] >= lo) & (arrays["state_tick"] < hi))
        for key in ("state_x", "state_delta", "state_tick"):
            out[key] = arrays[key][keep]
    return out, [int(t[rows[0]]), int(t[rows[-1]]) + 1]


def _indices(spec, count, names, what):
    """Sorted unique indices in 0..count-1 from ints, names and slices."""
    items = spec if isinstance(spec, (list, tuple)) else [spec]
    out = set()
    for item in items:
        if isinstance(item, slice):
            got = range(count)[item]
            if not len(got):
                raise SimulatorError(f"{what} {_show(item)}: selects none of 0..{count - 1}")
            out.update(got)
            continue
        if isinstance(item, (int, np.integer)) and not isinstance(item, bool):
            if not 0 <= int(item) < count:
                raise SimulatorError(f"{what} {item}: expected an index in 0..{count - 1}")
            out.add(int(item))
            continue
        if isinstance(item, str) and names is not None:
            if item in names:
                out.add(names.index(item))
                continue
            hint = difflib.get_close_matches(item, names, n=1, cutoff=0.5)
            more = f"; did you mean {hint[0]!r}?" if hint else ""
            raise SimulatorError(f"{what} {item!r}: no such {what[:-1]} (the run has "
                                 f"{', '.join(names[:12])}{', …' if len(names) > 12 else ''})"
                                 f"{more}")
        raise SimulatorError(f"{what} {item!r}: expected an index in 0..{count - 1}"
                             + (" or a name" if names is not None else ""))
    if not out:
        raise SimulatorError(f"{what}: selects nothing")
    return sorted(out)


def _show(item):
    if isinstance(item, slice):
        return f"{'' if item.start is None else item.start}:{'' if item.stop is None else item.stop}"
    return str(item)


def _select_layers(trace, arrays, layers):
    names = trace.layer_names()
    n = len(names)
    keep = sorted(set(_indices(layers, n, names, "layers")) | {0})
    new = {k: v for k, v in arrays.items()}
    col = np.asarray(keep)
    for key in _row_arrays(arrays):
        a = arrays[key]
        if np.ndim(a) == 2 and a.shape[1] == n:
            new[key] = a[:, col]
        elif np.ndim(a) == 2 and a.shape[1] == n - 1:        # metrics of layers 1..
            new[key] = a[:, col[1:] - 1]
    new["sizes"] = np.asarray(arrays["sizes"])[col]
    position = {old: i for i, old in enumerate(keep)}
    if "vertex_names" in arrays:
        for key in ("vertex_names", "vertex_kinds", "vertex_levels", "vertex_bwd", "vertex_sync"):
            if key in arrays:
                new[key] = np.asarray(arrays[key])[col]
        if "vertex_edges" in arrays:
            edges = [(position[p], position[c]) for p, c in
                     np.asarray(arrays["vertex_edges"]).reshape(-1, 2).tolist()
                     if p in position and c in position]
            new["vertex_edges"] = np.array(edges, dtype=np.int64).reshape(-1, 2)
    else:
        L = n - 1
        sync = set(synchronized_layers(L))
        new.update({"vertex_names": np.array([str(l) for l in keep]),
                    "vertex_kinds": np.array(["layer"] * len(keep)),
                    "vertex_levels": np.array(keep, dtype=np.int64),
                    "vertex_bwd": np.array([L - l for l in keep], dtype=np.int64),
                    "vertex_sync": np.array([l in sync for l in keep]),
                    "vertex_edges": np.array([(position[l], position[l + 1]) for l in keep
                                              if l + 1 in position],
                                             dtype=np.int64).reshape(-1, 2)})
    if "state_layers" in arrays:
        recorded = [int(l) for l in arrays["state_layers"]]
        which = [j for j, l in enumerate(recorded) if l in position]
        new["state_layers"] = np.array([position[recorded[j]] for j in which], dtype=np.int64)
        for key in ("state_x", "state_delta"):
            new[key] = arrays[key][:, which]
    return new, [names[i] for i in keep]


def _select_neurons(arrays, neurons):
    if "state_x" not in arrays:
        raise SimulatorError("neurons: this run recorded no neuron states (record.states = "
                             "false), only per-layer norms; re-run with --set record.states=true")
    width = arrays["state_x"].shape[-1]
    keep = np.asarray(_indices(neurons, width, None, "neurons"))
    new = dict(arrays)
    for key in ("state_x", "state_delta"):
        new[key] = arrays[key][..., keep]
    new["sizes"] = np.array([int((keep < s).sum()) for s in arrays["sizes"]], dtype=np.int64)
    return new, keep.tolist()
