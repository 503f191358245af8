"""Graph models end to end: the public API (Engine and reference dispatch), the
recorder on graph runs, graph scenes (schema, build, budget), the shipped graph
scenes through the CLI, and ``tickprop sync`` on a graph.

Oracles: ``simulator.model.reference.backprop`` (checked against finite
differences in test_model_graph), GraphEngine driven by hand (for the
dispatch), and first exact ticks derived from path lengths enumerated here
(fact A′: T(v) = D + bwd(v) on the graph the engine runs on).
"""
import numpy as np
import pytest

import simulator
from simulator import Engine, GraphEngine, Model, Network, reference
from simulator.model import reference as graph_reference

RESIDUAL = [{"name": "h1", "kind": "dense", "units": 5, "activation": "tanh", "bias_scale": 0.3},
            {"name": "h2", "kind": "dense", "units": 5, "activation": "tanh", "bias_scale": 0.3},
            {"name": "h3", "kind": "dense", "units": 5, "activation": "tanh", "bias_scale": 0.3},
            {"name": "r", "kind": "add", "from": ["h3", "h1"], "activation": "tanh"},
            {"name": "out", "kind": "dense", "units": 3, "activation": "linear"}]


def residual():
    return Model.from_layers(RESIDUAL, (4,), seed=2)


# ------------------------------------------------------------------ public API
def test_public_names_are_exported():
    for name in ("Engine", "GraphEngine", "Model", "sync_set", "reference"):
        assert name in simulator.__all__ and hasattr(simulator, name)


@pytest.mark.parametrize("levelled", [False, True])
def test_engine_of_a_model_is_the_graph_engine(rng, levelled):
    """Engine(model, ...) runs exactly as GraphEngine(model, ...) with the same keywords."""
    model = residual()
    kw = dict(batch=2, learning_rate=0.05, feedback="random", feedback_seed=3,
              levelled=levelled)
    a, b = Engine(model, **kw), GraphEngine(model, **kw)
    assert isinstance(a, GraphEngine) and a.levelled == levelled
    for _ in range(9):
        u, y = rng.normal(size=(2, 4)), rng.normal(size=(2, 3))
        a.step(u, y)
        b.step(u, y)
    ga, gb = a.gradients(), b.gradients()
    assert list(ga) == list(model.parameters())
    for k in gb:
        np.testing.assert_array_equal(ga[k], gb[k])
        np.testing.assert_array_equal(a.parameters()[k], b.parameters()[k])


def test_engine_of_a_network_stays_the_stacked_engine():
    net = Network.random([3, 4, 2], seed=1)
    assert type(Engine(net)) is Engine


def test_reference_backprop_dispatches_on_a_model(rng):
    model = residual()
    u, y = rng.normal(size=(3, 4)), rng.normal(size=(3, 3))
    got = reference.backprop(model, u, y, "mse")
    want = graph_reference.backprop(model, u, y, "mse")
    assert list(got) == list(model.parameters())
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])
    # and a Network keeps today's list layout
    net = Network.random([4, 5, 3], seed=1)
    assert isinstance(reference.backprop(net, u, y), list)
