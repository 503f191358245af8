"""Sweeps: resume after interruption, failed points recorded, Dask and local
runs giving the same sweep.csv, and the boundary analysis against closed forms."""
import csv
import os

import numpy as np
import pytest
from matplotlib.image import imread

from simulator import scene, sweep, training
from simulator.errors import SceneError

scene.register_kind("train", training.TRAIN_SECTIONS)
scene.register_kind("sweep", sweep.SWEEP_SECTIONS)

SMALL = """description = "test sweep"
kind = "sweep"

[sweep]
base = "{base}"
seeds = {seeds}

[sweep.set]
{fixed}

[sweep.grid]
{grid}
"""


def _write(tmp_path, name, base="fig3_fast", seeds="[0]", fixed=None, grid=None):
    fixed = fixed or {"run.ticks": 64, "record.states": "false", "network.width": 6,
                      "network.inputs": 4, "network.outputs": 3}
    grid = grid or {"network.depth": "[2, 3]", "stream.hold": "[1, 16]"}
    text = SMALL.format(base=base, seeds=seeds,
                        fixed="\n".join(f'"{k}" = {v}' for k, v in fixed.items()),
                        grid="\n".join(f'"{k}" = {v}' for k, v in grid.items()))
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return str(path)


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


class Interrupt(Exception):
    pass


def test_interrupted_sweep_resumes_with_missing_points_only(tmp_path):
    path = _write(tmp_path, "resume")
    out = tmp_path / "out"
    finished = []

    def stop_after_two(n):
        finished.append(n)
        if len(finished) == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        sweep.run_sweep(path, str(out), workers=1, progress=stop_after_two)
    kept = sorted(os.listdir(out / "points"))
    assert len(kept) == 2
    stamps = {f: os.stat(out / "points" / f).st_mtime_ns for f in kept}
    result = sweep.run_sweep(path, str(out), workers=1)
    assert result["ran"] == 2 and result["points"] == 4 and result["failed"] == 0
    # the two finished points were not run again
    assert {f: os.stat(out / "points" / f).st_mtime_ns for f in kept} == stamps
    rows = _rows(out / "sweep.csv")
    assert [(r["network.depth"], r["stream.hold"]) for r in rows] == [
        ("2", "1"), ("2", "16"), ("3", "1"), ("3", "16")]
    # Fact E in miniature: holding frames makes the steady gradient better aligned
    for depth in ("2", "3"):
        fast, slow = [float(r["mean_cos"]) for r in rows if r["network.depth"] == depth]
        assert slow > fast
    again = sweep.run_sweep(path, str(out), workers=1)
    assert again["ran"] == 0


def test_a_failing_point_is_a_failed_row_and_the_rest_finish(tmp_path):
    # learning rate 1e6 blows the run up at run time: valid scene, failed point
    path = _write(tmp_path, "bad", grid={"network.depth": "[2]", "stream.hold": "[4]",
                                         "rule.learning_rate": "[0.0, 1e6, 0.001]"})
    result = sweep.run_sweep(path, str(tmp_path / "out"), workers=2)
    assert result["failed"] == 1
    rows = {float(r["rule.learning_rate"]): r for r in _rows(tmp_path / "out" / "sweep.csv")}
    assert rows[1e6]["status"] == "failed"
    assert "NumericalError" in rows[1e6]["error"] and rows[1e6]["mean_cos"] == ""
    for lr in (0.0, 0.001):
        assert rows[lr]["status"] == "ok" and -1.0 <= float(rows[lr]["mean_cos"]) <= 1.0


def test_dask_local_cluster_gives_the_same_csv_as_local_workers(tmp_path):
    distributed = pytest.importorskip("distributed")
    path = _write(tmp_path, "dask", seeds="[0, 1]")
    local = sweep.run_sweep(path, str(tmp_path / "local"), workers=2)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        remote = sweep.run_sweep(path, str(tmp_path / "dask"), scheduler=cluster.scheduler_address)
    assert local["ran"] == remote["ran"] == 8
    a = (tmp_path / "local" / "sweep.csv").read_bytes()
    b = (tmp_path / "dask" / "sweep.csv").read_bytes()
    assert a == b and a.count(b"\n") == 9


def test_training_sweep_reports_accuracy_per_rule_and_draws_it(tmp_path):
    path = _write(tmp_path, "rules", base="train_digits",
                  fixed={"run.ticks": 120, "train.eval_every": 60, "train.eval_size": 60},
                  grid={"train.rules": '["diffusion", "backprop"]', "stream.hold": "[2, 8]"})
    result = sweep.run_sweep(path, str(tmp_path / "out"), workers=2)
    rows = _rows(tmp_path / "out" / "sweep.csv")
    assert [r["train.rules"] for r in rows] == ["backprop", "backprop", "diffusion", "diffusion"]
    for r in rows:
        assert 0.0 <= float(r["final_accuracy"]) <= 1.0 and r["stable"] in ("True", "False")
    img = imread(result["pictures"]["accuracy.png"])
    assert img.shape[:2] == (420, 640)


def test_steady_mismatch_against_hand_averages():
    T, L = 40, 3
    cos = np.full((T, L), np.nan)
    cos[10:20] = 0.0           # transient before the steady window
    cos[20:] = [0.5, 1.0, 0.25]
    rel = 1.0 - np.nan_to_num(cos)
    out = sweep.steady_mismatch(cos, rel, steady_from=0.5)
    assert out["cos_l01"] == 0.5 and out["cos_l02"] == 1.0 and out["cos_l03"] == 0.25
    assert out["mean_cos"] == pytest.approx(1.75 / 3)
    assert out["ls"] == 2 and out["cos_ls"] == 1.0 and out["cos_others"] == pytest.approx(0.375)


def _record(depth, hold, seed, cos):
    return {"params": {"network.depth": depth, "stream.hold": hold, "run.seed": seed},
            "status": "ok", "summary": {"mean_cos": cos, "cos_l01": cos, "cos_l02": cos - 0.2}}


def test_boundary_and_its_fit_against_a_known_law():
    # mean cosine reaches 0.9 exactly at hold = 2L + 1 (seeds average to it)
    records = []
    for depth in (2, 3, 5):
        for hold in range(1, 16):
            base = 0.95 if hold >= 2 * depth + 1 else 0.5
            records += [_record(depth, hold, 0, base - 0.02), _record(depth, hold, 1, base + 0.02)]
    hstar = sweep.boundary(records, 0.9)
    assert hstar == {2: 5, 3: 7, 5: 11}
    fit = sweep.fit_boundary(hstar)
    assert fit["slope"] == pytest.approx(2.0) and fit["intercept"] == pytest.approx(1.0)
    layers = sweep.layer_boundaries(records, 0.9)
    assert layers[2] == [5, None]   # layer 2 sits 0.2 lower and never reaches 0.9


def test_sweep_scene_errors_name_the_key(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('kind = "sweep"\n[sweep]\nbase = "fig3_fast"\n[sweep.grid]\n"stream.hold" = 4\n')
    with pytest.raises(SceneError, match=r"sweep\.grid.*non-empty list.*stream\.hold"):
        sweep.run_sweep(str(bad), str(tmp_path / "out"))
    nested = tmp_path / "nested.toml"
    nested.write_text('kind = "sweep"\n[sweep]\nbase = "sweep_rules"\n')
    with pytest.raises(SceneError, match="cannot sweep a sweep"):
        sweep.run_sweep(str(nested), str(tmp_path / "out"))


def test_phase_picture_shows_measured_and_paper_lines(tmp_path):
    path = _write(tmp_path, "phase", grid={"network.depth": "[2, 3]", "stream.hold": "[1, 4, 16]"})
    result = sweep.run_sweep(path, str(tmp_path / "out"), workers=2)
    img = imread(result["pictures"]["phase.png"])
    assert img.shape[:2] == (440, 1100)
    rgb = (img[..., :3] * 255).round().astype(int)
    red = np.abs(rgb - [0xd6, 0x27, 0x28]).sum(axis=-1) < 10
    assert red.sum() > 30          # the measured boundary is drawn
