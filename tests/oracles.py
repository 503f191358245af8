"""Independent oracles the tests measure against: central finite differences of
the loss (no backprop anywhere) and small helpers to drive an engine."""
import numpy as np
from array_api_compat import array_namespace

from simulator.backend import to_host
from simulator.model import reference


def central_difference(loss_of, params, key, eps=1e-6):
    """∂ loss_of(params) / ∂ params[key] by central differences, entry by
    entry (``loss_of`` takes a parameter dict and returns the loss)."""
    g = np.zeros_like(params[key])
    for idx in np.ndindex(g.shape):
        plus, minus = dict(params), dict(params)
        plus[key], minus[key] = params[key].copy(), params[key].copy()
        plus[key][idx] += eps
        minus[key][idx] -= eps
        g[idx] = (loss_of(plus) - loss_of(minus)) / (2 * eps)
    return g


def finite_difference(model, u, y, loss="mse", eps=1e-6, kind="W"):
    """∂ℓ/∂p by central differences of the instantaneous loss (the forward pass
    alone, no backprop), for every entry of every parameter "<layer>.<kind>"
    of the Model (a chain: W_0 … W_{L-1}, or the biases with kind="b"), as a
    list in ``parameters()`` order."""
    params = model.parameters()

    def loss_of(p):
        return reference.loss_value(model, u, y, loss, p)
    return [central_difference(loss_of, params, key, eps)
            for key in params if key.endswith(f".{kind}")]


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
    of simulator.engine.tick.distances)."""
    into = {"input": {0}}
    for v in model.vertices[1:]:
        into[v.name] = {n + 1 for p in model.parents(v.name) for n in into[p]}
    out_of = {model.names[-1]: {0}}
    for v in reversed(model.vertices[:-1]):
        out_of[v.name] = {n + 1 for c in model.children(v.name) for n in out_of[c]}
    return into, out_of


def per_layer(params, key="W"):
    """A chain's arrays keyed like ``Model.chain``'s parameters ("1.W",
    "2.W", …, what ``Engine(network).gradients()``/``parameters()``/
    ``feedback_weights()`` give) as a list in layer order: entry i is W_i's."""
    n = sum(k.endswith("." + key) for k in params)
    return [params[f"{l}.{key}"] for l in range(1, n + 1)]


def chain_forward(model, u):
    """(xs, ds) of a chain Model by the oracle: x^l for l = 0..L and σ'_l at
    layer l's pre-activation (ds[0] is None)."""
    pres, outs = reference.evaluate(model, u)
    xp = array_namespace(u)
    return outs, [None] + [v.layer.derivative(xp, pres[v.index]) for v in model.vertices[1:]]


def chain_backprop(model, u, y, loss="mse", feedback=None):
    """∂ℓ/∂W of a chain Model by the oracle, as a list (layer 1 first);
    ``feedback`` optionally replaces W_l (l >= 1) in the backward pass, a list
    shaped like the weights (entry 0 is never read)."""
    fb = None if feedback is None else {f"{l + 1}.W": b for l, b in enumerate(feedback) if l}
    grads = reference.backprop(model, u, y, loss, feedback=fb)
    return [g for k, g in grads.items() if k.endswith(".W")]
