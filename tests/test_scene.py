"""The scene schema (simulator/scene/): every user mistake in a scene file,
a run.json or a --set override is ONE SceneError naming the file, the key, what
was expected and what was given -- never another exception. Expected messages
come from the mistake itself (the key the user wrote, the digit count of the
integer given), not from the code under test."""
import ast
import json
import math
import os

import numpy as np
import pytest

from simulator import scene as scenes
from simulator.scene import fields
from simulator.experiments import training
from simulator.errors import SceneError, SimulatorError
from test_imports import imports

BASE = "[network]\ndepth = 3\nwidth = 4\ninputs = 4\noutputs = 4\n[run]\nticks = 10\n"
AR = 'kind = "ar_converge"\n[network]\nsizes = [4, 6, 3]\n'


def assert_refused(text, tmp_path, *needles, name="bad.toml"):
    """Write ``text`` (str or bytes) as a scene file, load it, and return the
    one-line SceneError message after checking it names the file and ``needles``."""
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(SceneError) as err:
        scenes.load(str(path))
    return one_line(err, str(path), *needles)


def one_line(err, *needles):
    message = str(err.value)
    assert "\n" not in message and len(message) < 800, message
    for needle in needles:
        assert needle in message, (needle, message)
    return message


def assert_refused_raw(raw, *needles):
    """validate() on a Python dict (values TOML cannot hold, e.g. huge ints)."""
    with pytest.raises(SceneError) as err:
        scenes.validate(raw, "src.toml")
    return one_line(err, "src.toml", *needles)


# ------------------------------------------------------------------ kind and layout
@pytest.mark.parametrize("text,needles", [
    ('kind = ["diffusion"]\n' + BASE, ["key 'kind'", "expected a string", "(a list)"]),
    ('kind = {name = "diffusion"}\n' + BASE, ["key 'kind'", "(a table)"]),
    ('kind = 3\n' + BASE, ["key 'kind'", "(an integer)"]),
    ('kind = "difusion"\n' + BASE, ["key 'kind'", "did you mean 'diffusion'"]),
    ('kind = "swep"\n', ["did you mean 'sweep'"]),
    ("ticks = 5\n" + BASE, ["unknown top-level key 'ticks'", "[run]"]),
    ("network = 5\n[run]\nticks = 3\n", ["'network' must be a section", "got 5"]),
    ("[[network]]\ndepth = 3\n", ["'network' must be a section", "(a list)"]),
    (BASE + "[rules]\nloss = 'mse'\n", ["unknown section 'rules'", "did you mean 'rule'"]),
    (BASE + "[train]\nrules = ['diffusion']\n", ["unknown section 'train'", "'train'"]),
    (BASE + "[rule]\nfeedbak = 'random'\n", ["rule.feedbak", "did you mean 'feedback'"]),
    (BASE + "[rule]\nticks = 3\n", ["rule.ticks", "[rule] accepts"]),
    (BASE + "[network.deep]\nx = 1\n", ["network.deep"]),
    ('description = 5\n' + BASE, ["key 'description'", "expected a string"]),
])
def test_kind_and_layout_mistakes_are_one_error(tmp_path, text, needles):
    assert_refused(text, tmp_path, *needles)


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", 'description = "nothing"\n'])
def test_an_empty_scene_is_refused(tmp_path, text):
    assert_refused(text, tmp_path, "empty")


def test_a_kind_alone_runs_with_that_kinds_defaults(tmp_path):
    path = tmp_path / "lock.toml"
    path.write_text('kind = "locking"\n')
    name, sc = scenes.load(str(path))
    assert name == "lock" and sc["locking"]["depth"] == 9


# ------------------------------------------------------------------ list fields
@pytest.mark.parametrize("text,key", [
    (BASE.replace("depth = 3", "sizes = [4, 'a', 4]"), "network.sizes[1]"),
    (BASE.replace("depth = 3", "sizes = [4, 0, 4]"), "network.sizes[1]"),
    (BASE + "[record]\nlayers = [0, -1]\n", "record.layers[1]"),
    (BASE + "[record]\nlayers = [0, 1.5]\n", "record.layers[1]"),
    (BASE + "[render]\nwindows = [[0, 10], [5]]\n", "render.windows[1]"),
    (BASE + "[render]\nwindows = [[0, 10], [8, 3]]\n", "render.windows[1]"),
    (BASE + "[render]\nwindows = [[0, 10], ['a', 3]]\n", "render.windows[1]"),
    (BASE + "[render]\nwindows = [3]\n", "render.windows[0]"),
    (BASE + "[render]\nsize = [720, 'x']\n", "render.size[1]"),
    (BASE + "[render]\nsize = [100, 400]\n", "render.size[0]"),
    (AR + "[relaxation]\neta_x = [0.1, 'x']\n", "relaxation.eta_x[1]"),
    (AR + "[relaxation]\neta_x = [0.1, 2.5]\n", "relaxation.eta_x[1]"),
    (AR + "[relaxation]\neta_x = [true]\n", "relaxation.eta_x[0]"),
    ('kind = "ar_train"\n[relaxation]\nvariants = ["exact", 7]\n', "relaxation.variants[1]"),
    ('kind = "ar_train"\n[train]\nseeds = [0, -1]\n', "train.seeds[1]"),
    ('kind = "train"\n[train]\nrules = ["diffusion", 3]\n', "train.rules[1]"),
    ('kind = "pc_table"\n[table]\ndtypes = ["float64", 16]\n', "table.dtypes[1]"),
    ('kind = "sweep"\n[sweep]\nseeds = [0, "a"]\n', "sweep.seeds[1]"),
    ('kind = "sweep"\n[sweep.grid]\n"stream.hold" = [1, {a = 1}]\n', '"stream.hold"[1]'),
    ('kind = "sweep"\n[sweep.set]\n"run.ticks" = nan\n', '"run.ticks"'),
])
def test_a_bad_entry_in_any_list_names_its_index(tmp_path, text, key):
    assert_refused(text, tmp_path, f"{key}'", "expected")


@pytest.mark.parametrize("text,needle", [
    ('kind = "ar_train"\n[relaxation]\nvariants = ["exact", "exakt"]\n', "did you mean 'exact'"),
    ('kind = "train"\n[train]\nrules = ["diffusion", "backprob"]\n', "did you mean 'backprop'"),
    ('kind = "pc_table"\n[table]\ndtypes = ["float46"]\n', "did you mean 'float64'"),
])
def test_a_misspelt_list_entry_gets_a_did_you_mean(tmp_path, text, needle):
    assert_refused(text, tmp_path, needle, "[")


@pytest.mark.parametrize("text,key", [
    (AR + "[relaxation]\neta_x = []\n", "relaxation.eta_x"),
    ('kind = "ar_train"\n[relaxation]\nvariants = []\n', "relaxation.variants"),
    ('kind = "ar_train"\n[train]\nseeds = []\n', "train.seeds"),
    ('kind = "train"\n[train]\nrules = []\n', "train.rules"),
    ('kind = "pc_table"\n[table]\ndtypes = []\n', "table.dtypes"),
    ('kind = "sweep"\n[sweep]\nseeds = []\n', "sweep.seeds"),
    ('kind = "sweep"\n[sweep.grid]\n"stream.hold" = []\n', "sweep.grid"),
    (BASE.replace("depth = 3", "sizes = [4]"), "network.sizes"),
    ('kind = "ar_converge"\n[network]\nsizes = [4, 3]\n', "network.sizes"),
    ('kind = "train"\n[train]\nrules = ["random", "random"]\n', "train.rules"),
])
def test_empty_or_repeated_lists_where_entries_are_needed(tmp_path, text, key):
    assert_refused(text, tmp_path, f"key '{key}'", "expected")


def test_list_fields_keep_every_good_entry_typed():
    sc = scenes.apply_overrides(scenes.load("ar_converge")[1], ["relaxation.eta_x=[1, 0.5]"], "t")
    assert sc["relaxation"]["eta_x"] == [1.0, 0.5]
    assert all(type(v) is float for v in sc["relaxation"]["eta_x"])
    sc = scenes.apply_overrides(scenes.load("train_digits")[1], ['train.rules="random"'], "t")
    assert sc["train"]["rules"] == ["random"]


# ------------------------------------------------------------------ numbers
HUGE = 10**5000          # 5001 digits: more than Python turns into text


@pytest.mark.parametrize("section,key", [("run", "ticks"), ("run", "seed"), ("network", "depth"),
                                         ("network", "scale"), ("rule", "learning_rate"),
                                         ("record", "memory_budget"), ("stream", "tau")])
def test_huge_integers_are_named_by_their_digit_count(section, key):
    assert_refused_raw({"kind": "diffusion", section: {key: HUGE}}, f"{section}.{key}",
               "an integer with 5001 digits")
    assert_refused_raw({"kind": "diffusion", section: {key: -HUGE}}, f"{section}.{key}", "5001 digits")


def test_huge_integers_inside_lists_and_kind():
    assert_refused_raw({"kind": "diffusion", "network": {"sizes": [4, HUGE, 4]}},
               "network.sizes[1]", "5001 digits")
    assert_refused_raw({"kind": "ar_converge", "relaxation": {"eta_x": [HUGE]}},
               "relaxation.eta_x[0]", "finite number", "5001 digits")
    assert_refused_raw({"kind": HUGE}, "key 'kind'", "5001 digits")
    assert_refused_raw({"kind": "sweep", "sweep": {"grid": {"run.ticks": [1, HUGE]}}}, "5001 digits")


def test_a_huge_integer_in_a_toml_file_names_its_line(tmp_path):
    assert_refused(BASE + "[stream]\nhold = " + "7" * 5000 + "\n", tmp_path,
           "not valid TOML", "line 9", "5000 digits")


@pytest.mark.parametrize("literal", ["nan", "+nan", "-nan", "inf", "+inf", "-inf", "1e400"])
@pytest.mark.parametrize("section,key", [("target", "scale"), ("rule", "learning_rate"),
                                         ("stream", "tau"), ("stream", "amplitude"),
                                         ("rule", "itd_epsilon")])
def test_nan_and_inf_literals_are_refused(tmp_path, literal, section, key):
    assert_refused(BASE + f"[{section}]\n{key} = {literal}\n", tmp_path, f"{section}.{key}",
           "expected a finite number")


@pytest.mark.parametrize("text,key", [
    (AR + "[relaxation]\neta_x = [0.1, nan]\n", "relaxation.eta_x[1]"),
    ('kind = "ar_train"\n[relaxation]\neta_x = inf\n', "relaxation.eta_x"),
    ('kind = "sweep"\n[sweep]\nthreshold = nan\n', "sweep.threshold"),
    ('kind = "pc_wave"\n[wave]\ngamma = inf\n', "wave.gamma"),
    ("[network]\ndepth = 3\n[run]\nticks = nan\n", "run.ticks"),
])
def test_nan_and_inf_in_every_kind_and_list(tmp_path, text, key):
    assert_refused(text, tmp_path, f"{key}'")


@pytest.mark.parametrize("value", ['"infGiB"', '"nanMiB"', '"-1GiB"', '"1XB"', '""', '"GiB"',
                                   '"1e400"', '"1 GiBs"', "0", "-5", "true", "1.5", "[1]",
                                   '"2000TiB"'])
def test_bad_memory_budgets(tmp_path, value):
    assert_refused(BASE + f"[record]\nmemory_budget = {value}\n", tmp_path, "record.memory_budget",
           "expected a size")


@pytest.mark.parametrize("value,n", [("512MiB", 512 * 2**20), ("1.5GB", 1_500_000_000),
                                     ("2e9", 2_000_000_000), (" 1 gib ", 2**30), (4096, 4096),
                                     ("1KiB", 1024)])
def test_good_memory_budgets_keep_their_spelling(value, n):
    sc = scenes.validate({"kind": "diffusion", "record": {"memory_budget": value}}, "t")
    assert sc["record"]["memory_budget"] == value
    assert fields.size_bytes(value) == n


@pytest.mark.parametrize("raw,key", [
    ({"network": {"sizes": [4, 10**6, 4]}}, "network.sizes[1]"),
    ({"network": {"sizes": [4] * 10_000}}, "network.sizes"),
    ({"network": {"width": 10**9}}, "network.width"),
    ({"network": {"depth": 100_000}}, "network.depth"),
    ({"stream": {"batch": 10**9}}, "stream.batch"),
    ({"stream": {"hold": 10**12}}, "stream.hold"),
    ({"rule": {"supervision_delay": 10**9}}, "rule.supervision_delay"),
    ({"rule": {"accumulate": 10**12}}, "rule.accumulate"),
    ({"run": {"ticks": 10**12}}, "run.ticks"),
    ({"run": {"seed": 2**64}}, "run.seed"),
    ({"record": {"chunk": 10**9}}, "record.chunk"),
    ({"record": {"layers": list(range(2000))}}, "record.layers"),
    ({"render": {"windows": [[0, 1]] * 100}}, "render.windows"),
    ({"render": {"size": [10**5, 400]}}, "render.size[0]"),
    ({"network": {"scale": 1e300}}, "network.scale"),
    ({"network": {"depth": 0}}, "network.depth"),
    ({"run": {"ticks": 0}}, "run.ticks"),
    ({"stream": {"hold": -1}}, "stream.hold"),
    ({"network": {"scale": -0.5}}, "network.scale"),
])
def test_out_of_range_values_are_refused_below_and_above(raw, key):
    assert_refused_raw(dict(kind="diffusion", **raw), key)


@pytest.mark.parametrize("kind,section,key,value", [
    ("ar_converge", "relaxation", "iterations", 0),
    ("ar_converge", "relaxation", "batch", 10**7),
    ("ar_train", "train", "epochs", 10**9),
    ("train", "train", "eval_every", 0),
    ("pc_table", "table", "repeats", 10**6),
    ("pc_wave", "wave", "il_steps", 10**9),
    ("locking", "locking", "frames", 10**6),
    ("sweep", "sweep", "steady_from", 1.0),
])
def test_other_kinds_have_ranges_too(kind, section, key, value):
    assert_refused_raw({"kind": kind, section: {key: value}}, f"{section}.{key}")


def test_a_sweep_grid_has_a_bounded_number_of_points():
    grid = {f"network.k{i}": list(range(10)) for i in range(6)}
    assert_refused_raw({"kind": "sweep", "sweep": {"grid": grid}}, "sweep.grid", "grid cells")


def _fields(field):
    """A field and the fields of its entries."""
    yield field
    for inner in [getattr(field, "entry", None)] + list(getattr(field, "entries", [])):
        if inner is not None:
            yield from _fields(inner)


def test_every_number_field_declares_a_finite_lower_and_upper_bound():
    """A value above any bound would otherwise blow up memory or time."""
    seen = 0
    for kind, sections in scenes.SCHEMAS.items():
        for section, keys in sections.items():
            for key, top in keys.items():
                for field in _fields(top):
                    if isinstance(field, (fields.Int, fields.Float, fields.Size)):
                        assert math.isfinite(field.low) and math.isfinite(field.high), key
                        assert field.high < 10**16, (kind, section, key)
                        seen += 1
                    if isinstance(field, fields.ListOf):
                        assert field.max_len <= 1024, (kind, section, key)
    assert seen > 60


def test_every_default_passes_its_own_check():
    for kind, sections in scenes.SCHEMAS.items():
        for section, fields in sections.items():
            for key, field in fields.items():
                assert field.check(field.default, "d") == field.default, (kind, section, key)


@pytest.mark.parametrize("value,typename", [("3", "(a string)"), (3.0, "(a number)"),
                                            (True, "(a boolean)"), ([3], "(a list)"),
                                            ({"a": 3}, "(a table)")])
def test_an_integer_field_names_the_type_it_got(value, typename):
    assert_refused_raw({"kind": "diffusion", "run": {"ticks": value}}, "run.ticks",
               "expected an integer", typename)


# ------------------------------------------------------------------ files
def test_deeply_nested_toml_is_not_valid_toml(tmp_path):
    assert_refused(BASE + "[record]\nlayers = " + "[" * 3000 + "]" * 3000 + "\n", tmp_path,
           "not valid TOML")
    assert_refused("x = " + "{a = " * 3000 + "1" + "}" * 3000 + "\n", tmp_path, "not valid TOML")


def test_binary_files_and_folders_are_not_scenes(tmp_path):
    assert_refused(bytes(range(256)) * 4, tmp_path, "not a text file")
    assert_refused(b"\x89PNG\r\n\x1a\n\x00\x00", tmp_path, "not a text file", name="pic.toml")
    run_dir = tmp_path / "outputs" / "fig"
    run_dir.mkdir(parents=True)
    with pytest.raises(SceneError) as err:
        scenes.load(str(tmp_path / "outputs"))
    one_line(err, "is a folder")
    (run_dir / "run.json").write_text("{}")
    with pytest.raises(SceneError) as err:
        scenes.load(str(run_dir))
    one_line(err, "is a folder", "did you mean", "run.json")


def test_an_unreadable_or_huge_file_is_refused(tmp_path):
    path = tmp_path / "big.toml"
    with open(path, "wb") as f:
        f.truncate(scenes.MAX_FILE_BYTES + 10)
    with pytest.raises(SceneError) as err:
        scenes.load(str(path))
    one_line(err, str(path), "MiB")
    if os.geteuid() != 0:
        path = tmp_path / "secret.toml"
        path.write_text(BASE)
        path.chmod(0)
        with pytest.raises(SceneError) as err:
            scenes.load(str(path))
        one_line(err, "cannot read")


def test_scene_names_and_paths_not_found_get_a_did_you_mean(tmp_path):
    with pytest.raises(SceneError) as err:
        scenes.load("fig1_constnt")
    one_line(err, "'fig1_constnt'", "did you mean 'fig1_constant'")
    (tmp_path / "mine.toml").write_text(BASE)
    with pytest.raises(SceneError) as err:
        scenes.load(str(tmp_path / "mien.toml"))
    one_line(err, "not found", f"did you mean '{tmp_path / 'mine.toml'}'")
    with pytest.raises(SceneError) as err:
        scenes.load(str(tmp_path / "nowhere" / "x.toml"))
    one_line(err, "not found")
    with pytest.raises(SceneError):
        scenes.load("")


# ------------------------------------------------------------------ keys nothing reads
GRAPH_NET = {"input_shape": [4], "layers": [{"name": "h", "kind": "dense", "units": 3},
                                            {"name": "o", "kind": "dense", "units": 2}]}


@pytest.mark.parametrize("key,value,instead", [
    ("depth", 5, "one [[network.layers]] entry per layer"),
    ("width", 32, "units (dense, linear) or channels (conv2d)"),
    ("inputs", 8, "network.input_shape"),
    ("outputs", 3, "the last layer's units"),
    ("sizes", [4, 2], "network.input_shape and each layer's units"),
    ("hidden", "relu", "each layer's activation"),
    ("scale", 0.5, "each layer's scale"),
    ("bias_scale", 0.1, "each layer's bias_scale"),
])
@pytest.mark.parametrize("kind", ["diffusion", "train"])
def test_a_chain_key_on_a_graph_is_refused_naming_what_the_graph_takes(kind, key, value, instead):
    """These keys were parsed and silently ignored on a graph (network.layers)."""
    net = dict(GRAPH_NET, **{key: value})
    assert_refused_raw({"kind": kind, "network": net}, f"key 'network.{key}'",
                       "applies to chain networks only", instead)


def test_a_chain_key_on_a_graph_is_refused_in_a_file_and_by_set(tmp_path):
    layers = '[[network.layers]]\nname = "o"\nkind = "dense"\nunits = 2\n'
    text = 'kind = "diffusion"\n[network]\ninput_shape = [4]\ndepth = 3\n' + layers
    assert_refused(text, tmp_path, "key 'network.depth'", "chain networks only")
    (tmp_path / "g.toml").write_text(text.replace("depth = 3\n", ""))
    name, sc = scenes.load(str(tmp_path / "g.toml"))
    with pytest.raises(SceneError) as err:
        scenes.apply_overrides(sc, ["network.width=8"], "g.toml")
    one_line(err, "g.toml", "key 'network.width'", "chain networks only")


def test_graph_keys_on_a_chain_are_refused():
    assert_refused_raw({"kind": "diffusion", "network": {"levelled": True}},
                       "key 'network.levelled'", "network.layers")
    assert_refused_raw({"kind": "train", "network": {"input_shape": [4]}},
                       "key 'network.input_shape'", "network.layers")


def test_a_graph_output_with_label_targets_is_refused():
    raw = {"kind": "diffusion", "network": dict(GRAPH_NET, input_shape=[64], output="tanh"),
           "stream": {"kind": "dataset"}, "target": {"kind": "labels"}}
    assert_refused_raw(raw, "key 'network.output'", "teacher", "last layer's activation")
    raw["target"], raw["stream"] = {"kind": "teacher"}, {"kind": "held"}
    assert scenes.validate(raw, "t")["network"]["output"] == "tanh"   # the teacher's σ


@pytest.mark.parametrize("kind,raw,key,selector", [
    ("diffusion", {"stream": {"kind": "held", "tau": 4.0}}, "stream.tau", "stream.kind"),
    ("diffusion", {"stream": {"kind": "smooth", "period": 8.0}}, "stream.period", "stream.kind"),
    ("diffusion", {"stream": {"kind": "sine", "hold": 4}}, "stream.hold", "stream.kind"),
    ("diffusion", {"stream": {"kind": "constant", "crossfade": 2}}, "stream.crossfade",
     "stream.kind"),
    ("diffusion", {"stream": {"kind": "held", "data": "mnist"}}, "stream.data", "stream.kind"),
    ("diffusion", {"stream": {"kind": "dataset", "amplitude": 2.0}, "target": {"kind": "labels"}},
     "stream.amplitude", "stream.kind"),
    ("diffusion", {"stream": {"kind": "held", "speed": 2.0}}, "stream.speed", "stream.kind"),
    ("train", {"stream": {"kind": "smooth", "canvas": [20, 20]}}, "stream.canvas", "stream.kind"),
    ("diffusion", {"stream": {"kind": "held", "stagger": True}}, "stream.stagger", "stream.kind"),
    ("diffusion", {"stream": {"kind": "dataset"}, "target": {"kind": "labels", "scale": 2.0}},
     "target.scale", "target.kind"),
    ("diffusion", {"rule": {"feedback": "transpose", "feedback_scale": 0.5}},
     "rule.feedback_scale", "rule.feedback"),
    ("diffusion", {"rule": {"derivative": "itd-y", "itd_epsilon": 1e-3}}, "rule.itd_epsilon",
     "rule.derivative"),
    ("train", {"train": {"rules": ["diffusion", "backprop"], "ar_iterations": 5}},
     "train.ar_iterations", "train.rules"),
    ("train", {"train": {"rules": ["zil"], "ar_eta_x": 0.5}}, "train.ar_eta_x", "train.rules"),
    ("train", {"train": {"rules": ["itd-y"], "itd_epsilon": 1e-3}}, "train.itd_epsilon",
     "train.rules"),
    ("train", {"train": {"rules": ["diffusion", "backprop"], "feedback_scale": 2.0}},
     "train.feedback_scale", "train.rules"),
    ("ar_converge", {"relaxation": {"variant": "exact", "feedback_scale": 0.5}},
     "relaxation.feedback_scale", "relaxation.variant"),
    ("ar_train", {"relaxation": {"variants": ["exact", "no-derivative"], "feedback_scale": 0.5}},
     "relaxation.feedback_scale", "relaxation.variants"),
    ("pc_wave", {"wave": {"method": "zil", "il_steps": 5}}, "wave.il_steps", "wave.method"),
    ("pc_wave", {"wave": {"gamma": 0.5}}, "wave.gamma", "wave.method"),
])
def test_a_key_the_variant_does_not_read_is_refused(kind, raw, key, selector):
    """No option is parsed and ignored: each of these keys was accepted and
    then never read by the variant the scene chose."""
    assert_refused_raw(dict(raw, kind=kind), f"key '{key}'", f"only read when {selector}",
                       "expected it left out")


@pytest.mark.parametrize("kind,raw", [
    ("diffusion", {"stream": {"kind": "smooth", "tau": 4.0}}),
    ("diffusion", {"stream": {"kind": "moving", "speed": 2.0, "hold": 4}, "network": {
        "inputs": 256, "outputs": 10}, "target": {"kind": "labels"}}),
    ("diffusion", {"rule": {"feedback": "learned", "feedback_scale": 0.5}}),
    ("diffusion", {"rule": {"feedback": "brsf", "feedback_scale": 0.5}}),
    ("train", {"train": {"rules": ["sign", "backprop"], "feedback_scale": 2.0}}),
    ("train", {"train": {"rules": ["ar", "backprop"], "ar_iterations": 5}}),
    ("ar_train", {"relaxation": {"variants": ["exact", "learned"], "feedback_scale": 0.5}}),
    ("pc_wave", {"wave": {"method": "il", "il_steps": 5, "gamma": 0.5}}),
])
def test_a_key_its_variant_reads_is_accepted(kind, raw):
    resolved = scenes.validate(dict(raw, kind=kind), "t")
    for section, values in raw.items():
        for key, value in values.items():
            assert resolved[section][key] == value, (section, key)


# ------------------------------------------------------------------ run.json replays
GOOD_META = {"name": "fig", "scene": {"kind": "locking", "locking": {"depth": 3}}}


@pytest.mark.parametrize("text,needles", [
    ("", ["not a tickprop run.json"]),
    ("{not json", ["not a tickprop run.json"]),
    ("[1, 2]", ["not a tickprop run.json"]),
    ('{"name": "x"}', ["'scene'"]),
    ('{"scene": {"kind": "locking"}}', ["'name'"]),
    ('{"name": "../escaped", "scene": {"kind": "locking"}}', ["key 'name'", "../escaped"]),
    ('{"name": "/abs", "scene": {"kind": "locking"}}', ["key 'name'"]),
    ('{"name": "..", "scene": {"kind": "locking"}}', ["key 'name'"]),
    ('{"name": 5, "scene": {"kind": "locking"}}', ["key 'name'", "(an integer)"]),
    ('{"name": "x", "scene": "locking"}', ["key 'scene'", "(a string)"]),
    ('{"name": "x", "scene": {}}', ["empty"]),
    ('{"name": "x", "scene": {"kind": "locking", "locking": {"depth": NaN}}}', ["locking.depth"]),
    ('{"name": "x", "scene": {"kind": "diffusion", "network": {"scale": Infinity}}}',
     ["network.scale", "finite"]),
    ('{"name": "x", "scene": {"kind": "locking", "locking": {"depth": ' + "9" * 5000 + "}}}",
     ["not a tickprop run.json"]),
    ('{"name": "x", "scene": ' + "[" * 100_000 + "]" * 100_000 + "}", ["not a tickprop run.json"]),
    ('{"name": "x", "scene": {"kind": "diffusion", "network": {"sizes": [4, ' + "[" * 500
     + "]" * 500 + "]}}}", ["network.sizes[1]", "]]] (a list)"]),
])
def test_damaged_run_json_is_one_error(tmp_path, text, needles):
    assert_refused(text, tmp_path, *needles, name="run.json")


def test_a_good_run_json_replays(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps(GOOD_META))
    name, sc = scenes.load(str(path))
    assert name == "fig" and sc["locking"]["depth"] == 3 and sc["locking"]["frames"] == 6


@pytest.mark.parametrize("stem,folder", [("my scene", "my_scene"), ("szené", "szené"),
                                         ("mon szené 2", "mon_szené_2")])
def test_a_run_json_of_a_scene_file_with_spaces_or_non_ascii_replays(tmp_path, monkeypatch,
                                                                      stem, folder):
    """`tickprop run "my scene.toml"` writes run.json with name "my scene"; the
    replay of that run.json was refused ("expected a plain scene name")."""
    from click.testing import CliRunner
    from simulator.command import main as tickprop
    monkeypatch.chdir(tmp_path)
    (tmp_path / f"{stem}.toml").write_text('kind = "diffusion"\n' + BASE, encoding="utf-8")
    quick = ["--no-gif", "--no-png", "--quiet"]
    first = CliRunner().invoke(tickprop, ["run", f"{stem}.toml", *quick])
    assert first.exit_code == 0, first.output
    assert json.load(open(f"outputs/{folder}/run.json", encoding="utf-8"))["name"] == stem
    again = CliRunner().invoke(tickprop, ["run", f"outputs/{folder}/run.json", *quick])
    assert again.exit_code == 0, again.output
    with np.load(f"outputs/{folder}/trace.npz") as a, \
            np.load(f"outputs/{folder}_replay/trace.npz") as b:
        assert set(a.files) == set(b.files)
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.parametrize("name", ["a/b", "a\\b", "...", "", "tab\there", "x" * 201, ["x"]])
def test_a_run_json_name_no_scene_file_can_have_is_refused(tmp_path, name):
    assert_refused(json.dumps(dict(GOOD_META, name=name)), tmp_path, "key 'name'",
                   name="run.json")


@pytest.mark.parametrize("name", scenes.list_scenes())
def test_every_shipped_scene_resolves_to_a_fixed_point(name):
    """A resolved scene validates to itself: run.json replays exactly what ran."""
    _, sc = scenes.load(name)
    again = scenes.validate(json.loads(json.dumps(sc)), "replay")
    assert again == sc


# ------------------------------------------------------------------ --set overrides
@pytest.mark.parametrize("item,needles", [
    ("nonsense", ["SECTION.KEY=VALUE"]),
    ("run.ticks", ["SECTION.KEY=VALUE"]),
    ("a.b.c=1", ["SECTION.KEY=VALUE"]),
    (".ticks=1", ["SECTION.KEY=VALUE"]),
    ("run.=1", ["SECTION.KEY=VALUE"]),
    ("=1", ["SECTION.KEY=VALUE"]),
    ("rulez.loss=mse", ["unknown section 'rulez'", "did you mean 'rule'"]),
    ("rule.feedbak=random", ["unknown key 'rule.feedbak'", "did you mean 'feedback'"]),
    ("locking.depth=3", ["unknown section 'locking'"]),
    ("run.ticks=[1, 2]", ["run.ticks", "(a list)"]),
    ("run.ticks={a = 1}", ["run.ticks", "(a table)"]),
    ("run.ticks=1e400", ["run.ticks", "(a number)"]),
    ("run.ticks=" + "9" * 5000, ["--set", "digits"]),
    ("run.ticks=10000000000000000000000", ["run.ticks"]),
    ("run.ticks=12abc", ["run.ticks", "'12abc'"]),
    ("network.scale=nan", ["network.scale", "finite"]),
    ("network.scale=-inf", ["network.scale", "finite"]),
    ("record.layers=[0, 'x']", ["record.layers[1]"]),
    ("record.layers=" + "[" * 3000 + "]" * 3000, ["--set", "nested"]),
    ("run.ticks=1\nrun = 2", ["--set", "one value"]),
    ("rule.loss=", ["rule.loss", "''"]),
])
def test_bad_set_overrides_are_one_error(item, needles):
    _, sc = scenes.load("fig1_constant")
    with pytest.raises(SceneError) as err:
        scenes.apply_overrides(sc, [item], "fig1_constant")
    one_line(err, *needles)


def test_set_values_are_toml_else_strings():
    _, sc = scenes.load("fig1_constant")
    sc = scenes.apply_overrides(sc, ["run.ticks=7", "rule.learning_rate=1e-3",
                                     "record.layers=[0, 2]", "rule.feedback=random",
                                     'rule.loss="xent"', "record.states=false"], "t")
    assert sc["run"]["ticks"] == 7 and sc["rule"]["learning_rate"] == 0.001
    assert sc["record"]["layers"] == [0, 2] and sc["rule"]["feedback"] == "random"
    assert sc["rule"]["loss"] == "xent" and sc["record"]["states"] is False


def test_set_tables_reach_table_fields():
    _, sc = scenes.load("sweep_speed_depth")
    sc = scenes.apply_overrides(sc, ['sweep.grid={"stream.hold" = [1, 2]}'], "t")
    assert sc["sweep"]["grid"] == {"stream.hold": [1, 2]}


def test_typed_cli_values_for_a_kind_without_that_key_are_refused_by_name():
    _, sc = scenes.load("locking")
    with pytest.raises(SceneError) as err:
        scenes.apply_overrides(sc, [], "locking", {"run.ticks": 5})
    one_line(err, "run.ticks", "locking")
    _, sc = scenes.load("zil_table")
    with pytest.raises(SceneError) as err:
        scenes.apply_overrides(sc, [], "zil_table", {"run.dtype": "float32"})
    one_line(err, "run.dtype")


# ------------------------------------------------------------------ the house
def test_scene_errors_are_simulator_errors():
    assert issubclass(SceneError, SimulatorError)


def test_train_rules_are_the_ones_training_runs():
    assert set(scenes.TRAIN_RULES) == set(training.RULES)


def test_scene_module_imports_no_scene_kind_module():
    """The scene package is the bottom of the upper floors: nothing it imports, directly
    or through the modules it imports (module-level imports, read from the
    source; the package's public API in simulator/__init__.py, which exports
    simulate, is not the scene package's doing), is sweep, training, runner or a kind,
    and it has no function-local imports."""
    seen, todo = set(), ["simulator.scene"]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(t for t in imports(module)[0] if t != "simulator")
    for mod in ("simulator.sweep", "simulator.experiments.training", "simulator.runner", "simulator.kinds"):
        assert mod not in seen, sorted(seen)
    folder = os.path.dirname(scenes.__file__)
    for name in sorted(os.listdir(folder)):
        if name.endswith(".py"):
            tree = ast.parse(open(os.path.join(folder, name)).read())
            for node in ast.walk(tree):
                if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                    assert not [n for n in ast.walk(node)
                                if isinstance(n, (ast.Import, ast.ImportFrom))], (name, node.name)
