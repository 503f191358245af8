"""The memory budget covers the whole run: each kind of oversized run is refused
before anything is allocated, with advice that works; the estimate is honest
against tracemalloc; a decimated recording grows as ticks / every."""
import re
import tracemalloc

import numpy as np
import pytest

from simulator import scene as scenes
from simulator.errors import BudgetError, SceneError
from simulator.model import Model
from simulator.probes import RecordPlan, RunBudget
from simulator.runner import Prepared

MiB = 2 ** 20


def fig1(*overrides):
    name, resolved = scenes.load("fig1_constant")
    return name, scenes.apply_overrides(resolved, list(overrides), name)


def refusal(*overrides, gif=False):
    """The BudgetError message, and the traced peak while refusing."""
    name, resolved = fig1(*overrides)
    tracemalloc.start()
    try:
        with pytest.raises(BudgetError) as err:
            Prepared(name, resolved, gif=gif)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * MiB, "the refusal allocated part of the run first"
    return str(err.value)


@pytest.mark.parametrize("overrides,gif,part,knob", [
    (("network.depth=512", "network.width=65536"), False, "weights", "network.width"),
    (("network.sizes=[4, 65536, 65536, 4]",), False, "weights", "network.sizes"),
    (("stream.batch=65536", "network.width=4096", "record.states=false",
      "record.metrics=false"), False, "stream.batch", "stream.batch"),
    (("rule.supervision_delay=2048", "network.width=4096", "stream.batch=64"), False,
     "reference ring", "rule.supervision_delay"),
    (("run.ticks=600", "record.states=false", "render.size=[4000, 4000]",
      "record.memory_budget='200MiB'"), True, "gif frames",
     "--no-gif"),
])
def test_oversized_runs_are_refused_before_allocating(overrides, gif, part, knob):
    message = refusal(*overrides, gif=gif)
    assert "record.memory_budget" in message
    assert part in message and knob in message


@pytest.mark.parametrize("override", ["network.sizes=[4, 1000000000, 4]",
                                      "stream.batch=1000000000",
                                      "rule.supervision_delay=1000000000"])
def test_values_beyond_the_declared_ranges_are_refused_by_the_schema(override):
    """Inside its ranges a scene fits the budget or is refused above; beyond
    them the schema names the key before anything is built."""
    with pytest.raises(SceneError, match=re.escape(override.split("=")[0].split("[")[0])):
        fig1(override)


def test_the_gif_counts_only_when_it_will_be_drawn():
    name, resolved = fig1("run.ticks=600", "record.states=false", "render.size=[4000, 4000]")
    assert "gif frames" not in Prepared(name, resolved).budget.items


def test_advice_for_a_long_recording_works_when_followed():
    message = refusal("run.ticks=400000", "record.states=true", "record.metrics=false")
    every = int(re.search(r"record\.every = (\d+)", message).group(1))
    name, resolved = fig1("run.ticks=400000", "record.states=true", "record.metrics=false",
                          f"record.every={every}")
    assert Prepared(name, resolved).record_bytes <= 2 ** 30


def test_estimate_is_itemised_and_follows_the_options():
    plan = RecordPlan(100, 4, 8, 2, 8, metrics=False)
    chain = Model.chain_skeleton([3, 8, 8, 8, 2], ["tanh"] * 4)
    base = RunBudget(plan, chain)
    frame = RunBudget(plan, chain, derivative="frame", pairing="frame")
    # Two rings of 2D + 1 = 9 ticks (the longest lag is 2L − 1 = 7 on a chain
    # of depth D = L = 4) of every vertex's values, 3 + 8 + 8 + 8 + 2 = 29 per
    # batch row, B = 2, 8 bytes: no padding to the widest layer.
    assert frame.items["history rings"] == 2 * 9 * 29 * 2 * 8
    assert "history rings" not in base.items
    assert frame.total - base.total == frame.items["history rings"]
    assert RunBudget(plan, chain, supervision_delay=9).items["targets ring"] == \
        8 * 10 * 2 * 2


def test_a_chain_is_charged_its_layers_not_the_widest_one_times_the_depth():
    """The engine stacks no padding, so neither does the budget: a wide input
    layer costs its own weights once, not (L + 1) layers of its width."""
    plan = RecordPlan(10, 3, 784, 1, 8, metrics=False)
    wide = RunBudget(plan, Model.chain_skeleton([784, 32, 32, 10], ["tanh"] * 3))
    W = 784 * 32 + 32 * 32 + 32 * 10 + 32 + 32 + 10    # every weight and bias
    # one device copy and one host float64 copy of the student's parameters,
    # and the teacher, a chain of the student's shape (streams.make_teacher)
    assert wide.items["weights"] == 3 * 8 * W
    padded = 3 * 784 * 784                           # what padding every layer would take
    assert wide.items["weights"] < padded


@pytest.mark.parametrize("overrides", [
    ("network.width=128", "stream.batch=8", "run.ticks=600", "record.states=true",
     "record.every=5"),
    ("network.width=96", "stream.batch=16", "run.ticks=300", "record.states=false",
     "rule.supervision_delay=60", "rule.learning_rate=0.001", "rule.feedback='random'"),
])
def test_estimate_is_honest_against_the_traced_peak(overrides):
    name, resolved = fig1(*overrides)
    tracemalloc.start()
    try:
        prepared = Prepared(name, resolved)
        with np.errstate(all="ignore"):
            prepared.simulate()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # tracemalloc sees the run's allocations, not the interpreter it runs in
    # (nor pictures, which simulate() does not draw)
    items = prepared.budget.items
    run_only = prepared.budget.total - items["interpreter"] - items.get("pictures", 0)
    assert 0.5 <= peak / run_only <= 1.2


def test_the_estimate_counts_the_process_and_its_pictures():
    """What tracemalloc cannot see is still in the estimate: the interpreter
    always, the plotting library and figures only when pictures are drawn."""
    name, resolved = fig1("run.ticks=50")
    drawn = Prepared(name, resolved, pictures=True).budget.items
    bare = Prepared(name, resolved, pictures=False).budget.items
    assert drawn["interpreter"] == bare["interpreter"] > 32 * 2**20
    assert drawn["pictures"] > 32 * 2**20 and "pictures" not in bare


def traced_peak(ticks):
    name, resolved = fig1(f"run.ticks={ticks}", "record.every=100", "record.states=true",
                          "record.metrics=false")
    prepared = Prepared(name, resolved)
    tracemalloc.start()
    try:
        prepared.simulate()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_of_a_decimated_run_grows_as_ticks_over_every():
    growth = traced_peak(40000) - traced_peak(20000)
    # 200 more rows of norms, tags and states (L = 9, width 16): a few hundred KiB;
    # one row per tick would be ~20 MiB.
    assert growth < 2 * MiB


@pytest.mark.parametrize("scene,overrides,key,knob", [
    ("train_teacher", ["network.inputs=65536", "network.width=4096"], "train.memory_budget",
     "network.width"),
    ("ar_converge", ['relaxation.data="gaussian"', "network.sizes=[64, 65536, 65536, 10]"],
     "relaxation.memory_budget", "network.sizes"),
    ("ar_train", ["network.sizes=[64, 65536, 65536, 10]"], "relaxation.memory_budget",
     "network.sizes"),
])
def test_other_kinds_are_refused_before_allocating(scene, overrides, key, knob, tmp_path):
    """Training and relaxation scenes inside their declared ranges can ask for
    tens of GiB of weights: the CLI refuses them with one line naming the
    budget key and the knob, before anything is allocated, leaving no folder."""
    from click.testing import CliRunner

    from simulator.command import main as tickprop
    out = tmp_path / "out"
    args = ["run", scene, "--out", str(out), "--quiet"]
    for o in overrides:
        args += ["--set", o]
    tracemalloc.start()
    try:
        res = CliRunner().invoke(tickprop, args)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert res.exit_code == 2 and res.stderr.count("error:") == 1, res.stderr
    assert key in res.stderr and knob in res.stderr
    assert peak < 64 * MiB and not out.exists()


@pytest.mark.parametrize("rules", [["backprop"], ["diffusion", "random", "learned", "backprop"]])
def test_a_training_estimate_covers_every_rule_learning_side_by_side(rules):
    """The rules of a train scene learn in lockstep, so the estimate must hold
    all their learners at once: the traced peak of training (width 768, tiny
    inputs, so the weights dominate) stays under the charged estimate, which
    grows with every rule (each learner's weights and gradient)."""
    from simulator.kinds.train import train_budget
    from simulator.experiments.training import Setup, train_scene
    raw = {"kind": "train", "network": {"depth": 3, "width": 768, "inputs": 8, "outputs": 4},
           "stream": {"kind": "held", "batch": 4, "hold": 8}, "target": {"kind": "teacher"},
           "train": {"rules": rules, "eval_every": 20, "eval_size": 16, "loss": "mse"},
           "run": {"ticks": 20}}
    sc = scenes.validate(raw, "test")
    budget = train_budget(scenes.spec_of(sc))
    charged = budget.total - budget.items.get("interpreter", 0)
    tracemalloc.start()
    try:
        train_scene(sc, setup=Setup(scenes.spec_of(sc)))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= charged, (peak, budget)
    weights = 8 * 2 * 768 * 768            # one float64 copy of the two hidden matrices
    assert peak > len(rules) * weights     # every rule's copy is alive at once
