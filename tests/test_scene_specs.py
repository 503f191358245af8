"""The typed, frozen specs (simulator/scene/specs.py): a resolved scene read
once into one frozen dataclass per section. Checked against the resolved dict
itself (every key, every shipped scene), against widths written out by hand
from the keys, and against the source of the modules below the builder, which
must read specs, never the raw scene dict."""
import ast
import copy
import dataclasses
import os
import pickle

import pytest

from simulator import scene as scenes
from simulator.scene import specs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def as_lists(value):
    """A spec value with tuples as lists and read-only mappings as dicts."""
    if isinstance(value, tuple):
        return [as_lists(v) for v in value]
    if hasattr(value, "items"):
        return {k: as_lists(v) for k, v in value.items()}
    return value


@pytest.mark.parametrize("name", scenes.list_scenes())
def test_every_key_of_every_shipped_scene_reaches_its_spec(name):
    _, resolved = scenes.load(name)
    spec = scenes.spec_of(resolved)
    assert spec.kind == resolved["kind"] and spec.description == resolved["description"]
    assert set(spec.sections) == set(resolved) - {"kind", "description"}
    for section, keys in resolved.items():
        if section in ("kind", "description"):
            continue
        got = getattr(spec, section)
        assert [f.name for f in dataclasses.fields(got)] == list(keys)
        for key, value in keys.items():
            assert as_lists(getattr(got, key)) == value, (section, key)
            assert type(getattr(got, key)) is not list


def test_specs_are_frozen_all_the_way_down():
    _, resolved = scenes.load("residual_levelling")
    spec = scenes.spec_of(resolved)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.run.ticks = 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.kind = "train"
    with pytest.raises(TypeError):
        spec.network.layers[0]["kind"] = "dense"
    assert isinstance(spec.network.input_shape, tuple)
    with pytest.raises(AttributeError, match="no section 'rules'"):
        spec.rules


def test_a_spec_pickles_and_copies_to_an_equal_frozen_spec():
    for name in ("conv_digits", "train_digits", "zil_table"):
        spec = scenes.spec_of(scenes.load(name)[1])
        again = pickle.loads(pickle.dumps(spec))
        assert again == spec and copy.deepcopy(spec) == spec
        with pytest.raises(TypeError, match="frozen"):
            again.sections["extra"] = None


def test_every_section_of_every_kind_has_a_named_spec_class():
    for kind, sections in scenes.SCHEMAS.items():
        for section in sections:
            cls = specs.section_class(kind, section)
            assert getattr(specs, cls.__name__) is cls and cls.__name__.endswith("Spec")


def test_a_section_shared_by_kinds_has_one_class():
    _, diffusion = scenes.load("fig3_fast")
    _, train = scenes.load("train_digits")
    d, t = scenes.spec_of(diffusion), scenes.spec_of(train)
    assert type(d.network) is type(t.network) is specs.NetworkSpec
    assert type(d.stream) is type(t.stream) is specs.StreamSpec
    assert type(d.rule) is specs.RuleSpec and type(t.train) is specs.TrainSpec
    assert dataclasses.fields(specs.RunSpec)[0].type is int          # ticks


def test_chain_widths_and_activations_follow_the_keys():
    raw = {"network": {"depth": 4, "width": 7, "inputs": 3, "outputs": 2, "hidden": "relu"}}
    net = scenes.spec_of(scenes.validate(raw, "t")).network
    assert not net.graph and net.skeleton is None
    assert net.shape == ([3, 7, 7, 7, 2], ["relu", "relu", "relu", "linear"])
    raw["network"] = {"sizes": [5, 4, 1]}
    assert scenes.spec_of(scenes.validate(raw, "t")).network.shape[0] == [5, 4, 1]


def test_a_graph_network_spec_has_its_skeleton():
    _, resolved = scenes.load("conv_digits")
    net = scenes.spec_of(resolved).network
    assert net.graph and net.skeleton.input_shape == tuple(resolved["network"]["input_shape"])
    assert net.layer_dicts() == resolved["network"]["layers"]


# The sections of every kind: a module below the builder that subscripts one of
# these names reads the raw scene.
SECTIONS = sorted({s for kind in scenes.SCHEMAS.values() for s in kind})
BELOW_THE_BUILDER = ("build.py", "streams.py", "experiments/training.py", "datasets.py", "runner.py",
                     "kinds/train.py", "kinds/ar_converge.py", "kinds/ar_train.py",
                     "kinds/locking.py", "kinds/pc_table.py", "kinds/pc_wave.py")


@pytest.mark.parametrize("module", BELOW_THE_BUILDER)
def test_the_builder_and_below_read_specs_not_the_raw_scene(module):
    with open(os.path.join(ROOT, "simulator", module)) as f:
        tree = ast.parse(f.read())
    raw = [node.lineno for node in ast.walk(tree)
           if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant)
           and node.slice.value in SECTIONS]
    assert raw == [], f"{module} subscripts a scene section at lines {raw}"
