"""``from_graph``: a Model from an elementary-op graph of ``simulator.experiments.pc``.
Runs of operations fuse into layers: ``matmul(h, W)`` (W a parameter) is a ``linear``
layer named after W, ``conv2d(h, K)`` a ``conv2d`` layer; a following ``add`` of a
parameter is their bias, a following tanh/logistic/relu their activation (only where
the value feeds nothing else). Other ops map one to one. What the model core cannot
hold (several inputs, shared weights, a parameter as a free operand, products of
activities) is a SimulatorError naming the vertex."""
from types import SimpleNamespace

import numpy as np

from ...errors import SimulatorError
from .graph import Graph
from ...model.graph import Model
from ...model.spec import INPUT


def from_graph(graph, values):
    """(model, u): the Model equivalent to the elementary ``graph``, its parameters
    from ``values`` ({leaf name: array}, as a Problem holds them), and the input
    batch u = values[<the input leaf>]; the model's output is the graph's."""
    if not isinstance(graph, Graph):
        raise SimulatorError(f"expected a simulator.experiments.pc Graph, got "
                             f"{type(graph).__name__}")
    inputs = graph.leaves("input")
    if len(inputs) != 1:
        names = [graph.vertices[i].name for i in inputs]
        raise SimulatorError(f"graph: the model core has one input; this graph has "
                             f"{len(inputs)} ({', '.join(names)})")
    consumers = graph.parents()
    for i in graph.leaves("param"):
        if len(consumers[i]) > 1:
            raise SimulatorError(f"graph: parameter {graph.vertices[i].name!r} is used by "
                                 f"{len(consumers[i])} operations; the model core has no "
                                 "shared weights")
    return _Builder(graph, values, consumers, inputs[0]).run()


class _Builder:
    def __init__(self, graph, values, consumers, input_index):
        self.g, self.values, self.consumers = graph, values, consumers
        self.layer_of = {input_index: INPUT}   # graph vertex -> model vertex name
        self.layers = {}                       # name -> layer, in creation order
        self.input_index = input_index

    def _v(self, i):
        return self.g.vertices[i]

    def _is_param(self, i):
        return self._v(i).kind == "param"

    def _value(self, i):
        v = self._v(i)
        try:
            return np.asarray(self.values[v.name], dtype=np.float64)
        except KeyError:
            raise SimulatorError(f"graph: no value given for leaf {v.name!r}") from None

    def _refuse(self, i, why):
        raise SimulatorError(f"graph: vertex {self._v(i).name!r} ({self._v(i).op}) has no "
                             f"model layer: {why}")

    def _parent(self, i, a):
        """Model vertex name holding graph vertex a's value (as input of i)."""
        if self._is_param(a):
            self._refuse(i, f"parameter {self._v(a).name!r} is a free operand here")
        if a not in self.layer_of:
            self._refuse(i, f"its argument {self._v(a).name!r} has no layer")
        return self.layer_of[a]

    def _fusable(self, a):
        """The open layer holding vertex a's value, if a feeds nothing else."""
        layer = self.layers.get(self.layer_of.get(a))
        return layer if layer is not None and layer.open and len(self.consumers[a]) == 1 else None

    def _new(self, i, name, kind, parents, shape, **fields):
        """A layer being assembled from consecutive operations (``shape``: its
        value's, batch excluded; ``open``: it may still fuse)."""
        if name in self.layers or name == INPUT:
            name = f"{name}_{i}"
        self.layers[name] = layer = SimpleNamespace(
            cfg={"name": name, "kind": kind, "from": list(parents), **fields}, params={},
            shape=shape, open=kind in ("linear", "conv2d", "add", "matmul"))
        self.layer_of[i] = name
        return layer

    def run(self):
        for i, v in enumerate(self.g.vertices):
            if not v.is_leaf:
                getattr(self, "_op_" + v.op, self._unsupported)(i, v, dict(v.attrs))
        out = self.layer_of.get(self.g.output)
        if out is None:
            self._refuse(self.g.output, "the output is not a layer's value")
        cfgs, params = [], {}
        for layer in [self.layers[n] for n in self.layers if n != out] + [self.layers[out]]:
            cfg, p = dict(layer.cfg), dict(layer.params)
            if cfg["kind"] == "linear" and "b" in p and len(self._shape(cfg["from"][0])) == 1:
                cfg["kind"] = "dense"       # a flat affine layer: the engine's fast path
                del cfg["bias"]
            if cfg["kind"] == "conv2d" and "b" not in p:
                p["b"] = np.zeros(p["W"].shape[0])
            cfgs.append(cfg)
            params.update({f"{cfg['name']}.{k}": a for k, a in p.items()})
        u = self._value(self.input_index)
        model = Model.from_layers(cfgs, u.shape[1:], seed=0)
        return model.with_parameters(dict(model.parameters(), **params)), u

    def _shape(self, name):
        """Shape (batch excluded) of a model vertex's value."""
        if name == INPUT:
            return self._value(self.input_index).shape[1:]
        return self.layers[name].shape

    def _unsupported(self, i, v, at):
        self._refuse(i, "no layer kind computes it (elementwise products of activities or "
                        "parameters are not model layers)")

    def _op_matmul(self, i, v, at):
        a, b = v.args
        if self._is_param(b):
            w, parent = self._value(b), self._parent(i, a)
            units = int(w.shape[1])
            layer = self._new(i, self._v(b).name, "linear", [parent],
                              tuple(self._shape(parent)[:-1]) + (units,), units=units,
                              bias=False, activation="linear")
            layer.params["W"] = w.T.copy()
            return
        transpose = False
        if (not self._v(b).is_leaf and self._v(b).op == "transpose"
                and len(self.consumers[b]) == 1):
            transpose, b = True, self._v(b).args[0]
        pa, pb = self._parent(i, a), self._parent(i, b)
        sa, sb = self._shape(pa), self._shape(pb)
        self._new(i, v.name, "matmul", [pa, pb], tuple(sa[:-1]) + (sb[-2 if transpose else -1],),
                  transpose=transpose, factor=1.0)

    def _op_transpose(self, i, v, at):
        users = self.consumers[i]
        if len(users) == 1 and self._v(users[0]).op == "matmul" and \
                self._v(users[0]).args[1] == i:
            return      # folded into that matmul's transpose flag
        self._refuse(i, "a transpose is a model layer only as the second factor of one matmul")

    def _op_conv2d(self, i, v, at):
        x, k = v.args
        if not self._is_param(k):
            self._refuse(i, "a convolution needs a parameter kernel")
        w = self._value(k)
        parent = self._parent(i, x)
        c, h, wd = self._shape(parent)
        layer = self._new(i, self._v(k).name, "conv2d", [parent],
                          (int(w.shape[0]), h - w.shape[2] + 1, wd - w.shape[3] + 1),
                          channels=int(w.shape[0]), kernel=[int(w.shape[2]), int(w.shape[3])],
                          stride=1, padding=0, activation="linear")
        layer.params["W"] = w.copy()

    def _op_add(self, i, v, at):
        a, b = v.args
        for h, p in ((a, b), (b, a)):
            if self._is_param(p) and not self._is_param(h):
                layer = self._fusable(h)
                if (layer is None or layer.cfg["kind"] not in ("linear", "conv2d")
                        or "b" in layer.params or layer.cfg["activation"] != "linear"):
                    self._refuse(i, f"parameter {self._v(p).name!r} is added to a value that "
                                    "is no fresh linear or conv layer (only biases fuse)")
                bias = self._value(p)
                units = layer.shape[0] if layer.cfg["kind"] == "conv2d" else layer.shape[-1]
                if bias.size != units or (layer.cfg["kind"] == "linear" and bias.shape != (units,)):
                    self._refuse(i, f"bias {self._v(p).name!r} of shape {bias.shape} does not "
                                    f"broadcast as a per-unit bias of {units}")
                layer.params["b"] = bias.reshape(-1).copy()
                if layer.cfg["kind"] == "linear":
                    layer.cfg["bias"] = True
                self.layer_of[i] = layer.cfg["name"]
                return
        pa, pb = self._parent(i, a), self._parent(i, b)
        if self._shape(pa) != self._shape(pb):
            self._refuse(i, "an add of activities needs one shape (no broadcasting)")
        self._new(i, v.name, "add", [pa, pb], self._shape(pa), activation="linear")

    def _fuse(self, i, ok, why):
        """The layer right before unary vertex i, which i joins; refused with
        ``why`` unless ``ok(its cfg)``."""
        layer = self._fusable(self._v(i).args[0])
        if layer is None or not ok(layer.cfg):
            self._refuse(i, why)
        self.layer_of[i] = layer.cfg["name"]
        return layer

    def _activation(self, i, v, at):
        layer = self._fuse(i, lambda c: c["kind"] != "matmul" and c["activation"] == "linear",
                           "an activation fuses only into the linear, conv or add layer right "
                           "before it (with no other consumer)")
        layer.cfg["activation"], layer.open = v.op, False

    _op_tanh = _op_logistic = _op_relu = _activation

    def _op_scale(self, i, v, at):
        layer = self._fuse(i, lambda c: c["kind"] == "matmul", "a scale fuses only into the "
                           "matmul of two activities right before it (with no other consumer)")
        layer.cfg["factor"] *= float(at["c"])

    def _one_to_one(self, i, v, at):
        (a,) = v.args
        parent = self._parent(i, a)
        shape = self._shape(parent)
        axis = at.get("axis", -1)
        if v.op == "softmax" and axis not in (-1, len(shape)):
            self._refuse(i, f"softmax over axis {axis}; the model layer takes the last axis")
        self._new(i, v.name, v.op, [parent], (int(np.prod(shape)),) if v.op == "flatten" else shape)

    _op_softmax = _op_flatten = _op_identity = _one_to_one
