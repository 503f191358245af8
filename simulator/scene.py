"""The one scene schema: every kind's sections, loading, validation and overrides.

A scene is a TOML file: top-level ``description`` and ``kind``, then sections
of keys. Every key of every kind is declared here once, as a field object of
one of the field types of simulator.fields (Int, Float, Str, Bool, Size,
ListOf, Window, Tuple, Table); each type checks its own values and writes its
own error message, and a list checks every entry with its entry's message. Loading
fills in the defaults and checks everything before any work, so a bad scene
fails with one SceneError naming the file, the key, what was expected and what
was given, with a did-you-mean for typos::

    fig.toml: key 'network.sizes[2]': expected an integer in 1..65536, got 0

The resolved scene (all defaults filled) is what run.json stores and replays.
This module imports no other scene-kind module: the kinds' code imports their
sections from here.
"""
import copy
import json
import os
import re
import tomllib

from .datasets import DATASETS
from .errors import SceneError
from .paths import scenes_dir
# Field and size_bytes are re-exported: callers know them as scene.Field, scene.size_bytes.
from .fields import (INT_DIGITS, Bool, Field, Float, Int, Layers, ListOf, Size, Str, Table,  # noqa: F401
                     Tuple, Window, closest, did_you_mean, show, size_bytes)
from .model import LayerError, Model
from .model.layers import ACTIVATIONS
from .options import DERIVATIVE, FEEDBACK, LOSSES, PAIRING, REFERENCE
from .streams import EDGES, INPUTS, TARGETS

SCENES_DIR = scenes_dir()
# A scene or run.json larger than this is not one (a binary file given by mistake).
MAX_FILE_BYTES = 16 * 2**20
_did_you_mean = did_you_mean     # the old private name


# ------------------------------------------------------------------ the sections
ACTS = tuple(ACTIVATIONS)
WIDTH = 65536           # widest layer
DEPTH = 512             # deepest network (L)
TICKS = 10**8           # longest run
BIG = 1e6               # largest rate, scale or decay (beyond it every run diverges)
SEED = 2**32 - 1        # largest seed


def _width(doc):
    return Int(16, doc, 1, WIDTH)


NETWORK = {
    "depth": Int(9, "L, the index of the output layer (L+1 levels)", 1, DEPTH),
    "width": _width("neurons per hidden layer"),
    "inputs": _width("neurons in layer 0"),
    "outputs": _width("neurons in layer L"),
    "sizes": ListOf(Int(16, "width", 1, WIDTH), [],
                    "explicit widths of layers 0..L (overrides depth/width/inputs/outputs)",
                    min_len=2, max_len=DEPTH + 1, empty_ok=True),
    "hidden": Str("tanh", "σ of layers 1..L−1", ACTS),
    "output": Str("linear", "σ of layer L", ACTS),
    "scale": Float(1.0, "weights ~ N(0, scale²/n_in)", 0.0, BIG),
    "bias_scale": Float(0.0, "biases ~ N(0, bias_scale²)", 0.0, BIG),
}
# A diffusion scene's network may be any graph of layers (simulator.Model).
GRAPH_NETWORK = dict(NETWORK, **{
    "layers": Layers([], "a graph of layers {name, kind, from, ...} ([[network.layers]]; "
                     "overrides the chain keys)", WIDTH, max_len=DEPTH),
    "input_shape": ListOf(Int(1, "size", 1, WIDTH), [],
                          "shape of one input frame with network.layers, e.g. [1, 8, 8]",
                          min_len=1, max_len=3, empty_ok=True),
    "levelled": Bool(False, "run the graph levelled (identity vertices, Algorithm 2)"),
})
CANVAS = 4096           # widest canvas of a moving stream, pixels
STREAM = {
    "kind": Str("held", "input stream", INPUTS),
    "batch": Int(1, "independent streams side by side", 1, WIDTH),
    "hold": Int(16, "ticks each frame is held (held, dataset) or each digit is shown (moving)",
                1, TICKS),
    "crossfade": Int(0, "ticks of linear blend into each new frame or digit", 0, TICKS),
    "tau": Float(8.0, "correlation time of smooth noise, ticks", 1e-9, TICKS),
    "period": Float(32.0, "period of sine inputs, ticks", 1e-9, TICKS),
    "amplitude": Float(1.0, "input scale (not dataset)", 0.0, BIG),
    "data": Str("digits", "images of dataset and moving streams: scikit-learn's 8x8 digits "
                "or the 28x28 MNIST sample (both from the data extra)", tuple(DATASETS)),
    "canvas": ListOf(Int(16, "canvas side", 1, CANVAS), [],
                     "[height, width] of the canvas a moving digit crosses, pixels "
                     "(empty = twice the image's)", min_len=2, max_len=2, empty_ok=True),
    "speed": Float(1.0, "pixels per tick a moving digit travels (sub-pixel speeds "
                   "interpolate bilinearly)", 0.0, CANVAS),
    "direction": Float(0.0, "degrees of the motion, counterclockwise from rightwards "
                       "(90 = up)", -360.0, 360.0),
    "edges": Str("bounce", "a moving digit bounces off the canvas edges or wraps around",
                 EDGES),
    "jitter": Float(0.0, "saccade amplitude, pixels (moving)", 0.0, CANVAS),
    "jitter_every": Int(0, "ticks between saccades (moving; 0 = none)", 0, TICKS),
    "stagger": Bool(False, "moving: the batch's rows change digit at evenly spread ticks "
                    "of the hold, not all at once"),
}
TARGET = {
    "kind": Str("teacher", "teacher network or dataset labels", TARGETS),
    "scale": Float(1.0, "teacher weight scale", 0.0, BIG),
}
RULE = {
    "loss": Str("mse", "ℓ", tuple(LOSSES)),
    "feedback": Str("transpose", "F_l in the backward wave", FEEDBACK),
    "derivative": Str("local", "D[t,l] in the backward wave", DERIVATIVE),
    "pairing": Str("local", "which x g pairs δ with", PAIRING),
    "supervision_delay": Int(0, "d_y: target of frame t−d_y at tick t", 0, 4 * DEPTH),
    "learning_rate": Float(0.0, "η; 0 freezes the weights", 0.0, BIG),
    "accumulate": Int(1, "apply the summed g every k ticks", 1, TICKS),
    "weight_decay": Float(0.0, "decay of W (and learned B) per update", 0.0, BIG),
    "feedback_scale": Float(1.0, "random B ~ N(0, scale²/n_in)", 0.0, BIG),
    "itd_epsilon": Float(1e-6, "itd-dy keeps the last quotient where |Δa| < ε", 0.0, BIG),
    "reference": Str("input", "frame the mismatch compares with", REFERENCE),
}
RUN = {
    "ticks": Int(200, "ticks to simulate", 1, TICKS),
    "seed": Int(0, "seeds every random draw", 0, SEED),
    "device": Str("cpu", "cpu (numpy) or cuda (cupy)", ("cpu", "cuda")),
    "dtype": Str("float64", "float32 or float64", ("float32", "float64")),
    "threads": Int(0, "BLAS threads (0 = automatic: one when the machine is busy or in a "
                      "sweep worker, else the usable cores up to 4)", 0, 1024),
    "backend": Str("numpy", "the tick loop: numpy, jax (the compiled chunk loop, any "
                   "network on the CPU, extra 'jax') or auto (jax where it is faster)",
                   ("numpy", "jax", "auto")),
}
RECORD = {
    "states": Bool(True, "record full neuron states"),
    "every": Int(1, "record states every k ticks", 1, TICKS),
    "layers": ListOf(Int(0, "layer", 0, DEPTH), [],
                     "layers whose states are recorded (empty = all)", max_len=DEPTH + 1),
    "metrics": Bool(True, "reference gradients and mismatch per tick"),
    "chunk": Int(256, "ticks per host transfer", 1, WIDTH),
    "memory_budget": Size("1GiB", "refuse runs whose recording exceeds this", 1, 2**50),
    "compress": Bool(False, "deflate trace.npz (smaller file, several times the run's time)"),
}
RENDER = {
    "png": Bool(True, "write waves.png and mismatch.png"),
    "gif": Bool(True, "write waves.gif"),
    "every": Int(1, "one GIF frame every k ticks", 1, TICKS),
    "size": Tuple([Int(720, "width", 320, 4000), Int(400, "height", 200, 4000)],
                  ["width", "height"], [720, 400], "GIF width and height in pixels"),
    "color": Str("both", "raster colouring", ("magnitude", "tag", "both")),
    "windows": ListOf(Window([0, 1], "window", TICKS), [],
                      "tick windows [start, stop] drawn as raster panels (empty = the whole run)",
                      max_len=16),
}
SEED_DEVICE = {k: RUN[k] for k in ("seed", "device", "dtype", "threads")}  # no backend: not a tick engine

AR_VARIANTS = ("exact", "random", "learned", "no-derivative", "learned-no-derivative")
ETA_X = Float(0.1, "relaxation rate", 1e-9, 1.999999)
AR_NETWORK = {
    "sizes": ListOf(Int(16, "width", 1, WIDTH), [64, 300, 300, 100, 10],
                    "widths of layers 0..L (a hidden layer at least)", min_len=3,
                    max_len=DEPTH + 1),
    "hidden": Str("relu", "σ of layers 1..L−1", ACTS),
    "output": Str("linear", "σ of layer L", ACTS),
    "scale": Float(1.0, "weights ~ N(0, scale²/n_in)", 0.0, BIG),
    "bias_scale": Float(0.0, "biases ~ N(0, bias_scale²)", 0.0, BIG),
}
AR_COMMON = {
    "iterations": Int(100, "relaxation ticks K per update", 1, 10**6),
    "loss": Str("mse", "ℓ", tuple(LOSSES)),
    "init": Str("forward", "relaxation starts from the forward sweep or zero", ("forward", "zero")),
    "feedback_scale": Float(1.0, "random ψ ~ N(0, scale²/n_in)", 0.0, BIG),
    "memory_budget": Size("1GiB", "refuse relaxations whose weights and activity "
                          "buffers exceed this", 1, 2**50),
}
AR_CONVERGE = dict(AR_COMMON, **{
    "variant": Str("exact", "AR variant (paper 001 Eqs. 5–8)", AR_VARIANTS),
    "eta_x": ListOf(ETA_X, [0.05, 0.1, 0.2, 0.5, 1.0], "relaxation rates to compare",
                    min_len=1, max_len=64),
    "batch": Int(64, "samples relaxed together", 1, WIDTH),
    "data": Str("digits", "digits images or gaussian inputs", ("digits", "gaussian")),
})
AR_TRAIN = dict(AR_COMMON, **{
    "variants": ListOf(Str("exact", "variant", AR_VARIANTS), list(AR_VARIANTS),
                       "AR variants trained beside backprop", min_len=1,
                       max_len=len(AR_VARIANTS), unique=True),
    "eta_x": ETA_X,
    "solver": Str("closed-form", "the state after K relaxation ticks: closed-form (the exact "
                  "binomial sum of the linear analysis, one cost whatever K) or ticks "
                  "(stepped K times; the same weights to rounding, about 10x slower)",
                  ("closed-form", "ticks")),
})
SEEDS = ListOf(Int(0, "seed", 0, SEED), [0, 1, 2], "one run per seed", min_len=1, max_len=1000)
TRAIN_BATCHES = {
    "lr": Float(0.05, "SGD rate on the batch-mean gradient", 1e-12, BIG),
    "batch": Int(64, "minibatch size", 1, WIDTH),
    "epochs": Int(20, "sweeps through the training digits", 1, 10**5),
    "seeds": SEEDS,
    "eval_every": Int(0, "minibatches between evaluations (0 = once per epoch)", 0, 10**8),
    "test_fraction": Float(0.25, "share of digits held out", 0.01, 0.99),
}

PC_ARCHITECTURES = ("mlp", "cnn", "rnn", "residual", "attention")
PC_TABLE = {
    "dtypes": ListOf(Str("float64", "dtype", ("float32", "float64")), ["float64", "float32"],
                     "precisions of Table 1", min_len=1, max_len=2, unique=True),
    "levelled": Str("both", "Table 1 on levelled graphs, unlevelled ones, or both",
                    ("both", "levelled", "unlevelled")),
    "il_steps": Int(20, "IL inference ticks T in Table 2", 1, 10**5),
    "repeats": Int(10, "Table 2 keeps the fastest of this many runs", 1, 1000),
}
PC_WAVE = {
    "architecture": Str("residual", "graph builder", PC_ARCHITECTURES),
    "method": Str("zil", "Z-IL (γ = 1, level k learns at tick k) or IL", ("zil", "il")),
    "levelled": Bool(True, "insert identity vertices first (Algorithm 2)"),
    "il_steps": Int(20, "IL inference ticks T", 1, 10**5),
    "gamma": Float(0.1, "IL inference rate γ", 1e-9, BIG),
    "lr": Float(0.01, "parameter learning rate α", 0.0, BIG),
}
PC_RUN = {k: RUN[k] for k in ("seed", "dtype")}
LOCKING = {
    "depth": Int(9, "L, the index of the output layer", 1, 64),
    "frames": Int(6, "frames pushed through both schedules", 1, 200),
    "gif": Bool(True, "also write locking.gif (a tick cursor over both)"),
    "every": Int(1, "one GIF frame every k ticks", 1, 10**6),
}

# The learning rules of a `train` scene (simulator.training.RULES says what each runs).
TRAIN_RULES = ("diffusion", "random", "sign", "learned", "itd-y", "itd-dy", "backprop", "ar",
               "zil")
TRAIN = {
    "rules": ListOf(Str("diffusion", "rule", TRAIN_RULES), ["diffusion", "backprop"],
                    "learning rules to train, one run each (one name = a one-rule list)",
                    min_len=1, max_len=len(TRAIN_RULES), unique=True, single=True),
    "learning_rate": Float(0.01, "η, applied every tick", 0.0, BIG),
    "loss": Str("xent", "ℓ", ("mse", "xent", "linear")),
    "supervision_delay": Int(0, "d_y: target of frame t−d_y at tick t", 0, 4 * DEPTH),
    "eval_every": Int(200, "ticks between test evaluations", 1, TICKS),
    "eval_size": Int(0, "test samples (0 = the whole test split)", 0, 10**6),
    "feedback_scale": Float(1.0, "random B ~ N(0, scale²/n_in)", 0.0, BIG),
    "weight_decay": Float(0.0, "decay of W per update", 0.0, BIG),
    "itd_epsilon": Float(1e-6, "itd-dy keeps the last quotient where |Δa| < ε", 0.0, BIG),
    "ar_iterations": Int(100, "rule ar: relaxation ticks K per frame (paper 001: 100)", 1, 10**5),
    "ar_eta_x": Float(0.1, "rule ar: relaxation rate η_x (paper 001: 0.1)", 1e-9, 1.0),
    "memory_budget": Size("1GiB", "refuse runs whose engine (weights, buffers, rings, "
                          "stream) exceeds this", 1, 2**50),
}
TRAIN_SECTIONS = {"network": GRAPH_NETWORK, "stream": STREAM, "target": TARGET, "train": TRAIN,
                  "run": RUN}

SUMMARIES = ("auto", "mismatch", "training")
SWEEP = {
    "base": Str("fig3_fast", "the scene every point starts from (name or path)"),
    "grid": Table({}, "axes: \"section.key\" = [values]; the points are their product",
                  lists=True),
    "set": Table({}, "overrides applied to every point before the grid's", lists=False),
    "seeds": ListOf(Int(0, "seed", 0, SEED), [0], "run.seed values; every grid cell runs each",
                    min_len=1, max_len=100),
    "summary": Str("auto", "what a point reports (auto: by the base kind)", SUMMARIES),
    "steady_from": Float(0.5, "steady state = ticks after this fraction of the run", 0.0, 0.99),
    "threshold": Float(0.9, "mean cosine that defines the boundary h*(L)", -1.0, 1.0),
    "point_timeout": Float(0.0, "seconds a point may run before it fails (0 = automatic: "
                           "600 + 0.1 a tick and rule, an ar rule's ticks counted "
                           "ar_iterations times)", 0.0, 10.0**9),
    "no_worker_timeout": Float(30.0, "Dask: seconds with no worker (points pending) before "
                               "the unfinished points fail", 0.1, 10.0**9),
}
SWEEP_SECTIONS = {"sweep": SWEEP}

SCHEMAS = {
    "diffusion": {"network": GRAPH_NETWORK, "stream": STREAM, "target": TARGET,
                  "rule": RULE, "run": RUN, "record": RECORD, "render": RENDER},
    "train": TRAIN_SECTIONS,
    "sweep": SWEEP_SECTIONS,
    "ar_converge": {"network": AR_NETWORK, "relaxation": AR_CONVERGE, "run": SEED_DEVICE},
    "ar_train": {"network": AR_NETWORK, "relaxation": AR_TRAIN, "train": TRAIN_BATCHES,
                 "run": SEED_DEVICE},
    "pc_table": {"table": PC_TABLE, "run": {"seed": RUN["seed"]}},
    "pc_wave": {"wave": PC_WAVE, "run": PC_RUN},
    "locking": {"locking": LOCKING},
}
TOP = ("description", "kind")

# No option is parsed and ignored. The chain keys of a [network] that
# network.layers (a graph) replaces, each with what the graph takes instead;
# and the keys only a graph reads.
CHAIN_ONLY = {
    "depth": "one [[network.layers]] entry per layer",
    "width": "each layer's units (dense, linear) or channels (conv2d)",
    "inputs": "network.input_shape",
    "outputs": "the last layer's units",
    "sizes": "network.input_shape and each layer's units or channels",
    "hidden": "each layer's activation",
    "scale": "each layer's scale",
    "bias_scale": "each layer's bias_scale",
}
GRAPH_ONLY = ("input_shape", "levelled")
# Keys that only some variants of a kind read, per kind: "section.key" ->
# (the selector "section.key" that picks the variant, the selector's values
# whose variant reads the key; a list selector reads it if it holds one).
# On/off switches (render.gif, record.states, locking.gif) are no variants:
# switching one off leaves its keys dormant, as --no-gif does.
_STREAM_KEYS = {
    **{f"stream.{key}": ("stream.kind", ("moving",))
       for key in ("canvas", "speed", "direction", "edges", "jitter", "jitter_every", "stagger")},
    "stream.tau": ("stream.kind", ("smooth",)),
    "stream.period": ("stream.kind", ("sine",)),
    "stream.hold": ("stream.kind", ("held", "dataset", "moving")),
    "stream.crossfade": ("stream.kind", ("held", "dataset", "moving")),
    "stream.data": ("stream.kind", ("dataset", "moving")),
    "stream.amplitude": ("stream.kind", ("constant", "held", "smooth", "sine", "moving")),
    "target.scale": ("target.kind", ("teacher",)),
}
_PSI_VARIANTS = ("random", "learned", "learned-no-derivative")
VARIANT_KEYS = {
    "diffusion": dict(_STREAM_KEYS, **{
        "rule.feedback_scale": ("rule.feedback", ("random", "learned")),
        "rule.itd_epsilon": ("rule.derivative", ("itd-dy",)),
    }),
    "train": dict(_STREAM_KEYS, **{
        "train.feedback_scale": ("train.rules", ("random", "learned", "itd-y", "itd-dy")),
        "train.itd_epsilon": ("train.rules", ("itd-dy",)),
        "train.ar_iterations": ("train.rules", ("ar",)),
        "train.ar_eta_x": ("train.rules", ("ar",)),
    }),
    "ar_converge": {"relaxation.feedback_scale": ("relaxation.variant", _PSI_VARIANTS)},
    "ar_train": {"relaxation.feedback_scale": ("relaxation.variants", _PSI_VARIANTS)},
    "pc_wave": {"wave.il_steps": ("wave.method", ("il",)),
                "wave.gamma": ("wave.method", ("il",))},
}


def register_kind(kind, sections):
    """Declare the sections ({section: {key: Field}}) of another scene kind."""
    SCHEMAS[kind] = sections


# ------------------------------------------------------------------ validation
def _kind_of(raw, source):
    kind = raw.get("kind", "diffusion")
    if not isinstance(kind, str):
        raise SceneError(f"{source}: key 'kind': expected a string naming the scene kind "
                         f"(one of {', '.join(SCHEMAS)}), got {show(kind, typed=True)}")
    if kind not in SCHEMAS:
        raise SceneError(f"{source}: key 'kind': expected one of {', '.join(SCHEMAS)}, "
                         f"got {show(kind)}{did_you_mean(kind, SCHEMAS)}")
    return kind


def _owners(name, sections_of_kind=None):
    """Where a section or key name is known elsewhere, as a hint."""
    if sections_of_kind is not None:
        kinds = [k for k, sch in SCHEMAS.items() if name in sch]
        return (f"; [{name}] belongs to {' or '.join(repr(k) for k in kinds)} scenes (set kind)"
                if kinds else "")
    sections = sorted({s for sch in SCHEMAS.values() for s, f in sch.items() if name in f})
    return f"; {name!r} is a key of [{'] or ['.join(sections)}]" if sections else ""


def validate(raw, source):
    """Check a parsed scene (a dict from TOML or run.json) and return it
    resolved, every default filled; raise SceneError naming ``source``, the key,
    what was expected and what was given. An empty scene (no kind, no section)
    is refused: it is always a mistake."""
    if not isinstance(raw, dict):
        raise SceneError(f"{source}: expected a table of sections, got {show(raw, typed=True)}")
    if "kind" not in raw and not any(name not in TOP for name in raw):
        raise SceneError(f"{source}: the scene is empty: expected a 'kind' and sections "
                         "(start from a shipped scene, see `tickprop scenes`)")
    kind = _kind_of(raw, source)
    schema = SCHEMAS[kind]
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise SceneError(f"{source}: key 'description': expected a string, "
                         f"got {show(description, typed=True)}")
    resolved = {"description": description, "kind": kind}
    for name, value in raw.items():
        if name in TOP:
            continue
        if name not in schema:
            if isinstance(value, dict):
                raise SceneError(f"{source}: unknown section {show(name)}"
                                 f"{did_you_mean(name, list(schema))}; a {kind} scene has "
                                 f"{', '.join(schema)}{_owners(name, schema)}")
            raise SceneError(f"{source}: unknown top-level key {show(name)}"
                             f"{did_you_mean(name, list(schema) + list(TOP))}; the top level "
                             f"holds description, kind and sections{_owners(name)}")
        if not isinstance(value, dict):
            raise SceneError(f"{source}: {name!r} must be a section ([{name}]), "
                             f"got {show(value, typed=True)}")
    for section, fields in schema.items():
        given = raw.get(section, {})
        for key in given:
            if key not in fields:
                raise SceneError(f"{source}: unknown key {show(section + '.' + str(key))}"
                                 f"{did_you_mean(key, fields)}; [{section}] accepts "
                                 f"{', '.join(fields)}")
        resolved[section] = {
            key: field.check(given[key], f"{source}: key '{section}.{key}'") if key in given
            else copy.deepcopy(field.default)
            for key, field in fields.items()}
    if kind in ("diffusion", "train"):
        check_graph(resolved["network"], source)
        _check_graph_output(resolved, source)
    check_variant_keys(resolved, source)
    return resolved


def _is_set(section, fields, key):
    """Whether a resolved section's ``key`` differs from its field's default
    (a resolved scene no longer says which keys were written)."""
    return section[key] != fields[key].default


def check_variant_keys(resolved, source):
    """Refuse a key that the scene's variant does not read (VARIANT_KEYS: a
    moving stream's canvas on a held stream, IL's steps under Z-IL, ...), set
    to anything but its default: one SceneError naming the key, the selector
    that makes it unread and the selector's values that read it."""
    schema = SCHEMAS[resolved["kind"]]
    for key, (selector, readers) in VARIANT_KEYS.get(resolved["kind"], {}).items():
        section, name = key.split(".")
        if not _is_set(resolved[section], schema[section], name):
            continue
        chosen = resolved[selector.split(".")[0]][selector.split(".")[1]]
        if isinstance(chosen, list):
            if any(v in readers for v in chosen):
                continue
            when = f"{selector} holds {' or '.join(show(v) for v in readers)}"
        elif chosen in readers:
            continue
        else:
            when = f"{selector} is {' or '.join(show(v) for v in readers)}"
        raise SceneError(f"{source}: key {key!r}: only read when {when}, and {selector} is "
                         f"{show(chosen)}; expected it left out, given {show(resolved[section][name])}")


def _check_graph_output(resolved, source):
    """On a graph, network.output is the σ of the teacher that makes the
    targets; with label targets nothing reads it."""
    net = resolved["network"]
    if net["layers"] and resolved["target"]["kind"] == "labels" \
            and _is_set(net, GRAPH_NETWORK, "output"):
        raise SceneError(f"{source}: key 'network.output': on a graph (network.layers) it is "
                         "the output σ of the teacher, and target.kind is 'labels' (no teacher); "
                         "a graph takes its last layer's activation instead; expected it left "
                         f"out, given {show(net['output'])}")


def check_graph(net, source):
    """Check a resolved [network] whose ``layers`` describe a graph: the
    layers and ``input_shape`` must build a Model (every mistake one SceneError
    naming ``source`` and the entry, "key 'network.layers[2].kernel'"), and no
    chain key (CHAIN_ONLY) may be set; a chain may set no graph key
    (GRAPH_ONLY). Returns the model's skeleton (no parameters), or None for a
    chain."""
    if not net.get("layers"):
        for key in GRAPH_ONLY:
            if key in net and _is_set(net, GRAPH_NETWORK, key):
                raise SceneError(f"{source}: key 'network.{key}': applies only with "
                                 "network.layers (a graph); this network is a chain; expected "
                                 f"it left out, got {show(net[key])}")
        return None
    for key, instead in CHAIN_ONLY.items():
        if _is_set(net, GRAPH_NETWORK, key):
            raise SceneError(f"{source}: key 'network.{key}': applies to chain networks only, "
                             "and network.layers describes a graph; a graph takes "
                             f"{instead} instead; expected it left out, got {show(net[key])}")
    if not net["input_shape"]:
        raise SceneError(f"{source}: key 'network.input_shape': expected the shape of one "
                         "input frame (e.g. [64] or [1, 8, 8]) with network.layers, got []")
    try:
        return Model.skeleton(net["layers"], net["input_shape"])
    except LayerError as exc:
        if exc.index is None:
            key = "network.input_shape" if exc.key == "input_shape" else "network.layers"
            where = f"key '{key}'"
        else:
            named = f" (layer {exc.name!r})" if exc.name is not None else ""
            where = f"key 'network.layers[{exc.index}].{exc.key}'{named}"
        raise SceneError(f"{source}: {where}: {exc.detail}") from None


# ------------------------------------------------------------------ files
def list_scenes():
    """Names of the scenes shipped in scenes/."""
    if not os.path.isdir(SCENES_DIR):
        return []
    return sorted(f[:-5] for f in os.listdir(SCENES_DIR) if f.endswith(".toml"))


def find_scene(name_or_path):
    """Path of a scene given as a file path (a .toml scene or a run.json) or as
    a name in scenes/; SceneError with a did-you-mean when there is none."""
    if os.path.isdir(name_or_path):
        inside = os.path.join(name_or_path, "run.json")
        hint = f" (did you mean {inside!r}?)" if os.path.isfile(inside) else ""
        raise SceneError(f"{name_or_path!r} is a folder: expected a scene name, a .toml scene "
                         f"file or a run.json{hint}")
    if os.path.isfile(name_or_path):
        return name_or_path
    candidate = os.path.join(SCENES_DIR, name_or_path + ".toml")
    if os.path.isfile(candidate):
        return candidate
    folder, base = os.path.split(name_or_path)
    if folder or name_or_path.endswith((".toml", ".json")):
        try:
            near = sorted(os.listdir(folder or "."))
        except OSError:
            near = []
        close = closest(base, near)
        hint = f" (did you mean {os.path.join(folder, close)!r}?)" if close else ""
        raise SceneError(f"scene file {show(name_or_path)} not found{hint}")
    raise SceneError(f"scene {show(name_or_path)} not found (neither a file nor a name in "
                     f"{SCENES_DIR}){did_you_mean(name_or_path, list_scenes())}")


def _read_text(path):
    """The text of a scene or run.json file, or SceneError saying why not."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise SceneError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(data) > MAX_FILE_BYTES:
        raise SceneError(f"{path}: expected a scene file of at most "
                         f"{MAX_FILE_BYTES // 2**20} MiB, got a larger file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SceneError(f"{path}: not a text file (not UTF-8 at byte {exc.start})") from None


def _parse_toml(text, source):
    """tomllib.loads with every failure turned into one SceneError."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SceneError(f"{source}: not valid TOML ({exc})") from None
    except RecursionError:
        raise SceneError(f"{source}: not valid TOML (arrays or tables nested too deeply)") from None
    except ValueError:
        # Only an integer over Python's digit limit gets here.
        match = re.search(r"[0-9][0-9_]{%d,}" % INT_DIGITS, text)
        where = f" line {text.count(chr(10), 0, match.start()) + 1}:" if match else ""
        digits = len(match.group(0).replace("_", "")) if match else INT_DIGITS + 1
        raise SceneError(f"{source}: not valid TOML:{where} an integer with {digits} digits "
                         f"(at most {INT_DIGITS} are read)") from None


def load(name_or_path):
    """Load a TOML scene or a run.json (replay); return (name, resolved scene)."""
    path = find_scene(name_or_path)
    if path.endswith(".json"):
        return load_run_json(path)
    raw = _parse_toml(_read_text(path), path)
    name = os.path.splitext(os.path.basename(path))[0]
    return name, validate(raw, path)


MAX_NAME = 200          # longest scene name a run.json may hold


def check_run_name(name, path):
    """The ``name`` of a run.json, refused unless it could be the base name of
    a scene file: a string of 1..MAX_NAME printable characters (spaces and
    non-ASCII letters included: `my scene.toml`, `szené.toml`) with no path
    separator and not only dots. Where a replay writes is made safe by
    ``outputs.default_out``; this refuses names no scene file can have."""
    if (not isinstance(name, str) or not 0 < len(name) <= MAX_NAME or not name.isprintable()
            or "/" in name or "\\" in name or name.strip(".") == ""):
        raise SceneError(f"{path}: key 'name': expected a scene name (the base name of its "
                         f"file: up to {MAX_NAME} printable characters, no '/' or '\\', not "
                         f"only dots), got {show(name, typed=True)}")
    return name


def load_run_json(path):
    """The name and resolved scene stored in a run.json, validated again; the
    name must be one a scene file can have (``check_run_name``)."""
    text = _read_text(path)
    try:
        meta = json.loads(text)
    except (ValueError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)[:120]
        raise SceneError(f"{path}: not a tickprop run.json (not valid JSON: {reason})") from None
    if not isinstance(meta, dict) or "scene" not in meta or "name" not in meta:
        raise SceneError(f"{path}: not a tickprop run.json (expected an object with "
                         "'name' and 'scene')")
    name = check_run_name(meta["name"], path)
    if not isinstance(meta["scene"], dict):
        raise SceneError(f"{path}: key 'scene': expected a table of sections, "
                         f"got {show(meta['scene'], typed=True)}")
    return name, validate(meta["scene"], path)


# ------------------------------------------------------------------ overrides
def _set_value(text, item):
    """The value of one --set: TOML when it parses (numbers, booleans, lists,
    inline tables, quoted strings), else the text itself as a string."""
    try:
        doc = tomllib.loads(f"v = {text}")
    except tomllib.TOMLDecodeError:
        return text
    except RecursionError:
        raise SceneError(f"--set {show(item)}: the value is nested too deeply") from None
    except ValueError:
        raise SceneError(f"--set {show(item)}: an integer with more than {INT_DIGITS} digits") from None
    if set(doc) != {"v"}:
        raise SceneError(f"--set {show(item)}: expected one value after '='")
    return doc["v"]


def _section_of(raw, kind, section, name, what):
    """raw[section] after checking section.name exists for this kind."""
    schema = SCHEMAS[kind]
    if section not in schema:
        raise SceneError(f"{what}: unknown section {show(section)}"
                         f"{did_you_mean(section, list(schema))}; a {kind} scene has "
                         f"{', '.join(schema)}")
    if name not in schema[section]:
        raise SceneError(f"{what}: unknown key {show(section + '.' + name)}"
                         f"{did_you_mean(name, schema[section])}; [{section}] accepts "
                         f"{', '.join(schema[section])}")
    if not isinstance(raw.get(section), dict):
        raw[section] = {}
    return raw[section]


def apply_overrides(scene, overrides, source, values=None):
    """Apply 'section.key=value' overrides (``--set``; values parsed as TOML,
    else taken as strings), after ``values`` ({'section.key': python value},
    from typed CLI options), and return the scene validated again. Unknown
    sections and keys are refused naming the override, with a did-you-mean."""
    raw = copy.deepcopy(scene)
    kind = _kind_of(raw, source)
    for key, value in (values or {}).items():
        section, _, name = key.partition(".")
        if name not in SCHEMAS[kind].get(section, {}):
            raise SceneError(f"{source}: a {kind} scene has no key {key!r}, so its command-line "
                             f"option does not apply (its sections: {', '.join(SCHEMAS[kind])})")
        _section_of(raw, kind, section, name, key)[name] = value
    for item in overrides:
        key, eq, text = item.partition("=")
        parts = key.strip().split(".")
        if not eq or len(parts) != 2 or not all(parts):
            raise SceneError(f"--set {show(item)}: expected SECTION.KEY=VALUE, "
                             "e.g. rule.feedback=random")
        section, name = parts
        value = _set_value(text, item)
        _section_of(raw, kind, section, name, f"--set {show(item)}")[name] = value
    return validate(raw, source)


def describe(name):
    """The one-line description of a shipped scene (or its load error)."""
    try:
        return load(name)[1]["description"]
    except SceneError as exc:
        return f"(invalid: {exc})"


def network_sizes(net):
    """Widths of layers 0..L from a resolved [network] section."""
    if net["sizes"]:
        if len(net["sizes"]) < 2:
            raise SceneError("key 'network.sizes': expected at least two widths (layers 0 and L)")
        return list(net["sizes"])
    return [net["inputs"]] + [net["width"]] * (net["depth"] - 1) + [net["outputs"]]
