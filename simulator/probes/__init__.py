"""What a run records and what it costs, and the Trace it produces: ``plan``
(RecordPlan, RunBudget), ``recorder`` (the one Recorder, its closed-form
TagClock), ``vertex`` (its per-vertex mismatch metrics) and ``trace`` (the
Trace, trace.npz plus run.json, and its SCHEMA)."""
from .plan import RecordPlan, RunBudget, distinct_frames, format_bytes, parse_bytes
from .recorder import Recorder, TagClock
from .trace import METRIC_KEYS, TAG_KEYS, Trace

__all__ = ["METRIC_KEYS", "TAG_KEYS", "RecordPlan", "Recorder", "RunBudget", "TagClock", "Trace",
           "distinct_frames", "format_bytes", "parse_bytes"]
