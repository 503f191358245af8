"""The five computational graphs of Salvatori et al.'s Tables 1 and 2, small: each
builder returns a Problem whose leaf values (weights N(0, 1/fan_in), inputs and
target N(0, 1), batch-major) come from one seeded Generator."""
from collections import namedtuple

import numpy as np

from ...errors import SimulatorError
from .graph import Graph

DTYPES = ("float32", "float64")


# A graph plus one training pair: ``values`` {leaf name: array}, ``target`` y.
Problem = namedtuple("Problem", "name graph values target")


class _Maker:
    """Adds leaves to a graph and draws their values from one Generator."""

    def __init__(self, seed, dtype):
        if dtype not in DTYPES:
            raise SimulatorError(f"pc builders: dtype {dtype!r}; expected one of {DTYPES}")
        self.rng, self.dtype = np.random.default_rng(seed), dtype
        self.graph, self.values = Graph(), {}

    def leaf(self, name, shape, std, data=False):
        """A parameter (``data``: an input) leaf valued N(0, std²); its index."""
        index = (self.graph.input if data else self.graph.param)(name)
        self.values[name] = self.rng.normal(0, std, shape).astype(self.dtype)
        return index

    def weight(self, name, shape, fan_in):
        return self.leaf(name, shape, fan_in ** -0.5)

    def data(self, name, shape):
        return self.leaf(name, shape, 1, data=True)

    def dense(self, h, n_in, n_out, tag):
        """h @ W + b as two vertices (matmul, add)."""
        w = self.weight(f"W{tag}", (n_in, n_out), n_in)
        b = self.leaf(f"b{tag}", (n_out,), 0.1)
        return self.graph.apply("add", self.graph.apply("matmul", h, w), b)

    def problem(self, name, out_shape):
        return Problem(name, self.graph, self.values,
                       self.rng.normal(0, 1, out_shape).astype(self.dtype))


def mlp(seed=0, dtype="float64", sizes=(8, 16, 16, 4), batch=5):
    """A tanh MLP with a linear output layer."""
    m = _Maker(seed, dtype)
    h = m.data("x", (batch, sizes[0]))
    for k in range(len(sizes) - 1):
        h = m.dense(h, sizes[k], sizes[k + 1], k)
        if k < len(sizes) - 2:
            h = m.graph.apply("tanh", h)
    return m.problem("mlp", (batch, sizes[-1]))


def cnn(seed=0, dtype="float64", image=8, channels=(1, 3, 4), kernel=3, n_out=3, batch=4):
    """Two valid 2-D convolutions (relu, then tanh) and a dense read-out."""
    m = _Maker(seed, dtype)
    g = m.graph
    h = m.data("x", (batch, channels[0], image, image))
    side = image
    for k in range(len(channels) - 1):
        c_in, c_out = channels[k], channels[k + 1]
        w = m.weight(f"K{k}", (c_out, c_in, kernel, kernel), c_in * kernel * kernel)
        b = m.leaf(f"c{k}", (c_out, 1, 1), 0.1)
        h = g.apply("add", g.apply("conv2d", h, w), b)
        h = g.apply("relu" if k == 0 else "tanh", h)
        side -= kernel - 1
    h = g.apply("flatten", h)
    h = m.dense(h, channels[-1] * side * side, n_out, "out")
    return m.problem("cnn", (batch, n_out))


def rnn(seed=0, dtype="float64", steps=4, n_in=3, hidden=8, n_out=2, batch=4):
    """A many-to-one tanh RNN unrolled over ``steps`` inputs, weights shared
    across steps: h_s = tanh(h_{s−1} W + x_s U + b), output h_S V + c."""
    m = _Maker(seed, dtype)
    g = m.graph
    u = m.weight("U", (n_in, hidden), n_in)
    w = m.weight("W", (hidden, hidden), hidden)
    b = m.leaf("b", (hidden,), 0.1)
    h = None
    for s in range(steps):
        a = g.apply("matmul", m.data(f"x{s}", (batch, n_in)), u)
        if h is not None:
            a = g.apply("add", g.apply("matmul", h, w), a)
        h = g.apply("tanh", g.apply("add", a, b))
    m.dense(h, hidden, n_out, "out")
    return m.problem("rnn", (batch, n_out))


def residual(seed=0, dtype="float64", n_in=6, width=8, blocks=3, n_out=3, batch=5):
    """A residual MLP: h ← h + tanh(h W + b) per block; the skip edges make
    paths of different lengths, so the graph is not levelled."""
    m = _Maker(seed, dtype)
    g = m.graph
    h = g.apply("tanh", m.dense(m.data("x", (batch, n_in)), n_in, width, "in"))
    for k in range(blocks):
        h = g.apply("add", h, g.apply("tanh", m.dense(h, width, width, k)))
    m.dense(h, width, n_out, "out")
    return m.problem("residual", (batch, n_out))


def attention(seed=0, dtype="float64", tokens=4, n_in=3, d=6, n_out=2, batch=3):
    """One self-attention block with a residual connection:
    E = X W_e, A = softmax(E W_q (E W_k)ᵀ / √d), H = E + (A E W_v) W_o, then a
    dense read-out of the flattened H."""
    m = _Maker(seed, dtype)
    g = m.graph
    e = g.apply("matmul", m.data("x", (batch, tokens, n_in)), m.weight("We", (n_in, d), n_in))
    q, k, v = (g.apply("matmul", e, m.weight(f"W{c}", (d, d), d)) for c in "qkv")
    scores = g.apply("scale", g.apply("matmul", q, g.apply("transpose", k)), c=d ** -0.5)
    mixed = g.apply("matmul", g.apply("softmax", scores, axis=-1), v)
    h = g.apply("add", e, g.apply("matmul", mixed, m.weight("Wo", (d, d), d)))
    m.dense(g.apply("flatten", h), tokens * d, n_out, "out")
    return m.problem("attention", (batch, n_out))


def random_dag(seed=0, dtype="float64", n_ops=8, n_params=3, shape=(2, 3)):
    """A random DAG for property tests: ``n_ops`` random ops on random earlier
    vertices (paths of many lengths meet); unused vertices summed into the output."""
    m = _Maker(seed, dtype)
    g, rng = m.graph, m.rng
    pool = [m.data("x", shape)] + [m.leaf(f"p{k}", shape, 1) for k in range(n_params)]
    matrix = None
    kinds = ("tanh", "logistic", "identity", "scale", "add", "mul", "matmul")
    last = None
    for _ in range(n_ops):
        kind = kinds[rng.integers(len(kinds))]
        pick = [pool[i] for i in rng.integers(len(pool), size=2)]
        if kind in ("add", "mul"):
            last = g.apply(kind, *pick)
        elif kind == "matmul":
            if matrix is None:  # created on first use, so it never ends up unused
                matrix = m.weight("M", (shape[-1], shape[-1]), shape[-1])
            last = g.apply("matmul", pick[0], matrix)
        elif kind == "scale":
            last = g.apply("scale", pick[0], c=float(rng.uniform(-1.5, 1.5)))
        else:
            last = g.apply(kind, pick[0])
        pool.append(last)
    parents = g.parents()
    for i in range(len(parents) - 1):
        if not parents[i]:
            last = g.apply("add", last, i)
    return m.problem("random", shape)


BUILDERS = {"mlp": mlp, "cnn": cnn, "rnn": rnn, "residual": residual, "attention": attention}
ARCHITECTURES = tuple(BUILDERS)


def build(architecture, seed=0, dtype="float64", **sizes):
    """The Problem of a named architecture (one of ARCHITECTURES)."""
    if architecture not in BUILDERS:
        raise SimulatorError(f"pc: unknown architecture {architecture!r}; "
                             f"expected one of {', '.join(ARCHITECTURES)}")
    return BUILDERS[architecture](seed=seed, dtype=dtype, **sizes)
