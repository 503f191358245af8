"""Waves as the paper draws them (issue 11, item 1), read back from waves.png.

Expectations come from the tick rule and the recorded arrays, not from the
renderer: with d_y = 0 the target is there from tick 0, so δ of layer l is
non-zero from tick L − l (the output error against the still-empty output
descends one layer per tick) while x of layer l carries frame 0 from tick l;
with a new frame every tick (fig3) g of layer l pairs x of frame t − (l − 1)
with δ of target frame t − (L − l), one frame only where l − 1 = L − l, i.e.
at ls = (L + 1)/2 (Eq. 6, fact C).
"""
import imageio.v3 as iio
import numpy as np
import pytest
from matplotlib.patches import Patch

from colours import classify
from simulator.render import write_pictures
from simulator.kinds import diffusion
from simulator.render.raster import EXACT_REL, SYNC_AT, exact_from, raster_figure, sync_cells
from simulator.runner import simulate_scene

DARK = 70           # every channel below this: the sync overlay's ink, no wave colour


@pytest.fixture(scope="module")
def fig1():
    return simulate_scene("fig1_constant")


@pytest.fixture(scope="module")
def fig3():
    return simulate_scene("fig3_fast")          # its default length: 200 ticks


def drawn(trace, folder, **kw):
    """(PNG pixels of waves.png as written, the figure's panels to map cells)."""
    written = write_pictures(str(folder), trace, gif=False, **kw)
    image = iio.imread(written["waves.png"])[..., :3]
    fig, panels = raster_figure(trace, **kw)
    fig.canvas.draw()
    assert image.shape[:2] == fig.canvas.get_width_height()[::-1]
    return image, fig, panels


def cell_pixels(image, ax, t, layer, xs=(-0.3, 0.0, 0.3), ys=(0.0, 0.15, 0.3)):
    """Pixels inside cell (tick t, layer) at the given offsets from its centre
    (the upper half: the sync overlay runs through the lower half)."""
    out = []
    for dx in xs:
        for dy in ys:
            px, py = ax.transData.transform((t + dx, layer + dy))
            out.append(image[int(image.shape[0] - py), int(px)])
    return out


def cell_colour(image, ax, t, layer):
    names = {classify(p) for p in cell_pixels(image, ax, t, layer)}
    assert len(names) == 1, (t, layer, names)
    return names.pop()


def has_ink(image, ax, t, layer):
    """A dark pixel anywhere in the column of cell (t, layer), inside the row
    (clear of the amber outline at the row's edges)."""
    px, top = ax.transData.transform((t, layer + 0.4))
    _, bottom = ax.transData.transform((t, layer - 0.4))
    h = image.shape[0]
    column = image[int(h - top):int(h - bottom) + 1, int(px)].astype(int)
    return bool((column.max(axis=1) < DARK).any())


def test_fig1_backward_wave_is_blue_until_the_forward_wave_arrives_then_purple(fig1, tmp_path):
    L = fig1.depth
    T = len(fig1["tick"])
    t, layer = np.arange(T)[:, None], np.arange(L + 1)[None, :]
    # The recorded arrays follow the tick rule (the oracle the pixels are held to).
    fwd = fig1["tag_input"] >= 0
    bwd = np.nan_to_num(fig1["delta_norm"]) > 0
    assert np.array_equal(fwd, t >= layer)
    assert np.array_equal(bwd[:, 1:], (t >= L - layer)[:, 1:]) and not bwd[:, 0].any()
    want = np.select([fwd & bwd, fwd, bwd], ["purple", "red", "blue"], "empty")
    image, fig, panels = drawn(fig1, tmp_path)
    assert [k for _, _, k in panels] == ["magnitude", "tag"]
    for ax, (start, stop), kind in panels:
        assert (start, stop) == (0, T)                      # 60 ticks fit: the whole run
        got = np.array([[cell_colour(image, ax, i, l) for l in range(L + 1)]
                        for i in range(T)])
        assert np.array_equal(got, want), (kind, np.argwhere(got != want)[:5])
    # Blue exactly where δ is there and no forward frame yet: the triangle
    # above the anti-diagonal that meets the red wave near ls.
    blue = np.argwhere(want == "blue")
    assert len(blue) == sum(max(0, min(l, T) - (L - l)) for l in range(1, L + 1)) > 0
    assert all(L - l <= i < l for i, l in blue)


def test_fig1_waves_meet_near_ls(fig1, tmp_path):
    """Red climbs from layer 0 (reaching layer l at tick l), blue descends from
    layer L (reaching l at tick L − l): along each row of the picture the first
    coloured cell is red below the meeting point and blue from ls up."""
    L = fig1.depth
    ls = (L + 1) // 2
    image, fig, panels = drawn(fig1, tmp_path)
    for ax, (start, stop), kind in panels:
        for layer in range(1, L + 1):
            row = [cell_colour(image, ax, i, layer) for i in range(start, stop)]
            first = next(c for c in row if c != "empty")
            assert first == ("red" if layer < ls else "blue"), (kind, layer, row[:12])
            assert row[-1] == "purple"


def test_fig3_sync_overlay_is_solid_on_ls_and_absent_elsewhere(fig3, tmp_path):
    L = fig3.depth
    ls = (L + 1) // 2
    image, fig, panels = drawn(fig3, tmp_path)
    T = len(fig3["tick"])
    for ax, (start, stop), kind in panels:
        # A tick is several pixels wide (no moiré) and the title says which ticks.
        width = ax.get_window_extent().width
        assert width / (stop - start) >= 5, (kind, start, stop)
        assert f"ticks {start}–{stop - 1} of {T}" in ax.get_title()
        for i in range(start, stop):
            for layer in range(1, L + 1):
                # paired x (layer l − 1, frame i − l + 1) and δ (target frame
                # i − (L − l)) are both there and agree only on ls
                want = layer == ls and i >= max(layer - 1, L - layer)
                assert has_ink(image, ax, i, layer) == want, (kind, i, layer)
    starts = [w[0] for _, w, _ in panels]
    assert min(starts) == 0 and max(starts) > 0           # the first and the last ticks


def test_sync_cells_follow_the_frames_the_tick_rule_pairs(fig1, fig3):
    """fig3 (h = 1): only ls, from tick ls − 1; fig1 (one frame for ever, h ≫ L):
    every layer from the tick both its paired x and its δ are there."""
    L = fig3.depth
    t, layer = np.arange(len(fig3["tick"]))[:, None], np.arange(L + 1)[None, :]
    both = (layer >= 1) & (t >= layer - 1) & (t >= L - layer)
    assert np.array_equal(sync_cells(fig3), both & (layer == (L + 1) // 2))
    t = np.arange(len(fig1["tick"]))[:, None]
    both = (layer >= 1) & (t >= layer - 1) & (t >= L - layer)
    assert np.array_equal(sync_cells(fig1), both)


@pytest.mark.parametrize("scene", ["fig1_constant", "fig3_fast", "residual_levelling"])
def test_waves_png_text_inside_the_canvas_legible_and_the_key_matches(scene, tmp_path):
    trace = simulate_scene(scene)
    image, fig, panels = drawn(trace, tmp_path)
    renderer = fig.canvas.get_renderer()
    W, H = fig.canvas.get_width_height()
    texts = [t for t in fig.findobj(lambda a: hasattr(a, "get_text") and hasattr(a, "get_fontsize"))
             if t.get_visible() and t.get_text().strip()]
    # Everything drawn (tick labels in view included) lies inside the canvas.
    tight = fig.get_tightbbox(renderer).transformed(fig.dpi_scale_trans)
    assert tight.x0 >= 0 and tight.y0 >= 0 and tight.x1 <= W and tight.y1 <= H, tight
    for text in texts:
        assert text.get_fontsize() >= 8, (text.get_text(), text.get_fontsize())
    titles = [ax.title.get_window_extent(renderer) for ax, _, _ in panels]
    for box in titles:
        assert box.x0 >= 0 and box.x1 <= W, box
    for i, a in enumerate(titles):
        for b in titles[i + 1:]:
            assert not a.overlaps(b)
    # The key names every colour drawn, and each patch is the colour it names.
    legend = fig.legends[0]
    labels = [t.get_text() for t in legend.get_texts()]
    patches = {lab: h for lab, h in zip(labels, legend.legend_handles) if isinstance(h, Patch)}
    key = {classify(h.get_facecolor()) for h in patches.values()}
    assert {"red", "blue", "purple", "empty"} <= key
    assert any("g pairs x and δ" in lab for lab in labels)
    drawn_colours = {classify(p) for p in image[::3, ::3].reshape(-1, 3)}
    assert {"red", "blue", "purple"} <= drawn_colours


def test_fig1_marks_the_first_exact_tick_of_each_layer_as_fact_a_has_it(fig1, tmp_path):
    """Constant input, d_y = 0: the output's error is steady from tick L and
    descends one layer a tick, so g of layer l is backprop's from tick 2L − l
    (layer 1 last, at 2L − 1: fact A), not from the tick its dark line starts;
    a white diamond sits there on each row, and nowhere on fig3 (never exact)."""
    L = fig1.depth
    first = {l: 2 * L - l for l in range(1, L + 1)}
    rel = fig1["mismatch_rel"]
    for l, t in first.items():           # the recorded error agrees (float64 rounding)
        assert rel[t - 1, l - 1] > 1e-3 and np.all(rel[t:, l - 1] <= 1e-6), l
    assert exact_from(fig1) == first
    assert min(first.values()) > min(np.flatnonzero(sync_cells(fig1)[:, l]).min()
                                     for l in range(1, L + 1))
    image, fig, panels = drawn(fig1, tmp_path)
    for ax, _, _ in panels:
        for l, t in first.items():
            px, py = ax.transData.transform((t, l - 0.5 + SYNC_AT))
            patch = image[int(image.shape[0] - py) - 1:int(image.shape[0] - py) + 2,
                          int(px) - 1:int(px) + 2].astype(int)
            assert (patch.min(axis=-1) > 250).any(), (l, t, patch)
            px, _ = ax.transData.transform((t - 3, 0))       # no diamond before it
            row = image[int(image.shape[0] - py), int(ax.transData.transform((0, 0))[0]):int(px)]
            assert not (row.astype(int).min(axis=-1) > 250).any(), l
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "g = backprop's gradient from this tick on" in labels


def test_fig3_has_no_exact_mark(fig3):
    assert exact_from(fig3) == {}
    fig, _ = raster_figure(fig3)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert not [lab for lab in labels if "backprop's gradient" in lab]


def test_exact_tolerance_is_the_run_summary_s():
    assert EXACT_REL == diffusion.EXACT_REL
