"""The schedules scene kind (simulator/kinds/schedules.py): its [schedules] section
refuses every mistake in one line (exit 2 through the CLI), a tiny run writes
schedules.npz with every array of the zoo contract (docs/explanation/schedules.md)
in its shape, `tickprop render` redraws from it alone, a damaged file is refused,
and one scene and seed give the same file twice."""
import json
import math
import os

import numpy as np
import pytest

from simulator import scene as scenes
from simulator.command import main as tickprop
from simulator.errors import SceneError
from simulator.runfiles import SCHEDULE_ARRAYS, SCHEDULE_GLOBALS, read_schedules
from simulator.safe_read import ReadError
from simulator.scene.sections import SCHEDULE_NAMES
from cli_errors import one_error_line

# A levelled residual graph on moving 8x8 digits over a 10x10 canvas: h -> b -> r = h + b -> out.
TINY = """
kind = "schedules"
[network]
input_shape = [100]
levelled = true
[[network.layers]]
name = "h"
kind = "dense"
units = 6
activation = "tanh"
[[network.layers]]
name = "b"
kind = "dense"
units = 6
activation = "tanh"
[[network.layers]]
name = "r"
kind = "add"
from = ["b", "h"]
[[network.layers]]
name = "out"
kind = "dense"
units = 10
activation = "linear"
[stream]
kind = "moving"
data = "digits"
canvas = [10, 10]
batch = 4
hold = 4
[target]
kind = "labels"
[schedules]
frames = 6
eval_every = 8
eval_size = 20
seeds = [0, 1]
sweep_depths = [2, 3]
"""



def refused(text):
    with pytest.raises(SceneError) as err:
        scenes.validate(scenes.loader.tomllib.loads(text), "s.toml")
    message = str(err.value)
    assert "\n" not in message and message.startswith("s.toml: "), message
    return message


def test_the_section_names_the_zoo_schedules_in_its_order():
    from simulator.analysis.timetables import SCHEDULES
    assert SCHEDULE_NAMES == tuple(SCHEDULES)
    sc = scenes.validate({"kind": "schedules"}, "s")["schedules"]
    assert sc["names"] == list(SCHEDULES) and len(sc["seeds"]) >= 3


@pytest.mark.parametrize("edit,needles", [
    ("[schedules]\nnmes = ['gpipe']\n", ["unknown key 'schedules.nmes'", "did you mean 'names'"]),
    ("[schedules]\nnames = ['gpip']\n", ["schedules.names[0]", "did you mean 'gpipe'"]),
    ("[schedules]\nnames = ['1f1b', '1f1b']\n", ["schedules.names", "at most once"]),
    ("[schedules]\nnames = []\n", ["schedules.names", "(0 entries)"]),
    ("[schedules]\nseeds = []\n", ["schedules.seeds"]),
    ("[schedules]\nmicro = 0\n", ["schedules.micro", "1..1024"]),
    ("[schedules]\nframes = 2.5\n", ["schedules.frames", "(a number)"]),
    ("[schedules]\nsweep_depths = [0]\n", ["schedules.sweep_depths[0]"]),
    ("[schedules]\nloss = 'xnet'\n", ["schedules.loss", "did you mean 'xent'"]),
    ("[schedules]\nnames = ['1f1b']\nmicro = 3\n", ["schedules.micro", "'gpipe' or '2bw'"]),
    ("[schedules]\nnames = ['1f1b']\n[rule]\nfeedback = 'random'\n",
     ["rule.feedback", "no 'diffusion'"]),
    ("[rule]\nlearning_rate = 0.1\n", ["unknown key 'rule.learning_rate'", "[rule] accepts"]),
    ("[run]\nseed = 3\n", ["unknown key 'run.seed'", "[run] accepts threads"]),
    ("[schedule]\nframes = 3\n", ["unknown section 'schedule'", "did you mean 'schedules'"]),
])
def test_every_mistake_in_a_schedules_scene_is_one_line(edit, needles):
    message = refused('kind = "schedules"\n' + edit)
    assert [n for n in needles if n not in message] == [], message


def test_cli_refuses_a_bad_key_and_the_options_it_has_no_use_for(runner):
    line = one_error_line(runner.invoke(tickprop, ["run", "schedules_zoo", "--set",
                                                   "schedules.frame=3"]))
    assert "schedules.frame" in line and "did you mean 'frames'" in line
    line = one_error_line(runner.invoke(tickprop, ["run", "schedules_zoo", "--set",
                                                   "schedules.micro=2"]))
    assert "schedules.micro" in line and "expected 'auto' or at least 8" in line
    for option, value in (("--ticks", "5"), ("--device", "cpu"), ("--dtype", "float32")):
        line = one_error_line(runner.invoke(tickprop, ["run", "schedules_zoo", option, value]))
        assert option in line and "schedules" in line
    assert not os.path.exists("outputs")


def test_a_run_over_the_memory_budget_is_refused_before_any_folder(runner):
    line = one_error_line(runner.invoke(tickprop, ["run", "schedules_zoo", "--set",
                                                   "schedules.memory_budget='64KiB'"]))
    assert "schedules.memory_budget" in line and "stream frames" in line
    assert not os.path.exists("outputs")


@pytest.fixture
def tiny(runner, tmp_path):
    """The tiny scene's file (runs in the runner's folder)."""
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return str(path)


def run_tiny(runner, path, out, *more):
    res = runner.invoke(tickprop, ["run", path, "--quiet", "--out", out, *more])
    assert res.exit_code == 0, res.output + str(res.exception)
    return read_schedules(out)


def test_a_tiny_run_saves_every_array_of_the_contract_in_its_shape(runner, tiny):
    data = run_tiny(runner, tiny, "zoo", "--no-png")
    _, resolved = scenes.load(tiny)
    model = scenes.spec_of(resolved).network.skeleton.level()     # levelled = true
    V, R, Q = len(model.vertices) - 1, 2, 2
    assert data["names"].tolist() == list(SCHEDULE_NAMES)
    assert data["vertices"].tolist() == [v.name for v in model.vertices[1:]]
    assert int(data["depth"]) == model.depth and data["seeds"].tolist() == [0, 1]
    assert data["sweep_depths"].tolist() == [2, 3]
    assert data["weighted"].tolist() == [v.name in ("h", "b", "out") for v in model.vertices[1:]]
    E = len(data["eval_ticks"])
    assert E >= 2 and data["eval_ticks"][0] == 0
    for key, dims in SCHEDULE_GLOBALS.items():
        assert data[key].ndim == len(dims), key
    for k in SCHEDULE_NAMES:
        T = len(data[f"{k}__forward"])
        want = {"T": T, "V": V, "R": R, "E": E, "Q": Q, "W": 3}
        for a, dims in SCHEDULE_ARRAYS.items():
            assert data[f"{k}__{a}"].shape == tuple(want[d] for d in dims), (k, a)
        assert data[f"{k}__forward"].dtype == np.int64 and data[f"{k}__delay"].dtype == float
        # each of the 6 frames is worked on forward by every stage
        assert sorted(set(data[f"{k}__forward"][:, 0].tolist()) - {-1}) == list(range(6)), k
        past = data["eval_ticks"] >= T
        assert np.isnan(data[f"{k}__accuracy"][:, past]).all()
        assert np.isfinite(data[f"{k}__accuracy"][:, ~past]).all()
    # locked backprop needs more ticks for the same frames than any pipeline
    assert len(data["backprop__forward"]) > max(len(data[f"{k}__forward"])
                                                 for k in SCHEDULE_NAMES[1:])
    meta = json.load(open("zoo/run.json"))
    assert meta["kind"] == "schedules" and set(meta["summary"]["schedules"]) == set(SCHEDULE_NAMES)


def test_same_scene_and_seed_give_identical_arrays_and_seed_sets_the_seeds(runner, tiny):
    a = run_tiny(runner, tiny, "a", "--no-png")
    b = run_tiny(runner, tiny, "b", "--no-png")
    assert sorted(a) == sorted(b)
    for key in a:
        assert np.array_equal(a[key], b[key], equal_nan=a[key].dtype.kind == "f"), key
    c = run_tiny(runner, tiny, "c", "--no-png", "--seed", "1")
    assert c["seeds"].tolist() == [1]
    assert np.array_equal(c["1f1b__loss"][0], a["1f1b__loss"][1], equal_nan=True)


def test_the_run_prints_the_per_schedule_table(runner, tiny):
    res = runner.invoke(tickprop, ["run", tiny, "--out", "t", "--no-png"])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    head = next(i for i, line in enumerate(lines) if line.split()[:2] == ["schedule", "ticks"])
    assert lines[head].split()[2:] == ["delay@2", "delay@3", "stale", "versions", "cos", "bp",
                                       "util",
                                       "accuracy"]
    rows = [line.split() for line in lines[head + 1:head + 8]]
    assert [row[0] for row in rows] == list(SCHEDULE_NAMES)
    data = read_schedules("t")
    for row in rows:          # recomputed from the saved arrays by hand
        k = row[0]
        T = len(data[f"{k}__forward"])
        last = np.flatnonzero(data["eval_ticks"] < T)[-1]
        acc = data[f"{k}__accuracy"][:, last]
        sweep = data[f"{k}__sweep_delay"]
        assert row[1] == str(T)
        assert row[2:4] == [f"{np.nanmax(sweep[0]):.0f}", f"{np.nanmax(sweep[1]):.0f}"]
        assert row[4] == f"{np.nanmax(data[f'{k}__stale']):.0f}"
        assert row[5] == str(data[f"{k}__versions"].sum(axis=1).max())
        assert row[6] == f"{np.nanmean(data[f'{k}__cosine']):.4f}"
        assert row[7] == f"{data[f'{k}__utilisation'].mean():.3f}"
        assert row[8:] == [f"{acc.mean():.3f}", "±", f"{acc.std(ddof=1):.3f}"]
    quiet = runner.invoke(tickprop, ["run", tiny, "--out", "q", "--no-png", "--quiet"])
    assert quiet.exit_code == 0 and quiet.output == ""


def _rewrite(path, change):
    with np.load(path) as f:
        arrays = dict(f)
    change(arrays)
    os.remove(path)
    np.savez(path, **arrays)


@pytest.mark.parametrize("damage,needle", [
    ("garbage", "not an .npz archive"),
    ("missing", "missing arrays gpipe__cosine"),
    ("shape", "'1f1b__delay' has shape"),
    ("frames", "'sideways__forward' holds values below -1"),
    ("names", "'names' must list the schedules"),
])
def test_render_refuses_a_damaged_schedules_npz_in_one_line(runner, tiny, damage, needle):
    run_tiny(runner, tiny, "zoo", "--no-png")
    path = "zoo/schedules.npz"
    if damage == "garbage":
        with open(path, "wb") as f:
            f.write(b"PK\x03\x04 not a zip at all")
    elif damage == "missing":
        _rewrite(path, lambda a: a.pop("gpipe__cosine"))
    elif damage == "shape":
        _rewrite(path, lambda a: a.update({"1f1b__delay": a["1f1b__delay"][:, :1]}))
    elif damage == "frames":
        _rewrite(path, lambda a: a["sideways__forward"].__setitem__((0, 0), -2))
    else:
        _rewrite(path, lambda a: a.update(names=np.array(["gpipe", "gpipe"])))
    line = one_error_line(runner.invoke(tickprop, ["render", "zoo"]))
    assert "schedules.npz" in line and needle in line, line
    with pytest.raises(ReadError):
        read_schedules("zoo")


def test_render_redraws_the_four_pictures_from_schedules_npz_alone(runner, tiny, monkeypatch):
    res = runner.invoke(tickprop, ["run", tiny, "--quiet", "--out", "zoo"])
    assert res.exit_code == 0, res.output
    pictures = ["schedules_accuracy.png", "schedules_memory.png", "schedules_raster.png",
                "schedules_staleness.png"]
    assert json.load(open("zoo/run.json"))["pictures"] == pictures
    for name in pictures:
        os.remove(os.path.join("zoo", name))
    import simulator.kinds.schedules as kind

    def no(*args, **kwargs):
        raise AssertionError("render simulated")
    monkeypatch.setattr(kind, "run_schedule", no)
    monkeypatch.setattr(kind, "timetable", no)
    res = runner.invoke(tickprop, ["render", "zoo", "--size", "900x600"])
    assert res.exit_code == 0, res.output + res.stderr
    assert sorted(os.listdir("zoo")) == sorted(pictures + ["run.json", "schedules.npz",
                                                           "tickprop-manifest.json"])
    for option in (["--every", "2"], ["--color", "tag"], ["--ticks", "0:5"]):
        line = one_error_line(runner.invoke(tickprop, ["render", "zoo", *option]))
        assert option[0] in line and "schedules" in line


def test_a_schedule_that_blows_up_is_saved_as_its_timetable_with_nan_numbers(runner, tiny,
                                                                            monkeypatch):
    """The engine stops diffusion at a NaN (NumericalError); the zoo goes on."""
    import simulator.kinds.schedules as kind
    from simulator.errors import NumericalError
    real = kind.run_schedule

    def blow_up(name, *args, **kwargs):
        if name == "diffusion":
            kwargs["progress"](3)
            raise NumericalError(3, 1, "delta")
        return real(name, *args, **kwargs)
    monkeypatch.setattr(kind, "run_schedule", blow_up)
    data = run_tiny(runner, tiny, "zoo", "--no-png")
    _, resolved = scenes.load(tiny)
    model = scenes.spec_of(resolved).network.skeleton.level()
    table = kind.timetable("diffusion", model, 6)
    for a in ("forward", "backward", "delay", "stale", "versions", "utilisation"):
        assert np.array_equal(data[f"diffusion__{a}"], table[a], equal_nan=True), a
    for a in ("cosine", "rel_error", "loss", "accuracy"):
        assert np.isnan(data[f"diffusion__{a}"]).all(), a
    assert np.isfinite(data["1f1b__loss"]).any() and np.isfinite(data["1f1b__cosine"]).any()
    row = json.load(open("zoo/run.json"))["summary"]["schedules"]["diffusion"]
    assert math.isnan(row["accuracy"]) and math.isnan(row["cosine"])


def test_the_memory_estimate_covers_what_a_run_allocates(tmp_path):
    """schedules_budget against tracemalloc's peak of the job itself (MNIST,
    128 frames, one seed): above it, and not wildly so."""
    import tracemalloc
    import simulator.kinds.schedules as kind
    name, resolved = scenes.load("schedules_zoo")
    resolved = scenes.apply_overrides(resolved, ["schedules.frames=128", "schedules.seeds=[0]"],
                                      name)
    spec = scenes.spec_of(resolved)
    model = kind.run_model(kind.seed_spec(spec, 0), 0)
    ticks = {k: int(t["ticks"]) for k, t in kind.timetables(spec, model).items()}
    estimate = kind.schedules_budget(spec, model, ticks).check()
    job = kind.prepare(name, resolved)
    tracemalloc.start()
    try:
        job(str(tmp_path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= estimate <= 4 * peak, (peak, estimate)


CHAIN = """
kind = "schedules"
[network]
depth = 3
width = 5
inputs = 4
outputs = 2
[stream]
kind = "held"
hold = 3
batch = 2
[schedules]
names = ["partime", "backprop"]
frames = 5
loss = "mse"
seeds = [4, 5, 6]
sweep_depths = [3]
"""


def test_a_chain_on_a_teacher_runs_a_subset_of_schedules_without_held_out_accuracy(runner,
                                                                                 tmp_path):
    path = tmp_path / "chain.toml"
    path.write_text(CHAIN)
    res = runner.invoke(tickprop, ["run", str(path), "--out", "c", "--no-png"])
    assert res.exit_code == 0, res.output
    data = read_schedules("c")
    assert data["names"].tolist() == ["partime", "backprop"]
    assert data["vertices"].tolist() == ["1", "2", "3"]
    assert data["eval_ticks"].shape == (0,) and data["partime__accuracy"].shape == (3, 0)
    assert data["stages_after"].tolist() == [2, 1, 0] and int(data["depth"]) == 3
    assert np.isfinite(data["backprop__loss"]).any(axis=1).all()      # every seed learned
    rows = [line.split() for line in res.output.splitlines() if line.split()[:1] in
            (["partime"], ["backprop"])]
    assert [r[0] for r in rows] == ["partime", "backprop"] and all(r[-1] == "-" for r in rows)
