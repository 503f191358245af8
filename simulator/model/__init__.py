"""The model core: ``Model`` (graph.py), the layer kinds and their strided
windows (layers.py), scene layer dicts (spec.py), backprop on any Model
(reference.py).
"""
from . import reference
from .graph import Model, Vertex
from .layers import KINDS
from .spec import LayerError

__all__ = ["KINDS", "LayerError", "Model", "Vertex", "reference"]
