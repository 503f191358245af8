"""tickprop: backprop diffusion in time-delayed networks, and its relatives.

Public API: simulate (a diffusion scene -> Trace), Trace, Model (``Model.chain``,
``Model.from_layers``), Network (its deprecated chain alias), Engine, GraphEngine,
sync_set, reference (the float64 backprop oracle), SimulatorError. The figure
builders are in simulator.render (it loads matplotlib, so not imported here).
"""
from .api import simulate
from .engine import Engine
from .errors import SimulatorError
from .model import Model, reference
from .engine.tick import GraphEngine, sync_set
from .network import Network
from .probes import Trace
from .version import __version__
from .view import trace_html

# The notebook viewer is drawn by view/ (a floor above probes/): wired here, at the top.
Trace.html_viewer = staticmethod(trace_html)

__all__ = ["Engine", "GraphEngine", "Model", "Network", "reference", "simulate", "SimulatorError",
           "sync_set", "Trace"]
