"""Model.from_nir / model.to_nir (simulator/model/nir_import.py).

Oracles: NIR graphs built here whose outputs are written out in numpy in the
test (affine maps, sums, a convolution by numpy's sliding windows, an average
pool by reshaping); the round trip through a NIR file written and read by the
nir package itself; refusals as one line naming the node.
"""
import sys

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from simulator import Model, SimulatorError
from simulator.model import reference as R

nir = pytest.importorskip("nir")


def out_of(model, u):
    return R.forward(model, u)[model.names[-1]]


def test_affine_linear_and_a_sum_compute_what_nir_says(rng):
    w1, b1 = rng.normal(size=(5, 4)), rng.normal(size=5)
    w2 = rng.normal(size=(5, 4))
    w3, b3 = rng.normal(size=(3, 5)), rng.normal(size=3)
    graph = nir.NIRGraph(nodes={"in": nir.Input(np.array([4])), "a": nir.Affine(w1, b1),
                                "l": nir.Linear(w2), "o": nir.Affine(w3, b3),
                                "out": nir.Output(np.array([3]))},
                         edges=[("in", "a"), ("in", "l"), ("a", "o"), ("l", "o"), ("o", "out")])
    model = Model.from_nir(graph)
    assert [v.kind for v in model.vertices[1:]] == ["dense", "linear", "add", "dense"]
    u = rng.normal(size=(3, 4))
    want = (u @ w1.T + b1 + u @ w2.T) @ w3.T + b3
    assert np.max(np.abs(out_of(model, u) - want)) < 1e-12


def test_conv_pool_flatten_compute_what_nir_says(rng):
    w, b = rng.normal(size=(3, 2, 3, 3)), rng.normal(size=3)
    wd, bd = rng.normal(size=(2, 3 * 3 * 3)), rng.normal(size=2)
    graph = nir.NIRGraph(nodes={
        "input": nir.Input(np.array([2, 6, 6])),
        "conv": nir.Conv2d(input_shape=(6, 6), weight=w, stride=1, padding=1, dilation=1,
                           groups=1, bias=b),
        "pool": nir.AvgPool2d(np.array([2, 2]), np.array([2, 2]), np.array([0, 0])),
        "flat": nir.Flatten({"input": np.array([3, 3, 3])}, start_dim=0),
        "fc": nir.Affine(wd, bd), "output": nir.Output(np.array([2]))},
        edges=[("input", "conv"), ("conv", "pool"), ("pool", "flat"), ("flat", "fc"),
               ("fc", "output")], type_check=False)
    model = Model.from_nir(graph)
    u = rng.normal(size=(2, 2, 6, 6))
    win = sliding_window_view(np.pad(u, ((0, 0), (0, 0), (1, 1), (1, 1))), (3, 3), axis=(2, 3))
    conv = np.einsum("bchwij,ocij->bohw", win, w) + b[:, None, None]
    pool = conv.reshape(2, 3, 3, 2, 3, 2).mean(axis=(3, 5))
    want = pool.reshape(2, -1) @ wd.T + bd
    assert np.max(np.abs(out_of(model, u) - want)) < 1e-12


def residual_model():
    layers = [{"name": "c", "kind": "conv2d", "channels": 2, "kernel": 3, "padding": 1,
               "activation": "linear", "bias_scale": 0.3},
              {"name": "side", "kind": "conv2d", "from": "input", "channels": 2, "kernel": 1,
               "stride": 1, "activation": "linear"},
              {"name": "m", "kind": "add", "from": ["c", "side"]},
              {"name": "p", "kind": "pool", "size": 2},
              {"name": "f", "kind": "flatten"},
              {"name": "h", "kind": "dense", "units": 4, "activation": "linear",
               "bias_scale": 0.3},
              {"name": "output", "kind": "linear", "units": 3, "bias": False}]
    return Model.from_layers(layers, [1, 6, 6], seed=3)


def test_round_trip_through_a_nir_file(rng, tmp_path):
    model = residual_model()
    path = tmp_path / "net.nir"
    nir.write(path, model.to_nir())
    back = Model.from_nir(path)
    assert [v.kind for v in back.vertices] == [v.kind for v in model.vertices]
    for (k, a), (j, c) in zip(model.parameters().items(), back.parameters().items()):
        assert k == j and np.array_equal(a, c)
    u = rng.normal(size=(2, 1, 6, 6))
    assert np.array_equal(out_of(back, u), out_of(model, u))
    # the written graph passes nir's own type check
    nir.NIRGraph(nodes=back.to_nir().nodes, edges=back.to_nir().edges)


def test_a_cycle_is_one_error_naming_its_nodes(rng):
    w = rng.normal(size=(2, 2))
    graph = nir.NIRGraph(nodes={"input": nir.Input(np.array([2])), "a": nir.Linear(w),
                                "b": nir.Linear(w), "output": nir.Output(np.array([2]))},
                         edges=[("input", "a"), ("a", "b"), ("b", "a"), ("b", "output")],
                         type_check=False)
    with pytest.raises(SimulatorError, match="cycle through a, b") as err:
        Model.from_nir(graph)
    assert "\n" not in str(err.value)


def test_an_unmapped_node_is_one_error_naming_it():
    one = np.ones(2)
    graph = nir.NIRGraph(nodes={"input": nir.Input(np.array([2])),
                                "lif": nir.LIF(one, one, one, one),
                                "output": nir.Output(np.array([2]))},
                         edges=[("input", "lif"), ("lif", "output")], type_check=False)
    with pytest.raises(SimulatorError, match=r"node 'lif' \(LIF\): this node type has no"):
        Model.from_nir(graph)


@pytest.mark.parametrize("layers, words", [
    ([{"kind": "dense", "units": 2}], "activation 'tanh'"),
    ([{"kind": "conv2d", "channels": 1, "kernel": 2, "activation": "linear"},
      {"kind": "pool", "size": 2, "mode": "max"}, {"kind": "flatten"}], "max pool"),
])
def test_what_nir_cannot_hold_refuses_export(layers, words):
    shape = [1, 5, 5] if layers[0]["kind"] == "conv2d" else [3]
    with pytest.raises(SimulatorError, match=words):
        Model.from_layers(layers, shape).to_nir()


def test_a_missing_nir_is_one_error_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "nir", None)
    with pytest.raises(SimulatorError, match=r"tickprop\[nir\]"):
        Model.from_nir("net.nir")
