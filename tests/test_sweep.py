"""Sweeps: resume after interruption, failed points recorded, Dask and local
runs giving the same sweep.csv, and the boundary analysis against closed forms."""
import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner
from matplotlib.image import imread

from simulator import dask_pool, scene, sweep
from simulator.errors import SceneError, SimulatorError


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
                        fixed="\n".join(f'"{k}" = {_toml(v)}' for k, v in fixed.items()),
                        grid="\n".join(f'"{k}" = {v}' for k, v in grid.items()))
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return str(path)


def _toml(value):
    return str(value).lower() if isinstance(value, bool) else value


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


def test_a_sweep_whose_every_point_failed_exits_3_with_one_error_line(tmp_path):
    """Every point diverges: the sweep used to exit 0 as if it had worked."""
    from simulator.command import main as tickprop
    path = _write(tmp_path, "allbad", seeds="[0, 1]",
                  grid={"network.depth": "[2]", "rule.learning_rate": "[1e6]"})
    res = CliRunner().invoke(tickprop, ["sweep", path, "--out", str(tmp_path / "out")])
    assert res.exit_code == 3, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.output, res.stderr
    assert lines[0].startswith("error: every point of allbad failed (2 of 2")
    assert "NumericalError: non-finite" in lines[0]
    assert "2 points (2 run now, 2 failed)" in res.stdout
    assert [r["status"] for r in _rows(tmp_path / "out" / "sweep.csv")] == ["failed", "failed"]


def test_a_sweep_with_some_failed_points_exits_0_and_says_how_many(tmp_path):
    from simulator.command import main as tickprop
    path = _write(tmp_path, "somebad", grid={"network.depth": "[2]",
                                             "rule.learning_rate": "[0.0, 1e6]"})
    res = CliRunner().invoke(tickprop, ["sweep", path, "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert "2 points (2 run now, 1 failed)" in res.stdout and res.stderr == ""
    assert "failed {'network.depth': 2, 'rule.learning_rate': 1000000.0" in res.stdout


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


def test_spawned_workers_give_the_forked_workers_csv(tmp_path, monkeypatch):
    """Points on the GPU run in spawned workers (a CUDA context does not survive
    fork): the spawn path gives the same sweep.csv, and is the one GPU points take."""
    path = _write(tmp_path, "spawn")
    sweep.run_sweep(path, str(tmp_path / "fork"), workers=2)
    real, fresh = sweep.pool.run_jobs, []

    def spawning(*args, **kw):
        fresh.append(kw.get("fresh"))
        return real(*args, **dict(kw, fresh=True))

    monkeypatch.setattr(sweep.pool, "run_jobs", spawning)
    sweep.run_sweep(path, str(tmp_path / "spawn"), workers=2)
    assert fresh == [False]
    a = (tmp_path / "fork" / "sweep.csv").read_bytes()
    assert a == (tmp_path / "spawn" / "sweep.csv").read_bytes() and a.count(b"\n") == 5
    monkeypatch.setattr(sweep.pool, "run_jobs", lambda *a, **kw: fresh.append(kw["fresh"]))
    sweep._run_local([("b", {"run": {"device": "cpu"}}, {}, {}, "k1"),
                      ("b", {"run": {"device": "cuda"}}, {}, {}, "k2")], [1.0, 1.0], 2, None)
    assert fresh == [False, True]


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


# ------------------------------------------------- sweeps you can trust (issue 9)
def _point_files(out):
    folder = out / "points"
    return sorted(os.listdir(folder)) if folder.is_dir() else []


def _point_records(out):
    return [json.loads((out / "points" / f).read_text()) for f in _point_files(out)]


def test_editing_set_or_base_never_reuses_stale_points(tmp_path):
    base = tmp_path / "base.toml"
    with open(scene.find_scene("fig3_fast")) as f:
        base.write_text(f.read())
    grid = {"network.depth": "[2]", "stream.hold": "[1, 16]"}
    fixed = {"run.ticks": 64, "record.states": False, "network.width": 6,
             "network.inputs": 4, "network.outputs": 3}
    out = tmp_path / "out"
    path = _write(tmp_path, "stale", base=str(base), fixed=fixed, grid=grid)
    assert sweep.run_sweep(path, str(out))["ran"] == 2
    assert sweep.run_sweep(path, str(out))["ran"] == 0           # unchanged: resumed
    # sweep.set edited: every point runs again and stores the scene it ran
    path = _write(tmp_path, "stale", base=str(base), fixed=dict(fixed, **{"run.ticks": 48}), grid=grid)
    assert sweep.run_sweep(path, str(out))["ran"] == 2
    ran = [r for r in _point_records(out) if r["scene"]["run"]["ticks"] == 48]
    assert len(ran) == 2
    # the stored scene is the base scene with set and grid values applied, all defaults filled
    _, expected = scene.load(str(base))
    for r in ran:
        raw = json.loads(json.dumps(expected))
        for key, value in list(fixed.items()) + [("run.ticks", 48)] + list(r["params"].items()):
            section, name = key.split(".")
            raw[section][name] = value
        assert r["scene"] == scene.validate(raw, "expected")
    rows = {r["stream.hold"]: r for r in _rows(out / "sweep.csv")}
    assert len(rows) == 2
    # the base scene edited (a key the sweep does not set): every point runs again
    base.write_text(base.read_text().replace("[rule]", "[rule]\nfeedback = \"random\""))
    result = sweep.run_sweep(path, str(out))
    assert result["ran"] == 2 and result["failed"] == 0
    assert all(r["scene"]["rule"]["feedback"] == "random" for r in result["records"])
    new_rows = {r["stream.hold"]: r for r in _rows(out / "sweep.csv")}
    assert new_rows["16"]["mean_cos"] != rows["16"]["mean_cos"]


def test_a_failed_point_is_run_again_on_the_next_run(tmp_path, monkeypatch):
    path = _write(tmp_path, "retry", grid={"network.depth": "[2]", "stream.hold": "[1, 4, 16]"})
    real = sweep.summarize_point

    def flaky(name, scn, options):
        if scn["stream"]["hold"] == 4:
            raise RuntimeError("transient trouble")
        return real(name, scn, options)

    monkeypatch.setattr(sweep, "summarize_point", flaky)
    first = sweep.run_sweep(path, str(tmp_path / "out"), workers=1)
    assert first["ran"] == 3 and first["failed"] == 1
    monkeypatch.setattr(sweep, "summarize_point", real)
    again = sweep.run_sweep(path, str(tmp_path / "out"), workers=1)
    assert again["ran"] == 1 and again["failed"] == 0
    assert [r["status"] for r in _rows(tmp_path / "out" / "sweep.csv")] == ["ok"] * 3


def _exit_now():
    os._exit(3)


def _sigkill_self():
    os.kill(os.getpid(), signal.SIGKILL)


@pytest.mark.parametrize("die", [_exit_now, _sigkill_self], ids=["os_exit", "sigkill"])
def test_a_dying_worker_fails_only_its_own_point(tmp_path, monkeypatch, die):
    path = _write(tmp_path, "die", seeds="[0, 1]",
                  grid={"network.depth": "[2]", "stream.hold": "[1, 4, 16]"})
    real = sweep.summarize_point

    def deadly(name, scn, options):
        if scn["stream"]["hold"] == 4 and scn["run"]["seed"] == 0:
            die()
        return real(name, scn, options)

    monkeypatch.setattr(sweep, "summarize_point", deadly)
    result = sweep.run_sweep(path, str(tmp_path / "out"), workers=2)
    assert result["ran"] == 6 and result["failed"] == 1
    rows = _rows(tmp_path / "out" / "sweep.csv")
    failed = [r for r in rows if r["status"] != "ok"]
    assert [(r["stream.hold"], r["run.seed"]) for r in failed] == [("4", "0")]
    assert "worker process" in failed[0]["error"] and "died" in failed[0]["error"]
    monkeypatch.setattr(sweep, "summarize_point", real)
    again = sweep.run_sweep(path, str(tmp_path / "out"), workers=2)
    assert again["ran"] == 1 and again["failed"] == 0


def test_damaged_point_files_are_recomputed(tmp_path):
    path = _write(tmp_path, "damage")
    out = tmp_path / "out"
    sweep.run_sweep(path, str(out))
    before = _rows(out / "sweep.csv")
    files = [out / "points" / f for f in _point_files(out)]
    assert len(files) == 4
    files[0].write_text(files[0].read_text()[:40])                     # truncated
    rec = json.loads(files[1].read_text())
    files[1].write_text(json.dumps({"params": rec["params"], "status": "ok"}))   # wrong keys
    rec = json.loads(files[2].read_text())
    rec.setdefault("scene", {"run": {}})["run"]["ticks"] = 7          # no longer hashes to its name
    files[2].write_text(json.dumps(rec))
    files[3].write_bytes(b"\xff\xfe\x00garbage")                       # not even text
    result = sweep.run_sweep(path, str(out))
    assert result["ran"] == 4 and result["damaged"] == 4 and result["failed"] == 0
    assert _rows(out / "sweep.csv") == before
    assert sweep.run_sweep(path, str(out))["ran"] == 0


@pytest.mark.parametrize("table, key, value, match", [
    ("grid", "stream.hodl", "[1, 2]", r"sweep\.grid: unknown key 'stream\.hodl' \(did you mean 'hold'\?\)"),
    ("grid", "stram.hold", "[1, 2]", r"sweep\.grid: unknown section 'stram'.*did you mean 'stream\.hold'"),
    ("grid", "stream.hold", "[4, 0]", r"sweep\.grid: key 'stream\.hold': expected an integer in 1\.\.\d+, got 0"),
    ("grid", "rule.feedback", '["random", "trasnpose"]',
     r"sweep\.grid: key 'rule\.feedback': expected one of .*got 'trasnpose' \(did you mean 'transpose'\?\)"),
    ("set", "run.ticks", "0", r"sweep\.set: key 'run\.ticks': expected an integer in 1\.\.\d+, got 0"),
    ("set", "run.tick", "10", r"sweep\.set: unknown key 'run\.tick' \(did you mean 'ticks'\?\)"),
    ("set", "network.depth", '"deep"', r"sweep\.set: key 'network\.depth': expected an integer in 1\.\.512, got 'deep'"),
    ("set", "run.seed", "3", r"sweep\.set.*run\.seed.*sweep\.seeds"),
])
def test_bad_grid_or_set_keys_are_refused_before_any_point_runs(tmp_path, monkeypatch,
                                                               table, key, value, match):
    grid = {"network.depth": "[2]", "stream.hold": "[1, 16]"}
    fixed = {"run.ticks": 64, "record.states": "false"}
    (grid if table == "grid" else fixed)[key] = value
    path = _write(tmp_path, "badkey", grid=grid, fixed=fixed)
    ran = []
    monkeypatch.setattr(sweep, "summarize_point", lambda *a: ran.append(a))
    with pytest.raises(SceneError, match=match) as err:
        sweep.run_sweep(path, str(tmp_path / "out"), workers=1)
    assert str(err.value).startswith(path)
    assert ran == [] and not (tmp_path / "out").exists()


def test_bad_sweep_key_on_the_command_line_is_one_error_line(tmp_path, monkeypatch):
    from simulator.command import main as tickprop
    monkeypatch.chdir(tmp_path)
    path = _write(tmp_path, "badcli", grid={"network.depth": "[2]", "stream.hodl": "[1]"})
    res = CliRunner().invoke(tickprop, ["sweep", path, "--out", "sw", "--quiet"])
    assert res.exit_code == 2, res.output
    assert res.stderr.startswith("error: ") and res.stderr.count("\n") == 1
    assert "badcli.toml" in res.stderr and "did you mean 'hold'" in res.stderr
    assert not os.path.exists("sw")


def test_a_sweep_of_a_kind_without_a_summary_is_refused(tmp_path):
    path = tmp_path / "lock.toml"
    path.write_text('kind = "sweep"\n[sweep]\nbase = "locking"\n[sweep.grid]\n"locking.depth" = [2, 3]\n')
    with pytest.raises(SceneError, match=r"lock\.toml: key 'sweep\.summary'.*diffusion.*'locking'"):
        sweep.run_sweep(str(path), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


# Ctrl-C and a killed parent: a sweep in a subprocess whose points sleep; each
# worker writes its pid to a file when its point starts (test-only code below).
SLOW_SWEEP = """
import os, sys, time
from simulator import sweep

def slow(name, scene, options):
    open(os.path.join(sys.argv[2], str(os.getpid())), "w").close()
    time.sleep(300)

sweep.summarize_point = slow
sweep.run_sweep(sys.argv[1], sys.argv[3], workers=2)
"""
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _alive(pid):
    """True while pid is a running (not zombie) process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return state not in ("Z", "X")


@pytest.fixture
def slow_sweep(tmp_path):
    """Start the slow sweep; yield (process, worker pids) once both workers
    run a point; kill whatever is left afterwards (by pid)."""
    path = _write(tmp_path, "slow", grid={"network.depth": "[2]", "stream.hold": "[1, 2, 4, 8]"})
    pids = tmp_path / "pids"
    pids.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", SLOW_SWEEP, path, str(pids), str(tmp_path / "out")],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    workers = []
    try:
        deadline = time.monotonic() + 60
        while len(workers) < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
            workers = [int(p) for p in os.listdir(pids)]
        assert len(workers) == 2, proc.communicate(timeout=5) if proc.poll() is not None else workers
        assert proc.pid not in workers
        yield proc, workers
    finally:
        for pid in workers + [proc.pid]:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        proc.communicate(timeout=10)


def test_ctrl_c_stops_promptly_and_kills_the_workers(slow_sweep):
    proc, workers = slow_sweep
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        pytest.fail("the sweep was still running 5 s after Ctrl-C")
    assert time.monotonic() - t0 < 5
    assert proc.returncode != 0 and "KeyboardInterrupt" in err
    assert [pid for pid in workers if _alive(pid)] == []


def test_no_worker_outlives_its_parent(slow_sweep):
    proc, workers = slow_sweep
    proc.kill()
    proc.wait(timeout=5)
    deadline = time.monotonic() + 5
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [pid for pid in workers if _alive(pid)] == []


# --scheduler: garbage, no dask, unreachable
@pytest.mark.parametrize("address", ["garbage", "tcp://", "host:notaport", "127.0.0.1:99999",
                                     "tcp://127.0.0.1", "a b:80"])
def test_a_garbage_scheduler_is_one_error_line(tmp_path, monkeypatch, address):
    from simulator.command import main as tickprop
    monkeypatch.chdir(tmp_path)
    path = _write(tmp_path, "sched")
    res = CliRunner().invoke(tickprop, ["sweep", path, "--scheduler", address, "--out", "sw",
                                        "--quiet"])
    assert res.exit_code == 2, res.output
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("error: --scheduler")
    assert "HOST:PORT" in res.stderr and not os.path.exists("sw")


def test_scheduler_without_dask_names_the_dist_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)    # import distributed fails
    with pytest.raises(SimulatorError, match=r"dist extra"):
        sweep.run_sweep(_write(tmp_path, "nodask"), str(tmp_path / "out"), scheduler="127.0.0.1:8786")
    assert not (tmp_path / "out").exists()


def test_unreachable_scheduler_is_refused_before_any_point(tmp_path, monkeypatch):
    pytest.importorskip("distributed")
    with socket.socket() as s:       # a port on this machine that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(dask_pool, "SCHEDULER_TIMEOUT_S", 2)
    with pytest.raises(SimulatorError, match=rf"--scheduler 'tcp://127.0.0.1:{port}': cannot reach"):
        sweep.run_sweep(_write(tmp_path, "away"), str(tmp_path / "out"),
                        scheduler=f"tcp://127.0.0.1:{port}")
    assert not (tmp_path / "out").exists()


def test_the_same_point_scene_is_reused_under_this_sweeps_parameters(tmp_path):
    # identity is the resolved scene, not how the sweep spelled it
    fixed = {"run.ticks": 48, "record.states": False, "network.width": 6,
             "network.inputs": 4, "network.outputs": 3}
    a = _write(tmp_path, "a", fixed=dict(fixed, **{"network.depth": 2}), grid={"stream.hold": "[4]"})
    b = _write(tmp_path, "b", fixed=dict(fixed, **{"stream.hold": 4}), grid={"network.depth": "[2]"})
    out = tmp_path / "out"
    assert sweep.run_sweep(a, str(out))["ran"] == 1
    result = sweep.run_sweep(b, str(out))
    assert result["ran"] == 0 and result["records"][0]["params"] == {"network.depth": 2, "run.seed": 0}
    assert [r["network.depth"] for r in _rows(out / "sweep.csv")] == ["2"]
    assert [r["params"] for r in sweep.sweep_records(b, str(out))] == [{"network.depth": 2, "run.seed": 0}]
