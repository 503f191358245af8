"""The shipped learning scenes of issue 21 item 2 at a few ticks: every rule on
every seed saved (results.json's seed curves, the summary's mean ± sd and n),
and the fast twin's pairing warning from the frame spreads it names. Their
full-length numbers are in docs/learning_scenes.md."""
import json

import numpy as np
import pytest

from simulator import kinds, scene
from simulator.analysis.pairing import frame_spreads
from simulator.experiments.training import seed_setups
from simulator.runfiles import read_results

SCENES = ("train_mnist", "train_mnist_fast", "compare_rules_model")


def _short(name):
    _, sc = scene.load(name)
    return scene.apply_overrides(sc, ["run.ticks=4", "train.eval_every=2", "train.eval_size=40",
                                      "train.ar_iterations=2"]
                                 if "ar" in sc["train"]["rules"] else
                                 ["run.ticks=4", "train.eval_every=2", "train.eval_size=40"],
                                 name)


@pytest.mark.parametrize("name", SCENES)
def test_a_short_run_saves_every_rule_on_three_seeds(name, tmp_path):
    sc = _short(name)
    warned = []
    meta = kinds.run_scene(name, sc, tmp_path / name, draw_options={"png": False},
                           warn=warned.append)
    results = read_results(tmp_path / name)
    rules = sc["train"]["rules"]
    assert len(rules) == (12 if name == "compare_rules_model" else 2)
    assert results["seeds"] == [0, 1, 2] and len(results["seed_curves"]) == 3
    for curves in results["seed_curves"]:
        assert list(curves) == rules
        for c in curves.values():
            assert c["tick"] == [0, 2, 4] and len(c["accuracy"]) == 3
    s = meta["summary"]
    for rule in rules:
        final = [c[rule]["accuracy"][-1] for c in results["seed_curves"]]
        assert s[f"{rule}.seeds"] == 3
        assert s[f"{rule}.final_accuracy"] == pytest.approx(np.mean(final), abs=1e-12)
        assert s[f"{rule}.final_accuracy_sd"] == pytest.approx(np.std(final, ddof=1), abs=1e-12)
    assert bool(warned) == (name == "train_mnist_fast"), warned


def test_the_twins_differ_in_the_hold_alone_and_the_warning_names_its_spreads():
    _, slow = scene.load("train_mnist")
    _, fast = scene.load("train_mnist_fast")
    assert (slow["stream"]["hold"], fast["stream"]["hold"]) == (16, 4)
    assert json.dumps(dict(slow, stream=None, description="")) == \
        json.dumps(dict(fast, stream=None, description=""))
    assert dict(slow["stream"], hold=4) == fast["stream"]
    setup = seed_setups(_short("train_mnist_fast"))[0]
    spreads = frame_spreads(setup.model, supervision_delay=setup.spec.supervision_delay,
                            levelled=bool(setup.spec.levelled))
    assert spreads == {"conv": 9, "h": 3, "out": 1}      # what both descriptions state
    assert setup.spec.supervision_delay == 5
