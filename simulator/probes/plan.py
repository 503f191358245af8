"""What a run records (RecordPlan: a row every ``record.every`` ticks) and
what it costs (RunBudget: everything a diffusion run allocates, itemised, so
that a run over ``record.memory_budget`` is refused before anything is
allocated, with advice naming the knob that shrinks its biggest parts)."""
import math

import numpy as np

from ..errors import BudgetError, SceneError, SimulatorError
from ..model import Model
from ..safe_read import _format_bytes
from .trace import TAG_KEYS
from .vertex import HI_KEYS, is_plain_chain, metric_block, metric_layout

GIF_BYTES_PER_PIXEL = 4
INTERPRETER_BYTES = 48 * 2**20   # Python, numpy, tickprop: 41.5 MiB after `import cli`
# matplotlib and the renderers (32 MiB) and the figures' work (up to ~60 MiB
# on a 100k-tick fig3_fast run), measured, rounded up
PICTURE_BYTES = 96 * 2**20
GIF_WORK_FRAMES = 4       # the figure's RGBA buffer, the frame, the previous one, a rectangle
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
    """Bytes as a short human string ('1.5 GiB'); from 10000 TiB on in 3 digits."""
    tib = n / 2**40
    return f"{tib:.3g} TiB" if abs(tib) >= 10000 else _format_bytes(n)


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

    def size(self):
        """Bytes of host memory the recorded arrays will take."""
        states = 2 * self.rows * len(self.layers) * self.batch * self.width * self.itemsize
        return self.rows * _row_bytes(self.depth, self.metrics) + (states if self.states else 0)

    def check_budget(self, model=None, **run):
        """``RunBudget(self, model, **run).check()``, ``model`` by default a chain
        skeleton ``width`` wide at every layer."""
        if model is None:
            model = Model.chain_skeleton([self.width] * (self.depth + 1), ["tanh"] * self.depth)
        return RunBudget(self, model, **run).check()


def distinct_frames(stream, chunk):
    """Most distinct input frames a chunk of ticks holds for a resolved [stream]
    (a held frame repeats for ``hold`` ticks, but its ``crossfade`` ticks differ)."""
    if stream.get("kind") in ("held", "dataset"):
        hold, fade = max(1, int(stream["hold"])), int(stream.get("crossfade", 0))
        return min(chunk, (-(-chunk // hold) + 1) * (1 + fade))
    if stream.get("kind") == "constant":
        return 1
    return chunk


_LAYERS = "fewer or narrower layers (network.width, network.depth or network.sizes)"
_GRAPH_LAYERS = "fewer or smaller layers (network.layers: units, channels, kernel)"
_CHUNK = "a smaller record.chunk (ticks generated at once) or stream.batch"


class RunBudget:
    """Itemised peak memory of one diffusion run, before anything is allocated, from the
    RecordPlan, the Model (a skeleton will do), the rule options (which rings and buffers;
    ``target`` 'teacher' adds a teacher), ``gif`` (render.every, (width, height)),
    ``pictures`` and ``distinct`` (a chunk's distinct frames at most). ``items``: bytes per
    part, ``total`` the peak; ``check()`` refuses a run over ``plan.budget`` (``budget_key``)."""

    ADVICE = {
        "weights": _LAYERS,
        "state buffers": "a smaller stream.batch or a narrower network (network.width, "
                         "network.sizes)",
        "history rings": "rule.derivative and rule.pairing other than 'frame' (their rings "
                         "hold 2L ticks of state), a smaller stream.batch or network",
        "targets ring": "a smaller rule.supervision_delay",
        "reference ring": "a smaller rule.supervision_delay (the ring holds 2L + d_y + 2 "
                          "frames) or record.metrics = false",
        "metric work": "a smaller stream.batch (the mismatch forms batch x batch Gram "
                       "matrices) or record.metrics = false",
        "weight work": _LAYERS,
        "stream frames": _CHUNK,
        "teacher forward": _CHUNK,
        "state transfer": "a smaller record.chunk (ticks moved to the host at once), a larger "
                          "record.every or fewer record.layers",
        "recorded rows": "a larger record.every (keep every k-th tick) or fewer run.ticks",
        "recorded states": "",     # computed: the record.every that fits
        "pictures": "no pictures (--no-png --no-gif, or render.png/render.gif = false)",
        "gif frames": "a smaller render.size, or no GIF (render.gif = false, --no-gif)",
        "learner work": "fewer train.rules or fewer or narrower layers",
        "initial model": _LAYERS,
    }

    # Parts alive only for a moment, never two at once: the peak holds the largest.
    TRANSIENT = ("weight work", "metric work", "teacher forward", "state transfer")

    GRAPH_ADVICE = {
        "weights": _GRAPH_LAYERS,
        "weight work": _GRAPH_LAYERS,
        "state buffers": "a smaller stream.batch, network.input_shape or fewer channels "
                         "(network.layers)",
        "history rings": "rule.derivative and rule.pairing other than 'frame' (their rings "
                         "hold up to 2D ticks of state), a smaller stream.batch or model",
        "reference ring": "a smaller rule.supervision_delay (the ring holds 2D + d_y + 2 "
                          "gradients and a block's) or record.metrics = false",
        "metric work": "a smaller stream.batch or model, or record.metrics = false",
    }

    def __init__(self, plan, model, feedback="transpose", derivative="local", pairing="local",
                 supervision_delay=0, learning_rate=0.0, accumulate=1, target="teacher",
                 gif=None, distinct=None, pictures=False, budget_key="record.memory_budget",
                 device="cpu"):
        self.plan, self.budget_key = plan, budget_key
        chain = is_plain_chain(model)
        if not chain:
            self.ADVICE = dict(self.ADVICE, **self.GRAPH_ADVICE)
        B, s, C, d_y = int(plan.batch), int(plan.itemsize), plan.chunk, int(supervision_delay)
        shapes = model.param_shapes()
        P = sum(int(np.prod(a)) for a in shapes.values())
        sizes = [int(np.prod(v.shape)) for v in model.vertices]
        S, N, n = sum(sizes), max(sizes), len(sizes)
        n_in, n_out = sizes[0], sizes[-1]
        D = model.depth
        direct = states_in_place(plan, n - 1, device)
        # W, F (not for transpose or dfa), frsf/brsf's magnitudes, an accumulator;
        # dfa's B_v: size(v) × size(output) per vertex but the input and output
        copies = (1 + (feedback not in ("transpose", "dfa")) + (feedback in ("frsf", "brsf"))
                  + (accumulate > 1 and learning_rate > 0))
        # the teacher (float64, host): a chain of the student's shape, for a
        # graph one map of the flat input to the flat output
        teacher = (8 * (P if chain else n_in * n_out)) if target == "teacher" else 0
        dfa_bytes = s * (S - n_in - n_out) * n_out if feedback == "dfa" else 0
        items = {"weights": s * P * copies + 8 * P + teacher + dfa_bytes,
                 "weight work": s * P * (2 if learning_rate else 1),
                 "state buffers": s * B * S * (7 + (derivative == "itd-dy"))}
        items["history rings"] = (s * B * S * (2 * D + 1)
                                  * ((derivative == "frame") + (pairing == "frame")))
        items["targets ring"] = s * (d_y + 1) * B * n_out
        if plan.metrics:
            # a frame of the ring or block: W gradients or Gram factors
            PW = sum(metric_layout(model, B)[2:])
            K = metric_block(C, B, S, PW, s)
            items["reference ring"] = s * (2 * D + d_y + 2 + 2 * K) * PW   # ring + block
            items["metric work"] = s * (P + 3 * B * S + 4 * K * B * S)
        items["stream frames"] = (8 + s) * 2 * C * B * (n_in + n_out)
        if target == "teacher":
            F = C if distinct is None else min(C, int(distinct))
            items["teacher forward"] = 8 * F * B * 2 * (n_in + n_out)
        rows = plan.rows
        # a chain's trace has no newest-frame (_hi) tags
        hi = 0 if chain else 8 * len(HI_KEYS) * n
        items["recorded rows"] = rows * (_row_bytes(n - 1, plan.metrics) + hi) + 6 * s * C * n
        items["interpreter"] = INTERPRETER_BYTES
        items["pictures"] = PICTURE_BYTES if pictures else 0
        if plan.states:           # states are N wide per recorded vertex
            per_row = 2 * len(plan.layers) * B * N
            items["recorded states"] = plan.itemsize * per_row * rows
            if not direct:
                items["state transfer"] = (2 * s * per_row
                                           * min(len(range(0, C, plan.every)), rows))
        if gif is not None:       # streamed (render.gifstream): a few frames at a time
            w, h = gif[1]
            items["gif frames"] = GIF_BYTES_PER_PIXEL * GIF_WORK_FRAMES * int(w) * int(h)
        self.items = {k: int(v) for k, v in items.items() if v}
        self.total = self._peak(self.items)

    @classmethod
    def _peak(cls, items):
        """Lasting parts add up; transient ones are never alive together."""
        return (sum(v for k, v in items.items() if k not in cls.TRANSIENT)
                + max((v for k, v in items.items() if k in cls.TRANSIENT), default=0))

    def held(self, parts, copies):
        """This budget (returned) with ``parts`` alive ``copies`` times at once."""
        self.items = {k: v * copies if k in parts else v for k, v in self.items.items()}
        self.total = self._peak(self.items)
        return self

    # Parts the scene cannot shrink: in ``total``, not charged to the budget.
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
        """The predicted peak bytes (``total``), or BudgetError when the parts
        the scene controls exceed the budget, naming the biggest parts (as many
        as must shrink for the rest to fit) and the knob that shrinks each."""
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


# Bytes of device memory one block of pending rows (x and δ copies) may take.
BLOCK_BYTES = 16 * 2**20


def states_in_place(plan, depth, device):
    """Whether the recorder writes x and δ straight into the host state arrays
    (their rows its block buffer): on cpu, with every layer's states recorded."""
    return bool(device == "cpu" and plan.states and list(plan.layers) == list(range(depth + 1)))


def block_ticks(plan, layers, batch, width, itemsize):
    """Ticks per record block: as many as fit BLOCK_BYTES of pending x and δ
    copies, at least 1, at most a chunk."""
    per_tick = 2 * layers * batch * width * itemsize
    return max(1, min(plan.chunk, BLOCK_BYTES // max(per_tick, 1)))
