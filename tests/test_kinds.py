"""The registry of scene kinds: every kind is one record, `tickprop run` takes
or refuses each typed option by name, and `tickprop render` re-draws every
kind's pictures from its saved results alone (no simulation), byte for byte."""
import hashlib
import json
import os
import struct

import pytest

from simulator.command import main as tickprop
from simulator import kinds
from simulator import scene as scenes
from simulator.kinds.base import TYPED_OPTIONS, Kind
from cli_errors import one_error_line

# One shipped scene per kind, made small; render must re-create these files.
RUNS = {
    "diffusion": (["fig3_fast", "--ticks", "30"], ["waves.png", "mismatch.png", "waves.gif"]),
    "train": (["train_teacher", "--ticks", "100"], ["learning.png"]),
    "ar_converge": (["ar_converge", "--set", "relaxation.batch=8", "--set",
                     "relaxation.eta_x=[0.1, 1.0]", "--set", "relaxation.iterations=20"],
                    ["ar_convergence.png", "relaxation_wave.png", "relaxation_wave.gif"]),
    "ar_train": (["ar_train", "--set", "train.epochs=1", "--set", "train.seeds=[0]", "--set",
                  "relaxation.iterations=5", "--set", "network.sizes=[64, 16, 10]", "--set",
                  'relaxation.variants=["exact"]'], ["ar_accuracy.png", "ar_accuracy_train.png"]),
    "pc_table": (["zil_table", "--set", "table.repeats=1", "--set", 'table.dtypes=["float64"]',
                  "--set", 'table.levelled="levelled"'], ["tables.md"]),
    "pc_wave": (["pc_wave"], ["pc_wave.png", "pc_wave.gif"]),
    "locking": (["locking", "--set", "locking.frames=3", "--set", "locking.depth=4"],
                ["locking.png", "locking.gif"]),
    "schedules": (["schedules_zoo", "--set", "schedules.frames=6", "--set", "schedules.seeds=[0]",
                   "--set", "schedules.eval_size=20", "--set", "stream.batch=2"],
                  ["schedules_raster.png", "schedules_staleness.png", "schedules_memory.png",
                   "schedules_accuracy.png"]),
}
SHIPPED_OF_KIND = {kind: args[0] for kind, (args, _) in RUNS.items()}
SHIPPED_OF_KIND["sweep"] = "sweep_rules"



def image_size(path):
    """(width, height) read from the file's own header: PNG IHDR or GIF screen
    descriptor; anything else fails."""
    with open(path, "rb") as f:
        head = f.read(32)
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return struct.unpack(">II", head[16:24])
    assert head[:6] in (b"GIF87a", b"GIF89a"), f"{path} is neither PNG nor GIF"
    return struct.unpack("<HH", head[6:10])


def test_every_schema_kind_has_exactly_one_record():
    scenes.load("sweep_rules")            # schemas declared beside their code load lazily
    assert set(kinds.KINDS) == set(scenes.SCHEMAS)
    assert set(SHIPPED_OF_KIND) == set(kinds.KINDS)
    for name, kind in kinds.KINDS.items():
        assert kind.name == name
        assert set(kind.options) | set(kind.refuse) == set(TYPED_OPTIONS)


def test_a_kind_must_take_or_refuse_every_typed_option():
    with pytest.raises(ValueError, match="missing"):
        Kind("half", prepare=None, draw=None, options={"seed": "run.seed"})
    with pytest.raises(ValueError, match="both"):
        Kind("twice", prepare=None, draw=None, options=dict.fromkeys(TYPED_OPTIONS, "run.x"),
             refuse={"seed": "no"})


@pytest.mark.parametrize("kind", sorted(SHIPPED_OF_KIND))
def test_accepted_typed_options_set_a_key_of_the_kind_schema(kind):
    """Each accepted option lands on a real key: the scene validates with it and
    the key holds the value (closed form: what was typed)."""
    name, sc = scenes.load(SHIPPED_OF_KIND[kind])
    samples = {"ticks": 7, "seed": 3, "device": "cpu", "dtype": "float32"}
    for option, target in kinds.get(kind).options.items():
        typed = kinds.get(kind).overrides({option: samples[option]})
        resolved = scenes.apply_overrides(sc, [], name, typed)
        for key, value in typed.items():
            section, field = key.split(".")
            assert resolved[section][field] == value
        assert any(v in (samples[option], [samples[option]]) for v in typed.values())


REFUSED = [(kind, option) for kind in sorted(SHIPPED_OF_KIND)
           for option in TYPED_OPTIONS if option in kinds.get(kind).refuse]


@pytest.mark.parametrize("kind,option", REFUSED)
def test_typed_option_a_kind_has_no_use_for_is_refused_by_name(runner, kind, option):
    """`tickprop run locking --seed 1` was KeyError: 'run' (a traceback)."""
    value = {"ticks": "5", "seed": "1", "device": "cpu", "dtype": "float32"}[option]
    res = runner.invoke(tickprop, ["run", SHIPPED_OF_KIND[kind], f"--{option}", value])
    line = one_error_line(res)
    assert f"--{option}" in line and kind in line
    assert not os.path.exists("outputs")


def test_locking_seed_says_it_is_deterministic(runner):
    line = one_error_line(runner.invoke(tickprop, ["run", "locking", "--seed", "1"]))
    assert "no seed" in line and "deterministic" in line


def test_pc_table_dtype_reaches_both_tables_in_run_and_alias(runner):
    """One implementation: `run zil_table --dtype float32` and `pc-table --dtype
    float32` both measure Table 1 and Table 2 in float32 (the kind used to
    hard-code float64 for Table 2, and refused --dtype)."""
    res = runner.invoke(tickprop, ["run", "zil_table", "--quiet", "--dtype", "float32", "--set",
                                   "table.repeats=1", "--set", 'table.levelled="levelled"'])
    assert res.exit_code == 0, res.output
    summary = json.load(open("outputs/zil_table/run.json"))["summary"]
    res = runner.invoke(tickprop, ["pc-table", "--dtype", "float32", "--repeats", "1",
                                   "--out", "pct"])
    assert res.exit_code == 0, res.output
    alias = json.load(open("pct/run.json"))
    assert alias["kind"] == "pc_table"
    for table in ("table1", "table2"):
        assert {r["dtype"] for r in summary[table]} == {"float32"}
        assert {r["dtype"] for r in alias["summary"][table]} == {"float32"}
    # same rows as the scene: Table 1 divergences are deterministic
    assert [r["divergence_rel"] for r in alias["summary"]["table1"]] == \
        [r["divergence_rel"] for r in summary["table1"]]
    assert open("pct/tables.md").read() in res.output


def _digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@pytest.mark.parametrize("kind", sorted(RUNS))
def test_render_redraws_every_kind_from_saved_results(runner, monkeypatch, kind):
    args, pictures = RUNS[kind]
    res = runner.invoke(tickprop, ["run", *args, "--quiet"])
    assert res.exit_code == 0, res.output
    folder = os.path.join("outputs", args[0])
    meta = json.load(open(os.path.join(folder, "run.json")))
    assert meta["kind"] == kind and sorted(meta["pictures"]) == sorted(pictures)
    before = {}
    for name in pictures:
        path = os.path.join(folder, name)
        before[name] = (_digest(path), None if name.endswith(".md") else image_size(path))
        os.remove(path)
    # render must not simulate: every experiment entry point now raises
    import simulator.kinds.ar_converge as k_ar
    import simulator.kinds.ar_train as k_at
    import simulator.kinds.pc_table as k_pt
    import simulator.kinds.pc_wave as k_pw
    import simulator.kinds.schedules as k_sc
    import simulator.runner as runner_mod
    import simulator.experiments.training as training

    def no(*a, **k):
        raise AssertionError("render simulated")
    for module, attr in ((runner_mod.Prepared, "simulate"), (training, "train_rules"),
                         (k_ar, "run_converge"), (k_at, "run_train"), (k_pt, "table1"),
                         (k_pt, "table2"), (k_pw, "error_wave"), (k_sc, "run_schedule")):
        monkeypatch.setattr(module, attr, no)
    res = runner.invoke(tickprop, ["render", folder])
    assert res.exit_code == 0, res.output + res.stderr
    for name in pictures:
        path = os.path.join(folder, name)
        size = None if name.endswith(".md") else image_size(path)
        assert size == before[name][1]
        assert _digest(path) == before[name][0], f"{name} drawn differently from the run"


def test_render_takes_size_where_the_kind_has_it_and_refuses_it_by_name(runner):
    runner.invoke(tickprop, ["run", "locking", "--quiet", "--set", "locking.frames=2",
                             "--set", "locking.depth=3"])
    res = runner.invoke(tickprop, ["render", "outputs/locking", "--size", "640x320", "--no-gif"])
    assert res.exit_code == 0, res.output
    assert image_size("outputs/locking/locking.png") == (640, 320)
    line = one_error_line(runner.invoke(tickprop, ["render", "outputs/locking", "--color", "tag"]))
    assert "--color" in line and "locking" in line


@pytest.mark.parametrize("damage", ["empty", "missing", "garbage"])
def test_render_of_damaged_results_names_the_file(runner, damage):
    runner.invoke(tickprop, ["run", "pc_wave", "--quiet"])
    path = "outputs/pc_wave/wave.npz"
    if damage == "missing":
        os.remove(path)
    else:
        with open(path, "wb") as f:
            f.write(b"" if damage == "empty" else b"PK\x03\x04 not a zip at all")
    line = one_error_line(runner.invoke(tickprop, ["render", "outputs/pc_wave"]))
    assert "wave.npz" in line


@pytest.mark.parametrize("content", ["", "{", "[]", '{"scene": {"kind": "nonsense"}}'])
def test_render_of_a_damaged_run_json_names_it(runner, content):
    os.makedirs("run")
    with open("run/run.json", "w") as f:
        f.write(content)
    line = one_error_line(runner.invoke(tickprop, ["render", "run"]))
    assert "run.json" in line


def test_render_of_a_folder_that_is_not_a_run(runner):
    os.makedirs("empty")
    line = one_error_line(runner.invoke(tickprop, ["render", "empty"]))
    assert "not a tickprop run folder" in line


def test_sweep_scene_is_a_kind_that_run_refuses_with_advice(runner):
    line = one_error_line(runner.invoke(tickprop, ["run", "sweep_rules"]))
    assert "tickprop sweep" in line
    assert not os.path.exists("outputs")
