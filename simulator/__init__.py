"""tickprop: backprop diffusion in time-delayed networks, and its relatives.

Public API: simulate (a diffusion scene -> Trace), Trace, Model (``Model.chain``,
``Model.from_layers``), Network (its deprecated chain alias), Engine, GraphEngine,
sync_set, reference (the float64 backprop oracle), SimulatorError; the figures are in
simulator.render (it loads matplotlib). The names load on first use (PEP 562), so
``import simulator`` reads no numpy: simulator.__main__ sets its start-up Ctrl-C
handler before anything heavy is imported.
"""
import importlib
from typing import TYPE_CHECKING

from .version import __version__

if TYPE_CHECKING:                  # the same names, for readers and static tools
    from .api import simulate
    from .engine import Engine
    from .engine.tick import GraphEngine, sync_set
    from .errors import SimulatorError
    from .model import Model, reference
    from .network import Network
    from .probes import Trace

_HOME = {"simulate": "api", "Engine": "engine", "GraphEngine": "engine.tick",
         "sync_set": "engine.tick", "SimulatorError": "errors", "Model": "model",
         "reference": "model", "Network": "network", "Trace": "probes"}

__all__ = ["Engine", "GraphEngine", "Model", "Network", "reference", "simulate", "SimulatorError",
           "sync_set", "Trace"]


def __getattr__(name):
    if name not in _HOME:
        raise AttributeError(f"module 'simulator' has no attribute {name!r}")
    importlib.import_module(".view", __name__)     # wires Trace's notebook viewer
    value = getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
