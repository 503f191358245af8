"""The ar_converge kind: paper 001 Fig. 1, the Activation Relaxation error per
layer against relaxation tick for several η_x, saved as relaxation.npz and
drawn as ar_convergence.png and the relaxation wave (png and gif)."""
import os

import numpy as np

from ..build import relaxation_network
from ..relaxation import run_converge
from .base import Kind, load_npz, save_npz, scene_of

SAVED = ("errors", "predicted", "norms", "changes", "weight_error", "grad_error", "eta_x",
         "ticks", "layers")


def prepare(name, scene):
    """Check the network (relaxation needs a hidden layer); the job relaxes one
    batch per η_x and saves relaxation.npz."""
    network = relaxation_network(scene)
    ar = scene["relaxation"]

    def job(folder, progress=None):
        res = run_converge(variant=ar["variant"], eta_x=ar["eta_x"], iterations=ar["iterations"],
                           batch=ar["batch"], loss=ar["loss"], seed=scene["run"]["seed"],
                           data=ar["data"], feedback_scale=ar["feedback_scale"], init=ar["init"],
                           **network)
        save_npz(folder, "relaxation.npz", {k: np.asarray(res[k]) for k in SAVED})
        final = res["errors"][:, -1, :]
        return {"final_error": {f"eta_x={e:g}": final[i].tolist()
                                for i, e in enumerate(res["eta_x"])},
                "weight_error": res["weight_error"].tolist()}
    return job


def draw(folder, meta, options):
    """ar_convergence.png (Fig. 1 a/b) and relaxation_wave.png/.gif from
    relaxation.npz: the wave is ‖x_l(t) − x_l(t−1)‖ per layer (layer 0, the
    clamped input, left out) for the η_x closest to the paper's 0.1."""
    # matplotlib loads only when a picture is drawn: `tickprop --help` stays quick.
    from ..render.convergence import plot_convergence
    from ..render.levels import write_wave_gif, write_wave_png

    res = load_npz(folder, "relaxation.npz", ("errors", "predicted", "changes", "eta_x"))
    variant = scene_of(meta, "relaxation").get("variant", "?")
    written = {}
    k = int(np.argmin(np.abs(np.asarray(res["eta_x"]) - 0.1)))
    changes = np.asarray(res["changes"][k])[1:, 1:]
    if options.get("png", True):
        written["ar_convergence.png"] = plot_convergence(
            os.path.join(folder, "ar_convergence.png"), res["errors"], res["eta_x"],
            res["predicted"],
            title=f"Activation Relaxation ({variant}): relative error to the fixed point")
        written["relaxation_wave.png"] = write_wave_png(
            os.path.join(folder, "relaxation_wave.png"), changes,
            f"Activation Relaxation ({variant}, η_x = {res['eta_x'][k]:g}): "
            "‖x_l(t) − x_l(t−1)‖ per relaxation tick", "layer",
            level_names=range(1, changes.shape[1] + 1), tick_label="relaxation tick")
    if options.get("gif", True):
        written["relaxation_wave.gif"] = write_wave_gif(
            os.path.join(folder, "relaxation_wave.gif"), changes)
    return written


KIND = Kind("ar_converge", prepare, draw,
            options={"seed": "run.seed", "device": "run.device", "dtype": "run.dtype"},
            refuse={"ticks": "ar_converge scenes have no run.ticks; the relaxation length is "
                             "--set relaxation.iterations=K"})
