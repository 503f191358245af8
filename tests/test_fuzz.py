"""Fuzzing the command line with mutated scenes: every field of every shipped
scene and every --set key, given wrong types, lists with bad entries, tables,
huge integers, 1e308, NaN and inf, empty strings, negative numbers and valid
values. The only acceptable outcomes (README, "Rules of the house"): exit 0,
or exit 2 with exactly one line starting 'error:' on stderr and no output
folder. A traceback (exit 1, an exception) is a bug.

Then damaged run folders: real tiny runs of every kind whose pictures `render`
redraws or `view` shows are made once per session, and each example damages
one array of their .npz files (dtype, shape, values with NaN, inf and huge
numbers, text, objects, missing) or one field of their JSON files (type,
deletion, deep nesting), or truncates a file; `render` and `view` must each
end in exit 0 or one 'error:' line.

Each shipped scene is first made fast (FAST: a few ticks, tiny networks) so
valid examples finish in a fraction of a second; then one key is replaced by a
fuzzed TOML value, either in the scene file or with --set. Hypothesis runs
derandomized, so CI sees the same examples on every run.
"""
import glob
import json
import math
import os
import shutil
import tempfile
import tomllib
import warnings

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.command import main as tickprop
from simulator import scene as scenes
from simulator.scene import fields
from simulator.errors import SceneError
from tiny_runs import TINY_RUNS, make_tiny_runs

SCENES = sorted(glob.glob(os.path.join(scenes.SCENES_DIR, "*.toml")))

# Per kind, overrides that keep a valid run small (applied before the mutation).
FAST = {
    "diffusion": {"run": {"ticks": 3}, "render": {"png": False, "gif": False}},
    "train": {"run": {"ticks": 4}, "train": {"eval_every": 2, "eval_size": 8}},
    "ar_converge": {"network": {"sizes": [64, 6, 10]},
                    "relaxation": {"iterations": 3, "batch": 4, "eta_x": [0.5]}},
    "ar_train": {"network": {"sizes": [64, 6, 10]},
                 "relaxation": {"iterations": 2, "variants": ["exact"]},
                 "train": {"epochs": 1, "seeds": [0], "batch": 512}},
    "pc_table": {"table": {"dtypes": ["float64"], "levelled": "levelled", "il_steps": 2,
                           "repeats": 1}},
    "pc_wave": {"wave": {}},          # Z-IL: one update (il_steps would be unread, refused)
    "locking": {"locking": {"depth": 3, "frames": 2, "gif": False}},
    "schedules": {"schedules": {"frames": 2, "seeds": [0], "eval_size": 8,
                                "sweep_depths": [2]}, "stream": {"batch": 2}},
    "sweep": {"sweep": {"seeds": [0]}},
}
# A sweep's points are other scenes: keep them small too.
FAST_SWEEP = {
    "fig3_fast": ({"run.ticks": 3, "network.depth": 2, "record.states": False},
                  {"stream.hold": [1]}),
    "train_digits": ({"run.ticks": 4, "train.eval_every": 2, "train.eval_size": 8},
                     {"train.rules": ["diffusion"]}),
}

HUGE = "1" + "0" * 5000                     # 10**5000, more digits than Python prints
WEIRD = [HUGE, "-" + HUGE, "[1, " + HUGE + "]", "10000000000000000000000", "9223372036854775808",
         "1e308", "-1e308", "1e400", "nan", "-nan", "inf", "-inf", "[nan]", "[1.0, inf]",
         '""', '" "', '"a"', '"1GiB"', '"infGiB"', '"-1GiB"', '"1XB"', '"nan"',
         "-1", "0", "1", "2", "3", "-0.5", "0.0", "0.5", "1.5", "true", "false",
         "[]", "[[]]", "[1]", "[1, 2]", "[0, 1, 2]", "[-1]", '[1, "a"]', "[true]", "[[0, 2]]",
         "[[2, 0]]", "[[0, 1], [1]]", "[1.5, 2.5]", '["a", "b"]', "[[1, 2], [3, 4]]",
         "{}", "{a = 1}", '{"stream.hold" = [1, 2]}', '{"run.ticks" = 2}', '{"x" = [1]}',
         '{"stream.hold" = []}', '{"stream.hold" = 3}', '{"run.ticks" = nan}',
         "[" * 600 + "]" * 600, "{a = " * 300 + "1" + "}" * 300]


def toml_text(value):
    """A Python value (from a shipped scene or FAST) written as TOML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_text(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def fast_scene(path):
    """The shipped scene at ``path`` as {section: {key: TOML text}}, made fast."""
    with open(path, "rb") as f:
        raw = tomllib.load(f)
    kind = raw.get("kind", "diffusion")
    for section, values in FAST[kind].items():
        raw.setdefault(section, {}).update(values)
    if kind == "sweep":
        fixed, grid = FAST_SWEEP[raw["sweep"]["base"]]
        raw["sweep"]["set"] = dict(raw["sweep"].get("set", {}), **fixed)
        raw["sweep"]["grid"] = grid
    return {name: ({k: toml_text(v) for k, v in value.items()} if isinstance(value, dict)
                   else toml_text(value)) for name, value in raw.items()}


def write_scene(doc, path):
    top = [f"{k} = {v}" for k, v in doc.items() if not isinstance(v, dict)]
    body = [f"[{s}]\n" + "".join(f"{json.dumps(k)} = {v}\n" for k, v in keys.items())
            for s, keys in doc.items() if isinstance(keys, dict)]
    with open(path, "w") as f:
        f.write("\n".join(top) + "\n" + "".join(body))


def keys_of(path):
    """(section, key) of every field the scene's kind declares, plus a few
    that no kind declares (typos, unknown sections)."""
    with open(path, "rb") as f:
        kind = tomllib.load(f).get("kind", "diffusion")
    known = [(s, k) for s, fields in scenes.SCHEMAS[kind].items() for k in fields]
    return known + [("run", "tick"), ("rules", "loss"), ("network", ""), ("", "kind")]


def _kind(path):
    with open(path, "rb") as f:
        return tomllib.load(f).get("kind", "diffusion")


def valid_texts(field):
    """Cheap valid values of a field (its choices, its lowest values): never a
    default or a high value, which could make a valid run slow."""
    if field is None:
        return []
    if isinstance(field, fields.Bool):
        return ["true", "false"]
    if getattr(field, "choices", None) and not isinstance(field, fields.ListOf):
        return [json.dumps(c) for c in field.choices]
    if isinstance(field, fields.Int):
        return [str(field.low), str(min(field.low + 1, field.high))]
    if isinstance(field, fields.Float):
        return [repr(field.low), repr(min(field.low + 0.5, field.high))]
    if isinstance(field, fields.Size):
        return ['"64MiB"', "1000000"]
    if isinstance(field, fields.ListOf):
        n = max(field.min_len, 1)
        return ["[" + ", ".join([t] * n) + "]" for t in valid_texts(field.entry)] + (
            ["[]"] if field.empty_ok else [])
    if isinstance(field, fields.Tuple):
        return ["[" + ", ".join(valid_texts(e)[0] for e in field.entries) + "]"]
    if isinstance(field, fields.Window):
        return ["[0, 2]"]
    if isinstance(field, fields.Table):
        return ["{}"]
    return []


def candidates(path, section, key):
    """Fuzzed TOML texts for one key: cheap valid values, and the weird ones."""
    field = scenes.SCHEMAS[_kind(path)].get(section, {}).get(key)
    own = valid_texts(field)
    if key == "base":
        own += ['"fig1_constant"', '"fig3_fast"', '"locking"', '"nowhere"', '"sweep_rules"']
    return st.one_of(st.sampled_from(own or ["1"]), st.sampled_from(WEIRD))


def run_cli(args):
    runner = CliRunner()
    return runner.invoke(tickprop, args)


def check_outcome(result, out, what):
    """Exit 0, or exit 2 with one 'error:' line and no output folder (or exit 3,
    a sweep whose every point failed: one 'error:' line, its points kept)."""
    if result.exit_code == 0:
        return
    if result.exit_code == 3:
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: every point of "), (
            what, result.stderr[-2000:])
        return
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), (
        what, result.exit_code, repr(result.exception), _tail(result))
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), (what, result.stderr[-2000:])
    assert not os.path.exists(out), (what, "output folder left after an error")


def _tail(result):
    import traceback
    if result.exc_info is None:
        return result.stderr[-2000:]
    return "".join(traceback.format_exception(*result.exc_info))[-3000:]


def assert_fuzz_outcome(path, section, key, text, mode, option=None):
    """Run the fast scene with one key replaced by ``text`` -- in the scene file
    (mode "file"; "draw" is "file" with a diffusion scene's pictures drawn),
    with --set ("set"), or with a typed option such as --ticks ("option", for
    the keys in OPTIONS) -- and check the outcome."""
    if mode == "option" and option is None:
        option = next((o for o, sk in OPTIONS.items() if sk == (section, key)), None)
        mode = "set" if option is None else mode
    name = os.path.basename(path)
    doc = fast_scene(path)
    with tempfile.TemporaryDirectory() as tmp:
        scene_path = os.path.join(tmp, name)
        out = os.path.join(tmp, "out")
        extra = []
        drawn = mode == "draw" and doc.get("kind") == '"diffusion"'
        if drawn:           # pictures on (FAST turns them off) for the drawing code
            doc["render"].update({k: "true" for k in ("png", "gif") if k != key})
            mode = "file"
        if mode == "set":
            extra = ["--set", f"{section}.{key}={text}"]
        elif mode == "option":
            extra = [option, text]
        elif section == "":
            doc[key] = text
        else:
            doc.setdefault(section, {})
            if isinstance(doc[section], dict):
                doc[section][key] = text
        write_scene(doc, scene_path)
        if doc.get("kind") == '"sweep"' and mode == "file":
            args = ["sweep", scene_path, "--out", out, "--quiet"]
        elif doc.get("kind") == '"sweep"':
            args = ["run", scene_path, "--out", out, "--quiet"] + extra
        else:
            args = ["run", scene_path, "--out", out, "--quiet"] + extra + (
                [] if drawn else ["--no-gif", "--no-png"])
        result = run_cli(args)
        what = (name, section, key, text[:80], mode, option)
        check_outcome(result, out, what)


MODES = ("file", "set", "option", "draw")
OPTIONS = {"--ticks": ("run", "ticks"), "--seed": ("run", "seed"), "--dtype": ("run", "dtype"),
           "--device": ("run", "device")}


def _example(path):
    return st.sampled_from(keys_of(path)).flatmap(
        lambda sk: st.tuples(st.just(sk), candidates(path, *sk), st.sampled_from(MODES)))


# Examples per scene (TICKPROP_FUZZ_EXAMPLES scales them for a longer local run);
# the slowest valid scenes get fewer so the whole module stays under 2 minutes.
EXAMPLES = int(os.environ.get("TICKPROP_FUZZ_EXAMPLES", "24"))
SLOW = {"zil_table.toml": 0.5, "compare_rules.toml": 0.5}


def _settings(path):
    n = max(4, int(EXAMPLES * SLOW.get(os.path.basename(path), 1.0)))
    return settings(max_examples=n, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))


# A scene of the same kind and keys as another, differing only in values, is
# fuzzed through that one (the same mutations are drawn): train_mnist is
# train_mnist_fast with stream.hold = 16 (~12 s).
TWINS = {"train_mnist.toml": "train_mnist_fast.toml"}
FUZZED = [p for p in SCENES if os.path.basename(p) not in TWINS]


def test_a_twin_has_the_kind_and_keys_of_the_scene_fuzzed_in_its_stead():
    for twin, fuzzed in TWINS.items():
        docs = []
        for name in (twin, fuzzed):
            with open(os.path.join(scenes.SCENES_DIR, name), "rb") as f:
                docs.append(tomllib.load(f))
        a, b = ({(s, k) for s, t in d.items() if isinstance(t, dict) for k in t} for d in docs)
        assert a == b and keys_of(os.path.join(scenes.SCENES_DIR, twin)) == keys_of(
            os.path.join(scenes.SCENES_DIR, fuzzed))


@pytest.mark.parametrize("path", FUZZED, ids=[os.path.basename(p)[:-5] for p in FUZZED])
def test_fuzzed_scene_runs_or_is_one_error_line(path):
    """~24 mutations per shipped scene: in the file, drawn, with --set or an option."""
    @_settings(path)
    @given(_example(path))
    def check(example):
        (section, key), text, mode = example
        assert_fuzz_outcome(path, section, key, text, mode)
    check()


@pytest.mark.parametrize("path", SCENES, ids=[os.path.basename(p)[:-5] for p in SCENES])
def test_fuzzed_typed_options_run_or_are_one_error_line(path):
    """--ticks/--seed/--dtype/--device on every kind: run, or refused by name."""
    for option, (section, key) in OPTIONS.items():
        for text in ("1", "-1", "float32", HUGE[:30]):
            assert_fuzz_outcome(path, section, key, text, "option", option)


def test_every_fast_scene_runs():
    """The fuzzer's starting points are valid and run, so mutations are what fails."""
    for path in SCENES:
        doc = fast_scene(path)
        with tempfile.TemporaryDirectory() as tmp:
            scene_path = os.path.join(tmp, os.path.basename(path))
            write_scene(doc, scene_path)
            sweep = doc.get("kind") == '"sweep"'
            args = (["sweep" if sweep else "run", scene_path, "--out", os.path.join(tmp, "o"),
                     "--quiet"] + ([] if sweep else ["--no-gif", "--no-png"]))
            result = run_cli(args)
            assert result.exit_code == 0, (path, _tail(result))


def test_every_field_refuses_every_weird_value_cleanly():
    """Exhaustively, without running: every declared field of every kind given
    every weird value either validates or raises one single-line SceneError."""
    tried = 0
    for kind, sections in scenes.SCHEMAS.items():
        for section, fields in sections.items():
            for key in fields:
                for text in WEIRD:
                    try:
                        value = tomllib.loads(f"v = {text}")["v"]
                    except (ValueError, RecursionError):
                        continue
                    try:
                        scenes.validate({"kind": kind, section: {key: value}}, "fuzz.toml")
                    except SceneError as exc:
                        assert "\n" not in str(exc) and str(exc).startswith("fuzz.toml: ")
                    tried += 1
    assert tried > 3000
    assert math.isfinite(tried)


# ------------------------------------------------------------ damaged run folders
# Tiny runs whose saved files `render` (and, for the viewable kinds, `view`)
# read: pictures on (render redraws only those a run lists), GIFs off.
DAMAGE_RUNS = {kind: args for kind, args in TINY_RUNS.items() if kind != "ar_train"}
VIEWABLE = ("diffusion", "graph", "ar_converge", "pc_wave")
# Examples per kind (TICKPROP_FUZZ_FOLDERS scales them for a longer local run).
FOLDER_EXAMPLES = int(os.environ.get("TICKPROP_FUZZ_FOLDERS", "16"))
DTYPES = ["float32", "float16", "int8", "uint64", "int64", "bool", "complex128", "<U4", "S2",
          "object"]
SHAPES = ["drop-row", "add-row", "empty", "scalar", "flat", "extra-axis", "transpose",
          "drop-column"]
VALUES = [float("nan"), float("inf"), -float("inf"), 1e308, -1, -7, 2**40, 0, "x"]
JSON_VALUES = [None, True, 0, -1, 1.5, 1e308, float("nan"), "", "x", [], {}, [1, "a"],
               {"a": 1}, [[[]]]]


@pytest.fixture(scope="session")
def saved_runs(tmp_path_factory):
    """{kind: folder} of the runs in DAMAGE_RUNS, made once per session."""
    return make_tiny_runs(tmp_path_factory.mktemp("fuzz-runs"), DAMAGE_RUNS, pictures=True)


def _json_paths(value, path=()):
    """Every path (tuple of keys and indices) into a parsed JSON value."""
    out = [path] if path else []
    if isinstance(value, dict):
        for k, v in value.items():
            out += _json_paths(v, path + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value[:3]):
            out += _json_paths(v, path + (i,))
    return out


def _targets(folder):
    """(file, key or JSON path) of everything a damage may hit in a run folder."""
    out = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if name.endswith(".npz"):
            with np.load(path) as data:
                out += [(name, key) for key in data.files]
        elif name.endswith(".json"):
            with open(path) as f:
                out += [(name, p) for p in _json_paths(json.load(f))]
        if name.endswith((".npz", ".json")):
            out.append((name, None))
    return out


def damages(folder):
    """A strategy of one damage to the run folder ``folder``: (file, target,
    operation, argument)."""
    targets = _targets(folder)
    arrays = [t for t in targets if t[0].endswith(".npz") and t[1]]
    fields = [t for t in targets if t[0].endswith(".json") and t[1]]
    position = st.integers(0, 10**6)
    options = [st.tuples(st.sampled_from([t for t in targets if t[1] is None]),
                         st.just("truncate"), st.floats(0.0, 0.99))]
    if arrays:
        one = st.sampled_from(arrays)
        options += [st.tuples(one, st.just("drop"), st.none()),
                    st.tuples(one, st.just("dtype"), st.sampled_from(DTYPES)),
                    st.tuples(one, st.just("shape"), st.sampled_from(SHAPES)),
                    st.tuples(one, st.just("value"),
                              st.tuples(st.sampled_from(VALUES), position, st.booleans()))]
    if fields:
        one = st.sampled_from(fields)
        options += [st.tuples(one, st.just("delete"), st.none()),
                    st.tuples(one, st.just("set"), st.sampled_from(JSON_VALUES)),
                    st.tuples(one, st.just("nest"), st.sampled_from([3, 70, 5000]))]
    return st.one_of(options)


def _reshaped(a, how):
    if how == "drop-row":
        return a[:-1] if a.ndim else a
    if how == "add-row":
        return np.concatenate([a, a[:1]]) if a.ndim and len(a) else a
    if how == "empty":
        return a.reshape(-1)[:0]
    if how == "scalar":
        return a.reshape(-1)[0] if a.size else np.zeros(())
    if how == "flat":
        return a.reshape(-1)
    if how == "extra-axis":
        return a[..., None]
    if how == "transpose":
        return a.T
    return a[..., :-1] if a.ndim else a           # drop-column


def _with_value(a, value, where, everywhere):
    a = np.array(a)
    if isinstance(value, str):
        a = a.astype(str)
    elif isinstance(value, float) and not np.isfinite(value) and a.dtype.kind not in "fc":
        a = a.astype(float)
    elif a.dtype.kind in "iub" and isinstance(value, int) and not (
            np.iinfo(np.int64).min <= value <= np.iinfo(np.int64).max):
        a = a.astype(float)
    elif a.dtype.kind in "US":
        a = a.astype(object)
    if a.dtype.kind in "iu" and isinstance(value, (int, float)) and np.isfinite(value):
        a = a.astype(np.int64)
    if a.size == 0:
        return a
    if everywhere:
        a[...] = value
    else:
        a.reshape(-1)[where % a.size] = value
    return a


def _change_array(a, op, arg):
    """``a`` with one damage: another dtype, shape or value."""
    if op == "dtype":
        return np.array(a, dtype=object) if arg == "object" else a.astype(arg)
    if op == "shape":
        return _reshaped(a, arg)
    return _with_value(a, *arg)


DEEP_MARK = "@@nested here@@"


def apply_damage(folder, damage):
    """Damage one file of the run folder ``folder`` in place."""
    (name, target), op, arg = damage
    path = os.path.join(folder, name)
    if op == "truncate":
        data = open(path, "rb").read()
        with open(path, "wb") as f:
            f.write(data[:int(len(data) * arg)])
    elif name.endswith(".npz"):
        with np.load(path) as data:
            arrays = {k: data[k] for k in data.files}
        if op == "drop":
            arrays.pop(target)
        else:
            try:
                with warnings.catch_warnings(), np.errstate(all="ignore"):
                    warnings.simplefilter("ignore")         # NaN cast to int: the damage
                    arrays[target] = _change_array(arrays[target], op, arg)
            except (ValueError, TypeError, OverflowError):
                arrays[target] = np.array(arrays[target], dtype=object)   # cannot convert
        np.savez(path, **arrays)
    else:
        with open(path) as f:
            doc = json.load(f)
        *where, last = target
        parent = doc
        for key in where:
            parent = parent[key]
        if op == "delete":
            del parent[last]
        elif op == "set":
            parent[last] = arg
        else:                   # nested ``arg`` lists deep, past what json.dumps recurses
            inner = json.dumps(parent[last])
            parent[last] = DEEP_MARK
        text = json.dumps(doc)
        if op == "nest":
            text = text.replace(json.dumps(DEEP_MARK), "[" * arg + inner + "]" * arg)
        with open(path, "w") as f:
            f.write(text)


def check_folder_outcome(result, what):
    """Exit 0, or exit 2 with exactly one 'error:' line; never a traceback."""
    if result.exit_code == 0:
        return
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), (
        what, result.exit_code, repr(result.exception), _tail(result))
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), (what, result.stderr[-2000:])


@pytest.mark.parametrize("kind", list(DAMAGE_RUNS))
def test_damaged_run_folders_render_and_view_or_are_one_error_line(saved_runs, kind):
    """One damage at a time to a real run folder of each kind; `render` (in
    place or into a new --out folder) and, for the kinds it shows, `view` each
    succeed or print one error line."""
    source = saved_runs[kind]

    @settings(max_examples=FOLDER_EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(damages(source), st.booleans())
    def check(damage, elsewhere):
        with tempfile.TemporaryDirectory() as tmp:
            folder = os.path.join(tmp, "run")
            shutil.copytree(source, folder)
            apply_damage(folder, damage)
            what = (kind, damage[0], damage[1], repr(damage[2])[:80])
            # in place only the run's own pictures (no GIF); into a new folder all of them
            how = ["--out", os.path.join(tmp, "new")] if elsewhere else ["--no-gif"]
            check_folder_outcome(run_cli(["render", folder, *how]), what + ("render", *how))
            if kind in VIEWABLE:
                check_folder_outcome(run_cli(["view", folder, "--no-open"]), what + ("view",))
    check()
