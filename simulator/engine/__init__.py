"""The tick engine (SPEC §1 on any Model) and its one door, ``Engine(model, ...)``.

The package: ``tick`` (GraphEngine: options resolved once, the generic step
over the array-API namespace), ``fast`` (the numpy executor: preallocated
buffers, equal-shape runs stacked), ``compiled``/``compiled_step`` (the jax
executor: jit + lax.scan of the same step), ``tags`` (the provenance tags)
and ``drive`` (streams fed to an engine in chunks).

A chain (``Model.chain``, or its deprecated alias ``Network``, which is a
chain Model) and any graph ``Model`` run on the one graph engine
(``simulator.engine.tick.GraphEngine``: SPEC §1 vertex by vertex, equal-width
runs of dense layers stacked without padding under every option set). A
chain's layer l (1..L) is named str(l), so ``parameters()`` holds "l.W" and
``activity(l)``/``delta(l)`` address layer l.

The padded stacked chain engine this door used to build for a ``Network`` is
gone; its accessors map to the graph engine's: ``weights()[i]`` and
``biases()[i]`` → ``parameters()["{i+1}.W"]``/``["{i+1}.b"]``,
``gradients()[i]``/``bias_gradients()[i]`` → ``gradients()["{i+1}.W"]``/
``["{i+1}.b"]``, ``feedback_matrices()`` → ``feedback_weights()``,
``network()`` → ``current_model()``.
"""
from ..arguments import check_type
from ..model import Model
from .tick import GraphEngine


class Engine(GraphEngine):
    """Backprop diffusion on a time-delayed network (Betti & Gori, Eqs. 1–5)
    for any ``Model``: the keywords, state accessors and run of ``GraphEngine``
    (``gradients()``/``parameters()`` keyed like ``model.parameters()``,
    "l.W" for layer l of a chain)."""

    def __init__(self, network, *args, **kwargs):
        check_type("Engine", "network", network, Model,
                   "a simulator.Model (Model.chain(sizes, ...) for a chain)")
        super().__init__(network, *args, **kwargs)
