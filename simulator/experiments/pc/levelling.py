"""Levels of a computational graph (Eq. 14: S_k holds the vertices a path of length
k joins to the output; *levelled*: each vertex in one S_k, so Z-IL's error wave
reaches it at one tick), and Algorithm 2: levelling by identity vertices."""
from dataclasses import replace

from ...errors import SimulatorError
from .graph import Graph


def distances(graph):
    """(d_min, d_max) per vertex: the shortest (the paper's d_i) and longest path
    length to the output. SimulatorError if a vertex does not reach it."""
    return graph.cached("distances", _distances)


def _distances(graph):
    n = len(graph)
    dmin, dmax = [None] * n, [None] * n
    dmin[graph.output] = dmax[graph.output] = 0
    parents = graph.parents()
    for i in range(n - 2, -1, -1):  # parents come after their arguments
        if not parents[i]:
            raise SimulatorError(
                f"graph: vertex {graph.vertices[i].name!r} does not reach the output")
        dmin[i] = 1 + min(dmin[p] for p in parents[i])
        dmax[i] = 1 + max(dmax[p] for p in parents[i])
    return dmin, dmax


def _mixed(graph, leaves):
    """Vertices that lie on paths of different lengths (leaves only if ``leaves``)."""
    dmin, dmax = distances(graph)
    return [i for i, v in enumerate(graph.vertices)
            if dmin[i] != dmax[i] and (leaves or not v.is_leaf)]


def is_levelled(graph, leaves=True):
    """Every vertex (``leaves=False``: every op vertex) in a single level S_k."""
    return not _mixed(graph, leaves)


def levels(graph, leaves=True):
    """The level of every vertex of a levelled graph (``leaves=False``: leaves
    may lie on several and get their longest)."""
    bad = _mixed(graph, leaves)
    if bad:
        names = ", ".join(graph.vertices[i].name for i in bad[:5])
        raise SimulatorError(f"graph is not levelled: {names} lie on paths "
                             "of different lengths (level it with levelling.level)")
    return distances(graph)[1]


def level(graph, leaves=True):
    """Algorithm 2: a levelled copy of ``graph``, each edge from i to a parent j
    replaced by a chain of D_i − D_j − 1 identities (Eq. 15, D the longest
    distance to the output). Outputs, gradients and leaf names stay those of
    ``graph``. ``leaves=False`` leaves edges out of leaves alone: a shared
    parameter keeps one level per use (Z-IL lets each use learn on arrival)."""
    _, depth = distances(graph)
    out = Graph()
    new_index = []
    for j, v in enumerate(graph.vertices):
        args = []
        for pos, a in enumerate(v.args):
            k = new_index[a]
            gap = depth[a] - depth[j] - 1 if leaves or not graph.vertices[a].is_leaf else 0
            for step in range(gap):
                k = out.apply("identity", k, name=f"id:{v.name}.{pos}:{step}")
            args.append(k)
        new_index.append(out._add(replace(v, args=tuple(args))))
    return out


def inserted_identities(original, levelled):
    """How many identity vertices Algorithm 2 added."""
    return len(levelled) - len(original)
