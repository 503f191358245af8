"""Layer sizes, activations (σ and σ'), weights and their initialisation.

A Network is a plain description on the host (float64 numpy arrays); engines,
the reference and the relaxation code copy it to their own device and dtype.
"""
import numpy as np

from .arguments import check_int, check_number, check_seed, fail
from .backend import rng
from .errors import SimulatorError


def _tanh(xp, a):
    x = xp.tanh(a)
    return x, 1.0 - x * x


def _logistic(xp, a):
    x = 1.0 / (1.0 + xp.exp(-a))
    return x, x * (1.0 - x)


def _relu(xp, a):
    x = xp.maximum(a, xp.zeros_like(a))
    return x, xp.astype(a > 0, a.dtype)


def _linear(xp, a):
    return a, xp.ones_like(a)


# name -> f(xp, a) returning (σ(a), σ'(a)); σ(0) = 0 except for logistic,
# which matters to the engine's zero padding.
ACTIVATIONS = {"tanh": _tanh, "logistic": _logistic, "relu": _relu, "linear": _linear}
ZERO_AT_ZERO = {"tanh": True, "logistic": False, "relu": True, "linear": True}


def activate(xp, name, a):
    """σ(a) and σ'(a) of the named activation, in a's namespace."""
    return ACTIVATIONS[name](xp, a)


def _check_activation(name):
    if not isinstance(name, str) or name not in ACTIVATIONS:
        raise SimulatorError(f"unknown activation {name!r}; expected one of "
                             f"{', '.join(ACTIVATIONS)}")
    return name


def _float_arrays(name, values):
    """Network's ``weights`` or ``biases``: a list of float64 copies, each
    entry made of numbers (one SimulatorError naming the entry if not)."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        fail("Network", name, "a list of arrays, one per layer", values)
    out = []
    for i, v in enumerate(values):
        try:
            out.append(np.array(v, dtype=np.float64))
        except (TypeError, ValueError):
            fail("Network", f"{name}[{i}]", "an array of numbers", v)
    return out


class Network:
    """Weights W_l (n_{l+1} x n_l), biases b_l (n_{l+1}) and activations σ_{l+1}.

    ``activations[i]`` names σ of layer i+1 (a single name applies to all
    layers). Layers are l = 0..L with L = len(weights); layer 0 is the input.
    """

    def __init__(self, weights, biases=None, activations="tanh"):
        weights = _float_arrays("weights", weights)
        if not weights:
            raise SimulatorError("a network needs at least one weight matrix (L >= 1)")
        for i, w in enumerate(weights):
            if w.ndim != 2:
                raise SimulatorError(f"weights[{i}] must be 2-D, got shape {w.shape}")
            if i and w.shape[1] != weights[i - 1].shape[0]:
                raise SimulatorError(
                    f"weights[{i}] has {w.shape[1]} columns but layer {i} has "
                    f"{weights[i - 1].shape[0]} neurons")
        if biases is None:
            biases = [np.zeros(w.shape[0]) for w in weights]
        biases = [b.reshape(-1) for b in _float_arrays("biases", biases)]
        if len(biases) != len(weights) or any(
                b.shape[0] != w.shape[0] for b, w in zip(biases, weights)):
            raise SimulatorError("biases must be one vector of n_{l+1} entries per weight matrix")
        if isinstance(activations, str):
            activations = [activations] * len(weights)
        if not isinstance(activations, (list, tuple)):
            fail("Network", "activations", f"a name ({', '.join(ACTIVATIONS)}) or a list of "
                 "one per layer", activations)
        activations = [_check_activation(a) for a in activations]
        if len(activations) != len(weights):
            raise SimulatorError(f"{len(activations)} activations for {len(weights)} layers")
        self.weights, self.biases, self.activations = weights, biases, activations

    @property
    def depth(self):
        """L, the index of the output layer."""
        return len(self.weights)

    @property
    def sizes(self):
        return [self.weights[0].shape[1]] + [w.shape[0] for w in self.weights]

    @classmethod
    def random(cls, sizes, activations="tanh", seed=0, scale=1.0, bias_scale=0.0):
        """Gaussian weights N(0, scale²/n_in) and biases N(0, bias_scale²)."""
        call = "Network.random"
        if not isinstance(sizes, (list, tuple, np.ndarray)) or len(sizes) < 2:
            fail(call, "sizes", "a list of at least two widths (layers 0..L)", sizes)
        sizes = [check_int(call, f"sizes[{i}]", n, 1) for i, n in enumerate(sizes)]
        check_seed(call, seed)
        scale = check_number(call, "scale", scale, 0.0)
        bias_scale = check_number(call, "bias_scale", bias_scale, 0.0)
        g = rng(seed)
        weights = [g.normal(0.0, scale / np.sqrt(n_in), (n_out, n_in))
                   for n_in, n_out in zip(sizes[:-1], sizes[1:])]
        biases = [g.normal(0.0, bias_scale, n_out) if bias_scale else np.zeros(n_out)
                  for n_out in sizes[1:]]
        return cls(weights, biases, activations)

    def copy(self):
        return Network([w.copy() for w in self.weights],
                       [b.copy() for b in self.biases], list(self.activations))

    def __repr__(self):
        return f"Network(sizes={self.sizes}, activations={self.activations})"
