"""Learning curves of a `train` run (learning.png) from its curves dict (results.json)."""
import numpy as np
from matplotlib.lines import Line2D

from .axes import finish, new_figure

RULE_COLOURS = {"diffusion": "#d62728", "backprop": "#000000", "random": "#1f77b4",
                "sign": "#2ca02c", "learned": "#9467bd", "itd-y": "#ff7f0e",
                "itd-dy": "#8c564b", "frsf": "#17becf", "brsf": "#7b4173"}
LAYER_STYLES = ("-", "--", ":", "-.")
LEGEND_PT = 8
ANGLE_PANELS = {"grad_angles": ("update vs backprop [deg]", 180),
                "angles": ("angle(W_l, F_l) [deg]", 100)}


def rule_colour(rule):
    """The fixed colour of a rule's curves."""
    return RULE_COLOURS.get(rule, "#7f7f7f")


def render_learning(curves, path, title=""):
    """Write learning.png against tick: test accuracy (classes only), test loss (log),
    per layer the angles of each rule's update to backprop's gradient and of W to F;
    a colour per rule, a diverged rule's curve ending in ×."""
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
            _draw_angles(ax, curves, angled[panel], panel)
        else:
            _draw_metric(ax, curves, panel)
    handles = [Line2D([], [], color=rule_colour(rule), lw=1.8, label=rule) for rule in curves]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 7),
               fontsize=LEGEND_PT, frameon=False)
    return finish(fig, path, title)


def _draw_metric(ax, curves, key):
    for rule, c in curves.items():
        t = np.asarray(c["tick"], dtype=float)
        v = np.asarray(c[key], dtype=float)
        ax.plot(t, v, color=rule_colour(rule), label=rule, lw=1.4)
        if c["diverged"]:
            ax.plot(t[-1:], np.nan_to_num(v[-1:], nan=0.0, posinf=0.0), "x",
                    color=rule_colour(rule), ms=8)
    if key == "loss":
        finite = np.concatenate([np.asarray(c["loss"], float) for c in curves.values()])
        finite = finite[np.isfinite(finite) & (finite > 0)]
        if finite.size:
            ax.set_yscale("log")
            ax.set_ylim(finite.min() * 0.8, finite.max() * 1.25)
    else:
        ax.set_ylim(0.0, 1.0)
    ax.set(xlabel="tick", ylabel=f"test {key}")
    ax.grid(alpha=0.3)


def _draw_angles(ax, curves, rules, key):
    layers = 0
    for rule in rules:
        c = curves[rule]
        t = np.asarray(c["tick"], dtype=float)
        n_layers = max(len(a) for a in c[key])
        layers = max(layers, n_layers)
        angles = np.full((len(t), n_layers), np.nan)
        for i, a in enumerate(c[key]):
            angles[i, :len(a)] = a
        for j in range(n_layers):
            ax.plot(t, angles[:, j], color=rule_colour(rule), lw=1.2,
                    ls=LAYER_STYLES[j % len(LAYER_STYLES)],
                    marker="." if len(t) < 3 else None, label=f"{rule} W{j + 1}")
    label, top = ANGLE_PANELS[key]
    ax.set(ylim=(0, top), xlim=(0, None), xlabel="tick", ylabel=label)
    ax.axhline(90, color="#999999", lw=0.8)
    ax.set_title("colour: rule, line: layer", fontsize=9)
    ax.grid(alpha=0.3)
    styles = [Line2D([], [], color="#333333", lw=1.2, ls=LAYER_STYLES[j % len(LAYER_STYLES)],
                     label=f"W{j + 1}") for j in range(layers)]
    ax.legend(handles=styles, fontsize=LEGEND_PT, ncol=min(layers, 4), loc="lower left",
              handlelength=2.6, columnspacing=1.0)
