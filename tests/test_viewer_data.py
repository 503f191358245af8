"""The viewer's payload against the PNGs (simulator.view.data, no browser).

The raster colours the page embeds are compared with the PNG rasteriser's
(simulator.render.raster.raster_rgb, a separate implementation), and the
wave each colour shows with fig1's tick convention (test_view.fig1_cells).
Row names are checked against the scenes' text: residual_levelling's skip
h1 -> r spans three levels, so levelling delays h1 by two identity vertices.
"""
import numpy as np
import pytest

from simulator.analysis import palette as shared
from simulator.analysis import palette
from simulator.render import raster
from simulator.runner import simulate_scene
from simulator.model.graph import delay_names
from simulator.view.data import decode, diffusion_payload
from test_view import BACKWARD, FORWARD, fig1_cells

TICKS = 30


@pytest.fixture(scope="module")
def traces():
    return {"fig1": simulate_scene("fig1_constant", f"run.ticks={TICKS}"),
            "conv": simulate_scene("conv_digits", "run.ticks=40"),
            "levelled": simulate_scene("residual_levelling", "run.ticks=20",
                                       "network.levelled=true")}


@pytest.mark.parametrize("name", ["fig1", "conv", "levelled"])
@pytest.mark.parametrize("max_frames", [2000, 7])
def test_raster_colours_are_the_pngs(traces, name, max_frames):
    trace = traces[name]
    view = diffusion_payload(trace, max_frames=max_frames)["views"][0]
    cols = [row["column"] for row in view["rows"]]
    T = len(trace["tick"])
    shown = np.arange(0, T, -(-T // max_frames))
    for colour in ("magnitude", "tag"):
        png = raster.raster_rgb(trace, colour, shown, cols)            # (rows, ticks, 3)
        want = palette.to_bytes(png).transpose(1, 0, 2)
        np.testing.assert_array_equal(decode(view["colours"][colour]), want, colour)


def test_fig1_colours_show_the_waves_of_the_tick_convention(traces):
    got = decode(diffusion_payload(traces["fig1"])["views"][0]["colours"]["magnitude"])
    got = got.astype(int)
    want = fig1_cells(TICKS)
    red, blue = got[..., 0], got[..., 2]
    empty = palette.to_bytes(palette.EMPTY)
    assert np.all(got[want == 0] == empty)
    assert np.all(red[want == FORWARD] > 2 * blue[want == FORWARD])
    assert np.all(blue[want == BACKWARD] > 2 * red[want == BACKWARD])
    both = want == FORWARD | BACKWARD
    assert np.all((red[both] > got[..., 1][both] + 30) & (blue[both] > got[..., 1][both] + 30))


def test_tag_colours_change_with_the_stream_frame(traces):
    """conv_digits holds each digit 8 ticks: the input row's tag colour is one per frame."""
    trace = traces["conv"]
    view = diffusion_payload(trace)["views"][0]
    rgb = decode(view["colours"]["tag"])[:, 0]                  # the input row
    frames = np.asarray(trace["stream_frame"])
    assert len(set(frames.tolist())) >= 4
    for f in set(frames.tolist()):
        assert len({tuple(c) for c in rgb[frames == f]}) == 1
    firsts = [tuple(rgb[frames == f][0]) for f in sorted(set(frames.tolist()))]
    assert all(a != b for a, b in zip(firsts, firsts[1:]))       # neighbours differ


def test_payload_carries_the_one_palette():
    got = diffusion_payload(simulate_scene("fig1_constant", "run.ticks=3"))["palette"]["rgb"]
    assert palette.RED is shared.RED and palette.mix is shared.mix    # one definition
    for key, colour in (("red", palette.RED), ("blue", palette.BLUE),
                        ("purple", palette.PURPLE), ("empty", palette.EMPTY),
                        ("ls", palette.from_hex(palette.LS_COLOUR))):
        assert got[key] == np.clip(np.rint(colour * 255), 0, 255).astype(int).tolist(), key


def test_rows_are_named_from_the_scene(traces, tmp_path):
    rows = diffusion_payload(traces["levelled"])["views"][0]["rows"]
    labels = {row["name"]: row["label"] for row in rows}
    assert labels["_id_r_1_0"] == "h1 +1 tick (2)"
    assert labels["_id_r_1_1"] == "h1 +2 ticks (3)"
    assert labels["r"] == "r (4)" and labels["out"] == "out (5)"
    assert [row["identity"] for row in rows].count(True) == 2
    assert not any("_id_" in row["label"] for row in rows)
    # a chain of named dense layers records no vertex names: they come from the scene
    scene = tmp_path / "named.toml"
    scene.write_text('kind = "diffusion"\n[network]\ninput_shape = [4]\n'
                     + "".join(f'[[network.layers]]\nname = "{n}"\nkind = "dense"\nunits = 4\n'
                               for n in ("c1", "c2", "out"))
                     + "[run]\nticks = 6\n", encoding="utf-8")
    trace = simulate_scene(str(scene))
    assert "vertex_names" not in trace
    rows = diffusion_payload(trace)["views"][0]["rows"]
    assert [row["label"] for row in rows] == ["input (0)", "c1 (1)", "c2 (2)", "out (3)"]
    unnamed = diffusion_payload(traces["fig1"])["views"][0]["rows"]
    assert [row["label"] for row in unnamed] == [str(l) for l in range(10)]


def test_identity_vertices_are_named_as_delays_of_their_source():
    """The one naming the PNGs and the viewer share (model.graph.delay_names)."""
    names = ["input", "a", "_id_b_0_0", "_id_b_0_1", "_id_b_0_2", "b", "_id_x_0_0"]
    pairs = [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (1, 5), (0, 6)]
    assert delay_names(names, pairs) == ["input", "a", "a +1 tick", "a +2 ticks",
                                         "a +3 ticks", "b", "input +1 tick"]
    assert delay_names(["input", "_id_q_1_2"], []) == ["input", "+3 ticks before q"]
    assert delay_names(["input", "_id_q_1_0"], []) == ["input", "+1 tick before q"]
