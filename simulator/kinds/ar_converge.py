"""The ar_converge kind: Millidge et al. 2020 Fig. 1, the Activation Relaxation error per
layer against relaxation tick for several η_x, saved as relaxation.npz and
drawn as ar_convergence.png and the relaxation wave (png and gif)."""
import os

import numpy as np

from ..build import relaxation_network
from ..experiments.activation_relaxation import converge_arrays, run_converge
from ..files import write_npz
from ..runfiles import read_relaxation
from ..scene import spec_of
from .base import Kind, done_in, run_keys, saved_section, wanted


def prepare(name, scene, options=None):
    """Check the network (relaxation needs a hidden layer); the job relaxes one
    batch per η_x and saves relaxation.npz."""
    spec = spec_of(scene)
    network = relaxation_network(spec)
    ar = spec.relaxation

    def job(folder, progress=None):
        res = run_converge(variant=ar.variant, eta_x=ar.eta_x, iterations=ar.iterations,
                           batch=ar.batch, loss=ar.loss, seed=spec.run.seed,
                           data=ar.data, feedback_scale=ar.feedback_scale, init=ar.init,
                           **network)
        write_npz(os.path.join(folder, "relaxation.npz"), converge_arrays(res))
        final = res["errors"][:, -1, :]
        return {"final_error": {f"eta_x={e:g}": final[i].tolist()
                                for i, e in enumerate(res["eta_x"])},
                "weight_error": res["weight_error"].tolist()}
    return job


def draw(folder, meta, options):
    """ar_convergence.png (Fig. 1 a/b) and relaxation_wave.png/.gif."""
    arrays = read_relaxation(folder)
    if "variant" not in arrays:       # relaxation.npz of an earlier version
        arrays["variant"] = np.asarray(saved_section(folder, meta, "ar_converge",
                                                     "relaxation")["variant"])
    png, gif = wanted(options)
    if not (png or gif):
        return {}       # matplotlib is imported only to draw
    from ..render.convergence import draw_converge
    return draw_converge(folder, arrays, png=png, gif=gif)


def summary(folder, meta):
    """Headline, then per η_x the final relaxation error of every layer."""
    arrays = read_relaxation(folder)
    errors, etas = np.asarray(arrays["errors"], dtype=float), np.asarray(arrays["eta_x"])
    lines = [f"{done_in(meta)}: final error per layer after {errors.shape[1] - 1} relaxation "
             f"ticks (layers 1..{errors.shape[2] - 1})"]
    for i, eta in enumerate(etas):
        final = errors[i, -1, 1:]
        lines.append(f"  η_x = {float(eta):g}: " + "  ".join(f"{v:.4g}" for v in final)
                     + f"   (max {np.nanmax(final):.3g})")
    return lines


KIND = Kind("ar_converge", prepare, draw,
            options=run_keys("seed", "device", "dtype"),
            refuse={"ticks": "ar_converge scenes have no run.ticks; the relaxation length is "
                             "--set relaxation.iterations=K"},
            summary=summary)
