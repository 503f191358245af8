"""The graph recorder writes tags in closed form once the engine's own tag
rule has settled (every tag one frame later per tick, or −1): the recorded
tags must equal, row for row, the tags of an identical engine stepped here
and read with ``tags()`` every tick — for unlevelled and levelled residual
graphs, a conv net, every derivative and pairing option, dfa feedback, a supervision
delay, decimated rows and runs several chunks long."""
import numpy as np
import pytest

from graph_models import shipped_with
from simulator.build import build
from simulator.probes.vertex import HI_KEYS
from simulator.probes import TAG_KEYS
from simulator.runner import Prepared

CASES = {   # scene, overrides, ticks
    "residual": ("residual_levelling", {}, 300),
    "residual levelled, frame options, d_y": (
        "residual_levelling", {("network", "levelled"): True, ("rule", "derivative"): "frame",
                               ("rule", "pairing"): "frame", ("rule", "supervision_delay"): 3},
        300),
    "residual itd-dy, every 3": ("residual_levelling", {("rule", "derivative"): "itd-dy",
                                                        ("record", "every"): 3}, 400),
    "conv learning, small chunks": ("conv_digits", {("record", "chunk"): 16,
                                                    ("stream", "hold"): 1}, 200),
    # dfa: every δ is the output's of the tick before (bwd(v) = 1)
    "residual dfa, frame options, d_y": (
        "residual_levelling", {("network", "levelled"): True, ("rule", "feedback"): "dfa",
                               ("rule", "derivative"): "frame", ("rule", "pairing"): "frame",
                               ("rule", "supervision_delay"): 3}, 300),
    "conv dfa learning": ("conv_digits", {("rule", "feedback"): "dfa", ("record", "chunk"): 16,
                                          ("stream", "hold"): 1}, 200),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_recorded_graph_tags_equal_the_stepped_tags(case):
    sc = shipped_with(*CASES[case])
    trace = Prepared("tags", sc).simulate()
    parts = build(sc)
    eng = parts.engine()
    ticks, every = sc["run"]["ticks"], sc["record"]["every"]
    u, y, _ = parts.stream.take(ticks)
    want = {k: [] for k in TAG_KEYS + tuple(k + "_hi" for k in HI_KEYS)}
    for k in range(ticks):
        eng.step(u[k], y[k])
        if eng.tick % every == 0:
            tags = eng.tags()
            for key in want:
                want[key].append(tags[key])
    for key, rows in want.items():
        name = "tag_" + key if not key.endswith("_hi") else f"tag_{key}"
        np.testing.assert_array_equal(trace[name], np.array(rows), err_msg=f"{case}: {name}")
    # the warm-up is far shorter than these runs: most rows were closed-form
    assert ticks > 4 * (2 * eng.depth + eng.supervision_delay + eng.history + 2)
