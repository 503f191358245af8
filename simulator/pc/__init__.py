"""Predictive coding on computational graphs (Salvatori et al., paper 002):
graph.py (ops, VJPs, BP), levelling.py (Algorithm 2), inference.py (IL, Z-IL),
builders.py (the five test graphs), tables.py (Tables 1 and 2)."""
