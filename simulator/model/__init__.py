"""The model core: ``Model`` (graph.py), the layer kinds (layers.py), scene
layer dicts (spec.py), backprop on any Model (reference.py) and the strided
gathers of conv and pool (windows.py).
"""
from . import reference
from .graph import Model, Vertex
from .layers import KINDS
from .spec import LayerError

__all__ = ["KINDS", "LayerError", "Model", "Vertex", "reference"]
