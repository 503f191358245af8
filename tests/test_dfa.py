"""Direct Feedback Alignment (``feedback="dfa"``, Nøkland 2016) in the tick engine.

Oracle: Nøkland's equations written here in plain float64 numpy, calling no engine
code. For frame s (input u_s, target y_s, the frozen weights), forward by hand, then

    e = δ_out = σ'_out(a_out) ⊙ (x_out − y_s)            (mse)
    δ_v = σ'_v(a_v) ⊙ reshape_v(B_v e)                   every v but input and output
    g_W(v) = δ_v paired with v's parents' x of frame s  (dense δᵀx, conv its correlation)

with B_v ~ U(−a, a), a = √(6/(size(v) + size(out))), drawn in vertex order from
np.random.default_rng(feedback_seed) (the documented rule, drawn here again: the test
also pins that B_v is reproducible from the seed). The δ of parameter-free vertices
(pool, flatten, identity, add) is such a projection too.

The claim (frozen weights, derivative = pairing = frame, d_y = D): from tick D + 1 on,
g[t, v] of the engine is the DFA gradient of frame s = t − D − bwd(v), where bwd(v) = 1
for every vertex but the output (its δ reads the output's δ of the tick before) and 0
for the output (whose δ is exact backprop's): t − D − 1 for hidden vertices, t − D for
the output; δ[t, v] likewise. Checked to 1e-12 on a dense chain and on a levelled graph
with a conv, a pool, a flatten, an inserted identity and a residual add, on numpy (fast
executor) and array-api-strict (generic step); DFA's hidden gradients differ from
backprop's (so the test can fail), and the recorder's mismatch equals the hand
cosine between DFA's and backprop's gradient of the frame its pairing tag names.
"""
import numpy as np
import pytest

from simulator.backend import to_host
from simulator.engine.tick import GraphEngine, sync_set
from simulator.model import Model
from simulator.probes import Recorder
from simulator.probes.plan import RecordPlan

SEED, BATCH, TICKS = 7, 2, 16
SIGMA = {"tanh": (np.tanh, lambda a: 1.0 - np.tanh(a) ** 2),
         "logistic": (lambda a: 1.0 / (1.0 + np.exp(-a)),
                      lambda a: np.exp(-a) / (1.0 + np.exp(-a)) ** 2),
         "linear": (lambda a: a, np.ones_like)}
GRAPH = [
    {"name": "c1", "kind": "conv2d", "channels": 2, "kernel": 3, "padding": 1,
     "activation": "tanh", "bias_scale": 0.3},
    {"name": "p1", "kind": "pool", "size": 2, "mode": "avg"},
    {"name": "f", "kind": "flatten"},
    {"name": "h1", "kind": "dense", "units": 6, "activation": "tanh", "bias_scale": 0.3},
    {"name": "h2", "kind": "dense", "units": 6, "activation": "logistic", "bias_scale": 0.3},
    {"name": "r", "kind": "add", "from": ["h2", "h1"], "activation": "tanh"},
    {"name": "out", "kind": "dense", "units": 3, "activation": "linear", "bias_scale": 0.3},
]


def chain():
    return Model.chain([4, 7, 5, 3], ["tanh", "logistic", "linear"], seed=2, bias_scale=0.3)


def graph():
    return Model.from_layers(GRAPH, (1, 6, 6), seed=2).level()


def hand_draws(model, seed):
    """{vertex name: B_v} by the documented rule, in vertex order."""
    rng, n_out, out = np.random.default_rng(seed), int(np.prod(model.output_shape)), {}
    for v in model.vertices[1:-1]:
        size = int(np.prod(v.shape))
        a = np.sqrt(6.0 / (size + n_out))
        out[v.name] = rng.uniform(-a, a, (size, n_out))
    return out


def windows(x, k):
    """(B, C, H, W, k, k) sliding windows of the 1-padded x (3x3 'same' conv)."""
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    return np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(2, 3))


def hand_forward(model, params, u):
    """{name: (pre, x)} of every vertex by hand; kinds of GRAPH and chains."""
    vals = {"input": (u, u)}
    for v in model.vertices[1:]:
        xs = [vals[model.vertices[p].name][1] for p in v.parents]
        kind, act = v.kind, v.cfg.get("activation")
        if kind == "dense":
            pre = xs[0] @ params[f"{v.name}.W"].T + params[f"{v.name}.b"]
        elif kind == "conv2d":
            pre = (np.einsum("bchwpq,ocpq->bohw", windows(xs[0], 3), params[f"{v.name}.W"])
                   + params[f"{v.name}.b"][None, :, None, None])
        elif kind == "pool":
            b, c, h, w = xs[0].shape
            pre = xs[0].reshape(b, c, h // 2, 2, w // 2, 2).mean(axis=(3, 5))
        elif kind == "flatten":
            pre = xs[0].reshape(len(xs[0]), -1)
        elif kind == "add":
            pre = sum(xs)
        else:
            assert kind == "identity", kind
            pre = xs[0]
        vals[v.name] = (pre, SIGMA[act][0](pre) if act else pre)
    return vals


def hand_gradients(model, params, B, u, y, direct=True):
    """({name: δ_v}, {"<v>.W": g_W}) of one frame: DFA (``direct``) or backprop on a chain."""
    vals = hand_forward(model, params, u)
    verts = model.vertices
    sig = {v.name: (SIGMA[v.cfg["activation"]][1](vals[v.name][0]) if "activation" in v.cfg
                    else 1.0) for v in verts[1:]}
    out = verts[-1].name
    e = sig[out] * (vals[out][1] - y)
    deltas = {out: e}
    for v in reversed(verts[1:-1]):
        if direct:
            deltas[v.name] = sig[v.name] * (e.reshape(len(e), -1) @ B[v.name].T).reshape(
                vals[v.name][0].shape)
        else:        # backprop on a dense chain: the child's Wᵀ
            child = verts[v.index + 1].name
            deltas[v.name] = sig[v.name] * (deltas[child] @ params[f"{child}.W"])
    grads = {}
    for v in verts[1:]:
        if "W" not in v.param_names:
            continue
        x, d = vals[verts[v.parents[0]].name][1], deltas[v.name]
        grads[f"{v.name}.W"] = (d.T @ x if v.kind == "dense"
                                else np.einsum("bohw,bchwpq->ocpq", d, windows(x, 3)))
    return deltas, grads


def frames(model, ticks, seed=3):
    g = np.random.default_rng(seed)
    return (g.normal(size=(ticks, BATCH) + tuple(model.input_shape)),
            g.normal(0.0, 0.5, (ticks, BATCH) + tuple(model.output_shape)))


def assert_rel(got, want, what, tol=1e-12):
    err = np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-300)
    assert err <= tol, f"{what}: relative difference {err:.3g}"


@pytest.mark.parametrize("device", ["cpu", "strict"])
@pytest.mark.parametrize("make", [chain, graph], ids=["chain", "graph"])
def test_engine_g_is_the_dfa_gradient_of_frame_t_minus_D_minus_bwd(make, device):
    model = make()
    D = model.depth
    engine = GraphEngine(model, feedback="dfa", derivative="frame", pairing="frame",
                         supervision_delay="causal", batch=BATCH, feedback_seed=SEED,
                         device=device, levelled=False)
    assert engine.supervision_delay == D
    B = hand_draws(model, SEED)
    got_B = engine.feedback_weights()
    assert sorted(got_B) == sorted(f"{k}.B" for k in B)
    for k, b in B.items():                       # reproducible from the seed
        np.testing.assert_array_equal(np.asarray(to_host(got_B[f"{k}.B"])), b)
    params = model.parameters()
    U, Y = frames(model, TICKS)
    be = engine.backend
    hand = [hand_gradients(model, params, B, U[s], Y[s]) for s in range(TICKS)]
    checked = 0
    for t in range(TICKS):
        engine.step(be.asarray(U[t]), be.asarray(Y[t]))
        if t < D + 1:
            continue
        g = {k: np.asarray(to_host(a)) for k, a in engine.gradients().items()}
        for v in model.vertices[1:]:
            s = t - D - (0 if v.index == model.output else 1)
            assert_rel(np.asarray(to_host(engine.delta(v.index))), hand[s][0][v.name],
                       f"tick {t} δ {v.name} (frame {s})")
            if f"{v.name}.W" in g:
                assert_rel(g[f"{v.name}.W"], hand[s][1][f"{v.name}.W"],
                           f"tick {t} g {v.name} (frame {s})")
                checked += 1
    assert checked >= (TICKS - D - 1) * 3


def test_dfa_is_not_backprop_and_the_seed_sets_b():
    """DFA's hidden gradients are far from backprop's of the same frame (the
    oracle above can fail), the output's equal; another seed draws other B_v."""
    model = chain()
    params, B = model.parameters(), hand_draws(model, SEED)
    U, Y = frames(model, 1)
    _, dfa = hand_gradients(model, params, B, U[0], Y[0])
    _, bp = hand_gradients(model, params, B, U[0], Y[0], direct=False)
    for k in ("1.W", "2.W"):
        assert np.linalg.norm(dfa[k] - bp[k]) > 0.3 * np.linalg.norm(bp[k]), k
    assert_rel(dfa["3.W"], bp["3.W"], "output")
    a = GraphEngine(model, feedback="dfa", feedback_seed=1).feedback_weights()
    b = GraphEngine(model, feedback="dfa", feedback_seed=1).feedback_weights()
    c = GraphEngine(model, feedback="dfa", feedback_seed=2).feedback_weights()
    assert all(np.array_equal(a[k], b[k]) and not np.allclose(a[k], c[k]) for k in a)


def test_recorded_mismatch_is_the_cosine_of_dfa_to_backprop_of_the_tagged_frame():
    model = chain()
    D = model.depth
    engine = GraphEngine(model, feedback="dfa", derivative="frame", pairing="frame",
                         supervision_delay=D, batch=BATCH, feedback_seed=SEED)
    U, Y = frames(model, TICKS)

    class Frames:
        at = 0

        def take(self, n):
            a, self.at = self.at, self.at + n
            return U[a:self.at], Y[a:self.at], np.arange(a, self.at)

    rec = Recorder(engine, RecordPlan(TICKS, D, 7, BATCH, 8, chunk=5))
    engine.run(Frames(), TICKS, rec)
    trace = rec.trace()
    params, B = model.parameters(), hand_draws(model, SEED)
    for t in range(D + 1, TICKS):
        for l in range(1, D + 1):
            s = t - D - (l < D)
            assert trace["tag_pair"][t, l] == trace["tag_supervision"][t, l] == s
            g = hand_gradients(model, params, B, U[s], Y[s])[1][f"{l}.W"]
            G = hand_gradients(model, params, B, U[s], Y[s], direct=False)[1][f"{l}.W"]
            cos = np.sum(g * G) / np.linalg.norm(g) / np.linalg.norm(G)
            assert abs(trace["mismatch_cos"][t, l - 1] - cos) < 1e-10, (t, l)
    assert np.all(trace["mismatch_cos"][D + 1:, D - 1] > 1 - 1e-10)   # the output is exact


def test_dfa_sync_set_reads_one_delta_path():
    """bwd(v) = 1 under dfa: a hidden vertex is synchronized (d_y = 0) when its
    inputs are one tick from the input (fwd(v) = 2), not at Eq. 6's l_s = 3 of L = 5."""
    model = Model.chain([3, 4, 4, 4, 4, 2], "tanh")
    assert sync_set(model) == ["3"]
    assert sync_set(model, "dfa") == ["2"]


def test_scenes_and_train_rules_take_dfa():
    from simulator import scene
    from simulator.errors import SimulatorError
    from simulator.experiments.training import RULES
    assert scene.validate({"kind": "diffusion", "rule": {"feedback": "dfa",
                                                         "feedback_scale": 0.5}},
                          "t")["rule"]["feedback"] == "dfa"
    with pytest.raises(SimulatorError, match="did you mean 'dfa'"):
        scene.validate({"kind": "diffusion", "rule": {"feedback": "dfaa"}}, "t")
    assert "dfa" in scene.TRAIN_RULES and RULES["dfa"]["feedback"] == "dfa"


def test_the_pairing_warning_and_a_chain_trace_follow_the_dfa_delta_path():
    """Under dfa a hidden layer's δ is one tick from the output's, so the frames an
    update pairs span less than under transpose, and a chain's sync set is not Eq. 6's
    ls: the warning's numbers and the trace's vertex_sync come from the dfa paths."""
    import sys
    import os
    sys.path.insert(0, os.path.dirname(__file__))
    from test_defaults import scene
    from simulator.analysis.pairing import frame_spreads
    from simulator.build import pairing_warnings
    from simulator.runner import Prepared
    from simulator.scene import spec_of
    lines = {}
    for fb in ("transpose", "dfa"):
        spec = spec_of(scene("fig3_fast", "rule.learning_rate=0.01", "stream.hold=6",
                             "rule.supervision_delay=auto", f"rule.feedback={fb}"))
        model = Model.chain(*spec.network.shape)
        spreads = frame_spreads(model, loss="mse", supervision_delay=9, feedback=fb,
                                levelled=False)
        [lines[fb]] = pairing_warnings(spec, spec.rule, model)
        assert f"span {spreads['1']})" in lines[fb]
    assert "span 17)" in lines["transpose"] and "span 10)" in lines["dfa"]
    trace = Prepared("dfa", scene("fig3_fast", "run.ticks=12", "rule.feedback=dfa")).simulate()
    model = Model.chain(*spec.network.shape)
    assert [str(n) for n, s in zip(trace["vertex_names"], trace["vertex_sync"]) if s] == \
        sync_set(model, "dfa") != sync_set(model)
