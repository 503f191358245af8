"""The default learning rate of a `train` scene (docs/defaults.md): the rule that
chose it, applied to the measurements docs/defaults.md publishes, must give the
shipped default; the example scenes a new user would write set no rule option
and so run at it. Oracles: the per-seed accuracies written in the docs' table
(their mean, sample sd and gap recomputed here) and the example files as text."""
import os
import re
import statistics

import pytest

from simulator.scene import load, spec_of
from simulator.scene.sections import TRAIN

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "defaults.md")
EXAMPLES = ("user_mlp", "user_conv_residual", "user_deep_conv")
# The rule, as docs/defaults.md states it: on every example scene, every seed of
# diffusion ends at >= LEARNED held-out accuracy (5x chance on ten classes), none
# diverged, and diffusion's mean is within MAX_GAP points of backprop's.
LEARNED, MAX_GAP, SEEDS = 0.5, 10.0, 3
# the summaries come from unrounded accuracies, the per-seed cells show 3 decimals
ROUND = 1.05e-3


def grid():
    """{(scene, η, rule): row} from the table under '## The grid' of docs/defaults.md."""
    text = open(DOC, encoding="utf-8").read()
    table = text.split("## The grid", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 12 or not re.fullmatch(r"[0-9.]+", cells[4]):
            continue
        scene, _, _, _, eta, rule, seeds, accs, mean_sd, gap, diverged, _ = cells
        rows[scene, float(eta), rule] = dict(
            seeds=[int(s) for s in seeds.split(",")], acc=[float(a) for a in accs.split(",")],
            mean_sd=mean_sd, gap=gap, diverged=int(diverged))
    return rows


def test_the_tables_summaries_follow_from_its_per_seed_numbers():
    rows = grid()
    assert {k[0] for k in rows} == set(EXAMPLES)
    for (scene, eta, rule), row in rows.items():
        acc = row["acc"]
        assert len(acc) == len(row["seeds"])
        if len(acc) > 1:
            mean, sd = (float(x) for x in row["mean_sd"].split("±"))
            assert mean == pytest.approx(statistics.mean(acc), abs=ROUND)
            assert sd == pytest.approx(statistics.stdev(acc), abs=2 * ROUND)
        if rule == "diffusion":
            other = rows[scene, eta, "backprop"]["acc"]
            gap = 100 * (statistics.mean(acc) - statistics.mean(other))
            assert float(row["gap"]) == pytest.approx(gap, abs=0.05 + 200 * ROUND)


def chosen(rows):
    """The largest η of the grid, measured on every scene with SEEDS seeds, at
    which diffusion learns on every scene by the rule above (None: no such η)."""
    ok = []
    for eta in sorted({k[1] for k in rows}):
        cells = [(rows.get((s, eta, "diffusion")), rows.get((s, eta, "backprop")))
                 for s in EXAMPLES]
        if any(d is None or b is None or len(d["acc"]) < SEEDS for d, b in cells):
            continue
        if all(min(d["acc"]) >= LEARNED and d["diverged"] == 0 and b["diverged"] == 0
               and 100 * (statistics.mean(d["acc"]) - statistics.mean(b["acc"])) >= -MAX_GAP
               for d, b in cells):
            ok.append(eta)
    return max(ok) if ok else None


def test_the_default_is_the_largest_rate_at_which_diffusion_learns_on_every_example():
    rows = grid()
    eta = chosen(rows)
    assert eta is not None and TRAIN["learning_rate"].default == eta
    # the grid was measured above the choice, and every larger η fails the rule
    larger = {k: v for k, v in rows.items() if k[1] > eta}
    assert len({k[1] for k in larger}) >= 2 and chosen(larger) is None
    text = open(DOC, encoding="utf-8").read()
    assert f"train.learning_rate = {eta:g}" in text


def test_the_rule_rejects_a_rate_that_fails_one_scene():
    rows = grid()
    eta = chosen(rows)
    stuck = dict(rows[EXAMPLES[1], eta, "diffusion"], acc=[0.1] * SEEDS)
    assert chosen({**rows, (EXAMPLES[1], eta, "diffusion"): stuck}) != eta


@pytest.mark.parametrize("name", EXAMPLES)
def test_an_example_sets_no_rule_option_and_runs_at_the_default(name):
    path = os.path.join(ROOT, "examples", name + ".toml")
    text = open(path, encoding="utf-8").read()
    assert "[train]" not in text and "learning_rate" not in text
    spec = spec_of(load(path)[1])
    assert spec.kind == "train" and spec.train.learning_rate == TRAIN["learning_rate"].default
    assert spec.supervision_delay == spec.network.output_level       # causal d_y = D
