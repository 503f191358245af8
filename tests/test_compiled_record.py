"""The compiled executor's recorded runs: ``Recorder.record_block`` (a whole scan's
stacked per-tick outputs at once) gives the trace of the same Recorder fed tick by
tick from the same engine (the replay path, its own code: per-tick views and
``record``) and, to rounding, the numpy GraphEngine's, over record.every, states
(in place and in blocks), learning (the reference with each tick's weights),
held frames (the frozen reference ring's repeats), the tag clock's warm-up,
Gram and explicit mismatch, blocks smaller than a chunk and chunks that do not
divide the run. Skipped where the optional jax extra is absent."""
import numpy as np
import pytest

from graph_models import CONV, RESIDUAL
from test_executors import Frames
from simulator import Model
from simulator.engine import compiled
from simulator.engine.compiled import CompiledEngine
from simulator.engine.tick import GraphEngine
from simulator.errors import NumericalError
from simulator.probes import RecordPlan, Recorder, plan as record_plan, vertex
from simulator.streams import HeldStream

pytestmark = pytest.mark.skipif(not compiled.jax_available(),
                                reason="the jax extra is not installed")


class TickByTick:
    """The Recorder without ``record_block``: the compiled engine replays each tick."""

    def __init__(self, rec):
        self.rec, self.plan = rec, rec.plan

    def record(self, *args):
        self.rec.record(*args)

    def flush(self):
        self.rec.flush()


MODELS = {"residual": (RESIDUAL, (5,)), "conv": (CONV, (2, 8, 12)),
          "chain": ([{"kind": "dense", "units": 4, "activation": "tanh", "bias_scale": 0.3}] * 3
                    + [{"kind": "dense", "units": 2, "activation": "linear"}], (4,))}

CASES = [  # model, batch, ticks, chunk, record options, engine options, small blocks
    ("residual", 2, 40, 7, {}, {"supervision_delay": 3}, False),
    ("residual", 4, 40, 16, {"every": 3, "states": True}, {}, True),      # explicit g
    ("residual", 2, 33, 8, {"states": True, "layers": [0, 2, 5]},
     {"learning_rate": 0.05, "pairing": "frame", "derivative": "frame"}, True),
    ("chain", 1, 45, 10, {"every": 2}, {"learning_rate": 0.05, "feedback": "learned"}, True),
    ("chain", 1, 30, 30, {"states": True}, {"derivative": "itd-dy", "supervision_delay": 2},
     False),
    ("conv", 2, 21, 8, {"every": 4}, {"pairing": "frame"}, True),
]


def trace(cls, model, batch, ticks, chunk, rec_kw, kw, wrap=False):
    n_out = int(np.prod(model.output_shape))
    stream = HeldStream(int(np.prod(model.input_shape)), batch, np.random.default_rng(0),
                        lambda u, ids: np.tanh(u[..., :n_out]), hold=3)
    take = stream.take
    stream.take = lambda n: ((u.reshape((n, batch) + model.input_shape), y, ids)
                             for u, y, ids in [take(n)]).__next__()
    engine = cls(model, batch=batch, **kw)
    width = max(int(np.prod(v.shape)) for v in engine.model.vertices)
    plan = RecordPlan(ticks, engine.n - 1, width, batch, 8, chunk=chunk, **rec_kw)
    rec = Recorder(engine, plan)
    engine.run(stream, ticks, TickByTick(rec) if wrap else rec)
    return rec.trace()


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_block_recording_gives_the_tick_by_tick_and_numpy_traces(case, monkeypatch):
    name, batch, ticks, chunk, rec_kw, kw, small = case
    if small:            # blocks of a few ticks: segments end inside a scan
        monkeypatch.setattr(record_plan, "BLOCK_BYTES", 2 * 8 * 9 * batch * 36 * 3)
        monkeypatch.setattr(vertex, "BLOCK_BYTES", 8 * 4 * batch * 200 * 2)
    layers, shape = MODELS[name]
    model = Model.from_layers(layers, shape, seed=3)
    block = trace(CompiledEngine, model, batch, ticks, chunk, rec_kw, kw)
    replay = trace(CompiledEngine, model, batch, ticks, chunk, rec_kw, kw, wrap=True)
    numpy = trace(GraphEngine, model, batch, ticks, chunk, rec_kw, kw)
    assert set(block.arrays) == set(replay.arrays) == set(numpy.arrays)
    assert np.isfinite(block["mismatch_cos"]).any() and (block["tag_pair"] >= 0).any()
    for key in numpy.arrays:
        b, r, w = (np.asarray(t[key]) for t in (block, replay, numpy))
        if w.dtype.kind != "f":
            np.testing.assert_array_equal(b, r, err_msg=key)
            np.testing.assert_array_equal(b, w, err_msg=key)
            continue
        np.testing.assert_allclose(b, r, rtol=1e-12, atol=1e-14, err_msg=key)
        # ‖g − G‖ from gg − 2gG + GG: where g = G rounding shows as its root (~1e-8)
        atol = 1e-7 if key == "mismatch_rel" else 1e-12
        np.testing.assert_allclose(b, w, rtol=1e-10, atol=atol, err_msg=key)


def test_a_recorded_run_reports_the_numpy_engines_first_non_finite_tick():
    """A NaN in frame 13 (of the third 6-tick scan): the recorded compiled run
    raises the NumericalError (tick, vertex, quantity) the numpy engine does."""
    model = Model.from_layers(RESIDUAL, (5,), seed=3)
    rng = np.random.default_rng(1)
    u, y = rng.normal(size=(30, 2, 5)), rng.normal(size=(30, 2, 3))
    u[13, 1, 2] = np.nan
    errors = []
    for cls in (GraphEngine, CompiledEngine):
        engine = cls(model, batch=2, supervision_delay=2)
        plan = RecordPlan(30, engine.n - 1, 6, 2, 8, chunk=6)
        with np.errstate(all="ignore"), pytest.raises(NumericalError) as err:
            engine.run(Frames(u, y), 30, Recorder(engine, plan))
        errors.append(str(err.value))
    assert errors[0] == errors[1] and "at tick 13," in errors[0]
