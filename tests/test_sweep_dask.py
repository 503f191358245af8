"""Sweeps never wait for ever: a Dask scheduler and worker started here as
processes on 127.0.0.1, the only worker killed (SIGKILL) while a point runs,
a scheduler no worker ever joins, points past their timeout on Dask and in
local workers, Ctrl-C on a Dask sweep. Every wait in this file is bounded,
so a regression fails instead of hanging."""
import contextlib
import os
import signal
import subprocess
import sys
import time

import pytest

from simulator import sweep
from test_sweep import ROOT, _alive, _rows, _write

distributed = pytest.importorskip("distributed")

# A point of this many ticks takes tens of seconds: it is still running when
# the test acts (the rows it records stay few: one every 1000 ticks).
SLOW_TICKS = 1_000_000
SLOW = {"run.ticks": SLOW_TICKS, "record.every": 1000, "record.states": "false",
        "network.width": 6, "network.inputs": 4, "network.outputs": 3}
START_S = 90          # longest wait for a process of this file to be up


def _env():
    """Processes of this file import this checkout, one BLAS thread each."""
    return dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
                MKL_NUM_THREADS="1")


def _sweep_file(tmp_path, name, keys, grid, fixed=SLOW):
    """A sweep scene of fig3_fast points with ``keys`` {key: value} in [sweep]."""
    path = _write(tmp_path, name, fixed=dict(fixed), grid=grid)
    lines = "".join(f"{k} = {v}\n" for k, v in keys.items())
    with open(path) as f:
        text = f.read().replace("[sweep.set]", lines + "\n[sweep.set]", 1)
    with open(path, "w") as f:
        f.write(text)
    return path


def _until(what, condition, seconds):
    """Wait (bounded) until ``condition()`` is true; fail naming ``what``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    pytest.fail(f"{what} within {seconds} s")


class Overdue(BaseException):
    """Raised by SIGALRM in a bounded in-process call (a BaseException, so no
    ``except Exception`` on the way swallows it)."""


@contextlib.contextmanager
def _within(seconds):
    """Bound an in-process call: SIGALRM raises Overdue after ``seconds``."""
    def expire(signum, frame):
        raise Overdue(f"still running after {seconds} s")
    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


class Cluster:
    """A scheduler process on 127.0.0.1 (random port) and, on demand, one
    single-threaded worker process without a nanny (so a killed worker stays
    dead); a Client of this test to watch the scheduler."""

    def __init__(self, folder):
        self.folder, self.procs, self.worker, self.client = folder, [], None, None
        info = os.path.join(folder, "scheduler.json")
        self._start([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host",
                     "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file", info])
        _until("the scheduler wrote its address", lambda: os.path.exists(info), START_S)
        self.client = distributed.Client(scheduler_file=info, timeout=f"{START_S}s")
        self.address = self.client.scheduler.address

    def _start(self, args):
        proc = subprocess.Popen(args, cwd=self.folder, env=_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        return proc

    def start_worker(self):
        self.worker = self._start([sys.executable, "-m", "distributed.cli.dask_worker",
                                   self.address, "--nthreads", "1", "--no-nanny",
                                   "--no-dashboard", "--host", "127.0.0.1",
                                   "--local-directory", self.folder])
        self.client.wait_for_workers(1, timeout=START_S)

    def running(self):
        """Keys of the tasks the scheduler has on a worker."""
        return [k for keys in self.client.processing().values() for k in keys]

    def close(self):
        if self.client is not None:
            self.client.close(timeout=10)
        for proc in self.procs:
            if proc.poll() is None and _alive(proc.pid):
                proc.kill()
            proc.wait(timeout=10)


@pytest.fixture
def cluster(tmp_path):
    folder = tmp_path / "cluster"
    folder.mkdir()
    c = Cluster(str(folder))
    try:
        yield c
    finally:
        c.close()


def _sweep_command(path, address, out):
    return subprocess.Popen([sys.executable, "cli.py", "sweep", path, "--scheduler", address,
                             "--out", out], cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _finish(proc, seconds):
    try:
        return proc.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate(timeout=10)
        pytest.fail(f"the sweep was still running {seconds} s later")


def _sweep_killed_midway(cluster, path, out, kill):
    """Run the sweep ``path`` through the CLI on ``cluster``; once a point runs
    on the worker call ``kill()``; (stdout, stderr, seconds from the kill to
    the sweep's end), every wait bounded."""
    proc = _sweep_command(path, cluster.address, out)
    try:
        _until("a point ran on the worker", lambda: cluster.running() or proc.poll() is not None,
               START_S)
        assert proc.poll() is None, proc.communicate(timeout=10)
        kill()
        killed = time.monotonic()
        stdout, stderr = _finish(proc, 60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    return stdout, stderr, time.monotonic() - killed


def test_a_dask_sweep_whose_only_worker_dies_fails_its_points_and_finishes(tmp_path, cluster):
    cluster.start_worker()
    path = _sweep_file(tmp_path, "lost", {"no_worker_timeout": 3},
                       {"network.depth": "[2]", "stream.hold": "[1, 2, 4]"})
    out = str(tmp_path / "out")
    stdout, stderr, after = _sweep_killed_midway(
        cluster, path, out, lambda: os.kill(cluster.worker.pid, signal.SIGKILL))
    assert after < 40
    assert "Traceback" not in stderr, stderr
    why = "no Dask worker (the worker was lost) for 3 s (sweep.no_worker_timeout); " \
          "re-run the sweep to retry"
    rows = _rows(os.path.join(out, "sweep.csv"))
    assert [r["status"] for r in rows] == ["failed"] * 3
    assert {r["error"] for r in rows} == {why}
    assert "3 points (3 run now, 3 failed)" in stdout and why in stdout


def test_a_dask_sweep_whose_scheduler_dies_fails_its_points_and_finishes(tmp_path, cluster):
    cluster.start_worker()
    path = _sweep_file(tmp_path, "gone", {"no_worker_timeout": 3},
                       {"network.depth": "[2]", "stream.hold": "[1, 2]"})
    out = str(tmp_path / "out")

    def kill_scheduler():
        cluster.client.close(timeout=10)
        cluster.client = None
        os.kill(cluster.procs[0].pid, signal.SIGKILL)
    stdout, stderr, _ = _sweep_killed_midway(cluster, path, out, kill_scheduler)
    assert "Traceback" not in stderr, stderr
    rows = _rows(os.path.join(out, "sweep.csv"))
    assert [r["status"] for r in rows] == ["failed"] * 2
    for r in rows:
        assert r["error"] in ("cancelled by Dask (scheduler-connection-lost); re-run the sweep "
                              "to retry", "the Dask scheduler was out of reach for 3 s "
                              "(sweep.no_worker_timeout); re-run the sweep to retry")
    assert "2 points (2 run now, 2 failed)" in stdout


def test_a_scheduler_no_worker_joins_fails_the_points_after_the_wait(tmp_path, cluster):
    path = _sweep_file(tmp_path, "none", {"no_worker_timeout": 2},
                       {"network.depth": "[2]", "stream.hold": "[1, 2]"})
    with _within(30):
        result = sweep.run_sweep(path, str(tmp_path / "out"), scheduler=cluster.address)
    assert result["ran"] == 2 and result["failed"] == 2
    assert {r["error"] for r in result["records"]} == {
        "no Dask worker (none joined the scheduler) for 2 s (sweep.no_worker_timeout); "
        "re-run the sweep to retry"}
    assert len(_rows(tmp_path / "out" / "sweep.csv")) == 2


def test_a_dask_point_past_its_timeout_fails_and_the_others_finish(tmp_path, cluster):
    cluster.start_worker()
    path = _sweep_file(tmp_path, "late", {"point_timeout": 3},
                       {"network.depth": "[2]", "run.ticks": f"[64, {SLOW_TICKS}]"})
    with _within(60):
        result = sweep.run_sweep(path, str(tmp_path / "out"), scheduler=cluster.address)
    rows = {r["run.ticks"]: r for r in _rows(tmp_path / "out" / "sweep.csv")}
    assert rows["64"]["status"] == "ok" and rows["64"]["error"] == ""
    assert rows[str(SLOW_TICKS)]["status"] == "failed"
    assert rows[str(SLOW_TICKS)]["error"] == sweep.timeout_message(3.0)
    assert result["failed"] == 1


def test_a_local_point_past_its_timeout_is_stopped_and_the_others_finish(tmp_path):
    path = _sweep_file(tmp_path, "local", {"point_timeout": 3},
                       {"network.depth": "[2]", "run.ticks": f"[64, {SLOW_TICKS}, 96]"})
    with _within(60):
        result = sweep.run_sweep(path, str(tmp_path / "out"), workers=2)
    rows = {r["run.ticks"]: r for r in _rows(tmp_path / "out" / "sweep.csv")}
    assert rows["64"]["status"] == rows["96"]["status"] == "ok"
    assert rows[str(SLOW_TICKS)]["status"] == "failed"
    assert rows[str(SLOW_TICKS)]["error"] == sweep.timeout_message(3.0)
    assert result["failed"] == 1


def test_ctrl_c_on_a_dask_sweep_cancels_its_points(tmp_path, cluster):
    cluster.start_worker()
    path = _sweep_file(tmp_path, "stop", {}, {"network.depth": "[2]", "stream.hold": "[1, 2]"})
    proc = _sweep_command(path, cluster.address, str(tmp_path / "out"))
    try:
        _until("a point ran on the worker", lambda: cluster.running() or proc.poll() is not None,
               START_S)
        assert proc.poll() is None, proc.communicate(timeout=10)
        proc.send_signal(signal.SIGINT)
        _, stderr = _finish(proc, 20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    assert proc.returncode != 0 and "Traceback" not in stderr
    _until("the scheduler forgot the cancelled points", lambda: not cluster.running(), 20)


def test_the_automatic_point_timeout_grows_with_the_ticks_of_every_run():
    _, base = sweep.scene_mod.load("fig3_fast")
    auto = {"point_timeout": 0.0}
    base["run"]["ticks"] = 2000
    assert sweep.point_timeout(base, auto) == sweep.POINT_START_S + 2000 * sweep.POINT_TICK_S
    assert sweep.point_timeout(base, {"point_timeout": 5}) == 5.0
    _, train = sweep.scene_mod.load("train_digits")
    train["run"]["ticks"] = 300
    train["train"].update(rules=["diffusion", "ar"], ar_iterations=50)
    assert sweep.point_timeout(train, auto) == sweep.POINT_START_S + 300 * 51 * sweep.POINT_TICK_S
