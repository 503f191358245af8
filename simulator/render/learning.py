"""Learning curves of a `train` run (learning.png) from its curves dict (results.json)."""
import textwrap

import numpy as np
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from .axes import finish, new_figure, quiet

RULE_COLOURS = {"diffusion": "#d62728", "backprop": "#000000", "random": "#1f77b4",
                "sign": "#2ca02c", "learned": "#9467bd", "itd-y": "#ff7f0e",
                "itd-dy": "#8c564b", "frsf": "#17becf", "brsf": "#7b4173",
                "ar": "#ff9896", "zil": "#bcbd22", "dfa": "#000080"}
LEGEND_PT = 8
BAND_ALPHA = 0.2
ANGLE_PANELS = {"grad_angles": ("update vs\nbackprop [deg]", 180,
                                "angle of each rule's update to backprop's gradient"),
                "angles": ("angle(W, F) [deg]", 100, "angle between W and its feedback F "
                           "(0° = backprop's F = Wᵀ)")}
# A rule whose every curve equals backprop's this closely (loss: relative, accuracy:
# absolute) is drawn as markers on backprop's line; below EXACT it reads "exact".
TWIN_REL, TWIN_EXACT = 1e-4, 1e-12
TWIN_MARKERS = ("o", "x", "s", "+")
MARKS = 10              # about this many markers along a twin's curve
CHANCE_FACTOR = 1.5     # a final accuracy below this many times chance is "at chance"
NO_DESCENT_DEG = 80     # an update this far from backprop's gradient hardly descends


def rule_colour(rule):
    """The fixed colour of a rule's curves."""
    return RULE_COLOURS.get(rule, "#7f7f7f")


def render_learning(curves, path, title="", seeds=None, layers=None, chance=None, why=None):
    """Write learning.png against tick: test accuracy (classes only) and loss on top,
    then per weighted layer each rule's update angle to backprop's gradient and W's to
    F; a diverged curve ends in ×, a rule equal to backprop is markers on its line.
    ``seeds``: every seed's {rule: curve} (``curves`` among them), drawn as mean ± sd.
    ``layers``: {"grad_angles" / "angles": layer names} (default W1, W2, ...);
    ``chance``: guessing's accuracy, a rule ending near it noted with ``why[rule]``
    (e.g. the run's pairing warning) or what its curves tell."""
    runs = seeds or [curves]
    classify = any(np.isfinite(np.asarray(c["accuracy"], dtype=float)).any()
                   for c in curves.values())
    twins = _twins(runs)
    # the rules with angles of each kind (an older results.json has no grad_angles)
    angled = {key: [r for r, c in curves.items() if any(len(a) for a in c.get(key, []))]
              for key in ANGLE_PANELS}
    names = {key: _layer_names(runs, angled[key], key, (layers or {}).get(key))
             for key in ANGLE_PANELS if angled[key]}
    columns = list(dict.fromkeys(n for key in names for n in names[key]))
    ncols = max(2, len(columns))
    width = max(8.4, 2.3 * ncols)
    # the chance notes wrapped to the canvas (a character about 0.6 font sizes wide)
    chars = int(width * 72 / (0.6 * (LEGEND_PT + 1))) - 4
    notes = [textwrap.fill(n, chars) for n in
             (_chance_notes(runs, chance, why or {}) if classify and chance else [])]
    lines = sum(n.count("\n") + 1 for n in notes) + -(-len(title) // (chars + 4))  # and the title's
    fig = new_figure((width, 3.2 + 2.5 * len(names) + 0.18 * lines))
    parts = fig.subfigures(1 + len(names), 1, height_ratios=[1.35] + [1.0] * len(names))
    parts = np.atleast_1d(parts)
    metrics = ["accuracy"] * classify + ["loss"]
    for ax, key in zip(parts[0].subplots(1, len(metrics), squeeze=False)[0], metrics):
        _draw_metric(ax, runs, key, twins, chance if key == "accuracy" else None)
    for part, key in zip(parts[1:], names):
        _angle_row(part, runs, angled[key], key, names[key], columns)
    handles = [Line2D([], [], color=rule_colour(rule), lw=1.8, label=rule) if rule not in twins
               else Line2D([], [], color=rule_colour(rule), ls="none", marker=twins[rule][0],
                           mfc="none", ms=6, mew=1.4, label=f"{rule} {twins[rule][1]}")
               for rule in curves]
    if len(runs) > 1:
        handles.append(Patch(color="#777777", alpha=BAND_ALPHA, label=f"±sd, {len(runs)} seeds"))
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 6),
               fontsize=LEGEND_PT, frameon=False, title_fontsize=LEGEND_PT + 1,
               title="\n".join(notes) or None)
    return finish(fig, path, title)


def _layer_names(runs, rules, key, given):
    """The names of ``key``'s weighted layers: ``given``, else W1, W2, ..."""
    n = max(len(a) for r in runs for rule in rules for a in r[rule][key])
    given = list(given or [])
    return given[:n] + [f"W{j + 1}" for j in range(len(given), n)]


def _stacked(runs, rule, key):
    """(ticks, values (seeds, ticks)) of one rule, a seed that stopped early NaN-padded."""
    rows = [np.asarray(r[rule][key], dtype=float) for r in runs]
    longest = max(range(len(runs)), key=lambda i: len(rows[i]))
    values = np.full((len(rows), len(rows[longest])) + rows[longest].shape[1:], np.nan)
    for i, row in enumerate(rows):
        values[i, :len(row)] = row
    return np.asarray(runs[longest][rule]["tick"], dtype=float), values


def _mean_sd(values):
    """Mean over axis 0 ignoring NaN, and the sample sd where ≥ 2 are finite."""
    mean = quiet(np.nanmean, values, axis=0)
    return mean, (quiet(np.nanstd, values, axis=0, ddof=1) if len(values) > 1
                  else np.full_like(mean, np.nan))


def _twins(runs):
    """{rule: (marker, legend note)} of the rules whose accuracy and loss equal
    backprop's on every seed (to TWIN_REL), e.g. Z-IL."""
    if "backprop" not in runs[0]:
        return {}
    out = {}
    for rule in (r for r in runs[0] if r != "backprop"):
        worst = 0.0
        for r in runs:
            a, b = r[rule], r["backprop"]
            if a["diverged"] or b["diverged"] or a["tick"] != b["tick"]:
                worst = np.inf
                break
            gaps = [_gap(a[k], b[k], rel) for k, rel in (("loss", True), ("accuracy", False))]
            worst = max([worst] + gaps)
        if worst <= TWIN_REL:
            note = "(exact)" if worst <= TWIN_EXACT else f"(within {worst:.0e})"
            out[rule] = (TWIN_MARKERS[len(out) % len(TWIN_MARKERS)], f"= backprop {note}")
    return out


def _gap(a, b, relative):
    """The largest |a − b| (relative to |b| if ``relative``); NaN in both counts as
    equal, in one as inf."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    with np.errstate(invalid="ignore", over="ignore"):
        gap = np.abs(a - b) / (np.maximum(np.abs(b), 1e-300) if relative else 1.0)
    gap = np.where(np.isnan(a) & np.isnan(b), 0.0, np.where(np.isnan(gap), np.inf, gap))
    return float(np.max(gap, initial=0.0))


def _draw_metric(ax, runs, key, twins, chance=None):
    drawn = []
    for rule in runs[0]:
        t, values = _stacked(runs, rule, key)
        mean, sd = _mean_sd(values)
        colour = rule_colour(rule)
        if rule in twins:       # markers on backprop's line, each twin's at other ticks
            k = list(twins).index(rule)
            step = max(len(twins), len(t) // MARKS)
            every = (min(k * (step // len(twins)), len(t) - 1), step)
            ax.plot(t, mean, color=colour, ls="none", marker=twins[rule][0], mfc="none",
                    ms=6, mew=1.4, markevery=every, zorder=4)
            continue
        ax.plot(t, mean, color=colour, label=rule, lw=2.2 if rule == "backprop" else 1.4,
                zorder=3)
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
        finite = np.concatenate(drawn) if drawn else np.array([])
        finite = finite[np.isfinite(finite) & (finite > 0)]
        if finite.size:
            ax.set_yscale("log")
            ax.set_ylim(finite.min() * 0.8, finite.max() * 1.25)
    else:
        ax.set_ylim(0.0, 1.0)
        if chance:
            ax.axhline(chance, color="#777777", lw=0.9, ls=":", zorder=1)
            ax.annotate("chance", xy=(1.0, chance), xycoords=("axes fraction", "data"),
                        xytext=(-3, -2), textcoords="offset points", ha="right", va="top",
                        fontsize=LEGEND_PT, color="#555555")
    ax.set(xlabel="tick", ylabel=f"test {key}")
    ax.grid(alpha=0.3)


def _chance_notes(runs, chance, why):
    """One line per rule whose final accuracy (seed mean) is below CHANCE_FACTOR ×
    ``chance``, saying why: divergence, ``why[rule]``, else as far as the curves tell."""
    notes = []
    for rule in runs[0]:
        finals = [r[rule] for r in runs]
        acc = np.array([c["accuracy"][-1] if len(c["accuracy"]) else np.nan for c in finals],
                       dtype=float)
        if not np.isfinite(acc).any() or np.nanmean(acc) > CHANCE_FACTOR * chance:
            continue
        angles = [a for c in finals for a in (c.get("grad_angles") or [[]])[-1:] if len(a)]
        angle = quiet(np.nanmean, np.asarray(angles, dtype=float)) if angles else np.nan
        loss = [quiet(np.nanmean, [float(c["loss"][i]) for c in finals]) for i in (0, -1)]
        if all(c["diverged"] for c in finals):
            reason = "it diverged (×)"
        elif why.get(rule):
            reason = why[rule]
        elif np.isfinite(angle) and angle >= NO_DESCENT_DEG:
            reason = (f"its update ends {angle:.0f}° from backprop's gradient (mean over "
                      "layers), so it hardly descends the loss")
        else:
            reason = f"its test loss went from {loss[0]:.3g} to {loss[1]:.3g} only"
        notes.append(f"{rule} ends at chance ({np.nanmean(acc):.2f}, chance {chance:.2f}): "
                     + reason)
    return notes


def _angle_row(part, runs, rules, key, names, columns):
    """A panel per weighted layer, in its column: each rule's angle (seed mean) by tick."""
    label, top, heading = ANGLE_PANELS[key]
    axes = part.subplots(1, max(2, len(columns)), squeeze=False)[0]
    for ax in axes[len(columns):]:
        ax.set_visible(False)
    missing = [n for n in columns if n not in names]
    notes = [f"{', '.join(missing)}: on the input, no F used"] if missing else []
    if key == "angles" and "dfa" in runs[0]:     # its B_v maps the output's error
        notes.append("dfa: no F of W's shape")
    part.suptitle(heading + (", seed mean" if len(runs) > 1 else "")
                  + (f" ({'; '.join(notes)})" if notes else ""), fontsize=9)
    for ax, name in zip(axes, columns):
        if name not in names:
            ax.set_visible(False)
            continue
        j = names.index(name)
        for rule in rules:
            t = np.asarray(max((r[rule]["tick"] for r in runs), key=len), dtype=float)
            angles = np.full((len(runs), len(t)), np.nan)
            for s, r in enumerate(runs):
                for i, a in enumerate(r[rule][key]):
                    if j < len(a):
                        angles[s, i] = a[j]
            ax.plot(t, _mean_sd(angles)[0], color=rule_colour(rule), lw=1.2,
                    marker="." if len(t) < 3 else None)
        ax.axhline(90, color="#999999", lw=0.8)
        ax.set(ylim=(-0.03 * top, top), xlim=(0, None), xlabel="tick")
        ax.set_title(name, fontsize=9)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8, labelleft=ax is axes[columns.index(names[0])])
    axes[columns.index(names[0])].set_ylabel(label)
