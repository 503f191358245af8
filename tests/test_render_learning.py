"""learning.png as a reader sees it (issue 23, item 6): a rule whose curves equal
backprop's is drawn and named so, a rule ending at chance gets a note saying why,
the angle panels name the scene's weighted layers, one panel per layer, and the
figure passes the lint. The curves are built here, so the expectations are known
by construction; the layer names are read from the scene's TOML, not the model."""
import os
import tomllib

import numpy as np
import pytest

from figure_lint import lint_figure
from simulator import scene
from simulator.kinds.train import picture_names
from simulator.render import learning

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICKS = [0, 100, 200, 300, 400]
TICK_RULES = {"diffusion", "random", "sign", "frsf", "brsf", "learned", "dfa", "itd-y", "itd-dy"}


def curve(acc, loss, grad=(), angles=(), diverged=False):
    return {"tick": list(TICKS), "accuracy": list(acc), "loss": list(loss),
            "grad_angles": [[]] + [list(grad)] * (len(TICKS) - 1),
            "angles": [list(angles)] * len(TICKS), "diverged": diverged, "error": ""}


def seed(k):
    """Curves of one seed: zil = backprop to the bit, ar within 2e-6, sign at
    chance with updates at 95°, random learning."""
    acc = [0.1, 0.5 + k / 100, 0.7, 0.8, 0.9]
    loss = [2.3, 1.2, 0.8, 0.5 - k / 100, 0.3]
    return {"backprop": curve(acc, loss),
            "zil": curve(acc, loss),
            "ar": curve(acc, np.multiply(loss, 1 + 2e-6), grad=[0.1, 0.2, 0.1]),
            "sign": curve([0.1, 0.11, 0.09, 0.1, 0.12], [2.3] * 5, grad=[95, 96, 94],
                          angles=[40, 41]),
            "random": curve([0.1, 0.4, 0.6, 0.7, 0.8], [2.3, 1.5, 1.0, 0.8, 0.6],
                            grad=[50, 60, 70], angles=[80, 70])}


@pytest.fixture
def drawn(monkeypatch, tmp_path):
    """(figure, path) of render_learning(*args) as saved."""
    got = {}

    def keep(fig, path, title=""):
        got["fig"] = fig
        return path
    monkeypatch.setattr(learning, "finish", keep)

    def draw(*args, **kwargs):
        learning.render_learning(*args, path=str(tmp_path / "learning.png"), **kwargs)
        got["fig"].canvas.draw()
        return got["fig"]
    return draw


def texts(fig):
    out = [t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text"))]
    return out + [leg.get_title().get_text() for leg in fig.legends]


def test_twins_of_backprop_are_found_and_said(drawn):
    runs = [seed(k) for k in range(3)]
    twins = learning._twins(runs)
    assert list(twins) == ["zil", "ar"]
    assert twins["zil"][1] == "= backprop (exact)"
    assert twins["ar"][1] == "= backprop (within 2e-06)"
    assert twins["zil"][0] != twins["ar"][0]
    off = [dict(r, ar=curve(r["ar"]["accuracy"], np.multiply(r["ar"]["loss"], 1.01)))
           for r in runs]
    assert list(learning._twins(off)) == ["zil"]        # 1 % off is not backprop
    nan = [dict(r, zil=curve(r["zil"]["accuracy"], [np.nan] * len(TICKS))) for r in runs]
    assert list(learning._twins(nan)) == ["ar"]         # a NaN loss equals no number
    regression = [{k: dict(c, accuracy=[np.nan] * len(TICKS)) for k, c in r.items()}
                  for r in runs]
    assert list(learning._twins(regression)) == ["zil", "ar"]   # NaN accuracy on both
    fig = drawn(runs[0], seeds=runs, chance=0.1)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "zil = backprop (exact)" in legend and "ar = backprop (within 2e-06)" in legend
    # drawn as markers only, on top of backprop's line, at alternating evaluations
    acc_ax = fig.subfigs[0].axes[0]
    marks = [ln for ln in acc_ax.get_lines() if ln.get_linestyle() == "None"
             and ln.get_marker() in ("o", "x")]
    assert len(marks) == 2
    assert all(ln.get_zorder() > 3 for ln in marks)
    shown = [set(np.asarray(ln.get_xdata())[slice(*[ln.get_markevery()[0], None,
                                                    ln.get_markevery()[1]])]) for ln in marks]
    assert shown[0] and shown[1] and not shown[0] & shown[1]


def test_a_rule_at_chance_is_explained(drawn):
    runs = [seed(k) for k in range(3)]
    fig = drawn(runs[0], seeds=runs, chance=0.1)
    title = fig.legends[0].get_title().get_text()
    assert title.count("ends at chance") == 1
    assert "sign ends at chance (0.12, chance 0.10)" in title.replace("\n", " ")
    assert "95° from backprop's gradient" in title.replace("\n", " ")
    blown = [dict(r, sign=curve([0.1, 0.1], [2.3, np.inf], diverged=True)) for r in runs]
    for r in blown:
        r["sign"]["tick"] = TICKS[:2]
    fig = drawn(blown[0], seeds=blown, chance=0.1)
    assert "sign ends at chance" in fig.legends[0].get_title().get_text()
    assert "diverged" in fig.legends[0].get_title().get_text()
    assert fig.legends[0].get_title().get_text().count("ends at chance") == 1
    fig = drawn(runs[0], seeds=runs, chance=0.1, why={"sign": "frames mixed at conv"})
    assert "sign ends at chance (0.12, chance 0.10): frames mixed at conv" in texts(fig)
    fig = drawn(runs[0], seeds=runs)                # no chance given: no note
    assert not fig.legends[0].get_title().get_text()


def test_angle_panels_one_per_layer_named_as_the_scene(drawn):
    runs = [seed(k) for k in range(2)]
    layers = {"grad_angles": ["conv", "h", "out"], "angles": ["h", "out"]}
    fig = drawn(runs[0], seeds=runs, layers=layers, chance=0.1)
    grad, wf = fig.subfigs[1], fig.subfigs[2]
    assert [a.get_title() for a in grad.axes if a.get_visible()] == ["conv", "h", "out"]
    assert [a.get_title() for a in wf.axes if a.get_visible()] == ["h", "out"]
    assert "conv: on the input, no F used" in wf._suptitle.get_text()
    assert "dfa" not in wf._suptitle.get_text()
    with_dfa = [dict(r, dfa=curve([0.1, 0.3, 0.5, 0.6, 0.7], [2.3] * 5, grad=[60] * 3))
                for r in runs]                  # DFA's B_v has no W's shape: no W-F angle
    wf_dfa = drawn(with_dfa[0], seeds=with_dfa, layers=layers, chance=0.1).subfigs[2]
    assert wf_dfa._suptitle.get_text().endswith(
        "(conv: on the input, no F used; dfa: no F of W's shape)")
    # W-F panel of "out" holds the second angle of each rule that has one
    out = next(a for a in wf.axes if a.get_title() == "out")
    ys = sorted(float(np.asarray(ln.get_ydata())[-1]) for ln in out.get_lines()
                if len(ln.get_ydata()) == len(TICKS))
    assert ys == [41.0, 70.0]
    assert not [t for t in texts(fig) if t.startswith("W") and t[1:].isdigit()]
    assert lint_figure(fig) == []
    fig = drawn(runs[0])                            # no names given: W1, W2, ...
    assert [a.get_title() for a in fig.subfigs[1].axes if a.get_visible()] == ["W1", "W2", "W3"]


def test_picture_names_are_the_weighted_layers_of_the_scene():
    with open(os.path.join(ROOT, "scenes", "compare_rules_model.toml"), "rb") as f:
        layers = tomllib.load(f)["network"]["layers"]
    weighted = [d["name"] for d in layers if d["kind"] in ("dense", "conv2d")]
    got = picture_names(scene.load("compare_rules_model")[1])
    assert got["layers"]["grad_angles"] == weighted
    assert got["layers"]["angles"] == weighted[1:]          # conv reads the input
    assert got["chance"] == 1 / 10
    chain = picture_names(scene.load("train_digits")[1])
    assert chain["layers"]["grad_angles"] == ["layer 1", "layer 2", "layer 3", "layer 4"]
    assert picture_names({"kind": "train"}) == {}
    warned = picture_names(scene.load("compare_rules_model")[1], {"warnings": ["mixed"]})
    # the tick-engine rules take the run's pairing warning; AR, Z-IL, backprop do not
    assert sorted(warned["why"]) == sorted(TICK_RULES)
    assert set(warned["why"].values()) == {"mixed"}
