"""Locked vs pipelined schedules: counted against closed forms, tied to the tick
engine's own tags, and drawn where the schedule says."""
import imageio.v3 as iio
import numpy as np
import pytest

from simulator import scene
from simulator.errors import SimulatorError
from simulator.analysis.locking import schedules
from simulator.analysis import palette
from simulator.render.locking import frame_colour, locking_figure, write_locking
from simulator.runner import Prepared


@pytest.mark.parametrize("depth,frames", [(1, 1), (3, 4), (5, 20), (9, 3)])
def test_backprop_is_locked(depth, frames):
    bp = schedules(depth, frames)["backprop"]
    L, F = depth, frames
    assert bp["ticks"] == 2 * L * F
    # One layer works per step, the others wait.
    assert (bp["busy"].sum(axis=0) == 1).all()
    for s in range(F):
        assert (bp["forward"] == s).sum() == L and (bp["backward"] == s).sum() == L
        steps = np.flatnonzero(((bp["forward"] == s) | (bp["backward"] == s)).any(axis=0))
        assert steps.min() == 2 * L * s and steps.max() == 2 * L * s + 2 * L - 1
    assert bp["utilisation"] == pytest.approx(1 / L)
    assert bp["frames_per_tick"] == pytest.approx(1 / (2 * L))


@pytest.mark.parametrize("depth,frames", [(3, 10), (5, 20), (9, 40)])
def test_pipelined_keeps_every_layer_busy(depth, frames):
    pp = schedules(depth, frames)["pipelined"]
    L, F = depth, frames
    assert pp["ticks"] == F + 2 * L - 2
    # Once filled and before draining, every layer works every tick.
    assert pp["busy"][:, 2 * L - 2:F].all()
    # Per layer the busy ticks run from l − 1 to F + 2L − l − 2 (F ≥ 2L − 2).
    assert pp["utilisation"] == pytest.approx((F + L - 1) / (F + 2 * L - 2))
    assert pp["frames_per_tick"] == pytest.approx(F / (F + 2 * L - 2))
    for s in range(F):
        assert (pp["forward"] == s).sum() == L and (pp["backward"] == s).sum() == L


def test_pipelined_schedule_is_what_the_engine_does():
    name, resolved = scene.load("pipelined")
    resolved = scene.apply_overrides(resolved, ["run.ticks=40"], "test")
    trace = Prepared(name, resolved).simulate()
    L = trace.depth
    pp = schedules(L, 40)["pipelined"]
    for t in range(1, 40):
        for l in range(1, L + 1):
            fwd = trace["tag_input"][t, l]
            if fwd >= 0:
                assert pp["forward"][l - 1, t - 1] == fwd, (t, l)
            out = trace["tag_output"][t, l]
            if out >= 0:
                assert pp["backward"][l - 1, t - 1] == out, (t, l)


def test_bad_arguments_fail_cleanly():
    for depth, frames in ((0, 3), (3, 0), (2.5, 3), (True, 3)):
        with pytest.raises(SimulatorError):
            schedules(depth, frames)
    with pytest.raises(SimulatorError):
        schedules(512, 100_000)


def test_steady_rates_and_latency():
    table = schedules(4, 6)
    assert table["backprop"]["steady_frames_per_tick"] == pytest.approx(1 / 8)
    assert table["pipelined"]["steady_frames_per_tick"] == 1.0
    assert table["pipelined"]["latency"] == 7 and table["backprop"]["latency"] == 8


def cell(image, ax, t, y):
    dx, dy = ax.transData.transform((t, y))
    return image[int(image.shape[0] - dy), int(dx), :3].astype(float) / 255


def test_locking_png_draws_cells_where_the_schedule_says(tmp_path):
    L, F = 4, 5
    written = write_locking(str(tmp_path), L, F)
    image = iio.imread(written["locking.png"])
    fig, axes, result = locking_figure(L, F)
    fig.canvas.draw()
    for name, ax in axes.items():
        sched = result[name]
        for l in range(1, L + 1):
            for t in range(sched["ticks"]):
                # Off the half-row's centre, where forward cells carry their frame number.
                for occ, offset, back in ((sched["forward"], -0.1, False),
                                          (sched["backward"], 0.25, True)):
                    got = cell(image, ax, t, l + offset)
                    frame = occ[l - 1, t]
                    want = palette.EMPTY if frame < 0 else frame_colour(frame, back)
                    assert np.abs(got - want).max() < 0.03, (name, l, t, frame)


def test_locking_gif_frames_and_moving_cursor(tmp_path):
    written = write_locking(str(tmp_path), 3, 4, gif=True, every=2)
    frames = iio.imread(written["locking.gif"], index=None)[..., :3]
    span = 2 * 3 * 4
    assert len(frames) == span // 2
    png = iio.imread(written["locking.png"])[..., :3]
    assert frames.shape[1:3] == png.shape[:2]
    fig, axes, _ = locking_figure(3, 4)
    fig.canvas.draw()
    ax = axes["backprop"]
    for i in (0, 5, 11):
        dx, dy = ax.transData.transform((2 * i, 1.0))
        assert frames[i, int(frames.shape[1] - dy), int(round(dx)) - 1].max() < 40
