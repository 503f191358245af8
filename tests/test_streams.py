"""Input streams: seeded, chunk-independent, and shaped like the paper's inputs."""
import numpy as np
import pytest

from simulator import Model
from simulator.errors import SimulatorError
from simulator.streams import (ConstantStream, HeldStream, SineStream, SmoothStream,
                               make_stream, teacher_target)


def ident(u, ids):
    return u[..., :2]


@pytest.mark.parametrize("kind,params", [("constant", {}), ("held", {"hold": 4, "crossfade": 2}),
                                         ("smooth", {"tau": 5.0}), ("sine", {"period": 9.0})])
def test_same_seed_same_stream_whatever_the_chunks(kind, params):
    a = make_stream(kind, 3, 2, np.random.default_rng(5), ident, **params)
    b = make_stream(kind, 3, 2, np.random.default_rng(5), ident, **params)
    ua, ya, ia = a.take(30)
    parts = [b.take(n) for n in (7, 1, 22)]
    np.testing.assert_array_equal(ua, np.concatenate([p[0] for p in parts]))
    np.testing.assert_array_equal(ia, np.concatenate([p[2] for p in parts]))
    assert ua.shape == (30, 2, 3) and ya.shape == (30, 2, 2)


def test_held_frames_change_every_h_ticks_with_a_linear_crossfade():
    s = HeldStream(2, 1, np.random.default_rng(0), ident, hold=5, crossfade=2)
    u, _, ids = s.take(15)
    np.testing.assert_array_equal(ids, np.repeat([0, 1, 2], 5))
    for k in (1, 2):
        start = 5 * k
        prev, new = u[start - 1], u[start + 2]
        np.testing.assert_allclose(u[start], prev + (new - prev) / 3)
        np.testing.assert_allclose(u[start + 1], prev + 2 * (new - prev) / 3)
        np.testing.assert_array_equal(u[start + 2], u[start + 4])


def test_fast_stream_is_white_noise():
    u, _, ids = HeldStream(4, 1, np.random.default_rng(1), ident, hold=1).take(4000)
    x = u[:, 0, 0]
    assert abs(np.corrcoef(x[1:], x[:-1])[0, 1]) < 0.05
    np.testing.assert_array_equal(ids, np.arange(4000))


def test_smooth_stream_has_the_requested_correlation_time():
    tau = 10.0
    u, _, _ = SmoothStream(1, 1, np.random.default_rng(2), ident, tau=tau).take(40000)
    x = u[:, 0, 0]
    lag1 = np.corrcoef(x[1:], x[:-1])[0, 1]
    assert lag1 == pytest.approx(np.exp(-1 / tau), abs=0.01)
    assert np.var(x) == pytest.approx(1.0, abs=0.15)


def test_sine_and_constant():
    u, _, _ = SineStream(2, 1, np.random.default_rng(3), ident, period=8.0).take(17)
    np.testing.assert_allclose(u[0], u[8], atol=1e-12)
    np.testing.assert_allclose(u[0], u[16], atol=1e-12)
    c, _, ids = ConstantStream(2, 1, np.random.default_rng(3), ident).take(5)
    assert (c == c[0]).all() and (ids == 0).all()


def test_teacher_targets_are_the_teachers_instantaneous_output():
    teacher = Model.chain([3, 4, 2], ["tanh", "linear"], seed=4)
    u = np.random.default_rng(4).normal(size=(2, 5, 3))
    y = teacher_target(teacher, "mse")(u, None)
    w0, w1 = teacher.parameters()["1.W"], teacher.parameters()["2.W"]
    np.testing.assert_allclose(y[1, 3], w1 @ np.tanh(w0 @ u[1, 3]), rtol=1e-12)
    p = teacher_target(teacher, "xent")(u, None)
    np.testing.assert_allclose(p.sum(axis=-1), 1.0)


def test_teacher_targets_on_a_device_equal_the_hand_written_teacher(device):
    """On a device the teacher's products run there (its weights copied once);
    the targets come back as float64 host arrays equal to the hand-written
    teacher, held frames repeated."""
    teacher = Model.chain([3, 4, 2], ["tanh", "linear"], seed=4)
    u = np.random.default_rng(4).normal(size=(4, 5, 3))
    u[2] = u[1]
    w0, w1 = teacher.parameters()["1.W"], teacher.parameters()["2.W"]
    for loss in ("mse", "xent"):
        y = teacher_target(teacher, loss, "float64", device)(u, None)
        assert type(y) is np.ndarray and y.dtype == np.float64 and y.shape == (4, 5, 2)
        want = np.tanh(u @ w0.T) @ w1.T
        if loss == "xent":
            want = np.exp(want) / np.exp(want).sum(axis=-1, keepdims=True)
        np.testing.assert_allclose(y, want, rtol=1e-12)


def test_bad_stream_requests():
    with pytest.raises(SimulatorError):
        make_stream("wobbly", 2, 1, np.random.default_rng(0), ident)
    with pytest.raises(SimulatorError):
        HeldStream(2, 1, np.random.default_rng(0), ident, hold=2, crossfade=3)


def test_teacher_targets_computed_once_per_distinct_frame_equal_per_tick_ones():
    """The teacher runs once per distinct frame (held and crossfaded frames
    included); every tick's target equals the teacher applied to that tick."""
    from simulator.streams import HeldStream, make_teacher, teacher_target
    teacher = make_teacher([4, 6, 3], ["tanh", "linear"], seed=5)
    p = teacher.parameters()
    calls = []
    target = teacher_target(teacher, "xent")

    def counting(u, ids):
        calls.append(len(u))
        return target(u, ids)
    stream = HeldStream(4, 2, np.random.default_rng(1), counting, hold=5, crossfade=2)
    u, y, _ = stream.take(23)
    for k in range(23):
        z = np.tanh(u[k] @ p["1.W"].T + p["1.b"]) @ p["2.W"].T + p["2.b"]
        want = np.exp(z - z.max(axis=1, keepdims=True))
        np.testing.assert_allclose(y[k], want / want.sum(axis=1, keepdims=True), rtol=1e-13)
    fresh = 1 + int(np.sum(np.any(u[1:] != u[:-1], axis=(1, 2))))
    assert fresh < 23          # held ticks repeat: fewer frames than ticks to evaluate


def test_teacher_targets_are_computed_in_the_runs_dtype():
    from simulator.streams import make_teacher, teacher_target
    teacher = make_teacher([6, 8, 3], ["tanh", "linear"], seed=2)
    u = np.random.default_rng(0).normal(size=(5, 2, 6))
    y64 = teacher_target(teacher, "mse", "float64")(u, None)
    y32 = teacher_target(teacher, "mse", "float32")(u, None)
    assert y32.dtype == np.float64                       # frames stay float64 on the host
    np.testing.assert_allclose(y32, y64, rtol=1e-5, atol=1e-6)
    assert not np.array_equal(y32, y64)                  # but were computed in float32
    np.testing.assert_array_equal(y32, y32.astype(np.float32).astype(np.float64))


def test_teacher_targets_tell_frames_apart_past_their_first_value(monkeypatch):
    """A frame equal to the one before at its first value but not further on is
    a new frame (the repeat check compares first values, then the rest)."""
    import simulator.streams as streams
    teacher = streams.make_teacher([3, 4, 2], ["tanh", "linear"], seed=7)
    p = teacher.parameters()
    rows, evaluate = [], streams.evaluate

    def counting(model, u, params=None):
        rows.append(len(u))
        return evaluate(model, u, params)
    monkeypatch.setattr(streams, "evaluate", counting)
    u = np.random.default_rng(3).normal(size=(4, 2, 3))
    u[1] = u[0]
    u[1, 1, 2] += 1.0          # same first value, another frame
    u[2] = u[1]                # a repeat
    y = streams.teacher_target(teacher, "mse")(u, None)
    assert rows == [3 * 2]
    for k in range(4):
        want = np.tanh(u[k] @ p["1.W"].T + p["1.b"]) @ p["2.W"].T + p["2.b"]
        np.testing.assert_allclose(y[k], want, rtol=1e-13)
