"""Activation Relaxation (Millidge et al., paper 001; SPEC §3).

One learning step is a forward sweep that stores x̄^l, the output node set to
∂ℓ/∂x^L, then K relaxation ticks in which every hidden layer l = 1..L−1 moves
at once, from the state of the previous tick (Eq. 4–5, Euler step η_x):

    x^l ← x^l + η_x (−x^l + (d^{l+1} ⊙ x^{l+1}) F_l)          (row-vector batch)

with d^{l+1} = σ'(a^{l+1}) of the stored sweep (or 1 without derivatives) and
F_l = W_l (the column convention's Wᵀ) or a feedback matrix ψ_l in W_l's layout.
Finally ΔW_l = (σ'(a^{l+1}) ⊙ x^{l+1})ᵀ x̄^l and Δb_l = Σ_batch σ'(a^{l+1}) ⊙ x^{l+1}
(Eq. 1 with x^{l+1} in place of ∂ℓ/∂x^{l+1}); W ← W − lr ΔW / B.

Signs. The paper writes the relaxation both as dx/dt = −x + … (Eq. 2–5) and
as dx/dt = x − … (Eqs. 7–8, the Euler step x ← x − η dx/dt), its Algorithm 1
sets the top to T − x^L = −∂ℓ/∂x^L and adds the update to W. Taken literally
the mixtures either diverge (x ← x + η(x − …) has the iteration factor
1 + η > 1) or ascend the loss. The consistent choice derived here: top
clamped to +∂ℓ/∂x^L, the stable leaky form above (its fixed point is
x^l = (d ⊙ x^{l+1}) F_l, which for F = W and d = σ' is exactly the chain rule
∂ℓ/∂x^l), and gradient descent on W. The convergence tests pin it.

Linear analysis (exact, not an approximation). With e^l_n = x^l_n − x^l_* and
J_l v = (d^{l+1} ⊙ v) F_l, the clamped top gives e^L = 0 and the tick is
e_{n+1} = ((1−η) I + η N) e_n with N nilpotent (N e)^l = J_l e^{l+1}. The two
terms commute, so for the layer k below the top (l = L−k)

    e^{L−k}_n = Σ_{j=0}^{k−1} C(n, j) (1−η)^{n−j} η^j J_{L−k}…J_{L−k+j−1} e^{L−k+j}_0,

a polynomial of degree k−1 in n times (1−η)^n: layer L−1 decays as (1−η)^n
exactly, lower layers as n^{k−1}(1−η)^n asymptotically. It converges iff
0 < η < 2, and at η = 1 layer L−k is exact from tick k on (the backward
wave of the tick engine). ``predicted_errors`` evaluates this sum.

Variants (the paper's): ``exact`` F = W (Eq. 5); ``random`` fixed random ψ
(feedback alignment); ``learned`` ψ trained by Eq. 6, which in these signs is
the same update as W's (ψ ← ψ − lr ΔW / B, as in the authors' code), so
ψ − W never changes; ``no-derivative`` F = W and d = 1 (Eq. 7), fixed point
x^{L−k} = ∂ℓ/∂x^L W_{L−1} … W_{L−k}; ``learned-no-derivative`` ψ by Eq. 6 and
d = 1 (Eq. 8). The weight update keeps σ' in every variant (authors' code).

This module is the physics only. The paper's experiments (Fig. 1 convergence,
Figs. 2–3 training against backprop, the data they use) are in
``simulator.relaxation_experiments``; their pictures are drawn from the saved
arrays by ``simulator.render.convergence``.
"""
from dataclasses import dataclass
from math import comb, exp, log

import numpy as np
from array_api_compat import array_namespace

from . import reference
from .backend import Backend, rng, to_host
from .errors import NumericalError, SimulatorError
from .network import Network, activate
from .options import LOSSES, check_choice, loss_and_grad

VARIANTS = ("exact", "random", "learned", "no-derivative", "learned-no-derivative")
INITS = ("forward", "zero")
# How a learner reaches the state after K ticks: by ticking, or by the exact
# binomial sum of the linear analysis (``relax_closed_form``).
SOLVERS = ("ticks", "closed-form")
# Which feedback matrix each variant reads, and whether it multiplies by σ'.
_FEEDBACK = {"exact": "weights", "random": "psi", "learned": "psi",
             "no-derivative": "weights", "learned-no-derivative": "psi"}
_DERIVATIVE = {"exact": True, "random": True, "learned": True,
               "no-derivative": False, "learned-no-derivative": False}
_LEARNS_PSI = {"learned", "learned-no-derivative"}


def check_variant(variant):
    """The variant name, or one clear SimulatorError listing the known ones."""
    return check_choice("relaxation variant", variant, VARIANTS)


def check_eta_x(eta_x):
    """η_x as a float; the linear analysis says the relaxation diverges outside (0, 2)."""
    eta = float(eta_x)
    if not 0.0 < eta < 2.0:
        raise SimulatorError(f"eta_x must lie in (0, 2), got {eta_x}: the error of layer "
                             "L-1 is multiplied by (1 - eta_x) every tick")
    return eta


def check_count(name, value, minimum=0):
    """``value`` as an int, or one clear SimulatorError if it is not an integer >= minimum."""
    if int(value) != value or int(value) < minimum:
        raise SimulatorError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


# ------------------------------------------------------------------ sweep
@dataclass
class Sweep:
    """What the forward sweep leaves behind for the relaxation (Algorithm 1).

    ``xs[l]`` = x̄^l (l = 0..L), ``derivs[l]`` = σ'(a^l) (index 0 is None),
    ``top`` = ∂ℓ/∂x^L, ``loss`` = ℓ summed over the batch (0-d array).
    """

    xs: list
    derivs: list
    top: object
    loss: object

    @property
    def depth(self):
        return len(self.xs) - 1


def forward_sweep(weights, biases, activations, u, y, loss="mse", xp=None):
    """The feedforward sweep of Algorithm 1: x̄^{l+1} = σ(W_l x̄^l + b_l), stored
    with σ'(a^{l+1}) for the relaxation, and the output error ∂ℓ/∂x^L that the
    top node is clamped to (Eq. 1's first factor)."""
    xp = array_namespace(u) if xp is None else xp
    xs, derivs = [u], [None]
    for w, b, act in zip(weights, biases, activations):
        x, d = activate(xp, act, xp.matmul(xs[-1], xp.matrix_transpose(w)) + b)
        xs.append(x)
        derivs.append(d)
    value, grad = loss_and_grad(xp, loss, xs[-1], y)
    return Sweep(xs, derivs, grad, value)


# ------------------------------------------------------------ relaxation
@dataclass
class RelaxationRecord:
    """Per-tick layer summaries of one relaxation, host arrays (ticks+1) × (L+1).

    Row n is the state after n ticks (row 0 = the initial state). ``norms`` =
    ‖x^l_n‖_F over the batch (the relaxation wave), ``changes`` = ‖x^l_n −
    x^l_{n−1}‖_F (row 0 is 0), ``errors`` = ‖x^l_n − g^l‖_F / ‖g^l‖_F against
    given targets g (NaN for the input layer, which does not relax) or None.
    """

    norms: np.ndarray
    changes: np.ndarray
    errors: object = None


def _top_down(xp, x_above, deriv, feedback):
    # The only matmul of a tick: layer l+1's activity sent down through F_l.
    v = x_above if deriv is None else deriv * x_above
    return xp.matmul(v, feedback)


def _initial_state(xp, sweep, init):
    L = sweep.depth
    hidden = [xp.zeros_like(x) for x in sweep.xs[1:L]] if init == "zero" else list(sweep.xs[1:L])
    return [sweep.xs[0]] + hidden + [sweep.top]


def relax(sweep, feedback, eta_x=0.1, iterations=100, use_derivative=True, init="forward",
          record=False, targets=None, xp=None):
    """K relaxation ticks of Eq. 4–5 (Eqs. 7–8 with ``use_derivative=False``),
    every hidden layer updated in parallel from the previous tick's state:
    x^l ← (1−η_x) x^l + η_x (d^{l+1} ⊙ x^{l+1}) F_l, with x^L clamped to
    ∂ℓ/∂x^L and x^0 left at the input. ``feedback[l]`` is F_l in W_l's layout
    (index 0 unused). ``init`` starts the hidden layers at the forward
    activations (the paper) or at zero. Returns (x^0..x^L, RelaxationRecord or
    None); ``targets`` (per-layer arrays, index 0 unused) adds relative errors.
    """
    xp = array_namespace(sweep.top) if xp is None else xp
    eta = check_eta_x(eta_x)
    iterations = check_count("iterations", iterations)
    init = check_choice("relaxation init", init, INITS)
    L = sweep.depth
    # η_x folded into the stored σ' once, so a tick costs per layer one
    # elementwise product, one matmul and one fused-in-place leak.
    gains = [None] + [eta * d for d in sweep.derivs[1:]] if use_derivative else None
    xs = _initial_state(xp, sweep, init)
    rec = _Recorder(xp, xs, targets) if record else None
    for _ in range(iterations):
        # Build the whole next state from the current one before replacing it:
        # no layer may see a value from its own tick.
        new = [xs[0]]
        for l in range(1, L):
            v = gains[l + 1] * xs[l + 1] if gains is not None else eta * xs[l + 1]
            x = xp.matmul(v, feedback[l])   # a fresh array, safe to update in place
            x += (1.0 - eta) * xs[l]
            new.append(x)
        new.append(xs[L])
        if rec is not None:
            rec.add(new, xs)
        xs = new
    return xs, (rec.finish() if rec is not None else None)


class _Recorder:
    """Accumulates per-tick norms as device scalars; one host transfer at the end."""

    def __init__(self, xp, xs, targets):
        self.xp, self.targets = xp, targets
        if targets is not None:
            self.target_norms = [None] + [self._norm(targets[l]) for l in range(1, len(xs))]
        self.norms = [self._norms(xs)]
        self.changes = [[xp.zeros((), dtype=x.dtype) for x in xs]]
        self.errors = [self._errors(xs)] if targets is not None else None

    def _norm(self, a):
        return self.xp.sqrt(self.xp.sum(a * a))

    def _norms(self, xs):
        return [self._norm(x) for x in xs]

    def _errors(self, xs):
        # layers 1..L; the input layer's NaN column is added on the host
        return [self._norm(xs[l] - self.targets[l]) / self.target_norms[l]
                for l in range(1, len(xs))]

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


def tick_weights(n, count, eta_x):
    """The weights C(n, j)(1−η)^{n−j} η^j, j = 0..count−1, with which the
    error j layers up reaches a layer after n ticks (module docstring); 0 for
    j > n. Computed exactly as a binomial times two powers, through logarithms
    only where a factor leaves the float range (its value is then the
    correctly rounded exponential of the exact logarithm, or 0 on underflow)."""
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


def relax_closed_form(sweep, feedback, eta_x=0.1, iterations=100, use_derivative=True,
                      init="forward", xp=None):
    """The state after K relaxation ticks without ticking: ``relax``'s final
    state (to rounding) from the exact linear analysis, x^l_K = x^l_* +
    Σ_{j} C(K, j)(1−η)^{K−j} η^j J_l…J_{l+j−1} e^{l+j}_0 with e_0 = x_0 − x_*
    and x_* the ``fixed_point``. Costs (L−1)L/2 matmuls the size of a backward
    one instead of K(L−1), whatever K. Returns x^0..x^L (x^0 the input, x^L
    the clamped ∂ℓ/∂x^L, the hidden layers at the initial state when K = 0)."""
    xp = array_namespace(sweep.top) if xp is None else xp
    eta = check_eta_x(eta_x)
    iterations = check_count("iterations", iterations)
    init = check_choice("relaxation init", init, INITS)
    L = sweep.depth
    xs = _initial_state(xp, sweep, init)
    if iterations == 0:
        return xs
    derivs = sweep.derivs if use_derivative else [None] * (L + 1)
    star = fixed_point(sweep, feedback, use_derivative, xp)
    w = tick_weights(iterations, L - 1, eta)
    # acc[l] = Σ_j w_j J_l…J_{l+j−1} e^{l+j}_0: each layer's initial error is
    # carried down one layer at a time, for as long as a weight remains.
    acc = [None] * (L + 1)
    for m in range(L - 1, 0, -1):
        e = xs[m] - star[m]
        for l in range(m, 0, -1):
            j = m - l
            if l < m:
                if not any(w[j:]):
                    break
                e = _top_down(xp, e, derivs[l + 1], feedback[l])
            term = w[j] * e
            acc[l] = term if acc[l] is None else acc[l] + term
    return [xs[0]] + [star[l] + acc[l] for l in range(1, L)] + [xs[L]]


def weight_gradients(sweep, xs, xp=None):
    """Eq. 1 at the relaxed state: ΔW_l = (σ'(a^{l+1}) ⊙ x^{l+1})ᵀ x̄^l and
    Δb_l = Σ_batch σ'(a^{l+1}) ⊙ x^{l+1}, l = 0..L−1, summed over the batch.
    At the fixed point of ``exact`` these are backprop's ∂ℓ/∂W_l and ∂ℓ/∂b_l."""
    xp = array_namespace(sweep.top) if xp is None else xp
    gw, gb = [], []
    for l in range(sweep.depth):
        v = sweep.derivs[l + 1] * xs[l + 1]
        gw.append(xp.matmul(xp.matrix_transpose(v), sweep.xs[l]))
        gb.append(xp.sum(v, axis=0))
    return gw, gb


# ------------------------------------------------------- closed forms
def predicted_errors(sweep, feedback, eta_x, iterations, fixed_point, use_derivative=True,
                     init="forward", xp=None):
    """The linear analysis of the relaxation evaluated exactly (module docstring):
    e^{L−k}_n = Σ_{j<k} C(n,j)(1−η)^{n−j} η^j J_{L−k}…J_{L−k+j−1} e^{L−k+j}_0, with
    J_l v = (d^{l+1} ⊙ v) F_l and e_0 = x_0 − x_*. Returns host relative errors
    ‖e^l_n‖_F/‖x^l_*‖_F, shape (iterations+1, L+1), input column NaN."""
    xp = array_namespace(sweep.top) if xp is None else xp
    eta = check_eta_x(eta_x)
    L = sweep.depth
    derivs = sweep.derivs if use_derivative else [None] * (L + 1)
    x0 = _initial_state(xp, sweep, check_choice("relaxation init", init, INITS))
    out = np.full((iterations + 1, L + 1), np.nan)
    out[:, L] = 0.0
    n = np.arange(iterations + 1)
    for l in range(1, L):
        # chains[j] = J_l…J_{l+j−1} e^{l+j}_0: the initial error j layers up, carried down.
        chains = []
        for j in range(L - l):
            v = x0[l + j] - fixed_point[l + j]
            for m in range(l + j - 1, l - 1, -1):
                v = _top_down(xp, v, derivs[m + 1], feedback[m])
            chains.append(v)
        gram = np.array([[float(xp.sum(a * b)) for b in chains] for a in chains])
        coef = np.array([[comb(int(t), j) * (1.0 - eta) ** (int(t) - j) * eta ** j
                          if j <= t else 0.0 for j in range(len(chains))] for t in n])
        # Scale each row before squaring: (1−η)^{2n} underflows long before (1−η)^n.
        scale = coef.max(axis=1)
        scale[scale == 0.0] = 1.0
        unit = coef / scale[:, None]
        sq = np.einsum("ti,ij,tj->t", unit, gram, unit)
        norm = float(xp.sqrt(xp.sum(fixed_point[l] * fixed_point[l])))
        out[:, l] = scale * np.sqrt(np.maximum(sq, 0.0)) / norm
    return out


def leading_decay(n, k, eta_x):
    """The asymptotic envelope of layer L−k's error, C(n, k−1)(1−η)^{n−k+1} η^{k−1}
    (the last, highest-degree term of the closed form), for n ≥ k−1."""
    n = np.asarray(n)
    return np.array([comb(int(t), k - 1) for t in n.reshape(-1)], dtype=float).reshape(n.shape) \
        * (1.0 - eta_x) ** (n - k + 1) * eta_x ** (k - 1)


def true_activation_gradients(network, u, y, loss="mse", feedback=None):
    """∂ℓ/∂x^l for l = 0..L by instantaneous backprop (``simulator.reference``):
    ∂ℓ/∂x^L from the loss, ∂ℓ/∂x^l = δ^{l+1} W_l below (W_l replaced by
    ``feedback[l]`` when given: the fixed point of the random/learned variants)."""
    xp = array_namespace(u)
    pairs, _ = reference.factors(network, u, y, loss, feedback=feedback)
    back = [xp.asarray(w, dtype=u.dtype) for w in network.weights]
    if feedback is not None:  # feedback[0] may be None: layer 0 never relaxes
        back = [b if f is None else f for b, f in zip(back, feedback)]
    xs, _ = reference.forward(network, u)
    top = loss_and_grad(xp, loss, xs[-1], y)[1]
    deltas = [d for _, d in pairs]        # δ^1..δ^L
    grads = [xp.matmul(deltas[l], back[l]) for l in range(network.depth)]
    return grads + [top]


def fixed_point(sweep, feedback, use_derivative=True, xp=None):
    """The equilibrium of the relaxation, solved top-down in one pass:
    x^L_* = ∂ℓ/∂x^L, x^l_* = (d^{l+1} ⊙ x^{l+1}_*) F_l (Eq. 5 at dx/dt = 0;
    Eqs. 7–8 with d = 1). With F = W and d = σ' this is backprop's ∂ℓ/∂x^l."""
    xp = array_namespace(sweep.top) if xp is None else xp
    L = sweep.depth
    out = [None] * (L + 1)
    out[L] = sweep.top
    for l in range(L - 1, 0, -1):
        out[l] = _top_down(xp, out[l + 1], sweep.derivs[l + 1] if use_derivative else None,
                           feedback[l])
    return out


# -------------------------------------------------------------- learner
def set_relaxation_options(learner, variant, eta_x, iterations, loss, init):
    """Check the options every Activation Relaxation learner shares (variant,
    η_x, iterations K, loss, init) and set them as attributes of ``learner``;
    a bad value is one SimulatorError."""
    learner.variant = check_variant(variant)
    learner.eta_x = check_eta_x(eta_x)
    learner.iterations = check_count("iterations", iterations)
    learner.loss = check_choice("loss", loss, tuple(LOSSES))
    learner.init = check_choice("relaxation init", init, INITS)


class ActivationRelaxation:
    """A network trained by Activation Relaxation (Algorithm 1 with Eqs. 4–8).

    Holds W, b (and ψ for the feedback variants) on its Backend. ``step``
    performs one forward sweep, K relaxation ticks and the weight update
    W ← W − lr ΔW / B (and ψ ← ψ − lr ΔW / B for the learned variants, Eq. 6).
    ψ is drawn on the host like the weights, N(0, feedback_scale²/n_l).
    ``solver`` says how ``step`` reaches the state after K ticks: ``ticks``
    (``relax``, tick by tick) or ``closed-form`` (``relax_closed_form``: the
    same state to rounding, at the cost of a few backward passes whatever K).
    """

    def __init__(self, network, variant="exact", eta_x=0.1, iterations=100, loss="mse",
                 init="forward", feedback_seed=0, feedback_scale=1.0, device="cpu",
                 dtype="float64", solver="ticks"):
        if not isinstance(network, Network):
            raise SimulatorError(f"expected a simulator.Network, got {type(network).__name__}")
        set_relaxation_options(self, variant, eta_x, iterations, loss, init)
        self.solver = check_choice("relaxation solver", solver, SOLVERS)
        self.backend = Backend(device, dtype)
        self.xp = self.backend.xp
        self.activations = list(network.activations)
        self.weights = [self.backend.asarray(w) for w in network.weights]
        self.biases = [self.backend.asarray(b) for b in network.biases]
        self.use_derivative = _DERIVATIVE[self.variant]
        self.psi = None
        self.steps = 0   # learning steps taken (names the step of a divergence)
        if _FEEDBACK[self.variant] == "psi":
            g = rng(feedback_seed)
            self.psi = [None] + [self.backend.asarray(
                g.normal(0.0, feedback_scale / np.sqrt(w.shape[1]), w.shape))
                for w in network.weights[1:]]

    @property
    def feedback(self):
        """F_l per layer in W_l's layout (index 0 unused): W or ψ by variant."""
        return self.weights if self.psi is None else self.psi

    def sweep(self, u, y):
        """Forward sweep on the device arrays u (B, n_0), y (B, n_L)."""
        return forward_sweep(self.weights, self.biases, self.activations, u, y, self.loss, self.xp)

    def relax(self, sweep, record=False, targets=None, iterations=None):
        """The relaxation phase of this learner's variant (see ``relax``)."""
        its = self.iterations if iterations is None else iterations
        return relax(sweep, self.feedback, self.eta_x, its, self.use_derivative, self.init,
                     record, targets, self.xp)

    def gradients(self, u, y):
        """(ΔW list, Δb list, sweep) of one AR phase, summed over the batch,
        the relaxed state reached by this learner's ``solver``."""
        sweep = self.sweep(u, y)
        if self.solver == "closed-form":
            xs = relax_closed_form(sweep, self.feedback, self.eta_x, self.iterations,
                                   self.use_derivative, self.init, self.xp)
        else:
            xs, _ = self.relax(sweep)
        gw, gb = weight_gradients(sweep, xs, self.xp)
        return gw, gb, sweep

    def step(self, u, y, lr):
        """One learning step of Algorithm 1; returns the batch loss (host float)
        before the update. Raises NumericalError when the loss is not finite."""
        gw, gb, sweep = self.gradients(u, y)
        loss = float(sweep.loss)
        if not np.isfinite(loss):
            raise NumericalError(self.steps, self.depth, "loss")
        self.steps += 1
        scale = float(lr) / u.shape[0]
        self.weights = [w - scale * g for w, g in zip(self.weights, gw)]
        self.biases = [b - scale * g for b, g in zip(self.biases, gb)]
        if self.variant in _LEARNS_PSI:
            # Eq. 6: ψ_l gets W_l's own update (a local Hebbian product).
            self.psi = [None] + [p - scale * g for p, g in zip(self.psi[1:], gw[1:])]
        return loss

    @property
    def depth(self):
        return len(self.weights)

    def predict(self, u):
        """Network output x^L for inputs u (forward pass only)."""
        x = u
        for w, b, act in zip(self.weights, self.biases, self.activations):
            x = activate(self.xp, act, self.xp.matmul(x, self.xp.matrix_transpose(w)) + b)[0]
        return x

    def to_network(self):
        """The current forward weights as a host Network."""
        return Network([to_host(w) for w in self.weights], [to_host(b) for b in self.biases],
                       self.activations)
