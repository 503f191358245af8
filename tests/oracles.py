"""Independent oracles the tests measure against: central finite differences of
the loss (no backprop anywhere) and small helpers to drive an engine."""
import numpy as np

from simulator import reference
from simulator.backend import to_host


def finite_difference(net, u, y, loss="mse", eps=1e-6):
    """∂ℓ/∂W_i by central differences of the instantaneous loss, for every weight."""
    grads = []
    for i, w in enumerate(net.weights):
        g = np.zeros_like(w)
        for idx in np.ndindex(w.shape):
            plus, minus = net.copy(), net.copy()
            plus.weights[i][idx] += eps
            minus.weights[i][idx] -= eps
            g[idx] = (reference.loss_value(plus, u, y, loss)
                      - reference.loss_value(minus, u, y, loss)) / (2 * eps)
        grads.append(g)
    return grads


def host(arrays):
    return [np.asarray(to_host(a)) for a in arrays]


def max_rel(got, want):
    """Largest ‖got_i − want_i‖/‖want_i‖ over the layers."""
    return max(np.linalg.norm(g - w) / max(np.linalg.norm(w), 1e-300) for g, w in zip(got, want))


def layer_rel(got, want):
    return [np.linalg.norm(g - w) / max(np.linalg.norm(w), 1e-300) for g, w in zip(got, want)]


def paths(model):
    """(into, out_of): per vertex name, the set of lengths of every path from the
    input to it and from it to the output, walked from the edges (independent
    of simulator.model.tick.distances)."""
    into = {"input": {0}}
    for v in model.vertices[1:]:
        into[v.name] = {n + 1 for p in model.parents(v.name) for n in into[p]}
    out_of = {model.names[-1]: {0}}
    for v in reversed(model.vertices[:-1]):
        out_of[v.name] = {n + 1 for c in model.children(v.name) for n in out_of[c]}
    return into, out_of


def per_layer(params, key="W"):
    """A chain's arrays keyed like ``Model.from_network``'s parameters ("1.W",
    "2.W", …, what ``Engine(network).gradients()``/``parameters()``/
    ``feedback_weights()`` give) as a list in layer order: entry i is W_i's."""
    n = sum(k.endswith("." + key) for k in params)
    return [params[f"{l}.{key}"] for l in range(1, n + 1)]
