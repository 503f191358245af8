"""The ar_train kind: Millidge et al. 2020 Figs. 2–3, Activation Relaxation variants
against backprop on the digits, saved as training.npz and drawn as
ar_accuracy.png (test) and ar_accuracy_train.png."""
import os

import numpy as np

from ..build import relaxation_network
from ..experiments.activation_relaxation import run_train, train_arrays
from ..files import write_npz
from ..runfiles import read_training
from ..scene import spec_of
from .base import Kind, done_in, run_keys


def prepare(name, scene, options=None):
    """Check the network; the job trains backprop and every variant per seed
    and saves the accuracy curves (training.npz: steps, test_<rule>, train_<rule>)."""
    spec = spec_of(scene)
    network = relaxation_network(spec)
    ar, tr = spec.relaxation, spec.train

    def job(folder, progress=None):
        res = run_train(variants=ar.variants, eta_x=ar.eta_x, iterations=ar.iterations,
                        lr=tr.lr, batch=tr.batch, epochs=tr.epochs, seeds=tr.seeds,
                        loss=ar.loss, feedback_scale=ar.feedback_scale, init=ar.init,
                        split_seed=spec.run.seed, test_fraction=tr.test_fraction,
                        eval_every=tr.eval_every or None, progress=progress,
                        solver=ar.solver, **network)
        write_npz(os.path.join(folder, "training.npz"), train_arrays(res))
        return {"final_test_accuracy": {
            rule: {"mean": float(np.nanmean(acc)), "std": float(np.nanstd(acc)),
                   "per_seed": np.asarray(acc).tolist()}
            for rule, acc in res["final_test"].items()},
            "diverged_at": {k: np.asarray(v).tolist() for k, v in res["diverged_at"].items()}}
    return job


def draw(folder, meta, options):
    """ar_accuracy.png and ar_accuracy_train.png (mean ± std over seeds, one
    panel per variant beside backprop)."""
    arrays = read_training(folder)
    if not options.get("png", True):
        return {}       # matplotlib is imported only to draw
    from ..render.convergence import draw_train
    return draw_train(folder, arrays)


def summary(folder, meta):
    """Headline, then per rule the final test accuracy, mean ± std over seeds."""
    arrays = read_training(folder)
    rules = [k[len("test_"):] for k in arrays if k.startswith("test_")]
    lines = [f"{done_in(meta)}: final test accuracy (mean ± std over seeds)"]
    width = max(len(r) for r in rules)
    for rule in rules:
        final = np.asarray(arrays["test_" + rule], dtype=float).reshape(-1, len(arrays["steps"]))
        final = final[:, -1]
        lines.append(f"  {rule.ljust(width)}  {np.nanmean(final):.4f} ± {np.nanstd(final):.4f}"
                     + (f"  ({int(np.isnan(final).sum())} seed(s) diverged)"
                        if np.isnan(final).any() else ""))
    return lines


KIND = Kind("ar_train", prepare, draw,
            options=run_keys("seed", "device", "dtype"),
            refuse={"ticks": "ar_train scenes have no run.ticks; their length is "
                             "--set train.epochs=N"},
            progress=lambda scene: len(spec_of(scene).train.seeds) * (
                len(spec_of(scene).relaxation.variants) + 1),
            summary=summary)
