"""Scenes found by name or path, read from TOML or a run.json (replay), overridden from
the command line; each returns the scene validated."""
import copy
import json
import os
import re
import tomllib

from ..errors import SceneError, closest, did_you_mean
from ..paths import scenes_dir
from .fields import INT_DIGITS, show
from .parameters import anchor
from .sections import SCHEMAS
from .validation import kind_of, unknown_key, unknown_section, validate

SCENES_DIR = scenes_dir()
MAX_FILE_BYTES = 16 * 2**20


def list_scenes():
    """Names of the scenes shipped in scenes/."""
    if not os.path.isdir(SCENES_DIR):
        return []
    return sorted(f[:-5] for f in os.listdir(SCENES_DIR) if f.endswith(".toml"))


def find_scene(name_or_path):
    """Path of a scene given as a path (.toml or run.json) or a name in scenes/."""
    if os.path.isdir(name_or_path):
        inside = os.path.join(name_or_path, "run.json")
        hint = f" (did you mean {inside!r}?)" if os.path.isfile(inside) else ""
        raise SceneError(f"{name_or_path!r} is a folder: expected a scene name, a .toml scene "
                         f"file or a run.json{hint}")
    if os.path.isfile(name_or_path):
        return name_or_path
    candidate = os.path.join(SCENES_DIR, name_or_path + ".toml")
    if os.path.isfile(candidate):
        return candidate
    folder, base = os.path.split(name_or_path)
    if folder or name_or_path.endswith((".toml", ".json")):
        try:
            near = sorted(os.listdir(folder or "."))
        except OSError:
            near = []
        close = closest(base, near)
        hint = f" (did you mean {os.path.join(folder, close)!r}?)" if close else ""
        raise SceneError(f"scene file {show(name_or_path)} not found{hint}")
    raise SceneError(f"scene {show(name_or_path)} not found (neither a file nor a name in "
                     f"{SCENES_DIR}){did_you_mean(name_or_path, list_scenes())}")


def _read_text(path):
    """The text of a scene or run.json file of at most MAX_FILE_BYTES, or SceneError."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise SceneError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(data) > MAX_FILE_BYTES:
        raise SceneError(f"{path}: expected a scene file of at most "
                         f"{MAX_FILE_BYTES // 2**20} MiB, got a larger file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SceneError(f"{path}: not a text file (not UTF-8 at byte {exc.start})") from None


def load(name_or_path):
    """Load a TOML scene or a run.json (replay); return (name, resolved scene)."""
    path = find_scene(name_or_path)
    if path.endswith(".json"):
        return load_run_json(path)
    text = _read_text(path)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SceneError(f"{path}: not valid TOML ({exc})") from None
    except RecursionError:
        raise SceneError(f"{path}: not valid TOML (arrays or tables nested too deeply)") from None
    except ValueError:
        # Only an integer over Python's digit limit gets here.
        match = re.search(r"[0-9][0-9_]{%d,}" % INT_DIGITS, text)
        where = f" line {text.count(chr(10), 0, match.start()) + 1}:" if match else ""
        digits = len(match.group(0).replace("_", "")) if match else INT_DIGITS + 1
        raise SceneError(f"{path}: not valid TOML:{where} an integer with {digits} digits "
                         f"(at most {INT_DIGITS} are read)") from None
    return os.path.splitext(os.path.basename(path))[0], validate(anchor(raw, path), path)


MAX_NAME = 200          # longest scene name a run.json may hold


def load_run_json(path):
    """The name and resolved scene stored in a run.json, validated again."""
    text = _read_text(path)
    try:
        meta = json.loads(text)
    except (ValueError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)[:120]
        raise SceneError(f"{path}: not a tickprop run.json (not valid JSON: {reason})") from None
    if not isinstance(meta, dict) or "scene" not in meta or "name" not in meta:
        raise SceneError(f"{path}: not a tickprop run.json (expected an object with "
                         "'name' and 'scene')")
    # The name is refused unless a scene file could have it (spaces and
    # non-ASCII letters are fine: `my scene.toml`, `szené.toml`).
    name = meta["name"]
    if (not isinstance(name, str) or not 0 < len(name) <= MAX_NAME or not name.isprintable()
            or "/" in name or "\\" in name or name.strip(".") == ""):
        raise SceneError(f"{path}: key 'name': expected a scene name (the base name of its "
                         f"file: up to {MAX_NAME} printable characters, no '/' or '\\', not "
                         f"only dots), got {show(name, typed=True)}")
    if not isinstance(meta["scene"], dict):
        raise SceneError(f"{path}: key 'scene': expected a table of sections, "
                         f"got {show(meta['scene'], typed=True)}")
    return name, validate(meta["scene"], path)


# ------------------------------------------------------------------ overrides
def set_value(text, what):
    """The value of one --set (named ``what``): TOML when it parses, else the text."""
    try:
        doc = tomllib.loads(f"v = {text}")
    except tomllib.TOMLDecodeError:
        return text
    except RecursionError:
        raise SceneError(f"{what}: the value is nested too deeply") from None
    except ValueError:
        raise SceneError(f"{what}: an integer with more than {INT_DIGITS} digits") from None
    if set(doc) != {"v"}:
        raise SceneError(f"{what}: expected one value after '='")
    return doc["v"]


def _section_of(raw, kind, section, name, what):
    """raw[section] after checking section.name exists for this kind."""
    schema = SCHEMAS[kind]
    if section not in schema:
        unknown_section(what, kind, section)
    if name not in schema[section]:
        unknown_key(what, section, name, schema[section])
    if not isinstance(raw.get(section), dict):
        raw[section] = {}
    return raw[section]


def apply_overrides(scene, overrides, source, values=None, label="--set"):
    """The scene with ``values`` ({'section.key': value} of typed CLI options), then
    ``overrides`` applied, validated again: 'section.key=value' strings (as --set) or
    ('section.key', value) pairs (``simulate``'s), each named ``label`` in its error."""
    raw = copy.deepcopy(scene)
    kind = kind_of(raw, source)
    for key, value in (values or {}).items():
        section, _, name = key.partition(".")
        if name not in SCHEMAS[kind].get(section, {}):
            raise SceneError(f"{source}: a {kind} scene has no key {key!r}, so its command-line "
                             f"option does not apply (its sections: {', '.join(SCHEMAS[kind])})")
        _section_of(raw, kind, section, name, key)[name] = value
    for item in overrides:
        pair = isinstance(item, tuple)
        key, eq, text = (item[0], "=", None) if pair else item.partition("=")
        what = f"{label} {show(key if pair else item)}"
        parts = key.strip().split(".")
        if not eq or len(parts) != 2 or not all(parts):
            raise SceneError(f"{what}: expected SECTION.KEY" + ("" if pair else "=VALUE")
                             + ", e.g. rule.feedback" + ("" if pair else "=random"))
        section, name = parts
        value = item[1] if pair else set_value(text, what)
        _section_of(raw, kind, section, name, what)[name] = value
    return validate(raw, source)


def describe(name):
    """The one-line description of a shipped scene (or its load error)."""
    try:
        return load(name)[1]["description"]
    except SceneError as exc:
        return f"(invalid: {exc})"
