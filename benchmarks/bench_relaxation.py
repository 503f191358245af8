"""Benchmark: one Activation Relaxation update (forward sweep, K relaxation
ticks, weight update) on a Model (``simulator.rules.relaxation``), the K ticks
stepped or summed in closed form (``relax_closed_form``), as ratios to one
backprop SGD step on the same network and batch and to the same closed-form
update written out in numpy per layer (``numpy_closed_form_step``, the chain
solver AR had before it moved onto the Model), all timed in the same run,
interleaved.

    python benchmarks/bench_relaxation.py                 # timing only
    python benchmarks/bench_relaxation.py --report        # + Fig. 1 numbers and
                                                          #   the digits training table

Matmul flops predict the ratios to backprop: backprop does L forward, L−1
backward and L weight-gradient matmuls; ticked AR does the same 2L plus
K(L−1) relaxation matmuls (one per hidden layer per tick, each the size of a
backward one); closed-form AR does the 2L, one backward pass to the fixed
point and each hidden layer's initial error carried down to layer 1, whatever
K. BLAS is pinned to one thread while timing (``_one_blas_thread``): threaded
OpenBLAS competing for the cores of a shared machine made these small
matmuls many times slower and the ratios meaningless.
"""
import argparse
import os
import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from bench_engine import best_of  # noqa: E402 (benchmarks/ is on sys.path)
from simulator.datasets import batch_indices, load_digits  # noqa: E402
from simulator.model import Model  # noqa: E402
from simulator.model import reference  # noqa: E402
from simulator.rules.relaxation import VARIANTS, ActivationRelaxation, tick_weights  # noqa: E402
from simulator.experiments.activation_relaxation import (PAPER_ACTIVATIONS, PAPER_SIZES,  # noqa: E402
                                              converge_arrays, run_converge, run_train,
                                              train_arrays)
from simulator.render.convergence import draw_converge, draw_train  # noqa: E402


def _one_blas_thread():
    """Pin BLAS to one thread while timing (threadpoolctl, a dependency)."""
    return threadpool_limits(limits=1, user_api="blas")


def _flops(sizes, batch, iterations=None, closed_form=False):
    """Matmul flops of one backprop step (iterations None) or one AR update:
    all do the forward and weight-gradient matmuls; backprop adds one
    backward matmul per hidden layer, ticked AR that many per relaxation tick,
    closed-form AR one backward pass plus layer m's error carried down to
    layer 1 for every hidden layer m."""
    layer = [2 * batch * a * b for a, b in zip(sizes[:-1], sizes[1:])]
    backward = sum(layer[1:])
    if iterations is None:
        return 2 * sum(layer) + backward
    if closed_form:
        carried = sum(layer[l] for m in range(1, len(layer)) for l in range(1, m))
        return 2 * sum(layer) + backward + carried
    return 2 * sum(layer) + iterations * backward


def _relu(a):
    return np.maximum(a, 0.0), (a > 0).astype(a.dtype)


def numpy_closed_form_step(weights, biases, u, y, eta, iterations, lr):
    """The baseline: one exact-variant AR update on a ReLU chain with a linear
    top layer and MSE, written out in numpy per layer (forward sweep, fixed
    point x^l* = (σ'^{l+1} ⊙ x^{l+1}*) W_l, each hidden layer's initial error
    carried down with the closed form's weights, ΔW = (σ' ⊙ x)ᵀ x̄); updates
    ``weights`` and ``biases`` in place."""
    L = len(weights)
    xs, ds = [u], [None]
    for l, (w, b) in enumerate(zip(weights, biases)):
        a = xs[-1] @ w.T + b
        x, d = _relu(a) if l < L - 1 else (a, None)
        xs.append(x)
        ds.append(d)
    star = [None] * (L + 1)
    star[L] = xs[L] - y
    for l in range(L - 1, 0, -1):
        v = star[l + 1] if ds[l + 1] is None else ds[l + 1] * star[l + 1]
        star[l] = v @ weights[l]
    wts = tick_weights(iterations, L - 1, eta)
    acc = [None] * L
    for m in range(L - 1, 0, -1):
        e = xs[m] - star[m]
        for l in range(m, 0, -1):
            if l < m:
                if not any(wts[m - l:]):
                    break
                e = (ds[l + 1] * e) @ weights[l]
            acc[l] = wts[m - l] * e if acc[l] is None else acc[l] + wts[m - l] * e
    state = [u] + [star[l] + acc[l] for l in range(1, L)] + [star[L]]
    scale = lr / u.shape[0]
    for l in range(L):
        v = state[l + 1] if ds[l + 1] is None else ds[l + 1] * state[l + 1]
        weights[l] -= scale * (v.T @ xs[l])
        biases[l] -= scale * v.sum(axis=0)


def bench_timing(iterations=100, batch=64, repeats=5, n=5, seed=0):
    """Time a backprop step, a ticked and a closed-form AR update on the
    paper network (Model.chain) and a digits batch, and the numpy
    closed-form step (best of ``repeats`` runs of ``n`` calls, interleaved);
    print each and its ratios. Returns {"ticks": ratio to backprop,
    "closed-form": ratio to backprop, "closed-form/numpy": ratio to numpy}."""
    data = load_digits(seed=0)
    idx = batch_indices(data.train_x.shape[0], batch, seed=seed)[0]
    u, y = data.train_x[idx], data.train_targets[idx]
    model = Model.chain(PAPER_SIZES, PAPER_ACTIVATIONS, seed=seed)
    ars = {s: ActivationRelaxation(model, "exact", 0.1, iterations, solver=s)
           for s in ("ticks", "closed-form")}
    params = model.parameters()
    weights = [a for k, a in model.parameters().items() if k.endswith(".W")]
    biases = [a for k, a in model.parameters().items() if k.endswith(".b")]

    def bp_step():
        g = reference.backprop(model, u, y, params=params)
        for k in params:
            params[k] -= 1e-9 * g[k]

    steps = {"backprop": bp_step,
             "numpy": lambda: numpy_closed_form_step(weights, biases, u, y, 0.1, iterations,
                                                     1e-9)}
    steps.update({s: (lambda a=a: a.step(u, y, 1e-9)) for s, a in ars.items()})
    times = {k: np.inf for k in steps}
    with _one_blas_thread():
        for _ in range(repeats):   # interleaved: a load change hits every entry alike
            for k, fn in steps.items():
                times[k] = min(times[k], best_of(fn, 1 if k == "ticks" else n, repeats=1))
    bp_flops = _flops(PAPER_SIZES, batch)
    print(f"network {list(PAPER_SIZES)}, batch {batch}, K = {iterations}, float64, numpy, "
          "one BLAS thread")
    print(f"  backprop step on the Model          {times['backprop'] * 1e3:9.3f} ms")
    print(f"  closed-form AR, numpy per layer     {times['numpy'] * 1e3:9.3f} ms")
    ratios = {}
    for s in ars:
        ratios[s] = times[s] / times["backprop"]
        pred = _flops(PAPER_SIZES, batch, iterations, s == "closed-form") / bp_flops
        print(f"  AR on the Model, {s:11s}       {times[s] * 1e3:9.3f} ms = {ratios[s]:6.1f} "
              f"backprop steps   (matmul flops predict {pred:.1f})")
    ratios["closed-form/numpy"] = times["closed-form"] / times["numpy"]
    print(f"  closed form on the Model / numpy per layer: {ratios['closed-form/numpy']:.2f}x")
    return ratios


def report_convergence():
    r = run_converge(eta_x=(0.05, 0.1, 0.2, 0.5, 1.0), iterations=100)
    r1000 = run_converge(eta_x=(0.1,), iterations=1000)
    i = int(np.argmin(np.abs(r["eta_x"] - 0.1)))
    L = r["errors"].shape[2] - 1
    print("Fig. 1 (exact, paper network, one digits batch of 64): relative error to dl/dx^l")
    for l in range(1, L):
        e, p = r["errors"][i, :, l], r["predicted"][i, :, l]
        ok = e > 1e-10
        fit = np.max(np.abs(e[ok] / p[ok] - 1)) if ok.any() else 0.0
        print(f"  layer {l} (k = {L - l} below the top): after 100 ticks {e[100]:.3e}, "
              f"after 1000 ticks {r1000['errors'][0, 1000, l]:.3e}; "
              f"closed form max relative misfit {fit:.1e}")
    print("  weight update vs backprop after 100 ticks (per layer):",
          np.array2string(r["weight_error"][i], formatter={"float": "{:.2e}".format}))
    print("  weight update vs backprop after 1000 ticks (per layer):",
          np.array2string(r1000["weight_error"][0], formatter={"float": "{:.2e}".format}))
    for j, eta in enumerate(r["eta_x"]):
        print(f"  eta_x = {eta:4g}: layer 1 error after 100 ticks {r['errors'][j, 100, 1]:.3e}")


def report_training(epochs, seeds, out_dir):
    t = time.perf_counter()
    r = run_train(variants=VARIANTS, lr=0.1, epochs=epochs, seeds=seeds)
    print(f"digits, {list(PAPER_SIZES)} ReLU/linear, MSE, batch 64, eta_x 0.1, K 100, "
          f"lr 0.1, {epochs} epochs, seeds {list(seeds)} ({time.perf_counter() - t:.0f} s)")
    bp = r["final_test"]["backprop"]
    for name, final in r["final_test"].items():
        div = r["diverged_at"][name]
        gap = np.nanmean(final) - np.nanmean(bp)
        print(f"  {name:22s} test {np.nanmean(final):.4f} ± {np.nanstd(final):.4f}  "
              f"(vs BP {gap:+.4f})  best {np.nanmean(np.nanmax(r['curves'][name]['test'], axis=1)):.4f}"
              f"  diverged in {int(np.sum(div >= 0))}/{len(div)} seeds")
    if out_dir:
        print("  pictures:", ", ".join(draw_train(out_dir, train_arrays(r)).values()))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--report", action="store_true", help="also run Fig. 1 and the training table")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", default=None, help="folder for the pictures")
    args = ap.parse_args()
    bench_timing(args.iterations, repeats=args.repeats)
    if args.report:
        report_convergence()
        if args.out:
            os.makedirs(args.out, exist_ok=True)
            draw_converge(args.out, converge_arrays(run_converge()))
        report_training(args.epochs, args.seeds, args.out)


if __name__ == "__main__":
    main()
