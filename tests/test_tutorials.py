"""The tutorials of docs/tutorials/ (jupytext py:percent notebooks) run as scripts.

Each tutorial asserts its own numbers against independent oracles (the tags'
closed forms, a hand-written numpy backprop, the reference backprop), so a
broken library fails its tutorial here. They run in a fresh process with the
Agg backend, in a temporary folder, and must leave the repository as it was.
Select them with ``-k tutorials``; together they take about a minute.
"""
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
FOLDER = ROOT / "docs" / "tutorials"
TUTORIALS = sorted(FOLDER.glob("[0-9][0-9]_*.py"))


def test_there_are_six_tutorials():
    assert len(TUTORIALS) == 6, [p.name for p in TUTORIALS]


@pytest.mark.parametrize("path", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_is_a_percent_notebook(path):
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# ---\n# jupyter:\n"), "jupytext header first"
    assert "format_name: percent" in text
    cells = [line for line in text.splitlines() if line.startswith("# %%")]
    markdown = [c for c in cells if c.startswith("# %% [markdown]")]
    assert len(markdown) >= 4 and len(cells) - len(markdown) >= 4
    assert "assert " in text
    assert all(len(line) <= 100 for line in text.splitlines())


@pytest.mark.parametrize("path", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_runs(path, tmp_path):
    before = sorted(p.name for p in FOLDER.iterdir())
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONPATH=str(ROOT), TICKPROP_TUTORIAL_QUICK="1")
    done = subprocess.run([sys.executable, str(path)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    assert sorted(p.name for p in FOLDER.iterdir()) == before, "a tutorial wrote into docs/"
    assert "render.show(" in path.read_text(encoding="utf-8"), "a tutorial shows a figure"
