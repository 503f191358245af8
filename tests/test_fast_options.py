"""The fast numpy executor's grouped runs under every option set.

Oracle: the generic step (``GraphEngine._step_generic``, fresh arrays per
vertex, no grouping) on array-api-strict, run on the same model, options and
frames: per tick every x, δ, g, parameter, feedback matrix and tag agree to
rounding. The model holds a run of four equal-width dense layers (mixed σ,
one linear) over a source with a second child, so the runs' stacked feedback,
history rings read at each member's lag, ITD blocks and stacked accumulators
are all on the path the goldens (recorded on chains with the stacked engine
and on graphs whose runs are two long) see least.
"""
import ast
import inspect
import itertools
from pathlib import Path

import numpy as np
import pytest

from simulator import Model
from simulator.backend import Backend, to_host
from simulator.engine.tick import GraphEngine
from graph_models import RUN_SKIP as LAYERS
from simulator.options import DERIVATIVE, FEEDBACK, LOSSES, PAIRING, REFERENCE

MODES = {"learning": {"learning_rate": 0.05},
         "accumulate3_decay": {"learning_rate": 0.05, "accumulate": 3, "weight_decay": 0.2}}
TICKS = 13


def host(a):
    return np.asarray(to_host(a))


def _close(what, got, want):
    np.testing.assert_allclose(host(got), host(want), rtol=1e-12, atol=1e-13, err_msg=what)


GRID = [(d, p, f, m, 2) for d, p, f, m in itertools.product(DERIVATIVE, PAIRING, FEEDBACK, MODES)]
# batch 1: the weight gradient is an outer product (a broadcast multiply)
GRID += [(d, p, "learned", "accumulate3_decay", 1) for d, p in itertools.product(DERIVATIVE,
                                                                                  PAIRING)]


@pytest.mark.parametrize("derivative,pairing,feedback,mode,batch", GRID)
def test_grouped_runs_match_the_generic_step(derivative, pairing, feedback, mode, batch):
    model = Model.from_layers(LAYERS, (4,), seed=2)
    kw = dict(derivative=derivative, pairing=pairing, feedback=feedback, batch=batch,
              supervision_delay=1, feedback_seed=3, **MODES[mode])
    fast, generic = GraphEngine(model, **kw), GraphEngine(model, device="strict", **kw)
    assert fast._fast and not generic._fast
    assert [len(g["members"]) for g in fast._groups] == [4]
    strict = Backend("strict")
    g = np.random.default_rng(1)
    for t in range(TICKS):
        u, y = g.normal(size=(batch, 4)), g.normal(size=(batch, 3))
        with np.errstate(all="ignore"):
            fast.step(u, y)
            generic.step(strict.asarray(u), strict.asarray(y))
        for v in model.vertices:
            _close(f"tick {t} x {v.name}", fast.activity(v.index), generic.activity(v.index))
            if v.index:
                _close(f"tick {t} δ {v.name}", fast.delta(v.index), generic.delta(v.index))
        for name, (a, b) in (("g", (fast.gradients(), generic.gradients())),
                             ("param", (fast.parameters(), generic.parameters())),
                             ("B", (fast.feedback_weights(), generic.feedback_weights()))):
            assert list(a) == list(b)
            for k in a:
                _close(f"tick {t} {name} {k}", a[k], b[k])
        ta, tb = fast.tags(), generic.tags()
        for k in ta:
            np.testing.assert_array_equal(ta[k], tb[k], err_msg=f"tick {t} tag {k}")


def test_a_flagged_tick_leaves_no_stale_flag_once_the_state_is_finite_again():
    """The numpy flag writes a row only on a non-finite tick: that row must be
    cleared when the ring comes round to it on a finite tick, or a recovered
    run would report an old tick again (oracle: the state is finite)."""
    from simulator.errors import NumericalError
    from simulator.engine.tick import FINITE_RING
    engine = GraphEngine(Model.from_layers(LAYERS, (4,), seed=2), batch=2)
    u, y = np.zeros((2, 4)), np.zeros((2, 3))
    bad = u.copy()
    bad[0, 0] = np.nan
    engine.step(u, y)
    engine.step(bad, y)
    with pytest.raises(NumericalError) as err:
        engine.check_finite()
    assert (err.value.tick, err.value.what) == (1, "activity")
    for _ in range(30):                       # the NaN leaves the pipeline
        engine.step(u, y)
    with pytest.raises(NumericalError):       # the ticks it was still there
        engine.check_finite()
    for _ in range(2 * FINITE_RING + 3):      # the ring wraps over the flagged rows
        engine.step(u, y)
    engine.check_finite()
    assert all(np.isfinite(host(engine.activity(v.index))).all()
               for v in engine.model.vertices)


# Functions of the engine that run once per engine (plan time), where option
# names are resolved into attributes, strategy methods and functions; every
# other function of these modules may run inside a tick.
PLAN_TIME = {"_plan", "_build_parameters", "_build_state", "_build_strategies", "_build_tags",
             "activator"}


def option_comparisons(source):
    """(function, line) of every comparison with a rule option's name in ``source``."""
    names = set(FEEDBACK + DERIVATIVE + PAIRING + REFERENCE) | set(LOSSES)
    found = []
    for fn in ast.walk(ast.parse(source)):
        if isinstance(fn, ast.FunctionDef) and fn.name not in PLAN_TIME:
            found += [(fn.name, c.lineno) for c in ast.walk(fn) if isinstance(c, ast.Compare)
                      and {k.value for k in ast.walk(c) if isinstance(k, ast.Constant)} & names]
    return found


@pytest.mark.parametrize("module", ["tick", "fast", "tags"])
def test_no_option_name_is_compared_inside_a_tick(module):
    source = (Path(inspect.getfile(GraphEngine)).parent / f"{module}.py").read_text()
    assert option_comparisons(source) == []
    # the check sees a comparison that a tick would make
    assert option_comparisons("def _step(self):\n    if self.pairing == 'frame':\n"
                              "        pass\n") == [("_step", 2)]
