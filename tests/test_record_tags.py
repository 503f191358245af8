"""Tags in closed form (engine.tags.TagClock) against the oracle: the tags a chain
Engine steps itself, tick by tick, on real frames, for every option
combination; and the Recorder, which writes the closed form per block,
against the same recorder stepping the tags."""
import itertools

import numpy as np
import pytest

from simulator import Network
from simulator.probes import recorder as probe_recorder
from simulator.engine import Engine
from simulator.engine.tags import TagClock, warm_ticks
from simulator.probes import TAG_KEYS, RecordPlan, Recorder
from simulator.streams import HeldStream, teacher_target

DERIVATIVES = ("none", "local", "frame", "itd-y", "itd-dy")
PAIRINGS = ("local", "frame")


@pytest.mark.parametrize("derivative, pairing", list(itertools.product(DERIVATIVES, PAIRINGS)))
@pytest.mark.parametrize("depth, delay", [(1, 0), (2, 3), (5, 0), (6, 2)])
def test_closed_form_tags_equal_the_stepped_tags(derivative, pairing, depth, delay):
    rng = np.random.default_rng(depth + delay)
    sizes = [3] + [4] * (depth - 1) + [2]
    engine = Engine(Network.random(sizes, "tanh", seed=1), derivative=derivative,
                    pairing=pairing, supervision_delay=delay, batch=2)
    clock = TagClock(warm_ticks(engine))
    assert clock.warm == 2 * depth + delay + engine.history + 2
    T = 8 * depth + 3 * delay + 40          # well past the clock's warm-up
    stepped = []
    for t in range(T):
        engine.step(rng.normal(size=(2, 3)), rng.normal(size=(2, 2)))
        tags = engine.tags()
        stepped.append(np.stack([tags[k] for k in TAG_KEYS]))
        if not clock.ready:
            clock.observe(t, stepped[-1])
    assert clock.ready and clock.last < T - 1
    stepped = np.stack(stepped)
    # any subset of the later ticks, in any order, and far beyond the steps taken
    late = np.arange(clock.last + 1, T)
    np.testing.assert_array_equal(clock.rows(late), stepped[late])
    pick = late[::-1][::3]
    np.testing.assert_array_equal(clock.rows(pick), stepped[pick])
    far = clock.rows(np.array([10**6]))[0]
    last = stepped[-1]
    np.testing.assert_array_equal(far, np.where(last >= 0, last + 10**6 - (T - 1), last))


def _record(monkeypatch, closed, every, derivative, pairing, lr):
    if not closed:                          # a clock that never settles: tags stepped
        monkeypatch.setattr(probe_recorder, "TagClock", lambda warm: TagClock(10**9))
    net = Network.random([3, 4, 4, 4, 2], "tanh", seed=7)
    rng = np.random.default_rng(0)
    stream = HeldStream(3, 2, rng, teacher_target(net, "mse"), hold=2)
    engine = Engine(net, derivative=derivative, pairing=pairing, supervision_delay=1,
                    learning_rate=lr, batch=2)
    rec = Recorder(engine, RecordPlan(45, 4, 4, 2, 8, every=every, chunk=8))
    if not closed:                          # nor takes the engine's word that they shift
        rec._shifts = lambda: False
    engine.run(stream, 45, rec)
    assert rec._clock.ready == closed
    # where the engine proves its tags a shift, the clock settles before its own warm-up
    proved = derivative in ("local", "none") and pairing == "local"
    assert not closed or (rec._clock.last < 2 * rec._clock.warm) == proved
    monkeypatch.undo()
    return rec.trace()


@pytest.mark.parametrize("every, derivative, pairing, lr", [
    (1, "local", "local", 0.0), (3, "frame", "frame", 0.0), (2, "itd-dy", "local", 0.05),
    (1, "none", "frame", 0.05)])
def test_recorder_writes_the_tags_it_would_step(monkeypatch, every, derivative, pairing, lr):
    closed = _record(monkeypatch, True, every, derivative, pairing, lr)
    stepped = _record(monkeypatch, False, every, derivative, pairing, lr)
    for key in TAG_KEYS:
        np.testing.assert_array_equal(closed["tag_" + key], stepped["tag_" + key])
    for key in ("mismatch_cos", "x_norm", "delta_norm"):
        np.testing.assert_array_equal(closed[key], stepped[key])
    assert (closed["tag_pair"][-1, 1:] >= 0).all()
