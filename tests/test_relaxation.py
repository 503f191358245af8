"""Activation Relaxation on dense chains (simulator.rules.relaxation on
Model.chain (a Network is one), and the paper's experiments in
simulator.experiments.activation_relaxation), grouped by oracle:
reference backprop and finite differences (convergence to ∂ℓ/∂x^l), a dense
iteration matrix (the linear analysis), closed-form fixed points of each
variant, operation counts (cost), and short end-to-end runs."""
import os
from decimal import Decimal, localcontext
from math import comb

import numpy as np
import pytest

from simulator.backend import Backend, to_host
from simulator.errors import SimulatorError
from simulator.model import reference as R
from simulator.model.layers import Dense
from simulator.rules.relaxation import (INITS, VARIANTS, ActivationRelaxation,
                                        model_fixed_point, model_weight_gradients,
                                        predicted_errors, relax_closed_form, relax_sweep,
                                        tick_weights)
from simulator.network import Network
from simulator.experiments.activation_relaxation import (converge_arrays, run_converge, run_train,
                                              train_arrays, true_activation_gradients)
from simulator.render.convergence import (BASELINE_COLOUR, DPI, draw_converge, draw_train,
                                          layer_colour, plot_accuracy, plot_convergence)

ACTS = {"tanh": np.tanh, "logistic": lambda a: 1.0 / (1.0 + np.exp(-a)), "linear": lambda a: a,
        "relu": lambda a: np.maximum(a, 0.0)}
DERIVS = {"tanh": lambda a: 1.0 - np.tanh(a) ** 2, "linear": np.ones_like,
          "logistic": lambda a: ACTS["logistic"](a) * (1.0 - ACTS["logistic"](a)),
          "relu": lambda a: (a > 0).astype(float)}

CASES = [  # (sizes, activations): several depths and activations
    ([4, 6, 3], ["tanh", "linear"]),
    ([5, 7, 6, 3], ["logistic", "tanh", "linear"]),
    ([5, 8, 6, 5, 3], ["relu", "tanh", "relu", "linear"]),
    ([3, 6, 5, 6, 4, 2], ["tanh", "logistic", "tanh", "tanh", "tanh"]),
]


def _problem(rng, sizes, activations, batch=6, bias_scale=0.3):
    net = Network.random(sizes, activations, seed=int(rng.integers(1 << 30)), scale=1.3,
                         bias_scale=bias_scale)
    return net, rng.normal(size=(batch, sizes[0])), rng.normal(size=(batch, sizes[-1]))


def _forward(net, u):
    """x^l and σ'(a^l) per layer (index 0: the input, derivative None), numpy alone."""
    xs, ds = [u], [None]
    for w, b, act in zip(net.weights, net.biases, net.activations):
        a = xs[-1] @ w.T + b
        xs.append(ACTS[act](a))
        ds.append(DERIVS[act](a))
    return xs, ds


def _backprop_activation_grads(net, u, y, feedback=None):
    """∂ℓ/∂x^l for l = 1..L by backprop written out here: x^L − y on top,
    (σ'^{l+1} ⊙ ∂ℓ/∂x^{l+1}) F_l below (F = W, or ``feedback[l]``)."""
    xs, ds = _forward(net, u)
    back = net.weights if feedback is None else feedback
    grads = [None] * (net.depth + 1)
    grads[-1] = xs[-1] - y
    for l in range(net.depth - 1, 0, -1):
        grads[l] = (ds[l + 1] * grads[l + 1]) @ back[l]
    return grads


def _ar(net, *args, **kw):
    """The learner on the chain ``net`` (a Network is a chain Model: layer l is vertex l)."""
    return ActivationRelaxation(net, *args, **kw)


def _weights(ar):
    return [to_host(ar.params[f"{l + 1}.W"]) for l in range(ar.model.depth)]


def _biases(ar):
    return [to_host(ar.params[f"{l + 1}.b"]) for l in range(ar.model.depth)]


def _psi(ar):
    """ψ_l in W_l's layout, l = 1..L−1 (index 0 None), or None without feedback."""
    if ar.feedback is None:
        return None
    return [None] + [to_host(ar.feedback[f"{l + 1}.W"]) for l in range(1, ar.model.depth)]


def _wgrads(sweep, xs):
    """(ΔW list, Δb list) of ``model_weight_gradients``, layer order."""
    g = model_weight_gradients(sweep, xs)
    L = sweep.model.depth
    return [g[f"{l + 1}.W"] for l in range(L)], [g[f"{l + 1}.b"] for l in range(L)]


def _bp(net, u, y, feedback=None):
    """The oracle's (simulator.model.reference) ΔW and Δb lists on the chain."""
    fb = None if feedback is None else {f"{l + 1}.W": feedback[l]
                                        for l in range(1, net.depth)}
    g = R.backprop(net, u, y, feedback=fb)
    return [g[f"{l + 1}.W"] for l in range(net.depth)], [g[f"{l + 1}.b"] for l in range(net.depth)]


def _rel(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


def _relaxed(net, u, y, variant="exact", eta=0.1, k=1000, **kw):
    ar = _ar(net, variant, eta, k, **kw)
    sweep = ar.sweep(u, y)
    xs, rec = ar.relax(sweep)
    return ar, sweep, xs


# ------------------------------------------------ oracle: reference backprop
@pytest.mark.parametrize("sizes,acts", CASES)
def test_exact_relaxes_to_backprop_activation_gradients(rng, sizes, acts):
    net, u, y = _problem(rng, sizes, acts)
    truth = _backprop_activation_grads(net, u, y)
    ar = _ar(net, "exact", 0.1, 1000)
    sweep = ar.sweep(u, y)
    xs, rec = ar.relax(sweep, record=True, targets=truth)
    for l in range(1, net.depth + 1):
        assert _rel(xs[l], truth[l]) <= 1e-10, f"layer {l}"
    # After 100 ticks the lower layers are visibly not there yet: the test has teeth.
    if net.depth >= 3:
        assert rec.errors[100, 1] > 1e-6
    assert np.all(rec.errors[-1, 1:] <= 1e-10) and np.isnan(rec.errors[0, 0])
    # the experiments' backprop gradients (Fig. 1's grad_error) are the same
    helper = true_activation_gradients(net, u, y)
    for l in range(1, net.depth + 1):
        assert _rel(helper[l], truth[l]) <= 1e-12


@pytest.mark.parametrize("sizes,acts", CASES)
def test_weight_update_at_convergence_equals_backprop(rng, sizes, acts):
    net, u, y = _problem(rng, sizes, acts)
    _, sweep, xs = _relaxed(net, u, y)
    gw, gb = _wgrads(sweep, xs)
    for a, b in zip(gw, _bp(net, u, y)[0]):
        assert _rel(a, b) <= 1e-10
    for a, b in zip(gb, _bp(net, u, y)[1]):
        assert _rel(a, b) <= 1e-10


def test_one_learning_step_is_a_backprop_sgd_step(rng):
    net, u, y = _problem(rng, [5, 7, 6, 3], ["tanh", "relu", "linear"])
    ar = _ar(net, "exact", 0.5, 400)
    ar.step(u, y, lr=0.3)
    for w_new, w, g in zip(_weights(ar), net.weights, _bp(net, u, y)[0]):
        np.testing.assert_allclose(w_new, w - 0.3 / u.shape[0] * g, rtol=0, atol=1e-12)


# ------------------------------------------------ oracle: finite differences
def _per_row_loss_from(net, l, x, y):
    for m in range(l, net.depth):
        x = ACTS[net.activations[m]](x @ net.weights[m].T + net.biases[m])
    return 0.5 * np.sum((x - y) ** 2, axis=1)


@pytest.mark.parametrize("sizes,acts", [c for c in CASES if "relu" not in c[1]])
def test_exact_relaxes_to_finite_difference_gradients(rng, sizes, acts):
    net, u, y = _problem(rng, sizes, acts)
    _, _, xs = _relaxed(net, u, y)
    fwd, _ = _forward(net, u)
    h = 1e-6
    for l in range(1, net.depth):
        fd = np.zeros_like(fwd[l])
        for i in range(fwd[l].shape[1]):
            # rows are independent, so one perturbed column gives every row's derivative
            e = np.zeros_like(fwd[l])
            e[:, i] = h
            fd[:, i] = (_per_row_loss_from(net, l, fwd[l] + e, y)
                        - _per_row_loss_from(net, l, fwd[l] - e, y)) / (2 * h)
        assert _rel(xs[l], fd) < 1e-7, f"layer {l}"


# ------------------------------------------------ oracle: dense linear analysis
def _iteration_matrix(net, u, eta):
    """Column-convention matrix of one tick on the stacked hidden errors (batch 1)."""
    _, ds = _forward(net, u)
    sizes, L = net.sizes, net.depth
    offs = np.cumsum([0] + sizes[1:L])
    m = (1 - eta) * np.eye(offs[-1])
    for l in range(1, L - 1):  # e^l ← … + η W_lᵀ diag(σ'^{l+1}) e^{l+1}
        m[offs[l - 1]:offs[l], offs[l]:offs[l + 1]] = eta * net.weights[l].T * ds[l + 1][0]
    return m, offs


def _linear_analysis(rng, eta):
    """A batch-1 problem of mixed activations with what the dense oracle needs:
    (net, ∂ℓ/∂x per layer, the exact learner, its sweep, the one-tick matrix M,
    layer offsets into the stacked errors, the stacked initial error e_0)."""
    net, u, y = _problem(rng, [4, 6, 5, 6, 4, 3], ["tanh", "relu", "logistic", "tanh", "linear"],
                         batch=1)
    truth = _backprop_activation_grads(net, u, y)
    ar = _ar(net, "exact", eta, 0)
    sweep = ar.sweep(u, y)
    m, offs = _iteration_matrix(net, u, eta)
    e0 = np.concatenate([(sweep.outs[l] - truth[l])[0] for l in range(1, net.depth)])
    return net, truth, ar, sweep, m, offs, e0


@pytest.mark.parametrize("eta", [0.1, 0.3])
def test_error_follows_the_closed_form_of_the_linear_analysis(rng, eta):
    net, truth, ar, sweep, m, offs, e0 = _linear_analysis(rng, eta)
    pred = predicted_errors(sweep, ar.feedback, eta, 150, truth)
    _, rec = relax_sweep(sweep, ar.feedback, eta, 150, record=True, targets=truth)
    for n in (0, 1, 4, 17, 60, 150):
        en = np.linalg.matrix_power(m, n) @ e0
        xs, _ = relax_sweep(sweep, ar.feedback, eta, n)
        for l in range(1, net.depth):
            dense = en[offs[l - 1]:offs[l]]
            assert np.allclose(xs[l][0] - truth[l][0], dense, rtol=0,
                               atol=1e-12 * np.abs(e0).max())
            dense_rel = np.linalg.norm(dense) / np.linalg.norm(truth[l])
            assert pred[n, l] == pytest.approx(dense_rel, rel=1e-8, abs=1e-15)
    # The recorded curve follows the closed form wherever rounding is not the floor.
    big = rec.errors[:, 1:-1] > 1e-9
    np.testing.assert_allclose(rec.errors[:, 1:-1][big], pred[:, 1:-1][big], rtol=1e-6)


@pytest.mark.parametrize("eta", [0.1, 0.7, 1.0, 1.6])
def test_closed_form_state_is_the_dense_matrix_power(rng, eta):
    # e_K = M^K e_0 with M the dense one-tick matrix: relax_closed_form must
    # land there for K below, at and far above the depth, without ticking.
    net, truth, ar, sweep, m, offs, e0 = _linear_analysis(rng, eta)
    scale = max(np.abs(truth[l]).max() for l in range(1, net.depth + 1))
    for k in (0, 1, 2, 3, 4, 9, 60, 400):
        en = np.linalg.matrix_power(m, k) @ e0
        xs = relax_closed_form(sweep, ar.feedback, eta, k)
        assert xs[0] is sweep.outs[0] and xs[-1] is sweep.top
        for l in range(1, net.depth):
            np.testing.assert_allclose(xs[l][0], truth[l][0] + en[offs[l - 1]:offs[l]],
                                       rtol=0, atol=1e-13 * scale)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("init", INITS)
def test_closed_form_state_is_the_ticked_state_for_every_variant(rng, variant, init):
    net, u, y = _problem(rng, [5, 8, 6, 7, 5, 3], ["relu", "tanh", "relu", "logistic", "linear"])
    ar = _ar(net, variant, 0.3, 0, init=init, feedback_seed=3)
    sweep = ar.sweep(u, y)
    star = model_fixed_point(sweep, ar.feedback, ar.use_derivative)
    scale = max(np.abs(star[l]).max() for l in range(1, net.depth + 1))
    for eta in (0.1, 0.3, 1.0, 1.5):
        for k in (0, 1, 3, 4, 25, 100):
            ticked, _ = relax_sweep(sweep, ar.feedback, eta, k, ar.use_derivative, init)
            closed = relax_closed_form(sweep, ar.feedback, eta, k, ar.use_derivative, init)
            for a, b in zip(ticked, closed):
                np.testing.assert_allclose(b, a, rtol=0, atol=1e-13 * scale)


@pytest.mark.parametrize("variant", VARIANTS)
def test_closed_form_learner_steps_like_the_ticking_one(rng, variant):
    net, u, y = _problem(rng, [5, 8, 6, 5, 3], ["relu", "tanh", "relu", "linear"])
    ticks = _ar(net, variant, 0.2, 100, feedback_seed=1)
    closed = _ar(net, variant, 0.2, 100, feedback_seed=1, solver="closed-form")
    for _ in range(5):
        assert closed.step(u, y, 0.3) == pytest.approx(ticks.step(u, y, 0.3), rel=1e-12)
    for a, b in zip(_weights(ticks) + _biases(ticks), _weights(closed) + _biases(closed)):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-12 * np.abs(a).max())
    for a, b in zip((_psi(ticks) or [None])[1:], (_psi(closed) or [None])[1:]):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-12 * np.abs(a).max())


@pytest.mark.parametrize("n,eta", [(0, 0.3), (5, 0.1), (7, 1.0), (3, 1.0), (40, 1.9), (100, 0.1),
                                   (5000, 0.5), (10 ** 6, 1e-5), (3000, 1e-3)])
def test_tick_weights_are_the_exact_binomial_terms(n, eta):
    # The oracle: C(n, j) a^{n−j} η^j in 60-digit decimals, with a = 1 − η as
    # the float a tick multiplies by (for n = 10⁶, η = 10⁻⁵ the rounding of
    # 1 − η alone moves a^n by 1e-10).
    with localcontext() as ctx:
        ctx.prec = 60
        a, e = Decimal(1.0 - eta), Decimal(eta)
        want = [float(comb(n, j) * (a ** (n - j) if n > j else 1) * e ** j) if j <= n else 0.0
                for j in range(6)]
    got = tick_weights(n, 6, eta)
    assert got == pytest.approx(want, rel=1e-12, abs=0)


def _counted_problem(rng, variant):
    """(sizes, net, relaxation, forward sweep) of the 5-9-7-6-3 net, batch 4,
    on which the matmul-counting tests run."""
    sizes = [5, 9, 7, 6, 3]
    net, u, y = _problem(rng, sizes, ["tanh", "relu", "tanh", "linear"], batch=4)
    ar = _ar(net, variant, 0.1, 0)
    return sizes, net, ar, ar.sweep(u, y)


@pytest.mark.parametrize("variant", VARIANTS)
def test_closed_form_costs_a_few_backward_matmuls_whatever_k(rng, variant, monkeypatch):
    sizes, net, ar, sweep = _counted_problem(rng, variant)
    L = net.depth
    back = {l: ((4, sizes[l + 1]), (sizes[l + 1], sizes[l])) for l in range(1, L)}
    fixed = [back[l] for l in range(1, L)]      # the fixed point: one backward pass
    carried = [back[l] for m in range(1, L) for l in range(1, m)]
    # and each hidden layer's initial error carried down to layer 1, (L−1)(L−2)/2
    # more, unless every weight after K ticks is 0 in floats (0.9^(10^5) is)
    for k, want in ((5, fixed + carried), (100, fixed + carried), (10 ** 5, fixed)):
        calls = _count_backward_matmuls(monkeypatch)
        relax_closed_form(sweep, ar.feedback, 0.1, k, ar.use_derivative)
        assert sorted(calls) == sorted(want)


def leading_decay(n, k, eta_x):
    """The asymptotic envelope of the error of a vertex k edges below the
    output, C(n, k−1)(1−η)^{n−k+1} η^{k−1} (the last, highest-degree term of
    the closed form), for n ≥ k−1."""
    n = np.asarray(n)
    return np.array([comb(int(t), k - 1) for t in n.reshape(-1)], dtype=float).reshape(n.shape) \
        * (1.0 - eta_x) ** (n - k + 1) * eta_x ** (k - 1)


def test_top_hidden_layer_decays_exactly_geometrically_lower_layers_polynomially(rng):
    eta = 0.1
    net, u, y = _problem(rng, [4, 6, 5, 6, 4, 3], ["tanh", "tanh", "logistic", "tanh", "linear"])
    truth = _backprop_activation_grads(net, u, y)
    ar = _ar(net, "exact", eta, 0)
    sweep = ar.sweep(u, y)
    _, rec = relax_sweep(sweep, ar.feedback, eta, 200, record=True, targets=truth)
    L, n = net.depth, np.arange(201)
    # layer L−1: the error is multiplied by exactly (1−η) every tick
    np.testing.assert_allclose(rec.errors[:, L - 1], rec.errors[0, L - 1] * (1 - eta) ** n,
                               rtol=1e-9, atol=1e-13)  # atol: the rounding floor
    # layer L−k: error / [C(n,k−1)(1−η)^{n−k+1}η^{k−1}] tends to the norm of the
    # initial top-hidden error carried down k−1 layers (relative to ‖g‖).
    long = predicted_errors(sweep, ar.feedback, eta, 4000, truth)
    _, ds = _forward(net, u)
    for k in range(2, L):
        l = L - k
        v = sweep.outs[L - 1] - truth[L - 1]
        for m in range(L - 2, l - 1, -1):
            v = (ds[m + 1] * v) @ net.weights[m]
        limit = np.linalg.norm(v) / np.linalg.norm(truth[l])
        ratio = long[[1000, 4000], l] / leading_decay(np.array([1000, 4000]), k, eta)
        assert abs(ratio[1] / limit - 1) < abs(ratio[0] / limit - 1) + 1e-12
        assert abs(ratio[1] / limit - 1) < 0.05 * k
        # and the closed form is what the simulation does while above rounding
        ok = rec.errors[:, l] > 1e-9
        np.testing.assert_allclose(rec.errors[ok, l], long[:201][ok, l], rtol=1e-6)
    assert leading_decay(np.array([5]), 3, 0.5) == pytest.approx(comb(5, 2) * 0.5 ** 3 * 0.25)


def test_eta_one_gives_the_exact_backward_wave_after_k_ticks(rng):
    net, u, y = _problem(rng, [4, 6, 5, 6, 4, 3], ["tanh", "relu", "logistic", "tanh", "linear"])
    truth = _backprop_activation_grads(net, u, y)
    ar = _ar(net, "exact", 1.0, 0)
    _, rec = relax_sweep(ar.sweep(u, y), ar.feedback, 1.0, 6, record=True, targets=truth)
    L = net.depth
    for k in range(1, L):
        assert rec.errors[k - 1, L - k] > 1e-3
        assert np.all(rec.errors[k:, L - k] < 1e-14)


def test_layers_update_in_parallel_not_in_sequence(rng):
    # From a zero start at η_x = 1, one tick can only reach the layer just
    # below the clamped top; a top-down sequential sweep would fill them all.
    net, u, y = _problem(rng, [4, 6, 5, 6, 3], ["tanh", "tanh", "tanh", "linear"])
    ar = _ar(net, "exact", 1.0, 0, init="zero")
    sweep = ar.sweep(u, y)
    for n in range(1, 4):
        xs, _ = relax_sweep(sweep, ar.feedback, 1.0, n, init="zero")
        reached = [np.any(xs[l] != 0) for l in range(1, net.depth)]
        assert reached == [l >= net.depth - n for l in range(1, net.depth)]


# ------------------------------------------------ oracle: closed-form fixed points
def _top(net, u, y):
    return _forward(net, u)[0][-1] - y


@pytest.mark.parametrize("variant", ["random", "learned"])
def test_feedback_variants_relax_to_backprop_through_psi(rng, variant):
    net, u, y = _problem(rng, [5, 7, 6, 4, 3], ["tanh", "relu", "logistic", "linear"])
    ar, sweep, xs = _relaxed(net, u, y, variant, feedback_seed=11)
    psi = _psi(ar)
    assert all(p.shape == w.shape and not np.allclose(p, w) for p, w in zip(psi[1:], net.weights[1:]))
    truth = _backprop_activation_grads(net, u, y, feedback=[net.weights[0]] + psi[1:])
    for l in range(1, net.depth):
        assert _rel(xs[l], truth[l]) <= 1e-10
    # and the weight update is feedback alignment's δᵀx with δ carried by ψ
    gw, _ = _wgrads(sweep, xs)
    for a, b in zip(gw, _bp(net, u, y, feedback=psi)[0]):
        assert _rel(a, b) <= 1e-10


@pytest.mark.parametrize("variant", ["no-derivative", "learned-no-derivative"])
def test_no_derivative_variants_relax_to_products_of_transposes(rng, variant):
    net, u, y = _problem(rng, [5, 7, 6, 4, 3], ["tanh", "relu", "tanh", "linear"])
    ar, sweep, xs = _relaxed(net, u, y, variant)
    back = net.weights if ar.feedback is None else [None] + [p for p in _psi(ar)[1:]]
    top = _top(net, u, y)
    L = net.depth
    for l in range(1, L):
        # x^l = ∂ℓ/∂x^L F_{L−1} F_{L−2} … F_l: no σ' anywhere (Eqs. 7–8)
        expected = np.linalg.multi_dot([top] + [back[m] for m in range(L - 1, l - 1, -1)]) \
            if L - l > 1 else top @ back[l]
        assert _rel(xs[l], expected) <= 1e-10
    # which is not backprop's gradient with these nonlinear layers
    assert _rel(xs[1], _backprop_activation_grads(net, u, y)[1]) > 1e-3


def test_eq6_learned_feedback_keeps_psi_minus_w_constant(rng):
    net, u, y = _problem(rng, [5, 7, 6, 3], ["tanh", "tanh", "linear"], batch=8)
    learned = _ar(net, "learned", 0.2, 60, feedback_seed=3)
    fixed = _ar(net, "random", 0.2, 60, feedback_seed=3)
    gap0 = [to_host(p) - w for p, w in zip(_psi(learned)[1:], net.weights[1:])]
    psi0 = [p.copy() for p in _psi(fixed)[1:]]
    for _ in range(5):
        learned.step(u, y, 0.2)
        fixed.step(u, y, 0.2)
    for l, g0 in enumerate(gap0, start=1):
        # Eq. 6 gives ψ_l the same increment as W_l, so their difference is frozen
        np.testing.assert_allclose(_psi(learned)[l] - _weights(learned)[l], g0,
                                   atol=1e-13)
        assert not np.allclose(_psi(learned)[l], g0 + net.weights[l])
        np.testing.assert_array_equal(_psi(fixed)[l], psi0[l - 1])


# ------------------------------------------------ oracle: operation counts
def _count_backward_matmuls(monkeypatch):
    """Record the operand shapes of every dense VJP (δ times W or B): the only
    matmuls of the relaxation; returns the list the calls are appended to."""
    calls, vjp = [], Dense.vjp

    def counted(self, xp, params, inputs, pre, delta, weights=None):
        calls.append((delta.shape, (params["W"] if weights is None else weights).shape))
        return vjp(self, xp, params, inputs, pre, delta, weights)
    monkeypatch.setattr(Dense, "vjp", counted)
    return calls


@pytest.mark.parametrize("variant", VARIANTS)
def test_one_tick_costs_one_backward_matmul_per_layer(rng, variant, monkeypatch):
    sizes, net, ar, sweep = _counted_problem(rng, variant)
    calls = _count_backward_matmuls(monkeypatch)
    relax_sweep(sweep, ar.feedback, 0.1, 7, ar.use_derivative)
    # backprop's backward pass: δ^{l+1} (B × n_{l+1}) times W_l (n_{l+1} × n_l), l = L−1..1
    backward = [((4, sizes[l + 1]), (sizes[l + 1], sizes[l])) for l in range(len(sizes) - 2, 0, -1)]
    assert sorted(calls) == sorted(backward * 7)
    flops = sum(2 * a[0] * a[1] * b[1] for a, b in calls)
    assert flops == 7 * sum(2 * 4 * sizes[l + 1] * sizes[l] for l in range(1, len(sizes) - 1))


# ------------------------------------------------ devices
def test_relaxation_is_device_neutral(rng, device):
    net, u, y = _problem(rng, [5, 7, 6, 3], ["tanh", "relu", "linear"])
    be = Backend(device, "float64")
    ar = _ar(net, "exact", 0.2, 150, device=device)
    sweep = ar.sweep(be.asarray(u), be.asarray(y))
    xs, rec = ar.relax(sweep, record=True)
    gw, _ = _wgrads(sweep, xs)
    ref = _ar(net, "exact", 0.2, 150)
    rsweep = ref.sweep(u, y)
    rxs, rrec = ref.relax(rsweep, record=True)
    for l in range(net.depth + 1):
        np.testing.assert_allclose(to_host(xs[l]), rxs[l], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(rec.norms, rrec.norms, rtol=1e-12)
    assert rec.norms.shape == (151, net.depth + 1)


def test_closed_form_is_device_neutral(rng, device):
    net, u, y = _problem(rng, [5, 7, 6, 4, 3], ["tanh", "relu", "tanh", "linear"])
    be = Backend(device, "float64")
    ar = _ar(net, "random", 0.2, 150, device=device, solver="closed-form")
    ref = _ar(net, "random", 0.2, 150)
    sweep, rsweep = ar.sweep(be.asarray(u), be.asarray(y)), ref.sweep(u, y)
    xs = relax_closed_form(sweep, ar.feedback, 0.2, 150)
    rxs, _ = relax_sweep(rsweep, ref.feedback, 0.2, 150)
    for l in range(net.depth + 1):
        np.testing.assert_allclose(to_host(xs[l]), rxs[l], rtol=0,
                                   atol=1e-13 * np.abs(rxs[l]).max())
    got = ar.step(be.asarray(u), be.asarray(y), 0.1)
    assert got == pytest.approx(ref.step(u, y, 0.1), rel=1e-12)


# ------------------------------------------------ arguments
@pytest.mark.parametrize("kwargs", [
    {"variant": "feedback-alignment"}, {"eta_x": 0.0}, {"eta_x": 2.0}, {"eta_x": -0.1},
    {"iterations": -1}, {"iterations": 2.5}, {"loss": "hinge"}, {"init": "random"},
    {"solver": "newton"},
])
def test_bad_arguments_raise_one_clear_error(rng, kwargs):
    net, _, _ = _problem(rng, [3, 4, 2], ["tanh", "linear"])
    with pytest.raises(SimulatorError):
        _ar(net, **kwargs)


@pytest.mark.parametrize("kwargs", [
    {"sizes": [64, 10], "activations": ["linear"]}, {"sizes": [5, 4, 10]},
    {"data": "mnist"}, {"eta_x": [0.1, 3.0]},
])
def test_bad_scene_arguments_raise(kwargs):
    base = {"sizes": [64, 8, 10], "activations": ["tanh", "linear"], "iterations": 3, "batch": 4}
    with pytest.raises(SimulatorError):
        run_converge(**{**base, **kwargs})


# ------------------------------------------------ end to end and pictures
def _colour_present(img, hex_colour, tol=0.02):
    rgb = np.array([int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    return np.any(np.all(np.abs(img[..., :3] - rgb) < tol, axis=-1))


def _saved_and_loaded(tmp_path, name, arrays):
    """Save arrays as a run does and load them back without pickle, so drawing
    is checked from the saved file alone."""
    np.savez_compressed(tmp_path / name, **arrays)
    return np.load(tmp_path / name, allow_pickle=False)


def test_run_converge_reports_and_draws_fig1(tmp_path):
    r = run_converge(sizes=[64, 20, 16, 12, 10], activations=["relu", "relu", "relu", "linear"],
                     eta_x=[0.1, 0.5, 1.0], iterations=60, batch=16)
    assert os.listdir(tmp_path) == []      # the experiment computes, it does not draw
    E, K1, L1 = r["errors"].shape
    assert (E, K1, L1) == (3, 61, 5) and r["norms"].shape == r["predicted"].shape == (3, 61, 5)
    assert np.all(r["grad_error"][1:] < 1e-12)     # exact's fixed point is backprop's
    ok = r["errors"][:, :, 1:4] > 1e-9
    np.testing.assert_allclose(r["errors"][:, :, 1:4][ok], r["predicted"][:, :, 1:4][ok], rtol=1e-6)
    assert np.all(r["weight_error"][2] < 1e-12)    # η = 1: exact after L − 1 ticks
    assert np.all(r["weight_error"][0, :3] > 1e-8) and r["weight_error"][0, 3] < 1e-12
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    with _saved_and_loaded(tmp_path, "relaxation.npz", converge_arrays(r)) as saved:
        written = draw_converge(pictures, saved)
    assert sorted(os.listdir(pictures)) == ["ar_convergence.png", "relaxation_wave.gif",
                                            "relaxation_wave.png"]  # no temp file left behind
    img = __import__("matplotlib.image", fromlist=["imread"]).imread(written["ar_convergence.png"])
    assert img.shape[:2] == (round(4.2 * DPI), round(11 * DPI))
    for i in range(3):
        assert _colour_present(img, layer_colour(i))


def test_short_training_run_beats_chance_and_tracks_backprop(tmp_path):
    r = run_train(sizes=[64, 32, 10], activations=["relu", "linear"], variants=["exact", "random"],
                  iterations=40, eta_x=0.2, lr=0.1, batch=32, epochs=4, seeds=[0])
    final = r["final_test"]
    assert final["backprop"][0] > 0.8 and final["exact"][0] > 0.8     # chance is 0.1
    assert abs(final["exact"][0] - final["backprop"][0]) < 0.02
    assert r["curves"]["exact"]["test"].shape == (1, r["steps"].size) and r["steps"][0] == 0
    assert r["curves"]["exact"]["test"][0, 0] < 0.3 < r["curves"]["exact"]["test"][0, -1]
    assert os.listdir(tmp_path) == []
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    with _saved_and_loaded(tmp_path, "training.npz", train_arrays(r)) as saved:
        written = draw_train(pictures, saved)
    assert sorted(os.listdir(pictures)) == ["ar_accuracy.png", "ar_accuracy_train.png"]
    img = __import__("matplotlib.image", fromlist=["imread"]).imread(written["ar_accuracy.png"])
    assert img.shape[:2] == (round(3.6 * DPI), round(2 * 4.6 * DPI))    # one panel per variant
    for c in (BASELINE_COLOUR, layer_colour(0), layer_colour(1)):
        assert _colour_present(img, c)


def test_accuracy_plot_draws_every_variant_and_the_baseline(tmp_path):
    steps = np.arange(5)
    curves = {"backprop": {"test": np.array([[0.1, 0.5, 0.8, 0.9, 0.95]] * 3)},
              "exact": {"test": np.array([[0.1, 0.4, 0.7, 0.9, 0.94]] * 3)},
              "random": {"test": np.array([[0.1, 0.3, np.nan, np.nan, np.nan]] * 3)}}
    path = plot_accuracy(tmp_path / "acc.png", steps, curves)
    img = __import__("matplotlib.image", fromlist=["imread"]).imread(path)
    assert img.shape[:2] == (round(3.6 * DPI), round(2 * 4.6 * DPI))
    for c in (BASELINE_COLOUR, layer_colour(0), layer_colour(1)):
        assert _colour_present(img, c)
    with pytest.raises(SimulatorError):
        plot_accuracy(tmp_path / "bad.png", steps[:3], curves)
    with pytest.raises(SimulatorError):
        plot_convergence(tmp_path / "bad.png", np.zeros((2, 5, 4)), [0.1])
