"""IL and Z-IL on graph models (simulator.rules.predictive_coding), grouped by oracle: graph
backprop (simulator.model.reference) and central finite differences of the
loss for Z-IL's update (Theorem 3 of paper 002 on levelled models); central
finite differences of an energy written here from the layers' values alone
for IL's inference tick and parameter update; a closed-form equilibrium of
IL on a scalar linear chain; the elementary-graph Z-IL of simulator.experiments.pc on the
same MLP."""
import numpy as np
import pytest

from simulator import Model
from simulator.backend import Backend, to_host
from simulator.errors import SimulatorError
from simulator.model import reference as R
from simulator.rules.predictive_coding import il_model, model_error_wave, output_distances, zil_model
from simulator.experiments.pc import build, level, zil
from graph_models import ATTENTION, CONV, RESIDUAL

CHAIN = [
    {"name": "h1", "kind": "dense", "units": 7, "activation": "tanh", "bias_scale": 0.3},
    {"name": "h2", "kind": "dense", "units": 6, "activation": "logistic", "bias_scale": 0.3},
    {"name": "h3", "kind": "dense", "units": 5, "activation": "relu", "bias_scale": 0.3},
    {"name": "o", "kind": "dense", "units": 3, "activation": "linear", "bias_scale": 0.3},
]
MODELS = {"chain": (CHAIN, (5,)), "conv": (CONV, (2, 8, 10)), "residual": (RESIDUAL, (4,)),
          "attention": (ATTENTION, (3, 5))}
LR = 0.05


def _problem(rng, which, batch=4):
    layers, shape = MODELS[which]
    model = Model.from_layers(layers, shape, seed=int(rng.integers(1 << 30)))
    return model, rng.normal(size=(batch,) + shape), rng.normal(size=(batch,) + model.output_shape)


def _max_rel(got, want):
    """Largest max|got − want| / max|want| over the keys of ``want``."""
    return max(np.abs(np.asarray(to_host(got[k])) - want[k]).max() / np.abs(want[k]).max()
               for k in want)


def _cotangents(model, u, y):
    """∂ℓ/∂x_v per vertex index from reference backprop's δ = ∂ℓ/∂pre."""
    outs, deltas, _ = R.factors(model, u, y, "mse")
    p = model.parameters()
    cot = [None] * len(model)
    cot[-1] = outs[-1] - y
    for c in model.vertices[1:]:
        back = c.layer.vjp(np, {k: p[f"{c.name}.{k}"] for k in c.param_names},
                           [outs[i] for i in c.parents], None, deltas[c.index])
        for i, g in zip(c.parents, back):
            if i:
                cot[i] = g if cot[i] is None else cot[i] + g
    return cot


def _energy(model, params, u, xs, y):
    """F = Σ_hidden ½‖f_v(x of parents) − x_v‖² + ½‖f_out(x of parents) − y‖²,
    from the layers' values only (xs per vertex index; xs[0] = u)."""
    xs = [u] + list(xs[1:])
    total = 0.0
    for v in model.vertices[1:]:
        _, mu = v.layer.value(np, {k: params[f"{v.name}.{k}"] for k in v.param_names},
                              [xs[i] for i in v.parents])
        target = y if v.index == model.output else xs[v.index]
        total += 0.5 * float(np.sum((mu - target) ** 2))
    return total


# ------------------------------------------------ Z-IL: backprop and finite differences
@pytest.mark.parametrize("which", MODELS)
def test_zil_on_a_levelled_model_is_one_backprop_sgd_step(rng, device, which):
    model, u, y = _problem(rng, which)
    want = {k: -LR * g for k, g in R.backprop(model, u, y).items()}
    be = Backend(device, "float64")
    step = zil_model(model, be.asarray(u), be.asarray(y), LR, levelled=True)
    assert list(step.updates) == model.param_keys()
    assert _max_rel(step.updates, want) <= 1e-12
    old = model.parameters()
    for k in want:
        np.testing.assert_allclose(step.params[k], old[k] + want[k], rtol=1e-12, atol=1e-14)
    assert step.model.is_levelled()
    dist, longest = output_distances(step.model)
    assert dist == longest and step.ticks == max(dist[v.index] for v in step.model.vertices
                                                 if v.param_names) + 1


def test_zil_update_matches_central_differences_of_the_loss(rng):
    model, u, y = _problem(rng, "residual", batch=3)
    step = zil_model(model, u, y, LR)
    params, h = model.parameters(), 1e-6
    for k in ("h0.W", "b1.b", "a2.W", "o.b"):
        for idx in list(np.ndindex(params[k].shape))[:6]:
            plus, minus = model.parameters(), model.parameters()
            plus[k][idx] += h
            minus[k][idx] -= h
            fd = (R.loss_value(model, u, y, params=plus)
                  - R.loss_value(model, u, y, params=minus)) / (2 * h)
            assert abs(step.updates[k][idx] + LR * fd) <= 1e-8 * max(1.0, abs(LR * fd)), (k, idx)


def test_zil_unlevelled_residual_diverges_from_backprop(rng, device):
    model, u, y = _problem(rng, "residual")
    assert not model.is_levelled()
    want = {k: -LR * g for k, g in R.backprop(model, u, y).items()}
    be = Backend(device, "float64")
    step = zil_model(model, be.asarray(u), be.asarray(y), LR, levelled=False)
    assert step.model is model
    gap = _max_rel(step.updates, want)
    assert gap > 1e-6
    # h0 lies on paths of lengths 2 and 4 to the output: it learns at tick 3
    # from the first, partial arrival of its error; the output learns at tick 1
    # from ε_out = ∂ℓ/∂x_out whatever the graph
    assert _max_rel({"h0.W": step.updates["h0.W"]}, {"h0.W": want["h0.W"]}) > 1e-6
    for k in ("o.W", "o.b"):
        assert _max_rel({k: step.updates[k]}, {k: want[k]}) <= 1e-12


def test_zil_levelled_flag_only_matters_on_unlevelled_models(rng):
    model, u, y = _problem(rng, "chain")
    a = zil_model(model, u, y, LR, levelled=True)
    b = zil_model(model, u, y, LR, levelled=False)
    for k in a.updates:
        np.testing.assert_array_equal(a.updates[k], b.updates[k])


def test_zil_on_a_network_model_equals_the_elementary_graph_zil():
    problem = build("mlp", seed=4)
    vals = problem.values
    sizes = [vals["W0"].shape[0]] + [vals[f"W{k}"].shape[1] for k in range(3)]
    layers = [{"name": str(k + 1), "kind": "dense", "units": sizes[k + 1],
               "activation": "linear" if k == 2 else "tanh"} for k in range(3)]
    model = Model.from_layers(layers, (sizes[0],)).with_parameters(
        {**{f"{k + 1}.W": vals[f"W{k}"].T for k in range(3)},
         **{f"{k + 1}.b": vals[f"b{k}"] for k in range(3)}})
    ours = zil_model(model, vals["x"], problem.target, LR)
    theirs = zil(level(problem.graph), vals, problem.target, LR).updates
    for k in range(3):
        np.testing.assert_allclose(ours.updates[f"{k + 1}.W"], theirs[f"W{k}"].T,
                                   rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(ours.updates[f"{k + 1}.b"], theirs[f"b{k}"],
                                   rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("which", ["conv", "residual", "attention"])
def test_zil_error_wave_moves_one_level_per_tick_carrying_backprop(rng, which):
    model, u, y = _problem(rng, which)
    lev = model.level()
    wave = model_error_wave(model, u, y, "zil", levelled=True, lr=LR)
    cot = _cotangents(lev, u, y)
    dist, _ = output_distances(lev)
    for k in range(wave.by_level.shape[0]):
        front = np.sqrt(sum(float(np.sum(cot[v] ** 2)) for v in range(1, len(lev))
                            if dist[v] == k))
        assert wave.by_level[k, k] == pytest.approx(front, rel=1e-12)
        assert not wave.by_level[k, k + 1:].any()  # ahead of the front: untouched
    assert wave.names == lev.names and wave.levels == dist


# ------------------------------------------------ IL: finite differences of the energy
def test_il_tick_descends_the_energy_and_update_is_its_parameter_gradient(rng):
    model, u, y = _problem(rng, "residual", batch=2)
    gamma = 0.05
    params = model.parameters()
    _, outs = R.evaluate(model, u)
    xs = list(outs)
    h = 1e-6
    grad = [None] * len(model)  # ∂F/∂x_v at the forward pass by central differences
    for v in range(1, len(model) - 1):
        g = np.zeros_like(xs[v])
        for idx in np.ndindex(xs[v].shape):
            plus, minus = [a.copy() for a in xs], [a.copy() for a in xs]
            plus[v][idx] += h
            minus[v][idx] -= h
            g[idx] = (_energy(model, params, u, plus, y)
                      - _energy(model, params, u, minus, y)) / (2 * h)
        grad[v] = g
    # after one tick ε_v = μ_v(x1) − x1_v; x1 = x0 − γ ∂F/∂x, so the recorded
    # norms follow from the finite-difference step
    x1 = [u] + [xs[v] - gamma * grad[v] for v in range(1, len(model) - 1)] + [xs[-1]]
    step = il_model(model, u, y, LR, gamma=gamma, T=1)
    for v in model.vertices[1:-1]:
        _, mu = v.layer.value(np, {k: params[f"{v.name}.{k}"] for k in v.param_names},
                              [x1[i] for i in v.parents])
        assert step.norms[1, v.index] == pytest.approx(np.linalg.norm(mu - x1[v.index]),
                                                       rel=1e-6, abs=1e-9)
    # the update: −lr ∂F/∂θ at x1, by central differences in θ
    for k in ("h0.W", "a1.b", "b2.W", "o.W"):
        for idx in list(np.ndindex(params[k].shape))[:5]:
            plus, minus = model.parameters(), model.parameters()
            plus[k][idx] += h
            minus[k][idx] -= h
            fd = (_energy(model, plus, u, x1, y) - _energy(model, minus, u, x1, y)) / (2 * h)
            assert step.updates[k][idx] == pytest.approx(-LR * fd, rel=1e-5, abs=1e-10)


@pytest.mark.parametrize("which", ["conv", "residual", "attention"])
def test_il_with_fixed_predictions_converges_to_backprop(rng, device, which):
    model, u, y = _problem(rng, which)
    want = {k: -LR * g for k, g in R.backprop(model, u, y).items()}
    be = Backend(device, "float64")
    du, dy = be.asarray(u), be.asarray(y)
    gaps = [_max_rel(il_model(model, du, dy, LR, gamma=0.1, T=T, fixed_prediction=True,
                              record=False).updates, want) for T in (10, 50, 200, 600)]
    assert all(b < a for a, b in zip(gaps, gaps[1:])), gaps
    assert gaps[0] > 0.1 and gaps[-1] < 1e-2


def test_il_equilibrium_on_a_scalar_linear_chain_is_not_backprop():
    # x1 = w1 x0, out = w2 x1: minimizing F over x1 gives ε_out = δ/(1 + w2²),
    # ε1 = w2 ε_out, x1 = w1 x0 − ε1, where δ = w2 w1 x0 − y is backprop's
    layers = [{"name": n, "kind": "dense", "units": 1, "activation": "linear"} for n in "12"]
    w1, w2, x0, y = 0.8, 1.5, 1.3, -0.4
    model = Model.from_layers(layers, (1,)).with_parameters(
        {"1.W": [[w1]], "1.b": [0.0], "2.W": [[w2]], "2.b": [0.0]})
    delta = w2 * w1 * x0 - y
    e_out = delta / (1 + w2 ** 2)
    e1 = w2 * e_out
    x1 = w1 * x0 - e1
    step = il_model(model, np.array([[x0]]), np.array([[y]]), LR, gamma=0.2, T=400)
    assert step.updates["2.W"][0, 0] == pytest.approx(-LR * e_out * x1, rel=1e-12)
    assert step.updates["1.W"][0, 0] == pytest.approx(-LR * e1 * x0, rel=1e-12)
    assert step.updates["2.b"][0] == pytest.approx(-LR * e_out, rel=1e-12)
    # backprop would move 2.W by −lr δ w1 x0: IL's equilibrium is a different update
    assert abs(step.updates["2.W"][0, 0] + LR * delta * w1 * x0) > 0.1 * LR * abs(delta)


def test_il_and_wave_refuse_bad_arguments(rng):
    model, u, y = _problem(rng, "chain")
    with pytest.raises(SimulatorError):
        il_model(model, u, y, LR, gamma=0.0)
    with pytest.raises(SimulatorError):
        il_model(model, u, y, LR, T=-1)
    with pytest.raises(SimulatorError):
        model_error_wave(model, u, y, "bp")
    with pytest.raises(SimulatorError):
        zil_model(model, u, y, LR, loss="hinge")
