"""The command line as a user meets it: shipped scenes run, run.json replays
bit for bit, and every malformed scene is one 'error:' line, exit 2, nothing written."""
import json
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.command import main as tickprop
from simulator import scene as scenes
from simulator.errors import SceneError

SHIPPED = ["fig1_constant", "fig2_slow", "fig3_fast", "sync_linear", "pipelined"]


def invoke(runner, *args):
    return runner.invoke(tickprop, list(args), catch_exceptions=False)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_scenes_run_and_write_their_trace(runner, name):
    res = invoke(runner, "run", name, "--ticks", "40", "--quiet")
    assert res.exit_code == 0, res.output
    with np.load(f"outputs/{name}/trace.npz") as d:
        L = len(d["sizes"]) - 1
        assert d["mismatch_cos"].shape == (40, L)
        assert d["tag_input"].shape == (40, L + 1)
        assert d["tag_input"][-1, 0] == 39
    meta = json.load(open(f"outputs/{name}/run.json"))
    assert meta["scene"]["run"]["ticks"] == 40
    assert "numpy" in meta["versions"] and meta["timings"]["simulate_s"] > 0


def test_fig1_trace_shows_fact_a(runner):
    invoke(runner, "run", "fig1_constant", "--quiet")
    with np.load("outputs/fig1_constant/trace.npz") as d:
        L = 9
        rel = d["mismatch_rel"]
        assert np.all(rel[2 * L - 1:] < 1e-6)             # Gram rounding floor, see metrics
        assert np.all(d["mismatch_cos"][2 * L - 1:] > 1 - 1e-12)
        assert rel[2 * L - 2, 0] > 1e-3


def test_replay_from_run_json_is_bit_identical(runner):
    invoke(runner, "run", "fig3_fast", "--ticks", "30", "--seed", "11", "--quiet",
           "--set", "rule.learning_rate=0.01")
    res = invoke(runner, "run", "outputs/fig3_fast/run.json", "--quiet")
    assert res.exit_code == 0, res.output
    with np.load("outputs/fig3_fast/trace.npz") as a, np.load("outputs/fig3_fast_replay/trace.npz") as b:
        assert set(a.files) == set(b.files)
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_scenes_lists_every_shipped_scene_with_its_description(runner):
    res = invoke(runner, "scenes")
    for name in SHIPPED:
        line = next(l for l in res.output.splitlines() if l.startswith(name))
        assert len(line.split(None, 1)[1]) > 20


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return str(path)


BASE = '[network]\ndepth = 3\nwidth = 4\ninputs = 4\noutputs = 4\n[run]\nticks = 10\n'
MALFORMED = {
    "unknown_key": (BASE + "[rule]\nflavour = 1\n", "rule.flavour"),
    "typo": (BASE + "[rule]\nfeedbak = 'random'\n", "did you mean 'feedback'"),
    "negative_depth": ('[network]\ndepth = -2\n', "network.depth"),
    "wrong_type": ('[network]\nwidth = "wide"\n', "expected an integer"),
    "bad_option": (BASE + "[rule]\nfeedback = 'tranpose'\n", "did you mean 'transpose'"),
    "non_toml": ("this is [not toml", "not valid TOML"),
    "budget": (BASE + "[record]\nmemory_budget = '1KiB'\n", "memory budget"),
    "unknown_section": (BASE + "[rules]\nloss = 'mse'\n", "did you mean 'rule'"),
    "bad_stream": (BASE + "[stream]\nkind = 'helld'\n", "did you mean 'held'"),
    "gif_size": (BASE + "[render]\nsize = [100, 50]\n", "render.size"),
    "crossfade": (BASE + "[stream]\nkind = 'held'\nhold = 2\ncrossfade = 4\n", "crossfade"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_scene_is_one_error_line_exit_2_nothing_written(runner, tmp_path, case):
    text, needle = MALFORMED[case]
    path = write(tmp_path / f"{case}.toml", text)
    res = runner.invoke(tickprop, ["run", path, "--quiet"])
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert needle in lines[0]
    assert path in lines[0]
    assert not os.path.exists("outputs")


def test_missing_scene_names_it_and_suggests(runner):
    res = runner.invoke(tickprop, ["run", "fig1_constnt"])
    assert res.exit_code == 2
    assert "fig1_constnt" in res.stderr and "did you mean 'fig1_constant'" in res.stderr
    assert not os.path.exists("outputs")


def test_bad_set_override_is_a_user_error(runner):
    res = runner.invoke(tickprop, ["run", "fig1_constant", "--set", "rule.derivative=glob"])
    assert res.exit_code == 2 and "rule.derivative" in res.stderr
    res = runner.invoke(tickprop, ["run", "fig1_constant", "--set", "nonsense"])
    assert res.exit_code == 2 and "SECTION.KEY=VALUE" in res.stderr


def test_cuda_without_gpu_is_a_clear_error(runner):
    from simulator.backend import cuda_available
    if cuda_available():
        pytest.skip("a GPU is present")
    res = runner.invoke(tickprop, ["run", "fig1_constant", "--device", "cuda"])
    assert res.exit_code == 2 and "cuda" in res.stderr
    assert not os.path.exists("outputs")


def test_blow_up_names_tick_and_layer(runner, tmp_path):
    path = write(tmp_path / "boom.toml", BASE.replace("ticks = 10", "ticks = 400") +
                 "[network]\n".replace("[network]\n", "") +
                 "[rule]\nlearning_rate = 1000.0\n[stream]\nkind = 'held'\nhold = 1\n")
    res = runner.invoke(tickprop, ["run", path, "--set", "network.hidden=relu",
                                   "--set", "network.output=linear", "--quiet"])
    assert res.exit_code == 2
    assert "non-finite" in res.stderr and "tick" in res.stderr and "layer" in res.stderr
    assert not os.path.exists("outputs")


VALUES = st.one_of(st.integers(-5, 5), st.floats(-2, 2, allow_nan=False), st.booleans(),
                   st.text(max_size=6), st.lists(st.integers(-1, 4), max_size=3))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(section=st.sampled_from(["network", "stream", "rule", "run", "record", "target"]),
       key=st.sampled_from(["depth", "width", "kind", "hold", "loss", "feedback", "ticks",
                            "states", "every", "scale", "batch", "seed", "learning_rate"]),
       value=VALUES)
def test_fuzzed_scene_values_either_validate_or_raise_scene_error(section, key, value):
    """Any value in any key: a resolved scene or one SceneError, never a crash."""
    name, base = scenes.load("fig1_constant")
    base[section][key] = value
    try:
        resolved = scenes.validate(base, "fuzz")
    except SceneError as exc:
        assert "fuzz" in str(exc)
        return
    assert resolved[section][key] == value or isinstance(value, int)


def test_ar_scenes_run_from_tickprop_run(runner):
    res = invoke(runner, "run", "ar_converge", "--quiet", "--set", "relaxation.batch=8",
                 "--set", "relaxation.eta_x=[0.1, 1.0]")
    assert res.exit_code == 0, res.output
    meta = json.load(open("outputs/ar_converge/run.json"))
    # η_x = 1 solves the triangular system exactly in L ticks (see test_relaxation)
    assert max(meta["summary"]["final_error"]["eta_x=1"][1:]) < 1e-12
    assert os.path.getsize("outputs/ar_converge/ar_convergence.png") > 10_000
    res = invoke(runner, "run", "ar_train", "--quiet", "--set", "train.epochs=1",
                 "--set", "train.seeds=[0]", "--set", "relaxation.iterations=10",
                 "--set", "network.sizes=[64, 32, 10]", "--set", 'relaxation.variants=["exact"]')
    assert res.exit_code == 0, res.output
    acc = json.load(open("outputs/ar_train/run.json"))["summary"]["final_test_accuracy"]
    assert set(acc) == {"backprop", "exact"}


def test_ar_scene_errors_name_the_key(runner):
    res = runner.invoke(tickprop, ["run", "ar_train", "--set", 'relaxation.variants=["exakt"]'])
    assert res.exit_code == 2 and "did you mean 'exact'" in res.stderr
    res = runner.invoke(tickprop, ["run", "ar_converge", "--set", "relaxation.eta_x=[2.5]"])
    assert res.exit_code == 2 and "relaxation.eta_x" in res.stderr


def test_train_and_sweep_scenes_from_the_command_line(runner, tmp_path):
    res = invoke(runner, "run", "train_teacher", "--ticks", "200", "--quiet")
    assert res.exit_code == 0, res.output
    summary = json.load(open("outputs/train_teacher/run.json"))["summary"]
    assert "backprop" in json.dumps(summary)
    res = runner.invoke(tickprop, ["run", "sweep_rules"])
    assert res.exit_code == 2 and "tickprop sweep" in res.stderr
    assert not os.path.exists("outputs/sweep_rules")
    path = write(tmp_path / "tiny.toml", 'description = "tiny"\nkind = "sweep"\n[sweep]\n'
                 'base = "fig3_fast"\nseeds = [0]\n[sweep.set]\n"run.ticks" = 40\n'
                 '"network.depth" = 3\n[sweep.grid]\n"stream.hold" = [1, 8]\n')
    res = invoke(runner, "sweep", path, "--quiet", "--out", "sw")
    assert res.exit_code == 0, res.output
    rows = open("sw/sweep.csv").read().strip().splitlines()
    assert len(rows) == 3 and "stream.hold" in rows[0]


def test_run_writes_pictures_and_render_redraws_them(runner):
    res = invoke(runner, "run", "fig1_constant", "--ticks", "30", "--quiet")
    assert res.exit_code == 0, res.output
    folder = "outputs/fig1_constant"
    for f in ("waves.png", "mismatch.png", "waves.gif"):
        assert os.path.getsize(os.path.join(folder, f)) > 1000
    os.remove(os.path.join(folder, "waves.gif"))
    res = invoke(runner, "render", folder, "--every", "3", "--size", "400x240", "--no-png")
    assert res.exit_code == 0, res.output
    import imageio.v3 as iio
    frames = iio.imread(os.path.join(folder, "waves.gif"), index=None)
    assert frames.shape[0] == 10 and frames.shape[1:3] == (240, 400)
    res = runner.invoke(tickprop, ["render", folder, "--size", "big"])
    assert res.exit_code == 2 and "WIDTHxHEIGHT" in res.stderr


def test_no_gif_and_no_png_skip_their_files(runner):
    invoke(runner, "run", "fig3_fast", "--ticks", "20", "--quiet", "--no-gif", "--no-png")
    assert sorted(os.listdir("outputs/fig3_fast")) == ["run.json", "tickprop-manifest.json",
                                                       "trace.npz"]


def test_sync_names_ls_and_delay(runner):
    res = invoke(runner, "sync", "--depth", "9", "--json")
    assert res.exit_code == 0, res.output
    text = res.output
    assert "5" in text and "4" in text
    res = invoke(runner, "sync", "--depth", "9")
    assert "ls = (L+1)/2 = 5" in res.output and "(L−1)/2 = 4" in res.output
    res = runner.invoke(tickprop, ["sync"])
    assert res.exit_code == 2


def test_pc_scenes_and_pc_table_command(runner):
    res = invoke(runner, "run", "pc_wave", "--quiet")
    assert res.exit_code == 0, res.output
    summary = json.load(open("outputs/pc_wave/run.json"))["summary"]
    assert summary["levels"] > 5 and not summary["overflow"]
    assert os.path.getsize("outputs/pc_wave/pc_wave.gif") > 1000
    res = invoke(runner, "run", "zil_table", "--quiet", "--set", "table.repeats=1",
                 "--set", 'table.dtypes=["float64"]', "--set", 'table.levelled="levelled"')
    assert res.exit_code == 0, res.output
    rows = json.load(open("outputs/zil_table/run.json"))["summary"]["table1"]
    assert max(r["divergence_rel"] for r in rows) < 1e-12
    res = invoke(runner, "pc-table", "--no-levelled", "--repeats", "1", "--out", "pct")
    assert res.exit_code == 0, res.output
    div = {line.split("|")[1].strip(): line for line in res.output.splitlines()
           if line.startswith("| ") and "float64 | False" in line}
    assert set(div) == {"mlp", "cnn", "rnn", "residual", "attention"}
    assert os.path.isfile("pct/table1.csv") and os.path.isfile("pct/tables.md")


def test_locking_scene_reports_both_schedules(runner):
    res = invoke(runner, "run", "locking", "--quiet", "--set", "locking.frames=3",
                 "--set", "locking.depth=4")
    assert res.exit_code == 0, res.output
    summary = json.load(open("outputs/locking/run.json"))["summary"]
    # closed forms: locked backprop takes 2L ticks per frame; the pipeline one per frame + fill
    assert summary["backprop"]["ticks"] == 3 * 2 * 4
    assert summary["pipelined"]["frames_per_tick"] > summary["backprop"]["frames_per_tick"]
    assert os.path.getsize("outputs/locking/locking.png") > 10_000
