"""Levels of a computational graph, and Algorithm 2: levelling by identity vertices.

The level structure S_k of Salvatori et al. (Eq. 14) puts a vertex in S_k when
some path of length k joins it to the output. A graph is *levelled* when every
vertex lies in exactly one S_k, i.e. all of its paths to the output have the
same length; then the error wave of Z-IL reaches each vertex at one tick.
"""
from ...errors import SimulatorError
from .graph import Graph, Vertex


def distances(graph):
    """(d_min, d_max) per vertex: the shortest and longest path length to the
    output (the paper's d_i is the shortest). Raises if a vertex cannot reach
    the output, since it would never receive an error."""
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
    """True when every vertex belongs to a single level S_k (Eq. 14); with
    ``leaves=False`` only the op vertices are required to."""
    return not _mixed(graph, leaves)


def levels(graph, leaves=True):
    """The level (distance to the output) of every vertex of a levelled graph
    (with ``leaves=False``, leaves may have several levels and get their longest)."""
    bad = _mixed(graph, leaves)
    if bad:
        names = ", ".join(graph.vertices[i].name for i in bad[:5])
        raise SimulatorError(f"graph is not levelled: {names} lie on paths "
                             "of different lengths (level it with levelling.level)")
    return distances(graph)[1]


def level(graph, leaves=True):
    """Algorithm 2 of Salvatori et al.: a levelled copy of ``graph``.

    Every vertex is given the level D = its longest distance to the output;
    each edge from vertex i to a parent j is then replaced by a chain of
    D_i − D_j − 1 identity vertices (Eq. 15), so every edge spans exactly one
    level. Identities compute nothing, so outputs and BP gradients are those
    of the original graph; leaf names are kept, so the same values apply.
    With ``leaves=False`` edges out of leaves are left alone: a parameter
    shared by several levels (an RNN's weights) then keeps one level per use
    instead of being copied down identity chains, which Z-IL does not need
    because it lets each use of a parameter learn when the wave reaches it.
    """
    _, depth = distances(graph)
    out = Graph()
    new_index = []
    for j, v in enumerate(graph.vertices):
        if v.is_leaf:
            new_index.append(out.leaf(v.name, v.kind))
            continue
        args = []
        for pos, a in enumerate(v.args):
            k = new_index[a]
            gap = depth[a] - depth[j] - 1 if leaves or not graph.vertices[a].is_leaf else 0
            for step in range(gap):
                k = out.apply("identity", k, name=f"id:{v.name}.{pos}:{step}")
            args.append(k)
        new_index.append(out._add(Vertex(v.name, v.kind, v.op, tuple(args), v.attrs)))
    return out


def inserted_identities(original, levelled):
    """How many identity vertices Algorithm 2 added."""
    return len(levelled) - len(original)
