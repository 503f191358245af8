"""Instantaneous forward pass and backprop on a Model: the graph oracle, plain on purpose
(no history; only the layers' functions and the losses are shared with the tick engine).
Arrays stay in ``u``'s namespace; losses sum over the batch."""
from array_api_compat import array_namespace

from ..arguments import check_array, check_keyed_arrays, check_type, fail
from ..options import LOSSES, loss_and_grad
from .graph import Model


def check_call(call, model, u, y=None, loss=None, params=None, feedback=None, lead=1,
               target=True):
    """Check a public oracle call's arguments: ``u`` (``lead`` leading axes:
    batch, or frames and batch), ``y`` and ``loss`` (if ``target``), ``params``/``feedback``."""
    check_type(call, "model", model, Model, "a simulator.Model (Model.chain(sizes, ...) "
               "for a chain)")
    check_array(call, "u", u, ndim=lead + len(model.input_shape))
    if tuple(u.shape[lead:]) != model.input_shape:
        fail(call, "u", f"an array of shape ({', '.join(['batch', 'frames'][:lead][::-1])}, "
             f"{', '.join(map(str, model.input_shape))})", u)
    if target:
        check_array(call, "y", y, shape=tuple(u.shape[:lead]) + tuple(model.output_shape))
    if target and (not isinstance(loss, str) or loss not in LOSSES):
        fail(call, "loss", f"one of {', '.join(LOSSES)}", loss)
    if params is not None:
        check_keyed_arrays(call, "params", params, model.param_shapes())
    if feedback is not None:
        weights = {k: v for k, v in model.param_shapes().items() if k.endswith(".W")}
        check_keyed_arrays(call, "feedback", feedback, weights, subset=True)


def device_params(xp, model, dtype, params=None):
    """The model's parameters (or ``params``, keyed alike) in ``xp`` and ``dtype``."""
    params = model.parameters() if params is None else params
    return {k: xp.asarray(a, dtype=dtype) for k, a in params.items()}


def vertex_params(params, vertex):
    """The short-named {"W": ..., "b": ...} of one vertex from a keyed dict."""
    return {p: params[f"{vertex.name}.{p}"] for p in vertex.param_names}


def evaluate(model, u, params=None):
    """(pres, outs) per vertex index for the batch ``u`` (B, *input_shape)."""
    if not isinstance(model, Model) or tuple(getattr(u, "shape", (None,))[1:]) != model.input_shape:
        check_call("evaluate", model, u, target=False)
    xp = array_namespace(u)
    p = device_params(xp, model, u.dtype, params)
    pres, outs = [u], [u]
    for v in model.vertices[1:]:
        pre, out = v.layer.value(xp, vertex_params(p, v), [outs[i] for i in v.parents])
        pres.append(pre)
        outs.append(out)
    return pres, outs


def sweep(xp, model, p, u):
    """(pres, outs, σ') per vertex index for the batch ``u`` with device params ``p``:
    ``evaluate`` keeping σ' (None for a linear vertex) from the same activation call."""
    pres, outs, slopes = [u], [u], [None]
    for v in model.vertices[1:]:
        pre = v.layer._pre(xp, vertex_params(p, v), [outs[i] for i in v.parents])
        out, slope = (pre, None) if v.layer.linear else v.layer.activate(xp, pre)
        pres.append(pre)
        outs.append(out)
        slopes.append(slope)
    return pres, outs, slopes


def forward(model, u, params=None):
    """{vertex name: value} of every vertex for the batch ``u`` (Eq. 1 on a graph)."""
    check_call("model.reference.forward", model, u, params=params, target=False)
    _, outs = evaluate(model, u, params)
    return {v.name: x for v, x in zip(model.vertices, outs)}


def factors(model, u, y, loss="mse", params=None, feedback=None):
    """Backprop on the graph: (outs, deltas, loss value), per vertex index;
    ``deltas[v]`` = ∂ℓ/∂pre_v = σ'_v ⊙ Σ over children c (each position of v in
    c's ``from``) of c's VJP of δ_c (None for the input); ``feedback``
    {"<layer>.W": B} replaces those weights in the backward pass."""
    check_call("model.reference.factors", model, u, y, loss, params, feedback)
    return _factors(model, u, y, loss, params, feedback)


def _factors(model, u, y, loss, params, feedback):
    xp = array_namespace(u)
    p = device_params(xp, model, u.dtype, params)
    pres, outs, slopes = sweep(xp, model, p, u)
    fb = {} if feedback is None else {k: xp.asarray(a, dtype=u.dtype) for k, a in feedback.items()}
    value, grad = loss_and_grad(xp, loss, outs[-1], y)
    cot = [None] * len(model)
    cot[-1] = grad
    deltas = [None] * len(model)
    for v in reversed(model.vertices[1:]):
        d = cot[v.index]
        if slopes[v.index] is not None:
            d = slopes[v.index] * d
        deltas[v.index] = d
        if not any(v.parents):
            continue  # a vertex on the input alone sends no cotangent anywhere
        inputs = [outs[i] for i in v.parents]
        back = v.layer.vjp(xp, vertex_params(p, v), inputs, pres[v.index], d,
                           weights=fb.get(f"{v.name}.W"))
        for i, c in zip(v.parents, back):
            if i:  # the input needs no cotangent
                cot[i] = c if cot[i] is None else cot[i] + c
    return outs, deltas, value


def backprop(model, u, y, loss="mse", params=None, feedback=None):
    """{"<layer>.W": ∂ℓ/∂W, ...} summed over the batch, keyed like
    ``model.parameters()`` (Eq. 5 of Betti & Gori per vertex)."""
    check_call("model.reference.backprop", model, u, y, loss, params, feedback)
    xp = array_namespace(u)
    outs, deltas, _ = _factors(model, u, y, loss, params, feedback)
    return _keyed(model, outs, deltas, lambda layer, xs, d: layer.param_grads(xp, xs, d))


def _keyed(model, outs, deltas, grads_of):
    """{"<layer>.W": ..., ...}: ``grads_of(layer, inputs, δ)`` of each weighted vertex."""
    return {f"{v.name}.{k}": g[k] for v in model.vertices[1:] if v.param_names
            for g in [grads_of(v.layer, [outs[i] for i in v.parents], deltas[v.index])]
            for k in v.param_names}


def frame_gradients(model, u, y, loss="mse", params=None):
    """``backprop`` of F frames at once, {key: (F, *shape)}, for ``u`` (F, B,
    *input_shape) and ``y`` (F, B, *output_shape): one pass over the F·B rows."""
    check_call("model.reference.frame_gradients", model, u, y, loss, params, lead=2)
    xp = array_namespace(u)
    F, B = int(u.shape[0]), int(u.shape[1])
    flat_u = xp.reshape(u, (F * B,) + tuple(u.shape[2:]))
    flat_y = xp.reshape(y, (F * B,) + tuple(y.shape[2:]))
    outs, deltas, _ = _factors(model, flat_u, flat_y, loss, params, None)
    return _keyed(model, outs, deltas,
                  lambda layer, xs, d: frame_param_grads(xp, layer, xs, d, F, B))


def frame_param_grads(xp, layer, inputs, delta, F, B):
    """{name: (F, *shape)}: ``layer.param_grads`` of each frame's B rows of the
    stacked (F·B, ...) ``inputs`` and ``delta`` (batched for dense, linear, conv2d)."""
    kind = layer.kind
    if kind in ("dense", "linear"):
        return layer.frame_param_grads(xp, inputs, delta, (F,))
    if kind == "conv2d":
        cols = layer._cols(xp, inputs[0])                      # (F·B, C·kh·kw, Ho·Wo)
        o, k, hw = delta.shape[1], cols.shape[1], cols.shape[2]
        d = xp.reshape(delta, (F, B, o, hw))
        c = xp.reshape(cols, (F, B, k, hw))
        d = xp.reshape(xp.permute_dims(d, (0, 2, 1, 3)), (F, o, B * hw))
        c = xp.reshape(xp.permute_dims(c, (0, 2, 1, 3)), (F, k, B * hw))
        gw = d @ xp.matrix_transpose(c)                         # (F, o, C·kh·kw)
        return {"W": xp.reshape(gw, (F,) + tuple(layer.param_shapes["W"])),
                "b": xp.sum(d, axis=2)}
    rows = [layer.param_grads(xp, [xp.reshape(a, (F, B) + tuple(a.shape[1:]))[f] for a in inputs],
                              xp.reshape(delta, (F, B) + tuple(delta.shape[1:]))[f])
            for f in range(F)]
    return {k: xp.stack([r[k] for r in rows]) for k in rows[0]}


def loss_value(model, u, y, loss="mse", params=None):
    """ℓ(u, y) of the instantaneous model, summed over the batch."""
    check_call("model.reference.loss_value", model, u, y, loss, params)
    xp = array_namespace(u)
    _, outs = evaluate(model, u, params)
    return loss_and_grad(xp, loss, outs[-1], y)[0]
