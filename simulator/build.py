"""Scene -> parts, written once: seeds, network, input stream, engine options.

ARCHITECTURE.md: ``scene ──builder──▶ Model + Streams + Rule``. Every place that
turns a scene into objects goes through here: a diffusion run
(``runner.Prepared``), online training (``training.Setup``), the relaxation
kinds (``relaxation_network``), sweeps (through those two) and the benchmarks.
It reads the scene's typed, frozen specs (``simulator.scene.spec_of``), never
the raw dict. The builder only builds and refuses; it never simulates, records
or draws.
"""
from collections import namedtuple

import numpy as np

from .backend import Backend
from .datasets import DIGITS_SHAPE, load_dataset
from .engine import Engine
from .errors import BudgetError, SceneError
from .model import Model
from .engine.compiled import CompiledEngine, jax_available, prefers_compiled
from .probes import format_bytes, parse_bytes
from .scene import spec_of
from .streams import (DatasetStream, ShapedStream, make_stream, make_teacher, moving_canvas,
                      moving_stream, teacher_target)

Seeds = namedtuple("Seeds", "network teacher stream feedback")
Seeds.__doc__ = "Independent child seeds of run.seed, one per random draw of a run."

# Keys of a [rule] (diffusion) or [train] section that are Engine keyword
# arguments of the same name; a section without one keeps Engine's default.
ENGINE_KEYS = ("loss", "feedback", "derivative", "pairing", "supervision_delay",
               "learning_rate", "accumulate", "weight_decay", "feedback_scale", "itd_epsilon")


def seeds(seed):
    """Independent child seeds for network, teacher, stream and feedback
    (``numpy.random.SeedSequence(seed).spawn(4)``), as a ``Seeds`` tuple."""
    children = np.random.SeedSequence(seed).spawn(4)
    return Seeds(*(int(c.generate_state(1)[0]) for c in children))


def build_network(net, seed):
    """The initial Model of a NetworkSpec: the chain ``Model.chain(sizes, ...)``
    (W ~ N(0, scale²/n_in), b ~ N(0, bias_scale²), drawn from ``seed``), or for
    a graph (``network.layers``) ``Model.from_layers(layers, input_shape, seed)``."""
    if net.graph:
        return Model.from_layers(net.layer_dicts(), list(net.input_shape), seed=seed)
    sizes, acts = net.shape
    return Model.chain(sizes, acts, seed=seed, scale=net.scale, bias_scale=net.bias_scale)


def build_stream(spec, seeds_, loss):
    """The scene's input stream with its target rule: dataset frames, or digits
    moving over a canvas (``moving_stream``), with their labels (a moving stream
    may take a teacher's targets instead), or a stream of ``stream.kind`` whose targets a random teacher network
    (seeded by ``seeds_.teacher``) computes under ``loss``. A fresh call gives
    the same frames (the stream's generator is seeded by ``seeds_.stream``).
    For a graph its frames come in the model's input and output shapes
    (``ShapedStream``); its teacher is one dense layer from the flat input to
    the flat output."""
    stream = _flat_stream(spec, seeds_, loss)
    skeleton = spec.network.skeleton
    if skeleton is None:
        return stream
    return ShapedStream(stream, skeleton.input_shape, skeleton.output_shape)


def _flat_stream(spec, seeds_, loss):
    st, tg = spec.stream, spec.target
    sizes, acts = spec.network.shape
    rng = np.random.default_rng(seeds_.stream)
    if st.kind == "moving":
        return _moving(spec, seeds_, loss, sizes, acts, rng)
    if st.kind == "dataset":
        if tg.kind != "labels":
            raise SceneError("key 'target.kind': a dataset stream takes 'labels'")
        data = load_dataset(st.data, seed=spec.run.seed)
        _check_shape(spec, sizes, data.image_shape, data.n_classes,
                     f"the {st.data} images have {data.n_features} pixels "
                     f"({'x'.join(map(str, data.image_shape))})")
        return DatasetStream(sizes[0], st.batch, rng, data.train_x, data.train_targets,
                             hold=st.hold, crossfade=st.crossfade)
    if tg.kind == "labels":
        raise SceneError("key 'target.kind': 'labels' needs stream.kind = 'dataset' or 'moving'")
    if st.kind == "held" and st.crossfade >= st.hold and st.crossfade:
        raise SceneError(f"key 'stream.crossfade': expected fewer than stream.hold = {st.hold} "
                         f"ticks, got {st.crossfade}")
    teacher = make_teacher(sizes, acts, seeds_.teacher, tg.scale)
    target = teacher_target(teacher, loss, spec.run.dtype, spec.run.device)
    params = {"amplitude": st.amplitude}
    if st.kind == "held":
        params.update(hold=st.hold, crossfade=st.crossfade)
    elif st.kind == "smooth":
        params["tau"] = st.tau
    elif st.kind == "sine":
        params["period"] = st.period
    return make_stream(st.kind, sizes[0], st.batch, rng, target, **params)


def _check_shape(spec, sizes, image, n_classes, what):
    """Refuse a network whose input (and, with label targets, output) size
    does not fit the images of a dataset or moving stream."""
    labels, n_in = spec.target.kind == "labels", int(np.prod(image))
    if sizes[0] == n_in and (sizes[-1] == n_classes or not labels):
        return
    graph = spec.network.graph
    key = "network.input_shape" if graph else "network.inputs"
    if sizes[0] == n_in:
        key = "network.layers" if graph else "network.outputs"
    outs = f" and an output of {n_classes} classes" if labels else ""
    shape = f" (network.input_shape [1, {image[0]}, {image[1]}] or [{n_in}])" if graph else ""
    raise SceneError(f"key {key!r}: {what}: expected {n_in} inputs{shape}{outs}, got "
                     f"{sizes[0]} inputs and {sizes[-1]} outputs")


def _moving(spec, seeds_, loss, sizes, acts, rng):
    """A moving stream over the training part of stream.data (labels or a teacher)."""
    st, tg = spec.stream, spec.target
    data = load_dataset(st.data, seed=spec.run.seed)
    H, W = moving_canvas(st, data.image_shape)
    _check_shape(spec, sizes, (H, W), data.n_classes,
                 f"the moving stream's canvas is {H}x{W} = {H * W} pixels")
    target = None
    if tg.kind != "labels":
        target = teacher_target(make_teacher(sizes, acts, seeds_.teacher, tg.scale), loss,
                                spec.run.dtype, spec.run.device)
    return moving_stream(st, data.train_images, data.train_labels, data.n_classes, rng, target)


def engine_options(section, spec, feedback_seed):
    """Engine keyword arguments from the RuleSpec or TrainSpec ``section`` of
    ``spec`` (its ENGINE_KEYS), the stream's batch and the run's device and dtype."""
    kw = {k: getattr(section, k) for k in ENGINE_KEYS if hasattr(section, k)}
    run = spec.run
    kw.update(batch=spec.stream.batch, feedback_seed=feedback_seed,
              device=run.device, dtype=run.dtype)
    if spec.network.graph:
        kw["levelled"] = spec.network.levelled
    return kw


class Parts:
    """A diffusion scene built: ``sizes``, ``activations``, ``seeds``, the initial
    ``network`` (a Model: a chain, or the graph ``network.layers`` describes),
    the input ``stream`` and ``engine_args``; ``engine()`` makes a
    fresh Engine (the one graph engine) from them. Building checks the device and the stream/target
    pair, so a bad scene is refused here, before any tick."""

    def __init__(self, spec):
        self.sizes, self.activations = spec.network.shape
        self.seeds = seeds(spec.run.seed)
        self.network = build_network(spec.network, self.seeds.network)
        Backend(spec.run.device, spec.run.dtype)   # fail early on a missing device
        self.stream = build_stream(spec, self.seeds, spec.rule.loss)
        self.engine_args = engine_options(spec.rule, spec, self.seeds.feedback)
        self.backend = _tick_backend(spec, self.network)

    def engine(self):
        """A new Engine on the initial network with the scene's rule options
        (the compiled CompiledEngine when run.backend chose jax)."""
        if self.backend == "jax":
            return CompiledEngine(self.network, **self.engine_args)
        return Engine(self.network, **self.engine_args)


def _tick_backend(spec, network):
    """'numpy' or 'jax' for run.backend: jax runs any network (chain or graph)
    on the CPU and needs the extra; 'auto' takes it where ``prefers_compiled``
    says it is faster. A backend that cannot run this scene is one SceneError."""
    want = spec.run.backend
    if want == "numpy":
        return "numpy"
    cpu = spec.run.device == "cpu"
    if want == "auto":
        return "jax" if cpu and prefers_compiled(network, spec.stream.batch) else "numpy"
    if not cpu:
        raise SceneError(f"key 'run.backend': 'jax' runs on the CPU, got run.device = "
                         f"{spec.run.device!r}")
    if not jax_available():
        raise SceneError("key 'run.backend': 'jax' needs the jax extra: "
                         "pip install 'tickprop[jax]'")
    return "jax"


def build(scene):
    """Parts of a resolved diffusion scene (see ``Parts``), read into its specs once."""
    return Parts(spec_of(scene))


def relaxation_network(spec):
    """Keyword arguments of ``relaxation.run_converge``/``run_train`` for the
    network of an ar_converge/ar_train SceneSpec (sizes, activations, weight
    and bias scales, device, dtype); relaxation needs a hidden layer."""
    net, run = spec.network, spec.run
    if len(net.sizes) < 3:
        raise SceneError("key 'network.sizes': relaxation needs a hidden layer (3 widths or more)")
    digits = spec.kind == "ar_train" or spec.relaxation.data == "digits"
    if digits and (net.sizes[0], net.sizes[-1]) != DIGITS_SHAPE:
        raise SceneError(f"key 'network.sizes': the digits have {DIGITS_SHAPE[0]} inputs and "
                         f"{DIGITS_SHAPE[1]} classes, so expected sizes from {DIGITS_SHAPE[0]} to "
                         f"{DIGITS_SHAPE[1]}, got {list(net.sizes)}")
    sizes, acts = net.shape
    relaxation_budget(spec, sizes)
    return dict(sizes=sizes, activations=acts, weight_scale=net.scale,
                bias_scale=net.bias_scale, device=run.device, dtype=run.dtype)


def relaxation_budget(spec, sizes):
    """Refuse (BudgetError, before anything is allocated) a relaxation whose
    float64 weights (with feedback, gradients and a learned copy: 4 sets) and
    activity buffers (8 per layer and sample) exceed relaxation.memory_budget.
    Returns the estimate in bytes."""
    converge = spec.kind == "ar_converge"
    batch_key = "relaxation.batch" if converge else "train.batch"
    batch = spec.relaxation.batch if converge else spec.train.batch
    weights = 8 * 4 * sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    activity = 8 * 8 * batch * sum(sizes)
    budget = parse_bytes(spec.relaxation.memory_budget)
    if weights + activity > budget:
        raise BudgetError(
            f"this relaxation would take {format_bytes(weights + activity)}, over the memory "
            f"budget of {format_bytes(budget)} (relaxation.memory_budget); shrink weights "
            f"{format_bytes(weights)}: narrower or fewer layers (network.sizes); activity "
            f"{format_bytes(activity)}: a smaller {batch_key}")
    return weights + activity


__all__ = ["Seeds", "Parts", "seeds", "build_network", "build_stream",
           "engine_options", "build", "relaxation_network", "relaxation_budget"]
