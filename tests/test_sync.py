"""The sync inspector against the paper's closed forms (Eq. 6, delay (L−1)/2,
τs = L−1) and against the trace's own mismatch arrays."""
import json

import numpy as np
import pytest

from simulator.errors import SimulatorError
from simulator.runner import simulate_scene
from simulator.analysis.sync import format_sync, gradient_delay, steady_window, sync_report
from simulator.engine.tick import synchronized_layers


simulate = simulate_scene


@pytest.fixture(scope="module")
def depth9():
    return simulate("fig3_fast", "run.ticks=60")


@pytest.fixture(scope="module")
def depth8():
    return simulate("fig3_fast", "network.depth=8", "run.ticks=60")


def test_depth_9_names_layer_5_and_delay_4(depth9):
    report = sync_report(depth9)
    s = report["summary"]
    assert (s["ls"], s["delay"], s["exact"], s["tau_s"]) == (5, 4, True, 8)
    assert [r["layer"] for r in report["rows"] if r["synchronized"]] == [5]
    text = format_sync(report)
    assert "ls = (L+1)/2 = 5" in text and "tick s + 4" in text and "τs = (L−1)Δt = 8" in text
    line = next(l for l in text.splitlines() if l.strip().startswith("5 "))
    assert line.endswith("<- ls")
    assert "1 tick, below τs" in text          # fig3_fast holds each frame one tick


def test_depth_8_names_layers_4_and_5_as_closest(depth8):
    report = sync_report(depth8)
    s = report["summary"]
    assert s["ls"] is None and s["closest"] == [4, 5] and s["delay"] == 3.5
    text = format_sync(report)
    assert "no layer is exactly synchronized" in text and "layers 4 and 5 are closest" in text
    marked = [l.split()[0] for l in text.splitlines() if l.endswith("<- closest")]
    assert marked == ["4", "5"]


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 7, 10])
def test_closed_forms(depth):
    layers = synchronized_layers(depth)
    if depth % 2:
        assert layers == ((depth + 1) // 2,)
        # l − 1 forward steps equal L − l backward steps exactly there.
        assert layers[0] - 1 == depth - layers[0]
    else:
        assert layers == (depth // 2, depth // 2 + 1)
        assert [abs((l - 1) - (depth - l)) for l in layers] == [1, 1]
    assert gradient_delay(depth) == (depth - 1) / 2
    with pytest.raises(SimulatorError):
        synchronized_layers(0)


def test_rows_steps_lag_and_tags_follow_the_tick_rule(depth9):
    L, last = 9, 59
    report = sync_report(depth9)
    for r in report["rows"]:
        l = r["layer"]
        assert (r["forward_steps"], r["backward_steps"], r["lag"]) == (l - 1, L - l, 2 * l - L - 1)
        assert r["input_tag"] == last - (l - 1)                 # x[t, l−1] entered l−1 ticks ago
        assert r["supervision_tag"] == last - (L - l)           # d_y = 0: target of that tick
        assert r["output_tag"] == last - (L - l) - L            # output made L ticks after entry
        assert r["supervision_in_sync"] == (l == 5)
        assert r["output_in_sync"] is False
        assert r["age"] == l - 1


def test_mismatch_column_agrees_with_the_trace(depth9):
    L = 9
    report = sync_report(depth9)
    start = 2 * L - 1           # the output error of frame 0 reaches layer 1 at tick 2L − 1
    assert steady_window(depth9) == (start, 60)
    cos, rel = depth9["mismatch_cos"], depth9["mismatch_rel"]
    for r in report["rows"]:
        l = r["layer"]
        assert r["mean_cos"] == pytest.approx(np.nanmean(cos[start:, l - 1]), rel=1e-12)
        assert r["mean_rel"] == pytest.approx(np.nanmean(rel[start:, l - 1]), rel=1e-12)
        shown = next(line for line in format_sync(report).splitlines()
                     if line.split() and line.split()[0] == str(l))
        assert f"{r['mean_cos']:.4f}" in shown
    # fast input: ls is clearly the best-aligned layer on average, far from the others
    means = [r["mean_cos"] for r in report["rows"]]
    assert int(np.argmax(means)) + 1 == 5


def test_linear_scene_ls_exact_but_output_and_sigma_frames_differ():
    trace = simulate("sync_linear", "run.ticks=50")
    report = sync_report(trace)
    ls = report["rows"][4]
    assert ls["supervision_in_sync"] and ls["mean_cos"] == pytest.approx(1.0, abs=1e-9)
    assert ls["output_in_sync"] is False and ls["sigma_in_sync"] is False
    assert "output activity NOT in sync" in format_sync(report)


def test_pipelined_scene_every_component_in_sync_and_json():
    trace = simulate("pipelined", "run.ticks=50")
    report = sync_report(trace)
    assert json.loads(json.dumps(report)) == report
    L = 9
    assert report["summary"]["supervision_delay"] == L
    assert report["summary"]["matched_layers"] == list(range(1, L + 1))
    for r in report["rows"]:
        assert r["supervision_in_sync"] and r["output_in_sync"] and r["sigma_in_sync"]
        assert r["age"] == 2 * L - r["layer"]                    # Fact B: frame t − 2L + l
        assert r["mean_cos"] == pytest.approx(1.0, abs=1e-9)
    assert "assumes d_y = 0" in format_sync(report)
