"""``tickprop import FILE.py:NAME --input-shape C,H,W --out scene.toml`` (or a ``.nir``
file): the user's PyTorch module (or NIR graph) as a scene of ``[[network.layers]]``
and its parameters in an .npz beside it (``network.parameters``). Every mistake is found
before anything is written; both files are written atomically, and only over files an
earlier ``tickprop import`` wrote (docs/torch_import.md)."""
import importlib.util
import json
import math
import os
import re
import sys
import time
import warnings
import zipfile

import click
import numpy as np

from .. import files, manifest
from ..errors import SimulatorError, did_you_mean
from ..model import Model, reference
from ..model.torch_import import load_torch
from ..safe_read import read_head
from ..scene import load, validate
from ..scene.parameters import IMPORT_MARK
from ..scene.sections import TRAIN_RULES, WIDTH

GENERATOR = "# generator: tickprop import"     # the first line of every scene it writes
BATCH = 2                                      # rows of the example input
DIGITS = {784: "mnist", 64: "digits"}          # flat input size -> the data set that fits
CLASSES = 10
STATE_BYTES = 2**29     # recorded x and δ a written diffusion scene stays under (budget 1 GiB)


class ImportMistake(SimulatorError):
    """A mistake in the command's arguments or the user's file (one line)."""


def _one_line(exc):
    return " ".join(str(exc).split()) or type(exc).__name__


def parse_shape(text):
    """(C, H, W) or a shorter tuple of positive ints from "C,H,W"."""
    parts = [p.strip() for p in str(text).split(",")]
    if not 1 <= len(parts) <= 3 or not all(re.fullmatch(r"[0-9]+", p) for p in parts):
        raise ImportMistake(f"--input-shape: expected 1 to 3 positive integers separated by "
                           f"commas (C,H,W, e.g. 1,28,28), got {text!r}")
    shape = tuple(int(p) for p in parts)
    if not all(1 <= n <= WIDTH for n in shape):
        raise ImportMistake(f"--input-shape: expected sizes in 1..{WIDTH}, got {text!r}")
    return shape


def split_target(target):
    """(path, NAME or None): "FILE.py:NAME" or "FILE.nir"."""
    if target.lower().endswith(".nir"):
        return target, None
    path, colon, name = target.rpartition(":")
    if not colon or not path.endswith(".py") or not name.isidentifier():
        raise ImportMistake(f"{target!r}: expected FILE.py:NAME (NAME a torch.nn.Module class "
                           "or a function returning a module, e.g. "
                           "examples/torch_models.py:LeNet5) or a FILE.nir")
    return path, name



def load_user_module(path):
    """The Python file ``path`` executed as a fresh module (its folder importable
    while it loads); any failure is one line naming the file."""
    if not os.path.isfile(path):
        raise ImportMistake(f"{path}: no such file")
    stem = re.sub(r"\W", "_", os.path.splitext(os.path.basename(path))[0])
    modname = f"tickprop_user_{stem}"
    spec = importlib.util.spec_from_file_location(modname, path)
    module = importlib.util.module_from_spec(spec)
    folder = os.path.dirname(os.path.abspath(path))
    sys.path.insert(0, folder)
    sys.modules[modname] = module
    cache, sys.dont_write_bytecode = sys.dont_write_bytecode, True   # no __pycache__ there
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:
        sys.modules.pop(modname, None)
        where = f" (line {exc.lineno})" if isinstance(exc, SyntaxError) and exc.lineno else ""
        raise ImportMistake(f"{path}: cannot load it{where}: {type(exc).__name__}: "
                           f"{_one_line(exc)}") from None
    finally:
        sys.path.remove(folder)
        sys.dont_write_bytecode = cache
    return module


def build_module(path, name, torch, seed):
    """The nn.Module NAME makes in the file ``path`` (a class instantiated or a
    function called with no arguments, torch seeded with ``seed``), float64, eval."""
    module = load_user_module(path)
    nn = torch.nn
    if not hasattr(module, name):
        known = [k for k, v in vars(module).items() if not k.startswith("_") and (
            isinstance(v, nn.Module) or (isinstance(v, type) and issubclass(v, nn.Module))
            or (callable(v) and getattr(v, "__module__", None) == module.__name__))]
        raise ImportMistake(f"{path}: no {name!r} in it{did_you_mean(name, known)}; modules "
                           f"and functions there: {', '.join(known) or 'none'}")
    obj = getattr(module, name)
    if isinstance(obj, nn.Module):
        net = obj
    elif callable(obj):
        torch.manual_seed(seed)
        try:
            net = obj()
        except Exception as exc:
            raise ImportMistake(f"{path}:{name}(): {type(exc).__name__}: {_one_line(exc)} "
                               f"({name} must build its module with no arguments)") from None
    else:
        raise ImportMistake(f"{path}:{name} is of type {type(obj).__name__}, expected a "
                           "torch.nn.Module class or a function returning a module")
    if not isinstance(net, nn.Module):
        raise ImportMistake(f"{path}:{name}() returned a {type(net).__name__}, expected a "
                           "torch.nn.Module")
    return net.double().eval()


def import_model(target, input_shape, seed=0):
    """(Model, info): the model of ``target`` ("FILE.py:NAME" or "FILE.nir") and
    {source, forward_err (None for NIR), import_s}; ``input_shape`` a "C,H,W"
    text (None for NIR, which carries its own)."""
    path, name = split_target(target)
    if name is None:
        if not os.path.isfile(path):
            raise ImportMistake(f"{path}: no such file")
        shape = parse_shape(input_shape) if input_shape else None
        t0 = time.perf_counter()
        model = Model.from_nir(path)
        if shape is not None and tuple(model.input_shape) != shape:
            raise ImportMistake(f"--input-shape: {path} takes inputs of shape "
                               f"{tuple(model.input_shape)}, given {shape}; leave it out")
        return model, {"source": path, "forward_err": None,
                       "import_s": time.perf_counter() - t0}
    if input_shape is None:
        raise ImportMistake("--input-shape: required for a PyTorch module (the shape of one "
                           "input without the batch axis, e.g. 1,28,28)")
    shape = parse_shape(input_shape)
    torch = load_torch()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # torch.fx's notes would break the one-line rule
        net = build_module(path, name, torch, seed)
        x = np.random.default_rng(seed).normal(size=(BATCH,) + shape)
        t0 = time.perf_counter()
        model = Model.from_torch(net, torch.from_numpy(x))
        import_s = time.perf_counter() - t0
        with torch.no_grad():
            want = net(torch.from_numpy(x)).numpy()
    got = reference.forward(model, x)[model.names[-1]]
    err = float(np.max(np.abs(got - want))) if got.shape == want.shape else math.inf
    return model, {"source": f"{path}:{name}", "forward_err": err, "import_s": import_s}


# ------------------------------------------------------------------- the scene
# A boolean, integer, finite float, string or list of them is written alike in JSON and
# TOML (JSON's \u escapes are TOML's; every value is checked finite before it is written).
_toml = json.dumps


def _section(header, keys):
    return [header] + [f"{k} = {_toml(v)}" for k, v in keys.items()] + [""]


def scene_sections(model, kind, npz_name):
    """{section: {key: value}} of the scene (``network.layers`` a list of tables)."""
    n_in, n_out = math.prod(model.input_shape), math.prod(model.output_shape)
    data = DIGITS.get(n_in) if n_out == CLASSES else None
    depth = model.level().depth
    hold = 8 * math.ceil(4 * depth / 8)     # each frame held twice 2D ticks: exact half of it
    layers = [{k: v for k, v in layer.items() if k not in ("scale", "bias_scale")}
              for layer in model.to_layers()]
    net = {"input_shape": list(model.input_shape), "parameters": npz_name, "layers": layers}
    stream = {"kind": "dataset", "data": data} if data else {"kind": "held"}
    target, loss = ({"kind": "labels"}, "xent") if data else ({"kind": "teacher"}, "mse")
    out = {"network": net, "stream": dict(stream, batch=4, hold=hold), "target": target}
    if kind == "diffusion":
        ticks = max(200, 4 * hold)
        widths = [math.prod(v.shape) for v in model.vertices]
        every = math.ceil(2 * 8 * ticks * len(widths) * max(widths) * 4 / STATE_BYTES)
        out["rule"] = {"loss": loss}
        out["run"] = {"ticks": ticks}
        if every > 1:
            out["record"] = {"every": every}
    else:
        out["train"] = {"rules": list(TRAIN_RULES), "loss": loss, "eval_every": 200,
                        "ar_iterations": 20, "ar_eta_x": 0.8}
        out["run"] = {"ticks": 400}
    return out


def scene_text(sections, kind, description, report):
    """The scene file: the generator line, the import report as comments, then TOML."""
    lines = [GENERATOR] + [f"# {line}" for line in report] + [
        f"description = {_toml(description)}", f"kind = {_toml(kind)}", ""]
    net = dict(sections["network"])
    layers = net.pop("layers")
    lines += _section("[network]", net)
    for layer in layers:
        lines += _section("[[network.layers]]", layer)
    for name, keys in sections.items():
        if name != "network":
            lines += _section(f"[{name}]", keys)
    return "\n".join(lines)


def _ours(path, is_scene):
    """Whether the existing file ``path`` is one ``tickprop import`` wrote."""
    if is_scene:
        return read_head(path, len(GENERATOR)).decode("utf-8", "replace") == GENERATOR
    try:
        with zipfile.ZipFile(path) as zf:
            return f"{IMPORT_MARK}.npy" in zf.namelist()
    except (OSError, zipfile.BadZipFile):
        return False


def check_replaceable(path, is_scene):
    """Refuse to write over a file ``tickprop import`` did not write (or a
    changed one its folder's manifest lists)."""
    folder, name = os.path.split(os.path.abspath(path))
    status = manifest.file_status(folder, name) if os.path.isdir(folder) else "missing"
    if status in ("missing", "ours"):
        return
    if status in ("changed", "foreign") or not os.path.isfile(path) or not _ours(path, is_scene):
        what = "is not a file" if not os.path.isfile(path) else \
            "exists and was not written by tickprop import"
        raise ImportMistake(f"{path}: {what}; choose another --out or move it away")


def write_scene(model, info, out, kind="diffusion"):
    """Write ``out`` (the scene) and the .npz beside it, each atomically, after
    every check; returns (scene path, npz path, text)."""
    if not out.endswith(".toml"):
        raise ImportMistake(f"--out: expected a scene file name ending in .toml, got {out!r}")
    npz = os.path.splitext(out)[0] + ".npz"
    for path, is_scene in ((out, True), (npz, False)):
        check_replaceable(path, is_scene)
    npz_name = os.path.basename(npz)
    sections = scene_sections(model, kind, npz_name)
    err = info["forward_err"]
    report = [f"imported from {info['source']}, input shape {tuple(model.input_shape)}; "
              f"parameters in {npz_name} (float64)"] + list(model.import_report)
    if err is not None:
        report.append(f"max |model - torch| on a seeded batch of {BATCH}: {err:.2g}")
    description = (f"{info['source']} imported by tickprop import: "
                   f"{len(model) - 1} layers on {'x'.join(map(str, model.input_shape))}")
    text = scene_text(sections, kind, description, report)
    check = dict(sections, network=dict(sections["network"], parameters=""))
    validate({"kind": kind, **check}, out)              # a mistake here is ours: before writing
    arrays = dict(model.parameters(), **{IMPORT_MARK: np.array(1)})
    folder = os.path.dirname(os.path.abspath(out))
    os.makedirs(folder, exist_ok=True)
    with manifest.recording(folder):
        files.write_npz(npz, arrays)
        files.write_text(out, text)
    load(out)                                           # the written pair reads back
    return out, npz, report


def headline(model, info):
    """One line: vertices, parameters, depth and first exact tick, the error vs torch."""
    n = sum(a.size for a in model.parameters().values())
    depth = model.level().depth
    err = info["forward_err"]
    vs = "not measured (NIR)" if err is None else f"{err:.2g}"
    return (f"{len(model)} vertices, {n:,} parameters, levelled depth D = {depth} (first "
            f"exact tick 2D-1 = {2 * depth - 1}), max forward error vs torch {vs}, "
            f"imported in {info['import_s']:.2f} s")


@click.command("import")
@click.argument("target", metavar="FILE.py:NAME|FILE.nir")
@click.option("--input-shape", metavar="C,H,W",
              help="One input's shape without the batch axis (required for a .py module).")
@click.option("--out", type=click.Path(dir_okay=False), required=True,
              help="The scene file to write (.toml); its parameters go beside it (.npz).")
@click.option("--kind", type=click.Choice(["diffusion", "train"]), default="diffusion",
              show_default=True, help="The scene's kind: one run of the tick engine, or "
              "every learning rule trained side by side.")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True,
              help="Seeds torch's initialisation of the module and the example input.")
def import_command(target, input_shape, out, kind, seed):
    """Import a PyTorch module (FILE.py:NAME, a class or a function returning a
    module) or a NIR graph (FILE.nir) as a scene and its parameter .npz."""
    model, info = import_model(target, input_shape, seed)
    scene, npz, report = write_scene(model, info, out, kind)
    for line in report:
        click.echo(f"  {line}")
    click.echo(f"import: {headline(model, info)}")
    click.echo(f"-> {scene}, {npz}")
