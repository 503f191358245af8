"""train.seeds: one train run trains every rule on every seed. Each seed's curves
must be the run with run.seed = s (a separate run, today's one-seed path), the
summary's mean ± sd numpy's over those, and the file, picture and budget count
the seeds."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from simulator.command import main as tickprop
from simulator import kinds, scene
from simulator.errors import SceneError
from simulator.experiments import training
from simulator.kinds.train import train_budget
from simulator.runfiles import read_results, seed_curves

SETS = ["run.ticks=60", "train.eval_every=20", "train.eval_size=80"]


def _scene(*sets):
    name, sc = scene.load("train_digits")
    return scene.apply_overrides(sc, SETS + list(sets), name)


@pytest.mark.parametrize("workers", [1, 2])
def test_each_seed_is_the_run_with_that_run_seed(workers):
    sc = _scene('train.rules=["diffusion", "random", "backprop"]', "train.seeds=[3, 1, 4]")
    runs, summary = training.train_all(sc, workers=workers)
    assert [s for s, _ in runs] == [3, 1, 4]
    alone = {}
    for s, curves in runs:
        one = _scene('train.rules=["diffusion", "random", "backprop"]', f"run.seed={s}")
        alone[s], _ = training.train_scene(one)
        assert curves == alone[s], s
    assert runs[0][1]["diffusion"] != runs[1][1]["diffusion"]     # the seeds differ
    for rule in ("diffusion", "random", "backprop"):
        final = [alone[s][rule]["accuracy"][-1] for s in (3, 1, 4)]
        assert summary[f"{rule}.final_accuracy"] == pytest.approx(sum(final) / 3, abs=1e-15)
        m = sum(final) / 3
        sd = (sum((f - m) ** 2 for f in final) / 2) ** 0.5
        assert summary[f"{rule}.final_accuracy_sd"] == pytest.approx(sd, abs=1e-15)
        assert summary[f"{rule}.seeds"] == 3 and summary[f"{rule}.diverged"] is False


def test_no_seeds_or_one_seed_keep_the_one_seed_summary():
    plain = training.train_scene(_scene())
    assert training.train_all(_scene("train.seeds=[0]"))[1] == plain[1]
    assert not any(k.endswith(("_sd", ".seeds")) for k in plain[1])


@pytest.mark.parametrize("bad", ["train.seeds=[1, 1]", "train.seeds=[-1]"])
def test_bad_seed_lists_are_refused(bad):
    with pytest.raises(SceneError, match="train.seeds"):
        _scene(bad)


def test_the_budget_counts_every_learner_alive_at_once():
    one = train_budget(scene.spec_of(_scene())).items
    three = train_budget(scene.spec_of(_scene("train.seeds=[0, 1, 2]"))).items
    for part in ("weights", "state buffers", "learner work", "stream frames"):
        assert three[part] == 3 * one[part], part
    assert three["initial model"] == one["initial model"]


def test_a_run_saves_draws_and_summarises_every_seed(tmp_path):
    out = tmp_path / "run"
    sc = _scene("train.seeds=[0, 5]")
    kind = kinds.get("train")
    assert kind.progress(sc) == 60 * 2 * 2
    res = CliRunner().invoke(tickprop, ["run", "train_digits", "--out", str(out), "--set",
                                        "train.seeds=[0, 5]", *sum((["--set", s] for s in SETS),
                                                                  [])])
    assert res.exit_code == 0, res.output + res.stderr
    results = read_results(out)
    runs = seed_curves(results)
    assert [s for s, _ in runs] == [0, 5] and results["curves"] == runs[0][1]
    accs = [c["diffusion"]["accuracy"][-1] for _, c in runs]
    line = next(line for line in res.output.splitlines() if line.strip().startswith("diffusion"))
    assert f"{np.mean(accs):.4f} ± {np.std(accs, ddof=1):.4f}" in line and "n = 2" in line
    assert "mean ± sd over 2 seeds" in res.output
    assert (out / "learning.png").exists()


def test_an_old_results_file_and_a_damaged_seed_list(tmp_path):
    curve = {"tick": [0, 10], "accuracy": [0.1, 0.5], "loss": [2.3, 1.0],
             "angles": [[], []], "diverged": False, "error": ""}
    old = {"name": "x", "scene": {"run": {"seed": 7}}, "curves": {"backprop": curve}}
    (tmp_path / "results.json").write_text(json.dumps(old))
    assert seed_curves(read_results(tmp_path)) == [(7, {"backprop": curve})]
    bad = dict(old, seeds=[0, 1], seed_curves=[{"backprop": curve}, {"other": curve}])
    (tmp_path / "results.json").write_text(json.dumps(bad))
    with pytest.raises(Exception, match="rules of 'curves'"):
        read_results(tmp_path)


def test_a_rule_learns_at_its_own_rate_and_only_named_rules_take_one():
    """train.rates: a rule listed there learns at its η, the others at learning_rate.
    η = 0 freezes backprop (its test curve stays at the initial model's), and a
    rule's curve at rates = {r: η} equals the whole run at learning_rate = η."""
    base = ['train.rules=["diffusion", "backprop"]']
    frozen, _ = training.train_scene(_scene(*base, "train.rates={backprop = 0.0}"))
    assert len(set(frozen["backprop"]["loss"])) == 1
    assert len(set(frozen["diffusion"]["loss"])) > 1
    mixed, _ = training.train_scene(_scene(*base, "train.rates={diffusion = 0.02}"))
    fast, _ = training.train_scene(_scene(*base, "train.learning_rate=0.02"))
    slow, _ = training.train_scene(_scene(*base))
    assert mixed["diffusion"] == fast["diffusion"] and mixed["backprop"] == slow["backprop"]
    with pytest.raises(SceneError, match=r"train.rates.ar': 'ar' is not trained"):
        _scene(*base, "train.rates={ar = 0.01}")
    with pytest.raises(SceneError, match=r"did you mean 'backprop'"):
        _scene(*base, "train.rates={backprp = 0.01}")
