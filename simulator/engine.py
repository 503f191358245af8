"""The one door to the tick engine: ``Engine(network_or_model, ...)``.

A chain (``Network``, or ``Model.chain``) and any graph ``Model`` run on the
one graph engine (``simulator.model.tick.GraphEngine``: SPEC §1 vertex by
vertex, equal-width runs of dense layers stacked without padding under every
option set). A ``Network`` is converted by ``Model.from_network``: the same
weights and biases, layer l (1..L) named str(l), so ``parameters()`` holds
"l.W" = network.weights[l−1] and ``activity(l)``/``delta(l)`` address layer l.

The padded stacked chain engine this door used to build for a ``Network`` is
gone; its accessors map to the graph engine's: ``weights()[i]`` and
``biases()[i]`` → ``parameters()["{i+1}.W"]``/``["{i+1}.b"]``,
``gradients()[i]``/``bias_gradients()[i]`` → ``gradients()["{i+1}.W"]``/
``["{i+1}.b"]``, ``feedback_matrices()`` → ``feedback_weights()``,
``network()`` → ``current_model().to_network()``.
"""
from .arguments import check_type
from .model import Model
from .model.tick import GraphEngine
from .network import Network


class Engine(GraphEngine):
    """Backprop diffusion on a time-delayed network (Betti & Gori, Eqs. 1–5),
    for a ``Network`` (run as ``Model.from_network(network)``) or any
    ``Model``: the keywords, state accessors and run of ``GraphEngine``
    (``gradients()``/``parameters()`` keyed like ``model.parameters()``,
    "l.W" for layer l of a chain)."""

    def __init__(self, network, *args, **kwargs):
        check_type("Engine", "network", network, (Network, Model),
                   "a simulator.Network or simulator.Model")
        if isinstance(network, Network):
            network = Model.from_network(network)
        super().__init__(network, *args, **kwargs)
