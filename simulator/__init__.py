"""tickprop: backprop diffusion in time-delayed networks, and its relatives.

Public API (re-exported explicitly): Network, Model, Engine, reference, SimulatorError.
"""
from . import reference
from .engine import Engine
from .errors import SimulatorError
from .model import Model
from .network import Network

__all__ = ["Engine", "Model", "Network", "reference", "SimulatorError"]
__version__ = "0.1.0"
