"""The tick engine (on any Model) and its one door, ``Engine(model, ...)``.

``tick`` (GraphEngine: options resolved once, the generic step, the
provenance tags), ``fast`` (the numpy executor), ``compiled`` (the jax
executor) and ``drive`` (streams fed in chunks). A chain's layer l is the
vertex named str(l): parameters "l.W", ``activity(l)``.
"""
from ..arguments import check_type
from ..model import Model
from .tick import GraphEngine


class Engine(GraphEngine):
    """Backprop diffusion on a time-delayed network (Betti & Gori, Eqs. 1–5)
    for any ``Model``: ``GraphEngine`` under its public name."""

    def __init__(self, network, *args, **kwargs):
        check_type("Engine", "network", network, Model,
                   "a simulator.Model (Model.chain(sizes, ...) for a chain)")
        super().__init__(network, *args, **kwargs)
