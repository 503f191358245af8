"""The viewer's page and payload without a browser (simulator.view).

Expectations come from the engine's tick convention, not from the viewer: on
fig1 (constant input and target, L = 9) frame 0 enters layer 0 at tick 0, so x
of layer l carries a frame from tick l; the target is there from tick 0 and the
output is still empty, so δ of the output is non-zero from tick 0 and δ of
layer l ≥ 1 from tick L − l. The values the page embeds are compared with
trace.npz as saved. The page in a real browser: test_viewer_browser.py.
"""
import html
import json
import os
import re

import numpy as np
import pytest
from click.testing import CliRunner

from simulator.command import main as tickprop
from simulator.errors import SimulatorError
from simulator.runner import simulate_scene
from simulator.view import page_html, trace_html, write_view
from simulator.view.data import (decode, diffusion_payload, neuron_index, pc_payload,
                                 relaxation_payload, run_payload)

FIG1_DEPTH = 9
FORWARD, BACKWARD, SYNCED = 1, 2, 4


def fig1_cells(ticks, depth=FIG1_DEPTH):
    """(ticks, depth + 1) wave bits of fig1 from the tick convention:
    forward where t ≥ l, backward (δ ≠ 0) where l ≥ 1 and t ≥ L − l."""
    t, l = np.meshgrid(np.arange(ticks), np.arange(depth + 1), indexing="ij")
    return (FORWARD * (t >= l) + BACKWARD * ((l >= 1) & (t >= depth - l))).astype(int)


def run_and_view(folder, scene, *args):
    """Run ``scene`` into ``folder`` through the CLI (no pictures) and write its
    view.html with `tickprop view --no-open`; returns the page's path."""
    runner = CliRunner()
    res = runner.invoke(tickprop, ["run", scene, "--out", str(folder), "--no-png", "--no-gif",
                                   "--quiet", *args], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    res = runner.invoke(tickprop, ["view", str(folder), "--no-open"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "view written" in res.output
    return os.path.join(str(folder), "view.html")


def embedded_payload(page):
    """The JSON payload a view.html carries."""
    m = re.search(r'<script type="application/json" id="tickprop-data">(.*?)</script>', page,
                  re.S)
    return json.loads(m.group(1))


@pytest.fixture(scope="module")
def fig1():
    return simulate_scene("fig1_constant", "run.ticks=30")


def test_fig1_wave_bits_follow_the_tick_convention(fig1):
    view = diffusion_payload(fig1)["views"][0]
    wave = decode(view["wave"]) & (FORWARD | BACKWARD)
    assert [r["column"] for r in view["rows"]] == list(range(FIG1_DEPTH + 1))
    want = fig1_cells(30)
    np.testing.assert_array_equal(wave, want)
    # The backward wave before the forward one: the cells waves.png left white.
    assert (want == BACKWARD).sum() == 25 and (want == FORWARD | BACKWARD).sum() > 0


def test_sync_overlay_is_solid_on_ls_only_when_frames_change_every_tick():
    # Eq. 6: with a new frame every tick (fig3, h = 1), only ls = (L + 1)/2 pairs
    # x[l−1] and δ[l] of one frame; with a constant input (fig1, one stream
    # frame) layer l does once δ[l] (t ≥ L − l) and x[l−1] (t ≥ l − 1) are there.
    trace = simulate_scene("fig3_fast", "run.ticks=40")
    synced = (decode(diffusion_payload(trace)["views"][0]["wave"]) & SYNCED) > 0
    steady = synced[2 * FIG1_DEPTH + 2:]
    assert steady[:, 5].all() and not np.delete(steady, 5, axis=1).any()
    fig1 = simulate_scene("fig1_constant", "run.ticks=30")
    synced = (decode(diffusion_payload(fig1)["views"][0]["wave"]) & SYNCED) > 0
    t, l = np.meshgrid(np.arange(30), np.arange(FIG1_DEPTH + 1), indexing="ij")
    np.testing.assert_array_equal(synced[:, 1:], ((t >= l - 1) & (t >= FIG1_DEPTH - l))[:, 1:])


def test_payload_holds_the_saved_values_exactly(fig1):
    p = diffusion_payload(fig1)
    view = p["views"][0]
    assert p["ticks"] == list(range(30)) and p["notes"] == []
    for key in ("x_norm", "delta_norm"):
        np.testing.assert_array_equal(decode(view["fields"][key]), fig1[key])
    np.testing.assert_array_equal(decode(view["fields"]["mismatch_cos"])[:, 1:],
                                  fig1["mismatch_cos"])
    assert np.isnan(decode(view["fields"]["mismatch_cos"])[:, 0]).all()
    for key in ("input", "supervision", "output", "pair"):
        np.testing.assert_array_equal(decode(view["tags"][key]), fig1["tag_" + key])
    x, d = decode(view["states"]["x"]), decode(view["states"]["delta"])
    assert view["states"]["index"] == [list(range(16))] * (FIG1_DEPTH + 1)
    np.testing.assert_array_equal(x, fig1["state_x"][:, :, 0, :].astype(np.float32))
    np.testing.assert_array_equal(d[:, 1:], fig1["state_delta"][:, 1:, 0, :].astype(np.float32))
    assert np.isnan(d[:, 0]).all()                  # the input has no δ
    assert [r["sync"] for r in view["rows"]] == [l == 5 for l in range(10)]


def test_long_or_wide_traces_are_thinned_and_say_so(fig1):
    p = diffusion_payload(fig1, max_frames=7)
    assert p["ticks"] == list(range(0, 30, 5))
    assert any("every 5th recorded tick (6 of 30)" in n for n in p["notes"])
    p = diffusion_payload(fig1, max_states=2 * 30 * 10 * 8)      # 8 neurons a layer fit
    assert p["views"][0]["states"]["index"][3] == list(neuron_index(16, 8))
    assert len(p["ticks"]) == 30 and any("8 evenly spaced" in n for n in p["notes"])
    assert neuron_index(16, 8)[0] == 0 and neuron_index(16, 8)[-1] == 15
    p = diffusion_payload(fig1, max_states=2 * 15 * 10 * 8)      # then ticks are thinned
    assert p["ticks"] == list(range(0, 30, 2))


def test_graph_rows_are_vertices_by_level_with_the_sync_set():
    trace = simulate_scene("residual_levelling", "run.ticks=12")
    view = diffusion_payload(trace)["views"][0]
    levels = [r["level"] for r in view["rows"]]
    assert levels == sorted(levels)
    names = [str(n) for n in trace["vertex_names"]]
    for row in view["rows"]:
        v = names.index(row["name"])
        assert row["column"] == v and row["level"] == trace["vertex_levels"][v]
        assert row["sync"] == bool(trace["vertex_sync"][v])
    assert any(e[2] > 1 for e in view["edges"])         # the skip h1 -> r
    cols = [r["column"] for r in view["rows"]]
    np.testing.assert_array_equal(decode(view["fields"]["x_norm"]), trace["x_norm"][:, cols])


def test_page_is_self_contained_and_carries_its_payload(fig1):
    p = diffusion_payload(fig1)
    page = page_html(p)
    assert embedded_payload(page) == json.loads(json.dumps(p))
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page)
    assert "@import" not in page and "url(" not in page
    assert page.count("</script>") == 2 and '<meta name="generator" content="tickprop view">' in page


def test_trace_html_is_the_same_page_in_an_iframe(fig1):
    frame = trace_html(fig1)
    m = re.fullmatch(r'<iframe srcdoc="([^"]*)" (.*)></iframe>', frame, re.S)
    assert m and html.unescape(m.group(1)) == page_html(diffusion_payload(fig1))
    # a notebook shows the same iframe: the package wires the viewer into Trace
    assert fig1._repr_html_() == frame


def test_relaxation_and_pc_payloads(tmp_path):
    rng = np.random.default_rng(0)
    changes = rng.random((2, 6, 4))
    changes[:, 0] = 0.0
    arrays = {"errors": rng.random((2, 6, 4)), "changes": changes, "norms": rng.random((2, 6, 4)),
              "eta_x": np.array([0.05, 0.2]), "ticks": np.arange(6), "layers": np.arange(4)}
    p = relaxation_payload(arrays, {"name": "ar"})
    assert [v["label"] for v in p["views"]] == ["η_x = 0.05", "η_x = 0.2"]
    assert p["default_view"] == 0 and p["tick_label"] == "relaxation tick"
    np.testing.assert_array_equal(decode(p["views"][1]["fields"]["errors"]), arrays["errors"][1])
    by_level = rng.random((5, 3))
    by_level[0, 1] = np.inf
    levels = np.array([2, 1, 1, 0])
    p = pc_payload({"by_level": by_level, "by_vertex": rng.random((5, 4)), "levels": levels})
    per_level, per_vertex = p["views"]
    assert [r["level"] for r in per_level["rows"]] == [2, 1, 0]     # the output on top
    np.testing.assert_array_equal(decode(per_level["fields"]["eps"]), by_level[:, ::-1])
    assert [r["column"] for r in per_vertex["rows"]] == [0, 1, 2, 3]
    assert any("overflowed" in n for n in p["notes"])


def test_write_view_replaces_only_its_own_page(tmp_path):
    page = run_and_view(tmp_path / "run", "fig1_constant", "--ticks", "20")
    payload = embedded_payload(open(page, encoding="utf-8").read())
    with np.load(tmp_path / "run" / "trace.npz") as saved:
        np.testing.assert_array_equal(decode(payload["views"][0]["fields"]["x_norm"]),
                                      saved["x_norm"])
    assert write_view(tmp_path / "run") == page            # its own page: replaced
    foreign = tmp_path / "mine.html"
    foreign.write_text("<p>my notes</p>")
    with pytest.raises(SimulatorError, match="not written by tickprop view"):
        write_view(tmp_path / "run", foreign)
    assert foreign.read_text() == "<p>my notes</p>"
    assert write_view(tmp_path / "run" / "trace.npz", tmp_path) == str(tmp_path / "view.html")


@pytest.mark.parametrize("setup, message", [
    (lambda d: None, "no such run folder"),
    (lambda d: d.mkdir(), "no run.json"),
    (lambda d: (d.mkdir(), (d / "run.json").write_text('{"kind": "locking"}')),
     "a locking run has no ticks"),
    (lambda d: (d.mkdir(), (d / "run.json").write_text('{"kind": "diffusion"}')),
     "trace.npz: missing"),
    (lambda d: (d.mkdir(), (d / "run.json").write_text('{"kind": "pc_wave"}'),
                (d / "wave.npz").write_bytes(b"PK\x03\x04 not a zip")), "wave.npz: damaged"),
])
def test_cli_view_mistakes_are_one_error_line(tmp_path, setup, message):
    folder = tmp_path / "run"
    setup(folder)
    res = CliRunner().invoke(tickprop, ["view", str(folder), "--no-open"])
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert not (folder / "view.html").exists()


def test_run_payload_of_each_viewable_kind(tmp_path):
    run_and_view(tmp_path / "pc", "pc_wave")
    p = run_payload(tmp_path / "pc")
    with np.load(tmp_path / "pc" / "wave.npz") as saved:
        np.testing.assert_array_equal(decode(p["views"][1]["fields"]["eps"]),
                                      saved["by_vertex"][:, [r["column"] for r in
                                                             p["views"][1]["rows"]]])
