"""The notebook API: simulate() gives the CLI run's trace and writes nothing;
trace.npz describes every array it holds; Trace.select cuts what it says;
the figure builders return matplotlib Figures."""
import json
import os

import numpy as np
import pytest
from click.testing import CliRunner
from matplotlib.figure import Figure

from simulator.command import main as tickprop
import simulator
from simulator import render
from simulator.probes import Trace


@pytest.fixture
def cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def cli_run(*args):
    res = CliRunner().invoke(tickprop, ["run", *args, "--quiet"])
    assert res.exit_code == 0, res.output + res.stderr
    return res


def test_simulate_equals_the_cli_run_and_writes_nothing(cwd):
    cli_run("fig3_fast", "--ticks", "30", "--seed", "3", "--set", "network.depth=5",
            "--set", "record.states=true", "--out", "cli")
    os.makedirs("empty")
    os.chdir("empty")
    trace = simulator.simulate("fig3_fast", ticks=30, seed=3,
                               **{"network.depth": 5, "record.states": True})
    assert os.listdir(".") == []
    with np.load(os.path.join(cwd, "cli", "trace.npz")) as d:
        stored = {k: d[k] for k in d.files if k != "schema"}
    assert set(stored) == set(trace.arrays)
    for key, value in stored.items():
        np.testing.assert_array_equal(trace[key], value, err_msg=key)


def test_overrides_as_a_dict_equal_keywords(cwd):
    a = simulator.simulate("fig1_constant", {"ticks": 12, "network.depth": 3})
    b = simulator.simulate("fig1_constant", ticks=12, **{"network.depth": 3})
    assert a.depth == 3 and len(a.ticks) == 12
    np.testing.assert_array_equal(a["x_norm"], b["x_norm"])


@pytest.mark.parametrize("scene, overrides, word", [
    ("fig1_constant", {"tiks": 3}, "ticks"),
    ("fig1_constant", {"network.dept": 3}, "network.dept"),
    ("locking", {}, "diffusion"),
    ("no_such_scene", {}, "no_such_scene"),
])
def test_simulate_refuses_with_one_simulator_error(cwd, scene, overrides, word):
    with pytest.raises(simulator.SimulatorError, match=word):
        simulator.simulate(scene, overrides)
    assert os.listdir(".") == []


def test_simulate_with_out_saves_as_run_does(cwd):
    trace = simulator.simulate("fig1_constant", ticks=10, out="saved")
    assert json.load(open("saved/run.json"))["tickprop_output"] is True
    np.testing.assert_array_equal(Trace.load("saved")["tag_input"], trace["tag_input"])


@pytest.mark.parametrize("args", [
    ("fig3_fast", "--ticks", "20", "--set", "record.states=true"),
    ("residual_levelling", "--ticks", "20", "--set", "record.states=true"),
])
def test_schema_describes_every_array_of_trace_npz(cwd, args):
    cli_run(*args, "--out", "run")
    with np.load("run/trace.npz") as d:
        schema = json.loads(str(d["schema"]))
        arrays = {k: d[k] for k in d.files if k != "schema"}
    assert set(schema["arrays"]) == set(arrays)
    for key, value in arrays.items():
        entry = schema["arrays"][key]
        assert entry["unit"] and entry["description"] != "not described", key
        assert len(entry["dims"]) == value.ndim and entry["shape"] == list(value.shape), key
    assert "schema" not in Trace.load("run").arrays


def test_select_cuts_ticks_layers_and_neurons():
    trace = simulator.simulate("fig3_fast", ticks=30, **{"record.states": True})
    part = trace.select(ticks=(5, 15), layers=[slice(4, 7)], neurons=[0, 2])
    np.testing.assert_array_equal(part.ticks, np.arange(5, 15))
    np.testing.assert_array_equal(part["x_norm"], trace["x_norm"][5:15][:, [0, 4, 5, 6]])
    np.testing.assert_array_equal(part["mismatch_cos"], trace["mismatch_cos"][5:15][:, [3, 4, 5]])
    assert [str(n) for n in part["vertex_names"]] == ["0", "4", "5", "6"]
    assert part["vertex_sync"].tolist() == [False, False, True, False]     # ls = 5 of L = 9
    assert part["state_x"].shape[-1] == 2
    np.testing.assert_array_equal(part["state_x"][:, 1], trace["state_x"][5:15, 4][..., [0, 2]])
    # tags name ticks before the window; their stream frame is the one shown then
    tags = part["tag_input"]
    want = np.where(tags >= 0, trace["stream_frame"][np.clip(tags, 0, None)], -1)
    np.testing.assert_array_equal(part.stream_frames_of(tags), want)


def test_figure_builders_return_figures():
    trace = simulator.simulate("fig1_constant", ticks=20)
    assert isinstance(render.waves(trace), Figure)
    assert isinstance(render.mismatch(trace), Figure)
    assert isinstance(render.gif_figure(trace, size=(640, 360)), Figure)
    frame = render.gif_frame(trace, 10, size=(640, 360))
    assert frame.shape == (360, 640, 3) and frame.dtype == np.uint8
    assert isinstance(render.waves(trace.select(layers=[3])), Figure)
