"""The arrays of a schedules run (schedules.npz, the schedule zoo of
docs/explanation/schedules.md) checked once for the pictures and the viewer:
every key present, every shape consistent, else one SimulatorError naming it.
"""
import numpy as np

from ..errors import SimulatorError

# (key, dims): dims name the axes; V stages, K schedules, R seeds, E evaluations,
# Q sweep depths, T a schedule's ticks, W the deepest sweep depth.
GLOBAL = (("names", "K"), ("vertices", "V"), ("levels", "V"), ("stages_after", "V"),
          ("depth", ""), ("weighted", "V"), ("seeds", "R"), ("eval_ticks", "E"),
          ("sweep_depths", "Q"))
PER_SCHEDULE = (("forward", "TV"), ("backward", "TV"), ("delay", "TV"), ("stale", "TV"),
                ("cosine", "TV"), ("rel_error", "TV"), ("versions", "TV"),
                ("version_bytes", "TV"), ("utilisation", "V"), ("loss", "RT"),
                ("accuracy", "RE"), ("sweep_delay", "QW"), ("sweep_versions", "QW"))
TEXT = ("names", "vertices")


def _array(data, key, where):
    if key not in data:
        raise SimulatorError(f"{where}: no array '{key}' (a schedules run saves it; re-run "
                             "the scene to write it again)")
    a = np.asarray(data[key])
    if (a.dtype.kind in "US") != (key in TEXT):
        raise SimulatorError(f"{where}: array '{key}' holds {a.dtype}, expected "
                             f"{'text' if key in TEXT else 'numbers'}")
    return a


def check_schedules(data, where="schedules.npz"):
    """``data`` (a mapping of the saved arrays) as {key: array} plus "schedules":
    {name: {key: array}}, each array's shape checked against the others."""
    out = {key: _array(data, key, where) for key, _ in GLOBAL}
    sizes = {}

    def want(key, a, dims):
        for i, d in enumerate(dims):
            sizes.setdefault(d, a.shape[i] if a.ndim > i else -1)
        if a.shape != tuple(sizes[d] for d in dims):
            named = "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"
            raise SimulatorError(f"{where}: array '{key}' has shape {a.shape}, expected "
                                 f"{named} = {tuple(sizes[d] for d in dims)}")
    for key, dims in GLOBAL:
        want(key, out[key], dims)
    names = [str(n) for n in out["names"]]
    if not names or len(set(names)) != len(names):
        raise SimulatorError(f"{where}: 'names' must list the schedules once each, got {names}")
    if sizes["V"] < 1:
        raise SimulatorError(f"{where}: no stages ('vertices' is empty)")
    deepest = int(out["sweep_depths"].max()) if sizes["Q"] else 0
    out["schedules"] = {}
    for name in names:
        sizes.pop("T", None)
        sizes["W"] = deepest
        arrays = {key: _array(data, f"{name}__{key}", where) for key, _ in PER_SCHEDULE}
        for key, dims in PER_SCHEDULE:
            want(f"{name}__{key}", arrays[key], dims)
        out["schedules"][name] = arrays
    out["names"] = names
    out["vertices"] = [str(v) for v in out["vertices"]]
    return out
