"""Activation Relaxation on any Model (Millidge et al. 2020). After a forward
sweep, the output clamped to +∂ℓ/∂x_out, every other non-input vertex ticks
x_v ← (1 − η_x) x_v + η_x Σ_{c ∈ children(v)} VJP_{c→v}(d_c ⊙ x_c) (d_c = σ'_c or 1; W
replaced by B for the feedback variants), then W descends Eq. 1 of σ'_v ⊙ x_v. (The
paper's signs, taken literally, diverge; this leaky form has x_v* = ∂ℓ/∂x_v as fixed
point.) With e = x − x*, a tick is e ← ((1 − η) I + η N) e, N nilpotent, so e_n =
Σ_{j<k} C(n, j)(1−η)^{n−j} η^j N^j e_0 exactly (k the longest path to the output)."""
from dataclasses import dataclass
from functools import reduce
from math import comb, exp, log
from operator import add

import numpy as np
from array_api_compat import array_namespace

from ..backend import Backend, rng, to_host
from ..errors import NumericalError, SimulatorError
from ..options import LOSSES, check_choice, loss_and_grad
from ..model.graph import Model
from ..model.reference import device_params, evaluate, vertex_params
from ..model.reference import sweep as forward_sweep

# variant: (B in W's place: None, fixed random, or learned by Eq. 6 as W is; σ' used)
_VARIANTS = {"exact": (None, True),                       # Eq. 5
             "random": ("fixed", True), "learned": ("learned", True),
             "no-derivative": (None, False),              # d = 1 (Eq. 7)
             "learned-no-derivative": ("learned", False)}  # Eq. 8
VARIANTS = tuple(_VARIANTS)
INITS = ("forward", "zero")
SOLVERS = ("ticks", "closed-form")


def check_variant(variant):
    """The variant name, or one clear SimulatorError listing the known ones."""
    return check_choice("relaxation variant", variant, VARIANTS)


def check_eta_x(eta_x):
    """η_x as a float; the linear analysis says the relaxation diverges outside (0, 2)."""
    eta = float(eta_x)
    if not 0.0 < eta < 2.0:
        raise SimulatorError(f"eta_x must lie in (0, 2), got {eta_x}: the error of a vertex "
                             "read only by the output is multiplied by (1 - eta_x) every tick")
    return eta


def check_count(name, value, minimum=0):
    """``value`` as an int, or one clear SimulatorError if it is not an integer >= minimum."""
    if int(value) != value or int(value) < minimum:
        raise SimulatorError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


@dataclass
class RelaxationRecord:
    """Host (ticks+1) × vertices, row n after n ticks: ``norms`` ‖x_v,n‖_F, ``changes``
    ‖x_v,n − x_v,n−1‖_F (row 0: 0), ``errors`` ‖x_v,n − g_v‖_F / ‖g_v‖_F or None."""

    norms: np.ndarray
    changes: np.ndarray
    errors: object = None


def _norm(xp, a):
    return xp.sqrt(xp.sum(a * a))


def _tick_row(xp, new, old, targets, target_norms):
    """A tick's device scalars: ‖x_v‖, ‖x_v − old_v‖ (old None: exactly 0, even for inf)
    and, given targets, ‖x_v − g_v‖ / ‖g_v‖ of vertices 1.. (else None)."""
    changes = ([xp.zeros((), dtype=x.dtype) for x in new] if old is None
               else [_norm(xp, a - b) for a, b in zip(new, old)])
    errors = None if targets is None else [_norm(xp, new[v] - targets[v]) / target_norms[v]
                                           for v in range(1, len(new))]
    return [_norm(xp, x) for x in new], changes, errors


def _record(xp, rows):
    """The RelaxationRecord of ``_tick_row`` rows, in one host transfer."""
    host = [np.asarray(to_host(xp.stack([xp.stack(r[k]) for r in rows])), dtype=np.float64)
            for k in range(2 + (rows[0][2] is not None))]
    errors = np.pad(host[2], ((0, 0), (1, 0)), constant_values=np.nan) if len(host) > 2 else None
    return RelaxationRecord(host[0], host[1], errors)     # errors: the input's column NaN


@dataclass
class ModelSweep:
    """The forward sweep per vertex index: ``pres``, ``outs`` (x̄_v), ``derivs`` σ'(pre_v)
    (None: input, linear), ``top`` ∂ℓ/∂x_out, ``loss`` (batch sum), device ``params``."""
    model: Model
    params: dict
    pres: list
    outs: list
    derivs: list
    top: object
    loss: object


@dataclass
class Relaxed:
    """One relaxation: the sweep, the final ``xs`` per vertex index, a RelaxationRecord."""
    sweep: ModelSweep
    xs: list
    record: object = None

    def state(self):
        """{vertex name: x_v} of the final state."""
        return {v.name: x for v, x in zip(self.sweep.model.vertices, self.xs)}


def check_model(model):
    """``model``, or SimulatorError when it is not a Model."""
    if not isinstance(model, Model):
        raise SimulatorError(f"expected a simulator.Model, got {type(model).__name__}")
    return model


def sends(vertex):
    """True when the vertex has a parent that relaxes (anything but the input)."""
    return any(p != 0 for p in vertex.parents)


def feedback_keys(model):
    """The "<layer>.W" keys that carry a feedback matrix (weighted vertices with
    a parent other than the input), in topological order."""
    return [f"{v.name}.W" for v in check_model(model).vertices[1:]
            if "W" in v.param_names and sends(v)]


def draw_feedback(model, seed=0, scale=1.0):
    """{"<layer>.W": B} for ``feedback_keys(model)``, host float64 in W's layout,
    B ~ N(0, scale²/fan_in) drawn in that order from ``rng(seed)``."""
    g = rng(seed)
    out = {}
    for key in feedback_keys(model):
        v = model.vertex(key[:-2])
        out[key] = g.normal(0.0, scale / np.sqrt(v.layer.fan_in()), v.layer.param_shapes["W"])
    return out


def model_sweep(model, u, y, loss="mse", params=None):
    """The forward sweep (Algorithm 1's first phase) as a ModelSweep;
    ``params`` (keyed like ``model.parameters()``) override the model's."""
    check_model(model)
    if tuple(getattr(u, "shape", (None,))[1:]) != model.input_shape:
        evaluate(model, u)            # raises the oracle's one clear error for a bad input
    xp = array_namespace(u)
    p = device_params(xp, model, u.dtype, params)
    pres, outs, derivs = forward_sweep(xp, model, p, u)
    value, grad = loss_and_grad(xp, check_choice("loss", loss, tuple(LOSSES)), outs[-1], y)
    return ModelSweep(model, p, pres, outs, derivs, grad, value)


def _feedback(xp, sweep, feedback):
    if not feedback:
        return {}
    want = feedback_keys(sweep.model)
    missing = [k for k in want if k not in feedback]
    if missing:
        raise SimulatorError(f"feedback: missing matrices for {missing}")
    return {k: xp.asarray(feedback[k], dtype=sweep.top.dtype) for k in want}


def send_down(sweep, xs, gains, fb, xp):
    """(N x)_v per vertex index: Σ_c VJP_{c→v}(gain_c ⊙ x_c), W replaced by ``fb``'s
    (``_feedback``); ``gains[c]`` array, scalar or None (1); None sends / gets nothing."""
    acc = [None] * len(sweep.model)
    for c in sweep.model.vertices[1:]:
        x = xs[c.index]
        if x is not None and sends(c):
            send_vjp(xp, sweep, c, _times(gains[c.index], x), fb, acc)
    return acc


def _times(gain, x):
    return x if gain is None else gain * x


def send_vjp(xp, sweep, c, delta, fb, acc):
    """Add vertex ``c``'s vector-Jacobian product of ``delta`` into its parents' ``acc``
    (``sweep``: anything with the ``params``, ``outs`` and ``pres`` its VJP reads)."""
    back = c.layer.vjp(xp, vertex_params(sweep.params, c), [sweep.outs[i] for i in c.parents],
                       sweep.pres[c.index], delta, weights=fb.get(f"{c.name}.W"))
    for p, cot in zip(c.parents, back):
        if p:
            acc[p] = cot if acc[p] is None else acc[p] + cot


def _error_powers(sweep, xs, star, feedback, use_derivative, xp, count):
    """[N^j e_0 for j = 0..count] per vertex index, e_0 = xs − star; None where zero."""
    fb, gains = _feedback(xp, sweep, feedback), _gains(sweep, None, use_derivative)
    powers = [[None] + [xs[v] - star[v] for v in range(1, len(xs) - 1)] + [None]]
    for _ in range(count):
        powers.append(send_down(sweep, powers[-1], gains, fb, xp))
    return powers


def _gains(sweep, scale, use_derivative):
    """Per vertex: scale·σ' (or scale without derivatives); None stands for 1."""
    if not use_derivative:
        return [scale] * len(sweep.model)
    if scale is None:
        return list(sweep.derivs)
    return [scale if d is None else scale * d for d in sweep.derivs]


def _start(sweep, eta_x, iterations, init, xp):
    """(xp, η, K, initial state) of a relaxation, its arguments checked."""
    xp = array_namespace(sweep.top) if xp is None else xp
    eta, iterations = check_eta_x(eta_x), check_count("iterations", iterations)
    hidden = sweep.outs[1:-1]
    if check_choice("relaxation init", init, INITS) == "zero":
        hidden = [xp.zeros_like(x) for x in hidden]
    return xp, eta, iterations, [sweep.outs[0]] + list(hidden) + [sweep.top]


def relax_sweep(sweep, feedback=None, eta_x=0.1, iterations=100, use_derivative=True,
                init="forward", record=False, targets=None, xp=None):
    """K relaxation ticks (Eqs. 4–5; 7–8 without ``use_derivative``), ``feedback``
    {"<layer>.W": B} or None (W), hidden vertices from their forward values or zero
    (``init``): (xs per vertex index, RelaxationRecord or None; ``targets``: its errors)."""
    xp, eta, iterations, xs = _start(sweep, eta_x, iterations, init, xp)
    fb = _feedback(xp, sweep, feedback)
    # η folded into σ' once, so a tick costs per edge one product, one VJP, one add.
    gains = _gains(sweep, eta, use_derivative)
    out = len(xs) - 1
    if record:
        norms = None if targets is None else [None] + [_norm(xp, targets[v])
                                                       for v in range(1, len(xs))]
        rows = [_tick_row(xp, xs, None, targets, norms)]
    for _ in range(iterations):
        acc = send_down(sweep, xs, gains, fb, xp)
        new = [xs[0]] + [acc[v] + (1.0 - eta) * xs[v] for v in range(1, out)] + [xs[out]]
        if record:
            rows.append(_tick_row(xp, new, xs, targets, norms))
        xs = new
    return xs, (_record(xp, rows) if record else None)


def tick_weights(n, count, eta_x):
    """C(n, j)(1−η)^{n−j} η^j for j = 0..count−1 (0 for j > n): the weight of
    N^j e_0 after n ticks; through logarithms only where a factor leaves the
    float range."""
    eta = check_eta_x(eta_x)
    out = []
    for j in range(count):
        if j > n or eta == 1.0:          # η = 1: (1−η)^{n−j} = 0 unless j = n
            out.append(1.0 if j == n else 0.0)
            continue
        c = comb(n, j)
        p = (1.0 - eta) ** (n - j) * eta ** j
        if c < 1e300 and abs(p) >= 2.2250738585072014e-308:
            out.append(c * p)
            continue
        sign = -1.0 if eta > 1.0 and (n - j) % 2 else 1.0
        try:
            out.append(sign * exp(log(c) + (n - j) * log(abs(1.0 - eta)) + j * log(eta)))
        except OverflowError:
            out.append(sign * np.inf)
    return out


def relax_closed_form(sweep, feedback=None, eta_x=0.1, iterations=100, use_derivative=True,
                      init="forward", xp=None):
    """``relax_sweep``'s final state (to rounding) without ticking: x_K = x* +
    Σ_j C(K, j)(1−η)^{K−j} η^j N^j e_0, x* the ``model_fixed_point``; N is
    applied at most k−1 times (k the longest path to the output) whatever K."""
    xp, eta, iterations, xs = _start(sweep, eta_x, iterations, init, xp)
    if iterations == 0:
        return xs
    star = model_fixed_point(sweep, feedback, use_derivative, xp)
    out = len(xs) - 1
    w = tick_weights(iterations, max(output_distances(sweep.model)[1]), eta)
    last = max([j for j, c in enumerate(w) if c] + [0])
    powers = _error_powers(sweep, xs, star, feedback, use_derivative, xp, last)
    new = [xs[0]]
    for v in range(1, out):             # the highest power first (the chain order)
        terms = [w[j] * powers[j][v] for j in range(last, -1, -1) if powers[j][v] is not None]
        new.append(star[v] + reduce(add, terms))
    return new + [xs[out]]


def relax_model(model, u, y, loss="mse", eta_x=0.1, iterations=100, variant="exact",
                init="forward", feedback=None, params=None, record=False, targets=None,
                solver="ticks"):
    """Sweep and relax as a ``Relaxed``: ``variant`` picks feedback (``feedback``
    or ``draw_feedback(model)``) and σ'; ``solver`` ticks or closed-form."""
    variant = check_variant(variant)
    solver = check_choice("relaxation solver", solver, SOLVERS)
    if solver == "closed-form" and record:
        raise SimulatorError("record needs solver 'ticks': the closed form has no ticks")
    sweep = model_sweep(model, u, y, loss, params)
    kind, use_derivative = _VARIANTS[variant]
    fb = (draw_feedback(model) if feedback is None else feedback) if kind else None
    return Relaxed(sweep, *_solve(solver, sweep, fb, eta_x, iterations, use_derivative, init,
                                  record, targets))


def _solve(solver, sweep, feedback, eta_x, iterations, use_derivative, init, record=False,
           targets=None, xp=None):
    """(xs, record) of ``relax_sweep`` or (the record None) ``relax_closed_form``."""
    if solver == "closed-form":
        return relax_closed_form(sweep, feedback, eta_x, iterations, use_derivative, init, xp), None
    return relax_sweep(sweep, feedback, eta_x, iterations, use_derivative, init, record, targets,
                       xp)


def param_gradients(xp, model, outs, deltas, vertices=None):
    """Eq. 1 per weighted vertex (of ``vertices``, by default all): the parameter gradient
    of ``deltas[v]`` with its inputs x̄ (``outs``), batch-summed, keyed like the model's."""
    grads = {}
    for v in model.vertices[1:] if vertices is None else vertices:
        if v.param_names:
            g = v.layer.param_grads(xp, [outs[i] for i in v.parents], deltas[v.index])
            grads.update({f"{v.name}.{k}": g[k] for k in v.param_names})
    return grads


def model_weight_gradients(sweep, xs, xp=None):
    """``param_gradients`` of σ'_v ⊙ x_v at the relaxed state (backprop's at the
    fixed point of ``exact``)."""
    xp = array_namespace(sweep.top) if xp is None else xp
    return param_gradients(xp, sweep.model, sweep.outs, list(map(_times, sweep.derivs, xs)))


def model_fixed_point(sweep, feedback=None, use_derivative=True, xp=None):
    """The equilibrium in one reverse-topological pass: x_out* = ∂ℓ/∂x_out,
    x_v* = Σ_c VJP_{c→v}(d_c ⊙ x_c*) (Eq. 5 at dx/dt = 0; index 0 the input)."""
    xp = array_namespace(sweep.top) if xp is None else xp
    fb = _feedback(xp, sweep, feedback)
    model = sweep.model
    out = [None] * len(model)
    out[0], out[-1] = sweep.outs[0], sweep.top
    gains, acc = _gains(sweep, None, use_derivative), [None] * len(model)
    for c in reversed(model.vertices[1:]):
        if c.index != model.output:
            out[c.index] = acc[c.index]
        if sends(c):
            send_vjp(xp, sweep, c, _times(gains[c.index], out[c.index]), fb, acc)
    return out


def output_distances(model):
    """(shortest, longest) path in edges from every vertex index to the output;
    Z-IL uses the shortest (the paper's d_i)."""
    n = len(model)
    dmin, dmax = [None] * n, [None] * n
    dmin[-1] = dmax[-1] = 0
    for v in reversed(model.vertices[1:]):
        for p in v.parents:
            lo, hi = dmin[v.index] + 1, dmax[v.index] + 1
            dmin[p] = lo if dmin[p] is None else min(dmin[p], lo)
            dmax[p] = hi if dmax[p] is None else max(dmax[p], hi)
    return dmin, dmax


def predicted_errors(sweep, feedback, eta_x, iterations, fixed_point, use_derivative=True,
                     init="forward", xp=None):
    """The linear analysis's ‖e_v,n‖_F / ‖x_v*‖_F (module docstring), host
    (iterations+1, vertices), input column NaN, output column 0."""
    xp, eta, iterations, x0 = _start(sweep, eta_x, iterations, init, xp)
    V = len(sweep.model)
    depth = max(output_distances(sweep.model)[1])      # N^depth = 0
    powers = _error_powers(sweep, x0, fixed_point, feedback, use_derivative, xp, depth - 1)
    out = np.full((iterations + 1, V), np.nan)
    out[:, -1] = 0.0
    n = np.arange(iterations + 1)
    coef = np.array([[comb(int(t), j) * (1.0 - eta) ** (int(t) - j) * eta ** j if j <= t else 0.0
                      for j in range(len(powers))] for t in n])
    for v in range(1, V - 1):
        js = [j for j, pw in enumerate(powers) if pw[v] is not None]
        chains = [powers[j][v] for j in js]
        gram = np.array([[float(xp.sum(a * b)) for b in chains] for a in chains])
        c = coef[:, js]
        scale = c.max(axis=1)          # scale rows first: (1−η)^{2n} underflows early
        scale[scale == 0.0] = 1.0
        unit = c / scale[:, None]
        sq = np.einsum("ti,ij,tj->t", unit, gram, unit)
        norm = float(xp.sqrt(xp.sum(fixed_point[v] * fixed_point[v])))
        out[:, v] = scale * np.sqrt(np.maximum(sq, 0.0)) / norm
    return out


class ActivationRelaxation:
    """A Model trained by Activation Relaxation (Algorithm 1): ``step`` sweeps, relaxes and
    sets p ← p − lr Δp / batch on its Backend (B too for the learned variants, Eq. 6)."""

    def __init__(self, model, variant="exact", eta_x=0.1, iterations=100, loss="mse",
                 init="forward", feedback_seed=0, feedback_scale=1.0, device="cpu",
                 dtype="float64", solver="ticks"):
        self.model = check_model(model)
        self.variant = check_variant(variant)
        self.eta_x = check_eta_x(eta_x)
        self.iterations = check_count("iterations", iterations)
        self.loss = check_choice("loss", loss, tuple(LOSSES))
        self.init = check_choice("relaxation init", init, INITS)
        self.solver = check_choice("relaxation solver", solver, SOLVERS)
        self.backend = Backend(device, dtype)
        self.xp = self.backend.xp
        self.params = {k: self.backend.asarray(a) for k, a in model.parameters().items()}
        self._feedback_kind, self.use_derivative = _VARIANTS[self.variant]
        self.feedback = None
        if self._feedback_kind:
            self.feedback = {k: self.backend.asarray(b) for k, b in
                             draw_feedback(model, feedback_seed, feedback_scale).items()}
        self.steps = 0   # learning steps taken (names the step of a divergence)

    def sweep(self, u, y):
        """The forward sweep on device arrays u (B, *input_shape), y (B, *output_shape)."""
        return model_sweep(self.model, u, y, self.loss, self.params)

    def relax(self, sweep, record=False, targets=None, iterations=None):
        """This learner's relaxation, ticked (``relax_sweep``)."""
        return relax_sweep(sweep, self.feedback, self.eta_x,
                           self.iterations if iterations is None else iterations,
                           self.use_derivative, self.init, record, targets, self.xp)

    def gradients(self, u, y):
        """(gradients keyed like ``model.parameters()``, sweep) of one AR phase."""
        sweep = self.sweep(u, y)
        xs, _ = _solve(self.solver, sweep, self.feedback, self.eta_x, self.iterations,
                       self.use_derivative, self.init, xp=self.xp)
        return model_weight_gradients(sweep, xs, self.xp), sweep

    def step(self, u, y, lr):
        """One learning step; returns the batch loss (host float) before the
        update, or raises NumericalError when it is not finite."""
        grads, sweep = self.gradients(u, y)
        loss = float(sweep.loss)
        if not np.isfinite(loss):
            raise NumericalError(self.steps, self.model.depth, "loss")
        self.steps += 1
        scale = float(lr) / u.shape[0]
        for k, p in self.params.items():      # in place: the learner owns its arrays
            p -= scale * grads[k]
        if self._feedback_kind == "learned":
            for k, b in self.feedback.items():
                b -= scale * grads[k]
        return loss

    def predict(self, u):
        """The output vertex's value for inputs u (forward pass only)."""
        return evaluate(self.model, u, self.params)[1][-1]

    def to_model(self):
        """The current parameters as a host Model."""
        return self.model.with_parameters({k: to_host(a) for k, a in self.params.items()})
