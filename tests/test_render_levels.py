"""The level-wave raster and GIF (relaxation and predictive-coding waves):
checked by pixel content against the values they draw."""
import imageio.v3 as iio
import numpy as np

from colours import classify
from simulator.render.levels import LevelAnimator, wave_levels, wave_rgb, write_wave_gif


def front(ticks=12, levels=5):
    """A wave that reaches level k at tick k and then decays: the Z-IL picture."""
    v = np.zeros((ticks, levels))
    for k in range(levels):
        v[k:, k] = 10.0 ** -np.arange(ticks - k)
    return v


def test_raster_is_blue_exactly_where_the_wave_has_arrived():
    v = front()
    rgb = wave_rgb(v)
    levels = v.shape[1]
    for t in range(v.shape[0]):
        for k in range(levels):
            colour = classify(rgb[levels - 1 - k, t])
            assert colour == ("blue" if t >= k else "empty"), (t, k)


def test_log_shading_is_monotone_and_overflow_is_the_strongest():
    v = np.array([[1e-9, 1e-3, 1.0, np.inf, 0.0]])
    lv = wave_levels(v)[0]
    assert lv[4] == 0.0 and lv[3] == 1.0
    assert 0 < lv[0] <= lv[1] < lv[2] <= 1.0


def test_gif_has_one_frame_per_tick_and_a_moving_cursor(tmp_path):
    v = front(ticks=9)
    anim = LevelAnimator(v)
    frames = [anim.render(t) for t in anim.frame_ticks()]
    assert len(frames) == 9 and len({f.shape for f in frames}) == 1
    path = write_wave_gif(tmp_path / "w.gif", v)
    read = iio.imread(path, index=None)
    assert read.shape[0] == 9
    dark = [np.argmax((f[..., :3].sum(axis=-1) < 100).any(axis=0)) for f in frames]
    assert all(b > a for a, b in zip(dark, dark[1:]))
