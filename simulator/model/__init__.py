"""The model core: ``Model`` (graph.py), the layer kinds and their strided
windows (layers.py), scene layer dicts (spec.py), backprop on any Model
(reference.py), importers of PyTorch modules (torch_import.py) and NIR graphs
(nir_import.py), whose optional packages load only when called.
"""
from . import reference
from .graph import Model, Vertex
from .layers import KINDS
from .spec import LayerError

__all__ = ["KINDS", "LayerError", "Model", "Vertex", "reference"]
