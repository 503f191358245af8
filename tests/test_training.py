"""Training on streams, checked against independent oracles: finite differences
for the backprop baseline, a Taylor argument for diffusion vs backprop at
constant input, closed forms for the alignment angle, and chance level."""
import json
import os

import numpy as np

from oracles import per_layer
import pytest
from matplotlib.image import imread

from simulator import kinds, scene
from simulator.experiments import training
from simulator.engine import Engine
from simulator.errors import SceneError
from simulator.model import Model
from simulator.network import Network
from simulator.render.learning import RULE_COLOURS



def _loss_by_hand(weights, biases, u, y):
    """½‖x_L − y‖² summed over the batch for a tanh net with linear output,
    written out without the simulator's code."""
    x = u
    for i, (w, b) in enumerate(zip(weights, biases)):
        a = x @ w.T + b
        x = a if i == len(weights) - 1 else np.tanh(a)
    return 0.5 * np.sum((x - y) ** 2)


def test_backprop_step_matches_finite_differences(rng):
    net = Network.random([3, 5, 4, 2], ["tanh", "tanh", "linear"], seed=1, bias_scale=0.3)
    u, y = rng.normal(size=(4, 3)), rng.normal(size=(4, 2))
    eta = 0.1
    learner = training.BackpropLearner(net, "mse", eta)
    learner.step(u, y)
    h = 1e-6
    new = learner.network().parameters()
    W, B = net.weights, net.biases
    after_w = [new[f"{l}.W"] for l in range(1, net.depth + 1)]
    after_b = [new[f"{l}.b"] for l in range(1, net.depth + 1)]
    for i in range(net.depth):
        for params, after in ((W, after_w), (B, after_b)):
            fd = np.zeros_like(params[i])
            for idx in np.ndindex(params[i].shape):
                plus = [p.copy() for p in params]
                minus = [p.copy() for p in params]
                plus[i][idx] += h
                minus[i][idx] -= h
                ws_p, bs_p = (plus, B) if params is W else (W, plus)
                ws_m, bs_m = (minus, B) if params is W else (W, minus)
                fd[idx] = (_loss_by_hand(ws_p, bs_p, u, y) - _loss_by_hand(ws_m, bs_m, u, y)) / (2 * h)
            np.testing.assert_allclose((params[i] - after[i]) / eta, fd, rtol=1e-6, atol=1e-8)


def _diffusion_vs_backprop(eta, steps, depth=3):
    """Weights of diffusion (constant input, pipeline primed with learning off
    for 2L ticks so every layer's g is backprop's — Fact A) and of online
    backprop from the same weights, after ``steps`` learning ticks."""
    sizes = [3] + [4] * (depth - 1) + [2]
    net = Network.random(sizes, ["tanh"] * (depth - 1) + ["linear"], seed=4, bias_scale=0.2)
    g = np.random.default_rng(11)
    u, y = g.normal(size=(1, 3)), g.normal(size=(1, 2))
    engine = Engine(net, loss="mse", learning_rate=eta)
    engine.learning_rate = 0.0
    for _ in range(2 * depth):
        engine.step(u, y)
    engine.learning_rate = eta
    bp = training.BackpropLearner(net, "mse", eta)
    for _ in range(steps):
        engine.step(u, y)
        bp.step(u, y)
    learned = [w for k, w in bp.network().parameters().items() if k.endswith(".W")]
    diff = np.sqrt(sum(np.sum((a - b) ** 2) for a, b in zip(per_layer(engine.parameters()), learned)))
    moved = np.sqrt(sum(np.sum((a - b) ** 2) for a, b in zip(learned, net.weights)))
    return diff, moved


def test_first_learning_tick_at_constant_input_is_backprop():
    # Primed pipeline + frozen weights up to now: g is exactly backprop's
    # gradient, so one update with the same η gives the same weights.
    diff, moved = _diffusion_vs_backprop(0.05, 1)
    assert moved > 1e-3
    assert diff <= 1e-12 * moved


def test_diffusion_tracks_backprop_to_second_order_in_eta():
    # After the exact first step, diffusion differs from backprop only because
    # layer l's activity and delta were formed with weights at most 2L ticks
    # old, each tick's change being O(η): the gap after T ticks is O(η²)
    # (Taylor), so halving η must quarter it. The slack covers the O(η³) term,
    # which is below η·T·‖g‖ ≈ 1% of the O(η²) term here.
    steps = 8
    d1, m1 = _diffusion_vs_backprop(2e-3, steps)
    d2, m2 = _diffusion_vs_backprop(1e-3, steps)
    assert m1 > 0 and d1 > 0
    assert 3.6 < d1 / d2 < 4.4
    # and the gap is small against the distance the weights travelled: O(η)
    assert d1 / m1 < 0.05


def _digits_scene(**train):
    name, sc = scene.load("train_digits")
    sets = [f"train.{k}={json.dumps(v)}" for k, v in train.items()]
    return scene.apply_overrides(sc, sets, name)


def test_train_digits_beats_chance_quickly():
    sc = _digits_scene(rules=["diffusion"])
    sc = scene.apply_overrides(sc, ["run.ticks=1600", "train.eval_every=800"], "train_digits")
    curves, summary = training.train_scene(sc)
    # chance is 10% on ten balanced classes; a wide margin means > 50%
    assert summary["diffusion.final_accuracy"] > 0.5
    assert curves["diffusion"]["accuracy"][0] < 0.3


def test_zero_learning_rate_gives_identical_curves_for_every_rule():
    sc = _digits_scene(rules=list(training.RULES), learning_rate=0.0)
    sc = scene.apply_overrides(sc, ["run.ticks=40", "train.eval_every=20", "train.eval_size=50"],
                               "train_digits")
    curves, _ = training.train_scene(sc)
    first = curves["backprop"]
    for rule, c in curves.items():
        assert c["accuracy"] == first["accuracy"], rule
        assert c["loss"] == first["loss"], rule


def test_alignment_angle_closed_forms():
    model = Model.chain([20, 30, 30, 5], ["tanh", "tanh", "linear"], seed=2)
    exact = training.alignment_angles(Engine(model, feedback="transpose"))
    assert len(exact) == 2 and np.allclose(exact, 0.0, atol=1e-6)
    # independent Gaussian W and B: cos ~ N(0, 1/n) for n entries, so five
    # standard deviations bound it
    rand = training.alignment_angles(Engine(model, feedback="random", feedback_seed=9))
    sizes = [30 * 30, 5 * 30]
    assert len(rand) == len(sizes)
    for angle, n in zip(rand, sizes):
        assert abs(np.cos(np.radians(angle))) < 5 / np.sqrt(n)
    assert training.alignment_angles(training.BackpropLearner(model, "mse", 0.1)) == []


def test_blow_up_is_reported_not_raised():
    sc = _digits_scene(rules=["diffusion", "backprop"], learning_rate=50.0)
    sc = scene.apply_overrides(sc, ["run.ticks=200", "train.eval_every=50"], "train_digits")
    curves, summary = training.train_scene(sc)
    for rule in ("diffusion", "backprop"):
        assert summary[f"{rule}.diverged"]
        assert np.isnan(summary[f"{rule}.final_accuracy"])
        assert curves[rule]["error"]


def test_rules_are_validated_with_file_and_key():
    name, sc = scene.load("train_digits")
    with pytest.raises(SceneError, match=r"train\.rules.*'backprob'.*did you mean 'backprop'"):
        scene.apply_overrides(sc, ['train.rules=["backprob"]'], name)
    one = scene.apply_overrides(sc, ['train.rules="random"'], name)
    assert one["train"]["rules"] == ["random"]


def test_run_training_writes_curves_and_picture(tmp_path):
    sc = _digits_scene(rules=["diffusion", "backprop", "random"])
    sc = scene.apply_overrides(sc, ["run.ticks=300", "train.eval_every=100", "train.eval_size=100"],
                               "train_digits")
    summary = kinds.get("train").run("train_digits", sc, str(tmp_path))
    kinds.get("train").draw(str(tmp_path), {"name": "train_digits", "scene": sc}, {})
    with open(tmp_path / "results.json") as f:
        results = json.load(f)
    assert results["curves"]["diffusion"]["tick"] == [0, 100, 200, 300]
    assert summary["random.final_accuracy"] == results["curves"]["random"]["accuracy"][-1]
    img = imread(tmp_path / "learning.png")
    # accuracy and loss on top, then a row of small panels per angle (update vs
    # backprop, W–F), one per weighted layer (4 layers): 2.3 in each, 100 dpi;
    # 3.2 + 2 × 2.5 in high and a line more per title line
    assert img.shape[1] == 920 and 820 <= img.shape[0] <= 900
    rgb = (img[..., :3] * 255).round().astype(int)
    for rule in ("diffusion", "random"):
        colour = np.array([int(RULE_COLOURS[rule][i:i + 2], 16) for i in (1, 3, 5)])
        assert (np.abs(rgb - colour).sum(axis=-1) < 10).sum() > 50, rule
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


@pytest.mark.parametrize("workers", [1, 2])
def test_rules_learning_side_by_side_equal_each_rule_alone(workers):
    """The rules learn in lockstep on one stream (in threads with workers > 1):
    every curve must be the one the rule gives trained alone on its own fresh
    stream, so no rule touches another's frames or weights."""
    rules = ["diffusion", "random", "learned", "itd-dy", "ar", "backprop"]
    sc = _digits_scene(rules=rules)
    sc = scene.apply_overrides(sc, ["run.ticks=120", "train.eval_every=40", "train.eval_size=60",
                                    "train.ar_iterations=5"], "train_digits")
    together, _ = training.train_scene(sc, workers=workers)
    setup = training.Setup(scene.spec_of(sc))
    for rule in rules:
        alone = training.train_rules([rule], setup)[rule]
        assert together[rule] == alone, rule


def test_a_rule_that_blows_up_stops_alone(monkeypatch):
    """A rule that diverges stops at the next evaluation and is reported (its
    remaining ticks told to progress at once); the others go on to the end."""
    from simulator.errors import NumericalError
    made = training.make_learner

    def make(rule, setup):
        learner = made(rule, setup)
        if rule == "random":
            ticks = iter(range(10**6))

            def step(u, y):
                if next(ticks) == 130:
                    raise NumericalError(130, 2, "activity")
            learner.step = step
        return learner
    monkeypatch.setattr(training, "make_learner", make)
    sc = _digits_scene(rules=["random", "backprop"])
    sc = scene.apply_overrides(sc, ["run.ticks=400", "train.eval_every=50"], "train_digits")
    told = []
    curves, summary = training.train_scene(sc, progress=told.append)
    assert summary["random.diverged"] and curves["random"]["tick"] == [0, 50, 100, 150]
    assert "tick 130" in curves["random"]["error"]
    assert curves["backprop"]["tick"][-1] == 400 and not summary["backprop.diverged"]
    assert sum(told) == 2 * 400


def test_gradient_angles_of_a_chain_engine(rng):
    """A chain on the engine: at a constant frame with frozen weights
    diffusion's g is backprop's gradient (fact A: angle ~0°); random
    feedback's hidden layers are not, and their angles equal those computed
    here from B by hand."""
    net = Network.random([5, 7, 6, 3], ["tanh", "tanh", "linear"], seed=4)
    u, y = rng.normal(size=(2, 5)), rng.normal(size=(2, 3))
    diff = Engine(Model.chain([5, 7, 6, 3], ["tanh", "tanh", "linear"], seed=4), loss="mse",
                  batch=2)
    for _ in range(3 * net.depth):
        diff.step(u, y)
    assert max(training.gradient_angles(diff, lambda s: (u, y), "mse")) < 1e-4
    fa = Engine(Model.chain([5, 7, 6, 3], ["tanh", "tanh", "linear"], seed=4), loss="mse",
                feedback="random", feedback_seed=3, batch=2)
    for _ in range(3 * net.depth):
        fa.step(u, y)
    fb = fa.feedback_weights()
    B = [fb[k] for k in fa.model.parameters() if k.endswith(".W")]
    W, b = net.weights, net.biases
    x1 = np.tanh(u @ W[0].T + b[0])
    x2 = np.tanh(x1 @ W[1].T + b[1])
    d3 = x2 @ W[2].T + b[2] - y
    d2 = (1 - x2 ** 2) * (d3 @ W[2])
    d1 = (1 - x1 ** 2) * (d2 @ W[1])
    f2 = (1 - x2 ** 2) * (d3 @ B[2])
    f1 = (1 - x1 ** 2) * (f2 @ B[1])
    want = [training._angle(f1.T @ u, d1.T @ u), training._angle(f2.T @ x1, d2.T @ x1), 0.0]
    np.testing.assert_allclose(training.gradient_angles(fa, lambda s: (u, y), "mse"), want,
                               atol=1e-6)
    assert want[0] > 10


def test_gradient_angles_compare_each_layer_with_the_frame_of_its_error(rng):
    """Pipelined options (frame derivative and pairing, d_y = L), frozen
    weights, a new random frame every tick: by fact B each layer's g is exactly
    backprop's gradient of the frame its δ carries (t − 2L + l), so every
    angle is ~0°, though no two layers use the same frame; a frame no longer
    at hand gives NaN."""
    from simulator.engine.tick import GraphEngine
    net = Network.random([4, 6, 5, 3], ["tanh", "tanh", "linear"], seed=7)
    L, n = net.depth, 20
    U, Y = rng.normal(size=(n, 2, 4)), rng.normal(size=(n, 2, 3))

    def frame(s):
        return (U[s], Y[s]) if -1 <= s < n else None
    opts = dict(loss="mse", derivative="frame", pairing="frame", supervision_delay=L, batch=2)
    for eng in (GraphEngine(net, **opts),):
        for k in range(n):
            eng.step(U[k], Y[k])
        assert max(training.gradient_angles(eng, frame, "mse")) < 1e-4   # arccos near 1: ~1e-6°
        gone = training.gradient_angles(eng, lambda s: None, "mse")
        assert len(gone) == L and np.isnan(gone).all()


def test_curves_keep_the_frames_every_layer_error_belongs_to():
    """With evaluations that end on a chunk of one tick, the frames the deeper
    layers' errors carry come from earlier chunks: every angle is measured."""
    sc = _digits_scene(rules=["diffusion"], supervision_delay=4)
    sc = scene.apply_overrides(sc, ["run.ticks=257", "train.eval_every=257",
                                    "train.eval_size=20"], "train_digits")
    curves, _ = training.train_scene(sc)
    last = curves["diffusion"]["grad_angles"][-1]
    assert len(last) == 4 and np.isfinite(last).all()


def test_the_angle_of_a_numerically_zero_update_is_undefined():
    """An update at rounding level next to backprop's gradient has no
    direction: NaN, not the 90°-ish noise its sign pattern happens to give;
    a small but real update keeps its angle."""
    G = np.arange(1.0, 7.0).reshape(2, 3)
    noise = 1e-19 * np.array([[1.0, -2.0, 0.5], [0.3, 1.0, -1.0]])
    assert np.isnan(training._angle(noise, G))
    assert np.isnan(training._angle(np.zeros((2, 3)), G))
    assert training._angle(1e-9 * G, G) == pytest.approx(0.0, abs=1e-5)
    assert training._angle(-1e-9 * G, G) == pytest.approx(180.0, abs=1e-5)
