"""The compiled executor's weight update (``compiled._tick`` calls it inside the scan):
GraphEngine's update written functionally on the loop's pytree state."""


def learn(jnp, plan, s, pairs):
    """``GraphEngine._learn`` functionally (``jnp``: jax.numpy), a group's weights as one
    stacked array."""
    verts, grouped = plan.model.vertices, set()
    s = dict(s)
    params, F = dict(s["params"]), dict(s.get("F", {}))
    A = dict(s["A"]) if plan.acc > 1 else None
    apply = (s["t"] + 1) % plan.acc == 0 if plan.acc > 1 else None
    learned = plan.feedback == "learned"

    def get(d, keys):
        return d[keys[0]] if len(keys) == 1 else jnp.stack([d[k] for k in keys])

    def put(d, keys, a):
        d.update({k: a if len(keys) == 1 else a[j] for j, k in enumerate(keys)})

    def update(keys, step, fb=None):
        """Step the parameters ``keys`` (stacked when several) and feedback ``fb``
        (decayed if weights); with ``accumulate``, only when ``apply``."""
        if A is not None:
            step = get(A, keys) + step
            put(A, keys, jnp.where(apply, jnp.zeros_like(step), step))
        for d, ks in ((params, keys), (F, fb or ())):
            if ks:
                old = get(d, ks)
                new = (old * plan.keep if plan.decay and keys[0].endswith(".W") else old) - step
                put(d, ks, new if A is None else jnp.where(apply, new, old))

    for g in plan.groups:
        e = plan.lr * jnp.stack([s["D"][i] for i in g])
        gw = jnp.einsum("kbj,kbi->kji", e, jnp.stack([pairs[i][0] for i in g]))
        update([f"{verts[i].name}.W" for i in g], gw, g if learned else None)
        update([f"{verts[i].name}.b" for i in g], jnp.sum(e, axis=1))
        grouped.update(g)
    for i in plan.params:
        if i in grouped:
            continue
        v = verts[i]
        g = v.layer.param_grads(jnp, pairs[i], plan.lr * s["D"][i])
        for k in v.param_names:
            update([f"{v.name}.{k}"], g[k], (i,) if learned and k == "W" else None)
    s["params"] = params
    if learned:
        s["F"] = F
    if A is not None:
        s["A"] = A
    return s
