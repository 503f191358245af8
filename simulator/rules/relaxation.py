"""Activation Relaxation on any Model (Millidge et al., paper 001; SPEC §3).

One learning step is a forward sweep that stores every vertex's
pre-activation and value x̄_v, the output vertex clamped to ∂ℓ/∂x_out, then K
relaxation ticks in which every vertex but the input and the output moves at
once, from the previous tick's state, towards what its children send down
(Eqs. 4–5, Euler step η_x; the paper's appendix states it for DAGs):

    x_v ← (1 − η_x) x_v + η_x Σ_{c ∈ children(v)} VJP_{c→v}(d_c ⊙ x_c)

(one term per position of v in c's ``from``), with d_c = σ'_c(pre_c) of the
sweep (1 without derivatives) and each VJP taken at the sweep's inputs, W
replaced by a feedback matrix B for the feedback variants. On a dense chain
(``Model.chain``) this is x^l ← x^l + η_x(−x^l + (d^{l+1} ⊙ x^{l+1}) F_l)
in the row-vector batch convention. Finally every weighted vertex pairs
σ'_v ⊙ x_v with its inputs (Eq. 1 with x_v in place of ∂ℓ/∂x_v; dense:
ΔW = (σ' ⊙ x)ᵀ x̄, Δb = Σ_batch σ' ⊙ x), and W ← W − lr ΔW / B.

Signs. The paper writes the relaxation both as dx/dt = −x + … (Eqs. 2–5) and
as dx/dt = x − … (Eqs. 7–8), its Algorithm 1 sets the top to T − x^L =
−∂ℓ/∂x^L and adds the update to W. Taken literally the mixtures either
diverge (iteration factor 1 + η > 1) or ascend the loss. The consistent
choice made here: the output clamped to +∂ℓ/∂x_out, the stable leaky form
above (its fixed point is the reverse-mode sweep x_v* = ∂ℓ/∂x_v for W and σ'),
and gradient descent on W. The convergence tests pin it.

Linear analysis (exact). With e_v = x_v − x_v* the tick is e ← ((1 − η) I +
η N) e with (N e)_v = Σ_c VJP_{c→v}(d_c ⊙ e_c) and e_out = 0, so N is
nilpotent: on a vertex whose longest path to the output has k edges N^j e_0
vanishes for j ≥ k. The two terms commute, so

    e_n = Σ_{j<k} C(n, j) (1−η)^{n−j} η^j (N^j e_0)_v,

a polynomial of degree k−1 in n times (1−η)^n: vertices read only by the
output decay exactly as (1−η)^n, the others as n^{k−1}(1−η)^n. It converges
iff 0 < η < 2; at η = 1 vertex v is exact from tick k on (the backward wave).
``predicted_errors`` evaluates the norms of this sum; ``relax_closed_form``
the state itself, x_K = x* + Σ_j C(K, j)(1−η)^{K−j} η^j N^j e_0: one
reverse sweep to x* and N applied k−1 times to the initial error (a few
backward passes) instead of K ticks — on a chain of depth L, (L−1)L/2
backward-sized matmuls plus the sweep, whatever K.

Variants (the paper's): ``exact`` W and σ' (Eq. 5); ``random`` a fixed random
B (feedback alignment); ``learned`` B trained by Eq. 6, which in these signs
is W's own update (B ← B − lr ΔW / batch, as in the authors' code), so B − W
never changes; ``no-derivative`` W and d = 1 (Eq. 7), the fixed point
backprop of the model with every σ linear; ``learned-no-derivative`` B by
Eq. 6 and d = 1 (Eq. 8). The weight update keeps σ' in every variant. B
exists for the weighted vertices (dense, conv2d) with a parent other than the
input (the others never send anything down), drawn N(0, scale²/fan_in) in
topological order.

This module is the physics only. Paper 001's experiments (Fig. 1, Figs. 2–3)
are in ``simulator.experiments.activation_relaxation``; their pictures are drawn by
``simulator.render.convergence``.
"""
from dataclasses import dataclass
from math import comb, exp, log

import numpy as np
from array_api_compat import array_namespace

from ..backend import Backend, rng, to_host
from ..errors import NumericalError, SimulatorError
from ..options import LOSSES, check_choice, loss_and_grad
from ..model.graph import Model
from ..model.reference import device_params, evaluate, vertex_params

__all__ = ["VARIANTS", "INITS", "SOLVERS", "ModelSweep", "Relaxed", "RelaxationRecord",
           "ActivationRelaxation", "draw_feedback", "model_sweep", "relax_sweep",
           "relax_closed_form", "relax_model", "model_weight_gradients", "model_fixed_point",
           "predicted_errors", "tick_weights", "distances_to_output",
           "feedback_keys", "send_down", "check_variant", "check_eta_x", "check_count"]

VARIANTS = ("exact", "random", "learned", "no-derivative", "learned-no-derivative")
INITS = ("forward", "zero")
# How a learner reaches the state after K ticks: by ticking, or by the exact
# binomial sum of the linear analysis (``relax_closed_form``).
SOLVERS = ("ticks", "closed-form")
USES_FEEDBACK = ("random", "learned", "learned-no-derivative")
NO_DERIVATIVE = ("no-derivative", "learned-no-derivative")
LEARNS_FEEDBACK = ("learned", "learned-no-derivative")


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
    """Per-tick vertex summaries of one relaxation, host arrays (ticks+1) × vertices.

    Row n is the state after n ticks (row 0 = the initial state). ``norms`` =
    ‖x_v,n‖_F over the batch (the relaxation wave), ``changes`` = ‖x_v,n −
    x_v,n−1‖_F (row 0 is 0), ``errors`` = ‖x_v,n − g_v‖_F / ‖g_v‖_F against
    given targets g (NaN for the input, which does not relax) or None.
    """

    norms: np.ndarray
    changes: np.ndarray
    errors: object = None


class _Recorder:
    """Accumulates per-tick norms as device scalars; one host transfer at the end."""

    def __init__(self, xp, xs, targets):
        self.xp, self.targets = xp, targets
        if targets is not None:
            self.target_norms = [None] + [self._norm(targets[v]) for v in range(1, len(xs))]
        self.norms = [self._norms(xs)]
        self.changes = [[xp.zeros((), dtype=x.dtype) for x in xs]]
        self.errors = [self._errors(xs)] if targets is not None else None

    def _norm(self, a):
        return self.xp.sqrt(self.xp.sum(a * a))

    def _norms(self, xs):
        return [self._norm(x) for x in xs]

    def _errors(self, xs):
        # vertices 1..; the input's NaN column is added on the host
        return [self._norm(xs[v] - self.targets[v]) / self.target_norms[v]
                for v in range(1, len(xs))]

    def add(self, new, old):
        self.norms.append(self._norms(new))
        self.changes.append([self._norm(a - b) for a, b in zip(new, old)])
        if self.errors is not None:
            self.errors.append(self._errors(new))

    def _host(self, rows):
        xp = self.xp
        return np.asarray(to_host(xp.stack([xp.stack(row) for row in rows])), dtype=np.float64)

    def finish(self):
        errors = None
        if self.errors is not None:
            e = self._host(self.errors)
            errors = np.concatenate([np.full((e.shape[0], 1), np.nan), e], axis=1)
        return RelaxationRecord(self._host(self.norms), self._host(self.changes), errors)


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
    order from ``rng(seed)``."""
    g = rng(seed)
    out = {}
    for key in feedback_keys(model):
        v = model.vertex(key[:-2])
        out[key] = g.normal(0.0, scale / np.sqrt(v.layer.fan_in()), v.layer.param_shapes["W"])
    return out


def model_sweep(model, u, y, loss="mse", params=None):
    """The forward sweep (Algorithm 1's first phase): every vertex's
    pre-activation, value and σ' in topological order, and the output error
    ∂ℓ/∂x_out that the output vertex is clamped to. ``params`` (keyed like
    ``model.parameters()``, host or device) override the model's."""
    _check_model(model)
    if tuple(getattr(u, "shape", (None,))[1:]) != model.input_shape:
        evaluate(model, u)            # raises the oracle's one clear error for a bad input
    xp = array_namespace(u)
    p = device_params(xp, model, u.dtype, params)
    pres, outs, derivs = [u], [u], [None]
    for v in model.vertices[1:]:
        # the layer's value (Layer.value) with σ and σ' from one activation call
        pre = v.layer._pre(xp, vertex_params(p, v), [outs[i] for i in v.parents])
        out, d = (pre, None) if v.layer.linear else v.layer.activate(xp, pre)
        pres.append(pre)
        outs.append(out)
        derivs.append(d)
    value, grad = loss_and_grad(xp, check_choice("loss", loss, tuple(LOSSES)), outs[-1], y)
    return ModelSweep(model, p, pres, outs, derivs, grad, value)


def _feedback(xp, sweep, feedback):
    if not feedback:
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
    ``gains[c]`` is an array, a scalar or None (= 1); ``xs[c]`` None is zero
    (sends nothing). Returns a list per vertex index (None where nothing
    arrives: the input, the output)."""
    xp = array_namespace(sweep.top) if xp is None else xp
    fb = feedback or {}
    acc = [None] * len(sweep.model)
    for c in sweep.model.vertices[1:]:
        x = xs[c.index]
        if x is None or not _sends(c):
            continue
        g = gains[c.index]
        delta = x if g is None else g * x
        _send(xp, sweep, c, delta, fb, acc)
    return acc


def _send(xp, sweep, c, delta, fb, acc):
    """Add vertex ``c``'s vector-Jacobian product of ``delta`` into its parents' ``acc``."""
    back = c.layer.vjp(xp, vertex_params(sweep.params, c), [sweep.outs[i] for i in c.parents],
                       sweep.pres[c.index], delta, weights=fb.get(f"{c.name}.W"))
    for p, cot in zip(c.parents, back):
        if p:
            acc[p] = cot if acc[p] is None else acc[p] + cot


def _gains(sweep, scale, use_derivative):
    """Per vertex: scale·σ' (or scale without derivatives); None stands for 1."""
    if not use_derivative:
        return [scale] * len(sweep.model)
    if scale is None:
        return list(sweep.derivs)
    return [scale if d is None else scale * d for d in sweep.derivs]


def _initial_state(xp, sweep, init):
    hidden = sweep.outs[1:-1]
    if init == "zero":
        hidden = [xp.zeros_like(x) for x in hidden]
    return [sweep.outs[0]] + list(hidden) + [sweep.top]


def relax_sweep(sweep, feedback=None, eta_x=0.1, iterations=100, use_derivative=True,
                init="forward", record=False, targets=None, xp=None):
    """K relaxation ticks (Eqs. 4–5 through the VJPs; Eqs. 7–8 with
    ``use_derivative=False``): every vertex but the input and the clamped
    output becomes (1−η_x) x_v + η_x Σ_c VJP_{c→v}(d_c ⊙ x_c), all from the
    previous tick's state. ``feedback`` {"<layer>.W": B} or None (W itself).
    ``init``: hidden vertices start at their forward values (the paper) or at
    zero. Returns (xs per vertex index, RelaxationRecord or None); ``targets``
    (per vertex index, index 0 unused) adds relative errors."""
    xp = array_namespace(sweep.top) if xp is None else xp
    eta = check_eta_x(eta_x)
    iterations = check_count("iterations", iterations)
    init = check_choice("relaxation init", init, INITS)
    fb = _feedback(xp, sweep, feedback)
    # η folded into σ' once, so a tick costs per edge one product, one VJP, one add.
    gains = _gains(sweep, eta, use_derivative)
    xs = _initial_state(xp, sweep, init)
    out = len(xs) - 1
    rec = _Recorder(xp, xs, targets) if record else None
    for _ in range(iterations):
        # The whole next state from the current one: no vertex sees its own tick.
        acc = send_down(sweep, xs, gains, fb, xp)
        new = [xs[0]] + [acc[v] + (1.0 - eta) * xs[v] for v in range(1, out)] + [xs[out]]
        if rec is not None:
            rec.add(new, xs)
        xs = new
    return xs, (rec.finish() if rec is not None else None)


def tick_weights(n, count, eta_x):
    """The weights C(n, j)(1−η)^{n−j} η^j, j = 0..count−1, with which N^j e_0
    reaches the state after n ticks (module docstring); 0 for j > n. Computed
    exactly as a binomial times two powers, through logarithms only where a
    factor leaves the float range (its value is then the correctly rounded
    exponential of the exact logarithm, or 0 on underflow)."""
    eta = check_eta_x(eta_x)
    out = []
    for j in range(count):
        if j > n:
            out.append(0.0)
            continue
        if eta == 1.0:           # (1−η)^{n−j} = 0 unless j = n
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
    """The state after K relaxation ticks without ticking: ``relax_sweep``'s
    final state (to rounding) from the exact linear analysis, x_K = x* +
    Σ_j C(K, j)(1−η)^{K−j} η^j N^j e_0 with e_0 = x_0 − x* and x* the
    ``model_fixed_point``. N is applied to the initial error only while a
    weight remains (k−1 times for the longest path k to the output; on a
    chain (L−1)L/2 backward-sized matmuls in all), whatever K. Returns xs per
    vertex index (the input, the hidden vertices, the clamped ∂ℓ/∂x_out; the
    initial state when K = 0)."""
    xp = array_namespace(sweep.top) if xp is None else xp
    eta = check_eta_x(eta_x)
    iterations = check_count("iterations", iterations)
    init = check_choice("relaxation init", init, INITS)
    xs = _initial_state(xp, sweep, init)
    if iterations == 0:
        return xs
    fb = _feedback(xp, sweep, feedback)
    gains = _gains(sweep, None, use_derivative)
    star = model_fixed_point(sweep, fb, use_derivative, xp)
    out = len(xs) - 1
    w = tick_weights(iterations, max(distances_to_output(sweep.model).values()), eta)
    last = max([j for j, c in enumerate(w) if c] + [0])
    # powers[j][v] = (N^j e_0)_v, None where it is zero (the output, and
    # vertices closer than j edges to it).
    powers = [[None] + [xs[v] - star[v] for v in range(1, out)] + [None]]
    for _ in range(last):
        powers.append(send_down(sweep, powers[-1], gains, fb, xp))
    new = [xs[0]]
    for v in range(1, out):
        acc = None                      # the highest power first (the chain order)
        for j in range(last, -1, -1):
            if powers[j][v] is not None:
                term = w[j] * powers[j][v]
                acc = term if acc is None else acc + term
        new.append(star[v] + acc)
    return new + [xs[out]]


def relax_model(model, u, y, loss="mse", eta_x=0.1, iterations=100, variant="exact",
                init="forward", feedback=None, params=None, record=False, targets=None,
                solver="ticks"):
    """Sweep and relax in one call: ``variant`` picks feedback and σ'; the
    feedback variants use ``feedback`` ({"<layer>.W": B}) or, when None,
    ``draw_feedback(model)``. ``solver`` ``ticks`` or ``closed-form`` (no
    record). Returns a ``Relaxed`` (sweep, final state per vertex, record)."""
    variant = check_variant(variant)
    solver = check_choice("relaxation solver", solver, SOLVERS)
    if solver == "closed-form" and record:
        raise SimulatorError("record needs solver 'ticks': the closed form has no ticks")
    sweep = model_sweep(model, u, y, loss, params)
    fb = None
    if variant in USES_FEEDBACK:
        fb = draw_feedback(model) if feedback is None else feedback
    use_derivative = variant not in NO_DERIVATIVE
    if solver == "closed-form":
        return Relaxed(sweep, relax_closed_form(sweep, fb, eta_x, iterations, use_derivative,
                                                init))
    xs, rec = relax_sweep(sweep, fb, eta_x, iterations, use_derivative, init, record, targets)
    return Relaxed(sweep, xs, rec)


def model_weight_gradients(sweep, xs, xp=None):
    """Eq. 1 at the relaxed state: for every weighted vertex the layer's
    parameter gradient of δ_v = σ'_v(pre_v) ⊙ x_v with its inputs x̄ (dense:
    δᵀx̄ and Σ δ), summed over the batch, keyed and laid out like
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
    ∂ℓ/∂x_out, x_v* = Σ_c VJP_{c→v}(d_c ⊙ x_c*) (Eq. 5 at dx/dt = 0; index 0
    is the input's value, never relaxed). With W and σ' this is reverse-mode
    AD's ∂ℓ/∂x_v; with B, backprop through B; without σ', the linearised model's."""
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
        _send(xp, sweep, c, delta, fb, acc)
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
    """The linear analysis evaluated exactly (module docstring): e_n =
    Σ_{j<k} C(n,j)(1−η)^{n−j} η^j N^j e_0 with e_0 = x_0 − x*. Returns host
    relative errors ‖e_v,n‖_F / ‖x_v*‖_F, shape (iterations+1, vertices),
    input column NaN, output column 0."""
    xp = array_namespace(sweep.top) if xp is None else xp
    eta = check_eta_x(eta_x)
    model = sweep.model
    fb = _feedback(xp, sweep, feedback)
    gains = _gains(sweep, None, use_derivative)
    x0 = _initial_state(xp, sweep, check_choice("relaxation init", init, INITS))
    V = len(model)
    powers = [[None] + [x0[v] - fixed_point[v] for v in range(1, V - 1)] + [None]]
    depth = max(distances_to_output(model).values())
    for _ in range(1, depth):
        powers.append(send_down(sweep, powers[-1], gains, fb, xp))
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
    """A Model trained by Activation Relaxation (Algorithm 1 with Eqs. 4–8).

    Holds the parameters (and B for the feedback variants, ``draw_feedback(
    model, feedback_seed, feedback_scale)``) on its Backend. ``step`` is one
    forward sweep, the relaxation, and p ← p − lr Δp / batch (B ← B − lr ΔW /
    batch for the learned variants, Eq. 6). ``solver`` says how the state
    after K ticks is reached: ``ticks`` (``relax_sweep``) or ``closed-form``
    (``relax_closed_form``: the same state to rounding, a few backward passes
    whatever K). A chain is ``Model.chain(sizes, ...)``."""

    def __init__(self, model, variant="exact", eta_x=0.1, iterations=100, loss="mse",
                 init="forward", feedback_seed=0, feedback_scale=1.0, device="cpu",
                 dtype="float64", solver="ticks"):
        self.model = _check_model(model)
        self.variant = check_variant(variant)
        self.eta_x = check_eta_x(eta_x)
        self.iterations = check_count("iterations", iterations)
        self.loss = check_choice("loss", loss, tuple(LOSSES))
        self.init = check_choice("relaxation init", init, INITS)
        self.solver = check_choice("relaxation solver", solver, SOLVERS)
        self.backend = Backend(device, dtype)
        self.xp = self.backend.xp
        self.params = {k: self.backend.asarray(a) for k, a in model.parameters().items()}
        self.use_derivative = self.variant not in NO_DERIVATIVE
        self.feedback = None
        if self.variant in USES_FEEDBACK:
            self.feedback = {k: self.backend.asarray(b) for k, b in
                             draw_feedback(model, feedback_seed, feedback_scale).items()}
        self.steps = 0   # learning steps taken (names the step of a divergence)

    def sweep(self, u, y):
        """The forward sweep on device arrays u (B, *input_shape), y (B, *output_shape)."""
        return model_sweep(self.model, u, y, self.loss, self.params)

    def relax(self, sweep, record=False, targets=None, iterations=None):
        """The relaxation phase of this learner's variant, ticked (see ``relax_sweep``)."""
        its = self.iterations if iterations is None else iterations
        return relax_sweep(sweep, self.feedback, self.eta_x, its, self.use_derivative,
                           self.init, record, targets, self.xp)

    def fixed_point(self, sweep):
        """The equilibrium of this learner's relaxation (``model_fixed_point``)."""
        return model_fixed_point(sweep, self.feedback, self.use_derivative, self.xp)

    def gradients(self, u, y):
        """(gradients keyed like ``model.parameters()``, sweep) of one AR
        phase, the relaxed state reached by this learner's ``solver``."""
        sweep = self.sweep(u, y)
        if self.solver == "closed-form":
            xs = relax_closed_form(sweep, self.feedback, self.eta_x, self.iterations,
                                   self.use_derivative, self.init, self.xp)
        else:
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
        for k, p in self.params.items():      # in place: the learner owns its arrays
            p -= scale * grads[k]
        if self.variant in LEARNS_FEEDBACK:
            for k, b in self.feedback.items():
                b -= scale * grads[k]
        return loss

    def predict(self, u):
        """The output vertex's value for inputs u (forward pass only)."""
        return evaluate(self.model, u, self.params)[1][-1]

    def to_model(self):
        """The current parameters as a host Model."""
        return self.model.with_parameters({k: to_host(a) for k, a in self.params.items()})
