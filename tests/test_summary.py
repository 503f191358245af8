"""What `tickprop run` says on the terminal: per kind, the headline numbers,
each recomputed here from the saved results (or a closed form), then the
output folder; --quiet says nothing."""
import csv
import json
import os

import numpy as np
import pytest

from simulator.command import main as tickprop


def run(runner, *args):
    res = runner.invoke(tickprop, ["run", *args])
    assert res.exit_code == 0, res.output + res.stderr
    return res.stdout.splitlines()


def row_of(lines, first):
    """The summary line whose first word is ``first``."""
    hits = [l for l in lines if l.split() and l.split()[0] == first]
    assert len(hits) == 1, (first, lines)
    return hits[0].split()


def test_diffusion_summary_gives_fact_a_exact_ticks_and_ls(runner):
    """fig1 (constant input, L = 9, float64): g at layer l equals backprop from
    tick 2L − l on (Fact A: the forward wave fills l layers, the backward wave
    descends L − l more); ls = (L+1)/2 = 5 is marked; the folder ends it."""
    lines = run(runner, "fig1_constant", "--ticks", "40")
    L = 9
    assert lines[0].startswith("fig1_constant: 40 ticks")
    assert lines[-1] == "-> outputs/fig1_constant"
    for l in range(1, L + 1):
        row = row_of(lines, str(l))
        assert int(row[3]) == 2 * L - l, row
        assert float(row[1]) == pytest.approx(1.0, abs=1e-4)
        assert (row[-2:] == ["<-", "ls"]) == (l == (L + 1) // 2)


def test_diffusion_summary_means_come_from_the_trace(runner):
    lines = run(runner, "fig3_fast", "--ticks", "40", "--set", "network.depth=5")
    with np.load("outputs/fig3_fast/trace.npz") as d:
        cos, tag_out, tag_pair = d["mismatch_cos"], d["tag_output"], d["tag_pair"]
    # network filled: every layer's δ carries a frame's error and g pairs with a frame
    start = int(np.flatnonzero((tag_out[:, 1:] >= 0).all(1) & (tag_pair[:, 1:] >= 0).all(1))[0])
    for l in range(1, 6):
        row = row_of(lines, str(l))
        assert float(row[1]) == pytest.approx(np.nanmean(cos[start:, l - 1]), abs=6e-5)
    assert row_of(lines, "3")[-1] == "ls"
    assert not any("ls" in l for l in lines if l.split()[:1] in (["1"], ["2"], ["4"], ["5"]))


def test_graph_summary_lists_vertices_and_marks_the_sync_set(runner):
    lines = run(runner, "residual_levelling", "--ticks", "40")
    with np.load("outputs/residual_levelling/trace.npz") as d:
        names = [str(n) for n in d["vertex_names"]]
        sync = d["vertex_sync"]
        cos = d["mismatch_cos"]
    shown = 0
    for v in range(1, len(names)):
        if not np.isfinite(cos[:, v - 1]).any():
            continue
        row = row_of(lines, names[v])
        shown += 1
        assert (row[-1] == "set") == bool(sync[v]), row
    assert shown >= 2 and any(l.endswith("<- sync set") for l in lines)


def test_train_summary_gives_the_final_result_of_every_rule(runner):
    lines = run(runner, "train_teacher", "--ticks", "100")
    curves = json.load(open("outputs/train_teacher/results.json"))["curves"]
    for rule, c in curves.items():
        row = row_of(lines, rule)
        assert row[1] == "loss" and float(row[2]) == pytest.approx(c["loss"][-1], rel=1e-3)


def test_ar_train_summary_gives_mean_final_test_accuracy(runner):
    lines = run(runner, "ar_train", "--set", "train.epochs=1", "--set", "train.seeds=[0]",
                "--set", "relaxation.iterations=5", "--set", "network.sizes=[64, 16, 10]",
                "--set", 'relaxation.variants=["exact"]')
    with np.load("outputs/ar_train/training.npz") as d:
        for rule in ("backprop", "exact"):
            acc = np.asarray(d["test_" + rule], dtype=float).reshape(-1, len(d["steps"]))[:, -1]
            assert float(row_of(lines, rule)[1]) == pytest.approx(acc.mean(), abs=1e-4)


def test_ar_converge_summary_gives_the_final_error_per_layer(runner):
    lines = run(runner, "ar_converge", "--set", "relaxation.batch=8", "--set",
                "relaxation.eta_x=[0.1, 1.0]", "--set", "relaxation.iterations=20")
    with np.load("outputs/ar_converge/relaxation.npz") as d:
        final = d["errors"][0, -1, 1:]
    row = next(l for l in lines if "η_x = 0.1:" in l).split(":")[1].split("(")[0].split()
    np.testing.assert_allclose([float(v) for v in row], final, rtol=1e-3, atol=1e-12)


def test_pc_wave_summary_says_the_wave_moves_one_level_per_tick(runner):
    lines = run(runner, "pc_wave")
    with np.load("outputs/pc_wave/wave.npz") as d:
        by_level = d["by_level"]
    first = [int(np.argmax(by_level[:, k] != 0)) if (by_level[:, k] != 0).any() else None
             for k in range(by_level.shape[1])]
    text = "\n".join(lines)
    if first == list(range(by_level.shape[1])):
        assert "one level per tick" in text
    else:
        listed = next(l for l in lines if "first non-zero tick per level" in l).split(":")[1]
        assert listed.split() == ["-" if f is None else str(f) for f in first]
    reached = sum(f is not None for f in first)
    assert f"levels reached: {reached} of {by_level.shape[1]}" in text


def test_locking_summary_gives_both_schedules(runner):
    lines = run(runner, "locking", "--set", "locking.frames=3", "--set", "locking.depth=4")
    meta = json.load(open("outputs/locking/run.json"))["summary"]
    for kind in ("backprop", "pipelined"):
        row = " ".join(row_of(lines, kind))
        assert f"{meta[kind]['ticks']} ticks" in row
        assert f"utilisation {meta[kind]['utilisation']:.3f}" in row


def test_pc_table_summary_gives_the_largest_divergence(runner):
    lines = run(runner, "zil_table", "--set", "table.repeats=1", "--set",
                'table.dtypes=["float64"]', "--set", 'table.levelled="levelled"')
    rows = list(csv.DictReader(open("outputs/zil_table/table1.csv")))
    worst = max(float(r["divergence_rel"]) for r in rows)
    line = next(l for l in lines if "Table 1" in l)
    assert f"{worst:.3g}" in line
    assert lines[-1] == "-> outputs/zil_table"


def test_quiet_says_nothing_and_a_pipe_shows_no_progress(runner):
    res = runner.invoke(tickprop, ["run", "fig1_constant", "--ticks", "20", "--quiet"])
    assert res.exit_code == 0 and res.stdout == "" and res.stderr == ""
    res = runner.invoke(tickprop, ["run", "fig1_constant", "--ticks", "20"])
    assert res.stderr == ""            # not a terminal: no progress bar
    assert res.stdout.splitlines()[-1] == "-> outputs/fig1_constant"
