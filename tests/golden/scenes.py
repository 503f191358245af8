"""Record the golden outputs of every shipped scene at short tick counts.

Run from the repository root: ``python tests/golden/scenes.py`` (about half a
minute on one core). Each shipped scene but the sweeps (whose points are
these scenes) runs with the small overrides of ``SHORT`` through
``simulator.kinds.run_scene`` (no pictures), and every number it saves is
fingerprinted into ``tests/golden/scenes.json``: per array of every .npz a
projection on a fixed random vector (floats) or a hash (integers, booleans,
strings), and every number of results.json, the run.json summary and the
csv tables, timings and version strings aside. tests/test_golden.py runs the
same scenes again and requires the same numbers (rtol 1e-12), and replays each
recorded run.json, which must give the same numbers again. Like record.py it is
recorded before a refactoring, never to make a failing test pass.
"""
import csv
import hashlib
import io
import json
import math
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

from simulator import kinds  # noqa: E402
from simulator import scene as scenes  # noqa: E402

PATH = os.path.join(HERE, "scenes.json")
TICKS = 24
# Overrides beyond run.ticks = TICKS that keep each scene to about a second.
SHORT = {
    "ar_train": {"train.epochs": 1, "train.seeds": [0], "relaxation.iterations": 20},
    "zil_table": {"table.repeats": 1},
    "schedules_zoo": {"schedules.frames": 16, "schedules.seeds": [0, 1],
                      "schedules.eval_size": 40, "stream.batch": 4},
}
# Saved numbers that measure time, not the computation.
_TIMING_KEYS = {"timings", "versions", "threads", "rule_threads", "seconds", "table2",
                "markdown"}
_TIMING_PARTS = ("per_second", "per_minute", "time")
# tables.md and table2.csv hold Table 2's times per update; the manifest, hashes.
_SKIP_FILES = ("run.json", "tables.md", "table2.csv", "tickprop-manifest.json")


def shipped():
    """The shipped scenes this records (every kind but sweep)."""
    return [n for n in scenes.list_scenes() if scenes.load(n)[1]["kind"] != "sweep"]


def short_scene(name):
    """The resolved scene ``name`` with the overrides of a short run."""
    _, resolved = scenes.load(name)
    kind = kinds.get(resolved["kind"])
    typed = {} if "ticks" in kind.refuse else kind.overrides({"ticks": TICKS})
    typed.update(SHORT.get(name, {}))
    return scenes.apply_overrides(resolved, [], name, typed) if typed else resolved


def _timing(key):
    key = str(key).lower()
    return (key in _TIMING_KEYS or key.endswith(("_s", "_ms"))
            or any(part in key for part in _TIMING_PARTS))


def _weights(size, seed=2718):
    return np.random.default_rng([seed, size]).normal(size=size)


def fingerprint_array(a):
    """A float array's projection (NaN and ±Inf positions hashed apart), or
    the hash of any other array's bytes, with its shape and dtype kind."""
    a = np.asarray(a)
    head = {"shape": list(a.shape), "kind": a.dtype.kind}
    if a.dtype.kind == "f":
        flat = a.astype(np.float64).ravel()
        finite = np.isfinite(flat)
        code = np.select([finite, np.isnan(flat), flat > 0], [0, 1, 2], 3).astype(np.int8)
        head["nonfinite"] = hashlib.sha256(code.tobytes()).hexdigest()[:16]
        clean, w = np.where(finite, flat, 0.0), _weights(flat.size)
        head["value"], head["scale"] = float(clean @ w), float(np.abs(clean) @ np.abs(w))
        return head
    if a.dtype.kind in "US":
        data = json.dumps(a.astype(str).tolist()).encode()
    else:
        data = np.ascontiguousarray(a.astype(np.int64) if a.dtype.kind in "biu" else a).tobytes()
    head["hash"] = hashlib.sha256(data).hexdigest()[:16]
    return head


def _numbers(value, prefix, out):
    """Every number (and string) of a JSON value, keyed by its path."""
    if isinstance(value, dict):
        for k, v in value.items():
            if not _timing(k):
                _numbers(v, f"{prefix}.{k}", out)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _numbers(v, f"{prefix}[{i}]", out)
    elif isinstance(value, bool) or value is None or isinstance(value, str):
        out[prefix] = value
    elif isinstance(value, (int, float)):
        out[prefix] = value if math.isfinite(value) else repr(float(value))
    return out


def fingerprint_folder(folder, meta):
    """{path: fingerprint} of everything a run saved in ``folder``."""
    out = _numbers(meta.get("summary", {}), "run.json:summary", {})
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if name in _SKIP_FILES or name.endswith((".png", ".gif")):
            continue
        if name.endswith(".npz"):
            with np.load(path, allow_pickle=False) as data:
                for key in sorted(data.files):
                    if key != "schema":
                        out[f"{name}:{key}"] = fingerprint_array(data[key])
        elif name.endswith(".json"):
            with open(path) as f:
                _numbers(json.load(f), name, out)
        elif name.endswith(".csv"):
            with open(path, newline="") as f:
                rows = list(csv.DictReader(io.StringIO(f.read())))
            for i, row in enumerate(rows):
                for k, v in row.items():
                    if not _timing(k):
                        try:
                            number = float(v)
                        except (TypeError, ValueError):
                            out[f"{name}[{i}].{k}"] = v
                        else:
                            out[f"{name}[{i}].{k}"] = number if math.isfinite(number) \
                                else repr(number)
        else:
            raise ValueError(f"{path}: a saved file this recorder does not know")
    return out


def run_short(name, folder):
    """Run the short version of a shipped scene into ``folder``; returns
    (run.json content, fingerprints)."""
    meta = kinds.run_scene(name, short_scene(name), folder,
                           draw_options={"png": False, "gif": False})
    return meta, fingerprint_folder(folder, meta)


def record(path=PATH, workdir=None):
    import tempfile
    golden = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in shipped():
            meta, prints = run_short(name, os.path.join(workdir or tmp, name))
            golden[name] = {"run.json": meta, "fingerprints": prints}
    with open(path, "w") as f:
        json.dump(golden, f, indent=1, sort_keys=True)
    return path


if __name__ == "__main__":
    where = record()
    print(f"{where}: {os.path.getsize(where) / 1e6:.2f} MB")
