"""Which layer or vertex each picture row shows, the one place chain and graph
traces differ: a chain's layer l on row l with ls = (L+1)/2 marked (Eq. 6; two
layers for even L); a graph's vertices in level order with its sync set (fact
C′) marked and its edges, so a picture can show skip connections.
"""
from dataclasses import dataclass, field

import numpy as np

from ..engine.tick import synchronized_layers
from ..model.graph import IDENTITY_PREFIX, delay_names

INPUT = "input"


@dataclass(frozen=True)
class Rows:
    """Row r of a picture shows trace column ``order[r]``, named ``labels[r]``; ``sync``
    lists the synchronized rows, ``sync_label`` names the mark ("ls=5", "sync set"...);
    ``edges``: (parent row, child row, level gap) of a graph; ``identity[r]``: an identity
    vertex inserted by levelling; ``axis_label`` titles the row axis; ``names[r]``: the
    vertex's name (an identity: "h +2 ticks", its source delayed)."""
    order: np.ndarray
    labels: list
    sync: tuple
    sync_label: str
    graph: bool = False
    edges: list = field(default_factory=list)
    identity: tuple = ()
    axis_label: str = "layer (0 = input)"
    names: list = field(default_factory=list)

    def __len__(self):
        return len(self.order)

    def position(self, column):
        """The row that shows trace column ``column``."""
        return int(np.flatnonzero(self.order == column)[0])


def picture_rows(trace):
    """The Rows of ``trace``, a graph's if it has ``vertex_names``, else a chain's."""
    if "vertex_names" not in trace:         # a chain: layer l on row l
        n = int(trace.depth) + 1
        sync = tuple(int(l) for l in synchronized_layers(n - 1))
        label = f"ls={sync[0]}" if len(sync) == 1 else "closest\n{},{}".format(*sync)
        labels = [str(l) for l in range(n)]
        return Rows(np.arange(n), labels, sync, label, identity=(False,) * n, names=labels)
    names = [str(n) for n in trace["vertex_names"]]
    levels = np.asarray(trace["vertex_levels"], dtype=int)
    order = np.array(sorted(range(len(names)), key=lambda v: (levels[v], v)))
    position = np.argsort(order)            # the row of each vertex
    sync = sorted(int(position[v]) for v in np.flatnonzero(trace["vertex_sync"]))
    pairs = graph_edges(trace, names)
    edges = [(int(position[p]), int(position[c]), int(levels[c] - levels[p])) for p, c in pairs]
    shown = delay_names(names, pairs)
    return Rows(order, [f"{shown[v]} ({levels[v]})" for v in order], tuple(sync),
                "sync set", graph=True, edges=edges,
                identity=tuple(names[v].startswith(IDENTITY_PREFIX) for v in order),
                axis_label="vertex (level)", names=[shown[v] for v in order])


def graph_edges(trace, names):
    """(parent column, child column) of every edge of a graph trace: its
    ``vertex_edges``, else (an older trace) rebuilt from the scene's layers'
    ``from`` lists and levelling's identity vertices (``Model.level``: p → v,
    the k-th parent, becomes p → _id_v_k_0 → … → v); [] if neither is there."""
    if "vertex_edges" in trace:
        return [(int(p), int(c)) for p, c in np.asarray(trace["vertex_edges"]).reshape(-1, 2)]
    meta = trace.meta if isinstance(trace.meta, dict) else {}
    layers = meta.get("scene", {}).get("network", {}).get("layers") or []
    index = {n: i for i, n in enumerate(names)}
    edges, previous = [], INPUT
    for layer in layers:
        child = str(layer.get("name", ""))
        parents = layer.get("from", previous)
        parents = [parents] if isinstance(parents, str) else list(parents)
        previous = child
        for k, parent in enumerate(parents):
            chain = [str(parent)]
            while identity := _identity(index, child, k, len(chain) - 1):
                chain.append(identity)
            chain.append(child)
            edges += [(index[a], index[b]) for a, b in zip(chain, chain[1:])
                      if a in index and b in index]
    return edges


def _identity(index, child, k, step):
    """The name of identity ``step`` on the edge k of ``child`` ('' if none);
    levelling appends '_' to a name already taken."""
    name = f"{IDENTITY_PREFIX}{child}_{k}_{step}"
    return next((name + "_" * n for n in range(4) if name + "_" * n in index), "")
