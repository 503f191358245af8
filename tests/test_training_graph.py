"""Every rule of a `train` scene on one graph model (conv + residual), checked
against independent oracles: the baseline against central finite differences
of a loss written out by hand, Z-IL and exact Activation Relaxation (η_x = 1,
K ≥ the longest path) against that baseline tick for tick, and the scene-level
claim that one scene runs every rule on the same weights and frames."""
import copy

import numpy as np
import pytest

from oracles import central_difference
from simulator import scene
from simulator.experiments import training
from simulator.model.graph import Model
from simulator.rules.predictive_coding import zil_model
from simulator.model.reference import backprop

LAYERS = [
    {"name": "conv", "kind": "conv2d", "channels": 2, "kernel": 3, "padding": 1,
     "activation": "tanh", "bias_scale": 0.2},
    {"name": "pool", "kind": "pool", "size": 2},
    {"name": "flat", "kind": "flatten"},
    {"name": "h", "kind": "dense", "units": 6, "activation": "tanh", "bias_scale": 0.2},
    {"name": "b", "kind": "dense", "units": 6, "activation": "tanh", "bias_scale": 0.2},
    {"name": "r", "kind": "add", "from": ["b", "h"], "activation": "tanh"},
    {"name": "out", "kind": "dense", "units": 10, "activation": "linear"},
]


def _scene(rules, ticks=48, levelled=True, **train):
    raw = {"kind": "train",
           "network": {"input_shape": [1, 8, 8], "levelled": levelled,
                       "layers": copy.deepcopy(LAYERS)},
           "stream": {"kind": "dataset", "batch": 2, "hold": 4},
           "target": {"kind": "labels"},
           "train": dict({"rules": rules, "learning_rate": 0.05, "loss": "xent",
                          "eval_every": 16, "eval_size": 40}, **train),
           "run": {"ticks": ticks, "seed": 3}}
    return scene.validate(raw, "test")


def _by_hand(params, u, y):
    """Softmax cross-entropy of LAYERS written out with numpy alone (no
    simulator code): conv by explicit loops over the kernel offsets."""
    x = np.pad(u, ((0, 0), (0, 0), (1, 1), (1, 1)))
    w, c = params["conv.W"], np.zeros((u.shape[0], 2, 8, 8))
    for i in range(3):
        for j in range(3):
            c += np.einsum("bchw,oc->bohw", x[:, :, i:i + 8, j:j + 8], w[:, :, i, j])
    c = np.tanh(c + params["conv.b"][None, :, None, None])
    p = c.reshape(u.shape[0], 2, 4, 2, 4, 2).mean(axis=(3, 5)).reshape(u.shape[0], -1)
    h = np.tanh(p @ params["h.W"].T + params["h.b"])
    b = np.tanh(h @ params["b.W"].T + params["b.b"])
    z = np.tanh(b + h) @ params["out.W"].T + params["out.b"]
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return -np.sum(y * logp)


def test_graph_backprop_baseline_step_is_minus_eta_times_finite_differences(rng):
    model = Model.from_layers(LAYERS, [1, 8, 8], seed=2)
    u, y = rng.normal(size=(3, 1, 8, 8)), np.eye(10)[[1, 4, 7]]
    learner = training.BackpropLearner(model, "xent", 0.1)
    learner.step(u, y)
    before, after = model.parameters(), learner.network().parameters()
    h = 1e-6
    for key in ("conv.W", "h.b", "out.W"):
        fd = np.zeros_like(before[key])
        for idx in list(np.ndindex(fd.shape))[:12]:
            plus, minus = copy.deepcopy(before), copy.deepcopy(before)
            plus[key][idx] += h
            minus[key][idx] -= h
            fd[idx] = (_by_hand(plus, u, y) - _by_hand(minus, u, y)) / (2 * h)
            np.testing.assert_allclose((before[key][idx] - after[key][idx]) / 0.1, fd[idx],
                                       rtol=1e-6, atol=1e-9)


def test_zil_step_starts_from_the_parameters_it_is_given(rng):
    """A learner passes its current parameters: the step's result is those plus
    the update, not the model's initial ones plus the update."""
    model = Model.from_layers(LAYERS, [1, 8, 8], seed=2)
    u, y = rng.normal(size=(2, 1, 8, 8)), np.eye(10)[[0, 3]]
    moved = {k: a + 0.01 * rng.normal(size=a.shape) for k, a in model.parameters().items()}
    step = zil_model(model, u, y, 0.1, loss="xent", params=moved)
    grads = backprop(model, u, y, "xent", params=moved)
    for k in moved:
        np.testing.assert_allclose(step.params[k], moved[k] - 0.1 * grads[k], atol=1e-12)


def test_zil_and_exact_relaxation_train_like_backprop_tick_for_tick():
    """On the levelled graph one Z-IL update is a backprop SGD step, and AR with
    η_x = 1 is exact after the longest path to the output: the curves of the
    three rules agree to rounding over the whole run."""
    sc = _scene(["backprop", "zil", "ar"], ar_iterations=12, ar_eta_x=1.0)
    curves, summary = training.train_scene(sc)
    for rule in ("zil", "ar"):
        np.testing.assert_allclose(curves[rule]["loss"], curves["backprop"]["loss"], rtol=1e-9)
        assert curves[rule]["accuracy"] == curves["backprop"]["accuracy"]
    assert curves["backprop"]["loss"][-1] < curves["backprop"]["loss"][0]


def test_inexact_relaxation_departs_from_backprop():
    """With few relaxation ticks at a small rate AR's gradient is not converged,
    so its curve must differ — the previous test can fail."""
    sc = _scene(["backprop", "ar"], ar_iterations=2, ar_eta_x=0.1)
    curves, _ = training.train_scene(sc)
    assert not np.allclose(curves["ar"]["loss"][1:], curves["backprop"]["loss"][1:], rtol=1e-6)


def test_every_rule_runs_on_one_graph_from_the_same_weights():
    rules = list(scene.TRAIN_RULES)
    sc = _scene(rules, ticks=32, ar_iterations=4)
    curves, summary = training.train_scene(sc)
    assert set(curves) == set(rules)
    first = {rule: (c["accuracy"][0], c["loss"][0]) for rule, c in curves.items()}
    assert len(set(first.values())) == 1, first      # one initial network for all
    for rule in ("random", "sign", "learned", "itd-y", "itd-dy"):
        assert len(curves[rule]["angles"][-1]) == 3    # h, b, out (conv sends to the input: unused)
        assert all(0.0 <= a <= 180.0 for a in curves[rule]["angles"][-1])
    assert curves["diffusion"]["angles"][-1] == []
    assert all(np.isfinite(c["loss"]).all() for c in curves.values())


def test_chain_scene_trains_ar_and_zil_too():
    raw = {"kind": "train", "network": {"sizes": [64, 12, 10]},
           "stream": {"kind": "dataset", "batch": 2, "hold": 4}, "target": {"kind": "labels"},
           "train": {"rules": ["zil", "backprop"], "eval_every": 8, "eval_size": 30,
                     "learning_rate": 0.05},
           "run": {"ticks": 16, "seed": 1}}
    curves, _ = training.train_scene(scene.validate(raw, "test"))
    np.testing.assert_allclose(curves["zil"]["loss"], curves["backprop"]["loss"], rtol=1e-9)


def test_shipped_compare_scene_names_every_rule():
    _, sc = scene.load("compare_rules_model")
    assert set(sc["train"]["rules"]) == set(scene.TRAIN_RULES)
    assert sc["network"]["layers"] and sc["network"]["levelled"]


def test_moving_stream_test_set_is_the_held_out_digits_on_the_canvas():
    """Each test frame is one held-out MNIST digit drawn once on the canvas:
    bilinear drawing inside the canvas keeps its total intensity, so frame i
    sums to digit i's sum (the digits the stream never trains on)."""
    from simulator.datasets import load_dataset
    raw = {"kind": "train",
           "network": {"input_shape": [1, 36, 36],
                       "layers": [{"kind": "flatten"}, {"kind": "dense", "units": 10,
                                                        "activation": "linear"}]},
           "stream": {"kind": "moving", "data": "mnist", "canvas": [36, 36], "speed": 0.5},
           "target": {"kind": "labels"},
           "train": {"rules": ["backprop"], "eval_size": 50},
           "run": {"ticks": 8, "seed": 2}}
    setup = training.Setup(scene.spec_of(scene.validate(raw, "test")))
    data = load_dataset("mnist", seed=2)
    assert setup.test_x.shape == (50, 1, 36, 36)
    # each frame is one distinct held-out digit with its own label (matched by its sum)
    test_sums = np.round(data.test_images.reshape(len(data.test_images), -1).sum(1), 9)
    where = {v: i for i, v in enumerate(test_sums)}
    found = [where[v] for v in np.round(setup.test_x.reshape(50, -1).sum(axis=1), 9)]
    assert len(set(found)) == 50
    np.testing.assert_array_equal(setup.test_y, data.test_targets[found])
    # a random subset, not the split's first 50 (the MNIST sample is sorted by class)
    assert len(set(np.argmax(setup.test_y, axis=1))) >= 8
    train_sums = set(np.round(data.train_images.reshape(len(data.train_images), -1).sum(1), 9))
    assert not any(np.round(s, 9) in train_sums for s in setup.test_x.reshape(50, -1).sum(1)[:5])


def test_every_chain_trains_on_the_graph_engine_unpadded():
    """Chains of equal or unequal widths train on the graph engine (it groups
    equal-width runs, so padding buys nothing); tests/test_golden.py's train
    scenes, recorded on the stacked engine, pin that the curves did not move."""
    from simulator.engine.tick import GraphEngine
    for sizes in ([64, 6, 10], [64, 16, 16, 10]):
        raw = {"kind": "train", "network": {"sizes": sizes},
               "stream": {"kind": "dataset", "batch": 2, "hold": 4}, "target": {"kind": "labels"},
               "train": {"rules": ["diffusion", "learned"], "eval_every": 8, "eval_size": 30,
                         "learning_rate": 0.05},
               "run": {"ticks": 24, "seed": 1}}
        setup = training.Setup(scene.spec_of(scene.validate(raw, "test")))
        for rule in ("diffusion", "learned"):
            learner = training.make_learner(rule, setup)
            assert isinstance(learner, GraphEngine)
            assert [tuple(v.shape) for v in learner.model.vertices] == [(n,) for n in sizes]


def test_gradient_angles_measure_the_update_against_finite_differences(rng):
    """The per-layer angle between a rule's update and backprop's gradient:
    diffusion on a constant frame with frozen weights reaches backprop's
    gradient (fact A′) so every angle is ~0°; random feedback's angles equal
    those of its own g against finite differences of the loss written by
    hand; the backprop and Z-IL baselines report none; AR's relaxed gradient
    at K = 200, η_x = 0.5 is within a degree."""
    from simulator.engine.tick import GraphEngine
    model = Model.from_layers(LAYERS, [1, 8, 8], seed=2)
    u, y = rng.normal(size=(2, 1, 8, 8)), np.eye(10)[[3, 8]]
    keys = [k for k in model.parameters() if k.endswith(".W")]
    fd = {k: central_difference(lambda p: _by_hand(p, u, y), model.parameters(), k)
          for k in keys}
    for feedback in ("transpose", "random"):
        eng = GraphEngine(model, loss="xent", feedback=feedback, batch=2, feedback_seed=5)
        for _ in range(4 * model.depth):
            eng.step(u, y)
        angles = training.gradient_angles(eng, lambda s: (u, y), "xent")
        g = eng.gradients()
        expect = [training._angle(g[k], fd[k]) for k in keys]
        np.testing.assert_allclose(angles, expect, atol=1e-4)
        if feedback == "transpose":
            assert max(angles) < 1e-4
        else:
            assert max(angles) > 20       # random feedback is not backprop
            assert angles[-1] < 1e-4      # ... except at the output
    sc = _scene(["ar", "zil", "backprop"], ar_iterations=200, ar_eta_x=0.5)
    setup = training.Setup(scene.spec_of(sc))
    ar = training.make_learner("ar", setup)
    ar_angles = training.gradient_angles(ar, lambda s: (u, y), "xent")
    assert len(ar_angles) == len(keys) and max(ar_angles) < 1.0
    for rule in ("zil", "backprop"):
        assert training.gradient_angles(training.make_learner(rule, setup), lambda s: (u, y),
                                        "xent") == []


def test_training_curves_carry_gradient_angles_per_layer():
    sc = _scene(["diffusion", "random", "backprop"], ticks=32)
    curves, _ = training.train_scene(sc)
    n_w = sum(k.endswith(".W") for k in training.Setup(scene.spec_of(sc)).model.parameters())
    for rule in ("diffusion", "random"):
        ga = curves[rule]["grad_angles"]
        assert ga[0] == [] and len(ga) == len(curves[rule]["tick"])
        assert all(len(a) == n_w and all(0 <= x <= 180 for x in a) for a in ga[1:])
    assert all(a == [] for a in curves["backprop"]["grad_angles"])
