"""Sweep pictures from ``simulator.sweep``'s point records: the phase diagram of
steady mismatch over hold × depth, and final accuracy over hold per rule.
"""
import numpy as np
from matplotlib import colormaps
from matplotlib.lines import Line2D

from .axes import finish, new_figure
from .learning import LEGEND_PT, rule_colour

DEPTH_CMAP = "viridis"
BOUNDARY_COLOUR = "#d62728"   # measured h*(L)
PAPER_COLOUR = "#17becf"      # τs = L − 1 (cyan: seen on every shade of magma)


def _means(records, value, axis="stream.hold"):
    """{(depth, hold or speed): mean over seeds of summary[value]}."""
    groups = {}
    for r in records:
        key = (r["params"]["network.depth"], r["params"][axis])
        groups.setdefault(key, []).append(float(r["summary"].get(value, np.nan)))
    return {k: float(np.nanmean(v)) for k, v in groups.items()}


def render_phase(records, hstar, threshold, path, title="", axis="stream.hold"):
    """Write phase.png: left, the mean steady cosine over (hold, depth) with ``hstar``
    h*(L) (the least hold reaching ``threshold``) and the paper's τs = L − 1; right, per
    depth, cosine vs hold at ls and elsewhere. Along stream.speed: v*(L), v = 1/(L − 1)."""
    speed = axis == "stream.speed"
    means = _means(records, "mean_cos", axis)
    depths = sorted({d for d, _ in means})
    holds = sorted({h for _, h in means})
    grid = np.full((len(depths), len(holds)), np.nan)
    for (d, h), v in means.items():
        grid[depths.index(d), holds.index(h)] = v
    fig = new_figure((11, 4.4))
    ax, ax2 = fig.subplots(1, 2)
    im = ax.imshow(grid, origin="lower", aspect="auto", cmap="magma",
                   vmin=min(0.0, np.nanmin(grid)), vmax=1.0,
                   extent=(-0.5, len(holds) - 0.5, -0.5, len(depths) - 0.5))
    fig.colorbar(im, ax=ax, label="steady mean cos(g, ∇)")
    ax.set_xticks(range(len(holds)), [f"1/{round(1 / h)}" if speed and 0 < h < 1
                                      and (1 / h).is_integer() else f"{h:g}" for h in holds])
    ax.set_yticks(range(len(depths)), [str(d) for d in depths])
    ax.set(xlabel="speed v (pixels per tick)" if speed else "hold h (ticks per frame)",
           ylabel="depth L")

    def pos(hs):      # holds are drawn at their index: log-interpolate between them
        return np.interp(np.log(np.maximum(hs, 1e-9)), np.log(holds), np.arange(len(holds)))

    ax.plot(pos([1 / max(d - 1, 1) if speed else max(d - 1, holds[0]) for d in depths]),
            np.arange(len(depths)), color=PAPER_COLOUR, ls="--", lw=2,
            label="paper: 1 pixel per τs = L − 1" if speed else "paper τs = L − 1")
    measured = [(hstar[d], i) for i, d in enumerate(depths) if hstar.get(d) is not None]
    if measured:
        hs, rows = zip(*measured)
        ax.plot(pos(hs), rows, "o-", color=BOUNDARY_COLOUR, lw=2,
                label=f"measured {'v' if speed else 'h'}* (cos ≥ {threshold:g})")
    ax.legend(fontsize=LEGEND_PT, loc="lower right")
    sync, others = _means(records, "cos_ls", axis), _means(records, "cos_others", axis)
    colours = [colormaps[DEPTH_CMAP](i / max(len(depths) - 1, 1)) for i in range(len(depths))]
    for colour, d in zip(colours, depths):
        hs = [h for h in holds if (d, h) in sync]
        ax2.plot(hs, [others[(d, h)] for h in hs], "-", color=colour)
        ax2.plot(hs, [sync[(d, h)] for h in hs], "--", color=colour)
    ax2.set_xscale("log", base=2)
    ax2.axhline(threshold, color="#999999", lw=0.8)
    ax2.set(xlabel="speed v" if speed else "hold h", ylabel="steady mean cosine")
    ax2.set_title("synchronization layer ls (dashed) vs other layers (solid)", fontsize=9)
    ax2.grid(alpha=0.3)
    # One entry per depth (colour) and one per line style, outside the curves.
    depth_key = [Line2D([], [], color=c, lw=1.5, label=f"L = {d} (ls = {(d + 1) // 2})")
                 for c, d in zip(colours, depths)]
    style_key = [Line2D([], [], color="#333333", ls="--", label="ls"),
                 Line2D([], [], color="#333333", ls="-", label="mean of other layers")]
    ax2.legend(handles=depth_key + style_key, fontsize=LEGEND_PT, loc="center left",
               bbox_to_anchor=(1.02, 0.5), frameon=False)
    return finish(fig, path, title)


def accuracy_table(records, value="final_accuracy"):
    """{rule: {hold: (mean, std, n)}} over seeds of the points' ``value``."""
    groups = {}
    for r in records:
        v, rule = r["summary"].get(value), r["params"].get("train.rules", "all")
        if v is not None:
            rule = rule if isinstance(rule, str) else "+".join(rule)
            groups.setdefault(rule, {}).setdefault(r["params"]["stream.hold"], []).append(float(v))
    return {rule: {h: (float(np.nanmean(v)) if np.isfinite(v).any() else float("nan"),
                       float(np.nanstd(v)) if np.isfinite(v).any() else float("nan"), len(v))
                   for h, v in sorted(by_hold.items())}
            for rule, by_hold in groups.items()}


def render_accuracy(records, path, title=""):
    """Write accuracy.png: final test accuracy (mean ± std over seeds) against
    hold time, one curve per rule."""
    table = accuracy_table(records)
    fig = new_figure((6.4, 4.2))
    ax = fig.subplots()
    for rule, by_hold in sorted(table.items()):
        hs = np.array(list(by_hold), dtype=float)
        m, s, _ = np.array(list(by_hold.values()), dtype=float).T
        ax.errorbar(hs, m, yerr=s, color=rule_colour(rule), marker="o", ms=3, capsize=2, label=rule)
    ax.set_xscale("log", base=2)
    ax.set(ylim=(0, 1), xlabel="hold h (ticks per image)", ylabel="final test accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=LEGEND_PT, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    return finish(fig, path, title)

