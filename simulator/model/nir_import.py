"""NIR graphs (the neuromorphic interchange format, optional ``nir`` extra) as a
Model and back: Input, Output, Affine, Linear, Conv2d, AvgPool2d, Flatten and
sums (several edges into one node add up). Shapes exclude the batch axis, as
in NIR. Anything else, or a cycle, is one SimulatorError naming the node. nir
is imported inside the functions only.
"""
import re

import numpy as np

from ..errors import SimulatorError
from .layers import out_size
from .spec import INPUT


def _nir(call):
    try:
        import nir
    except ImportError:
        raise SimulatorError(f"{call}: the nir extra is not installed: pip install "
                             "'tickprop[nir]'") from None
    return nir


def _pair(v):
    a = np.asarray(v).reshape(-1)
    return [int(a[0])] * 2 if a.size == 1 else [int(a[0]), int(a[1])]


def _order(call, nodes, edges):
    """Node names in topological order; a cycle is one error naming its nodes."""
    into = {n: [] for n in nodes}
    for a, b in edges:
        for end in (a, b):
            if end not in nodes:
                raise SimulatorError(f"{call}: edge ({a!r}, {b!r}) names no node {end!r}")
        into[b].append(a)
    order, placed = [], set()
    while len(order) < len(nodes):
        ready = [n for n in nodes if n not in placed and all(p in placed for p in into[n])]
        if not ready:
            left = sorted(n for n in nodes if n not in placed)
            raise SimulatorError(f"{call}: the graph has a cycle through {', '.join(left)}; "
                                 "NIR cycles (recurrence) do not map")
        order.append(ready[0])
        placed.add(ready[0])
    return order, into


def from_nir(cls, graph):
    """The ``cls`` (Model) computing the NIR ``graph`` (a NIRGraph or a file path)."""
    call = "Model.from_nir"
    nir = _nir(call)
    if not isinstance(graph, nir.NIRGraph):
        try:
            graph = nir.read(graph)
        except Exception as exc:
            raise SimulatorError(f"{call}: cannot read a NIR graph from {graph!r}: "
                                 f"{' '.join(str(exc).split())}") from None
    order, into = _order(call, graph.nodes, graph.edges)
    kinds = {nir.Input: "input", nir.Output: "output", nir.Affine: "affine",
             nir.Linear: "linear", nir.Conv2d: "conv2d", nir.AvgPool2d: "pool",
             nir.Flatten: "flatten"}
    names, shapes, layers, params = {}, {}, [], {}
    taken = {INPUT}

    def fresh(name):
        name = re.sub(r"[^A-Za-z0-9_\-]", "_", str(name)) or "v"
        while name in taken:
            name += "_"
        taken.add(name)
        return name

    def refuse(n, why):
        raise SimulatorError(f"{call}: node {n!r} ({type(graph.nodes[n]).__name__}): {why}")

    def source(n):
        """The vertex node n reads: its one predecessor, or a new add of several."""
        ins = [names[p] for p in into[n]]
        if not ins:
            refuse(n, "no edge comes into it")
        if len(ins) == 1:
            return ins[0], shapes[ins[0]]
        if len({shapes[i] for i in ins}) > 1:
            refuse(n, f"its inputs' shapes differ ({[shapes[i] for i in ins]}); sums need one")
        name = fresh(f"{n}_sum")
        layers.append({"name": name, "kind": "add", "from": ins, "activation": "linear"})
        shapes[name] = shapes[ins[0]]
        return name, shapes[name]

    inputs = [n for n in order if isinstance(graph.nodes[n], nir.Input)]
    outputs = [n for n in order if isinstance(graph.nodes[n], nir.Output)]
    if len(inputs) != 1 or len(outputs) != 1:
        raise SimulatorError(f"{call}: the graph must have one Input and one Output node, it "
                             f"has {len(inputs)} and {len(outputs)}")
    for n in order:
        node = graph.nodes[n]
        kind = kinds.get(type(node))
        if kind is None:
            refuse(n, "this node type has no layer kind (maps: Input, Output, Affine, Linear, "
                   "Conv2d, AvgPool2d, Flatten, sums)")
        if kind == "input":
            names[n] = INPUT
            shapes[INPUT] = tuple(int(s) for s in np.asarray(node.input_type["input"]))
            continue
        x, s = source(n)
        if kind == "output":
            last = x
            continue
        name = names[n] = fresh(n)
        cfg = {"name": name, "from": [x]}
        if kind in ("affine", "linear"):
            w = np.array(node.weight, dtype=np.float64)
            if w.ndim != 2 or s[-1:] != (w.shape[1],):
                refuse(n, f"weight of shape {w.shape} does not take an input of shape {s}")
            params[f"{name}.W"] = w
            if kind == "affine":
                params[f"{name}.b"] = np.array(node.bias, dtype=np.float64).reshape(-1)
            flat = kind == "affine" and len(s) == 1
            cfg.update(kind="dense" if flat else "linear", units=w.shape[0], activation="linear")
            if not flat:
                cfg["bias"] = kind == "affine"
            shapes[name] = s[:-1] + (w.shape[0],)
        elif kind == "conv2d":
            if _pair(node.dilation) != [1, 1] or node.groups != 1:
                refuse(n, "dilation and groups must be 1")
            w = np.array(node.weight, dtype=np.float64)
            pad = node.padding
            if isinstance(pad, str) and pad == "valid":
                pad = 0
            elif isinstance(pad, str):
                if not all(k % 2 for k in w.shape[2:]):
                    refuse(n, "padding 'same' maps for odd kernels only")
                pad = [k // 2 for k in w.shape[2:]]
            cfg.update(kind="conv2d", channels=w.shape[0], kernel=list(w.shape[2:]),
                       stride=_pair(node.stride), padding=_pair(pad), activation="linear")
            params[f"{name}.W"] = w
            params[f"{name}.b"] = np.array(node.bias, dtype=np.float64).reshape(-1)
            shapes[name] = (w.shape[0],) + tuple(map(out_size, s[1:], cfg["kernel"],
                                                     cfg["stride"], cfg["padding"]))
        elif kind == "pool":
            if _pair(node.padding) != [0, 0]:
                refuse(n, "pooling with padding does not map")
            size, stride = _pair(node.kernel_size), _pair(node.stride)
            cfg.update(kind="pool", size=size, stride=stride, mode="avg")
            shapes[name] = (s[0],) + tuple(map(out_size, s[1:], size, stride, (0, 0)))
        else:
            out = tuple(int(v) for v in nir.ir.utils.calc_flatten_output(
                np.array(s), node.start_dim, node.end_dim))
            if out != (int(np.prod(s)),):
                refuse(n, f"only a flatten of the whole (unbatched) shape {s} maps, not to {out}")
            cfg["kind"] = "flatten"
            shapes[name] = out
        layers.append(cfg)
    if last == INPUT:
        raise SimulatorError(f"{call}: the Output reads the Input directly; no layer to map")
    layers = [c for c in layers if c["name"] != last] + [c for c in layers if c["name"] == last]
    model = cls.from_layers(layers, shapes[INPUT])
    return model.with_parameters(params)


def to_nir(model):
    """The NIR graph of ``model`` (its nodes named like its vertices): dense and
    linear → Affine (Linear without bias), conv2d → Conv2d, average pool →
    AvgPool2d, flatten → Flatten, add → edges summing at its children."""
    call = "model.to_nir"
    nir = _nir(call)
    p = model.parameters()
    nodes = {"input": nir.Input(np.array(model.input_shape))}
    edges = []

    def sources(v):
        """The NIR nodes whose sum v's value is (an add stands for its parents' sum)."""
        if v.index == 0:
            return ["input"]
        if v.kind != "add":
            return [v.name]
        out = [s for q in v.parents for s in sources(model.vertices[q])]
        if len(set(out)) < len(out):
            raise SimulatorError(f"{call}: vertex {v.name!r} adds one value twice; NIR sums "
                                 "edges, each once")
        return out

    for v in model.vertices[1:]:
        c = v.cfg
        if c.get("activation", "linear") != "linear":
            raise SimulatorError(f"{call}: vertex {v.name!r} has activation "
                                 f"{c['activation']!r}; NIR has no static nonlinearity")
        W, b = p.get(f"{v.name}.W"), p.get(f"{v.name}.b")
        if v.kind in ("dense", "linear"):
            if len(model.vertices[v.parents[0]].shape) != 1:
                raise SimulatorError(f"{call}: vertex {v.name!r}: NIR's Affine takes a vector, "
                                     f"not shape {model.vertices[v.parents[0]].shape}")
            node = nir.Affine(W, b) if b is not None else nir.Linear(W)
        elif v.kind == "conv2d":
            node = nir.Conv2d(input_shape=tuple(model.vertices[v.parents[0]].shape[1:]),
                              weight=W, stride=tuple(c["stride"]), padding=tuple(c["padding"]),
                              dilation=1, groups=1, bias=b)
        elif v.kind == "pool" and c["mode"] == "avg":
            node = nir.AvgPool2d(np.array(c["size"]), np.array(c["stride"]), np.array([0, 0]))
        elif v.kind == "flatten":
            node = nir.Flatten({"input": np.array(model.vertices[v.parents[0]].shape)},
                               start_dim=0)
        elif v.kind == "add":
            sources(v)
            continue
        else:
            what = "max pool" if v.kind == "pool" else f"kind {v.kind}"
            raise SimulatorError(f"{call}: vertex {v.name!r}: {what} has no NIR node")
        nodes[v.name] = node
        edges += [(s, v.name) for s in sources(model.vertices[v.parents[0]])]
    out = "output" if "output" not in nodes else "output_"   # a vertex may be called output
    nodes[out] = nir.Output(np.array(model.output_shape))
    edges += [(s, out) for s in sources(model.vertices[-1])]
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)
