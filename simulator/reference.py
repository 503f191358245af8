"""Instantaneous backprop: the oracle the tick engine is measured against.

Deliberately plain — one loop forward, one loop backward, no padding, no
stacking, no history — so that it shares nothing with the engine's tick
machinery but the definitions of σ and ℓ (which finite differences check).
"""
from array_api_compat import array_namespace

from .arguments import check_array, check_type, fail
from .model import Model
from .model import reference as graph_reference
from .network import Network, activate
from .options import LOSSES, loss_and_grad


def check_call(call, network, u, y=None, loss=None, feedback=None, target=True):
    """The arguments of a public chain-oracle call checked once, where it
    enters: ``network`` a Network, ``u`` a numeric (batch, n_0) array, ``y``
    (batch, n_L) and ``loss`` a known name (unless ``target`` is False: a
    forward pass), ``feedback`` one array shaped like
    each weight matrix (feedback[0] is never read and may be None)."""
    check_type(call, "network", network, Network, "a simulator.Network (a Model goes to "
               "simulator.model.reference)")
    sizes = network.sizes
    check_array(call, "u", u, ndim=2)
    if u.shape[1] != sizes[0]:
        fail(call, "u", f"an array of shape (batch, {sizes[0]})", u)
    if target:
        check_array(call, "y", y, shape=(u.shape[0], sizes[-1]))
    if target and (not isinstance(loss, str) or loss not in LOSSES):
        fail(call, "loss", f"one of {', '.join(LOSSES)}", loss)
    if feedback is not None:
        if not isinstance(feedback, (list, tuple)) or len(feedback) != network.depth:
            fail(call, "feedback", f"a list of {network.depth} arrays shaped like the weights",
                 feedback)
        for i, (b, w) in enumerate(zip(feedback, network.weights)):
            if (i or b is not None) and tuple(getattr(b, "shape", ())) != w.shape:
                fail(call, f"feedback[{i}]", f"an array of shape {w.shape}", b)


def _params(xp, network, dtype):
    ws = [xp.asarray(w, dtype=dtype) for w in network.weights]
    bs = [xp.asarray(b, dtype=dtype) for b in network.biases]
    return ws, bs


def forward(network, u):
    """Layer outputs x^0..x^L and σ' per layer (index 0 is None) for batch u."""
    check_call("reference.forward", network, u, target=False)
    xp = array_namespace(u)
    ws, bs = _params(xp, network, u.dtype)
    return _forward(xp, ws, bs, network.activations, u)


def forward_arrays(ws, bs, activations, u):
    """``forward`` with weights ``ws`` and biases ``bs`` already arrays of u's
    namespace and dtype (kept on a device across calls)."""
    return _forward(array_namespace(u), ws, bs, activations, u)


def _forward(xp, ws, bs, activations, u):
    xs, ds = [u], [None]
    for w, b, act in zip(ws, bs, activations):
        x, d = activate(xp, act, xs[-1] @ xp.matrix_transpose(w) + b)
        xs.append(x)
        ds.append(d)
    return xs, ds


def factors(network, u, y, loss="mse", feedback=None):
    """Per-layer (x^{l-1}, δ^l) for l = 1..L, so that ∂ℓ/∂W_{l-1} = δ^lᵀ x^{l-1}.

    Ordinary backprop: δ^L = σ'_L ⊙ ∂ℓ/∂x^L, δ^l = σ'_l ⊙ (δ^{l+1} W_l).
    ``feedback`` optionally replaces W_l in the backward pass (list of arrays
    shaped like the weights), for feedback-alignment baselines.
    Also returns the loss (summed over the batch).
    """
    check_call("reference.factors", network, u, y, loss, feedback)
    xp = array_namespace(u)
    ws, bs = _params(xp, network, u.dtype)
    return factors_of(ws, bs, network.activations, u, y, loss,
                      ws if feedback is None else feedback)


def factors_of(weights, biases, activations, u, y, loss="mse", feedback=None):
    """`factors` for weights and biases given as arrays in u's namespace
    (what a probe holds during a run, so no host round trip is needed)."""
    xp = array_namespace(u)
    xs, ds = _forward(xp, weights, biases, activations, u)
    value, grad = loss_and_grad(xp, loss, xs[-1], y)
    back = weights if feedback is None else feedback
    deltas = [None] * len(xs)
    deltas[-1] = ds[-1] * grad
    for l in range(len(xs) - 2, 0, -1):
        deltas[l] = ds[l] * (deltas[l + 1] @ back[l])
    return [(xs[l - 1], deltas[l]) for l in range(1, len(xs))], value


def backprop(network, u, y, loss="mse"):
    """∂ℓ/∂W_i for i = 0..L-1, summed over the batch, in the layout of the weights.
    For a ``simulator.Model`` (a graph of layers): the dict of
    ``simulator.model.reference.backprop``, keyed like ``model.parameters()``."""
    if isinstance(network, Model):
        return graph_reference.backprop(network, u, y, loss)
    check_call("reference.backprop", network, u, y, loss)
    xp = array_namespace(u)
    pairs, _ = factors(network, u, y, loss)
    return [xp.matrix_transpose(d) @ x for x, d in pairs]


def backprop_biases(network, u, y, loss="mse"):
    """∂ℓ/∂b_i for i = 0..L-1, summed over the batch."""
    check_call("reference.backprop_biases", network, u, y, loss)
    xp = array_namespace(u)
    pairs, _ = factors(network, u, y, loss)
    return [xp.sum(d, axis=0) for _, d in pairs]


def loss_value(network, u, y, loss="mse"):
    """ℓ(u, y) of the instantaneous network (or Model), summed over the batch."""
    if isinstance(network, Model):
        return graph_reference.loss_value(network, u, y, loss)
    check_call("reference.loss_value", network, u, y, loss)
    xp = array_namespace(u)
    xs, _ = forward(network, u)
    return loss_and_grad(xp, loss, xs[-1], y)[0]
