"""The pure tick of the compiled executor (``simulator.engine.compiled``).

``_tick(plan, state, (u, y))`` is GraphEngine's generic step written
functionally on jax.numpy over a pytree state; ``chunk_loop`` jits its
``lax.scan``. A tick costs the XLA kernels it launches, so the carry stacks
each quantity by vertex shape and a dense group's parameters (``Plan.pack``)
and a group's σ/σ', hidden deltas and weight update are one stacked loop each.
jax is bound by ``bind`` once the optional extra loads.
"""
from ..options import loss_grad
from ..model.reference import vertex_params
from .fast import ring_read, runs
from .tick import finite_slots

jax = jnp = None


def bind(jax_module, jnp_module):
    """Use these jax and jax.numpy modules (the optional extra, once loaded)."""
    global jax, jnp
    jax, jnp = jax_module, jnp_module


class Plan:
    """What the tick needs from the model and the options, resolved once
    (the vertex tables and lags from ``probe``, a GraphEngine of this model)."""

    def __init__(self, eng, probe, model):
        self.model, verts = model, model.vertices
        n = len(model)
        self.n, self.out = n, model.output
        self.loss, self.batch = eng.loss, eng.batch
        self.lr, self.acc = eng.learning_rate, eng.accumulate if eng.learning_rate else 1
        self.keep = 1.0 - eng.learning_rate * eng.weight_decay
        self.decay = bool(eng.weight_decay)
        self.eps, self.delay = eng.itd_epsilon, eng.supervision_delay
        kind, self.pairing, self.feedback = eng.derivative, eng.pairing, eng.feedback
        self.derivative = kind
        self.sigma, self.factored = probe._sigma, probe._factored
        self.factor_set, self.reads = probe._factor_set, probe._reads
        self.deriv_lag, self.pair_lag = probe._deriv_lag, probe._pair_lag
        self.params = [i for i in range(1, n) if verts[i].param_names]
        self.keep_s = kind in ("local", "frame")
        self.keep_prev = kind in ("itd-y", "itd-dy") or (
            kind != "frame" and any(self.reads))
        x_need, s_need = probe._ring_lags
        self.ring_x = {p: lag + 1 for p, lag in x_need.items()}
        self.ring_s = {v: lag + 1 for v, lag in s_need.items()}
        self.backward = [c for c in verts[1:] if any(c.parents)]
        # dense vertices of one weight shape: one batched matmul per group (they
        # read only tick t); σ and σ' one loop per run of one activation
        dense = [v.index for v in verts if v.kind == "dense"]
        self.groups = [g for g in _classes(dense, lambda i: verts[i].layer.param_shapes["W"])
                       if len(g) > 1]
        self.runs = {g: [(lo, hi) for lo, hi, _ in runs([verts[i].cfg.get("activation")
                                                          for i in g])] for g in self.groups}
        self.stacked = [tuple(f"{verts[i].name}.{k}" for i in g) for g in self.groups
                        for k in ("W", "b")]
        shape = [v.shape for v in verts].__getitem__
        self.hidden = _classes(range(1, n - 1), shape)   # δ = D ⊙ cotangent, one per shape
        self.weighted = [i for i in range(1, n) if "W" in verts[i].param_names]
        self.slots = finite_slots(model)
        # the carry stacks per-vertex arrays of one shape (``pack``): one buffer,
        # loop and carry copy per shape; a tick works per vertex (``unpack``)
        held_s = [i for i in range(n) if self.sigma[i] and (self.keep_s or i == self.out)]
        self.layout = {"X": _classes(range(n), shape), "S": _classes(held_s, shape),
                       "D": _classes(range(1, n), shape)}
        self.layout.update(P=self.layout["X"], Xp=self.layout["X"], Pp=self.layout["X"])

    def pack(self, s):
        """``s`` with its per-vertex tuples stacked by shape and its groups'
        parameters (and accumulators) stacked per group: the carry's form."""
        out = dict(s)
        for key, classes in self.layout.items():
            if key in s:
                out[key] = tuple(jnp.stack([s[key][i] for i in c]) for c in classes)
        return self._stack_params(out, True)

    def unpack(self, s):
        """``s`` with per-vertex tuples again (None where a vertex holds none)."""
        out = dict(s)
        for key, classes in self.layout.items():
            if key in s:
                one = [None] * self.n
                for c, a in zip(classes, s[key]):
                    for j, i in enumerate(c):
                        one[i] = a[j]
                out[key] = tuple(one)
        return self._stack_params(out, False)

    def _stack_params(self, s, stack):
        """``s`` with its groups' parameters (and accumulators) stacked or split."""
        for key in ("params", "A"):
            if key in s:
                d = s[key] = dict(s[key])
                for keys in self.stacked:
                    if stack:
                        d["|".join(keys)] = jnp.stack([d.pop(k) for k in keys])
                    else:
                        d.update(zip(keys, d.pop("|".join(keys))))
        return s

    @staticmethod
    def finite(s):
        """0 when every x, pre and δ of packed state ``s`` is finite, else NaN
        (the flag slots hold no more: σ of a finite pre is finite and a linear
        vertex's pre is its x)."""
        flags = [jnp.sum(a * 0.0) for key in ("X", "P", "D") for a in s[key]]
        return sum(flags[1:], flags[0])


def _classes(members, key):
    """``members`` (vertex indices) grouped by ``key``, in order."""
    by_key = {}
    for i in members:
        by_key.setdefault(key(i), []).append(i)
    return [tuple(c) for c in by_key.values()]


def initial_state(plan, host, dtype):
    """The pytree at tick −1: zeros, the model's parameters, the host engine's feedback."""
    m, B = plan.model, plan.batch

    def zeros(i, lead=()):
        return jnp.zeros(tuple(lead) + (B,) + m.vertices[i].shape, dtype)

    n = plan.n
    s = {"t": jnp.asarray(-1), "X": tuple(zeros(i) for i in range(n)),
         "P": tuple(zeros(i) for i in range(n)),
         "S": tuple(zeros(i) if plan.sigma[i] and (plan.keep_s or i == plan.out) else None
                    for i in range(n)),
         "D": (None,) + tuple(zeros(i) for i in range(1, n)),
         "RX": {p: zeros(p, (r,)) for p, r in plan.ring_x.items()},
         "RS": {v: zeros(v, (r,)) for v, r in plan.ring_s.items()}}
    if plan.keep_prev:
        s["Xp"], s["Pp"] = (tuple(zeros(i) for i in range(n)) for _ in range(2))
    if plan.derivative == "itd-dy":
        s["Q"] = {i: zeros(i) for i in plan.factored}
    if plan.delay:
        s["T"] = jnp.zeros((plan.delay + 1, B) + tuple(m.output_shape), dtype)
    s["params"] = {k: jnp.asarray(a, dtype) for k, a in m.parameters().items()}
    if plan.feedback in ("random", "learned"):
        fb = host.feedback_weights()
        s["F"] = {i: jnp.asarray(fb[f"{m.vertices[i].name}.W"], dtype) for i in plan.weighted}
    if plan.lr and plan.acc > 1:
        s["A"] = {k: jnp.zeros_like(a) for k, a in s["params"].items()}
    return plan.pack(s)


def _feedback(plan, s):
    """Per vertex index the backward weights B in place of W (None: W itself)."""
    F = [None] * plan.n
    verts = plan.model.vertices
    if plan.feedback == "sign":
        for i in plan.weighted:
            F[i] = jnp.sign(s["params"][f"{verts[i].name}.W"])
    elif plan.feedback in ("random", "learned"):
        for i in plan.weighted:
            F[i] = s["F"][i]
    return F


def _factors(plan, s, t):
    """D[t−1, v] per vertex index (None: the factor 1), and the new ITD quotients."""
    out, kind, Q = [None] * plan.n, plan.derivative, dict(s.get("Q", {}))
    for i in plan.factor_set:
        if kind == "local":
            out[i] = s["S"][i]
        elif kind == "frame":
            out[i] = ring_read(s["RS"][i], t - 1 - plan.deriv_lag[i])
        elif kind == "itd-y":
            out[i] = s["X"][i] - s["Xp"][i]
        else:
            dx, da = s["X"][i] - s["Xp"][i], s["P"][i] - s["Pp"][i]
            finite = jnp.abs(da) >= plan.eps
            Q[i] = out[i] = jnp.where(finite, dx / jnp.where(finite, da, jnp.ones_like(da)), Q[i])
    return out, (Q if kind == "itd-dy" else None)


def _tick(plan, s, uy, exact=False):
    """GraphEngine's generic step from state ``s`` (tick t−1) on (u, y), functionally."""
    u, y = uy
    verts, n, o, xp = plan.model.vertices, plan.n, plan.out, jnp
    t = s["t"] + 1
    X, P, D = s["X"], s["P"], s["D"]
    vp = [vertex_params(s["params"], v) if v.layer else {} for v in verts]
    F = _feedback(plan, s)
    factors, Q = _factors(plan, s, t)
    Xn, Pn, Sn, Dn = [u] + [None] * (n - 1), [u] + [None] * (n - 1), [None] * n, [None] * n
    pres = {}
    for g in plan.groups:                                           # forward
        # contracting W's leading axis spares XLA's CPU dot a transpose of x
        pre = jnp.einsum("kbi,kij->kbj", jnp.stack([X[verts[i].parents[0]] for i in g]),
                         jnp.swapaxes(jnp.stack([vp[i]["W"] for i in g]), 1, 2))
        pre = pre + jnp.stack([vp[i]["b"] for i in g])[:, None, :]
        for lo, hi in plan.runs[g]:
            layer = verts[g[lo]].layer
            x, d = (pre[lo:hi], None) if layer.linear else layer.activate(xp, pre[lo:hi])
            for j, i in enumerate(g[lo:hi]):
                pres[i] = (pre[lo + j], x[j], d if d is None else d[j])
    for v in verts[1:]:
        i = v.index
        if i in pres:
            Pn[i], Xn[i], d = pres[i]
            if s["S"][i] is not None:
                Sn[i] = jnp.ones_like(Pn[i]) if d is None else d
            continue
        Pn[i], Xn[i] = v.layer.value(xp, vp[i], [X[p] for p in v.parents])
        if s["S"][i] is not None:
            Sn[i] = v.layer.derivative(xp, Pn[i])
    new = dict(s, t=t)
    if plan.delay:                                                  # output delta
        ring = s["T"].at[t % (plan.delay + 1)].set(y)
        new["T"], target = ring, ring[(t - plan.delay) % (plan.delay + 1)]
    else:
        target = y
    err = loss_grad(xp, plan.loss, Xn[o], target)
    Dn[o] = err if Sn[o] is None else Sn[o] * err
    if plan.delay:
        Dn[o] = jnp.where(t >= plan.delay, Dn[o], jnp.zeros_like(Dn[o]))
    cot, backs = [None] * n, {}                                     # backward
    for g in plan.groups:
        back = jnp.einsum("kbj,kji->kbi", jnp.stack([D[i] for i in g]),
                          jnp.stack([vp[i]["W"] if F[i] is None else F[i] for i in g]))
        backs.update({i: [back[j]] for j, i in enumerate(g)})
    for c in plan.backward:
        ci = c.index
        back = backs.get(ci)
        if back is None:
            inputs = ([X[p] for p in c.parents] if not plan.reads[ci] else
                      [ring_read(s["RX"][p], t - 1 - plan.pair_lag[(p, ci)]) for p in c.parents]
                      if plan.derivative == "frame" else [s["Xp"][p] for p in c.parents])
            back = c.layer.vjp(xp, vp[ci], inputs, P[ci], D[ci], weights=F[ci])
        for p, b in zip(c.parents, back):
            if p:
                cot[p] = b if cot[p] is None else cot[p] + b
    for c in plan.hidden:
        fs = [factors[i] for i in c]
        dc = jnp.stack([cot[i] for i in c])
        if any(f is not None for f in fs):
            dc = jnp.stack([jnp.ones_like(cot[i]) if f is None else f
                            for i, f in zip(c, fs)]) * dc
        for j, i in enumerate(c):
            Dn[i] = dc[j]
    new.update(X=tuple(Xn), P=tuple(Pn), S=tuple(Sn), D=tuple(Dn))
    if plan.keep_prev:
        new["Xp"], new["Pp"] = X, P
    if Q is not None:
        new["Q"] = Q
    new["RX"] = {p: r.at[t % r.shape[0]].set(Xn[p]) for p, r in s["RX"].items()}  # history
    new["RS"] = {v: r.at[t % r.shape[0]].set(Sn[v]) for v, r in s["RS"].items()}
    pairs = {i: paired(plan, new, verts[i]) for i in plan.params}
    if plan.lr:
        new = _learn(plan, new, pairs)
    # ``exact``: one NaN/Inf flag per slot; else chunk_loop flags the packed state
    out = {}
    if exact:
        out["finite"] = jnp.stack([jnp.sum((Xn, Pn, Dn)[q][i] * 0.0) for q, i in plan.slots])
    return new, out, pairs


def paired(plan, s, v):
    """The parents' x that g[t,v] pairs with: now (`local`) or of δ[t,v]'s frame."""
    if plan.pairing == "local":
        return [s["X"][p] for p in v.parents]
    return [ring_read(s["RX"][p], s["t"] - plan.pair_lag[(p, v.index)]) for p in v.parents]


def _learn(plan, s, pairs):
    """``GraphEngine._learn`` functionally, a group's weights as one stacked array."""
    verts, grouped = plan.model.vertices, set()
    s = dict(s)
    params, F = dict(s["params"]), dict(s.get("F", {}))
    A = dict(s["A"]) if plan.acc > 1 else None
    apply = (s["t"] + 1) % plan.acc == 0 if plan.acc > 1 else None
    learned = plan.feedback == "learned"

    def update(keys, step, fb=None):
        """Step the parameters ``keys`` (stacked when several) and ``fb``."""
        one = len(keys) == 1
        get = (lambda d: d[keys[0]]) if one else (lambda d: jnp.stack([d[k] for k in keys]))
        a, acc = get(params), None if A is None else get(A)
        f = None if fb is None else (F[fb[0]] if one else jnp.stack([F[i] for i in fb]))
        a, acc, f = _update(plan, keys[0].endswith(".W"), a, step, acc, f, apply)
        for j, k in enumerate(keys):
            params[k] = a if one else a[j]
            if A is not None:
                A[k] = acc if one else acc[j]
        for j, i in enumerate(fb or ()):
            F[i] = f if one else f[j]

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


def _update(plan, weight, a, step, acc, f, apply):
    """(a, accumulator, feedback f) after one step of ``a`` (decayed if a ``weight``)."""
    old_a, old_f = a, f
    if acc is not None:
        step = acc + step
    if weight and plan.decay:
        a = a * plan.keep
        f = None if f is None else f * plan.keep
    a = a - step
    f = None if f is None else f - step
    if acc is not None:
        a = jnp.where(apply, a, old_a)
        f = None if f is None else jnp.where(apply, f, old_f)
        acc = jnp.where(apply, jnp.zeros_like(step), step)
    return a, acc, f


def chunk_loop(plan, record, exact=False, masked=False):
    """The jitted chunk loop: (state, U, Y, live) -> (state, per-tick
    outputs); the state passed in stays valid (a chunk with a NaN/Inf is
    replayed from it). ``masked``: a tick whose ``live`` flag is False leaves
    the state as it was, so a run whose last chunk is shorter pads it and
    compiles one scan length, not two (the select costs ~0.15 s more to
    compile, so runs of equal chunks use the loop without it)."""
    learning = bool(plan.lr)
    fixed_keys = () if learning else ("params", "F")

    def run(state, U, Y, live):
        fixed = {k: state[k] for k in fixed_keys if k in state}

        def tick(moving, xs):
            u, y, on = xs
            new, out, pairs = _tick(plan, plan.unpack({**moving, **fixed}), (u, y), exact)
            if record:
                out.update(X=new["X"], P=new["P"], D=new["D"], pairs=pairs)
                if learning:
                    out["params"] = new["params"]
                    if "F" in new:
                        out["F"] = new["F"]
            new = plan.pack(new)
            if not exact:
                out["finite"] = plan.finite(new)
            kept = {k: a for k, a in new.items() if k not in fixed}
            if masked:
                kept = jax.tree_util.tree_map(lambda a, b: jax.lax.select(on, a, b), kept, moving)
            return kept, out

        moving = {k: a for k, a in state.items() if k not in fixed}
        final, out = jax.lax.scan(tick, moving, (U, Y, live))
        return {**final, **fixed}, out

    return jax.jit(run)
