"""A sweep's point files: what names one and what makes one valid.

A point is named by ``point_key``, the hash of its resolved scene and summary
options with the point file format; its record is stored as
``<points>/<key>.json`` and is used again only if ``read_point`` finds it
whole: a JSON object of the current POINT_FORMAT with every POINT_KEYS field
of the right type, whose key is its name and whose scene and options hash to
it. simulator.sweep writes and reads point files through here, and the
ownership rule of simulator.manifest recognises a sweep folder of the version
before manifests by them.

A ground floor: this module imports simulator.safe_read only.
"""
import hashlib
import json
import os

from .safe_read import ReadError, read_json

POINT_FORMAT = 2          # bump when what a point file means changes
POINT_KEYS = ("format", "key", "params", "scene", "options", "status", "error", "summary")


def point_key(scene, options):
    """The identity of a point: sha256 of the canonical JSON (sorted keys, no
    spaces) of everything that determines its result, the resolved point scene
    (its description aside) and the summary options, with the point file
    format. Editing the base scene or sweep.set changes it, so a stale point
    is never reused."""
    content = {"format": POINT_FORMAT, "options": options,
               "scene": {k: v for k, v in scene.items() if k != "description"}}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def point_path(points_dir, key):
    """The file of the point named ``key`` in the folder ``points_dir``."""
    return os.path.join(points_dir, key + ".json")


def read_point(points_dir, key):
    """(record, damaged) of the point file named by ``key``: (None, False) if
    there is none; (None, True) if it cannot be used (not JSON, not a point
    record, another format, or its stored scene and options do not hash to
    ``key``), so the point is computed again; else (record, False)."""
    path = point_path(points_dir, key)
    if not os.path.lexists(path):
        return None, False
    try:
        record = read_json(path, dict)      # a FIFO or a deep nesting is damage, not a hang
    except ReadError:
        return None, True
    if (not isinstance(record, dict) or any(k not in record for k in POINT_KEYS)
            or record["format"] != POINT_FORMAT or record["key"] != key
            or record["status"] not in ("ok", "failed") or not isinstance(record["error"], str)
            or not isinstance(record["params"], dict) or not isinstance(record["summary"], dict)
            or not isinstance(record["scene"], dict) or not isinstance(record["options"], dict)):
        return None, True
    try:
        same = point_key(record["scene"], record["options"]) == key
    except (TypeError, ValueError):
        same = False
    return (record, False) if same else (None, True)


__all__ = ["POINT_FORMAT", "POINT_KEYS", "point_key", "point_path", "read_point"]
