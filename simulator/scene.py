"""Scene schema, loading, validation and the resolved-scene round trip.

A scene is a TOML file: top-level ``description`` and ``kind``, then sections
of keys. Every key is declared here once (type, default, allowed values,
meaning); loading fills in the defaults and checks everything before any work,
so a bad scene fails with one message naming the file, the key, what was
expected and what was given (with a did-you-mean for typos). The resolved
scene (all defaults filled) is what run.json stores and replays.
"""
import copy
import difflib
import json
import os
import tomllib

from .errors import SceneError
from .paths import scenes_dir
from .options import DERIVATIVE, FEEDBACK, LOSSES, PAIRING, REFERENCE
from .network import ACTIVATIONS
from .streams import INPUTS, TARGETS

SCENES_DIR = scenes_dir()


class Field:
    """One scene key: its type, default, allowed values or range, and meaning."""

    def __init__(self, kind, default, doc, choices=None, low=None, high=None):
        self.kind, self.default, self.doc = kind, default, doc
        self.choices, self.low, self.high = choices, low, high

    def check(self, value, where):
        """Return the value converted to its type, or raise SceneError."""
        value = self._typed(value, where)
        if self.choices is not None and self.kind != "str_list" and value not in self.choices:
            hint = _did_you_mean(str(value), self.choices)
            raise SceneError(f"{where}: expected one of {', '.join(map(str, self.choices))}, "
                             f"got {value!r}{hint}")
        items = value if self.kind.endswith("_list") else [value]
        if self.kind == "window_list":
            items = [v for pair in value for v in pair]
        if self.kind == "str_list" and self.choices is not None:
            items = []
            for v in value:
                if v not in self.choices:
                    raise SceneError(f"{where}: expected entries from {', '.join(self.choices)}, "
                                     f"got {v!r}{_did_you_mean(v, self.choices)}")
        for v in items:
            if isinstance(v, (int, float)) and self.low is not None and v < self.low:
                raise SceneError(f"{where}: expected a value >= {self.low}, got {value!r}")
            if isinstance(v, (int, float)) and self.high is not None and v > self.high:
                raise SceneError(f"{where}: expected a value <= {self.high}, got {value!r}")
        return value

    def _typed(self, value, where):
        kind = self.kind
        ok = {
            "int": isinstance(value, int) and not isinstance(value, bool),
            "float": isinstance(value, (int, float)) and not isinstance(value, bool),
            "str": isinstance(value, str),
            "bool": isinstance(value, bool),
            "int_list": isinstance(value, list) and all(
                isinstance(v, int) and not isinstance(v, bool) for v in value),
            "float_list": isinstance(value, list) and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in value),
            "str_list": isinstance(value, list) and all(isinstance(v, str) for v in value),
            "window_list": isinstance(value, list) and all(
                isinstance(p, list) and len(p) == 2 and all(
                    isinstance(v, int) and not isinstance(v, bool) for v in p) for p in value),
            "size": (isinstance(value, (int, str)) and not isinstance(value, bool)),
        }[kind]
        if not ok:
            names = {"int": "an integer", "float": "a number", "str": "a string",
                     "bool": "true or false", "int_list": "a list of integers",
                     "size": "a size such as '1GiB' or a number of bytes"}
            raise SceneError(f"{where}: expected {names[kind]}, got {value!r} "
                             f"({type(value).__name__})")
        if kind == "float_list":
            return [float(v) for v in value]
        return float(value) if kind == "float" else value


def _did_you_mean(word, known):
    close = difflib.get_close_matches(word, [str(k) for k in known], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


ACTS = tuple(ACTIVATIONS)

NETWORK = {
    "depth": Field("int", 9, "L, the index of the output layer (L+1 levels)", low=1, high=512),
    "width": Field("int", 16, "neurons per hidden layer", low=1, high=65536),
    "inputs": Field("int", 16, "neurons in layer 0", low=1, high=65536),
    "outputs": Field("int", 16, "neurons in layer L", low=1, high=65536),
    "sizes": Field("int_list", [], "explicit widths of layers 0..L (overrides depth/width/inputs/outputs)", low=1),
    "hidden": Field("str", "tanh", "σ of layers 1..L−1", choices=ACTS),
    "output": Field("str", "linear", "σ of layer L", choices=ACTS),
    "scale": Field("float", 1.0, "weights ~ N(0, scale²/n_in)", low=0.0),
    "bias_scale": Field("float", 0.0, "biases ~ N(0, bias_scale²)", low=0.0),
}
STREAM = {
    "kind": Field("str", "held", "input stream", choices=INPUTS),
    "batch": Field("int", 1, "independent streams side by side", low=1),
    "hold": Field("int", 16, "ticks each frame is held (held, dataset)", low=1),
    "crossfade": Field("int", 0, "ticks of linear blend into each new frame", low=0),
    "tau": Field("float", 8.0, "correlation time of smooth noise, ticks", low=1e-9),
    "period": Field("float", 32.0, "period of sine inputs, ticks", low=1e-9),
    "amplitude": Field("float", 1.0, "input scale", low=0.0),
}
TARGET = {
    "kind": Field("str", "teacher", "teacher network or dataset labels", choices=TARGETS),
    "scale": Field("float", 1.0, "teacher weight scale", low=0.0),
}
RULE = {
    "loss": Field("str", "mse", "ℓ", choices=tuple(LOSSES)),
    "feedback": Field("str", "transpose", "F_l in the backward wave", choices=FEEDBACK),
    "derivative": Field("str", "local", "D[t,l] in the backward wave", choices=DERIVATIVE),
    "pairing": Field("str", "local", "which x g pairs δ with", choices=PAIRING),
    "supervision_delay": Field("int", 0, "d_y: target of frame t−d_y at tick t", low=0),
    "learning_rate": Field("float", 0.0, "η; 0 freezes the weights", low=0.0),
    "accumulate": Field("int", 1, "apply the summed g every k ticks", low=1),
    "weight_decay": Field("float", 0.0, "decay of W (and learned B) per update", low=0.0),
    "feedback_scale": Field("float", 1.0, "random B ~ N(0, scale²/n_in)", low=0.0),
    "itd_epsilon": Field("float", 1e-6, "itd-dy keeps the last quotient where |Δa| < ε", low=0.0),
    "reference": Field("str", "input", "frame the mismatch compares with", choices=REFERENCE),
}
RUN = {
    "ticks": Field("int", 200, "ticks to simulate", low=1),
    "seed": Field("int", 0, "seeds every random draw", low=0),
    "device": Field("str", "cpu", "cpu (numpy) or cuda (cupy)", choices=("cpu", "cuda")),
    "dtype": Field("str", "float64", "float32 or float64", choices=("float32", "float64")),
}
RECORD = {
    "states": Field("bool", True, "record full neuron states"),
    "every": Field("int", 1, "record states every k ticks", low=1),
    "layers": Field("int_list", [], "layers whose states are recorded (empty = all)", low=0),
    "metrics": Field("bool", True, "reference gradients and mismatch per tick"),
    "chunk": Field("int", 256, "ticks per host transfer", low=1),
    "memory_budget": Field("size", "1GiB", "refuse runs whose recording exceeds this"),
}

RENDER = {
    "png": Field("bool", True, "write waves.png and mismatch.png"),
    "gif": Field("bool", True, "write waves.gif"),
    "every": Field("int", 1, "one GIF frame every k ticks", low=1),
    "size": Field("int_list", [720, 400], "GIF width (320..4000) and height (200..4000) in pixels",
                  low=200, high=4000),
    "color": Field("str", "both", "raster colouring", choices=("magnitude", "tag", "both")),
    "windows": Field("window_list", [], "tick windows [start, stop] drawn as raster panels "
                     "(empty = the whole run)", low=0),
}
SEED_DEVICE = {k: RUN[k] for k in ("seed", "device", "dtype")}

AR_VARIANTS = ("exact", "random", "learned", "no-derivative", "learned-no-derivative")
AR_NETWORK = {
    "sizes": Field("int_list", [64, 300, 300, 100, 10], "widths of layers 0..L", low=1),
    "hidden": Field("str", "relu", "σ of layers 1..L−1", choices=ACTS),
    "output": Field("str", "linear", "σ of layer L", choices=ACTS),
    "scale": Field("float", 1.0, "weights ~ N(0, scale²/n_in)", low=0.0),
    "bias_scale": Field("float", 0.0, "biases ~ N(0, bias_scale²)", low=0.0),
}
AR_COMMON = {
    "iterations": Field("int", 100, "relaxation ticks K per update", low=0),
    "loss": Field("str", "mse", "ℓ", choices=tuple(LOSSES)),
    "init": Field("str", "forward", "relaxation starts from the forward sweep or zero",
                  choices=("forward", "zero")),
    "feedback_scale": Field("float", 1.0, "random ψ ~ N(0, scale²/n_in)", low=0.0),
}
AR_CONVERGE = dict(AR_COMMON, **{
    "variant": Field("str", "exact", "AR variant (paper 001 Eqs. 5–8)", choices=AR_VARIANTS),
    "eta_x": Field("float_list", [0.05, 0.1, 0.2, 0.5, 1.0], "relaxation rates to compare",
                   low=1e-9, high=1.999999),
    "batch": Field("int", 64, "samples relaxed together", low=1),
    "data": Field("str", "digits", "digits images or gaussian inputs", choices=("digits", "gaussian")),
})
AR_TRAIN = dict(AR_COMMON, **{
    "variants": Field("str_list", list(AR_VARIANTS), "AR variants trained beside backprop",
                      choices=AR_VARIANTS),
    "eta_x": Field("float", 0.1, "relaxation rate", low=1e-9, high=1.999999),
})
TRAIN_BATCHES = {
    "lr": Field("float", 0.05, "SGD rate on the batch-mean gradient", low=1e-12),
    "batch": Field("int", 64, "minibatch size", low=1),
    "epochs": Field("int", 20, "sweeps through the training digits", low=1),
    "seeds": Field("int_list", [0, 1, 2], "one run per seed (initial weights, batches)", low=0),
    "eval_every": Field("int", 0, "minibatches between evaluations (0 = once per epoch)", low=0),
    "test_fraction": Field("float", 0.25, "share of digits held out", low=0.01, high=0.99),
}

PC_ARCHITECTURES = ("mlp", "cnn", "rnn", "residual", "attention")
PC_TABLE = {
    "dtypes": Field("str_list", ["float64", "float32"], "precisions of Table 1",
                    choices=("float32", "float64")),
    "levelled": Field("str", "both", "Table 1 on levelled graphs, unlevelled ones, or both",
                      choices=("both", "levelled", "unlevelled")),
    "il_steps": Field("int", 20, "IL inference ticks T in Table 2", low=1),
    "repeats": Field("int", 10, "Table 2 keeps the fastest of this many runs", low=1),
}
PC_WAVE = {
    "architecture": Field("str", "residual", "graph builder", choices=PC_ARCHITECTURES),
    "method": Field("str", "zil", "Z-IL (γ = 1, level k learns at tick k) or IL",
                    choices=("zil", "il")),
    "levelled": Field("bool", True, "insert identity vertices first (Algorithm 2)"),
    "il_steps": Field("int", 20, "IL inference ticks T", low=1),
    "gamma": Field("float", 0.1, "IL inference rate γ", low=1e-9),
    "lr": Field("float", 0.01, "parameter learning rate α", low=0.0),
}
PC_RUN = {k: RUN[k] for k in ("seed", "dtype")}
LOCKING = {
    "depth": Field("int", 9, "L, the index of the output layer", low=1, high=64),
    "frames": Field("int", 6, "frames pushed through both schedules", low=1, high=200),
    "gif": Field("bool", True, "also write locking.gif (a tick cursor over both)"),
    "every": Field("int", 1, "one GIF frame every k ticks", low=1),
}

SCHEMAS = {
    "diffusion": {"network": NETWORK, "stream": STREAM, "target": TARGET,
                  "rule": RULE, "run": RUN, "record": RECORD, "render": RENDER},
    "ar_converge": {"network": AR_NETWORK, "relaxation": AR_CONVERGE, "run": SEED_DEVICE},
    "ar_train": {"network": AR_NETWORK, "relaxation": AR_TRAIN, "train": TRAIN_BATCHES,
                 "run": SEED_DEVICE},
    "pc_table": {"table": PC_TABLE, "run": {"seed": RUN["seed"]}},
    "pc_wave": {"wave": PC_WAVE, "run": PC_RUN},
    "locking": {"locking": LOCKING},
}
TOP = ("description", "kind")


def register_kind(kind, sections):
    """Declare the sections of another scene kind (relaxation, pc, ...)."""
    SCHEMAS[kind] = sections


def _load_module_kinds():
    """The train and sweep kinds are declared beside their code; importing them
    here (not at the top) keeps scene.py free of import cycles."""
    if "sweep" not in SCHEMAS:
        from .sweep import _ensure_kinds
        _ensure_kinds()


def validate(raw, source):
    """Check a parsed scene dict and return it resolved (every default filled)."""
    if not isinstance(raw, dict):
        raise SceneError(f"{source}: expected a table of sections")
    kind = raw.get("kind", "diffusion")
    _load_module_kinds()
    if kind not in SCHEMAS:
        raise SceneError(f"{source}: key 'kind': expected one of {', '.join(SCHEMAS)}, "
                         f"got {kind!r}{_did_you_mean(str(kind), SCHEMAS)}")
    schema = SCHEMAS[kind]
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise SceneError(f"{source}: key 'description': expected a string, got {description!r}")
    resolved = {"description": description, "kind": kind}
    for name, value in raw.items():
        if name in TOP:
            continue
        if name not in schema:
            raise SceneError(f"{source}: unknown section or key {name!r}"
                             f"{_did_you_mean(name, list(schema) + list(TOP))}; "
                             f"a {kind} scene has {', '.join(schema)}")
        if not isinstance(value, dict):
            raise SceneError(f"{source}: {name!r} must be a section ([{name}]), got {value!r}")
    for section, fields in schema.items():
        given = raw.get(section, {})
        for key in given:
            if key not in fields:
                raise SceneError(f"{source}: unknown key '{section}.{key}'"
                                 f"{_did_you_mean(key, fields)}; [{section}] accepts "
                                 f"{', '.join(fields)}")
        resolved[section] = {
            key: field.check(given[key], f"{source}: key '{section}.{key}'") if key in given
            else copy.deepcopy(field.default)
            for key, field in fields.items()}
    return resolved


def find_scene(name_or_path):
    """Path of a scene given as a file path or as a name in scenes/."""
    if os.path.isfile(name_or_path):
        return name_or_path
    candidate = os.path.join(SCENES_DIR, name_or_path + ".toml")
    if os.path.isfile(candidate):
        return candidate
    names = list_scenes()
    raise SceneError(f"scene {name_or_path!r} not found (neither a file nor a name in "
                     f"{SCENES_DIR}){_did_you_mean(name_or_path, names)}")


def load(name_or_path):
    """Load a TOML scene or a run.json (replay); return (name, resolved scene)."""
    path = find_scene(name_or_path)
    if path.endswith(".json"):
        return load_run_json(path)
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise SceneError(f"{path}: not valid TOML ({exc})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SceneError(f"{path}: cannot read ({exc})") from None
    name = os.path.splitext(os.path.basename(path))[0]
    return name, validate(raw, path)


def load_run_json(path):
    """The resolved scene stored in a run.json, validated again."""
    try:
        with open(path) as f:
            meta = json.load(f)
        raw, name = meta["scene"], meta["name"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SceneError(f"{path}: not a tickprop run.json ({exc})") from None
    return name, validate(raw, path)


def apply_overrides(scene, overrides, source, values=None):
    """Apply 'section.key=value' overrides (values parsed as TOML, else strings),
    then ``values`` ({'section.key': python value}, from typed CLI options)."""
    raw = copy.deepcopy(scene)
    for key, value in (values or {}).items():
        section, name = key.split(".")
        raw[section][name] = value
    for item in overrides:
        if "=" not in item:
            raise SceneError(f"--set {item!r}: expected SECTION.KEY=VALUE")
        key, text = item.split("=", 1)
        parts = key.strip().split(".")
        if len(parts) != 2:
            raise SceneError(f"--set {item!r}: expected SECTION.KEY=VALUE, e.g. rule.feedback=random")
        section, name = parts
        try:
            value = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            value = text
        if section not in raw or not isinstance(raw[section], dict):
            known = [k for k in raw if isinstance(raw[k], dict)]
            raise SceneError(f"--set {item!r}: unknown section {section!r}{_did_you_mean(section, known)}")
        raw[section][name] = value
    return validate(raw, source)


def list_scenes():
    """Names of the scenes shipped in scenes/."""
    if not os.path.isdir(SCENES_DIR):
        return []
    return sorted(f[:-5] for f in os.listdir(SCENES_DIR) if f.endswith(".toml"))


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
