"""Runners for the scene kinds other than `diffusion`: each turns a resolved
scene into files in a (temporary) folder and returns a JSON-able summary.
They only translate scene keys into the keyword arguments of the module that
does the work (relaxation, pc, locking, training)."""
import os

import numpy as np


def _activations(net):
    return [net["hidden"]] * (len(net["sizes"]) - 2) + [net["output"]]


def _network_kw(scene):
    net, run = scene["network"], scene["run"]
    if len(net["sizes"]) < 3:
        from .errors import SceneError
        raise SceneError("key 'network.sizes': relaxation needs a hidden layer (3 widths or more)")
    return dict(sizes=list(net["sizes"]), activations=_activations(net),
                weight_scale=net["scale"], bias_scale=net["bias_scale"],
                device=run["device"], dtype=run["dtype"])


def run_ar_converge(name, scene, folder, progress=None):
    """Paper 001 Fig. 1: relaxation error per layer vs tick for several η_x."""
    from .relaxation import run_converge
    ar = scene["relaxation"]
    res = run_converge(variant=ar["variant"], eta_x=ar["eta_x"], iterations=ar["iterations"],
                       batch=ar["batch"], loss=ar["loss"], seed=scene["run"]["seed"],
                       data=ar["data"], feedback_scale=ar["feedback_scale"], init=ar["init"],
                       out_dir=folder, **_network_kw(scene))
    arrays = {k: np.asarray(res[k]) for k in
              ("errors", "predicted", "norms", "changes", "weight_error", "grad_error",
               "eta_x", "ticks", "layers")}
    _save_npz(folder, "relaxation.npz", arrays)
    final = res["errors"][:, -1, :]
    return {"final_error": {f"eta_x={e:g}": final[i].tolist() for i, e in enumerate(res["eta_x"])},
            "weight_error": res["weight_error"].tolist()}


def run_ar_train(name, scene, folder, progress=None):
    """Paper 001 Figs. 2–3: AR variants vs backprop on the digits."""
    from .relaxation import run_train
    ar, tr = scene["relaxation"], scene["train"]
    res = run_train(variants=ar["variants"], eta_x=ar["eta_x"], iterations=ar["iterations"],
                    lr=tr["lr"], batch=tr["batch"], epochs=tr["epochs"], seeds=tr["seeds"],
                    loss=ar["loss"], feedback_scale=ar["feedback_scale"], init=ar["init"],
                    split_seed=scene["run"]["seed"], test_fraction=tr["test_fraction"],
                    eval_every=tr["eval_every"] or None, out_dir=folder, **_network_kw(scene))
    arrays = {"steps": res["steps"]}
    for rule, curve in res["curves"].items():
        arrays[f"test_{rule}"] = curve["test"]
        arrays[f"train_{rule}"] = curve["train"]
    _save_npz(folder, "training.npz", arrays)
    return {"final_test_accuracy": {
        rule: {"mean": float(np.nanmean(acc)), "std": float(np.nanstd(acc)),
               "per_seed": np.asarray(acc).tolist()}
        for rule, acc in res["final_test"].items()},
        "diverged_at": {k: np.asarray(v).tolist() for k, v in res["diverged_at"].items()}}


def _save_npz(folder, filename, arrays):
    from .probes import atomic_write
    atomic_write(os.path.join(folder, filename),
                 lambda f: np.savez_compressed(f, **arrays), binary=True)


def run_train(name, scene, folder, progress=None):
    """Online learning on a stream, every rule from the same weights and frames."""
    from .training import run_training
    return run_training(name, scene, folder, progress)


RUNNERS = {"ar_converge": run_ar_converge, "ar_train": run_ar_train, "train": run_train}
