"""The parameter file a graph scene may name (``network.parameters``): an .npz of arrays
keyed like ``Model.parameters()`` (what ``tickprop import`` writes), checked here against
the graph's layers."""
import os

import numpy as np

from ..errors import SceneError
from ..safe_read import ReadError, read_npz

# The array ``tickprop import`` adds to the .npz it writes (not a parameter): it
# marks the file as tickprop's, so a later import may replace it.
IMPORT_MARK = "tickprop_import"


def anchor(raw, scene_path):
    """A parsed scene with a relative ``network.parameters`` made relative to the scene
    file's folder (on the command line or in a sweep it stays relative to the current one)."""
    net = raw.get("network") if isinstance(raw, dict) else None
    value = net.get("parameters") if isinstance(net, dict) else None
    if isinstance(value, str) and value and not os.path.isabs(value):
        net["parameters"] = os.path.join(os.path.dirname(os.path.abspath(scene_path)), value)
    return raw


def read_parameters(path, skeleton, where):
    """{key: float64 array} of the .npz ``path``, exactly the keys and shapes of
    ``skeleton.param_shapes()``, or one SceneError starting with ``where``."""
    if not os.path.isfile(path):
        what = "is not a file" if os.path.exists(path) else "not found"
        raise SceneError(f"{where}: the parameter file {path} {what} (tickprop import writes "
                         "it beside the scene)")
    try:
        arrays = read_npz(path)
    except ReadError as exc:
        raise SceneError(f"{where}: {exc}") from None
    arrays.pop(IMPORT_MARK, None)
    want = skeleton.param_shapes()
    missing = [k for k in want if k not in arrays]
    extra = sorted(k for k in arrays if k not in want)
    if missing or extra:
        parts = [f"{what} {', '.join(keys)}" for what, keys in
                 (("missing", missing), ("unexpected", extra)) if keys]
        raise SceneError(f"{where}: {path} does not match network.layers ({'; '.join(parts)}); "
                         "expected one array per layer parameter, named '<layer>.W' / "
                         "'<layer>.b'")
    out = {}
    for key, shape in want.items():
        a = arrays[key]
        if a.dtype.kind not in "biuf":
            raise SceneError(f"{where}: {path}: array {key!r} holds {a.dtype}, expected real "
                             "numbers")
        if a.shape != tuple(shape):
            raise SceneError(f"{where}: {path}: array {key!r} has shape {a.shape}, but layer "
                             f"{key.rpartition('.')[0]!r} needs {tuple(shape)}")
        a = a.astype(np.float64)
        if not np.isfinite(a).all():
            raise SceneError(f"{where}: {path}: array {key!r} holds NaN or infinity")
        out[key] = a
    return out
