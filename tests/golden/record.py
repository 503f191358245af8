"""Record the golden outputs of the tick engines over the option grid.

Run from the repository root: ``python tests/golden/record.py`` (about a
minute on one core). It writes ``tests/golden/engines-<model>.npz``, the fingerprint
of every tick of every run of the grid

    5 derivatives x 2 pairings x 4 feedbacks (GRID_FEEDBACK) x 5 modes (frozen, learning,
    accumulate 2, weight decay, both) x 6 models (equal chain, unequal chain,
    residual levelled and unlevelled, conv, attention)

as the engines compute it at the commit that recorded it. tests/test_golden.py
replays the same grid through today's engines and requires the same numbers
(float64, rtol 1e-12; tags exact). It exists so that merging the engines into
one core (one model, one engine with executors) can be proven not to change a
single trajectory: record BEFORE a change, never to make a failing test pass.

A fingerprint keeps the files small: per tick and per array (x and δ of every
vertex, g of every weight, and at the end every parameter) its projection on a
fixed random normal vector; per tick every tag array exactly. Any change of a
value beyond rounding moves a projection. One file per model
(``engines-<model>.npz``), each well under a megabyte.
"""
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
sys.path.insert(0, os.path.dirname(HERE))

from simulator import Engine, Model, Network  # noqa: E402
from simulator.options import DERIVATIVE, PAIRING  # noqa: E402
from graph_models import ATTENTION, CONV, RESIDUAL  # noqa: E402

TICKS = 14
BATCH = 2
HOLD = 3                      # a new random frame every HOLD ticks
MODES = {"frozen": {}, "learning": {"learning_rate": 0.05},
         "accumulate2": {"learning_rate": 0.05, "accumulate": 2},
         "decay": {"learning_rate": 0.05, "weight_decay": 0.1},
         "accumulate2_decay": {"learning_rate": 0.05, "accumulate": 2, "weight_decay": 0.1}}


# frsf and brsf (sign with drawn magnitudes) are checked against hand numpy in
# tests/test_feedback_family.py instead.
GRID_FEEDBACK = ("transpose", "random", "sign", "learned")


def models():
    """name -> (factory of a fresh engine's network/model, levelled)."""
    return {
        "chain_equal": (lambda: Network.random([5, 5, 5, 5, 5], ["tanh", "logistic", "tanh",
                                                                  "linear"], seed=3,
                                               bias_scale=0.3), False),
        "chain_unequal": (lambda: Network.random([6, 9, 4, 7, 3], ["tanh", "relu", "tanh",
                                                                    "linear"], seed=4,
                                                 bias_scale=0.3), False),
        "residual_levelled": (lambda: Model.from_layers(RESIDUAL, (5,), seed=5), True),
        "residual_unlevelled": (lambda: Model.from_layers(RESIDUAL, (5,), seed=5), False),
        "conv": (lambda: Model.from_layers(CONV, (2, 8, 12), seed=6), False),
        "attention": (lambda: Model.from_layers(ATTENTION, (3, 5), seed=7), False),
    }


def grid():
    """Every (model, derivative, pairing, feedback, mode) of the grid, in a fixed order."""
    for model in models():
        for derivative in DERIVATIVE:
            for pairing in PAIRING:
                for feedback in GRID_FEEDBACK:
                    for mode in MODES:
                        yield model, derivative, pairing, feedback, mode


def run_name(model, derivative, pairing, feedback, mode):
    return f"{model}|{derivative}|{pairing}|{feedback}|{mode}"


def frames(shape_in, shape_out, seed):
    """(u, y) per tick: a new random frame every HOLD ticks (host numpy)."""
    g = np.random.default_rng(seed)
    n = -(-TICKS // HOLD)
    u = g.normal(0.0, 1.0, (n, BATCH) + tuple(shape_in))
    y = g.normal(0.0, 0.5, (n, BATCH) + tuple(shape_out))
    return np.repeat(u, HOLD, axis=0)[:TICKS], np.repeat(y, HOLD, axis=0)[:TICKS]


def _weights(size, seed=12345):
    return np.random.default_rng([seed, size]).normal(size=size)


def fingerprint(a):
    """The projection of an array (float64, flattened) on a fixed random normal
    vector of its size: any change beyond rounding moves it."""
    a = np.asarray(a, dtype=np.float64).ravel()
    return a @ _weights(a.size)


def _shapes(net):
    if isinstance(net, Network):
        return (net.sizes[0],), (net.sizes[-1],)
    return net.input_shape, net.output_shape


def _chain(engine):
    """Whether ``engine`` runs a chain recorded through the stacked engine's API
    (layers "1".."L" of ``Model.from_network``): its arrays keep those names."""
    return engine.names == ["input"] + [str(l) for l in range(1, engine.n)] and all(
        v.kind == "dense" for v in engine.model.vertices[1:])


def state_arrays(engine):
    """[(name, array)] of x, δ and g of the current tick, in a fixed order (a
    chain's: x and δ per layer, then g of every W, then of every b)."""
    out = []
    if _chain(engine):
        for l in range(engine.depth + 1):
            out.append((f"x{l}", engine.activity(l)))
            if l:
                out.append((f"d{l}", engine.delta(l)))
        g = engine.gradients()
        out += [(f"g{i}", g[f"{i + 1}.W"]) for i in range(engine.depth)]
        out += [(f"gb{i}", g[f"{i + 1}.b"]) for i in range(engine.depth)]
        return out
    for v in engine.model.vertices:
        out.append((f"x:{v.name}", engine.activity(v.index)))
        if v.index:
            out.append((f"d:{v.name}", engine.delta(v.index)))
    for key, g in sorted(engine.gradients().items()):
        out.append((f"g:{key}", g))
    return out


def parameter_arrays(engine):
    p = engine.parameters()
    if _chain(engine):
        return ([(f"W{i}", p[f"{i + 1}.W"]) for i in range(engine.depth)]
                + [(f"b{i}", p[f"{i + 1}.b"]) for i in range(engine.depth)])
    return sorted(p.items())


# The tags of a chain (the stacked engine's keys; a chain's vertices never mix
# frames, so the newest frame equals the oldest and is not kept).
CHAIN_TAGS = ("input", "output", "pair", "sigma_hi", "sigma_lo", "supervision")


def tag_array(engine):
    """Every tag of the current tick as one int64 row (keys sorted)."""
    tags = engine.tags()
    keys = CHAIN_TAGS if _chain(engine) else sorted(tags)
    return np.concatenate([np.asarray(tags[k], dtype=np.int64).ravel() for k in keys])


def run(model, derivative, pairing, feedback, mode):
    """(values (ticks+1, arrays, 3), tags (ticks, n)) of one run of the grid."""
    factory, levelled = models()[model]
    net = factory()
    kwargs = dict(derivative=derivative, pairing=pairing, feedback=feedback, batch=BATCH,
                  feedback_seed=11, supervision_delay=1, **MODES[mode])
    if levelled:
        kwargs["levelled"] = True
    engine = Engine(net, **kwargs)
    u, y = frames(*_shapes(net), seed=list(models()).index(model))
    values, tags = [], []
    for t in range(TICKS):
        engine.step(engine.backend.asarray(u[t]), engine.backend.asarray(y[t]))
        values.append(np.stack([fingerprint(a) for _, a in state_arrays(engine)]))
        tags.append(tag_array(engine))
    params = np.stack([fingerprint(a) for _, a in parameter_arrays(engine)])
    return np.stack(values), params, np.stack(tags)


def golden_path(model):
    return os.path.join(HERE, f"engines-{model}.npz")


def record():
    """Run the whole grid and write one file per model; returns the paths."""
    out = {model: {} for model in models()}
    for combo in grid():
        with np.errstate(all="ignore"):
            values, params, tags = run(*combo)
        name = run_name(*combo)
        out[combo[0]].update({name + "|values": values, name + "|params": params,
                              name + "|tags": tags})
    paths = []
    for model, arrays in out.items():
        np.savez_compressed(golden_path(model), **arrays)
        paths.append(golden_path(model))
    return paths


if __name__ == "__main__":
    for where in record():
        print(f"{where}: {os.path.getsize(where) / 1e6:.2f} MB")
