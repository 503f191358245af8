"""Defaults that learn (SPEC §1 options): a learning run gets causal supervision
(d_y = D) and a levelled graph unless told otherwise, a frozen run keeps the paper's
d_y = 0 and its graph; the pairing analysis that warns before a learning run whose
updates pair different frames; held-out results in every learning run's summary.
Oracles: the provenance tags (the frame each value belongs to), the graph's
distances, and a hand-written numpy forward pass."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from simulator import Model
from simulator.analysis.pairing import frame_spreads, pairing_warning
from simulator.build import pairing_warnings
from simulator.engine import Engine
from simulator.engine.tick import GraphEngine
from simulator.errors import SceneError, SimulatorError
from simulator.runner import Prepared
from simulator.scene import apply_overrides, load, spec_of
from simulator.kinds.diffusion import held_out_scores

from graph_models import RESIDUAL

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHAIN = ([4, 5, 5, 5, 5, 3], ["tanh"] * 4 + ["linear"])


def chain():
    return Model.chain(*CHAIN, seed=0)


def residual():
    return Model.from_layers(RESIDUAL, (5,), seed=5)


def test_a_frozen_engine_keeps_the_papers_delay_and_its_graph():
    e = Engine(residual())
    assert (e.supervision_delay, e.levelled) == (0, False)


@pytest.mark.parametrize("make", [chain, residual])
def test_a_learning_engine_supervises_causally(make):
    """With learning on and no delay given, δ at the output pairs the output of a
    frame with that frame's target: its supervision tag equals its output tag."""
    model = make()
    e = Engine(model, learning_rate=1e-3)
    assert e.supervision_delay == model.depth
    rng = np.random.default_rng(0)
    for _ in range(3 * model.depth + 2):
        e.step(rng.normal(size=(1,) + model.input_shape),
               rng.normal(size=(1,) + model.output_shape))
    tags = e.tags()
    assert tags["supervision"][e.out] == tags["output"][e.out] >= 0
    paper = Engine(model, learning_rate=1e-3, supervision_delay=0)
    for _ in range(3 * model.depth + 2):
        paper.step(np.zeros((1,) + model.input_shape), np.zeros((1,) + model.output_shape))
    t = paper.tags()
    assert t["supervision"][paper.out] - t["output"][paper.out] == model.depth


def test_learning_levels_a_graph_whose_paths_differ_and_leaves_a_chain():
    assert Engine(residual(), learning_rate=1e-3).levelled is True
    assert Engine(residual(), learning_rate=1e-3).model.is_levelled()
    assert Engine(residual(), learning_rate=1e-3, levelled=False).levelled is False
    assert Engine(chain(), learning_rate=1e-3).levelled is False      # nothing to level
    assert Engine(residual(), levelled=True).levelled is True


def test_words_and_mistakes():
    model = chain()
    assert Engine(model, supervision_delay="causal").supervision_delay == model.depth
    assert Engine(model, learning_rate=0.1, supervision_delay=2).supervision_delay == 2
    for bad in ("later", -1, 1.5, True):
        with pytest.raises(SimulatorError, match="supervision_delay must be"):
            Engine(model, supervision_delay=bad)
    with pytest.raises(SimulatorError, match="levelled"):
        GraphEngine(model, levelled="yes")


def scene(name, *overrides):
    _, resolved = load(name)
    return apply_overrides(resolved, list(overrides), name) if overrides else resolved


def test_a_scene_resolves_auto_by_whether_it_learns():
    frozen = spec_of(scene("conv_digits", "rule.learning_rate=0"))
    learning = spec_of(scene("conv_digits"))
    assert (frozen.supervision_delay, learning.supervision_delay) == (0, 4)
    assert spec_of(scene("train_digits")).supervision_delay == spec_of(
        scene("train_digits")).network.output_level == 4
    assert spec_of(scene("conv_digits", "rule.supervision_delay=2")).supervision_delay == 2
    assert spec_of(scene("fig3_fast", "rule.supervision_delay=causal")).supervision_delay == 9
    # the figure scenes say the paper's d_y = 0 themselves
    for fig in ("fig1_constant", "fig2_slow", "fig3_fast"):
        assert scene(fig)["rule"]["supervision_delay"] == 0
    res = spec_of(scene("residual_levelling"))
    assert res.levelled is False                 # frozen, and the scene says false
    learn = spec_of(scene("residual_levelling", "rule.learning_rate=0.01",
                          "network.levelled=auto"))
    assert learn.levelled is True


def test_a_misspelt_word_is_one_scene_error():
    with pytest.raises(SceneError, match=r"rule.supervision_delay.*did you mean 'causal'"):
        spec_of(scene("conv_digits", "rule.supervision_delay=casual"))


def distances(model):
    """Longest path input → v (``levels``) and v → output, by hand over the edges."""
    fwd = [model.levels()[v.name] for v in model.vertices]
    bwd = [0] * len(model.vertices)
    for v in reversed(model.vertices[:-1]):
        bwd[v.index] = 1 + max(bwd[c.index] for c in model.vertices if v.index in c.parents)
    return fwd, bwd


def expected_spreads(model, d_y, D):
    """Hand formula of a levelled graph's span per weighted vertex v under local
    pairing: its parents' x are of frame t − fwd(p), δ's output activity of
    t − bwd(v) − D and its target of t − bwd(v) − d_y."""
    fwd, bwd = distances(model)
    out = {}
    for v in model.vertices[1:]:
        if v.param_names:
            lags = [fwd[p] for p in v.parents] + [bwd[v.index] + D, bwd[v.index] + d_y]
            out[v.name] = max(lags) - min(lags)
    return out


@pytest.mark.parametrize("make", [chain, lambda: residual().level()])
@pytest.mark.parametrize("d_y", [0, 1, "causal"])
def test_the_span_of_each_update_follows_the_distances(make, d_y):
    model = make()
    D = model.depth
    got = frame_spreads(model, supervision_delay=d_y)
    assert got == expected_spreads(model, D if d_y == "causal" else d_y, D)
    if d_y == "causal":
        fwd, bwd = distances(model)
        assert all(s == 2 * bwd[model.names.index(n)] + 1 for n, s in got.items())


def test_frame_options_with_causal_delay_pair_one_frame_everywhere():
    """Fact B′: levelled, frame derivative and pairing, d_y = D: every update is one
    frame's, so every span is 0."""
    got = frame_spreads(residual().level(), supervision_delay="causal", pairing="frame",
                        derivative="frame")
    assert set(got.values()) == {0}


def test_the_warning_fires_when_most_layers_pair_different_frames():
    spreads = {"1": 9, "2": 7, "3": 5, "4": 3, "5": 1}
    line = pairing_warning(spreads, 8, 5, 5)               # 9, 7, 5 > 4
    assert line.startswith("3 of 5 weighted layers (1, 2, 3)") and "at least 18" in line
    assert pairing_warning(spreads, 16, 5, 5) is None      # only 9 > 8
    assert pairing_warning(spreads, None, 5, 5) is None    # a constant input
    assert "'causal' (d_y = D = 5, now 0)" in pairing_warning(spreads, 8, 0, 5)


def test_a_learning_scene_warns_and_a_frozen_or_slow_one_does_not():
    fast = spec_of(scene("train_digits", "stream.hold=4"))
    slow = spec_of(scene("train_digits"))
    frozen = spec_of(scene("fig3_fast"))
    model = Model.chain(*fast.network.shape, seed=0)
    assert len(pairing_warnings(fast, fast.train, model)) == 1
    assert pairing_warnings(slow, slow.train, model) == []
    assert pairing_warnings(frozen, frozen.rule, Model.chain(*frozen.network.shape)) == []


def test_the_command_line_prints_one_warning_line_and_keeps_it(tmp_path):
    out = tmp_path / "run"
    res = subprocess.run([sys.executable, "cli.py", "run", "train_digits", "--ticks", "20",
                          "--set", "stream.hold=4", "--no-png", "--quiet", "--out", str(out)],
                         capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    warnings = [line for line in res.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "different frames" in warnings[0]
    assert json.loads((out / "run.json").read_text())["warnings"] == [warnings[0][9:]]


def test_a_learning_diffusion_run_reports_held_out_results_a_hand_forward_pass_agrees():
    prepared = Prepared("train", scene("fig3_fast", "run.ticks=30", "rule.learning_rate=0.05",
                                       "rule.supervision_delay=auto", "record.states=false"))
    trace = prepared.simulate()
    assert trace.meta["resolved"] == {"supervision_delay": 9, "levelled": False}
    scores = held_out_scores(prepared)
    # the teacher's held-out set, pushed through the final weights by hand
    from simulator.experiments.training import held_out
    from simulator.build import seeds
    spec = prepared.spec
    x, y = held_out(spec, prepared.network, seeds(spec.run.seed).teacher)
    params = prepared.final_model.parameters()
    a = x
    acts = spec.network.shape[1]
    for l, act in enumerate(acts, start=1):
        a = a @ params[f"{l}.W"].T + params[f"{l}.b"]
        a = np.tanh(a) if act == "tanh" else a
    want = np.mean(0.5 * np.sum((a - y) ** 2, axis=1))
    assert scores["accuracy"] == [None, None] and scores["samples"] == len(x) == 512
    assert scores["loss"][1] == pytest.approx(want, rel=1e-12)
    assert scores["loss"][1] != scores["loss"][0]



def test_the_notebook_api_warns_as_a_python_warning():
    import simulator
    with pytest.warns(UserWarning, match="different frames") as caught:
        trace = simulator.simulate("fig3_fast", ticks=12, **{"rule.learning_rate": 0.01,
                                                             "record.states": False})
    assert len([w for w in caught if "different frames" in str(w.message)]) == 1
    assert trace.meta["resolved"] == {"supervision_delay": 0, "levelled": False}
