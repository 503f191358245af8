"""A PyTorch module as a Model (traced by ``torch.fx``, parameters copied as float64)
and back (the optional ``torch`` extra, imported inside the functions only). What
does not map is one SimulatorError naming the FX node (op, target, source line)."""
import contextlib
import copy
import io
import linecache
import operator
import os
import re
from types import SimpleNamespace

import numpy as np

from ..errors import SimulatorError
from .spec import INPUT

CALL = "Model.from_torch"
_ACT = {"Tanh": "tanh", "ReLU": "relu", "Sigmoid": "logistic",
        "tanh": "tanh", "relu": "relu", "sigmoid": "logistic"}
_CAN_ACT = ("dense", "conv2d", "add", "linear")   # the kinds with an activation field
_FRAME = re.compile(r'File "([^"]+)", line (\d+), in (\S+)')


def load_torch():
    """The torch module, or one SimulatorError naming the missing extra."""
    try:
        import torch
        import torch.fx.passes.shape_prop  # noqa: F401  (ShapeProp, used below)
    except ImportError:
        raise SimulatorError("the torch extra is not installed: pip install "
                             "'tickprop[torch]' (or torch from pytorch.org)") from None
    return torch


def _where(node, torch):
    """' at FILE:LINE (code)' of the user's frame FX recorded for ``node``, or ''."""
    trace = node.meta.get("stack_trace") or getattr(node, "stack_trace", None) or ""
    home = os.path.dirname(torch.__file__) + os.sep
    for path, line, _ in _FRAME.findall(trace):
        if not path.startswith(home):
            code = linecache.getline(path, int(line)).strip()
            return f" at {path}:{line}" + (f" ({code})" if code else "")
    return ""


def _line(exc):
    """An exception's message on one line."""
    return " ".join(str(exc).split())


def _target(node):
    t = node.target
    return t if isinstance(t, str) else getattr(t, "__name__", repr(t))


class _Refuse(Exception):
    """A node that does not map: args (node, reason)."""


def _np(t):
    return t.detach().to("cpu").double().numpy().copy()


def _shape(node):
    meta = node.meta.get("tensor_meta")
    return tuple(meta.shape) if hasattr(meta, "shape") else None


def _trace(torch, module):
    class Tracer(torch.fx.Tracer):
        record_stack_traces = True
    try:
        graph = Tracer().trace(module)
    except Exception as exc:  # TraceError (control flow) and any other tracing failure
        raise SimulatorError(f"{CALL}: torch.fx cannot trace {type(module).__name__}: "
                             f"{type(exc).__name__}: {_line(exc)}") from None
    gm = torch.fx.GraphModule(module, graph)
    gm.graph.eliminate_dead_code()
    gm.recompile()
    return gm


def from_torch(cls, module, example_input):
    """A ``cls`` (Model) equal to ``module`` on inputs shaped like ``example_input``
    (batch first), with ``import_report`` (list of str): what was folded or added."""
    torch = load_torch()
    if not isinstance(module, torch.nn.Module):
        raise SimulatorError(f"{CALL}: module: expected a torch.nn.Module, given "
                             f"{type(module).__name__}")
    if isinstance(example_input, np.ndarray):
        example_input = torch.from_numpy(example_input)
    if not isinstance(example_input, torch.Tensor) or example_input.ndim < 2:
        raise SimulatorError(f"{CALL}: example_input: expected a tensor (batch, *input "
                             f"shape), given {getattr(example_input, 'shape', example_input)!r}")
    gm = _trace(torch, module)
    probe = copy.deepcopy(gm).double()
    try:     # ShapeProp prints the traceback of a failing node itself: not to the user
        with contextlib.redirect_stderr(io.StringIO()):
            torch.fx.passes.shape_prop.ShapeProp(probe).propagate(example_input.double())
    except Exception as exc:
        shape = tuple(example_input.shape)
        raise SimulatorError(f"{CALL}: the module's forward fails on example_input of shape "
                             f"{shape}: {type(exc).__name__}: {_line(exc)}") from None
    for a, b in zip(gm.graph.nodes, probe.graph.nodes):
        a.meta["tensor_meta"] = b.meta.get("tensor_meta")
    mapper = _Mapper(torch, gm)
    try:
        layers, params = mapper.run()
    except _Refuse as exc:
        node, reason = exc.args
        raise SimulatorError(f"{CALL}: cannot map FX node {node.name!r} (op {node.op}, "
                             f"target {_target(node)}){_where(node, torch)}: {reason}") from None
    model = cls.from_layers(layers, tuple(example_input.shape[1:])).with_parameters(params)
    model.import_report = mapper.report
    return model


class _Mapper:
    """One pass over the FX nodes: ``entry[node]`` is the vertex name it computes,
    ("T", name) for a transposed view that only a matmul may read, or ("S", name) for a
    flatten of the spatial axes that only a transpose(1, 2) (to tokens) may read."""

    def __init__(self, torch, gm):
        self.torch, self.nn, self.gm = torch, torch.nn, gm
        self.modules = dict(gm.named_modules())
        self.layers, self.params, self.report = {}, {}, []
        self.entry, self.owner = {}, {}     # owner: vertex name -> node that made it
        F = torch.nn.functional
        self.act_fns = {torch.tanh: "tanh", torch.relu: "relu", torch.sigmoid: "logistic",
                        F.relu: "relu", F.tanh: "tanh", F.sigmoid: "logistic"}
        self.add_fns = {operator.add, torch.add, operator.iadd}
        self.mm_fns = {operator.matmul, torch.matmul, torch.bmm}
        self.soft_fns = {F.softmax, torch.softmax}

    # ------------------------------------------------------------ helpers
    def vertex(self, node, arg):
        """The vertex name a tensor argument ``arg`` of ``node`` reads."""
        if not hasattr(arg, "op") or arg not in self.entry:
            raise _Refuse(node, f"argument {arg!r} is not a tensor the model computes "
                          "(constants, parameters and buffers used directly do not map)")
        e = self.entry[arg]
        if isinstance(e, tuple) and e[0] == "S":
            raise _Refuse(node, f"it reads {arg.name!r}, a flatten of the spatial axes; that "
                          "maps only as x.flatten(2).transpose(1, 2) (tokens)")
        if isinstance(e, tuple):
            raise _Refuse(node, f"it reads the transpose {arg.name!r}; a transpose maps only "
                          "as the second factor of a matmul")
        return e

    def add(self, node, kind, parents, **fields):
        name = node.name
        self.layers[name] = {"name": name, "kind": kind, "from": list(parents), **fields}
        self.entry[node] = name
        self.owner[name] = node
        return name

    def sole(self, node, arg):
        """The vertex ``arg`` computes if it has ``node`` as its only user along the
        way and its cfg was made by this pass (so it may still be changed), else None."""
        while len(arg.users) == 1 and arg in self.entry and not isinstance(self.entry[arg],
                                                                           tuple):
            name = self.entry[arg]
            if self.owner.get(name) is arg:
                return name
            if name == INPUT:
                return None
            arg = arg.all_input_nodes[0]
        return None

    def fold_activation(self, node, arg, act):
        """σ into the producing layer when it is the activation's alone (a dense, linear,
        conv2d or add without one), else an explicit activation vertex (identity + σ)."""
        name = self.sole(node, arg)
        cfg = self.layers.get(name)
        if cfg is None or cfg["kind"] not in _CAN_ACT or cfg["activation"] != "linear":
            self.add(node, "identity", [self.vertex(node, arg)], activation=act)
            self.report.append(f"{node.name}: {act} as its own vertex (its input "
                               f"{arg.name!r} is not a layer it can fold into alone)")
            return
        cfg["activation"] = act
        self.entry[node] = name

    def alias(self, node, arg):
        self.entry[node] = self.entry[arg] if arg in self.entry else self.vertex(node, arg)

    # ------------------------------------------------------------ the pass
    def run(self):
        placeholders = [n for n in self.gm.graph.nodes if n.op == "placeholder"]
        if len(placeholders) != 1:
            raise _Refuse(placeholders[-1] if placeholders else next(iter(self.gm.graph.nodes)),
                          f"the module must take one input tensor, it takes {len(placeholders)}")
        out = None
        for node in self.gm.graph.nodes:
            if node.op == "placeholder":
                self.entry[node] = INPUT
            elif node.op == "output":
                out = node
            elif node.op == "call_module":
                self.module(node, self.modules[node.target])
            elif node.op in ("call_function", "call_method"):
                self.function(node)
            else:
                raise _Refuse(node, "parameters or buffers read directly do not map")
        res = out.args[0]
        if not hasattr(res, "op") or res not in self.entry or self.entry[res] == INPUT:
            raise _Refuse(out, "the module must return one tensor computed by a layer")
        last = self.vertex(out, res)
        layers = [c for n, c in self.layers.items() if n != last] + [self.layers[last]]
        return layers, self.params

    def module(self, node, m):
        nn, x = self.nn, node.args[0] if node.args else None
        name = type(m).__name__
        if isinstance(m, nn.Linear):
            self.linear(node, x, m.weight, m.bias)
        elif isinstance(m, nn.Conv2d):
            self.conv(node, x, m)
        elif isinstance(m, nn.BatchNorm2d):
            self.batchnorm(node, x, m)
        elif isinstance(m, (nn.AvgPool2d, nn.MaxPool2d)):
            self.pool(node, x, m, "max" if isinstance(m, nn.MaxPool2d) else "avg")
        elif isinstance(m, nn.AdaptiveAvgPool2d):
            self.adaptive(node, x, m.output_size)
        elif isinstance(m, nn.Flatten):
            self.flatten(node, x)
        elif isinstance(m, (nn.Identity, nn.Dropout)):
            if m.training and isinstance(m, nn.Dropout) and m.p > 0:
                raise _Refuse(node, "Dropout in training mode (call module.eval() first)")
            self.alias(node, x)
            self.report.append(f"{node.name} ({name}) folded away")
        elif name in _ACT:
            self.fold_activation(node, x, _ACT[name])
        elif isinstance(m, nn.Softmax):
            self.softmax(node, x, m.dim)
        else:
            raise _Refuse(node, f"module type {name} has no layer kind")

    def function(self, node):
        t, args, T, F = node.target, node.args, self.torch, self.torch.nn.functional
        method = node.op == "call_method"
        meta = node.meta.get("tensor_meta")
        if meta is None:
            return          # not a tensor (a size, a shape): only a view's shape reads it
        if not hasattr(meta, "shape"):
            raise _Refuse(node, "it returns several tensors; a layer kind returns one")
        if t in self.act_fns or (method and t in _ACT):
            self.fold_activation(node, args[0], self.act_fns.get(t) or _ACT[t])
        elif t in self.add_fns or (method and t == "add"):
            self.add_op(node)
        elif t in self.mm_fns or (method and t in ("matmul", "bmm")):
            self.matmul(node)
        elif t is T.transpose or (method and t in ("transpose", "permute")) or (
                t is getattr and args[1] == "mT"):
            self.transpose(node)
        elif t in (T.flatten, T.reshape) or (method and t in ("flatten", "view", "reshape")):
            self.flatten(node, args[0])
        elif t in (F.avg_pool2d, F.max_pool2d):
            self.pool_fn(node, "max" if t is F.max_pool2d else "avg")
        elif t in self.soft_fns or (method and t == "softmax"):
            self.softmax(node, args[0], node.kwargs.get("dim", args[1] if len(args) > 1 else None))
        elif t in (operator.mul, operator.truediv, T.mul, T.div) or (
                method and t in ("mul", "div")):
            self.scale(node)
        else:
            raise _Refuse(node, "no layer kind computes this function")

    # ------------------------------------------------------------ the kinds
    def linear(self, node, x, weight, bias):
        dense = len(_shape(x)) == 2 and bias is not None      # else linear, bias optional
        name = self.add(node, "dense" if dense else "linear", [self.vertex(node, x)],
                        units=int(weight.shape[0]), activation="linear",
                        **({} if dense else {"bias": bias is not None}))
        self.params[f"{name}.W"] = _np(weight)
        if bias is not None:
            self.params[f"{name}.b"] = _np(bias)

    def conv(self, node, x, m):
        if m.groups != 1:
            raise _Refuse(node, f"grouped convolution (groups={m.groups}); conv2d has groups 1")
        if tuple(m.dilation) != (1, 1):
            raise _Refuse(node, f"dilation {tuple(m.dilation)}; conv2d has dilation 1")
        if m.padding_mode != "zeros":
            raise _Refuse(node, f"padding_mode {m.padding_mode!r}; conv2d pads with zeros")
        pad = m.padding
        if isinstance(pad, str):
            if pad == "same" and all(k % 2 for k in m.kernel_size):
                pad = tuple(k // 2 for k in m.kernel_size)
            elif pad == "valid":
                pad = (0, 0)
            else:
                raise _Refuse(node, f"padding {pad!r} with kernel {tuple(m.kernel_size)}")
        name = self.add(node, "conv2d", [self.vertex(node, x)], channels=int(m.out_channels),
                        kernel=list(m.kernel_size), stride=list(m.stride), padding=list(pad),
                        activation="linear")
        self.params[f"{name}.W"] = _np(m.weight)
        self.params[f"{name}.b"] = np.zeros(m.out_channels) if m.bias is None else _np(m.bias)
        if m.bias is None:
            self.report.append(f"{name}: Conv2d without bias, conv2d gets a zero bias")

    def batchnorm(self, node, x, m):
        name = self.sole(node, x)
        cfg = self.layers.get(name)
        if m.training or m.running_mean is None:
            raise _Refuse(node, "BatchNorm2d folds only in eval mode with running statistics "
                          "(call module.eval() first)")
        if cfg is None or cfg["kind"] != "conv2d" or cfg["activation"] != "linear":
            raise _Refuse(node, "BatchNorm2d folds only into a preceding conv2d without "
                          "activation whose only user it is")
        s = 1.0 / np.sqrt(_np(m.running_var) + m.eps)
        if m.weight is not None:
            s = s * _np(m.weight)
        b = (self.params[f"{name}.b"] - _np(m.running_mean)) * s
        self.params[f"{name}.W"] = self.params[f"{name}.W"] * s[:, None, None, None]
        self.params[f"{name}.b"] = b + (_np(m.bias) if m.bias is not None else 0.0)
        self.entry[node] = name
        self.report.append(f"{node.name} (BatchNorm2d, eps={m.eps:g}) folded into conv2d {name}")

    def pool_fn(self, node, mode):
        """F.avg_pool2d / F.max_pool2d: their arguments by position or keyword."""
        keys = ["input", "kernel_size", "stride", "padding"] + (
            ["dilation", "ceil_mode", "return_indices"] if mode == "max"
            else ["ceil_mode", "count_include_pad", "divisor_override"])
        given = {**dict(zip(keys, node.args)), **node.kwargs}
        m = SimpleNamespace(**{"stride": None, "padding": 0, "dilation": 1, "ceil_mode": False,
                               "return_indices": False, "divisor_override": None, **given})
        self.pool(node, m.input, m, mode)

    def pool(self, node, x, m, mode):
        pair = self.torch.nn.modules.utils._pair
        size, stride = pair(m.kernel_size), pair(m.stride or m.kernel_size)
        if pair(m.padding) != (0, 0) or m.ceil_mode:
            raise _Refuse(node, "pool has no padding and no ceil_mode")
        if mode == "max" and (pair(m.dilation) != (1, 1) or m.return_indices):
            raise _Refuse(node, "max pool with dilation or return_indices")
        if mode == "avg" and m.divisor_override:
            raise _Refuse(node, "avg pool with divisor_override")
        self.add(node, "pool", [self.vertex(node, x)], size=list(size), stride=list(stride),
                 mode=mode)

    def adaptive(self, node, x, out):
        h, w = _shape(x)[-2:]
        oh, ow = self.torch.nn.modules.utils._pair(out)
        oh, ow = oh or h, ow or w
        if h % oh or w % ow:
            raise _Refuse(node, f"adaptive pool of {h}x{w} to {oh}x{ow} has unequal windows")
        k = [h // oh, w // ow]
        self.add(node, "pool", [self.vertex(node, x)], size=k, stride=k, mode="avg")
        self.report.append(f"{node.name}: AdaptiveAvgPool2d is pool {k[0]}x{k[1]}")

    def flatten(self, node, x):
        s, o = _shape(x), _shape(node)
        if s is not None and len(s) == 4 and o == (s[0], s[1], s[2] * s[3]):
            self.entry[node] = ("S", self.vertex(node, x))    # tokens, once transposed
            return
        if s is None or o is None or o != (s[0], int(np.prod(s[1:]))):
            raise _Refuse(node, f"only a flatten of everything after the batch axis maps "
                          f"(shape {s} to {o})")
        if len(s) == 2:
            self.alias(node, x)
        else:
            self.add(node, "flatten", [self.vertex(node, x)])

    def softmax(self, node, x, dim):
        s = _shape(x)
        if dim is None or dim not in (-1, len(s) - 1):
            raise _Refuse(node, f"softmax over dim {dim}; softmax maps over the last axis")
        self.add(node, "softmax", [self.vertex(node, x)])

    def add_op(self, node):
        a, b = node.args[:2]
        if "alpha" in node.kwargs or len(node.args) > 2 or not (
                hasattr(a, "op") and hasattr(b, "op")):
            raise _Refuse(node, "add maps for two tensors (no scalar, no alpha)")
        if _shape(a) != _shape(b):
            raise _Refuse(node, f"add of shapes {_shape(a)} and {_shape(b)} (no broadcasting)")
        self.add(node, "add", [self.vertex(node, a), self.vertex(node, b)], activation="linear")

    def transpose(self, node):
        x, rank = node.args[0], len(_shape(node))
        if node.target is getattr:                                  # x.mT
            swap = True
        elif node.target == "permute":
            dims = node.args[1] if len(node.args) == 2 else node.args[1:]
            swap = tuple(d % rank for d in dims) == tuple(range(rank - 2)) + (rank - 1, rank - 2)
        else:
            swap = {d % rank for d in node.args[1:3]} == {rank - 2, rank - 1}
        if rank < 3 or not swap:
            raise _Refuse(node, "only a swap of the last two axes (of a matmul's second factor) "
                          "maps")
        spatial = self.entry.get(x)
        if isinstance(spatial, tuple) and spatial[0] == "S":     # x.flatten(2).transpose(1, 2)
            self.add(node, "tokens", [spatial[1]])
            return
        self.entry[node] = ("T", self.vertex(node, x))

    def matmul(self, node):
        a, b = node.args[:2]
        if len(_shape(a)) < 3 or _shape(a)[:-2] != _shape(b)[:-2]:
            raise _Refuse(node, "matmul maps for two activities of rank >= 2 (batch excluded) "
                          "with equal leading axes")
        eb = self.entry.get(b)
        transpose = isinstance(eb, tuple)
        pb = eb[1] if transpose else self.vertex(node, b)
        self.add(node, "matmul", [self.vertex(node, a), pb], transpose=transpose, factor=1.0)

    def scale(self, node):
        a, b = node.args[:2]
        div = node.target in (operator.truediv, self.torch.div, "div")
        if not div and hasattr(b, "op") and not hasattr(a, "op"):
            a, b = b, a                                           # number * tensor
        if not isinstance(b, (int, float)) or isinstance(b, bool) or not hasattr(a, "op"):
            raise _Refuse(node, "only a matmul's result times or over a number maps")
        name = self.sole(node, a)
        cfg = self.layers.get(name)
        if cfg is None or cfg["kind"] != "matmul" or b == 0:
            raise _Refuse(node, "only a matmul's result times or over a non-zero number maps "
                          "(its factor)")
        cfg["factor"] = cfg["factor"] / b if div else cfg["factor"] * b
        self.entry[node] = name


def to_torch(model):
    """An ``nn.Module`` computing ``model`` (float64 parameters copied from it):
    its ``layers`` hold one nn.Linear or nn.Conv2d per parameterised vertex."""
    torch = load_torch()
    nn, F = torch.nn, torch.nn.functional
    acts = {"tanh": torch.tanh, "relu": torch.relu, "logistic": torch.sigmoid,
            "linear": lambda x: x}
    ops = {"pool": lambda c, xs: (F.max_pool2d if c["mode"] == "max" else F.avg_pool2d)(
               xs[0], tuple(c["size"]), tuple(c["stride"])),
           "flatten": lambda c, xs: torch.flatten(xs[0], 1),
           "tokens": lambda c, xs: torch.flatten(xs[0], 2).transpose(1, 2),
           "add": lambda c, xs: sum(xs[1:], xs[0]),
           "matmul": lambda c, xs: c["factor"] * torch.matmul(
               xs[0], xs[1].transpose(-2, -1) if c["transpose"] else xs[1]),
           "softmax": lambda c, xs: torch.softmax(xs[0], -1),
           "identity": lambda c, xs: xs[0]}
    params = model.parameters()

    class Imported(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleDict()
            for v in model.vertices[1:]:
                c, W = v.cfg, params.get(f"{v.name}.W")
                if v.kind in ("dense", "linear"):
                    m = nn.Linear(W.shape[1], W.shape[0], bias=f"{v.name}.b" in params,
                                  dtype=torch.float64)
                elif v.kind == "conv2d":
                    m = nn.Conv2d(W.shape[1], W.shape[0], tuple(c["kernel"]),
                                  tuple(c["stride"]), tuple(c["padding"]), dtype=torch.float64)
                else:
                    continue
                with torch.no_grad():
                    m.weight.copy_(torch.from_numpy(W))
                    if m.bias is not None:
                        m.bias.copy_(torch.from_numpy(params[f"{v.name}.b"]))
                self.layers[v.name] = m

        def forward(self, x):
            outs = [x]
            for v in model.vertices[1:]:
                c, xs = v.cfg, [outs[p] for p in v.parents]
                y = self.layers[v.name](xs[0]) if v.name in self.layers else ops[v.kind](c, xs)
                outs.append(acts[c.get("activation", "linear")](y))
            return outs[-1]

    return Imported()
