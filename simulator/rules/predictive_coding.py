"""Predictive coding on any Model: IL and Z-IL (Salvatori et al. 2022). Each
non-input vertex holds x_v, μ_v = f_v(x of its parents) and ε_v = μ_v − x_v (the output's
∂ℓ/∂μ_out); inference (Eq. 7) moves every hidden vertex by −γ ∂F/∂x_v = −γ(−ε_v +
Σ_c VJP_{c→v}(σ'_c ⊙ ε_c)), F = Σ_hidden ½‖ε_v‖² + ℓ(μ_out, y). IL learns after T ticks;
Z-IL (γ = 1) a vertex k from the output at tick k + 1: backprop when levelled (Thm. 3)."""
from dataclasses import dataclass

import numpy as np
from array_api_compat import array_namespace

from ..backend import to_host
from ..errors import SimulatorError
from ..options import LOSSES, check_choice, loss_and_grad
from ..model.graph import Model
from ..model.reference import device_params, evaluate, vertex_params
from .relaxation import check_model, output_distances, param_gradients, send_vjp, sends


@dataclass
class ErrorWave:
    """One update's error norms ``by_vertex`` (states × vertices), ``by_level`` (states ×
    levels, root-sum-square) and each vertex's level, name and kind."""
    by_vertex: np.ndarray
    by_level: np.ndarray
    levels: list
    names: list
    kinds: list
    method: str
    levelled: bool


@dataclass
class PCStep:
    """One learning step: host float64 ``params`` after it and ``updates`` Δθ, ``ticks``,
    ``norms`` ‖ε_v‖ (states × vertices, input 0, overflow +inf; None unless recorded),
    ``distances`` (shortest to the output) and the ``model`` it ran on (maybe levelled)."""
    params: dict
    updates: dict
    ticks: int
    norms: np.ndarray | None
    distances: list
    model: Model

    def by_level(self):
        """‖ε‖ per state and distance to the output (root-sum-square)."""
        if self.norms is None:
            raise SimulatorError("this step was not recorded (pass record=True)")
        out = np.zeros((self.norms.shape[0], max(self.distances) + 1))
        for v, d in enumerate(self.distances):
            if v:  # the input is clamped: no error
                out[:, d] += self.norms[:, v] ** 2
        return np.sqrt(out)


class _State:
    """Value nodes, predictions and errors of one model for one batch."""

    def __init__(self, model, u, y, loss, params, fixed=False):
        self.model, self.y = check_model(model), y
        self.loss = check_choice("loss", loss, tuple(LOSSES))
        self.xp = xp = array_namespace(u)
        self.params = device_params(xp, model, u.dtype, params)
        self.pres, self.mu = evaluate(model, u, self.params)
        self.x = list(self.mu)  # x = μ: the forward pass, errors zero but the output's
        self.outs = list(self.mu) if fixed else self.x     # what the VJPs read
        self.eps = [None] * len(model)
        self.deltas = [None] * len(model)
        self.errors()

    def refresh(self):
        """μ_v and pre_v from the current x of the parents and parameters."""
        for v in self.model.vertices[1:]:
            self.pres[v.index], self.mu[v.index] = v.layer.value(
                self.xp, vertex_params(self.params, v), [self.x[i] for i in v.parents])

    def errors(self):
        """ε_v = μ_v − x_v (hidden), ε_out = ∂ℓ/∂μ_out, and δ_v = σ'_v ⊙ ε_v."""
        xp, out = self.xp, len(self.model) - 1
        for v in self.model.vertices[1:]:
            if v.index == out:
                e = loss_and_grad(xp, self.loss, self.mu[out], self.y)[1]
            else:
                e = self.mu[v.index] - self.x[v.index]
            self.eps[v.index] = e
            self.deltas[v.index] = e if v.layer.linear else \
                v.layer.derivative(xp, self.pres[v.index]) * e

    def relax(self, gamma):
        """Eq. 7 on every hidden vertex: x_v ← x_v − γ(Σ_c VJP_{c→v}(δ_c) − ε_v)."""
        acc = [None] * len(self.model)
        for c in self.model.vertices[1:]:
            if sends(c):
                send_vjp(self.xp, self, c, self.deltas[c.index], {}, acc)
        for v in self.model.vertices[1:-1]:
            i = v.index
            grad = -self.eps[i] if acc[i] is None else acc[i] - self.eps[i]
            self.x[i] = self.x[i] - gamma * grad

    def settle(self, rows, refresh=True):
        """After a move: μ anew (when ``refresh``), ε, and ‖ε‖ into ``rows`` unless None."""
        if refresh:
            self.refresh()
        self.errors()
        if rows is not None:
            rows.append(self.norms())

    def norms(self):
        """Host ‖ε_v‖ per vertex index (input 0; non-finite recorded as +inf)."""
        xp = self.xp
        row = np.array([0.0] + [float(xp.sqrt(xp.sum(e * e))) for e in self.eps[1:]])
        row[~np.isfinite(row)] = np.inf
        return row


def _result(original, state, updates, ticks, rows, dist, given=None):
    """The PCStep: the starting parameters (``given``, else the model's) plus updates."""
    params = original.parameters() if given is None else {
        k: np.array(to_host(a), dtype=np.float64) for k, a in given.items()}
    host = {k: np.asarray(to_host(updates[k]), dtype=np.float64) if k in updates
            else np.zeros_like(p) for k, p in params.items()}
    params = {k: p + host[k] if k in updates else p for k, p in params.items()}
    return PCStep(params, host, ticks, None if rows is None else np.array(rows), dist, state.model)


def _levelled(model, levelled):
    return model.level() if levelled and not model.is_levelled() else model


def zil_model(model, u, y, lr, levelled=True, record=False, loss="mse", params=None):
    """One Z-IL update (Algorithm 1 of Salvatori et al. 2022) on ``model`` (its
    ``level()`` when ``levelled``) for u (B, *input_shape) and y, as a PCStep;
    ``params`` override the model's."""
    run = _levelled(model, levelled)
    state = _State(run, u, y, loss, params)
    dist, _ = output_distances(run)
    learners = [v for v in run.vertices[1:] if v.param_names]
    ticks = max((dist[v.index] + 1 for v in learners), default=0)
    rows = [state.norms()] if record else None
    updates = {}
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(1, ticks + 1):
            grads = param_gradients(state.xp, run, state.outs, state.deltas,
                                    [v for v in learners if dist[v.index] + 1 == t])  # at t − 1
            state.relax(1.0)
            for k, g in grads.items():
                updates[k] = -lr * g
                state.params[k] = state.params[k] + updates[k]
            state.settle(rows)
    return _result(model, state, updates, ticks, rows, dist, params)


def il_model(model, u, y, lr, gamma=0.1, T=20, loss="mse", fixed_prediction=False,
             record=True, params=None):
    """One IL update (Section 2.2 of Salvatori et al. 2022): T ticks of Eq. 7 at rate γ,
    then θ ← θ − lr ∂F/∂θ; a PCStep with ‖ε_v‖ per tick when ``record``.
    ``fixed_prediction`` keeps μ, σ' and the VJPs' inputs at the forward pass
    (the errors then relax to backprop's)."""
    if not T >= 0 or not gamma > 0:
        raise SimulatorError(f"IL needs T >= 0 and gamma > 0, got T={T}, gamma={gamma}")
    state = _State(model, u, y, loss, params, fixed=fixed_prediction)
    dist, _ = output_distances(model)
    rows = [state.norms()] if record else None
    for _ in range(int(T)):
        state.relax(gamma)
        state.settle(rows, refresh=not fixed_prediction)   # fixed: μ and pre stay put
    updates = {k: -lr * g for k, g in
               param_gradients(state.xp, model, state.outs, state.deltas).items()}
    return _result(model, state, updates, int(T), rows, dist, params)


def model_error_wave(model, u, y, method="zil", levelled=True, lr=0.01, gamma=0.1, T=20,
                     loss="mse"):
    """The ErrorWave of one Z-IL (or IL) update on a model."""
    method = check_choice("predictive-coding method", method, ("zil", "il"))
    if method == "zil":
        step = zil_model(model, u, y, lr, levelled=levelled, record=True, loss=loss)
    else:
        step = il_model(_levelled(model, levelled), u, y, lr, gamma=gamma, T=T, loss=loss)
    return ErrorWave(step.norms, step.by_level(), step.distances, step.model.names,
                     [v.kind for v in step.model.vertices], method, levelled)
