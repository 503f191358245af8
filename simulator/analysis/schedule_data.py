"""The arrays of a schedules run (schedules.npz, the schedule zoo of
docs/explanation/schedules.md) for the pictures and the viewer: checked by the one
reader's rules (``runfiles.check_schedule_arrays``) and grouped per schedule.
"""
import numpy as np

from ..runfiles import SCHEDULE_ARRAYS, check_schedule_arrays


def check_schedules(data, where="schedules.npz"):
    """``data`` (a mapping of the saved arrays) as {key: array} plus "schedules":
    {name: {key: array}}, after the reader's checks (one ReadError naming the array)."""
    out = check_schedule_arrays(where, {k: np.asarray(v) for k, v in data.items()})
    names = [str(n) for n in out["names"]]
    grouped = {k: a for k, a in out.items() if "__" not in k}
    grouped["schedules"] = {n: {a: out[f"{n}__{a}"] for a in SCHEDULE_ARRAYS} for n in names}
    grouped["names"] = names
    grouped["vertices"] = [str(v) for v in out["vertices"]]
    return grouped
