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
    from .relaxation_experiments import converge_arrays, run_converge
    from .render.convergence import draw_converge
    ar = scene["relaxation"]
    res = run_converge(variant=ar["variant"], eta_x=ar["eta_x"], iterations=ar["iterations"],
                       batch=ar["batch"], loss=ar["loss"], seed=scene["run"]["seed"],
                       data=ar["data"], feedback_scale=ar["feedback_scale"], init=ar["init"],
                       **_network_kw(scene))
    arrays = converge_arrays(res)
    _save_npz(folder, "relaxation.npz", arrays)
    draw_converge(folder, arrays)
    final = res["errors"][:, -1, :]
    return {"final_error": {f"eta_x={e:g}": final[i].tolist() for i, e in enumerate(res["eta_x"])},
            "weight_error": res["weight_error"].tolist()}


def run_ar_train(name, scene, folder, progress=None):
    """Paper 001 Figs. 2–3: AR variants vs backprop on the digits."""
    from .relaxation_experiments import run_train, train_arrays
    from .render.convergence import draw_train
    ar, tr = scene["relaxation"], scene["train"]
    res = run_train(variants=ar["variants"], eta_x=ar["eta_x"], iterations=ar["iterations"],
                    lr=tr["lr"], batch=tr["batch"], epochs=tr["epochs"], seeds=tr["seeds"],
                    loss=ar["loss"], feedback_scale=ar["feedback_scale"], init=ar["init"],
                    split_seed=scene["run"]["seed"], test_fraction=tr["test_fraction"],
                    eval_every=tr["eval_every"] or None, progress=progress,
                    **_network_kw(scene))
    arrays = train_arrays(res)
    _save_npz(folder, "training.npz", arrays)
    draw_train(folder, arrays)
    return {"final_test_accuracy": {
        rule: {"mean": float(np.nanmean(acc)), "std": float(np.nanstd(acc)),
               "per_seed": np.asarray(acc).tolist()}
        for rule, acc in res["final_test"].items()},
        "diverged_at": {k: np.asarray(v).tolist() for k, v in res["diverged_at"].items()}}


def run_pc_table(name, scene, folder, progress=None):
    """Tables 1 and 2 of Salvatori et al. (paper 002), measured in one run."""
    from .pc.tables import format_markdown, table1, table2, write_csv
    tb, seed = scene["table"], scene["run"]["seed"]
    flags = {"both": (True, False), "levelled": (True,), "unlevelled": (False,)}[tb["levelled"]]
    rows1 = [row for dtype in tb["dtypes"] for flag in flags
             for row in table1(dtype=dtype, levelled=flag, seed=seed)]
    rows2 = table2(dtype="float64", T=tb["il_steps"], repeats=tb["repeats"], seed=seed)
    write_csv(rows1, os.path.join(folder, "table1.csv"))
    write_csv(rows2, os.path.join(folder, "table2.csv"))
    text = ("## Table 1: one BP update vs one Z-IL update\n\n" + format_markdown(rows1) +
            "\n\n## Table 2: time per update\n\n" + format_markdown(rows2) + "\n")
    from .probes import atomic_write
    atomic_write(os.path.join(folder, "tables.md"), lambda f: f.write(text))
    return {"table1": rows1, "table2": rows2, "markdown": text}


def run_pc_wave(name, scene, folder, progress=None):
    """The Z-IL (or IL) error wave of one update on a builder's graph."""
    from .pc.inference import error_wave
    from .render.levels import write_wave_gif, write_wave_png
    wv, run = scene["wave"], scene["run"]
    wave = error_wave(wv["architecture"], wv["method"], levelled=wv["levelled"],
                      T=wv["il_steps"], gamma=wv["gamma"], lr=wv["lr"], seed=run["seed"],
                      dtype=run["dtype"])
    by_level = np.asarray(wave.by_level, dtype=float)[:, ::-1]    # output on top
    n = by_level.shape[1]
    label = "levelled" if wv["levelled"] else "not levelled"
    write_wave_png(os.path.join(folder, "pc_wave.png"), by_level,
                   f"{wv['method'].upper()} error wave ‖ε‖ per level, {wv['architecture']} "
                   f"({label})", "level (distance to output)", level_names=range(n - 1, -1, -1),
                   tick_label="inference tick")
    write_wave_gif(os.path.join(folder, "pc_wave.gif"), by_level)
    _save_npz(folder, "wave.npz", {"by_level": np.asarray(wave.by_level),
                                   "by_vertex": np.asarray(wave.by_vertex),
                                   "levels": np.asarray(wave.levels)})
    return {"ticks": int(by_level.shape[0]), "levels": n,
            "overflow": bool(np.isinf(by_level).any())}


def run_locking(name, scene, folder, progress=None):
    """SPEC §5: backprop's locked schedule beside the tick engine's pipeline."""
    from .locking import schedules
    from .render.locking import write_locking
    lk = scene["locking"]
    write_locking(folder, lk["depth"], lk["frames"], gif=lk["gif"], every=lk["every"])
    result = schedules(lk["depth"], lk["frames"])
    return {kind: {k: result[kind][k] for k in ("ticks", "utilisation", "frames_per_tick", "latency")}
            for kind in ("backprop", "pipelined")}


def _save_npz(folder, filename, arrays):
    from .probes import atomic_write
    atomic_write(os.path.join(folder, filename),
                 lambda f: np.savez_compressed(f, **arrays), binary=True)


def run_train(name, scene, folder, progress=None):
    """Online learning on a stream, every rule from the same weights and frames."""
    from .training import run_training
    return run_training(name, scene, folder, progress)


def progress_length(scene):
    """How many progress steps a run of this scene reports (0: too quick to show)."""
    kind = scene["kind"]
    if kind == "train":
        return scene["run"]["ticks"] * len(scene["train"]["rules"])
    if kind == "ar_train":
        return len(scene["train"]["seeds"]) * (len(scene["relaxation"]["variants"]) + 1)
    return 0


RUNNERS = {"ar_converge": run_ar_converge, "ar_train": run_ar_train, "train": run_train,
           "pc_table": run_pc_table, "pc_wave": run_pc_wave, "locking": run_locking}
