"""BLAS threads: the automatic choice from its inputs (closed rules), the limit
actually applied to the BLAS numpy loaded (read back through threadpoolctl's
own report), and what run.json says."""
import json

import numpy as np
import pytest
from click.testing import CliRunner
from threadpoolctl import threadpool_info

from simulator.command import main as tickprop

from simulator import threads
from simulator.errors import SimulatorError


def _blas_threads():
    return {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}


@pytest.mark.parametrize("requested, workers, load, cores, want", [
    (3, 1, 0.0, 8, 3),          # asked for: taken as given
    (0, 4, 0.0, 8, 1),          # sweep workers: one per process
    (0, 1, 4.0, 8, 1),          # busy: load >= cores / 2
    (0, 1, 3.9, 8, 4),          # quiet: usable cores, at most MAX_AUTO
    (0, 1, 0.0, 2, 2),
    (0, 1, 0.0, 1, 1),
])
def test_automatic_choice(requested, workers, load, cores, want):
    n, why = threads.choose(requested, workers, load=load, cores=cores)
    assert n == want and why


@pytest.mark.parametrize("bad", [-1, 1.5, "2", True])
def test_bad_thread_counts_are_refused(bad):
    with pytest.raises(SimulatorError, match="threads"):
        threads.choose(bad)


def test_apply_limits_the_blas_numpy_loaded():
    np.ones((4, 4)) @ np.ones((4, 4))      # BLAS is loaded
    before = _blas_threads()
    try:
        threads.apply(1)
        assert _blas_threads() == {1}
        info = threads.report(1, "test")
        assert info["blas_threads"] == 1 and info["libraries"]
        assert all(lib["threads"] == 1 for lib in info["libraries"])
    finally:
        threads.apply(max(before))


def test_run_json_says_what_threads_were_used(tmp_path):
    out = tmp_path / "run"
    res = CliRunner().invoke(tickprop, ["run", "fig1_constant", "--ticks", "5", "--no-png",
                                        "--no-gif", "--quiet", "--threads", "1",
                                        "--out", str(out)])
    assert res.exit_code == 0, res.output
    info = json.loads((out / "run.json").read_text())["threads"]
    assert info["blas_threads"] == 1 and "--threads" in info["why"]
    assert all(lib["threads"] == 1 for lib in info["libraries"])


def test_a_train_scene_gives_its_rules_the_cores_it_may_use(tmp_path, monkeypatch):
    """Rules learning side by side take run.threads / --threads threads, one
    BLAS thread each while they learn; automatically the usable cores (no
    load test), and one in a sweep worker."""
    np.ones((4, 4)) @ np.ones((4, 4))      # BLAS is loaded
    before = _blas_threads()
    try:
        monkeypatch.setattr(threads, "usable_cores", lambda: 3)
        monkeypatch.setattr(threads, "_WORKER", False)
        threads.setup(0)
        assert threads.own_threads() == 3
        threads.setup(2)
        assert threads.own_threads() == 2
        monkeypatch.setattr(threads, "_WORKER", True)
        threads.setup(0)
        assert threads.own_threads() == 1
        monkeypatch.setattr(threads, "_WORKER", False)
        seen = []
        real = threads.one_blas_thread

        def spy():
            seen.append(True)
            return real()
        monkeypatch.setattr(threads, "one_blas_thread", spy)
        out = tmp_path / "run"
        res = CliRunner().invoke(tickprop, ["run", "train_digits", "--ticks", "40", "--no-png",
                                            "--no-gif", "--quiet", "--threads", "2",
                                            "--out", str(out), "--set", "train.eval_every=20"])
        assert res.exit_code == 0, res.output + res.stderr
        assert json.loads((out / "results.json").read_text())["rule_threads"] == 2 and seen
    finally:
        threads.apply(max(before))
