"""The elementary-op graphs of simulator.experiments.pc rebuilt as Models (the second way
to build the one model): the same function, the same gradients, the same
Z-IL update — against the elementary graph's own backprop (simulator.experiments.pc.graph,
which shares no code with the model core) and central finite differences."""
import numpy as np
import pytest

from simulator.errors import SimulatorError
from simulator.experiments.pc.as_model import from_graph
from simulator.rules.predictive_coding import zil_model
from simulator.model.reference import backprop, evaluate
from simulator.experiments.pc import builders
from simulator.experiments.pc import graph as G

CONVERTIBLE = ["mlp", "cnn", "residual", "attention"]


def _problem(arch):
    return builders.build(arch, seed=5)


def _weight_map(problem, model):
    """{model key: (graph param name, to-model transform)}: matmul weights are
    stored transposed (units, n_in), conv kernels as they are, biases flat."""
    out = {}
    for name in problem.graph.param_names():
        value = problem.values[name]
        if f"{name}.W" in model.param_keys():
            out[f"{name}.W"] = (name, (lambda a: a.T) if value.ndim == 2 else (lambda a: a))
    for v in model.vertices[1:]:
        if f"{v.name}.b" in model.param_keys():
            # the bias leaf is the param added right after this layer's weight op
            for name in problem.graph.param_names():
                if name not in {k for k, _ in out.values()} and \
                        problem.values[name].size == v.layer.param_shapes["b"][0] and \
                        _adds_to(problem.graph, name, v.name):
                    out[f"{v.name}.b"] = (name, lambda a: a.reshape(-1))
    return out


def _adds_to(graph, bias, weight):
    """Is leaf ``bias`` added to the output of the op that uses leaf ``weight``?"""
    idx = {v.name: i for i, v in enumerate(graph.vertices)}
    if weight not in idx:
        return False
    users_w = [j for j, v in enumerate(graph.vertices) if idx[weight] in v.args]
    return any(idx[bias] in graph.vertices[j].args and any(u in graph.vertices[j].args
                                                             for u in users_w)
               for j in range(len(graph.vertices)))


@pytest.mark.parametrize("arch", CONVERTIBLE)
def test_model_computes_the_elementary_graph(arch):
    p = _problem(arch)
    model, u = from_graph(p.graph, p.values)
    mu = G.forward(p.graph, p.values)
    out = evaluate(model, u)[1][-1]
    np.testing.assert_allclose(out, mu[p.graph.output], rtol=1e-12, atol=1e-12)
    assert model.vertices[-1].shape == mu[p.graph.output].shape[1:]


@pytest.mark.parametrize("arch", CONVERTIBLE)
def test_model_gradients_are_the_elementary_graphs(arch):
    p = _problem(arch)
    model, u = from_graph(p.graph, p.values)
    _, _, want = G.backprop(p.graph, p.values, p.target)
    got = backprop(model, u, p.target, "mse")
    mapping = _weight_map(p, model)
    assert set(mapping) == set(got) - {k for k in got if k.endswith(".b") and
                                        not np.any(model.parameters()[k])}
    for key, (name, to_model) in mapping.items():
        np.testing.assert_allclose(got[key], to_model(want[name]), rtol=1e-10, atol=1e-12)
    covered = {name for name, _ in mapping.values()}
    assert covered == set(p.graph.param_names())


@pytest.mark.parametrize("arch", CONVERTIBLE)
def test_zil_on_the_converted_model_is_a_backprop_step(arch):
    p = _problem(arch)
    model, u = from_graph(p.graph, p.values)
    step = zil_model(model, u, p.target, 0.1, levelled=True)
    grads = backprop(model, u, p.target)
    for k, g in grads.items():
        np.testing.assert_allclose(step.updates[k], -0.1 * g, rtol=1e-9, atol=1e-12)


def test_converted_attention_uses_the_attention_layers():
    p = _problem("attention")
    model, _ = from_graph(p.graph, p.values)
    kinds = [v.kind for v in model.vertices]
    assert kinds.count("matmul") == 2 and kinds.count("softmax") == 1
    scores = next(v for v in model.vertices if v.kind == "matmul" and v.cfg["transpose"])
    assert np.isclose(scores.cfg["factor"], 6 ** -0.5)


def test_converted_mlp_is_a_dense_chain():
    p = _problem("mlp")
    model, _ = from_graph(p.graph, p.values)
    assert [v.kind for v in model.vertices[1:]] == ["dense"] * 3
    assert [v.layer.activation for v in model.vertices[1:]] == ["tanh", "tanh", "linear"]


@pytest.mark.parametrize("arch, why", [("rnn", "the model core has one input"),
                                       ("random", "")])
def test_what_the_model_core_cannot_hold_is_one_clear_error(arch, why):
    p = builders.random_dag(seed=1) if arch == "random" else _problem(arch)
    with pytest.raises(SimulatorError, match="graph: " + why):
        from_graph(p.graph, p.values)


def test_shared_weights_are_refused():
    g = G.Graph()
    x, w = g.input("x"), g.param("W")
    g.apply("matmul", g.apply("tanh", g.apply("matmul", x, w)), w)
    with pytest.raises(SimulatorError, match="no shared weights"):
        from_graph(g, {"x": np.ones((2, 3)), "W": np.ones((3, 3))})
