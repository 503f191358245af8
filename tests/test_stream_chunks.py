"""A held stream's chunk drawn at once equals the per-tick rule written out here (one
``rng.normal`` per new frame, the crossfade blended tick by tick), bit for bit; the
teacher's and the recorder's repeat checks equal a whole-frame comparison."""
import numpy as np
import pytest

from simulator.engine.drive import changed_rows, repeated_frames
from simulator.streams import ConstantStream, HeldStream, make_teacher, teacher_target


def per_tick(n_in, batch, seed, ticks, hold, crossfade=0, amplitude=1.0):
    """The held stream's rule, one tick at a time (the code before chunks were drawn)."""
    rng, prev, cur, u, ids = np.random.default_rng(seed), None, None, [], []
    for t in range(ticks):
        k, phase = divmod(t, hold)
        if phase == 0:
            prev = cur if cur is not None else np.zeros((batch, n_in))
            cur = amplitude * rng.normal(size=(batch, n_in))
        w = (phase + 1) / (crossfade + 1)
        u.append((1 - w) * prev + w * cur if phase < crossfade else cur)
        ids.append(k)
    return np.array(u), np.array(ids), rng


def same_bits(a, b):
    return a.shape == b.shape and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("hold,crossfade,amplitude,batch", [
    (1, 0, 1.0, 1), (1, 0, 0.5, 3), (4, 0, 1.0, 2), (5, 2, 1.0, 2), (7, 6, 2.5, 3),
    (64, 8, 1.0, 16)])
def test_held_chunks_equal_the_per_tick_rule_bit_for_bit(hold, crossfade, amplitude, batch):
    want, ids, rng = per_tick(5, batch, 3, 150, hold, crossfade, amplitude)
    seen = []
    s = HeldStream(5, batch, np.random.default_rng(3), lambda u, i: seen.append(u) or u[..., :2],
                   hold=hold, crossfade=crossfade, amplitude=amplitude)
    parts = [s.take(n) for n in (1, 0, 9, 64, 3, 73)]
    assert same_bits(np.concatenate([p[0] for p in parts]), want)
    np.testing.assert_array_equal(np.concatenate([p[2] for p in parts]), ids)
    # the generator is left where the per-tick draws leave it
    assert s.rng.bit_generator.state == rng.bit_generator.state
    assert len(seen) == 6


def test_a_constant_stream_draws_once():
    want, _, _ = per_tick(3, 2, 4, 20, 2**63 - 1, amplitude=0.3)
    s = ConstantStream(3, 2, np.random.default_rng(4), lambda u, i: u, amplitude=0.3)
    assert same_bits(np.concatenate([s.take(n)[0] for n in (7, 13)]), want)


def test_changed_rows_equal_a_whole_row_comparison():
    rng = np.random.default_rng(0)
    flat = rng.normal(size=(40, 6))
    flat[5] = flat[4]                       # a repeat
    flat[9, 0] = flat[8, 0]                 # first values agree, the rest differ
    flat[20:30] = flat[19]                  # a held run
    flat[33, 2] = np.nan
    flat[34] = flat[33]                     # NaN never equals itself
    want = np.ones(40, dtype=bool)
    want[1:] = [not np.array_equal(flat[k], flat[k - 1]) for k in range(1, 40)]
    np.testing.assert_array_equal(changed_rows(flat), want)
    assert not want[5] and want[9] and not want[20:30].any() and want[34]
    maybe = want.copy()
    maybe[[0, 9, 31, 33]] = True            # rows that may differ, repeats among them
    np.testing.assert_array_equal(changed_rows(flat, maybe), want)


def test_repeated_frames_compare_u_and_y_and_the_last_tick():
    rng = np.random.default_rng(1)
    u, y = rng.normal(size=(6, 2, 3)), rng.normal(size=(6, 2, 1))
    u[2], y[3] = u[1], y[2]
    u[4], y[4] = u[3], y[3]
    np.testing.assert_array_equal(repeated_frames(u, y, None), [0, 0, 0, 0, 1, 0])
    np.testing.assert_array_equal(repeated_frames(u, y, (u[0], y[0]))[:1], [1])


@pytest.mark.parametrize("hold,crossfade", [(1, 0), (6, 0), (6, 3)])
def test_the_teacher_told_which_ticks_repeat_gives_the_compared_targets(hold, crossfade):
    teacher = make_teacher([4, 7, 3], ["tanh", "linear"], seed=2)
    target = teacher_target(teacher, "xent")
    calls = []

    def compared(u, ids):                   # no hint: the frames are compared
        calls.append(u.shape)
        return target(u, ids)
    told = HeldStream(4, 2, np.random.default_rng(6), target, hold=hold, crossfade=crossfade)
    plain = HeldStream(4, 2, np.random.default_rng(6), compared, hold=hold, crossfade=crossfade)
    for n in (5, 40, 1, 30):
        a, b = told.take(n), plain.take(n)
        assert same_bits(a[0], b[0]) and same_bits(a[1], b[1])
    p = teacher.parameters()
    u, y, _ = told.take(9)
    z = np.tanh(u @ p["1.W"].T + p["1.b"]) @ p["2.W"].T + p["2.b"]
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    np.testing.assert_allclose(y, e / e.sum(axis=-1, keepdims=True), rtol=1e-13)
    assert len(calls) == 4
