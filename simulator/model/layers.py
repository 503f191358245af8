"""Layer kinds of the model core: value, vector–Jacobian product, parameter gradient.
Arrays are batch-major, (B, *shape); every function is pure and takes the array namespace
``xp`` first (conventions: the README's "Layer functions"; ``vjp`` takes δ = ∂E/∂pre with
σ' ALREADY applied). ``ACTIVATIONS`` is the one home of σ."""
import math
import operator
from functools import reduce


def _tanh(xp, a):
    x = xp.tanh(a)
    return x, 1.0 - x * x


def _logistic(xp, a):
    x = 1.0 / (1.0 + xp.exp(-a))
    return x, x * (1.0 - x)


def _relu(xp, a):
    x = xp.maximum(a, xp.zeros_like(a))
    return x, xp.astype(a > 0, a.dtype)


def _linear(xp, a):
    return a, xp.ones_like(a)


# name -> f(xp, a) returning (σ(a), σ'(a)) in a's namespace.
ACTIVATIONS = {"tanh": _tanh, "logistic": _logistic, "relu": _relu, "linear": _linear}


# Sliding windows over the last two axes (im2col/col2im of conv and pool) by basic
# slicing only, so any array namespace (``.at`` under jax): offset k = i·kw + j
# holds pixel (i + r·sh, j + c·sw) of output pixel (r, c).
def zeros(xp, shape, like, dtype=None):
    """Zeros of ``shape`` in ``like``'s dtype (or ``dtype``) on its device (if it has one)."""
    dtype = like.dtype if dtype is None else dtype
    try:
        device = like.device
    except AttributeError:
        return xp.zeros(shape, dtype=dtype)
    return xp.zeros(shape, dtype=dtype, device=device)


def out_size(n, k, s, p):
    """Windows of size k, stride s over n samples padded by p: ⌊(n + 2p − k)/s⌋ + 1."""
    return (n + 2 * p - k) // s + 1


def pad2d(xp, x, ph, pw):
    """x zero-padded by ph rows above and below and pw columns left and right."""
    if ph:
        z = zeros(xp, x.shape[:-2] + (ph, x.shape[-1]), x)
        x = xp.concat([z, x, z], axis=-2)
    if pw:
        z = zeros(xp, x.shape[:-1] + (pw,), x)
        x = xp.concat([z, x, z], axis=-1)
    return x


def slices(kernel, stride, out_hw):
    """The (row, column) slices of every kernel offset, offset k = i·kw + j."""
    (kh, kw), (sh, sw), (ho, wo) = kernel, stride, out_hw
    return [(slice(i, i + sh * (ho - 1) + 1, sh), slice(j, j + sw * (wo - 1) + 1, sw))
            for i in range(kh) for j in range(kw)]


def strided(x, kernel, stride, out_hw):
    """The (B, C, Ho, Wo) strided slice of x under every kernel offset."""
    return [x[..., r, c] for r, c in slices(kernel, stride, out_hw)]


def scatter(xp, parts, shape, kernel, stride, out_hw, like):
    """col2im: the sum, into a zero array of ``shape`` (padded input shape), of
    ``parts[k]`` (B, C, Ho, Wo) added at offset k's strided positions."""
    g = zeros(xp, shape, like)
    for part, (r, c) in zip(parts, slices(kernel, stride, out_hw)):
        if hasattr(g, "at"):                 # jax: a functional update
            g = g.at[..., r, c].add(part)
        else:
            g[..., r, c] = g[..., r, c] + part
    return g


class Unfit(Exception):
    """A layer's field does not fit its parents' shapes: args (key, expected,
    given), which the graph builder turns into a LayerError naming the layer."""


class Layer:
    """Base of the layer kinds, itself the identity (a pure one-tick delay):
    ``in_shapes`` (one per parent, batch axis excluded), ``shape`` (its own
    value's shape), ``activation`` (a name of ACTIVATIONS), ``param_shapes``."""
    kind = None
    arity = 1  # parents: an int, or None for "two or more"
    param_shapes = {}
    reads_inputs = False  # does the VJP read the parents' values (max pool, matmul, softmax)?

    def __init__(self, cfg, in_shapes):
        self.cfg = cfg
        self.in_shapes = [tuple(s) for s in in_shapes]
        self.activation = cfg.get("activation", "linear")
        self.shape = self._shape()

    def _shape(self):
        return self.in_shapes[0]

    @property
    def linear(self):
        """True when σ is the identity (σ' = 1, so callers may skip it)."""
        return self.activation == "linear"

    def activate(self, xp, pre):
        """(σ(pre), σ'(pre))."""
        return ACTIVATIONS[self.activation](xp, pre)

    def derivative(self, xp, pre):
        """σ'(pre), the factor a caller applies before ``vjp``."""
        return self.activate(xp, pre)[1]

    def _chw(self):
        (s,) = self.in_shapes
        if len(s) != 3:
            raise Unfit("from", "a parent with a (C, H, W) value", f"shape {s}")
        return s

    def value(self, xp, params, inputs):
        """(pre, out) of this vertex for its parents' values ``inputs``."""
        pre = self._pre(xp, params, inputs)
        return (pre, pre) if self.linear else (pre, self.activate(xp, pre)[0])

    def _pre(self, xp, params, inputs):
        return inputs[0]

    def vjp(self, xp, params, inputs, pre, delta, weights=None):
        """One cotangent per parent from δ = ∂E/∂pre (σ' applied by the caller)."""
        return [delta]

    def param_grads(self, xp, inputs, delta):
        """{name: ∂E/∂param} summed over the batch, from δ = ∂E/∂pre."""
        return {}


class Conv2d(Layer):
    """2-D cross-correlation over NCHW inputs with zero padding, + activation."""
    kind = "conv2d"

    def _shape(self):
        c, h, w = self._chw()
        (kh, kw), (sh, sw), (ph, pw) = self.cfg["kernel"], self.cfg["stride"], self.cfg["padding"]
        if kh > h + 2 * ph or kw > w + 2 * pw:
            raise Unfit("kernel", f"at most the padded input ({h + 2 * ph}, {w + 2 * pw})",
                        [kh, kw])
        self.out_hw = (out_size(h, kh, sh, ph), out_size(w, kw, sw, pw))
        o = self.cfg["channels"]
        self.param_shapes = {"W": (o, c, kh, kw), "b": (o,)}
        return (o,) + self.out_hw

    def fan_in(self):
        return math.prod(self.param_shapes["W"][1:])

    def _cols(self, xp, x):
        """im2col: (B, C·kh·kw, Ho·Wo), row index c·kh·kw + i·kw + j."""
        win = xp.stack(strided(pad2d(xp, x, *self.cfg["padding"]), self.cfg["kernel"],
                               self.cfg["stride"], self.out_hw), axis=2)
        b, c = x.shape[0], x.shape[1]
        return xp.reshape(win, (b, c * win.shape[2], win.shape[3] * win.shape[4]))

    def _pre(self, xp, params, inputs):
        w = params["W"]
        o = w.shape[0]
        cols = self._cols(xp, inputs[0])
        pre = xp.reshape(w, (o, -1)) @ cols
        pre = xp.reshape(pre, (pre.shape[0], o) + self.out_hw)
        return pre + xp.reshape(params["b"], (o, 1, 1))

    def vjp(self, xp, params, inputs, pre, delta, weights=None):
        w = params["W"] if weights is None else weights
        o, c, kh, kw = w.shape
        bsz = delta.shape[0]
        ho, wo = self.out_hw
        dcols = xp.matrix_transpose(xp.reshape(w, (o, -1))) @ xp.reshape(delta, (bsz, o, ho * wo))
        dcols = xp.reshape(dcols, (bsz, c, kh * kw, ho, wo))
        x = inputs[0]
        ph, pw = self.cfg["padding"]
        shape = (bsz, c, x.shape[2] + 2 * ph, x.shape[3] + 2 * pw)
        parts = [dcols[:, :, k, :, :] for k in range(kh * kw)]
        g = scatter(xp, parts, shape, (kh, kw), self.cfg["stride"], self.out_hw, delta)
        return [g[..., ph:shape[2] - ph, pw:shape[3] - pw]]

    def param_grads(self, xp, inputs, delta):
        cols = self._cols(xp, inputs[0])
        bsz, o = delta.shape[0], delta.shape[1]
        d = xp.reshape(delta, (bsz, o, -1))
        gw = xp.sum(d @ xp.matrix_transpose(cols), axis=0)  # B small GEMMs beat one tensordot
        return {"W": xp.reshape(gw, self.param_shapes["W"]), "b": xp.sum(d, axis=(0, 2))}


class Pool(Layer):
    """Average or max over (kh, kw) windows at stride (sh, sw), no padding."""
    kind = "pool"

    @property
    def reads_inputs(self):
        return self.cfg["mode"] == "max"

    def _shape(self):
        c, h, w = self._chw()
        (kh, kw), (sh, sw) = self.cfg["size"], self.cfg["stride"]
        if kh > h or kw > w:
            raise Unfit("size", f"at most the input ({h}, {w})", [kh, kw])
        self.out_hw = (out_size(h, kh, sh, 0), out_size(w, kw, sw, 0))
        return (c,) + self.out_hw

    def _parts(self, x):
        return strided(x, self.cfg["size"], self.cfg["stride"], self.out_hw)

    def _first_max(self, xp, x):
        """(max, k): each window's maximum and the offset k of its first occurrence."""
        parts = self._parts(x)
        best, first = parts[0], zeros(xp, parts[0].shape, x, xp.int32)
        for k, part in enumerate(parts[1:], 1):
            later = part > best          # strictly: ties keep the first offset
            best = xp.where(later, part, best)
            first = xp.where(later, xp.full_like(first, k), first)
        return best, first

    def _pre(self, xp, params, inputs):
        parts = self._parts(inputs[0])
        if self.cfg["mode"] == "avg":
            return reduce(operator.add, parts) / len(parts)
        return reduce(xp.maximum, parts)

    def vjp(self, xp, params, inputs, pre, delta, weights=None):
        x = inputs[0]
        kh, kw = self.cfg["size"]
        n = kh * kw
        if self.cfg["mode"] == "avg":
            parts = [delta / n] * n
        else:
            first = self._first_max(xp, x)[1]   # first maximum of each window
            parts = [xp.astype(first == k, delta.dtype) * delta for k in range(n)]
        return [scatter(xp, parts, x.shape, (kh, kw), self.cfg["stride"], self.out_hw, delta)]


class Flatten(Layer):
    """(B, *s) → (B, prod(s)), row-major."""
    kind = "flatten"

    def _shape(self):
        return (math.prod(self.in_shapes[0]),)

    def _pre(self, xp, params, inputs):
        x = inputs[0]
        return xp.reshape(x, (x.shape[0], self.shape[0]))

    def vjp(self, xp, params, inputs, pre, delta, weights=None):
        return [xp.reshape(delta, (delta.shape[0],) + self.in_shapes[0])]


class Tokens(Layer):
    """(B, C, H, W) → (B, H·W, C): each position a token of its C channels, row-major.
    A vision transformer's patch embedding is a conv of stride = kernel, then this."""
    kind = "tokens"

    def _shape(self):
        c, h, w = self._chw()
        return (h * w, c)

    def _pre(self, xp, params, inputs):
        x = inputs[0]
        return xp.permute_dims(xp.reshape(x, (x.shape[0], self.shape[1], self.shape[0])),
                               (0, 2, 1))

    def vjp(self, xp, params, inputs, pre, delta, weights=None):
        return [xp.reshape(xp.permute_dims(delta, (0, 2, 1)),
                           (delta.shape[0],) + self.in_shapes[0])]


class Add(Layer):
    """Residual merge: σ(sum of the parents), all of one shape."""
    kind = "add"
    arity = None

    def _shape(self):
        first = self.in_shapes[0]
        for k, s in enumerate(self.in_shapes[1:], 1):
            if s != first:
                raise Unfit("from", f"parents of one shape (parent 0 has {first})",
                            f"parent {k} of shape {s}")
        return first

    def _pre(self, xp, params, inputs):
        return reduce(operator.add, inputs)

    def vjp(self, xp, params, inputs, pre, delta, weights=None):
        return [delta] * len(inputs)


class Identity(Layer):
    """A pure one-tick delay: out = input."""
    kind = "identity"


class Linear(Layer):
    """Affine map on the last axis of any-rank inputs, bias optional: x Wᵀ (+ b)."""
    kind = "linear"

    def _shape(self):
        (s,) = self.in_shapes
        units = self.cfg["units"]
        self.param_shapes = {"W": (units, s[-1])}
        if self.cfg.get("bias", True):
            self.param_shapes["b"] = (units,)
        return s[:-1] + (units,)

    def fan_in(self):
        return self.in_shapes[0][-1]

    def _pre(self, xp, params, inputs):
        pre = inputs[0] @ xp.matrix_transpose(params["W"])
        return pre + params["b"] if "b" in params else pre

    def vjp(self, xp, params, inputs, pre, delta, weights=None):
        return [delta @ (params["W"] if weights is None else weights)]

    def param_grads(self, xp, inputs, delta):
        return self.frame_param_grads(xp, inputs, delta, ())

    def frame_param_grads(self, xp, inputs, delta, frames):
        """``param_grads`` per leading ``frames`` ((F,) or ()) of the rows."""
        x = inputs[0]
        d = xp.reshape(delta, frames + (-1, delta.shape[-1]))
        out = {"W": xp.matrix_transpose(d) @ xp.reshape(x, frames + (-1, x.shape[-1]))}
        if "b" in self.param_shapes:
            out["b"] = xp.sum(d, axis=len(frames))
        return out


class Dense(Linear):
    """Affine map + activation on flat inputs: pre = x Wᵀ + b."""
    kind = "dense"

    def _shape(self):
        (s,) = self.in_shapes
        if len(s) != 1:
            raise Unfit("from", "a parent with a flat value (add a flatten layer before it)",
                        f"shape {s}")
        return super()._shape()


class MatMul(Layer):
    """Batched product of two activities: factor · a @ b (or a @ bᵀ)."""
    kind = "matmul"
    arity = 2
    reads_inputs = True

    def _shape(self):
        a, b = self.in_shapes
        if len(a) < 2 or len(b) < 2:
            raise Unfit("from", "two parents with matrix values (rank >= 2)", [a, b])
        if a[:-2] != b[:-2]:
            raise Unfit("from", f"parents with the same leading axes ({a[:-2]})",
                        f"{b[:-2]}")
        inner, n = (b[-1], b[-2]) if self.cfg["transpose"] else (b[-2], b[-1])
        if a[-1] != inner:
            side = "bᵀ" if self.cfg["transpose"] else "b"
            raise Unfit("from", f"a's last axis ({a[-1]}) equal to {side}'s rows", list(b))
        return a[:-1] + (n,)

    def _other(self, xp, b):
        return xp.matrix_transpose(b) if self.cfg["transpose"] else b

    def _pre(self, xp, params, inputs):
        a, b = inputs
        out = a @ self._other(xp, b)
        f = self.cfg["factor"]
        return out if f == 1.0 else f * out

    def vjp(self, xp, params, inputs, pre, delta, weights=None):
        a, b = inputs
        f = self.cfg["factor"]
        d = delta if f == 1.0 else f * delta
        ga = d @ xp.matrix_transpose(self._other(xp, b))
        gb = xp.matrix_transpose(a) @ d          # ∂/∂(a @ B) w.r.t. B
        return [ga, xp.matrix_transpose(gb) if self.cfg["transpose"] else gb]


class Softmax(Layer):
    """Softmax over the last axis."""
    kind = "softmax"
    reads_inputs = True

    @staticmethod
    def _soft(xp, x):
        e = xp.exp(x - xp.max(x, axis=-1, keepdims=True))
        return e / xp.sum(e, axis=-1, keepdims=True)

    def _pre(self, xp, params, inputs):
        return self._soft(xp, inputs[0])

    def vjp(self, xp, params, inputs, pre, delta, weights=None):
        s = self._soft(xp, inputs[0])
        return [s * (delta - xp.sum(delta * s, axis=-1, keepdims=True))]


KINDS = {cls.kind: cls for cls in (Dense, Conv2d, Pool, Flatten, Tokens, Add, Identity,
                                   Linear, MatMul, Softmax)}
