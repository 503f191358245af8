"""Predictive coding on computational graphs of elementary operations (Salvatori
et al. 2022): graph.py (ops, forward, backprop), levelling.py (Algorithm 2),
inference.py (IL, Z-IL, the error wave), builders.py (the five graphs), tables.py
(Tables 1 and 2), as_model.py (such a graph as a Model where the core can hold it)."""
from .builders import build
from .inference import zil
from .levelling import level

__all__ = ["build", "level", "zil"]
