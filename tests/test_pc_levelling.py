"""Algorithm 2: levelling adds identity vertices so every vertex has one level,
and changes neither the function nor BP's gradients (property-tested)."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from simulator.errors import SimulatorError
from simulator.experiments.pc.builders import build, random_dag
from simulator.experiments.pc.graph import Graph, backprop
from simulator.experiments.pc.levelling import distances, inserted_identities, is_levelled, level, levels


def all_path_lengths(graph):
    """Every path length from every vertex to the output, by explicit enumeration."""
    parents = graph.parents()
    lengths = [set() for _ in graph.vertices]
    lengths[graph.output] = {0}
    for i in range(len(graph) - 2, -1, -1):
        lengths[i] = {n + 1 for p in parents[i] for n in lengths[p]}
    return lengths


dags = st.builds(lambda seed, n: random_dag(seed=seed, n_ops=n),
                 st.integers(0, 2**32 - 1), st.integers(1, 14))


@settings(max_examples=60, deadline=None)
@given(dags)
def test_levelled_dag_has_one_level_per_vertex_and_same_function(problem):
    graph = problem.graph
    levelled = level(graph)
    assert is_levelled(levelled)
    assert all(len(ls) == 1 for ls in all_path_lengths(levelled))
    mu0, _, g0 = backprop(graph, problem.values, problem.target)
    mu1, _, g1 = backprop(levelled, problem.values, problem.target)
    # Identities compute nothing, so the output is bit-identical.
    np.testing.assert_array_equal(mu1[levelled.output], mu0[graph.output])
    assert set(g1) == set(g0)
    for name in g0:
        np.testing.assert_allclose(g1[name], g0[name], rtol=1e-12, atol=1e-15)


@settings(max_examples=40, deadline=None)
@given(dags)
def test_levelling_only_op_vertices_leaves_leaves_alone(problem):
    graph = problem.graph
    levelled = level(graph, leaves=False)
    lengths = all_path_lengths(levelled)
    assert all(len(ls) == 1 for i, ls in enumerate(lengths) if not levelled.vertices[i].is_leaf)
    assert is_levelled(levelled, leaves=False)
    # No identity is ever inserted on an edge out of a leaf.
    for v in levelled.vertices:
        if v.op == "identity" and v.name.startswith("id:"):
            assert not levelled.vertices[v.args[0]].is_leaf


@settings(max_examples=40, deadline=None)
@given(dags)
def test_distances_are_shortest_and_longest_paths(problem):
    dmin, dmax = distances(problem.graph)
    lengths = all_path_lengths(problem.graph)
    assert dmin == [min(ls) for ls in lengths]
    assert dmax == [max(ls) for ls in lengths]


def test_residual_gets_three_identities_per_skip_edge():
    # Each block's branch is matmul -> add(bias) -> tanh: the skip edge is 3 short.
    p = build("residual", blocks=4)
    lv = level(p.graph, leaves=False)
    assert inserted_identities(p.graph, lv) == 3 * 4
    assert not is_levelled(p.graph)


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_chains_are_already_levelled(name):
    p = build(name)
    assert is_levelled(p.graph)
    assert inserted_identities(p.graph, level(p.graph)) == 0


def test_rnn_op_vertices_are_levelled_but_shared_weights_are_not():
    p = build("rnn", steps=3)
    assert is_levelled(p.graph, leaves=False) and not is_levelled(p.graph)
    with pytest.raises(SimulatorError, match="not levelled"):
        levels(p.graph)


def test_vertex_that_misses_the_output_is_refused():
    g = Graph()
    g.param("a")
    g.apply("tanh", g.param("b"))
    with pytest.raises(SimulatorError, match="'a' does not reach the output"):
        distances(g)
