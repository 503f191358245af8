"""Predictive coding on computational graphs: IL and Z-IL (Salvatori et al.). Every
internal vertex i has a value node x_i, a prediction μ_i = g_i(x of its arguments) and
an error ε_i = μ_i − x_i (Eq. 5); leaves hold their values and the output is clamped
to y. F = ½ Σ_i ‖ε_i‖² (Eq. 6), so (signs derived here: the paper's Eqs. 3, 7 and 8
flip them) ∂F/∂x_i = −ε_i + Σ_{j∈P(i)} ε_j ∂μ_j/∂x_i, x_i ← x_i − γ ∂F/∂x_i (Eq. 7)
and ζ ← ζ − α Σ_{j∈P(ζ)} ε_j ∂μ_j/∂ζ (Eq. 8); then ε_out = μ_out − y is BP's δ_out
and Z-IL's updates equal BP's −α ∂E/∂ζ. Tick t takes state t−1 to state t; d_j is
the shortest distance to the output."""
from collections import namedtuple

import numpy as np

from ...errors import SimulatorError
from ...rules.predictive_coding import ErrorWave
from .builders import build
from .graph import cotangents, evaluate, forward, needs_grad
from .levelling import distances, level, levels


# One learning step: ``updates`` {parameter name: Δζ}, inference ``ticks``, ``eps_norms``
# (when recorded: ‖ε_i‖ per state 0..ticks and vertex, else None), each vertex's ``levels``.
PCResult = namedtuple("PCResult", "updates ticks eps_norms levels")


def _initial_state(graph, values, target):
    """The forward pass as value nodes (x_i,0 = μ_i,0), output clamped."""
    x = forward(graph, values)
    mu = list(x)
    x[graph.output] = np.asarray(target, dtype=mu[graph.output].dtype)
    return x, mu


def _errors(graph, x, mu):
    """ε_i = μ_i − x_i for internal vertices (None for leaves: their error is 0)."""
    return [None if v.is_leaf else mu[i] - x[i] for i, v in enumerate(graph.vertices)]


def _norms(eps):
    """‖ε_i‖ per vertex; a wake that overflowed is recorded as +inf, never NaN."""
    norms = np.array([0.0 if e is None else float(np.linalg.norm(e)) for e in eps])
    norms[~np.isfinite(norms)] = np.inf
    return norms


def _backward_terms(graph, x, mu, eps, on_param):
    """Σ_j ε_j ∂μ_j/∂x_i for every internal i (the second term of ∂F/∂x_i); calls
    ``on_param(j, leaf, term)`` for every parameter edge. Zero errors are skipped."""
    acc = [None] * len(graph)
    for j, v in enumerate(graph.vertices):
        if v.is_leaf or not eps[j].any():
            continue
        for a, c in cotangents(graph, j, eps[j], x, mu[j]):
            if graph.vertices[a].is_leaf:
                on_param(j, a, c)
            else:
                acc[a] = c if acc[a] is None else acc[a] + c
    return acc


def _infer(graph, x, mu, gamma, ticks, record, learn=lambda t, j, a, term: None,
           arrive=lambda t, changed: None):
    """``ticks`` inference ticks of Eq. 7 on every internal vertex but the clamped
    output, on the state (x, μ) in place; at tick t ``learn(t, j, leaf, term)`` gets
    every parameter edge's term and ``arrive(t, changed)`` may move leaves before μ
    is recomputed where an argument moved. Returns (ε, ‖ε‖ per state and vertex
    when ``record``, else None)."""
    eps = _errors(graph, x, mu)
    rows = [_norms(eps)] if record else None
    for t in range(1, ticks + 1):
        acc = _backward_terms(graph, x, mu, eps, lambda j, a, c: learn(t, j, a, c))
        changed = [False] * len(graph)
        for i, v in enumerate(graph.vertices):
            if v.is_leaf or i == graph.output:
                continue
            grad = -eps[i] if acc[i] is None else acc[i] - eps[i]
            if grad.any():
                x[i], changed[i] = x[i] - gamma * grad, True
        arrive(t, changed)
        for i, v in enumerate(graph.vertices):
            if not v.is_leaf and any(changed[a] for a in v.args):
                mu[i] = evaluate(graph, i, x)
        eps = _errors(graph, x, mu)
        if record:
            rows.append(_norms(eps))
    return eps, (np.array(rows) if record else None)


def zil(graph, values, target, lr, gamma=1.0, record=False):
    """Z-IL (Algorithm 3): from the forward pass every internal vertex relaxes at
    every tick (Eq. 7) and each parameter learns (Eq. 16) from the edge to its
    parent j at tick d_j + 1, when the error wave arrives; a parameter used by
    several parents changes once, after its last term. On a levelled graph with
    γ = 1 the updates equal BP's (Theorem 3); on one that is not, a parameter
    learns from the first, partial arrival (what Algorithm 2 repairs). Other
    ``gamma``: Table 3's ablation. Returns a PCResult."""
    x, mu = _initial_state(graph, values, target)
    dmin, _ = distances(graph)
    needs = needs_grad(graph)
    last_read = {}
    for j, v in enumerate(graph.vertices):
        for a, need in zip(v.args, needs[j]):
            if need and graph.vertices[a].is_leaf:
                last_read[a] = max(last_read.get(a, 0), dmin[j] + 1)
    ticks = max(last_read.values(), default=0)
    pending = {a: np.zeros_like(x[a]) for a in last_read}

    def learn(t, j, a, term):
        if dmin[j] + 1 == t:
            pending[a] -= lr * term

    def arrive(t, changed):
        for a, tick in last_read.items():
            if tick == t:
                x[a] = x[a] + pending[a]
                changed[a] = True
    # the γ = 1 relaxation behind the front may overflow; it never reaches an update
    with np.errstate(over="ignore", invalid="ignore"):
        _, rows = _infer(graph, x, mu, gamma, ticks, record, learn, arrive)
    return PCResult({graph.vertices[a].name: d for a, d in pending.items()}, ticks, rows, dmin)


def zil_wave(graph, values, target, lr):
    """Z-IL computing only the error wavefront: Table 2's schedule. By Lemma A.1,
    at state t every vertex below level t still has ε = 0 and its forward value,
    and every vertex at level t has ε = −Δx from its parents' errors; what the
    vertices behind the front do never reaches a later front or an update, so the
    front alone gives ``zil``'s updates for one backward sweep. Needs the op
    vertices levelled (``level(graph, leaves=False)``)."""
    lv = levels(graph, leaves=False)
    mu = forward(graph, values)
    eps = [None] * len(graph)
    eps[graph.output] = mu[graph.output] - np.asarray(target, dtype=mu[graph.output].dtype)
    fronts = [[] for _ in range(max(lv) + 1)]
    for j, v in enumerate(graph.vertices):
        if not v.is_leaf:
            fronts[lv[j]].append(j)
    grads = {}
    for t in range(1, len(fronts) + 1):
        inbox = {}
        for j in fronts[t - 1]:
            cots = cotangents(graph, j, eps[j], mu, mu[j])
            eps[j] = None  # read by nothing after this tick: free it
            for a, c in cots:
                inbox[a] = c if a not in inbox else inbox[a] + c
        for a, term in inbox.items():
            vertex = graph.vertices[a]
            if vertex.is_leaf:  # Eq. 16: this use of the parameter learns now
                grads[vertex.name] = grads[vertex.name] + term if vertex.name in grads else term
            else:
                # Eq. 7 with γ = 1: x_a = μ_a − term, then ε_a = μ_a − x_a over x_a
                value = mu[a] - term
                eps[a] = np.subtract(mu[a], value, out=value)
    updates = {name: -lr * g for name, g in grads.items()}
    return PCResult(updates, len(fronts), None, lv)


def il(graph, values, target, lr, gamma=0.1, T=20, record=False):
    """Inference learning (Section 2.2): from the clamped forward pass, T ticks of
    Eq. 7 at rate γ, then one update of every parameter by Eq. 8. Returns a PCResult."""
    if T < 0 or gamma <= 0:
        raise SimulatorError(f"IL needs T >= 0 and gamma > 0, got T={T}, gamma={gamma}")
    x, mu = _initial_state(graph, values, target)
    eps, rows = _infer(graph, x, mu, gamma, T, record)
    grads = {a: np.zeros_like(x[a]) for a in graph.leaves("param")}

    def collect(j, a, term):
        grads[a] += term
    _backward_terms(graph, x, mu, eps, collect)
    updates = {graph.vertices[a].name: -lr * g for a, g in grads.items()}
    return PCResult(updates, T, rows, distances(graph)[0])


def error_wave(architecture="residual", method="zil", levelled=True, T=20, gamma=0.1,
               lr=0.01, seed=0, dtype="float64"):
    """The ErrorWave of one Z-IL (or IL) update on a named builder's graph:
    ‖ε_i‖ at every state per vertex and per level (d_i), Lemma A.1's wavefront."""
    if method not in ("zil", "il"):
        raise SimulatorError(f"error_wave: method {method!r}; expected 'zil' or 'il'")
    problem = build(architecture, seed=seed, dtype=dtype)
    graph = level(problem.graph) if levelled else problem.graph
    res = zil(graph, problem.values, problem.target, lr, record=True) if method == "zil" else \
        il(graph, problem.values, problem.target, lr, gamma=gamma, T=T, record=True)
    kinds = [v.kind for v in graph.vertices]
    by_level = np.zeros((res.eps_norms.shape[0], max(res.levels) + 1))
    for i, (k, kind) in enumerate(zip(res.levels, kinds)):
        if kind == "op":
            by_level[:, k] += res.eps_norms[:, i] ** 2
    return ErrorWave(res.eps_norms, np.sqrt(by_level), res.levels,
                     [v.name for v in graph.vertices], kinds, method, levelled)
