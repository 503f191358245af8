"""Every PNG figure of every shipped scene passes the figure lint
(tests/figure_lint.py): no text outside the canvas or over another text,
legends and tick labels of at least 8 pt, a colorbar (or a legend, for a
categorical image) on every heat map.

Each scene in scenes/*.toml runs in-process through the CLI at reduced length
(REDUCED), sweeps on a tiny grid built from the shipped sweep (first values of
each axis, one seed, short points), and a hook in ``simulator.files.save_png``
(through which every PNG is written) lints each Figure before it is saved.
The lint rules themselves are checked on hand-made figures whose problems are
known by construction.
"""
import glob
import json
import os
import re
import tomllib

import numpy as np
import pytest
from click.testing import CliRunner
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from simulator.command import main as tickprop
from simulator import files
from figure_lint import lint_figure
from simulator.render.lint import mark_categorical, mark_keyed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCENES = sorted(os.path.splitext(os.path.basename(p))[0]
                for p in glob.glob(os.path.join(ROOT, "scenes", "*.toml")))

# Command-line arguments that make each scene cheap while drawing every picture.
REDUCED = {
    "ar_converge": ["--set", "relaxation.iterations=12", "--set", "relaxation.batch=8"],
    "ar_train": ["--set", "train.epochs=1", "--set", "train.seeds=[0, 1]",
                 "--set", "relaxation.iterations=2", "--set", "train.batch=32",
                 "--set", "train.test_fraction=0.8", "--set", "train.eval_every=4"],
    "compare_rules": ["--ticks", "400", "--set", "train.eval_every=100"],
    "compare_rules_model": ["--ticks", "200", "--set", "train.eval_every=100"],
    "conv_digits": ["--ticks", "30"],
    "fig1_constant": [],
    "fig2_slow": [],
    "fig3_fast": [],
    "locking": [],
    "pc_wave": [],
    "pipelined": ["--ticks", "60"],
    "residual_levelling": [],
    "schedules_zoo": ["--set", "schedules.frames=8", "--set", "schedules.seeds=[0, 1]",
                      "--set", "schedules.eval_size=20", "--set", "schedules.eval_every=16"],
    "sync_linear": [],
    "sync_learning": ["--ticks", "120"],
    "train_digits": ["--ticks", "400", "--set", "train.eval_every=100"],
    "train_teacher": ["--ticks", "400", "--set", "train.eval_every=100"],
    "train_mnist": ["--ticks", "64", "--set", "train.eval_every=32",
                    "--set", "train.eval_size=40"],
    "train_mnist_fast": ["--ticks", "64", "--set", "train.eval_every=32",
                         "--set", "train.eval_size=40"],
    "compare_rules_motion": ["--ticks", "40", "--set", "train.eval_every=20",
                             "--set", "train.eval_size=40", "--set", "train.ar_iterations=2"],
}
# Sweeps: the shipped grid cut to its first values, one seed, short points.
SWEEP_SET = {"sweep_rules": {"run.ticks": 200, "train.eval_every": 100},
             "sweep_speed_depth": {"run.ticks": 64},
             "sweep_speed_depth_motion": {"run.ticks": 64}}
SWEEP_VALUES = {"sweep_rules": {"train.rules": 3, "stream.hold": 2},
                "sweep_speed_depth": {"network.depth": 2, "stream.hold": 3},
                "sweep_speed_depth_motion": {"network.depth": 2, "stream.speed": 3}}
# Scenes that draw no PNG at all (their results are tables).
NO_PNG = {"zil_table": "pc_table writes table1.csv, table2.csv and tables.md, no figure"}
# A scene that draws the same figures as another is linted through that one:
# train_mnist differs from train_mnist_fast only in stream.hold (same kind, net,
# rules, seeds and pictures; test_a_twin_differs_only_in_its_hold), and ~18 s.
TWINS = {"train_mnist": "train_mnist_fast"}
# Pictures known to fail the lint: {file name: (reason, problems tolerated)}.
KNOWN = {}     # picture name -> (why, regexes of the problems tolerated); none left


def untolerated(png, problems):
    """The problems of ``png`` that KNOWN does not tolerate."""
    patterns = KNOWN.get(png, ("", ()))[1]
    return [p for p in problems if not any(re.search(r, p) for r in patterns)]


def test_every_shipped_scene_is_linted():
    """A new scene must be added to REDUCED, SWEEP_SET or NO_PNG."""
    assert set(SCENES) <= set(REDUCED) | set(SWEEP_SET) | set(NO_PNG)
    assert set(TWINS.values()) <= set(SCENES) - set(TWINS) - set(NO_PNG)


def _flat(name):
    with open(os.path.join(ROOT, "scenes", f"{name}.toml"), "rb") as f:
        scene = tomllib.load(f)
    return {(s, k): v for s, table in scene.items() if isinstance(table, dict)
            for k, v in table.items()} | {s: v for s, v in scene.items()
                                          if not isinstance(v, dict)}


def test_a_twin_differs_only_in_its_hold():
    for twin, linted_instead in TWINS.items():
        a, b = _flat(twin), _flat(linted_instead)
        assert set(a) == set(b)
        assert {k for k in a if a[k] != b[k]} == {"description", ("stream", "hold")}
        assert REDUCED[twin] == REDUCED[linted_instead]


@pytest.fixture
def linted(monkeypatch):
    """{file name: problems} of every PNG saved while the fixture is active."""
    found = {}

    def hook(fig, path):
        found[os.path.basename(path)] = lint_figure(fig)

    monkeypatch.setattr(files, "PNG_HOOKS", [hook])
    return found


def _toml_value(v):
    return json.dumps(v)        # ints, floats, strings and lists of them are TOML too


def tiny_sweep(name, folder):
    """The shipped sweep ``name`` with each grid axis cut to its first values,
    one seed and short points, written as a TOML file; returns its path."""
    with open(os.path.join(ROOT, "scenes", f"{name}.toml"), "rb") as f:
        scene = tomllib.load(f)
    sweep = scene["sweep"]
    lines = [f"description = {_toml_value(scene['description'])}", 'kind = "sweep"', "[sweep]"]
    for key, value in sweep.items():
        if key in ("set", "grid"):
            continue
        lines.append(f"{key} = {_toml_value(value[:1] if key == 'seeds' else value)}")
    lines.append("[sweep.set]")
    for key, value in {**sweep.get("set", {}), **SWEEP_SET[name]}.items():
        lines.append(f"{_toml_value(key)} = {_toml_value(value)}")
    lines.append("[sweep.grid]")
    for key, values in sweep["grid"].items():
        lines.append(f"{_toml_value(key)} = {_toml_value(values[:SWEEP_VALUES[name][key]])}")
    path = os.path.join(folder, f"{name}.toml")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("name", sorted(set(SCENES) - set(NO_PNG) - set(TWINS)))
def test_every_figure_of_a_shipped_scene_passes_the_lint(name, linted, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = str(tmp_path / "out")
    if name in SWEEP_SET:
        args = ["sweep", tiny_sweep(name, str(tmp_path)), "--out", out, "--quiet"]
    else:
        args = ["run", os.path.join(ROOT, "scenes", f"{name}.toml"), "--out", out, "--quiet",
                "--no-gif", *REDUCED[name]]
    res = CliRunner().invoke(tickprop, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    written = sorted(os.path.relpath(p, out)
                     for p in glob.glob(os.path.join(out, "**", "*.png"), recursive=True))
    assert written and sorted(linted) == sorted(os.path.basename(p) for p in written)
    problems = {png: untolerated(png, p) for png, p in linted.items()}
    assert not any(problems.values()), "\n".join(
        f"{png}: {line}" for png, p in problems.items() for line in p)
    known = {png: p for png, p in linted.items() if p}
    if known:
        pytest.xfail("; ".join(f"{png}: {KNOWN[png][0]}: {len(p)} problems, e.g. {p[0]}"
                               for png, p in known.items()))


# ------------------------------------------------ the lint on known figures
def _figure(w=4.0, h=3.0):
    fig = Figure(figsize=(w, h), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def test_a_clean_figure_passes():
    fig = _figure()
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], label="line")
    ax.set_title("title")
    ax.set_xlabel("x")
    ax.legend(fontsize=8)
    im = ax.imshow(np.eye(3), extent=(0, 1, 0, 1))
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    assert lint_figure(fig) == []


def test_text_beyond_the_edge_is_found():
    fig = _figure()
    fig.text(0.98, 0.5, "a long sentence that runs off the right", fontsize=10)
    problems = lint_figure(fig)
    assert len(problems) == 1 and "leaves the 400x300 canvas" in problems[0]


def test_overlapping_texts_are_found_and_neighbours_are_not():
    fig = _figure()
    fig.text(0.1, 0.5, "first text", fontsize=12)
    fig.text(0.12, 0.51, "second text", fontsize=12)           # ~8 px right, 3 px up
    fig.text(0.1, 0.2, "apart", fontsize=12)
    # 12 pt at 100 dpi is 16.7 px; a line box is at most ~1.4 of that: 28 px lower is clear.
    fig.text(0.1, 0.2 - 28 / 300, "below", fontsize=12)
    problems = lint_figure(fig)
    assert problems == ["text 'first text' overlaps text 'second text'"]


def test_slanted_tick_labels_side_by_side_are_not_overlaps():
    fig = _figure(6, 3)
    ax = fig.subplots()
    ax.set_xticks(range(6), [f"vertex{i}" for i in range(6)], rotation=45, ha="right")
    fig.subplots_adjust(bottom=0.4)
    assert lint_figure(fig) == []


def test_small_legend_and_tick_fonts_are_found():
    fig = _figure()
    ax = fig.subplots()
    ax.plot([0, 1], label="a")
    ax.legend(fontsize=6)
    ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    problems = lint_figure(fig)
    assert any(p.startswith("legend text 'a' is 6 pt") for p in problems)
    assert any(p.startswith("tick label") and "7 pt" in p for p in problems)
    assert not any(p.startswith("tick label") and "10 pt" in p for p in problems)


def test_a_heatmap_needs_a_colorbar_or_a_categorical_mark_and_a_legend():
    for mesh in (False, True):
        fig = _figure()
        ax = fig.subplots()
        image = ax.pcolormesh(np.eye(3)) if mesh else ax.imshow(np.eye(3))
        assert len(lint_figure(fig)) == 1, mesh
        mark_categorical(image)
        assert "no legend" in lint_figure(fig)[0]
        ax.plot([0], [0], label="class")
        ax.legend(fontsize=8)
        assert lint_figure(fig) == []
    fig = _figure()
    image = fig.subplots().imshow(np.eye(3))
    fig.colorbar(image)
    assert lint_figure(fig) == []           # the colorbar's own mesh is no heat map


def test_an_rgb_image_is_keyed_by_the_stand_in_colorbar_marked_as_its_key():
    fig = _figure()
    ax = fig.subplots()
    image = ax.imshow(np.zeros((3, 3, 3)))
    colorbar = fig.colorbar(ScalarMappable(Normalize(0, 1), "Blues"), ax=ax)
    assert len(lint_figure(fig)) == 1                    # a colorbar, but of something else
    mark_keyed(image, colorbar)
    assert lint_figure(fig) == []
