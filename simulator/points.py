"""A sweep's point files, ``<points>/<key>.json``: ``point_key`` names one,
``read_point`` uses one again only when it is whole and hashes to its name."""
import hashlib
import json
import os

from .safe_read import ReadError, read_json

POINT_FORMAT = 2          # bump when what a point file means changes
POINT_KEYS = ("format", "key", "params", "scene", "options", "status", "error", "summary")


def point_key(scene, options):
    """sha256 of the canonical JSON of what determines a point's result: its resolved
    scene (description aside), summary options and file format."""
    content = {"format": POINT_FORMAT, "options": options,
               "scene": {k: v for k, v in scene.items() if k != "description"}}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def point_path(points_dir, key):
    return os.path.join(points_dir, key + ".json")


def read_point(points_dir, key):
    """(record, damaged) of the point file named by ``key``: (None, False) if there is
    none, (None, True) if it cannot be used (the point runs again)."""
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
            or any(not isinstance(record[k], dict) for k in ("params", "summary", "scene",
                                                             "options"))):
        return None, True
    try:
        same = point_key(record["scene"], record["options"]) == key
    except (TypeError, ValueError):
        same = False
    return (record, False) if same else (None, True)

