"""The schedule zoo's pictures (simulator/render/schedules.py) from a synthetic
schedules.npz dict (tests/schedules_synthetic.py, hand-written timetables):
every figure is written and passes the figure lint, each wave sits where the
timetable puts it, the law line has slope 2, the markers are the timetables'
delays, and a missing or misshapen array is one SimulatorError naming it."""
import os

import imageio.v3 as iio
import numpy as np
import pytest
from matplotlib.container import ErrorbarContainer

from figure_lint import lint_figure
from schedules_synthetic import NAMES, synthetic_schedules
from simulator.analysis.schedule_data import check_schedules
from simulator.errors import SimulatorError
from simulator.render import schedules as render
from matplotlib import colormaps


@pytest.fixture(scope="module")
def data():
    return check_schedules(synthetic_schedules())


def frame_colour(s, backward=False):
    """tab10's colour of frame ``s``, backward work 45 % of the way to white."""
    rgb = np.array(colormaps["tab10"].colors[s % 10])
    return rgb + 0.45 * (1 - rgb) if backward else rgb


def _marker_y(ax, name):
    """The median markers' y of schedule ``name`` (errorbar containers are drawn in
    run order)."""
    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    return np.asarray(bars[NAMES.index(name)][0].get_ydata(), dtype=float)


def test_every_figure_is_written_and_passes_the_lint(tmp_path):
    raw = synthetic_schedules()
    written = render.write_schedules(str(tmp_path), raw)
    assert sorted(written) == sorted(render.FILES)
    for name, path in written.items():
        assert os.path.getsize(path) > 10_000, name
        assert iio.imread(path).shape[1] == 12 * render.DPI, name
    checked = check_schedules(raw)
    for name, build in render.FIGURES.items():
        assert lint_figure(build(checked)) == [], name


def test_png_false_writes_nothing_and_size_sets_pixels(tmp_path):
    raw = synthetic_schedules()
    assert render.write_schedules(str(tmp_path), raw, png=False) == {}
    assert os.listdir(tmp_path) == []
    written = render.write_schedules(str(tmp_path), raw, size=(1000, 900))
    assert all(iio.imread(p).shape[:2] == (900, 1000) for p in written.values())


def test_each_raster_puts_each_frame_where_its_timetable_does(data):
    fig, axes, W = render.raster_figure(data)
    assert list(axes) == list(NAMES)
    assert {ax.get_xlim() for ax in axes.values()} == {(-0.5, W - 0.5)}   # one window
    depth, levels, after = 4, np.arange(1, 5), 3 - np.arange(4)
    for name, ax in axes.items():
        assert ax.get_title(loc="left").startswith(name + ":")
        image = ax.images[0].get_array()
        T = min(W, len(data["schedules"][name]["forward"]))
        assert image.shape == (2 * 4, T, 3)
        for r in range(4):          # a chain: row r is stage r, frame s at s + fwd / s + D + S
            for t in range(T):
                if name in ("backprop", "gpipe"):
                    continue
                s_fwd, s_bwd = t - levels[r], t - depth - after[r]
                want_f = frame_colour(s_fwd) if 0 <= s_fwd < 16 else None
                want_b = frame_colour(s_bwd, True) if 0 <= s_bwd < 16 else None
                for row, want in ((2 * r, want_f), (2 * r + 1, want_b)):
                    if want is None:
                        assert np.allclose(image[row, t], render.palette.EMPTY)
                    else:
                        assert np.allclose(image[row, t], want), (name, r, t)
    locked = axes["backprop"].images[0].get_array()
    busy = ~np.all(np.isclose(locked, render.palette.EMPTY), axis=2)
    assert busy[0].sum() == -(-W // 8)          # one frame per period 2D = 8 ticks
    piped = ~np.all(np.isclose(axes["1f1b"].images[0].get_array(), render.palette.EMPTY), 2)
    assert piped[0].sum() == 16                 # a new frame every tick until the 16th


def test_the_law_line_has_slope_2_and_the_markers_are_the_delays(data):
    fig, axes = render.staleness_figure(data)
    law = [line for line in axes["delay"].lines if "LayerPipe2" in str(line.get_label())]
    assert len(law) == 1
    x, y = (np.asarray(a, dtype=float) for a in law[0].get_data())
    assert np.allclose(np.diff(y) / np.diff(x), 2.0) and np.isclose(y[0] - 2 * x[0], 0.0)
    after = np.array([3, 2, 1, 0])
    for name in ("1f1b", "2bw", "partime", "sideways", "diffusion"):
        assert np.array_equal(_marker_y(axes["delay"], name), 2.0 * after), name
    assert np.array_equal(_marker_y(axes["delay"], "backprop"), 2.0 * after + 1)
    assert np.array_equal(_marker_y(axes["stale"], "backprop"), np.zeros(4))
    assert np.array_equal(_marker_y(axes["stale"], "gpipe"), np.zeros(4))
    # one sweep panel per distinct schedule, a curve per depth on the layers 1..depth
    sweeps = {k: ax for k, ax in axes.items() if k.startswith("sweep ")}
    assert set(sweeps) == {"sweep backprop", "sweep gpipe",
                           "sweep 1f1b, 2bw, partime, sideways, diffusion"}
    ax = sweeps["sweep 1f1b, 2bw, partime, sideways, diffusion"]
    curves = [line for line in ax.lines if str(line.get_label()).startswith("depth ")]
    for line, d in zip(curves, (2, 4, 8)):
        assert np.array_equal(line.get_ydata(), 2.0 * (d - np.arange(1, d + 1)))


def test_memory_shows_stashes_growing_with_depth(data):
    fig, axes = render.memory_figure(data)
    lines = {str(line.get_label()): line for line in axes["total"].lines}
    assert np.array_equal(lines["1f1b"].get_ydata(), [4, 16, 64])        # Σ (2S + 1) = d²
    assert np.array_equal(lines["2bw"].get_ydata(), [4, 8, 16])
    ones = "backprop, gpipe, partime, sideways, diffusion"
    assert np.array_equal(lines[ones].get_ydata(), [2, 4, 8])
    assert np.array_equal(_marker_y(axes["per_stage"], "2bw"), np.full(4, 2.0))
    bars = [p.get_width() for p in axes["bytes"].patches]
    peak = 1024 * np.array(bars)                  # KiB for this model
    assert np.allclose(peak[NAMES.index("1f1b")], max(
        (data["schedules"]["1f1b"]["version_bytes"]).sum(axis=1)))


def test_accuracy_draws_a_band_per_schedule_over_seeds():
    for seeds, bands in ((3, len(NAMES)), (1, 0)):
        fig, axes = render.accuracy_figure(check_schedules(synthetic_schedules(seeds=seeds)))
        assert len(axes["accuracy"].collections) == bands
        assert [str(line.get_label()) for line in axes["accuracy"].lines] == list(NAMES)
        assert lint_figure(fig) == []


def test_a_graph_with_ties_unweighted_stages_and_no_sweep_draws():
    raw = synthetic_schedules(levels=(1, 1, 2, 3), after=(2, 1, 1, 0), sweep=(),
                              weighted=(True, False, True, True), seeds=1)
    data = check_schedules(raw)
    assert render.stage_order(data) == [0, 1, 2, 3]
    for name, build in render.FIGURES.items():
        assert lint_figure(build(data)) == [], name
    fig, axes = render.staleness_figure(data)
    assert np.isnan(_marker_y(axes["delay"], "1f1b")[1])        # the unweighted stage
    assert not any(k.startswith("sweep") for k in axes)


@pytest.mark.parametrize("change, message", [
    (lambda d: d.pop("1f1b__delay"), "missing arrays 1f1b__delay"),
    (lambda d: d.pop("stages_after"), "missing arrays stages_after"),
    (lambda d: d.update({"2bw__versions": d["2bw__versions"][:, :2]}),
     r"'2bw__versions' has shape \(24, 2\), expected \(24, 4\)"),
    (lambda d: d.update({"gpipe__accuracy": d["gpipe__accuracy"][:1]}),
     r"'gpipe__accuracy' has shape"),
    (lambda d: d.update({"names": np.array(["1f1b", "1f1b"])}), "each once"),
    (lambda d: d.update({"vertices": np.arange(4)}), "'vertices' holds no names"),
])
def test_a_missing_or_misshapen_array_is_one_clear_error(tmp_path, change, message):
    raw = synthetic_schedules()
    change(raw)
    with pytest.raises(SimulatorError, match=message):
        render.write_schedules(str(tmp_path), raw)
    assert os.listdir(tmp_path) == []


def test_a_folder_that_is_not_one_is_refused(tmp_path):
    with pytest.raises(SimulatorError, match="not a folder"):
        render.write_schedules(str(tmp_path / "nope"), synthetic_schedules())


def test_a_diverged_schedule_stops_at_a_cross_and_long_locked_runs_get_log_ticks():
    raw = synthetic_schedules(seeds=2)
    loss = raw["sideways__loss"]
    first = int(np.flatnonzero(np.isfinite(loss[1]))[3])
    loss[1, first] = np.inf                                  # seed 1 blows up there
    later = int(np.flatnonzero(np.isfinite(loss[0]))[5])
    loss[0, later] = 1e4 * loss[0, np.isfinite(loss[0])][0]  # seed 0 a little later
    assert render.diverged_at(loss) == min(first, later)
    fig, axes = render.accuracy_figure(check_schedules(raw))
    labels = [str(line.get_label()) for line in axes["loss"].lines]
    assert f"sideways (diverged, tick {min(first, later)})" in labels
    crosses = [line for line in axes["loss"].lines if line.get_marker() == "x"]
    assert len(crosses) == 1 and crosses[0].get_xdata()[0] < min(first, later)
    assert all(np.isfinite(line.get_ydata()).all() for line in axes["loss"].lines)
    # locked backprop runs 128 ticks, the pipelined ones 24: 5x apart, so log ticks
    assert {ax.get_xscale() for ax in axes.values()} == {"symlog"}
    assert lint_figure(fig) == []
    same = synthetic_schedules(names=("1f1b", "partime"))
    fig, axes = render.accuracy_figure(check_schedules(same))
    assert {ax.get_xscale() for ax in axes.values()} == {"linear"}


def test_a_schedule_with_no_finite_loss_and_a_run_without_labels_still_draw(tmp_path):
    """The kind saves a schedule whose engine stopped at a NaN as all-NaN numbers,
    and a regression (teacher) run has no evaluation ticks: both draw, and say so."""
    raw = synthetic_schedules(seeds=2)
    raw["diffusion__loss"][:] = np.nan
    fig, axes = render.accuracy_figure(check_schedules(raw))
    labels = [str(line.get_label()) for line in axes["loss"].lines]
    assert "diffusion (no finite loss)" in labels
    assert lint_figure(fig) == []
    raw["eval_ticks"] = raw["eval_ticks"][:0]
    for name in NAMES:
        raw[f"{name}__accuracy"] = raw[f"{name}__accuracy"][:, :0]
    fig, axes = render.accuracy_figure(check_schedules(raw))
    texts = [t.get_text() for t in axes["accuracy"].texts]
    assert any("no held-out accuracy" in t for t in texts)
    assert lint_figure(fig) == []
    assert set(render.write_schedules(str(tmp_path), raw)) == set(render.FILES)
