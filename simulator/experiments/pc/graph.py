"""Computational graphs of elementary operations, and backprop on them: a DAG of
vertices in topological order, the output last; leaves are data inputs or parameters,
every other vertex applies one op g_i (with its VJP) to its arguments (the paper's
children C(i)); values are batch-major numpy arrays. ``forward`` is Eq. 1,
``backprop`` Eqs. 2–4 for E = ½‖μ_out − y‖²."""
from collections import namedtuple
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ...errors import SimulatorError


def _unbroadcast(g, shape):
    """Sum a cotangent over the axes numpy broadcasting added or stretched."""
    while g.ndim > len(shape):
        g = g.sum(axis=0)
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    return g.sum(axis=stretched, keepdims=True) if stretched else g


def _swap(a):
    return np.swapaxes(a, -1, -2)


def _softmax(a, axis):
    e = np.exp(a - a.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _conv2d(x, k):
    """Valid, stride-1 cross-correlation: x (B,C,H,W), k (O,C,kh,kw) -> (B,O,H',W')."""
    win = sliding_window_view(x, k.shape[2:], axis=(2, 3))
    return np.einsum("bchwij,ocij->bohw", win, k, optimize=True)


def _conv2d_vjp(g, x, k, needs):
    gx = gk = None
    kh, kw = k.shape[2:]
    if needs[0]:
        # The input's cotangent is the full correlation of g with the flipped kernel.
        gpad = np.pad(g, ((0, 0), (0, 0), (kh - 1, kh - 1), (kw - 1, kw - 1)))
        win = sliding_window_view(gpad, (kh, kw), axis=(2, 3))
        gx = np.einsum("bohwij,ocij->bchw", win, k[:, :, ::-1, ::-1], optimize=True)
    if needs[1]:
        win = sliding_window_view(x, (kh, kw), axis=(2, 3))
        gk = np.einsum("bchwij,bohw->ocij", win, g, optimize=True)
    return gx, gk


# An elementary function: forward(args, attrs) and vjp(g, args, out, attrs, needs) -> one
# cotangent per argument (None where ``needs`` is False, so data inputs cost nothing).
Op = namedtuple("Op", "arity forward vjp")


def _unary(f, df):
    """Elementwise op whose derivative is written in terms of (input, output)."""
    return Op(1, lambda args, at: f(args[0]),
              lambda g, args, out, at, needs: (g * df(args[0], out),))


def _binary(f, d0, d1):
    """Broadcasting binary op; ``d0``/``d1``(g, a, b): each argument's cotangent."""
    return Op(2, lambda args, at: f(*args), lambda g, args, out, at, needs: tuple(
        _unbroadcast(d(g, *args), x.shape) if need else None
        for d, x, need in zip((d0, d1), args, needs)))


OPS = {
    "identity": Op(1, lambda args, at: args[0], lambda g, args, out, at, needs: (g,)),
    "tanh": _unary(np.tanh, lambda a, y: 1.0 - y * y),
    # overflow-free σ(a) = 1/(1+e^{-a})
    "logistic": _unary(lambda a: 0.5 * (1.0 + np.tanh(0.5 * a)), lambda a, y: y * (1.0 - y)),
    "relu": _unary(lambda a: np.maximum(a, 0), lambda a, y: (a > 0).astype(a.dtype)),
    "scale": Op(1, lambda args, at: args[0] * at["c"],
                lambda g, args, out, at, needs: (g * at["c"],)),
    "add": _binary(np.add, lambda g, a, b: g, lambda g, a, b: g),
    "mul": _binary(np.multiply, lambda g, a, b: g * b, lambda g, a, b: g * a),
    "matmul": _binary(np.matmul, lambda g, a, b: g @ _swap(b), lambda g, a, b: _swap(a) @ g),
    "transpose": Op(1, lambda args, at: _swap(args[0]),
                    lambda g, args, out, at, needs: (_swap(g),)),
    "softmax": Op(1, lambda args, at: _softmax(args[0], at.get("axis", -1)),
                  lambda g, args, out, at, needs: (
                      out * (g - (g * out).sum(axis=at.get("axis", -1), keepdims=True)),)),
    "flatten": Op(1, lambda args, at: args[0].reshape(args[0].shape[0], -1),
                  lambda g, args, out, at, needs: (g.reshape(args[0].shape),)),
    "conv2d": Op(2, lambda args, at: _conv2d(*args),
                 lambda g, args, out, at, needs: _conv2d_vjp(g, *args, needs)),
}


@dataclass(frozen=True)
class Vertex:
    """One vertex: a leaf (``op`` is None; ``kind`` 'input' or 'param') or an
    elementary op applied to the vertices listed in ``args`` (its children)."""
    name: str
    kind: str
    op: str | None = None
    args: tuple = ()
    attrs: tuple = ()

    @property
    def is_leaf(self):
        return self.op is None


class Graph:
    """A computational graph built in topological order; the last vertex is the output."""

    def __init__(self):
        self.vertices, self._cache = [], {}

    def cached(self, key, compute):
        """``compute(self)``, remembered until the next vertex is added."""
        hit = self._cache.get(key)
        if hit is None or hit[0] != len(self.vertices):
            hit = self._cache[key] = (len(self.vertices), compute(self))
        return hit[1]

    def _add(self, vertex):
        if any(v.name == vertex.name for v in self.vertices):
            raise SimulatorError(f"graph: vertex name {vertex.name!r} is used twice")
        self.vertices.append(vertex)
        return len(self.vertices) - 1

    def input(self, name):
        """Add a data leaf; returns its index."""
        return self._add(Vertex(name, "input"))

    def param(self, name):
        """Add a parameter leaf; returns its index."""
        return self._add(Vertex(name, "param"))

    def apply(self, op, *args, name=None, **attrs):
        """Add a vertex computing ``op`` of the vertices ``args``; returns its index."""
        if op not in OPS:
            raise SimulatorError(f"graph: unknown op {op!r}; expected one of {', '.join(OPS)}")
        if len(args) != OPS[op].arity:
            raise SimulatorError(f"graph: op {op!r} takes {OPS[op].arity} arguments, "
                                 f"got {len(args)}")
        if any(not 0 <= a < len(self.vertices) for a in args):
            raise SimulatorError(f"graph: op {op!r} refers to a vertex that does not exist yet")
        name = name or f"{op}{len(self.vertices)}"
        return self._add(Vertex(name, "op", op, tuple(args), tuple(sorted(attrs.items()))))

    def __len__(self):
        return len(self.vertices)

    @property
    def output(self):
        return len(self.vertices) - 1

    def parents(self):
        """P(i) for every vertex: the vertices that take i as an argument (once per edge)."""
        parents = [[] for _ in self.vertices]
        for j, v in enumerate(self.vertices):
            for i in v.args:
                parents[i].append(j)
        return parents

    def leaves(self, kind=None):
        return [i for i, v in enumerate(self.vertices)
                if v.is_leaf and (kind is None or v.kind == kind)]

    def param_names(self):
        return [self.vertices[i].name for i in self.leaves("param")]


def evaluate(graph, i, values):
    """μ_i = g_i(x of its arguments): vertex i's elementary function (Eq. 1, 5) on
    ``values``, one per vertex."""
    v = graph.vertices[i]
    return OPS[v.op].forward([values[a] for a in v.args], dict(v.attrs))


def cotangents(graph, j, g, values, out):
    """[(argument a, g·∂g_j/∂x_a)] of vertex j (the terms of Eq. 2), ``values`` one
    per vertex and ``out`` j's value; arguments whose cotangent does not matter
    (data inputs) are left out."""
    v, needs = graph.vertices[j], needs_grad(graph)[j]
    cots = OPS[v.op].vjp(g, [values[a] for a in v.args], out, dict(v.attrs), needs)
    return [(a, c) for a, c, need in zip(v.args, cots, needs) if need and c is not None]


def needs_grad(graph):
    """Per vertex, per argument: does the cotangent matter? (False for data inputs.)"""
    return graph.cached("needs_grad", lambda g: [
        tuple(g.vertices[a].kind != "input" for a in v.args) for v in g.vertices])


def forward(graph, values):
    """The forward pass μ_i for every vertex (Eq. 1): leaves take
    ``values[name]``, every other vertex applies its op."""
    mu = []
    for i, v in enumerate(graph.vertices):
        if v.is_leaf and v.name not in values:
            raise SimulatorError(f"graph: no value given for leaf {v.name!r}")
        mu.append(values[v.name] if v.is_leaf else evaluate(graph, i, mu))
    return mu


def backprop(graph, values, target):
    """Reverse differentiation (Eqs. 2–4): (μ, δ, grads), δ_i = ∂E/∂μ_i per vertex
    (None where no gradient flows) from δ_out = μ_out − y, grads {param: ∂E/∂ζ}."""
    mu = forward(graph, values)
    delta = reverse(graph, mu, mu[graph.output] - target)
    grads = {graph.vertices[i].name: delta[i] for i in graph.leaves("param")}
    return mu, delta, grads


def reverse(graph, mu, delta_out, keep=True):
    """Eq. 2/4: propagate δ from the output to every vertex, summing over
    parents; ``keep=False`` drops an op vertex's δ once passed on (saves memory)."""
    delta = [None] * len(graph)
    delta[graph.output] = delta_out
    for j in range(len(graph) - 1, -1, -1):
        if graph.vertices[j].is_leaf or delta[j] is None:
            continue
        for a, c in cotangents(graph, j, delta[j], mu, mu[j]):
            delta[a] = c if delta[a] is None else delta[a] + c
        if not keep:
            delta[j] = None
    return delta


def bp_update(graph, values, target, lr):
    """One BP step (Eq. 3): Δζ = −α ∂E/∂ζ for every parameter; returns {name: Δζ}."""
    mu = forward(graph, values)
    delta = reverse(graph, mu, mu[graph.output] - target, keep=False)
    return {graph.vertices[i].name: -lr * delta[i] for i in graph.leaves("param")}


def loss(graph, values, target):
    """E = ½‖μ_out − y‖² (the quadratic loss of Eq. 3)."""
    out = forward(graph, values)[graph.output]
    return 0.5 * float(np.sum((out - target) ** 2))
