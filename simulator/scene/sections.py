"""The scene schema: every key of every kind declared once, as a field object
(simulator.scene.fields). ``SCHEMAS`` maps each kind to its sections;
``VARIANT_KEYS`` says which keys only some variants of a kind read.
"""
from ..datasets import DATASETS
from ..model.layers import ACTIVATIONS
from ..options import (AUTO, DELAYS, DERIVATIVE, FEEDBACK, LOSSES, PAIRING, REFERENCE,
                       SCALED, SIGN_FAMILY)
from ..streams import EDGES, INPUTS, TARGETS
from .fields import (Bool, FilePath, Float, Int, KeyedTable, Layers, ListOf, OrWord, Size, Str,
                     Table, Tuple, Window)

ACTS = tuple(ACTIVATIONS)
WIDTH = 65536           # widest layer
DEPTH = 512             # deepest network (L)
TICKS = 10**8           # longest run
BIG = 1e6               # largest rate, scale or decay (beyond it every run diverges)
SEED = 2**32 - 1        # largest seed


NETWORK = {
    "depth": Int(9, "L, the index of the output layer (L+1 levels)", 1, DEPTH),
    "width": Int(16, "neurons per hidden layer", 1, WIDTH),
    "inputs": Int(16, "neurons in layer 0", 1, WIDTH),
    "outputs": Int(16, "neurons in layer L", 1, WIDTH),
    "sizes": ListOf(Int(16, "width", 1, WIDTH), [], "widths of layers 0..L (overrides the "
                    "four above)", min_len=2, max_len=DEPTH + 1, empty_ok=True),
    "hidden": Str("tanh", "σ of layers 1..L−1", ACTS),
    "output": Str("linear", "σ of layer L", ACTS),
    "scale": Float(1.0, "weights ~ N(0, scale²/n_in)", 0.0, BIG),
    "bias_scale": Float(0.0, "biases ~ N(0, bias_scale²)", 0.0, BIG),
}
# A diffusion scene's network may be any graph of layers (simulator.Model).
GRAPH_NETWORK = dict(NETWORK, **{
    "layers": Layers([], "a graph of layers {name, kind, from, ...} ([[network.layers]]; "
                     "overrides the chain keys)", WIDTH, max_len=DEPTH),
    "input_shape": ListOf(Int(1, "size", 1, WIDTH), [], "a graph's input frame, e.g. [1, 8, 8]",
                          min_len=1, max_len=3, empty_ok=True),
    "levelled": OrWord(Bool(False, ""), AUTO, "auto", "run the graph levelled (identity "
                       "vertices, Algorithm 2); auto: when learning (its paths differ in length)"),
    "parameters": FilePath("", "a graph's parameters: an .npz of '<layer>.W' / '<layer>.b' "
                           "arrays (tickprop import writes one; relative to the scene file) "
                           "instead of random draws", ".npz"),
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
    "canvas": ListOf(Int(16, "canvas side", 1, CANVAS), [], "[height, width] a moving digit "
                     "crosses (empty = twice the image's)", min_len=2, max_len=2, empty_ok=True),
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
    "feedback": Str("transpose", "F_l in the backward wave (docs/feedback.md)", FEEDBACK),
    "derivative": Str("local", "D[t,l] in the backward wave", DERIVATIVE),
    "pairing": Str("local", "which x g pairs δ with", PAIRING),
    "supervision_delay": OrWord(Int(0, "", 0, 4 * DEPTH), DELAYS, "auto",
                                "d_y: target of frame t−d_y at tick t; causal: D, the output's "
                                "level; auto: causal when learning, 0 when frozen"),
    "learning_rate": Float(0.0, "η; 0 freezes the weights", 0.0, BIG),
    "accumulate": Int(1, "apply the summed g every k ticks", 1, TICKS),
    "weight_decay": Float(0.0, "decay of W (and learned B) per update", 0.0, BIG),
    "feedback_scale": Float(1.0, "random/learned B ~ N(0, scale²/fan_in); multiplies the "
                            "sign/frsf/brsf magnitudes", 0.0, BIG),
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
    "backend": Str("numpy", "the tick loop: numpy, jax (compiled, on the CPU, extra 'jax') "
                   "or auto (jax where it is faster)", ("numpy", "jax", "auto")),
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
    "windows": ListOf(Window([0, 1], "window", TICKS), [], "tick windows drawn as raster "
                      "panels (empty = the whole run)", max_len=16),
}
SEED_DEVICE = {k: RUN[k] for k in ("seed", "device", "dtype", "threads")}  # not a tick engine

AR_VARIANTS = ("exact", "random", "learned", "no-derivative", "learned-no-derivative")
ETA_X = Float(0.1, "relaxation rate", 1e-9, 1.999999)
AR_NETWORK = {
    "sizes": ListOf(Int(16, "width", 1, WIDTH), [64, 300, 300, 100, 10],
                    "widths of layers 0..L", min_len=3, max_len=DEPTH + 1),
    "hidden": Str("relu", "σ of layers 1..L−1", ACTS),
    **{k: NETWORK[k] for k in ("output", "scale", "bias_scale")},
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
    "variant": Str("exact", "AR variant (Millidge et al. 2020, Eqs. 5–8)", AR_VARIANTS),
    "eta_x": ListOf(ETA_X, [0.05, 0.1, 0.2, 0.5, 1.0], "relaxation rates to compare",
                    min_len=1, max_len=64),
    "batch": Int(64, "samples relaxed together", 1, WIDTH),
    "data": Str("digits", "digits images or gaussian inputs", ("digits", "gaussian")),
})
AR_TRAIN = dict(AR_COMMON, **{
    "variants": ListOf(Str("exact", "variant", AR_VARIANTS), list(AR_VARIANTS), "AR variants "
                       "trained beside backprop", min_len=1, max_len=len(AR_VARIANTS), unique=True),
    "eta_x": ETA_X,
    "solver": Str("closed-form", "the state after K ticks: closed-form (the exact binomial "
                  "sum, one cost whatever K) or ticks (stepped K times, ~10x slower, same "
                  "weights to rounding)", ("closed-form", "ticks")),
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
SEED_RUN = {"seed": RUN["seed"]}
LOCKING = {
    "depth": Int(9, "L, the index of the output layer", 1, 64),
    "frames": Int(6, "frames pushed through both schedules", 1, 200),
    "gif": Bool(True, "also write locking.gif (a tick cursor over both)"),
    "every": Int(1, "one GIF frame every k ticks", 1, 10**6),
}

# The learning rules of a `train` scene (simulator.experiments.training.RULES says what each runs).
TRAIN_RULES = ("diffusion", "random", "sign", "frsf", "brsf", "learned", "dfa", "itd-y",
               "itd-dy", "backprop", "ar", "zil")
TRAIN = {
    "rules": ListOf(Str("diffusion", "rule", TRAIN_RULES), ["diffusion", "backprop"],
                    "learning rules to train, one run each (one name = a one-rule list)",
                    min_len=1, max_len=len(TRAIN_RULES), unique=True, single=True),
    "learning_rate": Float(0.002, "η, applied every tick (docs/defaults.md)", 0.0, BIG),
    "rates": KeyedTable(TRAIN_RULES, Float(0.002, "η", 0.0, BIG), {},
                        "η per rule where it differs from learning_rate, e.g. {ar = 0.01}"),
    "loss": Str("xent", "ℓ", ("mse", "xent", "linear")),
    "supervision_delay": RULE["supervision_delay"],
    "eval_every": Int(200, "ticks between test evaluations", 1, TICKS),
    "eval_size": Int(0, "test samples (0 = the whole test split)", 0, 10**6),
    "feedback_scale": RULE["feedback_scale"],
    "weight_decay": Float(0.0, "decay of W per update", 0.0, BIG),
    "itd_epsilon": RULE["itd_epsilon"],
    "ar_iterations": Int(100, "rule ar: relaxation ticks K per frame (Millidge et al. 2020: 100)",
                         1, 10**5),
    "ar_eta_x": Float(0.1, "rule ar: relaxation rate η_x (Millidge et al. 2020: 0.1)", 1e-9, 1.0),
    "memory_budget": Size("1GiB", "refuse runs whose engine (weights, buffers, rings, "
                          "stream) exceeds this", 1, 2**50),
    "seeds": ListOf(Int(0, "seed", 0, SEED), [], "run seeds: each trains every rule as "
                    "run.seed = s would ([] = run.seed alone)", min_len=1, max_len=100,
                    empty_ok=True, unique=True),
}

SWEEP = {
    "base": Str("fig3_fast", "the scene every point starts from (name or path)"),
    "grid": Table({}, "axes: \"section.key\" = [values]; the points are their product",
                  lists=True),
    "set": Table({}, "overrides applied to every point before the grid's", lists=False),
    "seeds": ListOf(Int(0, "seed", 0, SEED), [0], "run.seed values; every grid cell runs each",
                    min_len=1, max_len=100),
    "summary": Str("auto", "what a point reports (auto: by the base kind)",
                   ("auto", "mismatch", "training")),
    "steady_from": Float(0.5, "steady state = ticks after this fraction of the run", 0.0, 0.99),
    "threshold": Float(0.9, "mean cosine that defines the boundary h*(L)", -1.0, 1.0),
    "point_timeout": Float(0.0, "seconds a point may run before it fails (0 = automatic, "
                           "simulator.sweep.point_timeout)", 0.0, 10.0**9),
    "no_worker_timeout": Float(30.0, "Dask: seconds with no worker (points pending) before "
                               "the unfinished points fail", 0.1, 10.0**9),
}

# The schedule zoo (docs/explanation/schedules.md): every schedule of
# simulator.experiments.schedules, one model and one stream on one clock.
SCHEDULE_NAMES = ("backprop", "gpipe", "1f1b", "2bw", "partime", "sideways", "diffusion")
SCHEDULES = {
    "names": ListOf(Str("backprop", "schedule", SCHEDULE_NAMES), list(SCHEDULE_NAMES),
                    "schedules to run, each from the same weights on the same frames",
                    min_len=1, max_len=len(SCHEDULE_NAMES), unique=True, single=True),
    "micro": OrWord(Int(4, "", 1, 1024), AUTO, "auto", "M: frames per gpipe mini-batch "
                    "and per 2bw update; auto: the least that keeps 2bw at two weight versions "
                    "(the largest D + bwd(v) − fwd(v)), which the depth sweep always takes"),
    "frames": Int(64, "stream frames every schedule trains on (frame s enters at tick s)",
                  1, 10**6),
    "learning_rate": Float(0.01, "η of every schedule (0 freezes the weights)", 0.0, BIG),
    "loss": Str("xent", "ℓ", tuple(LOSSES)),
    "eval_every": Int(16, "ticks between held-out evaluations (labels targets)", 1, TICKS),
    "eval_size": Int(0, "held-out samples (0 = the whole test split)", 0, 10**6),
    "seeds": ListOf(Int(0, "seed", 0, SEED), [0, 1, 2], "one run of every schedule per seed "
                    "(weights and stream as run.seed = s draws them)", min_len=1, max_len=100,
                    unique=True),
    "sweep_depths": ListOf(Int(4, "depth", 1, 64), [4, 8, 16], "chain depths of the depth "
                           "sweep (timetables only, no arithmetic)", min_len=1, max_len=16,
                           unique=True),
    "memory_budget": Size("1GiB", "refuse runs whose frames, weight versions, stashes and "
                          "records exceed this", 1, 2**50),
}
# diffusion's rule options ([schedules] holds η and ℓ, which every schedule shares)
SCHEDULE_RULE = {k: v for k, v in RULE.items() if k not in ("loss", "learning_rate", "reference")}
THREADS_RUN = {"threads": RUN["threads"]}

SCHEMAS = {
    "diffusion": {"network": GRAPH_NETWORK, "stream": STREAM, "target": TARGET,
                  "rule": RULE, "run": RUN, "record": RECORD, "render": RENDER},
    "train": {"network": GRAPH_NETWORK, "stream": STREAM, "target": TARGET, "train": TRAIN,
              "run": RUN},
    "sweep": {"sweep": SWEEP},
    "ar_converge": {"network": AR_NETWORK, "relaxation": AR_CONVERGE, "run": SEED_DEVICE},
    "ar_train": {"network": AR_NETWORK, "relaxation": AR_TRAIN, "train": TRAIN_BATCHES,
                 "run": SEED_DEVICE},
    "pc_table": {"table": PC_TABLE, "run": SEED_RUN},
    "pc_wave": {"wave": PC_WAVE, "run": PC_RUN},
    "locking": {"locking": LOCKING},
    "schedules": {"network": GRAPH_NETWORK, "stream": STREAM, "target": TARGET,
                  "rule": SCHEDULE_RULE, "schedules": SCHEDULES, "run": THREADS_RUN},
}
TOP = ("description", "kind")

# No option is parsed and ignored: the chain keys a graph (network.layers)
# replaces, with what it takes instead, and the keys only a graph reads.
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
GRAPH_ONLY = ("input_shape", "levelled", "parameters")
# Keys that only some variants of a kind read: "section.key" -> (the selector
# key, its values whose variant reads the key; a list selector reads it if it
# holds one). On/off switches (render.gif, ...) are no variants: switching one
# off leaves its keys dormant, as --no-gif does.
_STREAM_READERS = {
    ("canvas", "speed", "direction", "edges", "jitter", "jitter_every", "stagger"): ("moving",),
    ("tau",): ("smooth",), ("period",): ("sine",),
    ("hold", "crossfade"): ("held", "dataset", "moving"), ("data",): ("dataset", "moving"),
    ("amplitude",): ("constant", "held", "smooth", "sine", "moving")}
_STREAM_KEYS = {f"stream.{key}": ("stream.kind", readers)
                for keys, readers in _STREAM_READERS.items() for key in keys}
_STREAM_KEYS["target.scale"] = ("target.kind", ("teacher",))
_PSI_VARIANTS = ("random", "learned", "learned-no-derivative")
VARIANT_KEYS = {
    "diffusion": dict(_STREAM_KEYS, **{
        "rule.feedback_scale": ("rule.feedback", SCALED),
        "rule.itd_epsilon": ("rule.derivative", ("itd-dy",)),
    }),
    "train": dict(_STREAM_KEYS, **{
        "train.feedback_scale": ("train.rules", ("random", "learned", "itd-y", "itd-dy",
                                                 "dfa") + SIGN_FAMILY),
        "train.itd_epsilon": ("train.rules", ("itd-dy",)),
        "train.ar_iterations": ("train.rules", ("ar",)),
        "train.ar_eta_x": ("train.rules", ("ar",)),
    }),
    "schedules": dict(_STREAM_KEYS, **{
        "rule.feedback_scale": ("rule.feedback", ("random", "learned") + SIGN_FAMILY),
        "rule.itd_epsilon": ("rule.derivative", ("itd-dy",)),
        "schedules.micro": ("schedules.names", ("gpipe", "2bw")),
    }),
    "ar_converge": {"relaxation.feedback_scale": ("relaxation.variant", _PSI_VARIANTS)},
    "ar_train": {"relaxation.feedback_scale": ("relaxation.variants", _PSI_VARIANTS)},
    "pc_wave": {"wave.il_steps": ("wave.method", ("il",)),
                "wave.gamma": ("wave.method", ("il",))},
}

