"""Wave pictures checked by content: pixel colours at the positions the tags and
the tick rule say, GIF frame count and size, ls at the right row, tag bands.

Expectations come from the engine's tick convention (frame 0 enters layer 0 at
tick 0, so the forward wave reaches layer l at tick l and the output error of
frame 0 reaches layer l at tick L + (L − l); with d_y = 0 the target's error
against the empty output is non-zero from tick 0, so δ reaches layer l at tick
L − l), not from the renderer.
"""
import os

import imageio.v3 as iio
import numpy as np
import pytest

from colours import classify
from simulator.errors import SimulatorError
from simulator.render import DEFAULT_SIZE, write_pictures
from simulator.analysis import palette
from simulator.render.animate import WaveAnimator, frame_ticks
from simulator.render.plots import mismatch_figure
from simulator.render.raster import raster_figure, raster_rgb
from simulator.runner import simulate_scene

AMBER = np.array([int(palette.LS_COLOUR[i:i + 2], 16) for i in (1, 3, 5)])


simulate = simulate_scene


@pytest.fixture(scope="module")
def fig1():
    return simulate("fig1_constant", "run.ticks=40")


def pixel(image, ax, x, y):
    """RGB of the PNG pixel under data point (x, y) of ``ax``."""
    dx, dy = ax.transData.transform((x, y))
    return image[int(image.shape[0] - dy), int(dx), :3]


def expected_cell(t, layer, depth):
    forward = t >= layer
    backward = layer >= 1 and t >= depth - layer         # δ ≠ 0 from the first target
    if forward and backward:
        return "purple"
    if forward:
        return "red"
    if backward:
        return "blue"
    return "empty"


def test_raster_cells_red_before_backward_wave_and_purple_after(fig1, tmp_path):
    written = write_pictures(str(tmp_path), fig1, gif=False)
    image = iio.imread(written["waves.png"])
    fig, panels = raster_figure(fig1)
    fig.canvas.draw()
    assert image.shape[:2] == (fig.canvas.get_width_height()[1], fig.canvas.get_width_height()[0])
    L = fig1.depth
    counts = {}
    for ax, (start, stop), kind in panels:
        for t in range(start, stop):
            for layer in range(L + 1):
                want = expected_cell(t, layer, L)
                got = classify(pixel(image, ax, t, layer))
                assert got == want, (kind, t, layer, got, want)
                counts[want] = counts.get(want, 0) + 1
    # The run shows the filling: every category the paper draws appears.
    assert counts["red"] > 0 and counts["blue"] > 0 and counts["purple"] > 0
    assert counts["empty"] > 0
    # The tags the raster reads agree with the tick rule.
    t = np.arange(len(fig1["tick"]))[:, None]
    layers = np.arange(L + 1)[None, :]
    assert np.array_equal(fig1["tag_input"] >= 0, t >= layers)
    assert np.array_equal((fig1["tag_output"] >= 0)[:, 1:], (t >= 2 * L - layers)[:, 1:])
    assert np.array_equal((fig1["delta_norm"] > 0)[:, 1:], (t >= L - layers)[:, 1:])


def amber_rows(image, ax, t):
    dx, _ = ax.transData.transform((t, 0))
    column = image[:, int(dx), :3].astype(int)
    return np.flatnonzero(np.abs(column - AMBER).sum(axis=1) < 60)


@pytest.mark.parametrize("depth,rows", [(9, (5,)), (7, (4,)), (8, (4, 5))])
def test_ls_outlined_at_its_row(depth, rows, tmp_path):
    trace = simulate("fig1_constant", f"network.depth={depth}", "run.ticks=30")
    written = write_pictures(str(tmp_path), trace, gif=False, color="magnitude")
    image = iio.imread(written["waves.png"])
    fig, panels = raster_figure(trace, color="magnitude")
    fig.canvas.draw()
    ax = panels[0][0]
    found = amber_rows(image, ax, 20)
    assert len(found)
    # ls = (L+1)/2 for odd L; for even L both closest layers are outlined.
    edges = [image.shape[0] - ax.transData.transform((0, y))[1]
             for y in sorted({r + d for r in rows for d in (-0.5, 0.5)})]
    # Every amber pixel in that column hugs an edge of those rows, and every edge is drawn.
    assert all(min(abs(r - e) for e in edges) <= 2.5 for r in found)
    assert all(any(abs(r - e) <= 2.5 for r in found) for e in edges)


def transitions(image, ax, layer, start, stop):
    """Colour changes along the pixel row of ``layer`` between two ticks."""
    x0 = int(ax.transData.transform((start, layer))[0])
    x1 = int(ax.transData.transform((stop, layer))[0])
    y = int(image.shape[0] - ax.transData.transform((start, layer))[1])
    row = image[y, x0:x1, :3].astype(int)
    return int((np.abs(np.diff(row, axis=0)).sum(axis=1) > 20).sum())


def test_tag_colouring_fast_stream_has_more_bands_than_slow(tmp_path):
    counts = {}
    for name in ("fig3_fast", "fig2_slow"):
        trace = simulate(name, "run.ticks=160")
        folder = tmp_path / name
        folder.mkdir()
        write_pictures(str(folder), trace, gif=False, color="tag", windows=[(100, 160)])
        image = iio.imread(folder / "waves.png")
        fig, panels = raster_figure(trace, windows=[(100, 160)], color="tag")
        fig.canvas.draw()
        ax = panels[0][0]
        counts[name] = [transitions(image, ax, layer, 100, 159) for layer in (0, 5, 9)]
    # A new frame every tick: a stripe every raster.tag_period frames (two colour
    # changes each, more where x and δ stripes pass each other); frames held 64
    # ticks: at most a few band edges in 60 ticks.
    assert all(c >= 12 for c in counts["fig3_fast"]), counts
    assert all(c <= 4 for c in counts["fig2_slow"]), counts


def test_windows_make_one_panel_row_each_and_bad_windows_fail(fig1):
    fig, panels = raster_figure(fig1, windows=[(0, 20), (20, 40)], color="both")
    assert [(w, k) for _, w, k in panels] == [((0, 20), "magnitude"), ((0, 20), "tag"),
                                              ((20, 40), "magnitude"), ((20, 40), "tag")]
    for bad in ([(10, 5)], [(0, 41)], [("a", 3)]):
        with pytest.raises(SimulatorError):
            raster_figure(fig1, windows=bad)
    with pytest.raises(SimulatorError):
        raster_figure(fig1, color="rainbow")


def gif_frames(path):
    frames = iio.imread(path, index=None)
    return frames[..., :3]


def test_gif_frame_count_size_and_neuron_colours(fig1, tmp_path):
    size = (480, 300)
    write_pictures(str(tmp_path), fig1, png=False, every=3, size=size)
    frames = gif_frames(tmp_path / "waves.gif")
    ticks = frame_ticks(fig1, 3)
    assert frames.shape == (len(ticks), size[1], size[0], 3)
    assert len(ticks) == int(np.ceil(40 / 3))
    anim = WaveAnimator(fig1, size=size)
    L = fig1.depth
    for i, t in enumerate(ticks):
        for layer in range(L + 1):
            col, row = anim.neuron_pixel(layer, 0)
            got = classify(frames[i, row, col])
            want = expected_cell(t, layer, L)
            assert got == want, (t, layer, got)


def test_gif_cursor_moves_with_the_tick(fig1, tmp_path):
    write_pictures(str(tmp_path), fig1, png=False, every=10, size=DEFAULT_SIZE)
    frames = gif_frames(tmp_path / "waves.gif")
    anim = WaveAnimator(fig1)
    for i, t in enumerate(frame_ticks(fig1, 10)):
        col, row = anim.cursor_pixel(t)
        assert frames[i, row, col].max() < 40, t             # dark cursor on the raster
        other = anim.cursor_pixel((t + 20) % 40)[0]
        assert frames[i, row, other].max() > 60               # not drawn elsewhere


def test_gif_of_200_frames_at_default_size_is_under_5_megabytes(tmp_path):
    trace = simulate("fig3_fast")
    write_pictures(str(tmp_path), trace, png=False)
    frames = gif_frames(tmp_path / "waves.gif")
    assert frames.shape == (200, DEFAULT_SIZE[1], DEFAULT_SIZE[0], 3)
    assert os.path.getsize(tmp_path / "waves.gif") < 5 * 2**20


def test_gif_without_recorded_states_shows_one_block_per_layer(tmp_path):
    trace = simulate("fig1_constant", "run.ticks=30", "record.states=false")
    write_pictures(str(tmp_path), trace, png=False, every=29)
    frames = gif_frames(tmp_path / "waves.gif")
    anim = WaveAnimator(trace)
    col, row = anim.neuron_pixel(0, 0)
    assert classify(frames[-1, row, col]) == "red"
    col, row = anim.neuron_pixel(trace.depth, 0)
    assert classify(frames[-1, row, col]) == "purple"


def test_mismatch_png_bars_heatmap_and_ls(fig1, tmp_path):
    written = write_pictures(str(tmp_path), fig1, gif=False)
    image = iio.imread(written["mismatch.png"])
    fig, axes = mismatch_figure(fig1)
    fig.canvas.draw()
    L = fig1.depth
    summary = axes["summary"]
    heights = (0.2, 0.4, 0.6, 0.8)                            # one may hide under an error dot
    for layer in range(1, L + 1):
        colours = [pixel(image, summary, layer, y).astype(int) for y in heights]
        assert sum(c.min() < 230 for c in colours) >= 3, layer   # constant input: every bar ≈ 1
        if layer == (L + 1) // 2:
            assert sum(np.abs(c - AMBER).sum() < 60 for c in colours) >= 3
    assert pixel(image, summary, 1.5, 0.5).min() > 240        # gap between bars stays white
    heat = axes["heatmap"]
    grey = pixel(image, heat, 1, L).astype(int)               # undefined before the wave arrives
    assert np.abs(grey - 217).max() < 12
    blue = pixel(image, heat, 35, 1).astype(int)              # cos = 1: deep blue
    assert blue[2] > blue[0] + 60


def test_write_pictures_refuses_a_missing_folder(fig1, tmp_path):
    with pytest.raises(SimulatorError):
        write_pictures(str(tmp_path / "nope"), fig1)


def test_palette_mix_classifies_back():
    levels = np.linspace(0.4, 1.0, 7)
    for f in levels:
        assert classify(palette.mix(f, 0.0)) == "red"
        assert classify(palette.mix(0.0, f)) == "blue"
        for b in levels:
            assert classify(palette.mix(f, b)) == "purple"
            assert classify(palette.mix(f, b, strength="mean")) == "purple"
    assert classify(palette.mix(0.0, 0.0)) == "empty"


def test_tag_colouring_band_edges_cross_in_the_middle():
    """Slow input: a new stream frame enters at tick 320; its forward edge reaches
    layer l at tick 320 + l, the edge of its target reaches δ of layer l at tick
    320 + L − l (d_y = 0), so the two edges form an X centred on the middle layers."""
    trace = simulate("fig2_slow", "run.ticks=360")
    L = trace.depth
    rgb = raster_rgb(trace, "tag")
    for layer in range(1, L + 1):
        row = rgb[layer, 300:360]
        changes = {300 + i + 1 for i in np.flatnonzero(np.abs(np.diff(row, axis=0)).sum(axis=1) > 1e-9)}
        assert changes == {320 + layer, 320 + L - layer}, (layer, sorted(changes))


def test_decimated_rows_are_drawn_at_their_ticks():
    """record.every = 4 keeps a row every 4 ticks: the raster's windows (given in
    ticks) select the rows inside them, its x axis and the heatmap's are in
    ticks (row r at tick 4r), and the GIF title names the tick, not the row."""
    trace = simulate_scene("fig2_slow", "record.every=4")
    assert list(trace["tick"][:3]) == [0, 4, 8]
    fig, panels = raster_figure(trace, windows=[(0, 40), (300, 400)], color="magnitude")
    (ax_a, win_a, _), (ax_b, win_b, _) = panels
    assert win_a == (0, 10) and win_b == (75, 100)          # rows 0..9 and 75..99
    assert ax_a.get_xlim() == pytest.approx((-2.0, 38.0))    # cells 4 ticks wide, centred
    assert ax_b.get_xlim() == pytest.approx((298.0, 398.0))
    heat = mismatch_figure(trace)[1]["heatmap"]
    T = len(trace["tick"])
    assert heat.get_xlim() == pytest.approx((-2.0, 4 * (T - 0.5)))
    anim = WaveAnimator(trace, size=DEFAULT_SIZE)
    row = 75
    assert trace["tick"][row] == 300
    assert anim.render(row).shape == (DEFAULT_SIZE[1], DEFAULT_SIZE[0], 3)


def test_show_displays_a_png_in_a_kernel_and_nothing_elsewhere(monkeypatch):
    """render.show: no kernel, nothing happens; in a kernel one PNG is displayed, and a
    pyplot figure is closed after it (so the inline backend does not show it again).
    IPython is stood in for by a module made here (the test extra does not install it)."""
    import sys
    import types
    import matplotlib.pyplot as plt
    from simulator import render
    shown, kernel = [], [None]
    ipython = types.ModuleType("IPython")
    ipython.get_ipython = lambda: kernel[0]
    display = types.ModuleType("IPython.display")
    display.display = shown.append
    display.Image = lambda data: types.SimpleNamespace(data=data)
    ipython.display = display
    monkeypatch.setitem(sys.modules, "IPython", ipython)
    monkeypatch.setitem(sys.modules, "IPython.display", display)
    fig = plt.figure()
    assert render.show(fig) is None and shown == []
    kernel[0] = object()
    render.show(fig)
    assert len(shown) == 1 and shown[0].data[:8] == b"\x89PNG\r\n\x1a\n"
    assert not plt.fignum_exists(fig.number)
    with pytest.raises(SimulatorError, match="fig"):
        render.show("not a figure")
