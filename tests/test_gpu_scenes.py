"""Every shipped scene that takes a device, run end to end on the GPU (cupy)
through the command line, gives the CPU's numbers: the recorded trace of a
diffusion scene (chain and graph recorders), the curves and summaries of the
train, Activation Relaxation and sweep scenes, and pictures drawn from them.

The CPU run is the oracle: its numpy path is checked against independent
backprop and finite differences elsewhere in the suite. float64 throughout, so
the two devices differ only by the order of floating-point sums (cuBLAS against
OpenBLAS): rtol 1e-7 over a few hundred ticks, learning included (1e-3 for
temporal differencing, whose update divides by a tick-to-tick difference).
Skipped where cupy sees no GPU."""
import json
import math
import os

import numpy as np
import pytest

from simulator.command import main as tickprop
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


def _run(runner, name, device, args, pictures=False):
    scene = name.removesuffix("_moving")
    out = f"{name}_{device}"
    extra = [] if pictures else ["--no-png", "--no-gif"]
    res = runner.invoke(tickprop, ["run", scene, "--device", device, "--dtype", "float64",
                                   "--out", out, "--quiet", *extra, *args],
                        catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return out


# mismatch_rel is formed from Gram inner products (simulator.metrics): below
# about sqrt(eps) = 1.5e-8 in float64 it is rounding, so it is compared to that.
ATOL_KEY = {"mismatch_rel": 1e-7}


def _same(a, b, where, bad):
    """Recursive comparison of two results.json documents, numbers to RTOL;
    differences are appended to ``bad``."""
    if isinstance(a, dict):
        if not (isinstance(b, dict) and set(a) == set(b)):
            bad.append(f"{where}: keys differ")
            return
        for k in a:
            if k not in VOLATILE:
                _same(a[k], b[k], f"{where}/{k}", bad)
    elif isinstance(a, list):
        if not (isinstance(b, list) and len(a) == len(b)):
            bad.append(f"{where}: lengths differ")
            return
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{where}[{i}]", bad)
    elif isinstance(a, float) or isinstance(b, float):
        # temporal differencing divides by a - a_prev, which on a held frame
        # is itself rounding: its updates (and their angles) carry that ratio
        rtol = 1e-3 if "/itd-" in where else RTOL
        if a is None or b is None or math.isnan(a) or math.isnan(b):
            if not ((a is None or math.isnan(a)) and (b is None or math.isnan(b))):
                bad.append(f"{where}: {a} vs {b}")
        elif not math.isclose(a, b, rel_tol=rtol, abs_tol=ATOL):
            bad.append(f"{where}: {a} vs {b}")
    elif a != b:
        bad.append(f"{where}: {a!r} vs {b!r}")


def _same_arrays(want, got, where, bad):
    if set(want.files) != set(got.files):
        bad.append(f"{where}: arrays {sorted(want.files)} vs {sorted(got.files)}")
        return
    for key in want.files:
        a, b = want[key], got[key]
        if a.shape != b.shape or a.dtype != b.dtype:
            bad.append(f"{where}: {key} {a.shape} {a.dtype} vs {b.shape} {b.dtype}")
        elif a.dtype.kind == "f":
            if not np.array_equal(np.isnan(a), np.isnan(b)):
                bad.append(f"{where}: {key}: NaN at different places")
            elif not np.allclose(b, a, rtol=RTOL, atol=ATOL_KEY.get(key, ATOL), equal_nan=True):
                err = np.nanmax(np.abs(b - a) / (np.abs(a) + ATOL_KEY.get(key, ATOL)))
                bad.append(f"{where}: {key}: largest relative difference {err:.3g}")
        elif not np.array_equal(a, b):
            bad.append(f"{where}: {key}: {np.sum(a != b)} entries differ")


def _same_csv(want, got, where, bad):
    rows_a, rows_b = open(want).read().splitlines(), open(got).read().splitlines()
    if len(rows_a) != len(rows_b):
        bad.append(f"{where}: {len(rows_a)} rows vs {len(rows_b)}")
        return
    for ra, rb in zip(rows_a, rows_b):
        for x, y in zip(ra.split(","), rb.split(","), strict=True):
            try:
                fx, fy = float(x), float(y)
            except ValueError:
                if x != y:
                    bad.append(f"{where}: {ra} vs {rb}")
                continue
            if math.isnan(fx) != math.isnan(fy) or (
                    not math.isnan(fx) and not math.isclose(fx, fy, rel_tol=RTOL, abs_tol=ATOL)):
                bad.append(f"{where}: {ra} vs {rb}")


def _same_outputs(cpu, gpu):
    """Every result file tickprop wrote for the two runs holds the same numbers
    (run.json and the pictures aside); returns how many files were compared."""
    skip = ("run.json", "tickprop-manifest.json")     # what was run, and the files' hashes
    names = sorted(f for f in os.listdir(cpu) if f.endswith((".npz", ".json", ".csv"))
                   and f not in skip)
    assert names, os.listdir(cpu)
    assert names == sorted(f for f in os.listdir(gpu)
                           if f.endswith((".npz", ".json", ".csv")) and f not in skip)
    bad = []
    for f in names:
        a, b = f"{cpu}/{f}", f"{gpu}/{f}"
        if f.endswith(".npz"):
            with np.load(a) as want, np.load(b) as got:
                _same_arrays(want, got, f, bad)
        elif f.endswith(".csv"):
            _same_csv(a, b, f, bad)
        else:
            _same(json.load(open(a)), json.load(open(b)), f, bad)
    assert not bad, f"{len(bad)} differences:\n" + "\n".join(bad[:30])
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
    assert _same_outputs(cpu, gpu)


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
        res = runner.invoke(tickprop, ["sweep", f"sweep_{device}.toml", "--workers", "2",
                                       "--out", f"sweep_{device}", "--quiet"],
                            catch_exceptions=False)
        assert res.exit_code == 0, res.output
        rows = open(f"sweep_{device}/sweep.csv").read().splitlines()
        assert len(rows) == 5 and all(",ok," in r for r in rows[1:]), rows
    assert "sweep.csv" in _same_outputs("sweep_cpu", "sweep_cuda")


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
