"""Online learning on streams: a `train` scene trains a fresh copy of one initial
network once per rule (RULES: the tick engine's credit-assignment options, plus
``backprop``, ``ar`` and ``zil`` learners) on the same frames, each applying η to
the gradient summed over the batch; a plain forward pass tests every
``eval_every`` ticks."""
import contextlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..backend import rng
from ..build import build_network, build_stream, engine_options, seeds
from ..datasets import load_dataset
from ..errors import NumericalError
from ..model.reference import backprop as model_backprop
from ..model.reference import evaluate as model_evaluate
from ..engine.tick import GraphEngine
from ..options import loss_and_grad
from ..rules.predictive_coding import zil_model
from ..rules.relaxation import ActivationRelaxation
from ..scene import spec_of
from ..streams import make_teacher, moving_canvas, render, teacher_target

# rule name -> Engine options (None: a learner that is no tick engine).
RULES = {**{rule: {"feedback": feedback, "derivative": "local"} for rule, feedback in
            (("diffusion", "transpose"), ("random", "random"), ("sign", "sign"),
             ("frsf", "frsf"), ("brsf", "brsf"), ("learned", "learned"), ("dfa", "dfa"))},
         **{rule: {"feedback": "random", "derivative": rule} for rule in ("itd-y", "itd-dy")},
         **dict.fromkeys(("backprop", "ar", "zil"))}
# Rules whose feedback matrices are not W itself: their W–F angle is plotted (not dfa:
# its B_v projects the output's δ, of another shape than W).
ALIGNMENT_RULES = ("random", "sign", "frsf", "brsf", "learned", "itd-y", "itd-dy")
# A test loss this many times the initial one counts as a blow-up.
DIVERGENCE_FACTOR = 1e3


class Setup:
    """The shared pieces of a training scene from its ``spec``: initial network,
    test set, and fresh identical streams."""

    def __init__(self, spec):
        self.spec = spec
        self.sizes, self.acts = spec.network.shape
        self.seeds = seeds(spec.run.seed)
        self.model = build_network(spec.network, self.seeds.network)
        self.classify = spec.target.kind == "labels"
        self.new_stream()          # fail before any work on a bad stream/target/shape
        self.test_x, self.test_y = held_out(spec, self.model, self.seeds.teacher,
                                            spec.train.eval_size)

    def new_stream(self):
        """A fresh stream with the scene's seed (the same frames every time)."""
        return build_stream(self.spec, self.seeds, self.spec.train.loss)


def seed_setups(scene):
    """One Setup per run seed of a resolved `train` scene (train.seeds, or run.seed
    alone), each exactly the scene with run.seed = s."""
    spec = spec_of(scene)
    return [Setup(spec.with_run(seed=s)) for s in (list(spec.train.seeds) or [spec.run.seed])]


def held_out(spec, model, teacher_seed, n=0):
    """A diffusion or train scene's held-out set for ``model``: inputs in its input
    shape and their targets (``n`` of them; 0 = the whole test split, or 512 drawn)."""
    st, (sizes, acts) = spec.stream, spec.network.shape
    if spec.target.kind == "labels":
        # the held-out split of the data the stream trains on
        data = load_dataset(st.data, seed=spec.run.seed)
        # n < the split: a seeded random subset (the split keeps the file's order, and
        # files such as the MNIST sample are sorted by class)
        pick = np.arange(len(data.test_x))
        if 0 < n < len(pick):
            pick = np.sort(rng((spec.run.seed, 13)).permutation(len(pick))[:n])
        if st.kind != "moving":
            return _shaped(data.test_x[pick], model), data.test_targets[pick]
        # each digit once at a random sub-pixel position, seeded apart from the stream
        images = data.test_images[pick]
        H, W = moving_canvas(st, data.image_shape)
        h, w = data.image_shape
        # bounce: the image lies inside the canvas; wrap: anywhere on the torus
        span = np.array([H, W] if st.edges == "wrap" else [H - h, W - w], dtype=np.float64)
        pos = rng((spec.run.seed, 11)).uniform(0.0, 1.0, size=(len(images), 2)) * span
        frames = render(images, (H, W), pos, st.edges).reshape(len(images), -1)
        return _shaped(st.amplitude * frames, model), data.test_targets[pick]
    # Regression: held-out inputs drawn like the stream's frames, teacher targets.
    x = st.amplitude * rng((spec.run.seed, 7)).normal(size=(1, n or 512, sizes[0]))
    teacher = make_teacher(sizes, acts, teacher_seed, spec.target.scale)
    loss = spec.train.loss if spec.kind == "train" else spec.rule.loss
    return _shaped(x[0], model), teacher_target(teacher, loss)(x, None)[0]


def _shaped(x, model):
    return x.reshape((len(x),) + tuple(model.input_shape))


class BackpropLearner:
    """The baseline: W ← W − η ∂ℓ(u_t, y_t)/∂W on each tick's frame (biases too),
    by the oracle's backprop on the ``Model``; ``step`` takes u (B, *input shape), y (B, n_L)."""

    def __init__(self, model, loss, learning_rate, weight_decay=0.0):
        self.net, self.params = model, model.parameters()
        self.loss, self.eta, self.decay = loss, float(learning_rate), float(weight_decay)

    def step(self, u, y):
        self.params = self.update(u, y.reshape((len(y),) + self.net.output_shape))

    def update(self, u, y):
        """The parameters after one tick of online backprop on frame (u, y)."""
        keep = 1.0 - self.eta * self.decay
        grads = model_backprop(self.net, u, y, self.loss, self.params)
        return {k: (keep * p if k.endswith(".W") else p) - self.eta * grads[k]
                for k, p in self.params.items()}

    def network(self):
        return self.net.with_parameters(self.params)

    def current_model(self):         # a tick engine's name for it
        return self.network()


class ZILLearner(BackpropLearner):
    """The ``zil`` rule: one Z-IL update (Algorithm 1) per tick's frame."""

    @np.errstate(over="ignore", invalid="ignore")
    def update(self, u, y):
        return zil_model(self.net, u, y, self.eta, levelled=True, loss=self.loss,
                         params=self.params).params


class RelaxationLearner(BackpropLearner):
    """The ``ar`` rule: Activation Relaxation (exact variant) on each tick's
    frame, ``ar_iterations`` relaxation ticks at ``ar_eta_x``, then p ← p − η Δp."""

    def __init__(self, model, train, seed, eta):
        self.ar = ActivationRelaxation(model, "exact", eta_x=train.ar_eta_x,
                                       iterations=train.ar_iterations, loss=train.loss,
                                       feedback_seed=seed)
        self.net, self.eta = model, float(eta)

    def update(self, u, y):
        # ActivationRelaxation divides its rate by the batch size.
        self.ar.step(u, y, self.eta * len(u))

    def network(self):
        return self.ar.to_model()


def make_learner(rule, setup):
    """The learner for one rule, starting from the setup's initial weights."""
    train = setup.spec.train
    eta = float(train.rates.get(rule, train.learning_rate))     # else the scene's one rate
    if rule == "backprop":
        return BackpropLearner(setup.model, train.loss, eta, train.weight_decay)
    if rule == "ar":
        return RelaxationLearner(setup.model, train, setup.seeds.feedback, eta)
    if rule == "zil":
        return ZILLearner(setup.model, train.loss, eta)
    return GraphEngine(setup.model, **dict(engine_options(train, setup.spec, setup.seeds.feedback),
                                           learning_rate=eta, **RULES[rule]))


def evaluate(network, x, y, loss, classify):
    """Test (accuracy, mean loss) of the instantaneous forward pass; accuracy is
    NaN for regression targets."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        out = model_evaluate(network, x)[1][-1].reshape(len(x), -1)
        value = float(loss_and_grad(np, loss, out, y)[0]) / len(x)
    acc = float(np.mean(np.argmax(out, axis=1) == np.argmax(y, axis=1))) if classify else np.nan
    return acc, value


def alignment_angles(learner):
    """Degrees between each weight and its feedback matrix, but for vertices on
    the input (their F is never used); 0° is exact backprop."""
    if not isinstance(learner, GraphEngine):
        return []
    host = learner.backend.to_host
    fb, params, model = learner.feedback_weights(), learner.parameters(), learner.model
    out = []
    for k in (k for k in fb if any(model.vertex(k[:-2]).parents)):
        w, f = host(params[k]).ravel(), host(fb[k]).ravel()
        denom = np.linalg.norm(w) * np.linalg.norm(f)
        out.append(float(np.degrees(np.arccos(np.clip(w @ f / denom, -1, 1)))) if denom else np.nan)
    return out


# Every rule steps through a chunk of the stream before the next is drawn.
STREAM_CHUNK = 256
STREAM_BYTES = 32 * 2**20


def stream_chunk(batch, n_in, n_out):
    """Ticks per stream chunk: as many frames (``batch`` rows of ``n_in`` inputs
    and ``n_out`` targets, float64) as fit STREAM_BYTES, within 1..STREAM_CHUNK."""
    per_tick = 8 * int(batch) * (int(n_in) + int(n_out))
    return max(1, min(STREAM_CHUNK, STREAM_BYTES // per_tick))


class RuleRun:
    """One rule learning: its learner and its curve (tick, accuracy, loss, W–F
    ``angles``, update-vs-backprop ``grad_angles``), evaluated before the first
    tick and every ``eval_every`` ticks; a blow-up (non-finite, or a test loss
    DIVERGENCE_FACTOR times the initial one) stops it and is recorded."""

    def __init__(self, rule, setup):
        self.rule, self.setup, self.reported_stop, self.chunks = rule, setup, False, []
        # every wave's frame lies within 2·(vertices) + d_y ticks of the last
        self.keep = 2 * len(setup.model.vertices) + setup.spec.supervision_delay + 2
        self.learner = make_learner(rule, setup)
        self.loss = setup.spec.train.loss
        acc0, self.loss0 = evaluate(setup.model, setup.test_x, setup.test_y, self.loss,
                                    setup.classify)
        self.angles = alignment_angles if rule in ALIGNMENT_RULES else (lambda _: [])
        self.curve = {"tick": [0], "accuracy": [acc0], "loss": [self.loss0],
                      "angles": [self.angles(self.learner)], "grad_angles": [[]],
                      "diverged": False, "error": ""}

    def _frame(self, s):
        """Stream frame s (−1: the last one taken) from the kept chunks, or None."""
        if s == -1:
            t0, u, y = self.chunks[-1]
            return u[-1], y[-1]
        for t0, u, y in self.chunks:
            if 0 <= s - t0 < len(u):
                return u[s - t0], y[s - t0]
        return None

    def learn(self, u, y, t0):
        """Step the learner through frames u (n, B, ...), y (n, B, n_out) of
        stream ticks t0, t0 + 1, ..."""
        if self.curve["diverged"]:
            return
        # keep the frames whose errors the waves still carry (gradient_angles)
        self.chunks.append((t0, u, y))
        while len(self.chunks) > 1 and t0 + len(u) - self.chunks[1][0] >= self.keep:
            self.chunks.pop(0)
        backend = getattr(self.learner, "backend", None)
        if backend is not None and backend.device != "cpu":
            # one copy per chunk to the GPU; the host copy stays for gradient_angles
            u, y = backend.asarray(u), backend.asarray(y)
        try:
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                for k in range(len(u)):
                    self.learner.step(u[k], y[k])
                if isinstance(self.learner, GraphEngine):
                    self.learner.check_finite()
        except NumericalError as exc:
            self.curve["diverged"], self.curve["error"] = True, str(exc)

    def test(self, done):
        """Evaluate after ``done`` ticks; mark a blow-up."""
        c, setup = self.curve, self.setup
        acc, value = evaluate(self.learner.current_model(), setup.test_x, setup.test_y,
                              self.loss, setup.classify)
        for key, v in (("tick", done), ("accuracy", acc), ("loss", value),
                       ("angles", self.angles(self.learner))):
            c[key].append(v)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            c["grad_angles"].append(gradient_angles(self.learner, self._frame, self.loss)
                                    if not c["diverged"] else [])
        if c["diverged"] or not np.isfinite(value) or \
                value > DIVERGENCE_FACTOR * max(self.loss0, 1e-12):
            c["diverged"] = True
            c["error"] = c["error"] or f"test loss {value:.3g} at tick {done}"


def train_rules(rules, setup, progress=None, workers=1):
    """{rule: curve} of ``train_seeds`` on one setup."""
    return train_seeds(rules, [setup], progress, workers)[0]


def train_seeds(rules, setups, progress=None, workers=1):
    """Train every rule on every setup (one per seed) for run.ticks ticks in
    lockstep, each setup's stream drawn once per chunk in the run's dtype, in
    ``workers`` threads if > 1 (one learner per thread at a time: the same curves).
    Returns [{rule: curve}] per setup (see RuleRun); ``progress(n)`` is told every
    learner's ticks (a stopped learner's rest at once)."""
    sc = setups[0].spec
    ticks, every, dtype = sc.run.ticks, sc.train.eval_every, np.dtype(sc.run.dtype)
    groups = [[RuleRun(rule, setup) for rule in rules] for setup in setups]
    runs = [r for group in groups for r in group]
    streams = [setup.new_stream() for setup in setups]
    chunk = stream_chunk(sc.stream.batch, setups[0].sizes[0], setups[0].sizes[-1])
    pool = ThreadPoolExecutor(min(workers, len(runs))) if workers > 1 and len(runs) > 1 else None
    done = 0
    with pool or contextlib.nullcontext():
        while done < ticks and not all(r.reported_stop for r in runs):
            n = min(every, ticks - done)
            for start in range(0, n, chunk):
                t0, jobs = done + start, []
                for stream, group in zip(streams, groups):
                    u, y, _ = stream.take(min(chunk, n - start))
                    u, y = u.astype(dtype, copy=False), y.astype(dtype, copy=False)
                    jobs += [(r, u, y) for r in group]
                list((pool.map if pool else map)(lambda job: job[0].learn(*job[1:], t0), jobs))
            done += n
            for r in runs:
                if r.reported_stop:
                    continue                       # stopped at an earlier evaluation
                r.test(done)
                r.reported_stop = r.curve["diverged"]      # its remaining ticks are never run
                if progress is not None:
                    progress(ticks - done + n if r.reported_stop else n)
    return [{r.rule: r.curve for r in group} for group in groups]


# An update this much smaller than backprop's gradient is zero up to rounding:
# its direction is noise (two ways of summing one zero gave 89.6° and 92.2°).
ZERO_UPDATE = 1e-12


def _angle(g, G):
    """Degrees between two arrays as vectors; NaN when either is zero or
    ‖g‖ ≤ ZERO_UPDATE·‖G‖."""
    g, G = np.ravel(g).astype(np.float64), np.ravel(G).astype(np.float64)
    ng, nG = np.linalg.norm(g), np.linalg.norm(G)
    if not ng * nG or ng <= ZERO_UPDATE * nG:
        return np.nan
    return float(np.degrees(np.arccos(np.clip(g @ G / (ng * nG), -1, 1))))


def gradient_angles(learner, frame, loss):
    """Per weight matrix, degrees between the learner's update and backprop's
    gradient of the frame it belongs to (a tick engine's: its δ's supervision
    frame, so the angle is the rule's misalignment, not the waves' delay).
    ``frame(s)``: stream frame s as (u, y), None when gone (NaN), -1 the last.
    [] for backprop and Z-IL, whose update is backprop's."""
    if not isinstance(learner, (GraphEngine, RelaxationLearner)):
        return []
    model = learner.current_model()
    keys = [k for k in model.parameters() if k.endswith(".W")]

    def frame64(s):          # (u, y) of frame s in float64, y shaped like the output
        u, y = (np.asarray(a, dtype=np.float64) for a in frame(s))
        return u, y.reshape((len(y),) + tuple(model.output_shape))
    if isinstance(learner, GraphEngine):
        est, host = learner.gradients(), learner.backend.to_host
        sup = learner.tags()["supervision"]
        frames = [int(sup[model.vertex(k[:-2]).index]) for k in keys]
    else:
        backend = learner.ar.backend
        est = learner.ar.gradients(*map(backend.asarray, frame64(-1)))[0]
        host, frames = backend.to_host, [-1] * len(keys)
    refs = {s: None if frame(s) is None else model_backprop(model, *frame64(s), loss)
            for s in set(frames)}
    return [np.nan if refs[s] is None else _angle(host(est[k]), refs[s][k])
            for k, s in zip(keys, frames)]


def train_scene(scene, progress=None, setup=None, workers=1):
    """Train every rule of a resolved `train` scene on its first seed's ``setup``
    (if built; see train_rules); return (curves, summary) as train_all."""
    runs, summary = train_all(scene, progress, None if setup is None else [setup], workers)
    return runs[0][1], summary


def train_all(scene, progress=None, setups=None, workers=1):
    """Train every rule of a resolved `train` scene on every seed's setup (built by
    seed_setups if None); return ([(seed, curves)], summary): per rule its final
    accuracy and loss (NaN if diverged), best accuracy, diverged, stable (final loss
    below the first); over several seeds, the mean over the seeds that did not
    diverge, with ``_sd`` (sample sd) and ``seeds`` (how many), diverged if any did."""
    setups = seed_setups(scene) if setups is None else setups
    spec = setups[0].spec
    per_seed = train_seeds(spec.train.rules, setups, progress, workers)
    out = {}
    for rule in spec.train.rules:
        rows = [_final(runs[rule]) for runs in per_seed]
        if len(rows) == 1:
            out.update({f"{rule}.{k}": v for k, v in rows[0].items()})
            continue
        ok = [row for row in rows if not row["diverged"]]
        for key in ("final_accuracy", "final_loss", "best_accuracy"):
            values = np.array([row[key] for row in ok], dtype=float)
            out[f"{rule}.{key}"] = float(values.mean()) if len(values) else float("nan")
            out[f"{rule}.{key}_sd"] = float(values.std(ddof=1)) if len(values) > 1 \
                else float("nan")
        out.update({f"{rule}.seeds": len(ok), f"{rule}.diverged": len(ok) < len(rows),
                    f"{rule}.stable": all(row["stable"] for row in rows)})
    return [(s.spec.run.seed, runs) for s, runs in zip(setups, per_seed)], out


def _final(c):
    """One curve's final results (train_all)."""
    bad, acc = c["diverged"], c["accuracy"]
    return {"final_accuracy": float("nan") if bad else float(acc[-1]),
            "final_loss": float("nan") if bad else float(c["loss"][-1]),
            "best_accuracy": float(np.nanmax(acc)) if np.isfinite(acc).any() else float("nan"),
            "diverged": bool(bad), "stable": bool(not bad and c["loss"][-1] < c["loss"][0])}
