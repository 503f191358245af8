"""A parsed scene (TOML or run.json) checked against its kind's sections and resolved,
every default filled (what run.json stores); every mistake is one SceneError naming the
file, the key, what was expected and what was given."""
import copy
import os

from ..errors import SceneError, did_you_mean
from ..model import LayerError, Model
from .fields import show
from .parameters import read_parameters
from .sections import CHAIN_ONLY, GRAPH_NETWORK, GRAPH_ONLY, SCHEMAS, TOP, VARIANT_KEYS


def kind_of(raw, source):
    kind = raw.get("kind", "diffusion")
    if not isinstance(kind, str):
        raise SceneError(f"{source}: key 'kind': expected a string naming the scene kind "
                         f"(one of {', '.join(SCHEMAS)}), got {show(kind, typed=True)}")
    if kind not in SCHEMAS:
        raise SceneError(f"{source}: key 'kind': expected one of {', '.join(SCHEMAS)}, "
                         f"got {show(kind)}{did_you_mean(kind, SCHEMAS)}")
    return kind


def _owners(name, section=False):
    """Where a section (or key) name is known elsewhere, as a hint."""
    if section:
        kinds = [k for k, sch in SCHEMAS.items() if name in sch]
        return (f"; [{name}] belongs to {' or '.join(repr(k) for k in kinds)} scenes (set kind)"
                if kinds else "")
    sections = sorted({s for sch in SCHEMAS.values() for s, f in sch.items() if name in f})
    return f"; {name!r} is a key of [{'] or ['.join(sections)}]" if sections else ""


def unknown_section(where, kind, name, hint=""):
    schema = SCHEMAS[kind]
    raise SceneError(f"{where}: unknown section {show(name)}{did_you_mean(name, list(schema))}"
                     f"; a {kind} scene has {', '.join(schema)}{hint}")


def unknown_key(where, section, key, fields):
    raise SceneError(f"{where}: unknown key {show(section + '.' + str(key))}"
                     f"{did_you_mean(key, fields)}; [{section}] accepts {', '.join(fields)}")


def validate(raw, source):
    """A parsed scene (a dict) resolved, or SceneError naming ``source`` (an empty one too)."""
    if not isinstance(raw, dict):
        raise SceneError(f"{source}: expected a table of sections, got {show(raw, typed=True)}")
    if "kind" not in raw and not any(name not in TOP for name in raw):
        raise SceneError(f"{source}: the scene is empty: expected a 'kind' and sections "
                         "(start from a shipped scene, see `tickprop scenes`)")
    kind = kind_of(raw, source)
    schema = SCHEMAS[kind]
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise SceneError(f"{source}: key 'description': expected a string, "
                         f"got {show(description, typed=True)}")
    resolved = {"description": description, "kind": kind}
    for name, value in raw.items():
        if name in TOP:
            continue
        if name not in schema:
            if isinstance(value, dict):
                unknown_section(source, kind, name, _owners(name, True))
            raise SceneError(f"{source}: unknown top-level key {show(name)}"
                             f"{did_you_mean(name, list(schema) + list(TOP))}; the top level "
                             f"holds description, kind and sections{_owners(name)}")
        if not isinstance(value, dict):
            raise SceneError(f"{source}: {name!r} must be a section ([{name}]), "
                             f"got {show(value, typed=True)}")
    for section, fields in schema.items():
        given = raw.get(section, {})
        for key in given:
            if key not in fields:
                unknown_key(source, section, key, fields)
        resolved[section] = {
            key: field.check(given[key], f"{source}: key '{section}.{key}'") if key in given
            else copy.deepcopy(field.default)
            for key, field in fields.items()}
    if kind in ("diffusion", "train", "schedules"):
        net = resolved["network"]
        skeleton = check_graph(net, source)
        if net["parameters"]:
            net["parameters"] = os.path.abspath(net["parameters"])
            read_parameters(net["parameters"], skeleton, f"{source}: key 'network.parameters'")
        # On a graph, network.output is the σ of the teacher that makes the
        # targets; with label targets nothing reads it.
        if net["layers"] and resolved["target"]["kind"] == "labels" \
                and _is_set(net, GRAPH_NETWORK, "output"):
            raise SceneError(f"{source}: key 'network.output': on a graph (network.layers) it "
                             "is the output σ of the teacher, and target.kind is 'labels' (no "
                             "teacher); a graph takes its last layer's activation instead; "
                             f"expected it left out, given {show(net['output'])}")
    if kind == "train":
        for rule in resolved["train"]["rates"]:
            if rule not in resolved["train"]["rules"]:
                raise SceneError(f"{source}: key 'train.rates.{rule}': {rule!r} is not trained "
                                 f"(train.rules = {show(resolved['train']['rules'])}); expected "
                                 "rates of rules in train.rules")
    if kind == "schedules" and "diffusion" not in resolved["schedules"]["names"]:
        for key in SCHEMAS[kind]["rule"]:
            if _is_set(resolved["rule"], SCHEMAS[kind]["rule"], key):
                raise SceneError(f"{source}: key 'rule.{key}': [rule] holds diffusion's options "
                                 "and schedules.names has no 'diffusion'; expected it left out, "
                                 f"given {show(resolved['rule'][key])}")
    check_variant_keys(resolved, source)
    return resolved


def _is_set(section, fields, key):
    """Whether a resolved section's ``key`` differs from its default."""
    return section[key] != fields[key].default


def check_variant_keys(resolved, source):
    """Refuse a key set that the scene's variant does not read (VARIANT_KEYS)."""
    schema = SCHEMAS[resolved["kind"]]
    for key, (selector, readers) in VARIANT_KEYS.get(resolved["kind"], {}).items():
        section, name = key.split(".")
        if not _is_set(resolved[section], schema[section], name):
            continue
        chosen = resolved[selector.split(".")[0]][selector.split(".")[1]]
        many = isinstance(chosen, list)
        if any(v in readers for v in chosen) if many else chosen in readers:
            continue
        when = f"{selector} {'holds' if many else 'is'} {' or '.join(show(v) for v in readers)}"
        raise SceneError(f"{source}: key {key!r}: only read when {when}, and {selector} is "
                         f"{show(chosen)}; expected it left out, given "
                         f"{show(resolved[section][name])}")


def check_graph(net, source):
    """The Model skeleton of a resolved [network]'s graph (None for a chain), or SceneError
    naming the entry ("key 'network.layers[2].kernel'") or a key of the other kind of net."""
    if not net.get("layers"):
        for key in GRAPH_ONLY:
            if key in net and _is_set(net, GRAPH_NETWORK, key):
                raise SceneError(f"{source}: key 'network.{key}': applies only with "
                                 "network.layers (a graph); this network is a chain; expected "
                                 f"it left out, got {show(net[key])}")
        return None
    for key, instead in CHAIN_ONLY.items():
        if _is_set(net, GRAPH_NETWORK, key):
            raise SceneError(f"{source}: key 'network.{key}': applies to chain networks only, "
                             "and network.layers describes a graph; a graph takes "
                             f"{instead} instead; expected it left out, got {show(net[key])}")
    if not net["input_shape"]:
        raise SceneError(f"{source}: key 'network.input_shape': expected the shape of one "
                         "input frame (e.g. [64] or [1, 8, 8]) with network.layers, got []")
    try:
        return Model.skeleton(net["layers"], net["input_shape"])
    except LayerError as exc:
        if exc.index is None:
            key = "network.input_shape" if exc.key == "input_shape" else "network.layers"
            where = f"key '{key}'"
        else:
            named = f" (layer {exc.name!r})" if exc.name is not None else ""
            where = f"key 'network.layers[{exc.index}].{exc.key}'{named}"
        raise SceneError(f"{source}: {where}: {exc.detail}") from None

