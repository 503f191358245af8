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


# ------------------------------------------------------------ Trace as a mapping
def test_a_trace_is_a_mapping_of_the_arrays_trace_npz_holds(cwd):
    """Names, len, `in`, iteration, keys/values/items agree with trace[name] and
    with the trace.npz the same run saved (read by numpy, not by Trace)."""
    trace = simulator.simulate("fig1_constant", ticks=12, out="run", **{"network.depth": 3})
    with np.load("run/trace.npz") as d:
        stored = {k: d[k] for k in d.files if k != "schema"}
    assert sorted(trace) == sorted(stored) and len(trace) == len(stored) == 19
    assert list(trace.keys()) == list(trace) and "tick" in trace and "nope" not in trace
    for (key, value), same in zip(trace.items(), trace.values()):
        assert value is same and trace[key] is value
        np.testing.assert_array_equal(value, stored[key], err_msg=key)
    assert sorted(dict(trace)) == sorted(stored)


def test_a_traces_repr_says_what_it_is_and_every_array_with_shape_and_unit():
    chain = simulator.simulate("fig1_constant", ticks=20, **{"network.depth": 3,
                                                              "record.every": 4})
    lines = repr(chain).splitlines()
    assert lines[0] == ("Trace 'fig1_constant': chain trace, layers 0..3 (depth 3); "
                        "5 rows, ticks 0..16 every 4")
    rows = {line.split()[0]: line for line in lines[1:-1]}
    assert list(rows) == list(chain.keys())
    assert rows["x_norm"].split()[1:] == ["(5,", "4)", "float64", "activation", "(L2", "norm",
                                          "over", "batch", "and", "neurons)"]
    assert rows["mismatch_cos"].split()[1:4] == ["(5,", "3)", "float64"]
    assert rows["mismatch_cos"].endswith("cosine (dimensionless)")
    assert rows["tick"].split()[1:] == ["(5,)", "int64", "tick"]
    graph = simulator.simulate("residual_levelling", ticks=6).select(ticks=(2, 5))
    head = repr(graph).splitlines()[0]
    assert head == ("Trace 'residual_levelling' (selected): graph trace, 6 vertices: input, h1, "
                    "h2, h3, r, out; 3 rows, ticks 2..4")
    assert repr(Trace({}, None)).splitlines()[0] == "Trace '(unnamed)': chain trace; 0 rows"


# ------------------------------------------------------ simulate's overrides
def test_set_strings_give_the_same_run_as_a_dict_and_keywords():
    a = simulator.simulate("fig1_constant", ["ticks=12", "network.depth=3",
                                             "rule.feedback=random"])
    b = simulator.simulate("fig1_constant", {"ticks": 12, "rule.feedback": "random"},
                           **{"network.depth": 3})
    c = simulator.simulate("fig1_constant", "ticks=12")
    assert a.depth == 3 and len(a.ticks) == 12 and len(c.ticks) == 12 and c.depth == 9
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


NETWORK_KEYS = ("depth, width, inputs, outputs, sizes, hidden, output, scale, bias_scale, "
                "layers, input_shape, levelled, parameters")


@pytest.mark.parametrize("overrides, message", [
    ("tick=5", "fig1_constant: override 'tick=5': expected one of ticks, seed, device, dtype "
               "or a 'section.key' of the scene (did you mean 'ticks'?)"),
    ({"tick": 5}, "fig1_constant: override 'tick': expected one of ticks, seed, device, dtype "
                  "or a 'section.key' of the scene (did you mean 'ticks'?)"),
    ("ticks=five", "fig1_constant: key 'run.ticks': expected an integer in 1..100000000, "
                   "got 'five' (a string)"),
    ({"ticks": "5"}, "fig1_constant: key 'run.ticks': expected an integer in 1..100000000, "
                     "got '5' (a string)"),
    ("ticks", "fig1_constant: override 'ticks': expected SECTION.KEY=VALUE, "
              "e.g. rule.feedback=random"),
    (["network.dept=5"], "fig1_constant: override 'network.dept=5': unknown key "
                         f"'network.dept' (did you mean 'depth'?); [network] accepts "
                         f"{NETWORK_KEYS}"),
    ({"network.dept": 5}, "fig1_constant: override 'network.dept': unknown key 'network.dept' "
                          f"(did you mean 'depth'?); [network] accepts {NETWORK_KEYS}"),
    ({"rule.feedback": "randm"}, "fig1_constant: key 'rule.feedback': expected one of "
                                 "transpose, random, sign, frsf, brsf, learned, dfa, got 'randm' "
                                 "(did you mean 'random'?)"),
    ({"nosection.x": 1}, "fig1_constant: override 'nosection.x': unknown section 'nosection'; "
                         "a diffusion scene has network, stream, target, rule, run, record, "
                         "render"),
    ({"a.b.c": 1}, "fig1_constant: override 'a.b.c': expected SECTION.KEY, e.g. rule.feedback"),
    ([5], "simulate: overrides: expected a dict {'ticks': 50, 'section.key': value}, or "
          "'section.key=value' strings as `tickprop run --set` takes them (one, or a list), "
          "got [5] (list)"),
])
def test_a_bad_override_is_one_line_naming_scene_key_expected_and_given(cwd, overrides,
                                                                        message):
    with pytest.raises(simulator.SimulatorError) as caught:
        simulator.simulate("fig1_constant", overrides)
    assert str(caught.value) == message
    assert os.listdir(".") == []


@pytest.mark.parametrize("item", ["network.dept=5", "nosection.x=1", "rule.feedback=randm",
                                  "record.states=maybe", "a.b.c=1", "run.ticks=0"])
def test_simulate_refuses_a_set_string_as_the_cli_does(cwd, item):
    """The same words as `tickprop run --set ITEM`: only the label differs
    ('--set' there, '<scene>: override' here)."""
    res = CliRunner().invoke(tickprop, ["run", "fig1_constant", "--set", item, "--quiet"])
    assert res.exit_code == 2 and len(res.stderr.splitlines()) == 1
    cli_line = res.stderr.strip().removeprefix("error: ")
    with pytest.raises(simulator.SimulatorError) as caught:
        simulator.simulate("fig1_constant", item)
    assert cli_line.replace(f"--set {item!r}", f"fig1_constant: override {item!r}") == str(
        caught.value)
    assert "\n" not in str(caught.value)


def test_simulate_sets_blas_threads_as_the_command_does():
    """run.threads (and the automatic choice) applies to simulate as to `tickprop run`:
    a notebook on a busy machine is not slowed by spinning BLAS threads."""
    from threadpoolctl import threadpool_info
    simulator.simulate("fig1_constant", {"ticks": 3, "run.threads": 1})
    blas = [i["num_threads"] for i in threadpool_info() if i.get("user_api") == "blas"]
    assert blas and set(blas) == {1}
