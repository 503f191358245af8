"""What a run records (``recorder``, its ``vertex`` metrics), what it costs (``plan``) and
the Trace it produces (``trace``)."""
from .plan import RecordPlan, RunBudget, distinct_frames, format_bytes, parse_bytes
from .recorder import Recorder
from .trace import METRIC_KEYS, TAG_KEYS, Trace

__all__ = ["METRIC_KEYS", "TAG_KEYS", "RecordPlan", "Recorder", "RunBudget", "Trace",
           "distinct_frames", "format_bytes", "parse_bytes"]
