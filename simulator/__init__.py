"""tickprop: backprop diffusion in time-delayed networks, and its relatives.

Public API (re-exported explicitly): Network, Model, Engine (a GraphEngine for a
Model), GraphEngine, sync_set, reference, SimulatorError.
"""
from . import reference
from .engine import Engine
from .errors import SimulatorError
from .model import Model
from .model.tick import GraphEngine, sync_set
from .network import Network

__all__ = ["Engine", "GraphEngine", "Model", "Network", "reference", "SimulatorError", "sync_set"]
__version__ = "0.1.0"
