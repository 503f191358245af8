"""Every rule option of the tick rule in one place: losses, feedback, derivative,
pairing, reference frame, as named choices the engine resolves once."""
import math

import numpy as np

from .arguments import check_number, fail
from .errors import SimulatorError


def _mse(xp, x, y):
    d = x - y
    return 0.5 * xp.sum(d * d), d


def _xent(xp, x, y):
    # softmax cross-entropy on the output read as logits; the gradient is
    # written for targets whose rows need not sum to one.
    z = x - xp.max(x, axis=-1, keepdims=True)
    logsum = xp.log(xp.sum(xp.exp(z), axis=-1, keepdims=True))
    logp = z - logsum
    grad = xp.exp(logp) * xp.sum(y, axis=-1, keepdims=True) - y
    return -xp.sum(y * logp), grad


def _linear(xp, x, y):
    # ℓ = −y·x: its output gradient −y does not depend on the output, which is
    # what makes the synchronization layer exact (fact D).
    return -xp.sum(y * x), -y + 0.0 * x


LOSSES = {"mse": _mse, "xent": _xent, "linear": _linear}

FEEDBACK = ("transpose", "random", "sign", "frsf", "brsf", "learned", "dfa")
SIGN_FAMILY = ("sign", "frsf", "brsf")         # F = sign(W) ∘ magnitude (docs/feedback.md)
SCALED = ("random", "learned", "dfa") + SIGN_FAMILY     # the kinds feedback_scale scales
DERIVATIVE = ("local", "frame", "none", "itd-y", "itd-dy")
PAIRING = ("local", "frame")
REFERENCE = ("input", "supervision")
# what a supervision delay takes beside a count, and ``levelled`` beside a bool
DELAYS = ("auto", "causal")
AUTO = ("auto",)


def loss_and_grad(xp, name, x, y):
    """(ℓ summed over the batch, ∂ℓ/∂x) for loss ``name``."""
    return LOSSES[name](xp, x, y)


def loss_gradient(name):
    """∂ℓ/∂x of loss ``name`` alone, as a function (xp, x, y) resolved once: the
    tick loop compares no names and needs no loss value, so it computes none."""
    if name == "mse":
        return lambda xp, x, y: x - y
    if name == "linear":
        return lambda xp, x, y: -y
    loss = LOSSES[name]
    return lambda xp, x, y: loss(xp, x, y)[1]


def fans(shape):
    """(fan_in, fan_out) of a weight of ``shape`` as torch's
    ``_calculate_fan_in_and_fan_out``: dense (out, in), conv (C_out, C_in, kh, kw)."""
    field = math.prod(shape[2:])
    return shape[1] * field, shape[0] * field


def draw_magnitude(rng, shape, scale, out):
    """scale·|M| into the float64 C-contiguous ``out``, M ~ U(−a, a) with the Xavier
    bound a = √(6/(fan_in+fan_out)) of ``shape``: the numbers of rng.uniform(−a, a)."""
    a = np.sqrt(6.0 / sum(fans(shape)))
    rng.random(out=out)
    out *= a - (-a)
    out += -a
    np.abs(out, out=out)
    if scale != 1.0:
        out *= scale
    return out


def feedback_draws(kind, seed, scale, shapes):
    """(Generator, [per weight shape, in vertex order]) of feedback ``kind`` from
    np.random.default_rng(seed), which ``brsf`` keeps drawing from: B (``random``,
    ``learned``: N(0, (scale/√fan_in)²)), the magnitude multiplying sign(W) (``sign``:
    scale·√(2/(fan_in+fan_out)); ``frsf``, ``brsf``: draw_magnitude's scale·|M|), or
    None (``transpose``). ``dfa``: shapes (size(v), size(output)) per hidden vertex,
    B_v = scale·U(−a, a), a = √(6/(size(v) + size(output))) (biotorch's weight_dfa)."""
    rng, out = np.random.default_rng(seed), []
    for shape in shapes:
        if kind == "dfa":
            a = np.sqrt(6.0 / sum(shape))
            out.append(rng.uniform(-a, a, shape) * scale)
        elif kind in ("random", "learned"):
            out.append(rng.normal(0.0, scale / np.sqrt(fans(shape)[0]), shape))
        elif kind == "sign":
            out.append(float(scale * np.sqrt(2.0 / sum(fans(shape)))))
        elif kind in SIGN_FAMILY:
            out.append(draw_magnitude(rng, shape, scale, np.empty(shape)))
        else:
            out.append(None)
    return rng, out


def check_choice(kind, value, choices):
    """Raise one clear error when ``value`` is not a known ``kind``."""
    if not isinstance(value, str) or value not in choices:
        raise SimulatorError(f"unknown {kind} {value!r}; expected one of {', '.join(choices)}")
    return value


def check_count(name, value, minimum=0):
    """``value`` as an int >= ``minimum`` (bools refused), or SimulatorError."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise SimulatorError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def resolve_delay(value, learning, depth):
    """d_y (docs/defaults.md) as a count: an integer as given; "causal" the output's level
    ``depth`` (the target of the frame whose forward wave reaches the output now);
    "auto" or None causal when ``learning``, else 0 (the paper's figures)."""
    if value is None or isinstance(value, str) and value == "auto":
        value = "causal" if learning else 0
    if isinstance(value, str) and value == "causal":
        return int(depth)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise SimulatorError(f"supervision_delay must be an integer >= 0, 'causal' or 'auto', "
                             f"got {value!r}")
    return int(value)


def resolve_levelled(call, value, learning, model):
    """Whether a run ticks ``model.level()``: a bool as given; "auto" or None when
    ``learning`` on a graph whose paths into a vertex differ in length (levelling,
    "Graphs": an unlevelled vertex mixes frames, so its update is no frame's gradient)."""
    if value is None or isinstance(value, str) and value == "auto":
        return bool(learning) and not model.is_levelled()
    if not isinstance(value, (bool, np.bool_)):
        fail(call, "levelled", "True, False or 'auto'", value)
    return bool(value)


def set_rule_options(engine, loss, feedback, derivative, pairing, supervision_delay, batch,
                     accumulate, learning_rate, weight_decay, itd_epsilon, depth):
    """Check the rule options every tick engine shares (docs/explanation/model.md) and
    set them on ``engine`` (d_y resolved for ``depth``); a bad value is one SimulatorError."""
    engine.loss = check_choice("loss", loss, tuple(LOSSES))
    engine.feedback = check_choice("feedback", feedback, FEEDBACK)
    engine.derivative = check_choice("derivative", derivative, DERIVATIVE)
    engine.pairing = check_choice("pairing", pairing, PAIRING)
    engine.batch = check_count("batch", batch, minimum=1)
    engine.accumulate = check_count("accumulate", accumulate, minimum=1)
    call = type(engine).__name__
    engine.learning_rate = check_number(call, "learning_rate", learning_rate, 0.0)
    engine.weight_decay = check_number(call, "weight_decay", weight_decay, 0.0)
    engine.itd_epsilon = check_number(call, "itd_epsilon", itd_epsilon, 0.0)
    engine.supervision_delay = resolve_delay(supervision_delay, bool(engine.learning_rate), depth)


def present_target(ring, t, y, delay):
    """Supervision delay d_y (docs/explanation/model.md): store the target ``y`` of
    tick ``t`` in ``ring`` (d_y + 1 slots) and return that of tick t − d_y (None before)."""
    ring[t % (delay + 1), ...] = y
    if t < delay:
        return None
    return ring[(t - delay) % (delay + 1), ...]
