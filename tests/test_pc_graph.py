"""pc/graph.py against independent oracles: central finite differences for
every VJP and for graph backprop, direct loops for the convolution."""
import numpy as np
import pytest

from simulator.errors import SimulatorError
from simulator.experiments.pc.builders import ARCHITECTURES, build
from simulator.experiments.pc.graph import OPS, Graph, backprop, bp_update, loss

H = 1e-6


def numeric_grad(f, x):
    """Central differences of scalar f with respect to every entry of x (in place)."""
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        keep = x[idx]
        x[idx] = keep + H
        up = f()
        x[idx] = keep - H
        down = f()
        x[idx] = keep
        grad[idx] = (up - down) / (2 * H)
    return grad


def op_cases(rng):
    """(op, argument arrays, attrs) covering broadcasting and batched shapes."""
    away_from_kink = rng.normal(size=(3, 4)) + np.sign(rng.normal(size=(3, 4))) * 0.1
    return [
        ("identity", [rng.normal(size=(3, 4))], {}),
        ("tanh", [rng.normal(size=(3, 4))], {}),
        ("logistic", [rng.normal(size=(3, 4)) * 3], {}),
        ("relu", [away_from_kink], {}),
        ("scale", [rng.normal(size=(3, 4))], {"c": -0.7}),
        ("add", [rng.normal(size=(3, 4)), rng.normal(size=(4,))], {}),
        ("add", [rng.normal(size=(2, 3, 1)), rng.normal(size=(1, 3, 4))], {}),
        ("mul", [rng.normal(size=(3, 4)), rng.normal(size=(1, 4))], {}),
        ("matmul", [rng.normal(size=(3, 4)), rng.normal(size=(4, 2))], {}),
        ("matmul", [rng.normal(size=(2, 3, 4)), rng.normal(size=(4, 5))], {}),
        ("matmul", [rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 4, 3))], {}),
        ("transpose", [rng.normal(size=(2, 3, 4))], {}),
        ("softmax", [rng.normal(size=(2, 3, 4))], {"axis": -1}),
        ("softmax", [rng.normal(size=(3, 4))], {"axis": 0}),
        ("flatten", [rng.normal(size=(2, 3, 4))], {}),
        ("conv2d", [rng.normal(size=(2, 2, 5, 6)), rng.normal(size=(3, 2, 3, 2))], {}),
    ]


def test_every_op_is_covered(rng):
    assert {case[0] for case in op_cases(rng)} == set(OPS)


@pytest.mark.parametrize("case", range(16))
def test_vjp_matches_finite_differences(rng, case):
    name, args, attrs = op_cases(rng)[case]
    op = OPS[name]
    out = op.forward(args, attrs)
    g = rng.normal(size=out.shape)
    cots = op.vjp(g, args, out, attrs, (True,) * len(args))
    for arg, cot in zip(args, cots):
        expected = numeric_grad(lambda: float(np.sum(g * op.forward(args, attrs))), arg)
        assert cot.shape == arg.shape
        np.testing.assert_allclose(cot, expected, rtol=1e-6, atol=1e-8)


def test_vjp_skips_unneeded_arguments(rng):
    a, b = rng.normal(size=(3, 4)), rng.normal(size=(4, 2))
    ga, gb = OPS["matmul"].vjp(rng.normal(size=(3, 2)), [a, b], a @ b, {}, (False, True))
    assert ga is None and gb.shape == b.shape


def test_conv2d_matches_direct_loops(rng):
    x, k = rng.normal(size=(2, 3, 6, 5)), rng.normal(size=(4, 3, 3, 2))
    got = OPS["conv2d"].forward([x, k], {})
    want = np.zeros((2, 4, 4, 4))
    for b, o, i, j in np.ndindex(want.shape):
        want[b, o, i, j] = np.sum(x[b, :, i:i + 3, j:j + 2] * k[o])
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_elementwise_forwards_match_closed_forms(rng):
    a = rng.normal(size=(4, 5)) * 5
    np.testing.assert_allclose(OPS["logistic"].forward([a], {}), 1 / (1 + np.exp(-a)), rtol=1e-13)
    s = OPS["softmax"].forward([a], {"axis": -1})
    np.testing.assert_allclose(s, np.exp(a) / np.exp(a).sum(-1, keepdims=True), rtol=1e-12)
    np.testing.assert_array_equal(OPS["relu"].forward([a], {}), np.where(a > 0, a, 0))


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_backprop_matches_finite_differences(architecture):
    p = build(architecture, seed=3)
    _, _, grads = backprop(p.graph, p.values, p.target)
    assert set(grads) == set(p.graph.param_names())
    for name in grads:
        expected = numeric_grad(lambda: loss(p.graph, p.values, p.target), p.values[name])
        np.testing.assert_allclose(grads[name], expected, rtol=1e-5, atol=1e-7)


def test_bp_update_is_minus_lr_times_gradient():
    p = build("mlp", seed=1)
    before = loss(p.graph, p.values, p.target)
    step = bp_update(p.graph, p.values, p.target, lr=1e-3)
    after = loss(p.graph, {**p.values, **{k: p.values[k] + step[k] for k in step}}, p.target)
    sq = sum(float(np.sum((s / 1e-3) ** 2)) for s in step.values())
    # First-order decrease of E along −α∇E is α‖∇E‖².
    assert after < before
    assert abs((before - after) - 1e-3 * sq) < 1e-2 * 1e-3 * sq


def test_bad_graphs_are_refused():
    g = Graph()
    a = g.param("a")
    with pytest.raises(SimulatorError, match="unknown op"):
        g.apply("sqrt", a)
    with pytest.raises(SimulatorError, match="takes 2"):
        g.apply("add", a)
    with pytest.raises(SimulatorError, match="used twice"):
        g.param("a")
    with pytest.raises(SimulatorError, match="does not exist"):
        g.apply("tanh", 5)
    g.apply("tanh", a)
    with pytest.raises(SimulatorError, match="no value"):
        loss(g, {}, np.zeros(1))
