"""Online learning on streams: the tick engine trains, a plain forward pass tests.

A `train` scene builds one network, one stream and one test set, then trains a
fresh copy of the same initial network once per rule on the same frames in the
same order (each rule gets a new stream from the same seed), so the learning
curves are comparable. Rules are the engine's credit-assignment options
(backprop diffusion with transpose, random, sign or learned feedback, and the
temporal-differencing derivatives of paper 004 with random feedback) plus the
baseline ``backprop``: instantaneous backprop on every tick's frame with the
same learning rate. Every ``eval_every`` ticks the current weights are tested
with an instantaneous forward pass (accuracy and mean loss on the test set).
"""
import numpy as np

from .build import build_network, build_stream, engine_options, network_shape, seeds
from .datasets import load_digits
from .engine import Engine
from .errors import NumericalError, SceneError
from .reference import factors, forward
from .options import loss_and_grad
from .scene import TRAIN, TRAIN_SECTIONS  # noqa: F401 (the train schema lives in scene.py)
from .streams import make_teacher, teacher_target

# rule name -> Engine options (None = the instantaneous backprop baseline).
RULES = {
    "diffusion": {"feedback": "transpose", "derivative": "local"},
    "random": {"feedback": "random", "derivative": "local"},
    "sign": {"feedback": "sign", "derivative": "local"},
    "learned": {"feedback": "learned", "derivative": "local"},
    "itd-y": {"feedback": "random", "derivative": "itd-y"},
    "itd-dy": {"feedback": "random", "derivative": "itd-dy"},
    "backprop": None,
}
# Rules whose feedback matrices are not W itself: their W–F angle is plotted.
ALIGNMENT_RULES = ("random", "sign", "learned", "itd-y", "itd-dy")
# A test loss this many times the initial one counts as a blow-up.
DIVERGENCE_FACTOR = 1e3


class Setup:
    """The shared pieces of a training scene (simulator.build): initial network,
    test set, and a factory for fresh identical streams."""

    def __init__(self, scene):
        self.scene = scene
        self.sizes, self.acts = network_shape(scene["network"])
        self.seeds = seeds(scene["run"]["seed"])
        self.network = build_network(scene["network"], self.seeds.network)
        self.classify = scene["target"]["kind"] == "labels"
        self.test_x, self.test_y = self._test_set(scene)
        self.new_stream()          # fail before any work on a bad stream/target pair

    def _test_set(self, scene):
        train, n = scene["train"], scene["train"]["eval_size"]
        if self.classify:
            if scene["stream"]["kind"] != "dataset":
                raise SceneError("key 'target.kind': 'labels' needs stream.kind = 'dataset'")
            data = load_digits(seed=scene["run"]["seed"])
            if data.n_features != self.sizes[0] or data.n_classes != self.sizes[-1]:
                raise SceneError(f"key 'network.inputs'/'network.outputs': the digits need "
                                 f"{data.n_features} inputs and {data.n_classes} outputs, "
                                 f"got {self.sizes[0]} and {self.sizes[-1]}")
            n = n or len(data.test_x)
            return data.test_x[:n], data.test_targets[:n]
        # Regression: held-out inputs drawn like the stream's frames, teacher targets.
        n = n or 512
        rng = np.random.default_rng(np.random.SeedSequence([scene["run"]["seed"], 7]))
        x = scene["stream"]["amplitude"] * rng.normal(size=(1, n, self.sizes[0]))
        teacher = make_teacher(self.sizes, self.acts, self.seeds.teacher, scene["target"]["scale"])
        return x[0], teacher_target(teacher, train["loss"])(x, None)[0]

    def new_stream(self):
        """A fresh stream with the scene's seed: every rule sees the same frames."""
        return build_stream(self.scene, self.seeds, self.scene["train"]["loss"])

    def engine_options(self, rule):
        """Engine keyword arguments of a diffusion-family rule (see RULES)."""
        return dict(engine_options(self.scene["train"], self.scene, self.seeds.feedback),
                    **RULES[rule])


class BackpropLearner:
    """The baseline: instantaneous backprop on each tick's frame,
    W ← W − η ∂ℓ(u_t, y_t)/∂W (summed over the batch, biases too)."""

    def __init__(self, network, loss, learning_rate, weight_decay=0.0):
        self.net = network.copy()
        self.loss, self.eta, self.decay = loss, float(learning_rate), float(weight_decay)

    def step(self, u, y):
        """One tick of online backprop on frame (u, y), u (B, n_0), y (B, n_L)."""
        pairs, _ = factors(self.net, u, y, self.loss)
        keep = 1.0 - self.eta * self.decay
        for i, (x, d) in enumerate(pairs):
            self.net.weights[i] = keep * self.net.weights[i] - self.eta * (d.T @ x)
            self.net.biases[i] = self.net.biases[i] - self.eta * d.sum(axis=0)

    def network(self):
        return self.net


def make_learner(rule, setup):
    """The learner for one rule, starting from the setup's initial weights."""
    train = setup.scene["train"]
    if RULES[rule] is None:
        return BackpropLearner(setup.network, train["loss"], train["learning_rate"],
                               train["weight_decay"])
    return Engine(setup.network, **setup.engine_options(rule))


def evaluate(network, x, y, loss, classify):
    """Test (accuracy, mean loss) of the instantaneous forward pass; accuracy is
    NaN for regression targets."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        xs, _ = forward(network, x)
        value = float(loss_and_grad(np, loss, xs[-1], y)[0]) / len(x)
    acc = float(np.mean(np.argmax(xs[-1], axis=1) == np.argmax(y, axis=1))) if classify else np.nan
    return acc, value


def alignment_angles(learner):
    """Angle in degrees between W_l and its feedback F_l for l = 1..L−1 (F_0 is
    never used), flattened; 0° is exact backprop."""
    if not isinstance(learner, Engine):
        return []
    host = learner.backend.to_host
    out = []
    for w, f in list(zip(learner.weights(), learner.feedback_matrices()))[1:]:
        w, f = host(w).ravel(), host(f).ravel()
        denom = np.linalg.norm(w) * np.linalg.norm(f)
        out.append(float(np.degrees(np.arccos(np.clip(w @ f / denom, -1, 1)))) if denom else np.nan)
    return out


def train_rule(rule, setup, progress=None):
    """Train one rule for run.ticks ticks; return its curves (ticks, accuracy,
    loss, alignment angles) and whether it diverged (non-finite or a test loss
    DIVERGENCE_FACTOR times the initial one)."""
    sc = setup.scene
    ticks, every, loss = sc["run"]["ticks"], sc["train"]["eval_every"], sc["train"]["loss"]
    learner = make_learner(rule, setup)
    stream = setup.new_stream()
    acc0, loss0 = evaluate(setup.network, setup.test_x, setup.test_y, loss, setup.classify)
    # Diffusion's F is W itself (angle 0): only the other feedbacks are tracked.
    angles = alignment_angles if rule in ALIGNMENT_RULES else (lambda _: [])
    curve = {"tick": [0], "accuracy": [acc0], "loss": [loss0],
             "angles": [angles(learner)], "diverged": False, "error": ""}
    done = 0
    while done < ticks:
        n = min(every, ticks - done)
        u, y, _ = stream.take(n)
        try:
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                for k in range(n):
                    learner.step(u[k], y[k])
                if isinstance(learner, Engine):
                    learner.check_finite()
        except NumericalError as exc:
            curve["diverged"], curve["error"] = True, str(exc)
        done += n
        acc, value = evaluate(learner.network(), setup.test_x, setup.test_y, loss,
                              setup.classify)
        curve["tick"].append(done)
        curve["accuracy"].append(acc)
        curve["loss"].append(value)
        curve["angles"].append(angles(learner))
        if progress is not None:
            progress(n)
        if curve["diverged"] or not np.isfinite(value) or value > DIVERGENCE_FACTOR * max(loss0, 1e-12):
            curve["diverged"] = True
            curve["error"] = curve["error"] or f"test loss {value:.3g} at tick {done}"
            if progress is not None and done < ticks:
                progress(ticks - done)
            break
    return curve


def summarize(curves):
    """Flat summary numbers per rule: final accuracy and loss (NaN if diverged),
    best accuracy, whether it diverged, and whether it is stable (no blow-up and
    a final test loss below the initial one)."""
    out = {}
    for rule, c in curves.items():
        bad = c["diverged"]
        out[f"{rule}.final_accuracy"] = float("nan") if bad else float(c["accuracy"][-1])
        out[f"{rule}.final_loss"] = float("nan") if bad else float(c["loss"][-1])
        out[f"{rule}.best_accuracy"] = float(np.nanmax(c["accuracy"])) if np.isfinite(
            c["accuracy"]).any() else float("nan")
        out[f"{rule}.diverged"] = bool(bad)
        # Stable: no blow-up and the test loss ended below where it started.
        out[f"{rule}.stable"] = bool(not bad and c["loss"][-1] < c["loss"][0])
    return out


def train_scene(scene, progress=None, setup=None):
    """Train every rule of a resolved `train` scene (on ``setup`` if already
    built); return (curves, summary)."""
    setup = Setup(scene) if setup is None else setup
    curves = {rule: train_rule(rule, setup, progress) for rule in scene["train"]["rules"]}
    return curves, summarize(curves)


__all__ = ["RULES", "TRAIN_SECTIONS", "Setup", "BackpropLearner", "train_scene", "train_rule",
           "summarize", "evaluate", "alignment_angles"]
