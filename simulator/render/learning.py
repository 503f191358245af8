"""Learning curves of a `train` run (learning.png) from its curves dict (results.json)."""
import warnings

import numpy as np
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from .axes import finish, new_figure

RULE_COLOURS = {"diffusion": "#d62728", "backprop": "#000000", "random": "#1f77b4",
                "sign": "#2ca02c", "learned": "#9467bd", "itd-y": "#ff7f0e",
                "itd-dy": "#8c564b", "frsf": "#17becf", "brsf": "#7b4173"}
# one dash pattern per weighted layer (eight apart before one repeats)
LAYER_STYLES = ("-", "--", ":", "-.", (0, (6, 2, 1, 2, 1, 2)), (0, (1, 4)), (0, (10, 3)),
                (0, (4, 1, 1, 1, 1, 1, 1, 1)))
LEGEND_PT = 8
BAND_ALPHA = 0.2
ANGLE_PANELS = {"grad_angles": ("update vs backprop [deg]", 180),
                "angles": ("angle(W_l, F_l) [deg]", 100)}


def rule_colour(rule):
    """The fixed colour of a rule's curves."""
    return RULE_COLOURS.get(rule, "#7f7f7f")


def render_learning(curves, path, title="", seeds=None):
    """Write learning.png against tick: test accuracy (classes only), test loss (log),
    per layer the angles of each rule's update to backprop's gradient and of W to F;
    a colour per rule, a diverged rule's curve ending in ×. ``seeds``: every seed's
    curves ({rule: curve} each, ``curves`` among them): each rule's mean over them,
    with a ±sd band on accuracy and loss."""
    runs = seeds or [curves]
    classify = any(np.isfinite(np.asarray(c["accuracy"], dtype=float)).any()
                   for c in curves.values())
    # the rules with angles of each kind (an older results.json has no grad_angles)
    angled = {key: [r for r, c in curves.items() if any(len(a) for a in c.get(key, []))]
              for key in ANGLE_PANELS}
    panels = ["accuracy"] * classify + ["loss"] + [key for key in ANGLE_PANELS if angled[key]]
    fig = new_figure((4.2 * len(panels), 3.6))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, panel in zip(axes, panels):
        if panel in angled:
            _draw_angles(ax, runs, angled[panel], panel)
        else:
            _draw_metric(ax, runs, panel)
    handles = [Line2D([], [], color=rule_colour(rule), lw=1.8, label=rule) for rule in curves]
    if len(runs) > 1:
        handles.append(Patch(color="#777777", alpha=BAND_ALPHA, label=f"±sd, {len(runs)} seeds"))
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 7),
               fontsize=LEGEND_PT, frameon=False)
    return finish(fig, path, title)


def _stacked(runs, rule, key):
    """(ticks, values (seeds, ticks)) of one rule over the seeds' curves, a seed
    that stopped early padded with NaN."""
    rows = [np.asarray(r[rule][key], dtype=float) for r in runs]
    longest = max(range(len(runs)), key=lambda i: len(rows[i]))
    values = np.full((len(rows), len(rows[longest])) + rows[longest].shape[1:], np.nan)
    for i, row in enumerate(rows):
        values[i, :len(row)] = row
    return np.asarray(runs[longest][rule]["tick"], dtype=float), values


def _mean_sd(values):
    """Mean over axis 0 ignoring NaN, and the sample sd where ≥ 2 are finite."""
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(values, axis=0)
        sd = np.nanstd(values, axis=0, ddof=1) if len(values) > 1 else np.full_like(mean, np.nan)
    return mean, sd


def _draw_metric(ax, runs, key):
    drawn = []
    for rule in runs[0]:
        t, values = _stacked(runs, rule, key)
        mean, sd = _mean_sd(values)
        colour = rule_colour(rule)
        ax.plot(t, mean, color=colour, label=rule, lw=1.4, zorder=3)
        drawn.append(mean)
        if len(runs) > 1:
            ax.fill_between(t, mean - sd, mean + sd, color=colour, alpha=BAND_ALPHA, lw=0,
                            zorder=2)
            drawn += [mean - sd, mean + sd]
        for r in runs:
            c = r[rule]
            if c["diverged"]:
                v = np.asarray(c[key], dtype=float)
                ax.plot(np.asarray(c["tick"], float)[-1:], np.nan_to_num(v[-1:], nan=0.0,
                        posinf=0.0), "x", color=colour, ms=8)
    if key == "loss":
        finite = np.concatenate(drawn)
        finite = finite[np.isfinite(finite) & (finite > 0)]
        if finite.size:
            ax.set_yscale("log")
            ax.set_ylim(finite.min() * 0.8, finite.max() * 1.25)
    else:
        ax.set_ylim(0.0, 1.0)
    ax.set(xlabel="tick", ylabel=f"test {key}")
    ax.grid(alpha=0.3)


def _draw_angles(ax, runs, rules, key):
    layers = 0
    for rule in rules:
        n_layers = max(len(a) for r in runs for a in r[rule][key])
        layers = max(layers, n_layers)
        t = np.asarray(max((r[rule]["tick"] for r in runs), key=len), dtype=float)
        angles = np.full((len(runs), len(t), n_layers), np.nan)
        for s, r in enumerate(runs):
            for i, a in enumerate(r[rule][key]):
                angles[s, i, :len(a)] = a
        mean = _mean_sd(angles)[0]
        for j in range(n_layers):
            ax.plot(t, mean[:, j], color=rule_colour(rule), lw=1.2,
                    ls=LAYER_STYLES[j % len(LAYER_STYLES)],
                    marker="." if len(t) < 3 else None, label=f"{rule} W{j + 1}")
    label, top = ANGLE_PANELS[key]
    ax.set(ylim=(0, top), xlim=(0, None), xlabel="tick", ylabel=label)
    ax.axhline(90, color="#999999", lw=0.8)
    ax.set_title("colour: rule, line: layer" + (", seed mean" if len(runs) > 1 else ""),
                 fontsize=9)
    ax.grid(alpha=0.3)
    styles = [Line2D([], [], color="#333333", lw=1.2, ls=LAYER_STYLES[j % len(LAYER_STYLES)],
                     label=f"W{j + 1}") for j in range(layers)]
    ax.legend(handles=styles, fontsize=LEGEND_PT, ncol=min(layers, 4), loc="lower left",
              handlelength=2.6, columnspacing=1.0)
