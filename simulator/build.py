"""Scene -> parts (ARCHITECTURE.md: ``scene ──builder──▶ Model + Streams + Rule``)
from the typed specs, for every run, trainer and sweep: it builds and refuses,
never simulates, records or draws."""
from collections import namedtuple

import numpy as np

from .analysis.pairing import frame_period, frame_spreads, pairing_warning
from .backend import Backend
from .datasets import DIGITS_SHAPE, load_dataset
from .engine import Engine
from .errors import BudgetError, SceneError
from .model import Model
from .engine.compiled import CompiledEngine, jax_available, prefers_compiled
from .probes import format_bytes, parse_bytes
from .scene import read_parameters, spec_of
from .streams import (DatasetStream, ShapedStream, make_stream, make_teacher, moving_canvas,
                      moving_stream, teacher_target)

Seeds = namedtuple("Seeds", "network teacher stream feedback")

# Keys of a [rule] or [train] section that are Engine keyword arguments of the
# same name; a section without one keeps Engine's default.
ENGINE_KEYS = ("loss", "feedback", "derivative", "pairing", "supervision_delay",
               "learning_rate", "accumulate", "weight_decay", "feedback_scale", "itd_epsilon")


def seeds(seed):
    """Independent child seeds of run.seed (``SeedSequence(seed).spawn(4)``)."""
    children = np.random.SeedSequence(seed).spawn(4)
    return Seeds(*(int(c.generate_state(1)[0]) for c in children))


def build_network(net, seed):
    """The initial Model of a NetworkSpec: ``Model.chain`` or, for a graph,
    ``Model.from_layers``, drawn from ``seed``, or with the parameters of the
    file ``network.parameters`` names (float64, exactly; ``seed`` then unused)."""
    if net.graph:
        model = Model.from_layers(net.layer_dicts(), list(net.input_shape), seed=seed)
        if not net.parameters:
            return model
        where = "key 'network.parameters'"
        return model.with_parameters(read_parameters(net.parameters, model, where))
    sizes, acts = net.shape
    return Model.chain(sizes, acts, seed=seed, scale=net.scale, bias_scale=net.bias_scale)


def build_stream(spec, seeds_, loss):
    """The scene's input stream with its targets: labels (dataset, moving) or a
    random teacher's under ``loss``; the same frames on every call. For a graph
    the frames come in the model's shapes, the teacher mapping flat to flat."""
    stream = _flat_stream(spec, seeds_, loss)
    skeleton = spec.network.skeleton
    if skeleton is None:
        return stream
    return ShapedStream(stream, skeleton.input_shape, skeleton.output_shape)


def _flat_stream(spec, seeds_, loss):
    st, tg = spec.stream, spec.target
    sizes, acts = spec.network.shape
    rng = np.random.default_rng(seeds_.stream)

    def teacher():
        return teacher_target(make_teacher(sizes, acts, seeds_.teacher, tg.scale), loss,
                              spec.run.dtype, spec.run.device)
    if st.kind == "moving":
        data = load_dataset(st.data, seed=spec.run.seed)
        H, W = moving_canvas(st, data.image_shape)
        _check_shape(spec, sizes, (H, W), data.n_classes,
                     f"the moving stream's canvas is {H}x{W} = {H * W} pixels")
        return moving_stream(st, data.train_images, data.train_labels, data.n_classes, rng,
                             None if tg.kind == "labels" else teacher())
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
    keys = {"held": ("hold", "crossfade"), "smooth": ("tau",), "sine": ("period",)}
    params = {k: getattr(st, k) for k in ("amplitude",) + keys.get(st.kind, ())}
    return make_stream(st.kind, sizes[0], st.batch, rng, teacher(), **params)


def _check_shape(spec, sizes, image, n_classes, what):
    """Refuse a network whose input (and output, with labels) misfits the images."""
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


def engine_options(section, spec, feedback_seed):
    """Engine keyword arguments from a RuleSpec or TrainSpec ``section`` and ``spec``."""
    kw = {k: getattr(section, k) for k in ENGINE_KEYS if hasattr(section, k)}
    kw.update(batch=spec.stream.batch, feedback_seed=feedback_seed,
              device=spec.run.device, dtype=spec.run.dtype)
    kw["supervision_delay"] = spec.supervision_delay
    if spec.network.graph:
        kw["levelled"] = spec.levelled
    return kw


def pairing_warnings(spec, section, model):
    """[the one warning line] of a learning run of ``model`` whose updates pair
    different frames at most weighted layers for its stream (analysis.pairing), else []."""
    period = frame_period(spec.stream)
    if not spec.learning or period is None:
        return []
    d_y = spec.supervision_delay
    spreads = frame_spreads(model, loss=section.loss, supervision_delay=d_y,
                            derivative=getattr(section, "derivative", "local"),
                            pairing=getattr(section, "pairing", "local"),
                            feedback=getattr(section, "feedback", "transpose"),
                            levelled=bool(spec.levelled))
    line = pairing_warning(spreads, period, d_y, spec.network.output_level)
    return [line] if line else []


class Parts:
    """A diffusion scene built: the initial ``network``, the ``stream``, the
    ``engine_args``; ``engine()`` makes a fresh engine. A bad device or
    stream/target pair is refused here, before any tick."""

    def __init__(self, spec):
        seeds_ = seeds(spec.run.seed)
        self.network = build_network(spec.network, seeds_.network)
        Backend(spec.run.device, spec.run.dtype)   # fail early on a missing device
        self.stream = build_stream(spec, seeds_, spec.rule.loss)
        self.engine_args = engine_options(spec.rule, spec, seeds_.feedback)
        self.backend = _tick_backend(spec, self.network)

    def engine(self):
        """A new Engine (CompiledEngine when run.backend chose jax)."""
        if self.backend == "jax":
            return CompiledEngine(self.network, **self.engine_args)
        return Engine(self.network, **self.engine_args)


def _tick_backend(spec, network):
    """'numpy' or 'jax' for run.backend ('auto': jax where ``prefers_compiled``,
    never for brsf feedback, whose draws are on the host); jax runs on the CPU and
    needs the extra, else SceneError."""
    want = spec.run.backend
    if want == "numpy":
        return "numpy"
    cpu = spec.run.device == "cpu"
    if want == "auto":
        jax = cpu and spec.rule.feedback != "brsf" and prefers_compiled(network, spec.stream.batch)
        return "jax" if jax else "numpy"
    if not cpu:
        raise SceneError(f"key 'run.backend': 'jax' runs on the CPU, got run.device = "
                         f"{spec.run.device!r}")
    if not jax_available():
        raise SceneError("key 'run.backend': 'jax' needs the jax extra: "
                         "pip install 'tickprop[jax]'")
    return "jax"


def build(scene):
    """Parts of a resolved diffusion scene."""
    return Parts(spec_of(scene))


def relaxation_network(spec):
    """Keyword arguments of ``relaxation.run_converge``/``run_train`` for an
    ar_converge/ar_train SceneSpec's network (which needs a hidden layer);
    BudgetError when its buffers exceed relaxation.memory_budget."""
    net, run = spec.network, spec.run
    if len(net.sizes) < 3:
        raise SceneError("key 'network.sizes': relaxation needs a hidden layer (3 widths or more)")
    digits = spec.kind == "ar_train" or spec.relaxation.data == "digits"
    if digits and (net.sizes[0], net.sizes[-1]) != DIGITS_SHAPE:
        raise SceneError(f"key 'network.sizes': the digits have {DIGITS_SHAPE[0]} inputs and "
                         f"{DIGITS_SHAPE[1]} classes, so expected sizes from {DIGITS_SHAPE[0]} to "
                         f"{DIGITS_SHAPE[1]}, got {list(net.sizes)}")
    sizes, acts = net.shape
    # The bytes of float64 weights (4 sets: with feedback, gradients and a learned
    # copy) and activity (8 buffers per layer and sample), before any allocation.
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
    return dict(sizes=sizes, activations=acts, weight_scale=net.scale,
                bias_scale=net.bias_scale, device=run.device, dtype=run.dtype)

