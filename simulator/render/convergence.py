"""Activation Relaxation pictures (Millidge et al. 2020): convergence (Fig. 1 a/b) and AR
variants' accuracy against backprop (Figs. 2, 3), drawn from the saved arrays alone.
"""
import os

import numpy as np

from ..files import save_png
from ..errors import SimulatorError
from .axes import floored, integer_ticks, log_axis, new_figure, quiet, tick_axis, zero_floor
from .levels import write_wave_gif, write_wave_png

DPI = 100
# An error is NaN where the fixed point is 0 (e.g. zero weights).
NO_ERROR = "no defined error:\nthe fixed point is 0 in every layer drawn"
MAX_LAYER_CURVES = 10      # panel (a) draws at most this many hidden layers
BASELINE_COLOUR = "#000000"
LAYER_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
                 "#e377c2", "#17becf", "#bcbd22", "#7f7f7f")


def layer_colour(index):
    """The fixed colour of curve ``index`` (layers, η_x values or variants)."""
    return LAYER_COLOURS[index % len(LAYER_COLOURS)]


def shown_layers(depth, limit=MAX_LAYER_CURVES):
    """The hidden layers 1..L−1 drawn as curves: all, or ``limit`` evenly spaced ones."""
    hidden = np.arange(1, depth)
    if hidden.size <= limit:
        return hidden.tolist()
    return sorted(set(np.rint(np.linspace(1, depth - 1, limit)).astype(int).tolist()))


def plot_convergence(path, errors, eta_x, predicted=None, main_eta=0.1, layer=1,
                     title="Activation Relaxation: convergence to ∂ℓ/∂x^l"):
    """Write Fig. 1 of Millidge et al. 2020 at ``path``. ``errors`` (E, K+1, L+1): the
    relative error ‖x^l_n − ∂ℓ/∂x^l‖/‖∂ℓ/∂x^l‖ per η_x, tick and layer; ``predicted``
    (same shape) dashed. (a): hidden layers at the η_x nearest ``main_eta``; (b):
    ``layer`` at every η_x."""
    errors = np.asarray(errors, dtype=float)
    eta_x = np.atleast_1d(np.asarray(eta_x, dtype=float))
    if errors.ndim != 3 or errors.shape[0] != eta_x.shape[0] or errors.shape[2] < 2:
        raise SimulatorError(f"errors must be (len(eta_x), ticks+1, layers), got {errors.shape} "
                             f"for {eta_x.shape[0]} eta_x values")
    if predicted is not None and np.shape(predicted) != errors.shape:
        raise SimulatorError(f"predicted has shape {np.shape(predicted)}, errors {errors.shape}")
    pred = None if predicted is None else np.asarray(predicted, dtype=float)
    L = errors.shape[2] - 1
    if not 1 <= layer <= max(L - 1, 1):
        raise SimulatorError(f"layer must be a hidden layer 1..{L - 1}, got {layer}")
    ticks = np.arange(errors.shape[1])
    main = int(np.argmin(np.abs(eta_x - main_eta)))
    layers = shown_layers(L)
    dot = "o" if ticks.size == 1 else None      # one tick: points, not (invisible) lines
    fig = new_figure((11, 4.2), DPI, layout=None)
    ax_a, ax_b = fig.subplots(1, 2)
    shown = (errors[main][:, layers], errors[:, :, layer])
    # One zero floor per panel (exact zeros, e.g. η_x = 1 after k ticks, read "0").
    floor_a = zero_floor(shown[0] if pred is None else
                         np.concatenate([shown[0].ravel(), pred[main][:, layers].ravel()]))
    floor_b = zero_floor(shown[1])
    for i, l in enumerate(layers):
        ax_a.plot(ticks, floored(errors[main, :, l], floor_a), color=layer_colour(i), lw=2.5,
                  marker=dot, label=f"layer {l}")
        if pred is not None:
            ax_a.plot(ticks, floored(pred[main, :, l], floor_a), color="#000000",
                      lw=1, ls="--", marker=dot, mfc="none")
    if pred is not None:
        ax_a.plot([], [], color="#000000", lw=1, ls="--", label="linear analysis")
    some = "" if len(layers) == L - 1 else f", {len(layers)} of {L - 1} hidden layers"
    ax_a.set_title(f"(a) per layer, η_x = {eta_x[main]:g}{some}")
    for i, eta in enumerate(eta_x):
        ax_b.plot(ticks, floored(errors[i, :, layer], floor_b), color=layer_colour(i), lw=2.5,
                  marker=dot, label=f"η_x = {eta:g}")
    ax_b.set_title(f"(b) layer {layer}, several η_x")
    for ax, values, floor in zip((ax_a, ax_b), shown, (floor_a, floor_b)):
        tick_axis(ax, 0, ticks[-1], "relaxation tick n")
        ax.set_ylabel("relative error to ∂ℓ/∂x^l")
        log_axis(ax, values, NO_ERROR, margin=3.0, floor=floor)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path, title)


def _save(fig, path, title):
    fig.suptitle(title)
    fig.tight_layout()
    return save_png(fig, path)


def _band(ax, x, runs, colour, label):
    """Mean ± std over seeds (rows of ``runs``)."""
    runs = np.atleast_2d(np.asarray(runs, dtype=float))
    mean, std = quiet(np.nanmean, runs, axis=0), quiet(np.nanstd, runs, axis=0)
    # A single evaluation is a point, which a line alone would not show.
    ax.plot(x, mean, color=colour, lw=2.5, label=label, marker="o" if len(x) == 1 else None)
    if runs.shape[0] > 1:
        ax.fill_between(x, mean - std, mean + std, color=colour, alpha=0.2, lw=0)


def plot_accuracy(path, steps, curves, baseline="backprop", split="test",
                  title="Activation Relaxation vs backprop (digits)"):
    """Write Figs. 2–3 of Millidge et al. at ``path``: accuracy against ``steps``, mean ± std
    over seeds, a panel per AR variant with the ``baseline`` (black) in each (or alone).
    ``curves[name][split]``: (seeds, len(steps)), NaN after a run diverged."""
    steps = np.asarray(steps)
    if baseline not in curves:
        raise SimulatorError(f"curves have no baseline {baseline!r}; got {sorted(curves)}")
    names = [n for n in curves if n != baseline] or [None]
    for n in curves:
        if np.atleast_2d(curves[n][split]).shape[1] != steps.shape[0]:
            raise SimulatorError(f"curve {n!r} has {np.shape(curves[n][split])} points for "
                                 f"{steps.shape[0]} steps")
    cols = min(len(names), 3)
    rows = -(-len(names) // cols)
    fig = new_figure((4.6 * cols, 3.6 * rows), DPI, layout=None)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for i, (ax, name) in enumerate(zip(axes, names)):
        _band(ax, steps, curves[baseline][split], BASELINE_COLOUR, baseline)
        if name is not None:
            _band(ax, steps, curves[name][split], layer_colour(i), f"AR {name}")
        ax.set_title(name or f"{baseline} only (no AR variant trained)")
        if steps.size == 1:
            ax.set_xlim(steps[0] - 0.5, steps[0] + 0.5)
        integer_ticks(ax.xaxis)
        ax.set(xlabel="minibatch updates", ylabel=f"{split} accuracy", ylim=(0.0, 1.02))
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    for ax in axes[len(names):]:
        ax.axis("off")
    return _save(fig, path, title)


WAVE_ETA = 0.1     # the relaxation wave is drawn for the η_x closest to the paper's


def draw_converge(folder, arrays, png=True, gif=True):
    """Draw an ``ar_converge`` run's relaxation.npz ``arrays`` into ``folder``:
    ar_convergence.png and relaxation_wave.png/.gif (at the η_x nearest WAVE_ETA) as
    ``png``/``gif`` ask. Returns {file name: path}."""
    folder = os.fspath(folder)
    errors, eta_x = np.asarray(arrays["errors"], dtype=float), np.asarray(arrays["eta_x"])
    variant = str(arrays["variant"]) if "variant" in arrays else ""
    label = f"Activation Relaxation ({variant})" if variant else "Activation Relaxation"
    k = int(np.argmin(np.abs(eta_x.astype(float) - WAVE_ETA)))
    changes = np.asarray(arrays["changes"], dtype=float)[k][1:, 1:]
    labels = dict(title=f"{label}, η_x = {float(eta_x[k]):g}: ‖x_l(t) − x_l(t−1)‖ per "
                        "relaxation tick", level_label="layer",
                  level_names=range(1, changes.shape[1] + 1), tick_label="relaxation tick")
    written = {}
    if png:
        written["ar_convergence.png"] = plot_convergence(
            os.path.join(folder, "ar_convergence.png"), errors, eta_x, arrays.get("predicted"),
            title=f"{label}: relative error to the fixed point")
        written["relaxation_wave.png"] = write_wave_png(
            os.path.join(folder, "relaxation_wave.png"), changes, **labels)
    if gif:
        written["relaxation_wave.gif"] = write_wave_gif(
            os.path.join(folder, "relaxation_wave.gif"), changes, **labels)
    return written


def draw_train(folder, arrays, baseline="backprop"):
    """Draw an ``ar_train`` run's training.npz ``arrays`` (``steps``, ``test_<name>``,
    ``train_<name>``) into ``folder``: ar_accuracy.png and ar_accuracy_train.png.
    Returns {file name: path}."""
    folder, steps = os.fspath(folder), np.asarray(arrays["steps"])
    names = sorted((k[len("test_"):] for k in arrays if k.startswith("test_")),
                   key=lambda n: n != baseline)      # the baseline first; variants keep order
    curves = {n: {split: np.atleast_2d(np.asarray(arrays[f"{split}_{n}"], dtype=float))
                  for split in ("test", "train")} for n in names}
    return {name: plot_accuracy(os.path.join(folder, name), steps, curves, baseline, split=split)
            for name, split in (("ar_accuracy.png", "test"), ("ar_accuracy_train.png", "train"))}
