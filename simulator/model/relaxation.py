"""Activation Relaxation on any Model (paper 001, its DAG form; SPEC §3 on graphs).

Paper 001 (appendix, "arbitrary computation graphs") states the relaxation
for a DAG; this module runs it on ``simulator.model.Model`` through the layer
kinds' VJPs, in the signs derived in ``simulator.relaxation`` (see its
docstring): the state x_v of every vertex is the running estimate of ∂ℓ/∂x_v.
A forward sweep stores every vertex's pre-activation and value x̄_v, the output
vertex is clamped to ∂ℓ/∂x_out, the input does not relax, and every other
vertex moves at once, from the previous tick's state, towards what its
children send down:

    x_v ← (1 − η_x) x_v + η_x Σ_{c ∈ children(v)} VJP_{c→v}(d_c ⊙ x_c)

(one term per position of v in c's ``from``), with d_c = σ'_c(pre_c) of the
sweep (1 without derivatives) and each VJP evaluated at the sweep's inputs,
with W replaced by a feedback matrix B for the feedback variants. On a dense
chain this is exactly ``simulator.relaxation.relax``, tick for tick. The
fixed point is the reverse-mode sweep: x_v* = ∂ℓ/∂x_v (exact), backprop with
B in place of W (random/learned), or the same without σ' (no-derivative).
Weight gradients pair each vertex's σ'_v ⊙ x_v with its inputs (Eq. 1; σ' is
kept in every variant, as in the chain form), so at the fixed point of
``exact`` they equal backprop's.

Linear analysis. With e_v = x_v − x_v* the tick is e ← ((1 − η) I + η N) e
with (N e)_v = Σ_c VJP_{c→v}(d_c ⊙ e_c) and e_out = 0, so N is nilpotent: a
vertex whose longest path to the output has k edges sees N^j e_0 vanish for
j ≥ k, and e_n = Σ_{j<k} C(n, j) (1−η)^{n−j} η^j (N^j e_0)_v. Vertices read
only by the output decay exactly as (1−η)^n; at η = 1 vertex v is exact from
tick k on. ``predicted_errors`` evaluates this sum.

Variants, feedback and learning are those of ``simulator.relaxation``:
``exact``, ``random`` (fixed B), ``learned`` (B takes W's update, Eq. 6),
``no-derivative`` (Eq. 7), ``learned-no-derivative`` (Eq. 8). Feedback
matrices exist for the weighted vertices (dense, conv2d) that have a parent
other than the input (the others never send anything down).
"""
from dataclasses import dataclass
from math import comb

import numpy as np
from array_api_compat import array_namespace

from ..backend import Backend, rng, to_host
from ..errors import NumericalError, SimulatorError
from ..options import LOSSES, check_choice, loss_and_grad
from ..relaxation import (INITS, VARIANTS, RelaxationRecord, _Recorder, check_count,
                          check_eta_x, check_variant, set_relaxation_options)
from .graph import Model
from .reference import device_params, evaluate, vertex_params

__all__ = ["VARIANTS", "INITS", "ModelSweep", "Relaxed", "RelaxationRecord",
           "ModelActivationRelaxation", "draw_feedback", "model_sweep", "relax_sweep",
           "relax_model", "model_weight_gradients", "model_fixed_point", "predicted_errors",
           "distances_to_output", "feedback_keys", "send_down"]

USES_FEEDBACK = ("random", "learned", "learned-no-derivative")
NO_DERIVATIVE = ("no-derivative", "learned-no-derivative")
LEARNS_FEEDBACK = ("learned", "learned-no-derivative")


@dataclass
class ModelSweep:
    """What the forward sweep leaves for the relaxation, per vertex index:
    ``pres`` and ``outs`` (x̄_v; index 0 is the input), ``derivs`` σ'(pre_v)
    (None for the input and for linear kinds), ``top`` = ∂ℓ/∂x_out, ``loss``
    (summed over the batch), and the device ``params`` the sweep used."""
    model: Model
    params: dict
    pres: list
    outs: list
    derivs: list
    top: object
    loss: object


@dataclass
class Relaxed:
    """One relaxation: the sweep, the final state ``xs`` (per vertex index;
    xs[0] is the input, xs[-1] the clamped output gradient) and the
    RelaxationRecord (columns = vertices) or None."""
    sweep: ModelSweep
    xs: list
    record: object = None

    def state(self):
        """{vertex name: x_v} of the final state."""
        return {v.name: x for v, x in zip(self.sweep.model.vertices, self.xs)}


def _check_model(model):
    if not isinstance(model, Model):
        raise SimulatorError(f"expected a simulator.Model, got {type(model).__name__}")
    return model


def _sends(vertex):
    """True when the vertex has a parent that relaxes (anything but the input)."""
    return any(p != 0 for p in vertex.parents)


def feedback_keys(model):
    """The "<layer>.W" keys that carry a feedback matrix: weighted vertices
    (dense, conv2d) with a parent other than the input, topological order."""
    return [f"{v.name}.W" for v in _check_model(model).vertices[1:]
            if "W" in v.param_names and _sends(v)]


def draw_feedback(model, seed=0, scale=1.0):
    """Fixed random feedback {"<layer>.W": B} (host float64, W's layout) for
    ``feedback_keys(model)``: B ~ N(0, scale²/fan_in) drawn in topological
    order from ``rng(seed)`` — on ``Model.from_network(net)`` the ψ of
    ``simulator.relaxation.ActivationRelaxation(net, feedback_seed=seed)``."""
    g = rng(seed)
    out = {}
    for key in feedback_keys(model):
        v = model.vertex(key[:-2])
        out[key] = g.normal(0.0, scale / np.sqrt(v.layer.fan_in()), v.layer.param_shapes["W"])
    return out


def model_sweep(model, u, y, loss="mse", params=None):
    """The forward sweep on a graph (Algorithm 1's first phase): every
    vertex's pre-activation, value and σ' in topological order, and the
    output error ∂ℓ/∂x_out that the output vertex is clamped to. ``params``
    (keyed like ``model.parameters()``, host or device) override the model's."""
    _check_model(model)
    xp = array_namespace(u)
    p = device_params(xp, model, u.dtype, params)
    pres, outs = evaluate(model, u, p)
    derivs = [None] + [None if v.layer.linear else v.layer.derivative(xp, pres[v.index])
                       for v in model.vertices[1:]]
    value, grad = loss_and_grad(xp, check_choice("loss", loss, tuple(LOSSES)), outs[-1], y)
    return ModelSweep(model, p, pres, outs, derivs, grad, value)


def _feedback(xp, sweep, feedback):
    if feedback is None:
        return {}
    want = feedback_keys(sweep.model)
    missing = [k for k in want if k not in feedback]
    if missing:
        raise SimulatorError(f"feedback: missing matrices for {missing}")
    dtype = sweep.top.dtype
    return {k: xp.asarray(feedback[k], dtype=dtype) for k in want}


def send_down(sweep, xs, gains, feedback=None, xp=None):
    """(N x)_v for every vertex: Σ over children c of VJP_{c→v}(gain_c ⊙ x_c)
    at the sweep's inputs, W replaced by ``feedback[key]`` where given.
    ``gains[c]`` is an array, a scalar or None (= 1). Returns a list per vertex
    index (None where nothing arrives: the input, the output)."""
    xp = array_namespace(sweep.top) if xp is None else xp
    fb = feedback or {}
    acc = [None] * len(sweep.model)
    for c in sweep.model.vertices[1:]:
        if not _sends(c):
            continue
        g = gains[c.index]
        delta = xs[c.index] if g is None else g * xs[c.index]
        back = c.layer.vjp(xp, vertex_params(sweep.params, c), [sweep.outs[i] for i in c.parents],
                           sweep.pres[c.index], delta, weights=fb.get(f"{c.name}.W"))
        for p, cot in zip(c.parents, back):
            if p:
                acc[p] = cot if acc[p] is None else acc[p] + cot
    return acc


def _gains(sweep, scale, use_derivative):
    if not use_derivative:
        return [scale] * len(sweep.model)
    return [scale if d is None else scale * d for d in sweep.derivs]


def _initial_state(xp, sweep, init):
    hidden = sweep.outs[1:-1]
    if init == "zero":
        hidden = [xp.zeros_like(x) for x in hidden]
    return [sweep.outs[0]] + list(hidden) + [sweep.top]


def relax_sweep(sweep, feedback=None, eta_x=0.1, iterations=100, use_derivative=True,
                init="forward", record=False, targets=None, xp=None):
    """K relaxation ticks on a graph (Eqs. 4–5 of paper 001 through the VJPs;
    Eqs. 7–8 with ``use_derivative=False``): every vertex but the input and
    the clamped output becomes (1−η_x) x_v + η_x Σ_c VJP_{c→v}(d_c ⊙ x_c),
    all from the previous tick's state. ``feedback`` {"<layer>.W": B} or None
    (W itself). ``init``: hidden vertices start at their forward values (the
    paper) or at zero. Returns (xs per vertex index, RelaxationRecord or None);
    ``targets`` (per vertex index, index 0 unused) adds relative errors."""
    xp = array_namespace(sweep.top) if xp is None else xp
    eta = check_eta_x(eta_x)
    iterations = check_count("iterations", iterations)
    init = check_choice("relaxation init", init, INITS)
    fb = _feedback(xp, sweep, feedback)
    gains = _gains(sweep, eta, use_derivative)   # η folded into σ' once
    xs = _initial_state(xp, sweep, init)
    out = len(xs) - 1
    rec = _Recorder(xp, xs, targets) if record else None
    for _ in range(iterations):
        acc = send_down(sweep, xs, gains, fb, xp)
        new = [xs[0]] + [acc[v] + (1.0 - eta) * xs[v] for v in range(1, out)] + [xs[out]]
        if rec is not None:
            rec.add(new, xs)
        xs = new
    return xs, (rec.finish() if rec is not None else None)


def relax_model(model, u, y, loss="mse", eta_x=0.1, iterations=100, variant="exact",
                init="forward", feedback=None, params=None, record=False, targets=None):
    """Sweep and relax in one call: ``variant`` picks feedback and σ' as in
    ``simulator.relaxation``; the feedback variants use ``feedback``
    ({"<layer>.W": B}) or, when None, ``draw_feedback(model)``. Returns a
    ``Relaxed`` (sweep, final state per vertex, record)."""
    variant = check_variant(variant)
    sweep = model_sweep(model, u, y, loss, params)
    fb = None
    if variant in USES_FEEDBACK:
        fb = draw_feedback(model) if feedback is None else feedback
    xs, rec = relax_sweep(sweep, fb, eta_x, iterations, variant not in NO_DERIVATIVE, init,
                          record, targets)
    return Relaxed(sweep, xs, rec)


def model_weight_gradients(sweep, xs, xp=None):
    """Eq. 1 at the relaxed state on a graph: for every weighted vertex the
    layer's parameter gradient of δ_v = σ'_v(pre_v) ⊙ x_v with its inputs x̄
    (dense: δᵀx̄ and Σ δ), summed over the batch, keyed and laid out like
    ``model.parameters()``. At the fixed point of ``exact`` this is backprop."""
    xp = array_namespace(sweep.top) if xp is None else xp
    grads = {}
    for v in sweep.model.vertices[1:]:
        if not v.param_names:
            continue
        d = sweep.derivs[v.index]
        delta = xs[v.index] if d is None else d * xs[v.index]
        g = v.layer.param_grads(xp, [sweep.outs[i] for i in v.parents], delta)
        grads.update({f"{v.name}.{k}": g[k] for k in v.param_names})
    return grads


def model_fixed_point(sweep, feedback=None, use_derivative=True, xp=None):
    """The equilibrium, solved in one reverse-topological pass: x_out* =
    ∂ℓ/∂x_out, x_v* = Σ_c VJP_{c→v}(d_c ⊙ x_c*) (index 0 is the input's value,
    never relaxed). With W and σ' this is reverse-mode AD's ∂ℓ/∂x_v."""
    xp = array_namespace(sweep.top) if xp is None else xp
    fb = _feedback(xp, sweep, feedback)
    model = sweep.model
    out = [None] * len(model)
    out[0], out[-1] = sweep.outs[0], sweep.top
    derivs = sweep.derivs if use_derivative else [None] * len(model)
    acc = [None] * len(model)
    for c in reversed(model.vertices[1:]):
        if c.index != model.output:
            out[c.index] = acc[c.index]
        if not _sends(c):
            continue
        d = derivs[c.index]
        delta = out[c.index] if d is None else d * out[c.index]
        back = c.layer.vjp(xp, vertex_params(sweep.params, c), [sweep.outs[i] for i in c.parents],
                           sweep.pres[c.index], delta, weights=fb.get(f"{c.name}.W"))
        for p, cot in zip(c.parents, back):
            if p:
                acc[p] = cot if acc[p] is None else acc[p] + cot
    return out


def distances_to_output(model):
    """{name: longest path (edges) from the vertex to the output}: N^k vanishes
    on a vertex from k = this distance on (the output is 0)."""
    dist = [0] * len(model)
    for v in reversed(model.vertices):
        for p in v.parents:
            dist[p] = max(dist[p], dist[v.index] + 1)
    return {v.name: d for v, d in zip(model.vertices, dist)}


def predicted_errors(sweep, feedback, eta_x, iterations, fixed_point, use_derivative=True,
                     init="forward", xp=None):
    """The linear analysis evaluated exactly on a graph (module docstring):
    e_n = Σ_{j<k} C(n,j)(1−η)^{n−j} η^j N^j e_0 with e_0 = x_0 − x_*. Returns
    host relative errors ‖e_v,n‖_F / ‖x_v*‖_F, shape (iterations+1, vertices),
    input column NaN, output column 0."""
    xp = array_namespace(sweep.top) if xp is None else xp
    eta = check_eta_x(eta_x)
    model = sweep.model
    fb = _feedback(xp, sweep, feedback)
    gains = _gains(sweep, 1.0, use_derivative)
    x0 = _initial_state(xp, sweep, check_choice("relaxation init", init, INITS))
    V = len(model)
    powers = [[None] + [x0[v] - fixed_point[v] for v in range(1, V - 1)]
              + [xp.zeros_like(sweep.top)]]
    depth = max(distances_to_output(model).values())
    for _ in range(1, depth):
        nxt = send_down(sweep, powers[-1], gains, fb, xp)
        powers.append([None] + nxt[1:-1] + [xp.zeros_like(sweep.top)])
    out = np.full((iterations + 1, V), np.nan)
    out[:, -1] = 0.0
    n = np.arange(iterations + 1)
    coef = np.array([[comb(int(t), j) * (1.0 - eta) ** (int(t) - j) * eta ** j if j <= t else 0.0
                      for j in range(len(powers))] for t in n])
    scale = coef.max(axis=1)           # scale rows first: (1−η)^{2n} underflows early
    scale[scale == 0.0] = 1.0
    unit = coef / scale[:, None]
    for v in range(1, V - 1):
        chains = [pw[v] for pw in powers]
        gram = np.array([[float(xp.sum(a * b)) for b in chains] for a in chains])
        sq = np.einsum("ti,ij,tj->t", unit, gram, unit)
        norm = float(xp.sqrt(xp.sum(fixed_point[v] * fixed_point[v])))
        out[:, v] = scale * np.sqrt(np.maximum(sq, 0.0)) / norm
    return out


class ModelActivationRelaxation:
    """A Model trained by Activation Relaxation (``simulator.relaxation.
    ActivationRelaxation`` on a graph). Holds the parameters (and B for the
    feedback variants) on its Backend; ``step`` is one forward sweep, K
    relaxation ticks and p ← p − lr Δp / batch (B ← B − lr ΔW / batch for the
    learned variants, Eq. 6). B is ``draw_feedback(model, feedback_seed,
    feedback_scale)``."""

    def __init__(self, model, variant="exact", eta_x=0.1, iterations=100, loss="mse",
                 init="forward", feedback_seed=0, feedback_scale=1.0, device="cpu",
                 dtype="float64"):
        self.model = _check_model(model)
        set_relaxation_options(self, variant, eta_x, iterations, loss, init)
        self.backend = Backend(device, dtype)
        self.xp = self.backend.xp
        self.params = {k: self.backend.asarray(a) for k, a in model.parameters().items()}
        self.use_derivative = self.variant not in NO_DERIVATIVE
        self.feedback = None
        if self.variant in USES_FEEDBACK:
            self.feedback = {k: self.backend.asarray(b) for k, b in
                             draw_feedback(model, feedback_seed, feedback_scale).items()}
        self.steps = 0

    def sweep(self, u, y):
        """The forward sweep on device arrays u (B, *input_shape), y (B, *output_shape)."""
        return model_sweep(self.model, u, y, self.loss, self.params)

    def relax(self, sweep, record=False, targets=None, iterations=None):
        """The relaxation phase of this learner's variant (see ``relax_sweep``)."""
        its = self.iterations if iterations is None else iterations
        return relax_sweep(sweep, self.feedback, self.eta_x, its, self.use_derivative,
                           self.init, record, targets, self.xp)

    def gradients(self, u, y):
        """(gradients keyed like ``model.parameters()``, sweep) of one AR phase."""
        sweep = self.sweep(u, y)
        xs, _ = self.relax(sweep)
        return model_weight_gradients(sweep, xs, self.xp), sweep

    def step(self, u, y, lr):
        """One learning step; returns the batch loss (host float) before the
        update. Raises NumericalError when the loss is not finite."""
        grads, sweep = self.gradients(u, y)
        loss = float(sweep.loss)
        if not np.isfinite(loss):
            raise NumericalError(self.steps, self.model.depth, "loss")
        self.steps += 1
        scale = float(lr) / u.shape[0]
        self.params = {k: p - scale * grads[k] for k, p in self.params.items()}
        if self.variant in LEARNS_FEEDBACK:
            self.feedback = {k: b - scale * grads[k] for k, b in self.feedback.items()}
        return loss

    def predict(self, u):
        """The output vertex's value for inputs u (forward pass only)."""
        return evaluate(self.model, u, self.params)[1][-1]

    def to_model(self):
        """The current parameters as a host Model."""
        return self.model.with_parameters({k: to_host(a) for k, a in self.params.items()})
