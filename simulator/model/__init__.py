"""The model core: a directed acyclic graph of layer vertices over one input.

``Model`` (graph.py) holds the vertices and host parameters; ``layers`` the
layer kinds (value, VJP, parameter gradient — the conventions are documented
there); ``spec`` the layer dicts a scene holds; ``reference`` instantaneous
backprop on any Model; ``windows`` the strided gathers of conv and pool.
(A Model from one of paper 002's elementary-op graphs: ``from_graph`` of
``simulator.experiments.pc.as_model``.)
"""
from . import reference
from .graph import Model, Vertex
from .layers import KINDS
from .spec import LayerError

__all__ = ["KINDS", "LayerError", "Model", "Vertex", "reference"]
