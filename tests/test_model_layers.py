"""Each layer kind of the model core against independent oracles.

Values: written-out loops in this file (a naive convolution, window-by-window
pooling, the row-major flatten formula). VJPs and parameter gradients:
central finite differences of E = ⟨c, pre⟩ for a random cotangent c, whose
∂E/∂pre is c — so ``vjp(c)`` must be ∂E/∂inputs and ``param_grads(c)`` ∂E/∂params.
The device-neutral functions run under every namespace of the ``device``
fixture; the finite differences are taken on the host in float64.
"""
import numpy as np
import pytest

from simulator.backend import Backend, to_host
from simulator.model.layers import KINDS
from simulator.model.spec import normalize
from simulator.model.layers import ACTIVATIONS

EPS = 1e-6


def make(kind, in_shapes, **fields):
    cfg = normalize(0, {"kind": kind, **fields}, "input")
    return KINDS[kind](cfg, in_shapes)


def host(a):
    return np.asarray(to_host(a))


def params_for(layer, rng):
    return {k: rng.normal(size=s) for k, s in layer.param_shapes.items()}


def on(xp, arrays):
    if isinstance(arrays, dict):
        return {k: xp.asarray(a) for k, a in arrays.items()}
    return [xp.asarray(a) for a in arrays]


def fd_linear_functional(f, arrays, which, c):
    """∂⟨c, f(arrays)⟩/∂arrays[which] by central differences (numpy, in place)."""
    a = arrays[which]
    g = np.zeros_like(a)
    for idx in np.ndindex(a.shape):
        keep = a[idx]
        a[idx] = keep + EPS
        plus = np.sum(c * f())
        a[idx] = keep - EPS
        minus = np.sum(c * f())
        a[idx] = keep
        g[idx] = (plus - minus) / (2 * EPS)
    return g


def check_layer(layer, inputs, params, rng, xp):
    """vjp and param_grads (computed in xp) against finite differences of
    ⟨c, pre⟩ (computed with numpy on the host)."""
    pre0, _ = layer.value(np, params, inputs)
    c = rng.normal(size=pre0.shape)
    pre_d, _ = layer.value(xp, on(xp, params), on(xp, inputs))
    np.testing.assert_allclose(host(pre_d), pre0, rtol=1e-12, atol=1e-12)
    back = layer.vjp(xp, on(xp, params), on(xp, inputs), pre_d, xp.asarray(c))
    assert len(back) == len(inputs)
    for k in range(len(inputs)):
        want = fd_linear_functional(lambda: layer.value(np, params, inputs)[0], inputs, k, c)
        np.testing.assert_allclose(host(back[k]), want, rtol=1e-6, atol=1e-7)
    grads = layer.param_grads(xp, on(xp, inputs), xp.asarray(c))
    assert set(grads) == set(layer.param_shapes)
    for name in layer.param_shapes:
        want = fd_linear_functional(lambda: layer.value(np, params, inputs)[0], params, name, c)
        assert host(grads[name]).shape == want.shape
        np.testing.assert_allclose(host(grads[name]), want, rtol=1e-6, atol=1e-7)


def naive_conv(x, w, b, stride, padding):
    """Cross-correlation by six nested loops: the independent oracle."""
    (sh, sw), (ph, pw) = stride, padding
    bsz, cin, h, wd = x.shape
    cout, _, kh, kw = w.shape
    xp_ = np.zeros((bsz, cin, h + 2 * ph, wd + 2 * pw))
    xp_[:, :, ph:ph + h, pw:pw + wd] = x
    ho, wo = (h + 2 * ph - kh) // sh + 1, (wd + 2 * pw - kw) // sw + 1
    out = np.zeros((bsz, cout, ho, wo))
    for n in range(bsz):
        for o in range(cout):
            for r in range(ho):
                for q in range(wo):
                    acc = b[o]
                    for ci in range(cin):
                        for i in range(kh):
                            for j in range(kw):
                                acc += w[o, ci, i, j] * xp_[n, ci, r * sh + i, q * sw + j]
                    out[n, o, r, q] = acc
    return out


def naive_pool(x, size, stride, mode):
    (kh, kw), (sh, sw) = size, stride
    bsz, c, h, wd = x.shape
    ho, wo = (h - kh) // sh + 1, (wd - kw) // sw + 1
    out = np.zeros((bsz, c, ho, wo))
    grad_first = np.zeros((bsz, c, ho, wo) + x.shape[2:])  # ∂out/∂x per output pixel
    for n in range(bsz):
        for ch in range(c):
            for r in range(ho):
                for q in range(wo):
                    win = x[n, ch, r * sh:r * sh + kh, q * sw:q * sw + kw]
                    if mode == "avg":
                        out[n, ch, r, q] = win.sum() / (kh * kw)
                        rows, cols = slice(r * sh, r * sh + kh), slice(q * sw, q * sw + kw)
                        grad_first[n, ch, r, q, rows, cols] = 1 / (kh * kw)
                    else:
                        best = None
                        for i in range(kh):  # first maximum in row-major order
                            for j in range(kw):
                                if best is None or win[i, j] > win[best]:
                                    best = (i, j)
                        out[n, ch, r, q] = win[best]
                        grad_first[n, ch, r, q, r * sh + best[0], q * sw + best[1]] = 1.0
    return out, grad_first


CONV_CASES = [  # (batch, C_in, H, W, C_out, kernel, stride, padding)
    (1, 1, 5, 5, 1, 3, 1, 0),
    (2, 3, 7, 6, 4, [3, 2], 2, 1),
    (3, 2, 6, 5, 3, [2, 3], [2, 1], 2),
    (2, 2, 4, 4, 2, 1, 1, 0),
    (2, 1, 6, 6, 2, 5, 2, 2),
    (2, 2, 7, 7, 3, 2, 3, 1),
]


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_value_matches_naive_loops(rng, device, case):
    bsz, cin, h, w, cout, kernel, stride, padding = case
    layer = make("conv2d", [(cin, h, w)], channels=cout, kernel=kernel, stride=stride,
                 padding=padding, activation="tanh")
    xp = Backend(device).xp
    x, p = rng.normal(size=(bsz, cin, h, w)), params_for(layer, rng)
    pre, out = layer.value(xp, on(xp, p), [xp.asarray(x)])
    want = naive_conv(x, p["W"], p["b"], layer.cfg["stride"], layer.cfg["padding"])
    assert tuple(pre.shape) == (bsz,) + layer.shape == want.shape
    np.testing.assert_allclose(host(pre), want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(host(out), np.tanh(want), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_vjp_and_param_grads_match_finite_differences(rng, device, case):
    bsz, cin, h, w, cout, kernel, stride, padding = case
    layer = make("conv2d", [(cin, h, w)], channels=cout, kernel=kernel, stride=stride,
                 padding=padding)
    check_layer(layer, [rng.normal(size=(bsz, cin, h, w))], params_for(layer, rng), rng,
                Backend(device).xp)


def test_conv2d_feedback_weights_replace_w_in_the_vjp_only(rng, device):
    layer = make("conv2d", [(2, 5, 5)], channels=3, kernel=[3, 2], stride=2, padding=1)
    xp = Backend(device).xp
    x, p = rng.normal(size=(2, 2, 5, 5)), params_for(layer, rng)
    fb = rng.normal(size=layer.param_shapes["W"])
    c = rng.normal(size=(2,) + layer.shape)
    got = layer.vjp(xp, on(xp, p), [xp.asarray(x)], None, xp.asarray(c), weights=xp.asarray(fb))
    # oracle: finite differences of ⟨c, conv with B⟩ (the transpose of x ↦ B ⋆ x)
    q = {**p, "W": fb}
    want = fd_linear_functional(lambda: layer.value(np, q, [x])[0], [x], 0, c)
    np.testing.assert_allclose(host(got[0]), want, rtol=1e-6, atol=1e-7)
    plain = layer.vjp(xp, on(xp, p), [xp.asarray(x)], None, xp.asarray(c))
    assert not np.allclose(host(plain[0]), want)


def test_dense_value_vjp_grads_and_feedback(rng, device):
    layer = make("dense", [(5,)], units=4, activation="logistic")
    xp = Backend(device).xp
    x, p = rng.normal(size=(3, 5)), params_for(layer, rng)
    pre, out = layer.value(xp, on(xp, p), [xp.asarray(x)])
    want = np.einsum("oi,bi->bo", p["W"], x) + p["b"]
    np.testing.assert_allclose(host(pre), want, rtol=1e-12)
    np.testing.assert_allclose(host(out), 1 / (1 + np.exp(-want)), rtol=1e-12)
    check_layer(layer, [x], p, rng, xp)
    fb, c = rng.normal(size=(4, 5)), rng.normal(size=(3, 4))
    got = layer.vjp(xp, on(xp, p), [xp.asarray(x)], pre, xp.asarray(c), weights=xp.asarray(fb))
    np.testing.assert_allclose(host(got[0]), np.einsum("bo,oi->bi", c, fb), rtol=1e-12)


POOL_CASES = [  # (batch, C, H, W, size, stride)
    (2, 3, 6, 6, 2, None),
    (1, 2, 7, 8, 3, 2),       # overlapping windows, dropped trailing rows
    (2, 1, 5, 6, [3, 2], [1, 2]),
]


@pytest.mark.parametrize("mode", ["avg", "max"])
@pytest.mark.parametrize("case", POOL_CASES)
def test_pool_value_and_vjp_match_loops(rng, device, case, mode):
    bsz, c, h, w, size, stride = case
    fields = {"size": size, "mode": mode}
    if stride is not None:
        fields["stride"] = stride
    layer = make("pool", [(c, h, w)], **fields)
    xp = Backend(device).xp
    x = rng.normal(size=(bsz, c, h, w))
    want, jac = naive_pool(x, layer.cfg["size"], layer.cfg["stride"], mode)
    pre, out = layer.value(xp, {}, [xp.asarray(x)])
    assert pre is out and tuple(pre.shape) == want.shape == (bsz,) + layer.shape
    np.testing.assert_allclose(host(pre), want, rtol=1e-12, atol=1e-14)
    cot = rng.normal(size=want.shape)
    got = layer.vjp(xp, {}, [xp.asarray(x)], pre, xp.asarray(cot))
    np.testing.assert_allclose(host(got[0]), np.einsum("ncrq,ncrqhw->nchw", cot, jac),
                               rtol=1e-12, atol=1e-14)
    check_layer(layer, [x], {}, rng, xp)  # no ties in Gaussian data: max is differentiable


def test_max_pool_sends_ties_to_the_first_maximum_in_row_major_order(device):
    layer = make("pool", [(1, 2, 4)], size=2, mode="max")
    xp = Backend(device).xp
    x = np.array([[[[1.0, 1.0, 0.0, 2.0],
                    [1.0, 0.5, 2.0, 2.0]]]])
    got = layer.vjp(xp, {}, [xp.asarray(x)], None, xp.asarray(np.array([[[[3.0, 5.0]]]])))
    want = np.array([[[[3.0, 0.0, 0.0, 5.0],
                       [0.0, 0.0, 0.0, 0.0]]]])
    np.testing.assert_array_equal(host(got[0]), want)


def test_flatten_is_row_major_and_its_vjp_reshapes_back(rng, device):
    layer = make("flatten", [(3, 4, 5)])
    xp = Backend(device).xp
    x = rng.normal(size=(2, 3, 4, 5))
    _, out = layer.value(xp, {}, [xp.asarray(x)])
    out = host(out)
    assert out.shape == (2, 60) and layer.shape == (60,)
    for c, h, w in [(0, 0, 0), (1, 2, 3), (2, 3, 4), (0, 1, 4)]:
        assert out[1, c * 20 + h * 5 + w] == x[1, c, h, w]
    check_layer(layer, [x], {}, rng, xp)



def test_tokens_puts_each_position_on_a_row_and_its_vjp_puts_it_back(rng, device):
    """tokens: (B, C, H, W) -> (B, H*W, C), token h*W + w holding position (h, w)'s C
    channels (a ViT's patch tokens); the VJP checked by finite differences."""
    layer = make("tokens", [(3, 2, 4)])
    xp = Backend(device).xp
    x = rng.normal(size=(2, 3, 2, 4))
    _, out = layer.value(xp, {}, [xp.asarray(x)])
    out = host(out)
    assert out.shape == (2, 8, 3) and layer.shape == (8, 3)
    for h, w, c in [(0, 0, 0), (1, 2, 1), (1, 3, 2), (0, 3, 0)]:
        assert out[1, h * 4 + w, c] == x[1, c, h, w]
    check_layer(layer, [x], {}, rng, xp)

def test_add_sums_its_parents_then_applies_the_activation(rng, device):
    layer = make("add", [(2, 3, 3)] * 3, activation="tanh", **{"from": ["a", "b", "c"]})
    xp = Backend(device).xp
    xs = [rng.normal(size=(2, 2, 3, 3)) for _ in range(3)]
    pre, out = layer.value(xp, {}, on(xp, xs))
    np.testing.assert_allclose(host(out), np.tanh(xs[0] + xs[1] + xs[2]), rtol=1e-12)
    check_layer(layer, xs, {}, rng, xp)


def test_identity_is_the_identity(rng, device):
    layer = make("identity", [(4,)])
    xp = Backend(device).xp
    x = rng.normal(size=(3, 4))
    pre, out = layer.value(xp, {}, [xp.asarray(x)])
    np.testing.assert_array_equal(host(out), x)
    check_layer(layer, [x], {}, rng, xp)


@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
def test_derivative_is_the_activations_slope(rng, device, act):
    layer = make("dense", [(3,)], units=4, activation=act)
    xp = Backend(device).xp
    pre = rng.normal(size=(5, 4))
    got = host(layer.derivative(xp, xp.asarray(pre)))
    sig = lambda a: layer.activate(np, a)[0]  # noqa: E731
    want = (sig(pre + EPS) - sig(pre - EPS)) / (2 * EPS)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8)
    _, out = layer.value(np, {"W": np.eye(4, 3), "b": np.zeros(4)}, [pre[:, :3]])
    np.testing.assert_allclose(out, sig(pre[:, :3] @ np.eye(4, 3).T), rtol=1e-12)
