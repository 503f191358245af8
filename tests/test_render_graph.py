"""Pictures of graph traces: one row per vertex ordered by level, the sync set
marked, skip edges drawn, every text inside the canvas.

Expectations come from the trace's own arrays (``vertex_levels``,
``vertex_sync``, the provenance tags) and from the order the issue asks for
(by level, ties in model order), computed here, not by the renderer.
"""
import imageio.v3 as iio
import numpy as np
import pytest
from matplotlib.text import Text

from colours import classify
from simulator.render import write_pictures
from simulator.analysis import palette
from simulator.render.animate import WaveAnimator, frame_ticks
from simulator.render.plots import mismatch_figure
from simulator.render.raster import raster_figure
from simulator.runner import simulate_scene

AMBER = np.array([int(palette.LS_COLOUR[i:i + 2], 16) for i in (1, 3, 5)])
SCENES = {"unlevelled": ("residual_levelling", "run.ticks=20"),
          "levelled": ("residual_levelling", "run.ticks=20", "network.levelled=true"),
          "conv": ("conv_digits", "run.ticks=24", "rule.supervision_delay=0")}


@pytest.fixture(scope="module", params=sorted(SCENES))
def graph(request):
    return simulate_scene(*SCENES[request.param])


@pytest.fixture(scope="module")
def levelled():
    return simulate_scene(*SCENES["levelled"])


def level_order(trace):
    """Vertex indices by level, ties in model order (the issue's row order)."""
    levels = list(trace["vertex_levels"])
    return sorted(range(len(levels)), key=lambda v: (levels[v], v))


# levelling delays residual_levelling's skip h1 -> r by two identity vertices (the
# scene's [[network.layers]]: r = add(h3, h1), h1 at level 1, h3 at level 3)
DELAYS = {"_id_r_1_0": "h1 +1 tick", "_id_r_1_1": "h1 +2 ticks"}


def shown_name(trace, v):
    """The name a picture shows for vertex v: an identity as the delay of its source."""
    name = str(trace["vertex_names"][v])
    return DELAYS[name] if name.startswith("_id_") else name


def test_identity_vertices_are_named_as_delays_of_their_source(levelled):
    names = [str(n) for n in levelled["vertex_names"]]
    levels = dict(zip(names, levelled["vertex_levels"]))
    assert sorted(n for n in names if n.startswith("_id_")) == sorted(DELAYS)
    for identity, shown in DELAYS.items():
        source, hops = shown.split(" +")[0], int(shown.split(" +")[1].split()[0])
        assert levels[identity] == levels[source] + hops
    fig, panels = raster_figure(levelled)
    labels = [t.get_text() for t in panels[0][0].get_yticklabels()]
    assert "h1 +1 tick (2)" in labels and "h1 +2 ticks (3)" in labels
    assert not [label for label in labels if "_id_" in label]


def pixel(image, ax, x, y):
    dx, dy = ax.transData.transform((x, y))
    return image[int(image.shape[0] - dy), int(dx), :3]


def waves_present(trace):
    """(forward, backward) presence from the trace's own arrays: x carries a
    frame on some path (the newest input tag ≥ 0), δ is non-zero."""
    return trace["tag_input_hi"] >= 0, np.nan_to_num(trace["delta_norm"]) > 0


def drawn_png(trace, tmp_path, **kw):
    written = write_pictures(str(tmp_path), trace, gif=False, **kw)
    return iio.imread(written["waves.png"]), iio.imread(written["mismatch.png"])


def test_levelled_trace_is_not_in_level_order_already(levelled):
    # The order matters: levelling appends identities after their parents'
    # chain, so model order and level order differ (the test below can fail).
    assert level_order(levelled) != list(range(len(levelled["vertex_levels"])))


def test_raster_rows_are_vertices_by_level_with_names(graph):
    fig, panels = raster_figure(graph)
    order = level_order(graph)
    for ax, _, _ in panels:
        labels = [t.get_text() for t in ax.get_yticklabels()]
        assert len(labels) == len(order)
        for label, v in zip(labels, order):
            assert label.rsplit(" (", 1)[0] == shown_name(graph, v), (labels, order)
            assert f"({graph['vertex_levels'][v]})" in label


def test_raster_cells_follow_the_tags_of_the_vertex_on_their_row(graph, tmp_path):
    image, _ = drawn_png(graph, tmp_path)
    fig, panels = raster_figure(graph)
    fig.canvas.draw()
    order = level_order(graph)
    fwd, bwd = waves_present(graph)
    T = len(graph["tick"])
    seen = set()
    for ax, _, kind in panels:
        for row, v in enumerate(order):
            for t in range(T):
                f, b = fwd[t, v], bwd[t, v] and v != 0
                want = {(True, True): "purple", (True, False): "red",
                        (False, True): "blue", (False, False): "empty"}[(bool(f), bool(b))]
                got = classify(pixel(image, ax, t, row))
                assert got == want, (kind, t, v, got, want)
                seen.add(want)
    assert {"red", "blue", "empty", "purple"} <= seen


def amber_rows(image, ax, t):
    dx, _ = ax.transData.transform((t, 0))
    column = image[:, int(dx), :3].astype(int)
    return np.flatnonzero(np.abs(column - AMBER).sum(axis=1) < 60)


def test_sync_rows_marked_are_the_vertex_sync_set(graph, tmp_path):
    image, _ = drawn_png(graph, tmp_path, color="magnitude")
    fig, panels = raster_figure(graph, color="magnitude")
    fig.canvas.draw()
    ax = panels[0][0]
    order = level_order(graph)
    rows = [r for r, v in enumerate(order) if graph["vertex_sync"][v]]
    found = amber_rows(image, ax, len(graph["tick"]) // 2)
    edges = [image.shape[0] - ax.transData.transform((0, y))[1]
             for y in sorted({r + d for r in rows for d in (-0.5, 0.5)})]
    assert all(min(abs(r - e) for e in edges) <= 2.5 for r in found), (found, edges)
    assert all(any(abs(r - e) <= 2.5 for r in found) for e in edges)
    bold = [t.get_text().rsplit(" (", 1)[0] for t in ax.get_yticklabels()
            if t.get_fontweight() == "bold"]
    sync = np.flatnonzero(graph["vertex_sync"])
    assert sorted(bold) == sorted(shown_name(graph, v) for v in sync)


def test_unlevelled_skip_edge_is_drawn_left_of_the_raster(tmp_path):
    """h1 -> r spans three levels: a dark arc joins the rows of h1 and r in the
    strip left of the panel, passing beside h2 and h3 (no such arc levelled)."""
    found = {}
    for key in ("unlevelled", "levelled"):
        trace = simulate_scene(*SCENES[key])
        fig, panels = raster_figure(trace, color="magnitude")
        fig.canvas.draw()
        image = np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(int)
        ax = panels[0][0]
        x0 = ax.transData.transform((ax.get_xlim()[0], 0))[0]
        order = level_order(trace)
        names = [str(trace["vertex_names"][v]) for v in order]
        y = image.shape[0] - ax.transData.transform((0, names.index("h2") + 0.5))[1]
        strip = image[int(y), int(x0) - 40:int(x0) - 2]
        found[key] = int((strip.sum(axis=1) < 3 * 90).sum())
    assert found["unlevelled"] >= 1 and found["levelled"] == 0, found


def hidden_tick_labels(fig):
    """Tick labels matplotlib keeps but does not draw (ticks outside the view)."""
    hidden = set()
    for ax in fig.findobj(lambda a: hasattr(a, "xaxis") and hasattr(a, "yaxis")):
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                loc = tick.get_loc()
                if loc is None or not lo - 1e-9 * abs(hi - lo) <= loc <= hi + 1e-9 * abs(hi - lo):
                    hidden.update({id(tick.label1), id(tick.label2)})
    return hidden


def texts_inside(fig):
    """Every drawn, non-empty text whose window extent leaves the figure."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    box = fig.bbox
    hidden = hidden_tick_labels(fig)
    bad = []
    for text in fig.findobj(Text):
        if not text.get_visible() or not text.get_text().strip() or id(text) in hidden:
            continue
        ext = text.get_window_extent(renderer)
        if (ext.x0 < box.x0 - 1 or ext.y0 < box.y0 - 1 or ext.x1 > box.x1 + 1
                or ext.y1 > box.y1 + 1):
            bad.append((text.get_text(), tuple(np.round(ext.extents))))
    return bad


def test_every_text_of_the_graph_pictures_is_inside_the_canvas(graph):
    assert texts_inside(raster_figure(graph)[0]) == []
    assert texts_inside(raster_figure(graph, color="magnitude")[0]) == []
    assert texts_inside(mismatch_figure(graph)[0]) == []
    assert texts_inside(WaveAnimator(graph).fig) == []


def test_mismatch_rows_are_named_vertices_by_level_and_undefined_without_weights(graph, tmp_path):
    """Heatmap row p shows the vertex at level-order position p (input left
    out): grey (undefined) at every tick for a vertex without weights, and the
    bar summary names the vertices in that order, sync set bold."""
    _, image = drawn_png(graph, tmp_path)
    fig, axes = mismatch_figure(graph)
    fig.canvas.draw()
    order = level_order(graph)[1:]
    names = [shown_name(graph, v) for v in order]
    heat = axes["heatmap"]
    assert [t.get_text() for t in heat.get_yticklabels()] == names
    assert [t.get_text() for t in axes["summary"].get_xticklabels()] == names
    T = len(graph["tick"])
    for p, v in enumerate(order, start=1):
        cos = graph["mismatch_cos"][:, v - 1]
        weighted = "W" in graph["vertex_kinds"][v] or graph["vertex_kinds"][v] in ("dense", "conv2d")
        assert np.isfinite(cos).any() == weighted, (names[p - 1], cos)
        for t in range(T):
            rgb = pixel(image, heat, t, p).astype(int)
            grey = np.abs(rgb - 217).max() < 12
            assert grey == (not np.isfinite(cos[t])), (names[p - 1], t, rgb, cos[t])


def _hues(rgb, margin=0.03):
    """(red present, blue present) in a uint8 pixel: each hue above green."""
    r, g, b = np.asarray(rgb, dtype=float)[:3] / 255.0
    return bool(r - g > margin), bool(b - g > margin)


def test_gif_draws_the_vertices_in_level_order_with_their_waves(graph, tmp_path):
    """Size and frame count as asked; the network panel's column of each vertex
    sits at its level-order position and its first neuron is coloured by that
    vertex's tags; the bars name the vertices in that order."""
    size = (560, 360)
    write_pictures(str(tmp_path), graph, png=False, every=2, size=size)
    frames = iio.imread(tmp_path / "waves.gif", index=None)[..., :3]
    ticks = frame_ticks(graph, 2)
    assert len(ticks) == int(np.ceil(len(graph["tick"]) / 2))
    assert frames.shape == (len(ticks), size[1], size[0], 3)
    anim = WaveAnimator(graph, size=size)
    order = level_order(graph)
    columns = [anim.neuron_pixel(v, 0)[0] for v in order]
    assert columns == sorted(columns) and len(set(columns)) == len(columns)
    assert [t.get_text() for t in anim.bars_ax.get_xticklabels()] == \
        [shown_name(graph, v) for v in order]
    fwd, bwd = waves_present(graph)
    for i, t in enumerate(ticks):
        for v in range(len(order)):
            col, row = anim.neuron_pixel(v, 0)
            f, b = bool(fwd[t, v]), bool(bwd[t, v]) and v != 0
            # Shades follow |value| / the layer's 95th percentile and a mixed
            # neuron leans toward its stronger wave, so judge which hues it
            # carries: red over green for x, blue over green for δ.
            assert _hues(frames[i, row, col]) == (f, b), (t, v, frames[i, row, col])


def test_recorded_edges_agree_with_the_edges_rebuilt_from_the_scene(graph):
    """A graph trace records its edges (vertex_edges); pictures of older traces
    rebuild them from the scene's `from` lists and the levelling names: both
    must give the same edges."""
    from simulator.probes import Trace
    from simulator.render.rows import graph_edges

    recorded = sorted(graph_edges(graph, list(graph["vertex_names"])))
    older = Trace({k: v for k, v in graph.arrays.items() if k != "vertex_edges"}, graph.meta)
    rebuilt = sorted(graph_edges(older, list(graph["vertex_names"])))
    assert recorded == rebuilt and recorded
