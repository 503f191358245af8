"""Predictive coding on computational graphs (Salvatori et al., paper 002).

graph.py (elementary ops with VJPs, forward pass and reference backprop),
levelling.py (Algorithm 2), inference.py (IL, Z-IL, the error wave as
``simulator.rules.predictive_coding.ErrorWave``),
builders.py (MLP, CNN, RNN, residual and attention graphs), tables.py
(Tables 1 and 2), as_model.py (``from_graph``: such a graph rebuilt as a Model
where the model core can hold it).
"""
from .builders import ARCHITECTURES, build
from .graph import Graph, backprop, bp_update
from .inference import PCResult, error_wave, il, zil, zil_wave
from .levelling import is_levelled, level
from .tables import format_markdown, table1, table2, write_csv

__all__ = ["ARCHITECTURES", "build", "Graph", "backprop", "bp_update",
           "PCResult", "error_wave", "il", "zil", "zil_wave", "is_levelled", "level",
           "format_markdown", "table1", "table2", "write_csv"]
