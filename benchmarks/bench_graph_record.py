"""A recorded graph run (`network.layers` scenes) against the bare graph engine.

    PYTHONPATH=. python benchmarks/bench_graph_record.py [--quick] [--only NAME]

As ``bench_run.py`` for the chain engine: each case simulates the same scene
twice, interleaved, once bare (``GraphEngine.step`` on the stream's frames,
nothing recorded) and once as ``tickprop run`` simulates it
(``Prepared.simulate``: norms, tags, states, and the mismatch against the
backprop reference of ``simulator.model.reference``). recorded / bare is what
recording costs over the bare step (medians of the rounds, since the machine
is shared). Cases: the shipped ``conv_digits`` (learning on, hold 8, batch 4)
and ``residual_levelling`` (frozen weights, a constant input), each also at
hold 1 (a new frame every tick: the recorder's worst case, every frame needs
its own reference), at hold 1 with batch 16, and conv_digits with frozen
weights (learning_rate 0), where the reference is one batched pass per chunk;
and chains as a Model (``network.layers`` of dense layers, a new frame every
tick), where the mismatch of each dense vertex comes from Gram products of
its factors as a chain layer's is.
"""
import argparse
import copy
import os
import statistics

import numpy as np

from allocator import ensure
from bench_run import bare   # GraphEngine.step is timed the same way as Engine.step
from simulator import threads
from simulator.runner import Prepared
from simulator.scene import load

CHAIN = {("stream", "kind"): "held", ("stream", "hold"): 1}


def DENSE(units, activation="tanh"):
    """A dense layer of a chain Model (network.layers entry), named when used."""
    return {"kind": "dense", "units": units, "activation": activation}


CASES = [  # name, scene, overrides {(section, key): value}, ticks
    ("conv_digits", "conv_digits", {}, 1000),
    ("conv_digits hold 1", "conv_digits", {("stream", "hold"): 1}, 1000),
    ("conv_digits hold 1 B=16", "conv_digits",
     {("stream", "hold"): 1, ("stream", "batch"): 16}, 500),
    ("conv_digits frozen", "conv_digits", {("rule", "learning_rate"): 0.0}, 1000),
    ("conv_digits frozen hold 1", "conv_digits",
     {("rule", "learning_rate"): 0.0, ("stream", "hold"): 1}, 1000),
    ("conv_digits frozen hold 1 B=16", "conv_digits",
     {("rule", "learning_rate"): 0.0, ("stream", "hold"): 1, ("stream", "batch"): 16}, 500),
    ("residual_levelling", "residual_levelling", {}, 2000),
    ("residual_levelling hold 1", "residual_levelling",
     {("stream", "kind"): "held", ("stream", "hold"): 1}, 2000),
    ("residual_levelling hold 1 B=16", "residual_levelling",
     {("stream", "kind"): "held", ("stream", "hold"): 1, ("stream", "batch"): 16}, 2000),
    # chains as a Model (dense vertices: the mismatch from Gram products of
    # their factors, as for a chain's layers), a new frame every tick
    ("chain L=9 w=16 B=1 hold 1", "residual_levelling", {**CHAIN, **{
        ("network", "layers"): [DENSE(16)] * 8 + [DENSE(16, "linear")],
        ("network", "input_shape"): [16]}}, 2000),
    ("chain L=6 w=128 B=16 hold 1", "residual_levelling", {**CHAIN, **{
        ("network", "layers"): [DENSE(128)] * 5 + [DENSE(128, "linear")],
        ("network", "input_shape"): [128], ("stream", "batch"): 16}}, 500),
    ("chain L=6 w=128 B=16 hold 1 learning", "residual_levelling", {**CHAIN, **{
        ("network", "layers"): [DENSE(128)] * 5 + [DENSE(128, "linear")],
        ("network", "input_shape"): [128], ("stream", "batch"): 16,
        ("rule", "learning_rate"): 0.001}}, 300),
]


def scene(base, overrides, ticks):
    _, sc = load(base)
    sc = copy.deepcopy(sc)
    for (section, key), value in overrides.items():
        if key == "layers":       # a chain's dense layers, named 1, 2, …
            value = [dict(layer, name=str(i + 1)) for i, layer in enumerate(value)]
        sc[section][key] = value
    sc["run"]["ticks"] = ticks
    sc["record"]["memory_budget"] = "16GiB"
    return sc


def recorded(sc):
    """Seconds of the recorded ticks of ``Prepared.simulate`` (its simulate_s)."""
    return Prepared("bench_graph_record", sc).simulate().meta["timings"]["simulate_s"]


def main():
    ensure()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer ticks and rounds")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median quoted)")
    ap.add_argument("--only", default="", help="only the cases whose name contains this")
    args = ap.parse_args()
    rounds = 1 if args.quick else args.rounds
    blas = threads.setup(1)
    print(f"BLAS threads: {blas['blas_threads']} ({blas['why']})")
    print(f"{'case':32s} {'bare t/s':>10s} {'recorded t/s':>13s} {'recorded/bare':>14s}")
    for name, base, overrides, ticks in CASES:
        if args.only not in name:
            continue
        ticks = max(50, ticks // 5) if args.quick else ticks
        sc = scene(base, overrides, ticks)
        bare(sc), recorded(sc)              # warm-up: first-call imports stay out
        t_bare, t_rec, ratio = [], [], []
        for _ in range(rounds):
            b, r = bare(sc), recorded(sc)
            t_bare.append(b), t_rec.append(r), ratio.append(r / b)
        b, r = statistics.median(t_bare), statistics.median(t_rec)
        print(f"{name:32s} {ticks / b:10.0f} {ticks / r:13.0f} "
              f"{statistics.median(ratio):13.2f}x")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
