"""`tickprop import` (simulator/kinds/import_model.py) and scenes naming a
parameter .npz (network.parameters, simulator/scene/parameters.py).

Oracles: torch's own float64 forward of the user's module (values to 1e-12 on
the model the written scene builds); fact A′ (the run's gradients exact from
tick 2D − 1 on a held frame, D counted here from the layer list); the parameter
arrays numpy wrote by hand. The torch tests skip without torch, the scene-key
tests do not need it.
"""
import os

import numpy as np
import pytest

from simulator import command
from simulator import Model
from simulator.build import build_network
from simulator.errors import SceneError
from simulator.kinds.diffusion import layer_results
from simulator.probes import Trace
from simulator.scene import load, spec_of

SMALL = '''
import torch
from torch import nn


class Small(nn.Module):
    """conv 2 3x3 + BN + tanh -> avg pool 2 -> flatten -> dense 10, on 1x8x8."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2)
        self.pool, self.fc = nn.AvgPool2d(2), nn.Linear(32, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(torch.tanh(self.bn(self.conv(x)))), 1))


def small():
    m = Small()
    with torch.no_grad():
        m.bn.running_mean.normal_(0.0, 0.3)
        m.bn.running_var.uniform_(0.5, 2.0)
        m.bn.weight.normal_(1.0, 0.2)
        m.bn.bias.normal_(0.0, 0.2)
    return m


class Cumsum(nn.Module):
    def forward(self, x):
        return torch.cumsum(x, 1)


NUMBER = 3
'''
DEPTH = 4           # conv, pool, flatten, fc: one path, so levelled or not D = 4


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


@pytest.fixture
def user_file(tmp_path):
    path = tmp_path / "src" / "nets.py"
    path.parent.mkdir()
    path.write_text(SMALL)
    return path


def run(runner, *args):
    return runner.invoke(command.main, [str(a) for a in args])


def torch_net(torch, user_file, seed=0):
    """The user's module built as the command builds it (torch seeded, float64, eval)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("nets_oracle", user_file)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    torch.manual_seed(seed)
    return mod.small().double().eval()


def listing(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


def test_import_writes_a_scene_whose_model_equals_torch(torch, runner, tmp_path, user_file, rng):
    res = run(runner, "import", f"{user_file}:small", "--input-shape", "1,8,8",
              "--out", "out/s.toml")
    assert res.exit_code == 0, res.output
    assert "BatchNorm2d" in res.output and "folded" in res.output
    assert f"{DEPTH + 1} vertices" in res.output and f"2D-1 = {2 * DEPTH - 1}" in res.output
    assert listing(tmp_path / "out") == ["s.npz", "s.toml"]
    name, resolved = load(str(tmp_path / "out" / "s.toml"))
    assert resolved["network"]["parameters"] == str(tmp_path / "out" / "s.npz")
    assert resolved["stream"]["data"] == "digits" and resolved["target"]["kind"] == "labels"
    net = spec_of(resolved).network
    model = build_network(net, seed=0)
    again = build_network(net, seed=12345)              # the seed draws no weights now
    for k, a in model.parameters().items():
        assert np.array_equal(a, again.parameters()[k]) and a.dtype == np.float64
    module = torch_net(torch, user_file)
    u = rng.normal(size=(5, 1, 8, 8))
    want = module(torch.from_numpy(u)).detach().numpy()
    from simulator.model import reference
    got = reference.forward(model, u)[model.names[-1]]
    assert np.max(np.abs(got - want)) <= 1e-12
    # the same scene loads from another working folder (the path is the scene's)
    os.chdir(tmp_path / "src")
    assert load(str(tmp_path / "out" / "s.toml"))[1] == resolved


def test_the_imported_scene_runs_exact_from_tick_2d_minus_1(torch, runner, tmp_path, user_file):
    assert run(runner, "import", f"{user_file}:small", "--input-shape", "1,8,8",
               "--out", "s.toml").exit_code == 0
    ticks = 3 * DEPTH
    res = run(runner, "run", "s.toml", "--ticks", ticks, "--set", f"stream.hold={ticks}",
              "--no-png", "--no-gif", "--quiet", "--out", "r")
    assert res.exit_code == 0, res.output
    trace = Trace.load(str(tmp_path / "r"))
    rows, _ = layer_results(trace)
    assert [r["name"] for r in rows] == ["conv", "fc"]
    assert max(r["exact_from"] for r in rows) == 2 * DEPTH - 1
    os.chdir(tmp_path / "src")                          # run.json names the .npz absolutely
    res = run(runner, "run", tmp_path / "r" / "run.json", "--no-png", "--no-gif", "--quiet",
              "--out", tmp_path / "replay")
    assert res.exit_code == 0, res.output
    replay = Trace.load(str(tmp_path / "replay"))
    assert np.array_equal(replay["mismatch_rel"], trace["mismatch_rel"], equal_nan=True)


def test_a_train_scene_of_the_import_runs_every_rule(torch, runner, tmp_path, user_file):
    assert run(runner, "import", f"{user_file}:small", "--input-shape", "1,8,8",
               "--kind", "train", "--out", "t.toml").exit_code == 0
    resolved = load("t.toml")[1]
    assert resolved["kind"] == "train" and len(resolved["train"]["rules"]) == 12   # dfa too
    res = run(runner, "run", "t.toml", "--ticks", 24, "--set", "train.eval_every=12",
              "--out", "tr")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "tr" / "run.json").is_file()
    for rule in resolved["train"]["rules"]:
        assert f"\n  {rule} " in res.output


def test_import_report_survives_copies(torch, user_file):
    module = torch_net(torch, user_file)
    model = Model.from_torch(module, torch.zeros(2, 1, 8, 8, dtype=torch.float64))
    assert any("BatchNorm2d" in line for line in model.import_report)
    copy = model.with_parameters(model.parameters())
    assert copy.import_report == model.import_report
    assert model.level().import_report == model.import_report
    assert Model.chain([2, 3]).import_report == []


@pytest.mark.parametrize("args, says", [
    (["{dir}/nope.py:small", "--input-shape", "1,8,8"], "no such file"),
    (["{file}:smal", "--input-shape", "1,8,8"], "did you mean 'small'"),
    (["{file}:NUMBER", "--input-shape", "1,8,8"], "is of type int"),
    (["{file}", "--input-shape", "1,8,8"], "expected FILE.py:NAME"),
    (["{file}:small"], "--input-shape: required"),
    (["{file}:small", "--input-shape", "1,x,8"], "--input-shape: expected 1 to 3"),
    (["{file}:small", "--input-shape", "0,8,8"], "--input-shape: expected sizes"),
    (["{file}:small", "--input-shape", "1,2,3,4"], "--input-shape: expected 1 to 3"),
    (["{file}:small", "--input-shape", "1,28,28"], "forward fails on example_input"),
    (["{file}:Cumsum", "--input-shape", "8"], "cannot map FX node"),
    (["{dir}/broken.py:x", "--input-shape", "8"], "cannot load it (line 1): SyntaxError"),
])
def test_each_mistake_is_one_line_exit_2_nothing_written(torch, runner, tmp_path, user_file,
                                                         args, says):
    (user_file.parent / "broken.py").write_text("def (:\n")
    before = listing(tmp_path)
    args = [a.format(dir=user_file.parent, file=user_file) for a in args]
    res = run(runner, "import", *args, "--out", "o/s.toml")
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], lines
    assert res.stdout == ""
    assert listing(tmp_path) == before


def test_out_must_be_a_toml_file(torch, runner, tmp_path, user_file):
    res = run(runner, "import", f"{user_file}:small", "--input-shape", "1,8,8", "--out", "s.txt")
    assert res.exit_code == 2 and "ending in .toml" in res.stderr
    assert not (tmp_path / "s.txt").exists() and not (tmp_path / "s.npz").exists()


@pytest.mark.parametrize("foreign", ["s.toml", "s.npz"])
def test_never_writes_over_a_foreign_file(torch, runner, tmp_path, user_file, foreign):
    args = ["import", f"{user_file}:small", "--input-shape", "1,8,8", "--out", "s.toml"]
    assert run(runner, *args).exit_code == 0            # over its own files: allowed
    assert run(runner, *args).exit_code == 0
    (tmp_path / "s.toml").unlink()
    (tmp_path / "s.npz").unlink()
    if foreign.endswith(".toml"):
        (tmp_path / foreign).write_text('description = "mine"\n')
    else:
        np.savez(tmp_path / foreign, x=np.zeros(2))
    mine = (tmp_path / foreign).read_bytes()
    res = run(runner, *args)
    assert res.exit_code == 2 and len(res.stderr.strip().splitlines()) == 1
    assert "was not written by tickprop import" in res.stderr
    assert (tmp_path / foreign).read_bytes() == mine
    assert listing(tmp_path) == sorted(["src", "src/nets.py", foreign])


def test_a_nir_file_imports_with_its_parameters_bit_equal(runner, tmp_path):
    nir = pytest.importorskip("nir")
    layers = [{"name": "h", "kind": "dense", "units": 5, "activation": "linear"},
              {"name": "out", "kind": "dense", "units": 3, "activation": "linear"}]
    model = Model.from_layers(layers, [4], seed=3)
    nir.write(str(tmp_path / "g.nir"), model.to_nir())
    res = run(runner, "import", "g.nir", "--out", "g.toml")
    assert res.exit_code == 0, res.output
    assert "not measured (NIR)" in res.output
    built = build_network(spec_of(load("g.toml")[1]).network, seed=0)
    for k, a in model.parameters().items():
        assert np.array_equal(built.parameters()[k], a)
    res = run(runner, "import", "g.nir", "--input-shape", "5", "--out", "h.toml")
    assert res.exit_code == 2 and "takes inputs of shape (4,)" in res.stderr
    assert not (tmp_path / "h.toml").exists()


# ---------------------------------------------------------- network.parameters
LAYERS = '''description = "two dense layers on a parameter file"
[network]
input_shape = [4]
parameters = "{npz}"
[[network.layers]]
name = "h"
kind = "dense"
units = 3
activation = "tanh"
[[network.layers]]
name = "out"
kind = "dense"
units = 2
activation = "linear"
[run]
ticks = 10
'''


def write_pair(folder, arrays, npz="p.npz"):
    folder.mkdir(exist_ok=True)
    np.savez(folder / npz, **arrays)
    (folder / "s.toml").write_text(LAYERS.format(npz=npz))
    return str(folder / "s.toml")


def hand_arrays(rng):
    return {"h.W": rng.normal(size=(3, 4)), "h.b": rng.normal(size=3),
            "out.W": rng.normal(size=(2, 3)), "out.b": rng.normal(size=2)}


def test_a_scene_builds_its_model_from_the_parameter_file(tmp_path, rng):
    arrays = hand_arrays(rng)
    scene = write_pair(tmp_path / "scn", {k: a.astype(np.float32) if k == "out.b" else a
                                          for k, a in arrays.items()})
    resolved = load(scene)[1]
    model = build_network(spec_of(resolved).network, seed=7)
    for k, a in arrays.items():
        want = a.astype(np.float32).astype(np.float64) if k == "out.b" else a
        assert np.array_equal(model.parameters()[k], want)
    u = rng.normal(size=(3, 4))
    hand = np.tanh(u @ arrays["h.W"].T + arrays["h.b"]) @ arrays["out.W"].T
    from simulator.model import reference
    got = reference.forward(model, u)["out"]
    assert np.allclose(got, hand + model.parameters()["out.b"], rtol=0, atol=1e-14)


@pytest.mark.parametrize("change, says", [
    (lambda a: a.pop("h.b"), "missing h.b"),
    (lambda a: a.update(extra=np.zeros(1)), "unexpected extra"),
    (lambda a: a.update({"h.W": np.zeros((4, 3))}), "array 'h.W' has shape (4, 3), but layer "
                                                     "'h' needs (3, 4)"),
    (lambda a: a.update({"h.b": np.array([1.0, np.nan, 0.0])}), "NaN or infinity"),
    (lambda a: a.update({"h.b": np.array([1j, 0, 0])}), "expected numbers"),
])
def test_a_parameter_file_that_misfits_the_layers_is_one_scene_error(tmp_path, rng, change,
                                                                     says):
    arrays = hand_arrays(rng)
    change(arrays)
    scene = write_pair(tmp_path, arrays)
    with pytest.raises(SceneError, match="key 'network.parameters'") as err:
        load(scene)
    assert says in str(err.value) and "\n" not in str(err.value)


def test_a_missing_parameter_file_or_a_chain_is_refused(tmp_path, runner):
    scene = tmp_path / "s.toml"
    scene.write_text(LAYERS.format(npz="gone.npz"))
    with pytest.raises(SceneError, match=r"parameter file .*gone\.npz not found"):
        load(str(scene))
    scene.write_text('[network]\nsizes = [2, 2]\nparameters = "p.npz"\n')
    with pytest.raises(SceneError, match="applies only with network.layers"):
        load(str(scene))
    scene.write_text(LAYERS.format(npz="p.txt"))
    with pytest.raises(SceneError, match="ending in .npz"):
        load(str(scene))
    res = run(runner, "run", str(tmp_path / "s.toml"), "--out", "r")
    assert res.exit_code == 2 and len(res.stderr.strip().splitlines()) == 1


def test_without_torch_the_command_is_one_line_naming_the_extra(runner, tmp_path, user_file,
                                                                 monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "torch", None)     # `import torch` fails
    res = run(runner, "import", f"{user_file}:small", "--input-shape", "1,8,8", "--out", "s.toml")
    assert res.exit_code == 2 and res.stderr.count("\n") == 1
    assert "the torch extra is not installed" in res.stderr and "tickprop[torch]" in res.stderr
    assert listing(tmp_path) == ["src", "src/nets.py"]
