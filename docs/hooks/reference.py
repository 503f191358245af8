"""mkdocs hook: the reference pages generated from the code on every build, so they
cannot drift from it: every scene key (simulator/scene/sections.py, the field classes
of simulator/scene/fields.py) and every trace array (simulator/probes/trace.py's
SCHEMA); and the Tutorials section of the navigation, one entry per
docs/tutorials/*.py (jupytext py:percent, executed by mkdocs-jupyter)."""
import glob
import json
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)      # the checkout's simulator/ and cli, installed or not

KIND_TEXT = {
    "diffusion": "the tick engine on a chain or a graph: waves, mismatch, pictures",
    "train": "online learning with several rules from the same weights on the same frames",
    "sweep": "a grid of overrides of another scene",
    "ar_converge": "Activation Relaxation: convergence of the relaxed activations",
    "ar_train": "Activation Relaxation: training the paper's MLP on the digits",
    "pc_table": "predictive coding: Tables 1 and 2 (BP vs Z-IL vs IL)",
    "pc_wave": "predictive coding: the error wave of Z-IL or IL",
    "locking": "backprop's locked schedule beside the tick engine's pipeline",
    "schedules": "the schedule zoo: backprop, GPipe, 1F1B, 2BW, PARTIME, Sideways and diffusion "
                 "on one model and stream, tick by tick ([Schedules](../explanation/"
                 "schedules.md))",
}


def _cell(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


def _toml(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False) if isinstance(value, str) else repr(value)


# What each layer key means (the kinds, keys, defaults and accepted values come from
# simulator/model/spec.py's FIELDS; tests/test_docs.py requires a meaning for each key).
LAYER_KEYS = {
    "units": "output features (the last axis)",
    "channels": "output channels C_out",
    "kernel": "kernel size, one integer or [rows, columns]",
    "stride": "step between windows, one integer or [rows, columns]",
    "padding": "zero rows above and below, columns left and right",
    "size": "pooling window, one integer or [rows, columns]",
    "mode": "avg: the window mean; max: the window maximum (gradient to its first maximum)",
    "activation": "σ applied to the pre-activation",
    "scale": "weights ~ N(0, scale²/fan_in)",
    "bias_scale": "biases ~ N(0, bias_scale²), zeros when 0",
    "bias": "whether the layer has a bias",
    "transpose": "multiply by the second parent transposed (a @ bᵀ)",
    "factor": "a constant factor on the product (e.g. 1/√d for attention scores)",
}


def _accepts(check):
    try:
        check(object())
    except ValueError as e:
        return e.args[0]
    return "any value"


def layer_keys_section():
    from simulator.model.layers import KINDS
    from simulator.model.spec import FIELDS, MISSING
    out = ["## Layer tables (`[[network.layers]]`)", "",
           "Generated from `simulator/model/spec.py`. Every layer table has `name` (letters, "
           "digits, `_`, `-`; default its 1-based position), `kind`, and `from` (a layer name, "
           "`\"input\"`, or a list; default the previous layer). The last listed layer is the "
           "output. [Models](../explanation/models.md) says what each kind computes.", ""]
    for kind, fields in FIELDS.items():
        doc = (KINDS[kind].__doc__ or "").strip().split("\n")[0]
        out += [f"### `{kind}`", "", doc, ""]
        if not fields:
            out += ["No keys besides `name`, `kind` and `from`.", ""]
            continue
        out += ["| key | takes | default | meaning |", "|---|---|---|---|"]
        for key, (default, check) in fields.items():
            shown = "required" if default is MISSING else (
                "= size" if default is None else f"`{_toml(default)}`")
            out.append(f"| `{key}` | {_cell(_accepts(check))} | {shown} | "
                       f"{_cell(LAYER_KEYS[key])} |")
        out.append("")
    return out


def scene_keys_page():
    from simulator.scene import sections as s
    out = ["# Scene keys", "",
           "Generated from `simulator/scene/sections.py` on every docs build: every key "
           "of every scene kind, with the values it takes (type and range, as the scene "
           "checker states them in its error messages), its default and its meaning. A "
           "scene file is TOML: `description` and `kind` at the top, then one table per "
           "section. An unknown key, a value out of range, or a key that the scene's variant "
           "does not read is refused before any work with one `error:` line. "
           "See [Write a scene](../how-to/write-a-scene.md).", ""]
    for kind, sections in s.SCHEMAS.items():
        out += [f"## `{kind}`", "", KIND_TEXT.get(kind, "") + ".", ""]
        variants = s.VARIANT_KEYS.get(kind, {})
        for name, fields in sections.items():
            out += [f"### `[{name}]` ({kind})", "",
                    "| key | takes | default | meaning |", "|---|---|---|---|"]
            for key, field in fields.items():
                doc = field.doc
                selector = variants.get(f"{name}.{key}")
                if selector:
                    doc += f" (read only when `{selector[0]}` is " + \
                        " or ".join(f"`{v}`" for v in selector[1]) + ")"
                if name == "network" and "layers" in fields and key in s.CHAIN_ONLY:
                    doc += f" (chain only; a graph takes {s.CHAIN_ONLY[key]})"
                if name == "network" and key in s.GRAPH_ONLY:
                    doc += " (graph only)"
                out.append(f"| `{key}` | {_cell(field.expected)} | `{_cell(_toml(field.default))}`"
                           f" | {_cell(doc)} |")
            out.append("")
    out += layer_keys_section()
    return "\n".join(out) + "\n"


def trace_page():
    from simulator.probes.trace import SCHEMA, SCHEMA_VERSION
    out = ["# Trace arrays", "",
           f"Generated from `simulator/probes/trace.py`'s `SCHEMA` (version {SCHEMA_VERSION}) "
           "on every docs build. A diffusion run saves these arrays in `trace.npz`; "
           "`simulator.Trace.load(folder)` or `simulator.simulate(...)` gives them as "
           "`trace[name]`. trace.npz also stores this table as the JSON string `schema`, so "
           "a trace read with plain numpy explains itself: "
           "`json.loads(str(np.load(\"trace.npz\")[\"schema\"]))`.", "",
           "A *row* is one recorded tick (every `record.every`-th); *layer* reads "
           "\"vertex in model order\" on a graph; *layer_with_weights* is layers 1..L "
           "(column l−1 is layer l). Tags name a frame by the tick it entered layer 0 "
           "(−1: empty). `state_*` arrays exist only with `record.states`, `vertex_*` and "
           "`tag_*_hi` only on graphs, `source_*` only in a trace cut by "
           "`Trace.select` or `render --ticks`.", "",
           "| array | dims | unit | meaning |", "|---|---|---|---|"]
    for key, (dims, unit, text) in SCHEMA.items():
        out.append(f"| `{key}` | ({_cell(', '.join(dims))}) | {_cell(unit)} | {_cell(text)} |")
    return "\n".join(out) + "\n"


GENERATED = {"reference/scene-keys.md": scene_keys_page, "reference/trace.md": trace_page}


def _title(path):
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = re.match(r"#\s+#\s+(.+)", line)
            if m:
                return m.group(1).strip()
    return os.path.splitext(os.path.basename(path))[0].replace("_", " ")


def on_config(config):
    tutorials = sorted(glob.glob(os.path.join(config["docs_dir"], "tutorials", "*.py")))
    entries = [{_title(p): "tutorials/" + os.path.basename(p)} for p in tutorials]
    nav = config["nav"]
    for i, item in enumerate(nav):
        if isinstance(item, dict) and "Tutorials" in item:
            if entries:
                nav[i] = {"Tutorials": entries}
            else:
                del nav[i]
            break
    return config


def on_files(files, config):
    from mkdocs.structure.files import File
    for uri, make in GENERATED.items():
        files.append(File.generated(config, uri, content=make()))
    return files
