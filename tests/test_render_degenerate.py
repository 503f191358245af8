"""Valid but degenerate scenes draw every picture instead of crashing after the
whole simulation (issue 9, item 2: 'Data cannot be log-scaled', NaN axis
limits, empty rasters, a GIF of 61 GiB). Each case runs the CLI in-process with
every picture on and checks exit 0, the pictures present and readable, and,
where a panel has nothing to draw, that it says so instead."""
import os

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from simulator.command import main as tickprop
from simulator.probes import Trace
from simulator.render import convergence, levels, plots, raster, write_pictures
from simulator.render.indexed import MAX_FRAMES, MAX_GIF_BYTES, frame_limit
from simulator.render.plots import mismatch_figure
from simulator.render.raster import raster_figure

DIFFUSION = ("waves.png", "mismatch.png", "waves.gif")
CONVERGE = ("ar_convergence.png", "relaxation_wave.png", "relaxation_wave.gif")
TRAIN = ("ar_accuracy.png", "ar_accuracy_train.png")


def run_scene(tmp_path, *args):
    """Run a scene with --out in tmp_path; assert exit 0; return the folder."""
    out = tmp_path / "out"
    res = CliRunner().invoke(tickprop, ["run", *args, "--out", str(out), "--quiet"])
    assert res.exit_code == 0, (res.output, res.exception)
    return out


def images(out, names):
    """Open each picture fully (a truncated file fails here); return {name: PIL image}."""
    opened = {}
    for name in names:
        im = Image.open(out / name)
        im.load()
        opened[name] = im
    return opened


# --------------------------------------------- all-NaN mismatch (log scale)
@pytest.mark.parametrize("args", [
    ("pipelined", "--ticks", "5"),                     # ticks < depth: no gradient arrives
    ("pipelined", "--ticks", "1"),                     # a single tick
    ("fig1_constant", "--ticks", "30", "--set", "stream.amplitude=0.0"),   # ∇ = 0 everywhere
    ("fig1_constant", "--ticks", "30", "--set", "network.scale=0.0"),      # zero weights
], ids=["ticks-below-depth", "one-tick", "zero-amplitude", "zero-scale"])
def test_diffusion_with_undefined_mismatch_draws_every_picture(tmp_path, args):
    out = run_scene(tmp_path, *args)
    pics = images(out, DIFFUSION)
    assert pics["mismatch.png"].size == (1100, 750)
    assert pics["waves.gif"].n_frames >= 1


def test_the_deepest_network_of_width_one_draws(tmp_path):
    """600 layers of width 1 crashed while drawing on main; the schema now caps
    depth at 512, so the deepest allowed chain (513 widths of 1) must draw."""
    sizes = "[" + ",".join(["1"] * 513) + "]"
    out = run_scene(tmp_path, "pipelined", "--ticks", "40", "--set", f"network.sizes={sizes}")
    assert set(images(out, DIFFUSION)) == set(DIFFUSION)


def test_log_axis_with_nothing_finite_gets_a_fixed_range_and_a_note():
    from matplotlib.figure import Figure

    from simulator.render.axes import EMPTY_LOG_RANGE, log_axis
    fig = Figure()
    ax = fig.add_subplot()
    ax.plot([0, 1], [np.nan, np.nan])
    assert log_axis(ax, [np.nan, np.nan], "nothing") is False
    fig.canvas.draw()                                  # would raise on main
    assert ax.get_ylim() == pytest.approx(EMPTY_LOG_RANGE)
    assert [t.get_text() for t in ax.texts] == ["nothing"]
    ax2 = fig.add_subplot()
    assert log_axis(ax2, [0.0, 1e-3, np.nan], "x", margin=10.0) is True
    # The zero is drawn a decade below the decade of 1e-3, at 1e-4, on a tick reading "0".
    assert ax2.get_ylim() == pytest.approx((1e-5, 1e-2))
    fig.canvas.draw()
    locs = ax2.yaxis.get_majorticklocs()
    labels = dict(zip(np.rint(np.log10(locs)).astype(int).tolist(),
                      ax2.yaxis.get_major_formatter().format_ticks(locs)))
    assert labels[-4] == "0" and "10^{-3}" in labels[-3]
    assert ax2.get_yticks(minor=True).min() > 1e-4          # nothing labelled below the zero


@pytest.mark.filterwarnings("error::RuntimeWarning")
@pytest.mark.parametrize("key", ["mismatch_rel", "x_norm", "delta_norm"])
@pytest.mark.parametrize("everywhere", [False, True], ids=["one", "all"])
def test_a_saved_value_near_the_largest_float_draws(tmp_path, key, everywhere):
    """A trace holding 1e308 (finite; a run that nearly overflowed, or a
    damaged file) draws: the log axes stop at LOG_LIMIT instead of widening
    to inf ('Axis limits cannot be NaN or Inf' before), and no overflow
    warning reaches the terminal."""
    out = run_scene(tmp_path, "fig3_fast", "--ticks", "12", "--no-gif")
    with np.load(out / "trace.npz") as data:
        arrays = {k: data[k] for k in data.files}
    if everywhere:
        arrays[key][...] = 1e308
    else:
        arrays[key][3, 2] = 1e308
    np.savez(out / "trace.npz", **arrays)
    res = CliRunner().invoke(tickprop, ["render", str(out), "--no-gif"])
    assert res.exit_code == 0, (res.output, res.exception)
    assert res.stderr == ""
    assert images(out, ("waves.png", "mismatch.png"))["mismatch.png"].size == (1100, 750)


# ------------------------------------------------ Activation Relaxation
def test_relaxation_of_one_tick_draws_and_zero_ticks_is_refused(tmp_path):
    """iterations = 1: one relaxation step, a one-row wave; iterations = 0 has
    nothing to relax and is one error line (the schema's lower bound)."""
    out = run_scene(tmp_path, "ar_converge", "--set", "relaxation.iterations=1",
                    "--set", "relaxation.batch=4")
    pics = images(out, CONVERGE)
    assert pics["relaxation_wave.gif"].n_frames == 1
    res = CliRunner().invoke(tickprop, ["run", "ar_converge", "--set", "relaxation.iterations=0",
                                        "--out", str(tmp_path / "zero"), "--quiet"])
    assert res.exit_code == 2 and res.stderr.count("error:") == 1
    assert "relaxation.iterations" in res.stderr and not (tmp_path / "zero").exists()


@pytest.mark.parametrize("extra", [
    ("--set", "network.scale=0.0"),                                    # fixed point 0: NaN error
    ("--set", "relaxation.init=zero", "--set", "network.scale=0.0"),
], ids=["zero-weights", "zero-weights-zero-init"])
def test_relaxation_with_a_zero_fixed_point_draws(tmp_path, extra):
    out = run_scene(tmp_path, "ar_converge", "--set", "relaxation.iterations=5",
                    "--set", "relaxation.batch=4", *extra)
    images(out, CONVERGE)
    with np.load(out / "relaxation.npz", allow_pickle=False) as saved:
        assert np.isnan(saved["errors"][:, :, 1:-1]).all()     # the case really is all-NaN


def test_training_of_the_baseline_alone_draws_and_no_variants_is_refused(tmp_path):
    """Saved curves of backprop alone draw as one panel; an empty variant list
    is one error line before any training (the schema wants 1..5 variants)."""
    arrays = {"steps": np.arange(3), "test_backprop": np.full((1, 3), 0.5),
              "train_backprop": np.full((1, 3), 0.6)}
    convergence.draw_train(tmp_path, arrays)
    pics = images(tmp_path, TRAIN)
    assert pics["ar_accuracy.png"].size == (round(4.6 * 100), round(3.6 * 100))   # one panel
    res = CliRunner().invoke(tickprop, ["run", "ar_train", "--set", "relaxation.variants=[]",
                                        "--out", str(tmp_path / "none"), "--quiet"])
    assert res.exit_code == 2 and res.stderr.count("error:") == 1
    assert "relaxation.variants" in res.stderr and not (tmp_path / "none").exists()


def test_a_deep_relaxation_draws_ten_layer_curves(tmp_path):
    errors = np.full((1, 4, 201), 0.5)
    path = convergence.plot_convergence(tmp_path / "c.png", errors, [0.1])
    shown = convergence.shown_layers(200)
    assert len(shown) == convergence.MAX_LAYER_CURVES and shown[0] == 1 and shown[-1] == 199
    assert convergence.shown_layers(5) == [1, 2, 3, 4]
    images(tmp_path, [os.path.basename(path)])


# ----------------------------------------------------------------- GIF size
def test_wave_gif_of_a_long_record_is_capped():
    v = np.ones((5000, 3))
    anim = levels.LevelAnimator(v)
    assert MAX_FRAMES // 2 < len(anim.frame_ticks()) <= MAX_FRAMES
    assert anim.render(anim.frame_ticks()[0]).shape[1] <= levels.MAX_COLUMNS * 10 + 120


def test_locking_gif_of_a_deep_long_schedule_stays_within_the_frame_budget(tmp_path):
    """depth 64 × 200 frames: 25600 ticks of a 1200 × 2140 figure (61 GiB of frames on main)."""
    out = run_scene(tmp_path, "locking", "--set", "locking.depth=64", "--set", "locking.frames=200")
    pics = images(out, ("locking.png", "locking.gif"))
    w, h = pics["locking.gif"].size
    assert pics["locking.gif"].n_frames <= frame_limit(w, h)
    assert pics["locking.gif"].n_frames * w * h <= MAX_GIF_BYTES


# ----------------------------------------------- long and deep diffusion runs
def synthetic_trace(T, L, rng):
    """A Trace of T ticks and L+1 layers with the arrays the pictures read: the
    forward wave reaches layer l at tick l, the backward wave at tick 2L − l."""
    t, l = np.arange(T)[:, None], np.arange(L + 1)[None, :]
    fwd = np.where(t >= l, t - l, -1)
    bwd = np.where(t >= 2 * L - l, t - (2 * L - l), -1)
    arrays = {"tick": np.arange(T), "sizes": np.ones(L + 1, dtype=int),
              "x_norm": rng.uniform(0.1, 1.0, (T, L + 1)),
              "delta_norm": rng.uniform(0.1, 1.0, (T, L + 1)),
              "tag_input": fwd, "tag_output": bwd, "tag_supervision": bwd, "tag_pair": bwd,
              "stream_frame": np.arange(T),
              "mismatch_cos": np.where(bwd[:, 1:] >= 0, 0.9, np.nan),
              "mismatch_rel": np.where(bwd[:, 1:] >= 0, 1e-3, np.nan)}
    return Trace(arrays, {"name": "deep"})


def test_a_long_deep_run_draws_a_bounded_number_of_cells(tmp_path, rng):
    """4500 ticks × 600 levels: every picture draws at most the capped cells and says so."""
    trace = synthetic_trace(4500, 599, rng)
    # Without windows the raster shows the first and last ticks that fit; the
    # whole run asked for explicitly is drawn decimated.
    fig, panels = raster_figure(trace, windows=[(0, 4500)], color="both")
    for ax, _, _ in panels:
        rows, cols = ax.images[0].get_array().shape[:2]
        assert cols <= raster.MAX_DRAWN_TICKS and rows <= raster.MAX_DRAWN_LAYERS
        assert "every 3rd tick, every 2nd layer drawn" in ax.get_title()
        # the cells still sit on their ticks: the image spans the whole run
        left, right = ax.images[0].get_extent()[:2]
        assert left == -0.5 and right >= 4499.5
    fig, axes = mismatch_figure(trace)
    assert len(axes["cos"].lines) <= plots.MAX_CURVES + 3       # + ls and the filled-tick line
    assert all(len(line.get_xdata()) <= plots.MAX_POINTS for line in axes["cos"].lines)
    assert "of 599 layers" in axes["cos"].get_title()
    heat = axes["heatmap"].images[0].get_array().shape
    assert heat[0] <= raster.MAX_DRAWN_LAYERS and heat[1] <= raster.MAX_DRAWN_TICKS
    written = write_pictures(str(tmp_path), trace)
    assert Image.open(written["waves.gif"]).n_frames <= 600
    images(tmp_path, DIFFUSION)
