"""Graph models end to end: the public API (Engine and reference dispatch), the
recorder on graph runs, graph scenes (schema, build, budget), the shipped graph
scenes through the CLI, and ``tickprop sync`` on a graph.

Oracles: ``simulator.model.reference.backprop`` (checked against finite
differences in test_model_graph), GraphEngine driven by hand (for the
dispatch), and first exact ticks derived from path lengths enumerated here
(fact A′: T(v) = D + bwd(v) on the graph the engine runs on).
"""
import json
import os

import numpy as np
import pytest

import simulator
from simulator import Engine, GraphEngine, Model, Network, reference
from simulator.model import reference as graph_reference
from oracles import paths

RESIDUAL = [{"name": "h1", "kind": "dense", "units": 5, "activation": "tanh", "bias_scale": 0.3},
            {"name": "h2", "kind": "dense", "units": 5, "activation": "tanh", "bias_scale": 0.3},
            {"name": "h3", "kind": "dense", "units": 5, "activation": "tanh", "bias_scale": 0.3},
            {"name": "r", "kind": "add", "from": ["h3", "h1"], "activation": "tanh"},
            {"name": "out", "kind": "dense", "units": 3, "activation": "linear"}]


def residual():
    return Model.from_layers(RESIDUAL, (4,), seed=2)


# ------------------------------------------------------------------ public API
def test_public_names_are_exported():
    for name in ("Engine", "GraphEngine", "Model", "sync_set", "reference"):
        assert name in simulator.__all__ and hasattr(simulator, name)


@pytest.mark.parametrize("levelled", [False, True])
def test_engine_of_a_model_is_the_graph_engine(rng, levelled):
    """Engine(model, ...) runs exactly as GraphEngine(model, ...) with the same keywords."""
    model = residual()
    kw = dict(batch=2, learning_rate=0.05, feedback="random", feedback_seed=3,
              levelled=levelled)
    a, b = Engine(model, **kw), GraphEngine(model, **kw)
    assert isinstance(a, GraphEngine) and a.levelled == levelled
    for _ in range(9):
        u, y = rng.normal(size=(2, 4)), rng.normal(size=(2, 3))
        a.step(u, y)
        b.step(u, y)
    ga, gb = a.gradients(), b.gradients()
    assert list(ga) == list(model.parameters())
    for k in gb:
        np.testing.assert_array_equal(ga[k], gb[k])
        np.testing.assert_array_equal(a.parameters()[k], b.parameters()[k])


def test_engine_of_a_network_stays_the_stacked_engine():
    net = Network.random([3, 4, 2], seed=1)
    assert type(Engine(net)) is Engine


def test_simulator_reference_is_the_oracle_on_any_model():
    """One reference: ``simulator.reference`` is ``simulator.model.reference``,
    which takes a chain (``Model.chain``, or its alias ``Network``) like any Model."""
    assert reference is graph_reference
    net = Network.random([4, 5, 3], seed=1)
    assert list(reference.backprop(net, np.zeros((2, 4)), np.zeros((2, 3)))) == \
        ["1.W", "1.b", "2.W", "2.b"]


# ------------------------------------------------------------------ recording
def a_prime_tick(model, levelled):
    """Fact A′: every weight's g equals backprop from max_v D + bwd(v) on."""
    run = model.level() if levelled else model
    into, out_of = paths(run)
    D = max(into[run.names[-1]])
    return max(D + max(out_of[v.name]) for v in run.vertices[1:] if v.param_names)


def scene_model(name):
    from simulator.scene import load
    net = load(name)[1]["network"]
    return Model.skeleton(net["layers"], net["input_shape"])


@pytest.mark.parametrize("levelled", [False, True])
def test_recording_the_residual_scene_shows_fact_a_prime(levelled):
    """Constant input, frozen weights: the recorded mismatch cosine is 1 (to 1e-12)
    at every weighted vertex from the derived tick on, and not before it."""
    from simulator.runner import simulate_scene
    trace = simulate_scene("residual_levelling", f"network.levelled={str(levelled).lower()}")
    t0 = a_prime_tick(scene_model("residual_levelling"), levelled)
    assert t0 == 9
    names = [str(n) for n in trace["vertex_names"]]
    weighted = [i for i, n in enumerate(names) if n in ("h1", "h2", "h3", "out")]
    cos = trace["mismatch_cos"][:, [i - 1 for i in weighted]]
    rel = trace["mismatch_rel"][:, [i - 1 for i in weighted]]
    assert np.all(np.abs(cos[t0:] - 1) < 1e-12) and np.all(rel[t0:] < 1e-6)
    assert np.abs(cos[t0 - 1] - 1).max() > 1e-6
    assert (len(names) == 8) == levelled          # two identities delay the skip
    run = scene_model("residual_levelling")
    run = run.level() if levelled else run
    assert names == run.names
    assert list(trace["vertex_levels"]) == [max(s) for s in paths(run)[0].values()]
    # unlevelled, the add vertex mixes frames; levelled, every vertex carries one
    mixed = trace["tag_input_hi"][-1] != trace["tag_input"][-1]
    assert mixed.any() != levelled
    # vertices without weights have no mismatch
    for i, n in enumerate(names[1:], start=1):
        if i not in weighted:
            assert np.all(np.isnan(trace["mismatch_cos"][:, i - 1]))


def test_graph_recorder_names_the_first_nan(monkeypatch):
    from simulator.errors import NumericalError
    from simulator.runner import simulate_scene
    with pytest.raises(NumericalError):
        simulate_scene("residual_levelling", "stream.amplitude=1e6", "rule.learning_rate=1e6",
                       "run.ticks=40")


# ------------------------------------------------------------------ scenes
def graph_scene(layers_toml, shape="[4]", extra=""):
    return ('kind = "diffusion"\n[network]\ninput_shape = ' + shape + "\n" + extra
            + layers_toml + "\n[run]\nticks = 5\n[render]\npng = false\ngif = false\n")


GOOD = ('[[network.layers]]\nname = "a"\nkind = "dense"\nunits = 3\n'
        '[[network.layers]]\nname = "o"\nkind = "dense"\nunits = 2\n')


@pytest.mark.parametrize("text, key", [
    (GOOD.replace("units = 3", "units = 0"), "network.layers[0].units"),
    (GOOD.replace('kind = "dense"\nunits = 3', 'kind = "dens"\nunits = 3'),
     "network.layers[0].kind"),
    (GOOD.replace("units = 2", 'units = 2\nfrom = "b"'), "network.layers[1].from"),
    (GOOD.replace("units = 2", "units = 2\nkernel = 3"), "network.layers[1].kernel"),
    (GOOD.replace("units = 3", "units = 100000000"), "network.layers[0].units"),
    (GOOD + '[[network.layers]]\nname = "c"\nkind = "conv2d"\nchannels = 2\nkernel = 3\n',
     "network.layers[2].from"),
])
def test_bad_layers_are_one_scene_error_naming_the_entry(tmp_path, text, key):
    from simulator.errors import SceneError
    from simulator.scene import load
    path = tmp_path / "g.toml"
    path.write_text(graph_scene(text))
    with pytest.raises(SceneError) as err:
        load(str(path))
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(str(path)) and f"key '{key}'" in msg, msg


def test_graph_keys_are_checked_together(tmp_path):
    from simulator.errors import SceneError
    from simulator.scene import load
    cases = {"network.input_shape": graph_scene(GOOD, shape="[]"),
             "network.sizes": graph_scene(GOOD, extra="sizes = [4, 2]\n")}
    for key, text in cases.items():
        path = tmp_path / "g.toml"
        path.write_text(text)
        with pytest.raises(SceneError, match=key.replace(".", r"\.")):
            load(str(path))
    path = tmp_path / "g.toml"
    path.write_text(graph_scene(GOOD, shape="[2, 2]"))
    with pytest.raises(SceneError, match=r"network\.layers\[0\]"):   # dense takes a flat input
        load(str(path))


def test_a_graph_over_the_budget_is_refused_before_building(tmp_path):
    from simulator.errors import BudgetError
    from simulator.runner import Prepared
    from simulator.scene import load
    path = tmp_path / "g.toml"
    path.write_text(graph_scene(GOOD.replace("units = 3", "units = 60000"), shape="[60000]",
                                extra=""))
    _, scene = load(str(path))
    with pytest.raises(BudgetError, match="weights"):
        Prepared("g", scene)


# ------------------------------------------------------------------ CLI
@pytest.mark.parametrize("name", ["residual_levelling", "conv_digits"])
def test_shipped_graph_scenes_run_write_pictures_and_redraw(runner, name):
    from simulator.command import main as tickprop
    res = runner.invoke(tickprop, ["run", name, "--ticks", "60", "--quiet"],
                        catch_exceptions=False)
    assert res.exit_code == 0, res.output
    folder = f"outputs/{name}"
    model = scene_model(name)
    with np.load(f"{folder}/trace.npz") as d:
        assert list(d["vertex_names"]) == model.names
        assert list(d["vertex_levels"]) == [max(s) for s in paths(model)[0].values()]
        n = len(model)
        assert d["x_norm"].shape[1] == n and d["mismatch_cos"].shape[1] == n - 1
        assert d["state_x"].shape[-1] == max(int(np.prod(v.shape)) for v in model.vertices)
    for picture in ("waves.png", "mismatch.png", "waves.gif"):
        assert os.path.getsize(f"{folder}/{picture}") > 1000
        os.remove(f"{folder}/{picture}")
    res = runner.invoke(tickprop, ["render", folder], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    for picture in ("waves.png", "mismatch.png", "waves.gif"):
        assert os.path.getsize(f"{folder}/{picture}") > 1000


def test_conv_digits_learns_from_image_shaped_frames(runner):
    """The digits' 64 pixels reach the conv net as [1, 8, 8] images and the
    conv weights move with learning on."""
    from simulator.build import build
    from simulator.scene import load
    parts = build(load("conv_digits")[1])
    u, y, _ = parts.stream.take(3)
    assert u.shape == (3, 4, 1, 8, 8) and y.shape == (3, 4, 10)
    eng = parts.engine()
    w0 = eng.parameters()["conv.W"].copy()
    eng.run(parts.stream, 30)
    assert np.abs(eng.parameters()["conv.W"] - w0).max() > 0


def test_sync_on_a_graph_lists_the_sync_set_and_distances(runner, tmp_path):
    from simulator.command import main as tickprop
    res = runner.invoke(tickprop, ["sync", "residual_levelling", "--json"],
                        catch_exceptions=False)
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    model = scene_model("residual_levelling")
    into, out_of = paths(model)
    rows = {r["vertex"]: r for r in report["rows"]}
    assert list(rows) == model.names[1:]
    for name, r in rows.items():
        assert r["forward"] == max(into[name]) and r["backward"] == max(out_of[name])
    # fwd − 1 = bwd on every path: only h3 (paths in: 3; out: 2)
    assert report["summary"]["sync_set"] == ["h3"] == [n for n, r in rows.items()
                                                      if r["synchronized"]]
    assert "r" in report["summary"]["mixed_frames"]
    text = runner.invoke(tickprop, ["sync", "residual_levelling"]).output
    assert "Synchronization set" in text and "h3" in text
    res = runner.invoke(tickprop, ["sync", "residual_levelling", "--depth", "3"])
    assert res.exit_code == 2 and res.output.count("\n") == 1
