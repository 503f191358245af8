"""Activation Relaxation on graph models (simulator.rules.relaxation), grouped
by oracle: the chain relaxation written out in numpy here, tick for tick, on
Model.chain; K explicit ticks for the closed form on chains, residual,
conv and attention models, every variant; graph backprop
(simulator.model.reference) and central finite differences of the loss (the
relaxed state is ∂ℓ/∂x_v, the weight update is backprop's); the linear
analysis (exact geometric decay, exactness at η = 1 from the longest path
on); closed forms of the feedback and no-derivative fixed points (reference
backprop with B in place of W, backprop of the model with every σ made
linear)."""
import numpy as np
import pytest

from simulator import Model, Network
from simulator.backend import Backend, to_host
from simulator.errors import SimulatorError
from simulator.model import reference as R
from simulator.rules.relaxation import (INITS, VARIANTS, ActivationRelaxation, draw_feedback,
                                        feedback_keys, model_fixed_point, model_sweep,
                                        model_weight_gradients, predicted_errors,
                                        relax_closed_form, relax_model, relax_sweep)
from graph_models import ATTENTION, CONV, RESIDUAL

MODELS = {"conv": (CONV, (2, 8, 10)), "residual": (RESIDUAL, (4,)),
          "attention": (ATTENTION, (3, 5))}


def _problem(rng, which, batch=4):
    layers, shape = MODELS[which]
    model = Model.from_layers(layers, shape, seed=int(rng.integers(1 << 30)))
    return model, rng.normal(size=(batch,) + shape), rng.normal(size=(batch,) + model.output_shape)


def _rel(a, b):
    a, b = np.asarray(to_host(a)), np.asarray(to_host(b))
    return np.linalg.norm(a - b) / np.linalg.norm(b)


def _activation_grads(model, u, y, feedback=None, params=None):
    """∂ℓ/∂x_v per vertex index from reference backprop's δ = ∂ℓ/∂pre: the
    loss gradient at the output, Σ_c VJP_c(δ_c) (B for W if given) below."""
    outs, deltas, _ = R.factors(model, u, y, "mse", params=params, feedback=feedback)
    p = model.parameters() if params is None else params
    fb = feedback or {}
    grads = [None] * len(model)
    grads[-1] = outs[-1] - y
    for c in model.vertices[1:]:
        back = c.layer.vjp(np, {k: p[f"{c.name}.{k}"] for k in c.param_names},
                           [outs[i] for i in c.parents], None, deltas[c.index],
                           weights=fb.get(f"{c.name}.W"))
        for i, g in zip(c.parents, back):
            if i:
                grads[i] = g if grads[i] is None else grads[i] + g
    return grads


def _to_output(model, pick=max):
    """Longest (or, with ``pick=min``, shortest) path length in edges from each
    vertex index to the output, by enumerating paths downward."""
    kids = {v.index: [c.index for c in model.vertices if v.index in c.parents]
            for v in model.vertices}

    def walk(i):
        return pick(1 + walk(c) for c in kids[i]) if kids[i] else 0
    return [walk(v.index) for v in model.vertices]


# ------------------------------------------------ oracle: the chain written out
_SIGMA = {"tanh": (np.tanh, lambda a: 1.0 - np.tanh(a) ** 2),
          "relu": (lambda a: np.maximum(a, 0.0), lambda a: (a > 0).astype(float)),
          "logistic": (lambda a: 1.0 / (1.0 + np.exp(-a)),
                       lambda a: np.exp(-a) / (1.0 + np.exp(-a)) ** 2),
          "linear": (lambda a: a, np.ones_like)}


def _chain_relaxation(net, psi, u, y, eta, n, use_derivative):
    """Paper 001's Eqs. 4–5 (7–8) on a dense chain in numpy, per layer: the
    forward sweep, x^L = x̄^L − y, then n ticks of x^l ← (1−η) x^l + η
    (d^{l+1} ⊙ x^{l+1}) F_l from the previous tick, F_l = W_l or ψ_l; returns
    the states after each tick (index 0: the forward values)."""
    xs, ds = [u], [None]
    for w, b, act in zip(net.weights, net.biases, net.activations):
        a = xs[-1] @ w.T + b
        xs.append(_SIGMA[act][0](a))
        ds.append(_SIGMA[act][1](a) if use_derivative else np.ones_like(a))
    L = net.depth
    F = [psi[l] if psi is not None and l else net.weights[l] for l in range(L)]
    state = xs[:L] + [xs[L] - y]
    states = [state]
    for _ in range(n):
        state = [state[0]] + [(1 - eta) * state[l] + eta * (ds[l + 1] * state[l + 1]) @ F[l]
                              for l in range(1, L)] + [state[L]]
        states.append(state)
    return states


@pytest.mark.parametrize("variant", VARIANTS)
def test_chain_model_relaxes_tick_for_tick_like_the_written_out_chain(rng, device, variant):
    net = Network.random([5, 7, 6, 4, 3], ["tanh", "relu", "logistic", "linear"],
                         seed=int(rng.integers(1 << 30)), scale=1.3, bias_scale=0.3)
    be = Backend(device, "float64")
    u, y = rng.normal(size=(6, 5)), rng.normal(size=(6, 3))
    ar = ActivationRelaxation(net, variant, 0.3, 40, feedback_seed=7,
                              device=device)
    psi = None
    if ar.feedback is not None:      # B for layers 2..L, W's layout, drawn N(0, 1/fan_in)
        assert feedback_keys(ar.model) == ["2.W", "3.W", "4.W"]
        psi = [None] + [np.array(to_host(ar.feedback[f"{l + 1}.W"])) for l in range(1, 4)]
        assert all(p.shape == w.shape for p, w in zip(psi[1:], net.weights[1:]))
    want = _chain_relaxation(net, psi, u, y, 0.3, 40, variant not in ("no-derivative",
                                                                     "learned-no-derivative"))
    sweep = ar.sweep(be.asarray(u), be.asarray(y))
    for n in (0, 1, 2, 7, 40):
        xs, rec = ar.relax(sweep, record=True, iterations=n)
        for a, b in zip(want[n], xs):
            np.testing.assert_allclose(to_host(b), a, rtol=1e-13, atol=1e-13 * np.abs(a).max())
        norms = [[np.linalg.norm(x) for x in st] for st in want[:n + 1]]
        np.testing.assert_allclose(rec.norms, norms, rtol=1e-12)
    # one learning step: W ← W − lr (σ' ⊙ x^{l+1})ᵀ x̄^l / B at the relaxed state
    # (σ' kept in every variant), ψ taking W's step in the learned variants
    xs = _chain_relaxation(net, None, u, y, 0.3, 40, True)[0]
    relaxed = ar.relax(sweep)[0]
    ar.step(be.asarray(u), be.asarray(y), 0.2)
    params = ar.to_model().parameters()
    for l in range(4):
        d = _SIGMA[net.activations[l]][1](xs[l] @ net.weights[l].T + net.biases[l])
        delta = d * to_host(relaxed[l + 1])
        np.testing.assert_allclose(params[f"{l + 1}.W"], net.weights[l] - 0.2 / 6 * delta.T @ xs[l],
                                   rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(params[f"{l + 1}.b"], net.biases[l] - 0.2 / 6 * delta.sum(0),
                                   rtol=1e-12, atol=1e-14)
        if psi is not None and l:
            moved = psi[l] - 0.2 / 6 * delta.T @ xs[l] if variant.startswith("learned") else psi[l]
            np.testing.assert_allclose(to_host(ar.feedback[f"{l + 1}.W"]), moved,
                                       rtol=1e-12, atol=1e-14)


# ------------------------------------------------ oracle: K explicit ticks
CLOSED = {**MODELS, "chain": None}


@pytest.mark.parametrize("which", CLOSED)
@pytest.mark.parametrize("variant", VARIANTS)
def test_closed_form_is_k_explicit_ticks_on_every_model(rng, which, variant):
    if which == "chain":
        net = Network.random([5, 8, 6, 7, 3], ["relu", "tanh", "logistic", "linear"],
                             seed=int(rng.integers(1 << 30)), scale=1.3, bias_scale=0.3)
        model, u, y = net, rng.normal(size=(4, 5)), rng.normal(size=(4, 3))
    else:
        model, u, y = _problem(rng, which)
    for init in INITS:
        ar = ActivationRelaxation(model, variant, 0.3, 0, init=init, feedback_seed=5)
        sweep = ar.sweep(u, y)
        star = model_fixed_point(sweep, ar.feedback, ar.use_derivative)
        # the largest magnitude of the fixed point and of the initial error
        scale = max(max(np.abs(s).max(), np.abs(x - s).max())
                    for s, x in zip(star[1:-1], ar.relax(sweep, iterations=0)[0][1:-1]))
        for eta in (0.1, 0.6, 1.0, 1.7):
            for k in (0, 1, 2, 5, 30, 120):
                ticked, rec = relax_sweep(sweep, ar.feedback, eta, k, ar.use_derivative, init,
                                          record=True)
                # ticking rounds at the largest value it passes (η > 1 swings high)
                big = max(scale, rec.norms[:, 1:-1].max())
                closed = relax_closed_form(sweep, ar.feedback, eta, k, ar.use_derivative, init)
                assert closed[0] is sweep.outs[0] and closed[-1] is sweep.top
                for a, b in zip(ticked, closed):
                    np.testing.assert_allclose(b, a, rtol=0, atol=1e-12 * big)


def test_relax_model_solves_in_closed_form_without_a_record(rng):
    model, u, y = _problem(rng, "residual")
    ticked = relax_model(model, u, y, eta_x=0.4, iterations=50, variant="random")
    closed = relax_model(model, u, y, eta_x=0.4, iterations=50, variant="random",
                         solver="closed-form")
    for name, x in ticked.state().items():
        np.testing.assert_allclose(closed.state()[name], x, rtol=0,
                                   atol=1e-12 * max(np.abs(x).max(), 1.0))
    with pytest.raises(SimulatorError):
        relax_model(model, u, y, solver="closed-form", record=True)
    with pytest.raises(SimulatorError):
        relax_model(model, u, y, solver="newton")


@pytest.mark.parametrize("which", MODELS)
def test_closed_form_learner_steps_like_the_ticking_one_on_graphs(rng, which):
    model, u, y = _problem(rng, which)
    for variant in ("exact", "learned"):
        ticks = ActivationRelaxation(model, variant, 0.4, 60, feedback_seed=2)
        closed = ActivationRelaxation(model, variant, 0.4, 60, feedback_seed=2,
                                      solver="closed-form")
        for _ in range(3):
            assert closed.step(u, y, 0.2) == pytest.approx(ticks.step(u, y, 0.2), rel=1e-12)
        for k, a in ticks.params.items():
            np.testing.assert_allclose(closed.params[k], a, rtol=0, atol=1e-12 * np.abs(a).max())


# ------------------------------------------------ oracle: graph backprop, finite differences
@pytest.mark.parametrize("which", MODELS)
def test_exact_relaxes_to_backprop_on_graphs(rng, device, which):
    model, u, y = _problem(rng, which)
    truth = _activation_grads(model, u, y)
    want = R.backprop(model, u, y)
    be = Backend(device, "float64")
    du, dy = be.asarray(u), be.asarray(y)
    run = relax_model(model, du, dy, eta_x=0.5, iterations=200, record=True,
                      targets=[None] + [be.asarray(t) for t in truth[1:]])
    for v in model.vertices[1:]:
        assert _rel(run.xs[v.index], truth[v.index]) <= 1e-10, v.name
    got = model_weight_gradients(run.sweep, run.xs)
    assert list(got) == list(want)
    for k in want:
        np.testing.assert_allclose(np.asarray(to_host(got[k])), want[k], rtol=1e-8,
                                   atol=1e-10 * np.abs(want[k]).max(), err_msg=k)
    # teeth: a few ticks are visibly not enough for the vertex farthest from the output
    assert run.record.errors[5, 1] > 1e-3
    early = relax_model(model, du, dy, eta_x=0.5, iterations=5)
    g5 = model_weight_gradients(early.sweep, early.xs)
    assert _rel(g5[f"{model.vertices[1].name}.W"], want[f"{model.vertices[1].name}.W"]) > 1e-3


def _loss_with_bump(model, u, y, index, bump):
    """ℓ with ``bump`` added to vertex ``index``'s value, propagated forward."""
    p = model.parameters()
    outs = [u]
    for v in model.vertices[1:]:
        x = v.layer.value(np, {k: p[f"{v.name}.{k}"] for k in v.param_names},
                          [outs[i] for i in v.parents])[1]
        outs.append(x + bump if v.index == index else x)
    return 0.5 * np.sum((outs[-1] - y) ** 2)


@pytest.mark.parametrize("which", MODELS)
def test_relaxed_state_is_the_finite_difference_gradient(rng, which):
    model, u, y = _problem(rng, which)
    run = relax_model(model, u, y, eta_x=0.5, iterations=200)
    eps = 1e-6
    for v in model.vertices[1:]:
        d = rng.normal(size=run.xs[v.index].shape)
        fd = (_loss_with_bump(model, u, y, v.index, eps * d)
              - _loss_with_bump(model, u, y, v.index, -eps * d)) / (2 * eps)
        assert np.sum(run.xs[v.index] * d) == pytest.approx(fd, rel=1e-7, abs=1e-9), v.name


# ------------------------------------------------ oracle: the linear analysis
@pytest.mark.parametrize("which", MODELS)
@pytest.mark.parametrize("eta", [0.1, 0.5])
def test_errors_follow_the_linear_analysis(rng, which, eta):
    model, u, y = _problem(rng, which)
    truth = _activation_grads(model, u, y)
    sweep = model_sweep(model, u, y)
    K = 400 if eta == 0.1 else 120
    _, rec = relax_sweep(sweep, eta_x=eta, iterations=K, record=True, targets=truth)
    pred = predicted_errors(sweep, None, eta, K, truth)
    np.testing.assert_allclose(rec.errors[:, 1:], pred[:, 1:], rtol=1e-6, atol=1e-13)
    assert np.all(rec.errors[-1, 1:] <= 1e-10)
    dist = _to_output(model)
    n = np.arange(K + 1)
    for v in model.vertices[1:-1]:
        e = rec.errors[:, v.index]
        if dist[v.index] == 1:  # read only by the output: exactly (1 − η)^n
            live = e > 1e-12
            np.testing.assert_allclose(e[live], e[0] * (1 - eta) ** n[live], rtol=1e-9,
                                       atol=1e-14)
        else:                   # lower vertices: slower than (1 − η)^n at first
            assert e[dist[v.index]] > e[0] * (1 - eta) ** dist[v.index]


@pytest.mark.parametrize("which", MODELS)
def test_eta_one_is_exact_from_the_longest_path_to_the_output_on(rng, which):
    model, u, y = _problem(rng, which)
    truth = _activation_grads(model, u, y)
    dist, near = _to_output(model), _to_output(model, min)
    if which == "residual":
        assert near[1] < dist[1]  # h0's skip reaches the output sooner
    sweep = model_sweep(model, u, y)
    for n in range(1, max(dist) + 1):
        xs, _ = relax_sweep(sweep, eta_x=1.0, iterations=n)
        zs, _ = relax_sweep(sweep, eta_x=1.0, iterations=n, init="zero")
        for v in model.vertices[1:-1]:
            exact = _rel(xs[v.index], truth[v.index]) <= 1e-12
            assert exact == (n >= dist[v.index]), (v.name, n)
            # parallel, not sequential: tick n reaches vertices n edges from the output
            assert bool(np.any(zs[v.index] != 0)) == (n >= near[v.index]), (v.name, n)


# ------------------------------------------------ oracle: closed-form variant fixed points
@pytest.mark.parametrize("which", MODELS)
def test_random_feedback_relaxes_to_backprop_with_b_for_w(rng, which):
    model, u, y = _problem(rng, which)
    fb = draw_feedback(model, seed=5)
    params = model.parameters()
    assert fb and all(b.shape == params[k].shape and not np.allclose(b, params[k])
                      for k, b in fb.items())
    run = relax_model(model, u, y, eta_x=0.5, iterations=200, variant="random", feedback=fb)
    truth = _activation_grads(model, u, y, feedback=fb)
    for v in model.vertices[1:]:
        assert _rel(run.xs[v.index], truth[v.index]) <= 1e-10, v.name
    want = R.backprop(model, u, y, feedback=fb)
    got = model_weight_gradients(run.sweep, run.xs)
    for k in want:
        assert _rel(got[k], want[k]) <= 1e-9, k
    # and that is not backprop's gradient
    assert _rel(got[f"{model.vertices[1].name}.W"],
                R.backprop(model, u, y)[f"{model.vertices[1].name}.W"]) > 1e-2


def _linearised(model):
    """The same graph and parameters with every activation linear."""
    layers = [{**l, "activation": "linear"} if "activation" in l else l
              for l in model.to_layers()]
    return Model.from_layers(layers, model.input_shape).with_parameters(model.parameters())


@pytest.mark.parametrize("which", MODELS)
def test_no_derivative_relaxes_to_backprop_of_the_linearised_model(rng, which):
    model, u, y = _problem(rng, which)
    if which == "conv":  # max pooling routes by the forward values: keep the routing fixed
        model = Model.from_layers([{**l, "mode": "avg"} if l["kind"] == "pool" else l
                                   for l in model.to_layers()],
                                  model.input_shape).with_parameters(model.parameters())
    run = relax_model(model, u, y, eta_x=0.5, iterations=200, variant="no-derivative")
    top = R.forward(model, u)["o"] - y
    lin = _linearised(model)
    # a target that gives the linearised model's output the real model's ∂ℓ/∂x_out
    y_lin = R.forward(lin, u)["o"] - top
    truth = _activation_grads(lin, u, y_lin)
    for v in model.vertices[1:]:
        assert _rel(run.xs[v.index], truth[v.index]) <= 1e-10, v.name
    assert _rel(run.xs[1], _activation_grads(model, u, y)[1]) > 1e-3
    if which == "residual":  # Eq. 1 keeps σ': ΔW = (σ' ⊙ x)ᵀ x̄, Δb = Σ σ' ⊙ x
        pres, outs = R.evaluate(model, u)
        got = model_weight_gradients(run.sweep, run.xs)
        for v in model.vertices[1:]:
            if v.kind != "dense":
                continue
            s = 1 - np.tanh(pres[v.index]) ** 2 if v.layer.activation == "tanh" else (
                outs[v.index] * (1 - outs[v.index]) if v.layer.activation == "logistic"
                else np.ones_like(pres[v.index]))
            delta = s * truth[v.index]
            assert _rel(got[f"{v.name}.W"], delta.T @ outs[v.parents[0]]) <= 1e-10
            assert _rel(got[f"{v.name}.b"], delta.sum(axis=0)) <= 1e-10


# ------------------------------------------------ the learner
def test_one_exact_step_is_a_backprop_sgd_step(rng):
    model, u, y = _problem(rng, "conv")
    ar = ActivationRelaxation(model, "exact", 0.5, 200)
    want = R.backprop(model, u, y)
    loss = ar.step(u, y, 0.3)
    assert loss == pytest.approx(float(R.loss_value(model, u, y)), rel=1e-12)
    after = ar.to_model().parameters()
    for k, p in model.parameters().items():
        np.testing.assert_allclose(after[k], p - 0.3 / 4 * want[k], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ar.predict(u), R.forward(ar.to_model(), u)["o"], rtol=1e-12)


def test_learned_feedback_keeps_b_minus_w_constant(rng):
    model, u, y = _problem(rng, "residual")
    learned = ActivationRelaxation(model, "learned", 0.5, 60, feedback_seed=3)
    fixed = ActivationRelaxation(model, "random", 0.5, 60, feedback_seed=3)
    gap0 = {k: learned.feedback[k] - learned.params[k] for k in learned.feedback}
    b0 = {k: b.copy() for k, b in fixed.feedback.items()}
    for _ in range(4):
        learned.step(u, y, 0.2)
        fixed.step(u, y, 0.2)
    for k, g0 in gap0.items():
        np.testing.assert_allclose(learned.feedback[k] - learned.params[k], g0, atol=1e-13)
        assert not np.allclose(learned.params[k], model.parameters()[k])
        np.testing.assert_array_equal(fixed.feedback[k], b0[k])


@pytest.mark.parametrize("kwargs", [
    {"variant": "feedback-alignment"}, {"eta_x": 0.0}, {"eta_x": 2.0}, {"iterations": -1},
    {"loss": "hinge"}, {"init": "random"},
])
def test_bad_arguments_raise_one_clear_error(rng, kwargs):
    model, _, _ = _problem(rng, "residual")
    with pytest.raises(SimulatorError):
        ActivationRelaxation(model, **kwargs)


def test_not_a_model_or_missing_feedback_raise(rng):
    model, u, y = _problem(rng, "residual")
    with pytest.raises(SimulatorError):
        ActivationRelaxation([np.zeros((4, 3)), np.zeros((2, 4))])
    with pytest.raises(SimulatorError):
        relax_model(model, u, y, variant="random", feedback={"o.W": np.zeros((3, 6))})
