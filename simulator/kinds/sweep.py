"""The sweep kind, declared so that every scene kind has a record: a sweep is
run point by point by ``tickprop sweep`` (simulator.sweep), each point through
the kind of its base scene; ``tickprop run`` refuses it with that advice."""
from ..errors import SceneError
from .base import Kind

ADVICE = "run it with `tickprop sweep`"


def prepare(name, scene, options=None):
    """Refuse: a sweep is not one run."""
    raise SceneError(f"{name} is a sweep scene: {ADVICE} {name}")


def draw(folder, meta, options):
    """Refuse: a sweep's pictures are re-drawn by re-running `tickprop sweep`,
    which keeps every finished point."""
    raise SceneError(f"{folder}: sweep pictures are re-drawn by `tickprop sweep` (finished "
                     "points are kept, so nothing is simulated again)")


KIND = Kind("sweep", prepare, draw,
            refuse={option: f"a sweep scene is not one run; {ADVICE} (set run.{option} "
                            "for every point in [sweep.set] or the grid)"
                    for option in ("ticks", "seed", "device", "dtype")})
