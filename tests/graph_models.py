"""Graph models shared by the tests of rules on graphs (Activation Relaxation,
predictive coding): layer lists as Model.from_layers and scenes take them;
``shipped_with`` edits a shipped scene for the recorder tests."""
import copy

from simulator.scene import load

# A run of four equal-width dense layers over a source with a second child:
# the fast executor's grouping meets a vertex whose output leaves the run.
RUN_SKIP = [
    {"name": "h0", "kind": "dense", "units": 5, "activation": "tanh", "bias_scale": 0.3},
    {"name": "h1", "kind": "dense", "units": 5, "activation": "tanh", "bias_scale": 0.3},
    {"name": "h2", "kind": "dense", "units": 5, "activation": "logistic", "bias_scale": 0.3},
    {"name": "h3", "kind": "dense", "units": 5, "activation": "linear", "bias_scale": 0.3},
    {"name": "h4", "kind": "dense", "units": 5, "activation": "tanh", "bias_scale": 0.3},
    {"name": "r", "kind": "add", "from": ["h4", "h0"], "activation": "tanh"},
    {"name": "out", "kind": "dense", "units": 3, "activation": "linear", "bias_scale": 0.3},
]

CONV = [
    {"name": "c1", "kind": "conv2d", "channels": 3, "kernel": 3, "padding": 1,
     "activation": "tanh", "bias_scale": 0.3},
    {"name": "p1", "kind": "pool", "size": 2, "mode": "max"},
    {"name": "c2", "kind": "conv2d", "channels": 4, "kernel": 3, "stride": [1, 2],
     "padding": [1, 0], "activation": "logistic", "bias_scale": 0.3},
    {"name": "p2", "kind": "pool", "size": 2, "mode": "avg"},
    {"name": "f", "kind": "flatten"},
    {"name": "h", "kind": "dense", "units": 7, "activation": "tanh", "bias_scale": 0.3},
    {"name": "o", "kind": "dense", "units": 3, "activation": "linear"},
]
# h0 reaches r2 directly and through r1: paths of lengths 1 and 3
RESIDUAL = [
    {"name": "h0", "kind": "dense", "units": 6, "activation": "tanh", "bias_scale": 0.3},
    {"name": "a1", "kind": "dense", "units": 6, "activation": "tanh", "bias_scale": 0.3},
    {"name": "b1", "kind": "dense", "units": 6, "activation": "linear", "from": "a1"},
    {"name": "r1", "kind": "add", "from": ["h0", "b1"], "activation": "tanh"},
    {"name": "a2", "kind": "dense", "units": 6, "activation": "logistic", "bias_scale": 0.3},
    {"name": "b2", "kind": "dense", "units": 6, "activation": "linear", "from": "a2"},
    {"name": "r2", "kind": "add", "from": ["r1", "b2", "h0"]},
    {"name": "o", "kind": "dense", "units": 3, "activation": "linear"},
]
# One self-attention block with a residual merge on (tokens, features) inputs:
# E reaches H directly and through the attention path, so it is unlevelled.
ATTENTION = [  # tokens (T, n) -> E -> Q, K, V -> softmax(Q Kᵀ/√d) V -> W_o -> + E -> out
    {"name": "E", "kind": "linear", "units": 4, "bias": False},
    {"name": "Q", "kind": "linear", "units": 4, "bias": False, "from": "E"},
    {"name": "K", "kind": "linear", "units": 4, "bias": False, "from": "E"},
    {"name": "V", "kind": "linear", "units": 4, "bias": False, "from": "E"},
    {"name": "S", "kind": "matmul", "from": ["Q", "K"], "transpose": True, "factor": 0.5},
    {"name": "A", "kind": "softmax", "from": "S"},
    {"name": "M", "kind": "matmul", "from": ["A", "V"]},
    {"name": "O", "kind": "linear", "units": 4, "bias": False, "from": "M"},
    {"name": "H", "kind": "add", "from": ["E", "O"], "activation": "tanh"},
    {"name": "F", "kind": "flatten"},
    {"name": "o", "kind": "dense", "units": 2, "activation": "linear"},
]


def shipped_with(base, overrides, ticks):
    """The resolved shipped scene ``base`` with ``overrides`` {(section, key):
    value} set and run.ticks = ``ticks`` (a deep copy: the loaded scene is kept)."""
    _, sc = load(base)
    sc = copy.deepcopy(sc)
    for (section, key), value in overrides.items():
        sc[section][key] = value
    sc["run"]["ticks"] = ticks
    return sc

PATCHES = [  # a ViT's patch tokens and an activation vertex: conv stride 2 -> tokens -> σ
    {"name": "emb", "kind": "conv2d", "channels": 3, "kernel": 2, "stride": 2,
     "activation": "linear", "bias_scale": 0.3},
    {"name": "tok", "kind": "tokens"},
    {"name": "act", "kind": "identity", "activation": "tanh"},
    {"name": "mix", "kind": "linear", "units": 4, "activation": "logistic"},
    {"name": "f", "kind": "flatten"},
    {"name": "out", "kind": "dense", "units": 3, "activation": "linear", "bias_scale": 0.3},
]
