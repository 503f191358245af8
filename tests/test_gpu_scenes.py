"""Every shipped scene that takes a device, run end to end on the GPU (cupy)
through the command line, gives the CPU's numbers: the recorded trace of a
diffusion scene (chain and graph recorders), the curves and summaries of the
train, Activation Relaxation and sweep scenes, and pictures drawn from them.

The CPU run is the oracle: its numpy path is checked against independent
backprop and finite differences elsewhere in the suite. float64 throughout, so
the two devices differ only by the order of floating-point sums (cuBLAS against
OpenBLAS): rtol 1e-7 over a few hundred ticks, learning included. Skipped where
cupy sees no GPU."""
import json
import math
import os

import numpy as np
import pytest
from click.testing import CliRunner

import cli
from simulator.backend import cuda_available

pytestmark = pytest.mark.skipif(not cuda_available(), reason="no cupy GPU here")

RTOL, ATOL = 1e-7, 1e-9
# scene -> extra command-line arguments that keep it short
DIFFUSION = {
    "fig1_constant": ["--ticks", "120"],
    "fig2_slow": ["--ticks", "300"],
    "fig3_fast": ["--ticks", "300"],
    "sync_linear": ["--ticks", "120"],
    "pipelined": ["--ticks", "120"],
    "conv_digits": ["--ticks", "120"],
    "residual_levelling": ["--ticks", "120"],
    # a moving MNIST stream through the graph recorder
    "conv_digits_moving": ["--ticks", "120", "--set", "stream.kind=moving",
                           "--set", "stream.data=mnist", "--set", "stream.canvas=[32, 32]",
                           "--set", "network.input_shape=[1, 32, 32]"],
}
TRAIN = {
    "train_teacher": ["--ticks", "300", "--set", "train.eval_every=100"],
    "train_digits": ["--ticks", "300", "--set", "train.eval_every=100"],
    "compare_rules": ["--ticks", "200", "--set", "train.eval_every=100"],
    "compare_rules_model": ["--ticks", "200", "--set", "train.eval_every=100"],
    "train_mnist": ["--ticks", "200", "--set", "train.eval_every=100"],
    "compare_rules_motion": ["--ticks", "200", "--set", "train.eval_every=100"],
    "ar_converge": [],
    "ar_train": ["--set", "train.epochs=1", "--set", "train.seeds=[0]"],
}
# what legitimately differs between two runs of the same scene
VOLATILE = {"scene", "seconds", "rule_threads", "timings", "versions", "machine", "threads",
            "backend", "record_bytes", "created", "wall_s", "seconds_per_point", "workers"}


@pytest.fixture
def runner(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return CliRunner()


def _run(runner, name, device, args, pictures=False):
    scene = name.removesuffix("_moving")
    out = f"{name}_{device}"
    extra = [] if pictures else ["--no-png", "--no-gif"]
    res = runner.invoke(cli.main, ["run", scene, "--device", device, "--dtype", "float64",
                                   "--out", out, "--quiet", *extra, *args],
                        catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return out


def _same(a, b, where):
    """Recursive comparison of two results.json documents, numbers to RTOL."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), where
        for k in a:
            if k not in VOLATILE:
                _same(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        if a is None or b is None or math.isnan(a) or math.isnan(b):
            assert (a is None or math.isnan(a)) and (b is None or math.isnan(b)), where
        else:
            assert math.isclose(a, b, rel_tol=RTOL, abs_tol=ATOL), f"{where}: {a} vs {b}"
    else:
        assert a == b, f"{where}: {a!r} vs {b!r}"


def _same_arrays(want, got, where):
    assert set(want.files) == set(got.files), where
    for key in want.files:
        a, b = want[key], got[key]
        assert a.shape == b.shape and a.dtype == b.dtype, f"{where}: {key}"
        if a.dtype.kind == "f":
            np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=f"{where}: {key}")
            np.testing.assert_allclose(b, a, rtol=RTOL, atol=ATOL, err_msg=f"{where}: {key}")
        else:
            np.testing.assert_array_equal(b, a, err_msg=f"{where}: {key}")


def _same_csv(want, got, where):
    rows_a, rows_b = open(want).read().splitlines(), open(got).read().splitlines()
    assert len(rows_a) == len(rows_b), where
    for ra, rb in zip(rows_a, rows_b):
        for x, y in zip(ra.split(","), rb.split(","), strict=True):
            try:
                fx, fy = float(x), float(y)
            except ValueError:
                assert x == y, f"{where}: {ra} vs {rb}"
                continue
            if math.isnan(fx):
                assert math.isnan(fy), where
            else:
                assert math.isclose(fx, fy, rel_tol=RTOL, abs_tol=ATOL), f"{where}: {ra} vs {rb}"


def _same_outputs(cpu, gpu):
    """Every result file tickprop wrote for the two runs holds the same numbers
    (run.json and the pictures aside); returns how many files were compared."""
    names = sorted(f for f in os.listdir(cpu) if f.endswith((".npz", ".json", ".csv"))
                   and f != "run.json")
    assert names and names == sorted(f for f in os.listdir(gpu)
                                     if f.endswith((".npz", ".json", ".csv")) and f != "run.json")
    for f in names:
        a, b = f"{cpu}/{f}", f"{gpu}/{f}"
        if f.endswith(".npz"):
            with np.load(a) as want, np.load(b) as got:
                _same_arrays(want, got, f)
        elif f.endswith(".csv"):
            _same_csv(a, b, f)
        else:
            _same(json.load(open(a)), json.load(open(b)), f)
    return names


@pytest.mark.parametrize("name", sorted(DIFFUSION))
def test_diffusion_scene_on_gpu_records_the_cpu_trace(runner, name):
    cpu = _run(runner, name, "cpu", DIFFUSION[name])
    gpu = _run(runner, name, "cuda", DIFFUSION[name])
    assert "trace.npz" in _same_outputs(cpu, gpu)
    with np.load(f"{cpu}/trace.npz") as want:
        assert np.isfinite(want["mismatch_cos"]).any()
    meta = json.load(open(f"{gpu}/run.json"))
    assert meta["scene"]["run"]["device"] == "cuda"


@pytest.mark.parametrize("name", sorted(TRAIN))
def test_scene_on_gpu_gives_the_cpu_results(runner, name):
    cpu = _run(runner, name, "cpu", TRAIN[name])
    gpu = _run(runner, name, "cuda", TRAIN[name])
    _same_outputs(cpu, gpu)


SWEEP = """description = "a small fact-E grid"
kind = "sweep"
[sweep]
base = "fig3_fast"
seeds = [0]
summary = "mismatch"
[sweep.set]
"run.ticks" = 256
"run.device" = "{device}"
"run.dtype" = "float64"
"record.states" = false
[sweep.grid]
"network.depth" = [3, 5]
"stream.hold" = [1, 4]
"""


def test_sweep_on_gpu_with_two_workers_gives_the_cpu_grid(runner):
    for device in ("cpu", "cuda"):
        with open(f"sweep_{device}.toml", "w") as f:
            f.write(SWEEP.format(device=device))
        res = runner.invoke(cli.main, ["sweep", f"sweep_{device}.toml", "--workers", "2",
                                       "--out", f"sweep_{device}", "--quiet"],
                            catch_exceptions=False)
        assert res.exit_code == 0, res.output
    assert "sweep.csv" in _same_outputs("sweep_cpu", "sweep_cuda")
    rows = open("sweep_cuda/sweep.csv").read().splitlines()
    assert len(rows) == 5 and all(",ok," in r for r in rows[1:])


@pytest.mark.parametrize("name", ["fig3_fast", "conv_digits", "train_digits"])
def test_gpu_run_draws_its_pictures(runner, name):
    args = DIFFUSION.get(name) or TRAIN[name]
    out = _run(runner, name, "cuda", args, pictures=True)
    pngs = [f for f in os.listdir(out) if f.endswith(".png")]
    assert pngs, os.listdir(out)
    from PIL import Image
    for f in pngs:
        with Image.open(f"{out}/{f}") as im:
            assert im.size[0] > 100 and im.size[1] > 100
