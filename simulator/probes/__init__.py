"""What a run records and what it costs, and the Trace it produces.

``plan``: RecordPlan (which arrays a run keeps, every ``record.every`` ticks)
and RunBudget (everything a diffusion run allocates, refused
before it is);
``recorder``: the one Recorder that fills those arrays from any engine of a
Model, its metrics per ``vertex`` (Gram products through ``ring``, which
also places reference ring slots); ``tags``: provenance tags in closed
form (TagClock, read off the engine as it runs); ``trace``: the Trace
(trace.npz plus run.json) and its SCHEMA.
"""
from .plan import (BLOCK_BYTES, RecordPlan, RunBudget, block_ticks,
                   distinct_frames, format_bytes, parse_bytes, states_in_place)
from .recorder import REFERENCES, Recorder
from .ring import gram, repeat_sources, ring_pieces
from .tags import TagClock
from .trace import METRIC_KEYS, SCHEMA, TAG_KEYS, Trace, schema_of

__all__ = ["BLOCK_BYTES", "METRIC_KEYS", "REFERENCES", "SCHEMA", "TAG_KEYS",
           "RecordPlan", "Recorder", "RunBudget", "TagClock", "Trace", "block_ticks",
           "distinct_frames", "format_bytes", "gram", "parse_bytes", "repeat_sources",
           "ring_pieces", "schema_of", "states_in_place"]
