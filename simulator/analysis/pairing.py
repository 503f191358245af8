"""Which frames a learning run's updates pair, from the provenance tags (docs/explanation/model.md):
per weighted vertex, the spread in ticks between the frames of the x that g pairs
with, of δ's target and of δ's output activity once the run is steady. Frames held
h ticks meet in one frame a fraction max(0, 1 − spread/h) of the ticks; an update
pairing different frames most of the time is no frame's gradient."""
import numpy as np

from ..engine.tags import TAG_ROWS, TagClock
from ..engine.tick import GraphEngine

# the tag rows of one update: x of the pairing, δ's supervision and output frames
UPDATE_ROWS = [TAG_ROWS.index(k) for k in ("pair", "pair_hi", "supervision", "supervision_hi",
                                           "output", "output_hi")]


def frame_spreads(model, **options):
    """{weighted vertex name: spread in ticks} of ``model`` under the engine
    ``options`` (supervision_delay and levelled as resolved counts/bools: the
    probe is frozen, batch 1 and zero-weighted — tags never depend on values)."""
    zero = model.with_parameters({k: np.zeros_like(a) for k, a in model.parameters().items()})
    probe = GraphEngine(zero, **options)
    clock = TagClock.of(probe)
    tags = clock.state(clock.last)[UPDATE_ROWS]
    return {v.name: int(tags[:, v.index].max() - tags[:, v.index].min())
            for v in probe.model.vertices[1:] if v.param_names}


def frame_period(stream):
    """Ticks one input frame lasts in a StreamSpec (None: a constant input)."""
    return {"constant": None, "smooth": stream.tau,
            "sine": stream.period / 4}.get(stream.kind, stream.hold)


def pairing_warning(spreads, period, d_y, depth):
    """One line when most weighted vertices pair x and δ of different frames on
    more than half their ticks (spread > period / 2), with what to change; else None."""
    if not period or not spreads:
        return None
    bad = [name for name, s in spreads.items() if s > period / 2]
    if 2 * len(bad) <= len(spreads):
        return None
    worst = max(spreads, key=spreads.get)
    fix = (f"set the supervision delay to 'causal' (d_y = D = {depth}, now {d_y})"
           if d_y != depth else
           f"hold frames at least {2 * spreads[worst]} ticks, or use pairing and derivative "
           f"'frame'")
    return (f"{len(bad)} of {len(spreads)} weighted layers ({', '.join(bad)}) update with x and "
            f"δ of different frames on more than half their ticks (a frame lasts {period:g} "
            f"ticks; the frames of {worst}'s update span {spreads[worst]}): {fix}")
