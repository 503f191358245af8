"""tickprop: backprop diffusion in time-delayed networks, and its relatives.

Public API (re-exported explicitly): Network, Engine, reference, SimulatorError.
"""
from . import reference
from .engine import Engine
from .errors import SimulatorError
from .network import Network

__all__ = ["Engine", "Network", "reference", "SimulatorError"]
__version__ = "0.1.0"
