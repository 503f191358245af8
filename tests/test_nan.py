"""NaN/Inf is found exactly: the first tick, layer and quantity, whatever the
chunk size and with or without recording; finite values never trip it. The
oracle steps a twin engine and looks at every accessor after every tick."""
import numpy as np
import pytest

from simulator import Network
from simulator import scene as scenes
from simulator.engine import Engine
from simulator.errors import NumericalError
from simulator.probes import Recorder, RecordPlan
from simulator.runner import Prepared
from simulator.streams import ConstantStream, HeldStream

KINDS = ("activity", "preactivation", "delta")


def diverging():
    net = Network.random([2, 3, 3, 2], ["linear", "linear", "linear"], seed=0, scale=30.0)
    stream = HeldStream(2, 1, np.random.default_rng(0), lambda u, ids: u * 3.0, hold=1)
    return net, dict(learning_rate=50.0), stream


def first_nonfinite(net, engine_kw, u, y):
    """(tick, layer, quantity) of the first non-finite accessor value, by stepping."""
    engine = Engine(net, **engine_kw)
    with np.errstate(all="ignore"):
        for t in range(len(u)):
            engine.step(u[t], y[t])
            for l in range(net.depth + 1):
                values = (engine.activity(l), engine.preactivation(l) if l else 0.0,
                          engine.delta(l) if l else 0.0)
                for kind, v in zip(KINDS, values):
                    if not np.isfinite(v).all():
                        return t, l, kind
    return None


@pytest.mark.parametrize("record", [False, True])
@pytest.mark.parametrize("chunk", [1, 7, 256])
def test_first_nonfinite_tick_layer_and_quantity_whatever_the_chunk(chunk, record):
    net, kw, stream = diverging()
    u, y, _ = diverging()[2].take(300)          # the same frames, from a twin stream
    want = first_nonfinite(net, kw, u, y)
    assert want is not None
    engine = Engine(net, **kw)
    plan = RecordPlan(300, 3, 3, 1, 8, chunk=chunk)
    rec = Recorder(engine, plan) if record else None
    with np.errstate(all="ignore"), pytest.raises(NumericalError) as err:
        engine.run(stream, 300, rec, chunk=None if record else chunk)
    assert (err.value.tick, err.value.layer, err.value.what) == want
    assert f"tick {want[0]}, layer {want[1]}" in str(err.value)


@pytest.mark.parametrize("chunk", [1, 7, 256])
def test_a_diverging_scene_reports_the_same_tick_for_every_chunk(chunk):
    name, resolved = scenes.load("fig3_fast")
    resolved = scenes.apply_overrides(resolved, ["rule.learning_rate=50.0", "network.scale=30.0",
                                                 "run.ticks=300", f"record.chunk={chunk}"], name)
    with pytest.raises(NumericalError) as err:
        Prepared(name, resolved).simulate()
    prepared = Prepared(name, resolved)
    u, y, _ = prepared.stream.take(300)
    assert (err.value.tick, err.value.layer, err.value.what) == first_nonfinite(
        prepared.network, {k: v for k, v in prepared.engine_args.items()}, u, y)


def test_large_finite_values_never_trip_it():
    # x ~ 1e200: finite, but every per-layer norm would overflow (1e400).
    net = Network.random([2, 3, 3, 2], "linear", seed=1)
    engine = Engine(net)
    stream = ConstantStream(2, 1, np.random.default_rng(1), lambda u, ids: 0.0 * u,
                            amplitude=1e200)
    rec = Recorder(engine, RecordPlan(40, 3, 3, 1, 8, chunk=16))
    with np.errstate(all="ignore"):
        engine.run(stream, 40, rec)
    assert np.isfinite(engine.activity(3)).all() and np.abs(engine.activity(3)).max() > 1e190


def test_an_infinite_preactivation_under_a_saturated_tanh_is_caught():
    # a = +inf gives x = tanh(a) = 1 and σ' = 0: only the preactivation shows it.
    net = Network([np.full((3, 2), 1e10), np.ones((2, 3))], None, ["tanh", "linear"])
    engine = Engine(net)
    with np.errstate(all="ignore"):
        for _ in range(4):
            engine.step(np.full((1, 2), 1e300), np.zeros((1, 2)))
    assert np.isfinite(engine.activity(1)).all() and np.isfinite(engine.delta(1)).all()
    with pytest.raises(NumericalError) as err:
        engine.check_finite()
    assert (err.value.tick, err.value.layer, err.value.what) == (1, 1, "preactivation")
