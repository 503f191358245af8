"""The sweep kind: ``tickprop sweep`` (simulator.sweep) runs it point by point, each
through its base scene's kind; ``tickprop run`` refuses it with that advice."""
import math

from ..errors import SceneError
from .base import TYPED_OPTIONS, Kind

# The number a sweep's terminal summary ranks points by, the first present.
HEADLINE_KEYS = ("final_accuracy", "mean_cos", "final_loss")

ADVICE = "run it with `tickprop sweep`"


def prepare(name, scene, options=None):
    """Refuse: a sweep is not one run."""
    raise SceneError(f"{name} is a sweep scene: {ADVICE} {name}")


def draw(folder, meta, options):
    """Refuse: re-running `tickprop sweep` re-draws, keeping finished points."""
    raise SceneError(f"{folder}: sweep pictures are re-drawn by `tickprop sweep` (finished "
                     "points are kept, so nothing is simulated again)")


def summary_lines(summary):
    """What ``tickprop sweep`` prints: the counts, then (mean over seeds) the best
    and worst grid point by the first of HEADLINE_KEYS the finished points have,
    and the first failures."""
    points = summary["points"]
    lines = [f"{points} point{'' if points == 1 else 's'} ({summary['ran']} run now, "
             f"{summary['failed']} failed) in {summary['seconds']:.1f} s"]
    records = summary.get("records", [])
    keys = set().union(*(r.get("summary", {}) for r in records if r.get("status") == "ok"))
    key = next((k for k in HEADLINE_KEYS if k in keys), None)
    if key is not None:
        groups = {}
        for r in records:
            value = r.get("summary", {}).get(key)
            if r.get("status") == "ok" and isinstance(value, (int, float)) \
                    and math.isfinite(value):
                name = ", ".join(f"{k}={v}" for k, v in r.get("params", {}).items()
                                 if k != "run.seed") or "base"
                groups.setdefault(name, []).append(float(value))
        means = sorted(((sum(v) / len(v), k) for k, v in groups.items()), reverse=True)
        if means:
            lines.append(f"  best  {key} {means[0][0]:.4g}: {means[0][1]}")
        if len(means) > 1:
            lines.append(f"  worst {key} {means[-1][0]:.4g}: {means[-1][1]}")
    for r in [r for r in records if r.get("status") != "ok"][:3]:
        lines.append(f"  failed {r.get('params')}: {r.get('error', '')}")
    return lines


KIND = Kind("sweep", prepare, draw,
            refuse={option: f"a sweep scene is not one run; {ADVICE} (set run.{option} "
                            "for every point in [sweep.set] or the grid)"
                    for option in TYPED_OPTIONS})
