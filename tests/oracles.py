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
