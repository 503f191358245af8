"""The float64 runs of the schedule zoo: ``run_schedule`` plays a closed-form timetable
(analysis/timetables.py) with its Policy in one event-driven executor, or runs the tick
engine for ``diffusion`` and reads it back into the same records. Each update is compared
with the oracle (model/reference.py ``backprop``) of the frames it claims, on the weights
each of their forward ops read."""
from collections import defaultdict

import numpy as np

from ..analysis.timetables import POLICY, check_name, timetable
from ..arguments import check_array, check_int, check_number, check_type, fail
from ..engine.tick import GraphEngine, distances
from ..errors import SimulatorError
from ..model.graph import Model
from ..model.reference import backprop, check_call, evaluate, vertex_params
from ..options import loss_and_grad


def check_stream(call, model, u, y, learning_rate, loss, eval_inputs, eval_labels, eval_ticks):
    """(u, y, η, loss, eval inputs, eval labels, eval ticks) as the runs take them."""
    check_call(call, model, u, y, loss, lead=2)
    eta = check_number(call, "learning_rate", learning_rate, 0.0)
    ticks = np.array([check_int(call, "eval_ticks[]", t, 0) for t in eval_ticks], np.int64)
    if len(ticks) and (eval_inputs is None or eval_labels is None):
        fail(call, "eval_inputs/eval_labels", "held-out inputs and labels for eval_ticks", None)
    if eval_inputs is not None:
        check_call(call, model, eval_inputs, target=False)
        check_array(call, "eval_labels", eval_labels)
        if len(eval_labels) != len(eval_inputs):
            fail(call, "eval_labels", f"{len(eval_inputs)} labels (one per eval input)",
                 eval_labels)
    return (np.asarray(u, np.float64), np.asarray(y, np.float64), eta, loss,
            eval_inputs, eval_labels, ticks)


def accuracy(model, params, inputs, labels):
    """Fraction of ``inputs`` whose output argmax is the label (an int, or a target's argmax)."""
    out = evaluate(model, np.asarray(inputs, np.float64), params)[1][-1]
    guess = out.reshape(len(out), -1).argmax(axis=1)
    labels = np.asarray(labels)
    want = labels if labels.ndim == 1 else labels.reshape(len(labels), -1).argmax(axis=1)
    return float(np.mean(guess == want))


def compare(g, o):
    """(cosine, relative error) of gradient dicts ``g`` against the oracle ``o`` (same keys)."""
    a = np.concatenate([np.ravel(g[k]) for k in o])
    b = np.concatenate([np.ravel(o[k]) for k in o])
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    cos = float(a @ b / (na * nb)) if na and nb else np.nan
    return cos, float(np.linalg.norm(a - b) / nb) if nb else np.nan


class Records:
    """Per tick and stage: cosine, rel_error (NaN where no update), loss per tick, accuracy."""

    def __init__(self, T, V, eval_ticks):
        self.cosine, self.rel_error = np.full((2, T, V), np.nan)
        self.loss = np.full(T, np.nan)
        self.eval_ticks, self.eval_set = eval_ticks, set(eval_ticks.tolist())
        self.accuracy = np.full(len(eval_ticks), np.nan)

    def evaluate(self, t, model, params, inputs, labels):
        """Accuracy with ``params`` at every eval tick equal to t."""
        self.accuracy[self.eval_ticks == t] = accuracy(model, params, inputs, labels)

    def out(self, table, params):
        keep = ("forward", "backward", "delay", "stale", "versions", "version_bytes", "utilisation")
        return {**{k: table[k] for k in keep}, "cosine": self.cosine,
                "rel_error": self.rel_error, "loss": self.loss, "accuracy": self.accuracy,
                "parameters": params}


def _events(table):
    """Per tick: forward ops [(v, s)], backward ops [(v, s)], updates [(v, g)] (stage indices)."""
    fw, bw, up = defaultdict(list), defaultdict(list), defaultdict(list)
    for ticks, out in ((table["fwd_tick"], fw), (table["bwd_tick"], bw),
                       (table["update_tick"], up)):
        for s, v in zip(*np.nonzero(ticks >= 0)):
            out[int(ticks[s, v])].append((int(v), int(s)))
    return fw, bw, up


def execute(table, policy, model, u, y, eta, loss, eval_inputs, eval_labels, eval_ticks,
            progress=None):
    """Play ``table`` (analysis.timetables.timetable) on the frames with ``policy``; the records of
    schedules.run_schedule. Ops at a tick: forwards in topological order, then backwards
    in reverse, then the updates that land."""
    verts = model.vertices
    V, T, out = len(verts) - 1, table["ticks"], model.output
    group = table["group"]
    cur = [vertex_params(model.parameters(), v) if v.layer else {} for v in verts]
    x, pre, read, cot = {}, {}, {}, {}              # per frame: per vertex index
    newest_x, newest_pre = [None] * len(verts), [None] * len(verts)
    acc = defaultdict(dict)                          # group -> vertex -> {name: sum}
    oracle = defaultdict(dict)                       # group -> {key: sum of frames' backprop}
    left = {}                                        # frame -> backward ops still to come
    pending = defaultdict(lambda: int(table["weighted"].sum()))   # group -> updates to land
    rec = Records(T, V, eval_ticks)
    fw, bw, up = _events(table)
    B = u.shape[1]
    for t in range(T):
        for v, s in sorted(fw.get(t, ())):
            i, vx = v + 1, verts[v + 1]
            if s not in x:
                x[s], pre[s], read[s], cot[s] = {0: u[s]}, {}, {}, {}
                left[s] = V
            pre[s][i], x[s][i] = vx.layer.value(np, cur[i], [x[s][p] for p in vx.parents])
            newest_pre[i], newest_x[i] = pre[s][i], x[s][i]
            read[s][i] = cur[i]
            if i == out:
                rec.loss[t] = loss_and_grad(np, loss, x[s][i], y[s])[0] / B
                params = {f"{verts[j].name}.{k}": a for j, p in read[s].items()
                          for k, a in p.items()}
                for k, a in backprop(model, u[s], y[s], loss, params).items():
                    o = oracle[group[s]]
                    o[k] = o[k] + a if k in o else a
        for v, s in sorted(bw.get(t, ()), reverse=True):
            i, vx = v + 1, verts[v + 1]
            newest_x[0] = u[min(t, len(u) - 1)]
            d = (loss_and_grad(np, loss, x[s][i], y[s])[1] if i == out else cot[s].pop(i))
            frame = policy.pair == "frame"
            p_now = pre[s][i] if frame else newest_pre[i]
            ins = [x[s][p] if frame else newest_x[p] for p in vx.parents]
            if not vx.layer.linear:
                d = vx.layer.derivative(np, p_now) * d
            w = read[s][i] if policy.weights == "stashed" else cur[i]
            if any(vx.parents):
                for p, c in zip(vx.parents, vx.layer.vjp(np, w, ins, p_now, d)):
                    if p:
                        cot[s][p] = cot[s][p] + c if p in cot[s] else c
            if vx.param_names:
                a = acc[group[s]].setdefault(i, {})
                for k, g in vx.layer.param_grads(np, ins, d).items():
                    a[k] = a[k] + g if k in a else g
            left[s] -= 1
            if not left[s]:
                for store in (x, pre, read, cot, left):
                    del store[s]
        for v, g in up.get(t, ()):
            i, vx = v + 1, verts[v + 1]
            grads = acc[g].pop(i)
            cur[i] = {k: a - eta * grads[k] for k, a in cur[i].items()}
            claim = {k: oracle[g][f"{vx.name}.{k}"] for k in grads}
            rec.cosine[t, v], rec.rel_error[t, v] = compare(grads, claim)
            pending[g] -= 1
            if not pending[g]:
                del acc[g], oracle[g]
        if t in rec.eval_set:
            rec.evaluate(t, model, _keyed(verts, cur), eval_inputs, eval_labels)
        if progress is not None:
            progress(1)
    return rec.out(table, _keyed(verts, cur))


def _keyed(verts, per_vertex):
    return {f"{v.name}.{k}": a for v, p in zip(verts, per_vertex) for k, a in p.items()}


def make_engine(call, model, batch, eta, loss, rule):
    """The GraphEngine of ``diffusion``: ``rule`` (a dict of engine keywords) on the run's
    loss, η and batch."""
    if not isinstance(rule, dict) or not all(isinstance(k, str) for k in rule):
        fail(call, "rule", "a dict of GraphEngine options (feedback, derivative, ...)", rule)
    taken = {"loss", "learning_rate", "batch", "dtype", "device"} & set(rule)
    if taken:
        raise SimulatorError(f"{call}: rule: {sorted(taken)} are the run's own arguments")
    try:
        return GraphEngine(model, loss=loss, learning_rate=eta, batch=batch, **rule)
    except TypeError as exc:
        raise SimulatorError(f"{call}: rule: {exc}") from None


def run_engine(engine, table, model, u, y, eta, loss, eval_inputs, eval_labels, eval_ticks,
               progress=None):
    """``diffusion``: ``engine`` stepped on the frames (zeros after them: those frames'
    updates are not recorded and each stage's weights for ``accuracy`` are kept as after
    its last real frame's update), read into the records of the stages
    ``model.vertices[1:]`` (by name; levelling's identities dropped). An update claims the
    frame of the output activity its δ's error came from (the ``output`` tag, oldest; the
    supervision frame too when d_y = D, fact B′), its delay is the tick minus that
    frame's forward read of W_v, its staleness the updates of W_v in between; ``forward``
    and ``backward`` are the oldest frames x[t,v] and δ[t,v] carry (tags ``input`` and
    ``output``; −1 outside the stream)."""
    em, F, T = engine.model, len(u), table["ticks"]
    fwd, bwd = distances(em)
    D, a = em.depth, engine.accumulate
    verts = [v for v in em.vertices[1:] if v.param_names]
    cols = np.array([em.vertex(v.name).index - 1 for v in model.vertices[1:]])
    col_of = {em.vertex(v.name).index: j for j, v in enumerate(model.vertices[1:])}
    rec = Records(T, len(cols), eval_ticks)
    delay, stale = np.full((2, T, len(cols)), np.nan)
    ops = np.full((2, T, len(cols)), -1, dtype=np.int64)      # the frames x and δ carry
    snaps = {-1: engine.parameters()}
    oracles = {}
    last_real = {v.index: F - 1 + D + bwd[v.index] for v in verts}
    clean = engine.parameters()
    zero_u, zero_y = np.zeros_like(u[0]), np.zeros_like(y[0])
    due = np.cumsum([(t + 1) % a == 0 for t in range(T)])     # updates landed by tick t
    for t in range(T):
        engine.step(u[t] if t < F else zero_u, y[t] if t < F else zero_y)
        snaps[t] = engine.parameters()
        snaps.pop(t - 2 * D - 2, None)
        if 0 <= t - D < F:
            out = engine.activity(em.output)
            rec.loss[t] = loss_and_grad(np, loss, out, y[t - D])[0] / u.shape[1]
        tags = engine.tags()
        sup = tags["output"]
        for row, key in ((ops[0], "input"), (ops[1], "output")):
            frames = tags[key][cols + 1]
            row[t] = np.where((frames >= 0) & (frames < F), frames, -1)
        grads = engine.gradients()
        for v in verts:
            s, i, j = int(sup[v.index]), v.index, col_of.get(v.index)
            if j is None or not 0 <= s < F:
                continue
            if s not in oracles:
                params = {f"{w.name}.{k}": snaps[s + fwd[w.index] - 1][f"{w.name}.{k}"]
                          for w in verts for k in w.param_names}
                oracles[s] = backprop(em, u[s], y[s], loss, params)
            r = s + fwd[i]
            delay[t, j] = t - r
            stale[t, j] = due[t - 1] - (due[r - 1] if r else 0)
            keys = [f"{v.name}.{k}" for k in v.param_names]
            rec.cosine[t, j], rec.rel_error[t, j] = compare(
                {k: grads[k] for k in keys}, {k: oracles[s][k] for k in keys})
        oracles.pop(t - 2 * D - 1, None)
        clean.update({f"{v.name}.{k}": snaps[t][f"{v.name}.{k}"] for v in verts
                      for k in v.param_names if t <= last_real[v.index]})
        if t in rec.eval_set:
            rec.evaluate(t, em, clean, eval_inputs, eval_labels)
        if progress is not None:
            progress(1)
    sub = {k: table[k][:, cols] for k in ("versions", "version_bytes")}
    sub.update(forward=ops[0], backward=ops[1], utilisation=(ops >= 0).any(axis=0).mean(axis=0))
    return rec.out({**sub, "delay": delay, "stale": stale}, clean)


def run_schedule(name, model, u, y, *, learning_rate, loss, micro=None, rule=None,
                 eval_inputs=None, eval_labels=None, eval_ticks=(), progress=None):
    """One float64 run of schedule ``name`` on frames ``u`` (F, B, *input_shape) and
    targets ``y`` (F, B, *output_shape): the timetable's arrays plus, per tick and stage,
    ``cosine`` and ``rel_error`` of each update against true backprop of the frames it
    claims on the weights their forward used (model/reference.py), per tick ``loss`` (mean
    over the batch of the frame at the output), and ``accuracy`` at ``eval_ticks``
    (argmax on ``eval_inputs`` against ``eval_labels``; NaN past the run) and the final
    ``parameters`` (keyed like ``model.parameters()``). ``rule``: the
    engine's rule options (diffusion only); ``progress(n)`` after n ticks."""
    call = "run_schedule"
    check_name(call, name)
    check_type(call, "model", model, Model, "a simulator.Model")
    args = check_stream(call, model, u, y, learning_rate, loss, eval_inputs, eval_labels,
                        eval_ticks)
    if rule is not None and name != "diffusion":
        raise SimulatorError(f"{call}: rule: engine options apply to diffusion only, "
                             f"not {name!r}")
    if name == "diffusion":
        engine = make_engine(call, model, u.shape[1], args[2], loss, rule or {})
        table = timetable(name, engine.model, len(u), micro)
        return run_engine(engine, table, model, *args, progress=progress)
    table = timetable(name, model, len(u), micro)
    return execute(table, POLICY[name], model, *args, progress=progress)
