"""The schedule zoo's facts (issue 24, docs/explanation/schedules.md), exact in float64,
each with a sabotage the check catches: the LayerPipe2 delay law (Unnikrishnan & Parhi,
arXiv 2512.08160, 2025: layer l's gradient delay is 2·S(l), S(l) the stages after it) on
chains and levelled graphs, and 2·S(v) + slack(v) on unlevelled ones; 1F1B with weight
stashing is backprop of the stashed frame; GPipe is mini-batch backprop; diffusion's delays
are fact B′; locked backprop is the locking scene's timetable; 2BW holds two versions;
Sideways pairs the newest x."""
import numpy as np
import pytest

from graph_models import ATTENTION, CONV, RESIDUAL
from simulator.analysis import locking
from simulator.errors import SimulatorError
from simulator.analysis import timetables as tt
from simulator.experiments import schedules as zoo
from simulator.model.graph import Model
from simulator.model.reference import backprop

FRAME_RULE = {"derivative": "frame", "pairing": "frame", "supervision_delay": "causal"}
# a skip whose short branch s has slack: s is 1 from the input and 2 from the output, D = 5
SKIP = [
    {"name": "a", "kind": "dense", "units": 4, "activation": "tanh", "bias_scale": 0.3},
    {"name": "b", "kind": "dense", "units": 4, "activation": "tanh"},
    {"name": "c", "kind": "dense", "units": 4, "activation": "linear"},
    {"name": "s", "kind": "dense", "units": 4, "activation": "tanh", "from": "input"},
    {"name": "r", "kind": "add", "from": ["c", "s"], "activation": "tanh"},
    {"name": "o", "kind": "dense", "units": 2, "activation": "linear"},
]


def stream(model, frames=24, batch=3, seed=0, still=False):
    g = np.random.default_rng(seed)
    u = g.normal(size=(frames, batch) + model.input_shape)
    if still:
        u[:] = u[0]
    return u, g.normal(size=(frames, batch) + model.output_shape)


def law_holds(delay, expected, weighted):
    """Every update of every weighted stage has exactly its expected delay."""
    return all(np.all(delay[~np.isnan(delay[:, v]), v] == expected[v])
               for v in np.flatnonzero(weighted)) and not np.isnan(delay[:, weighted]).all()


def late_backward(frame_ticks):
    """Sabotage of ``timetables._frame_ticks``: every backward op one tick late."""
    def late(*args):
        f, b, group, sizes = frame_ticks(*args)
        return f, b + 1, group, sizes
    return late


def stages_after(model):
    return tt.graph_clock(model)[1]


# ------------------------------------------------------------ the delay law (LayerPipe2)
@pytest.mark.parametrize("name", ["1f1b", "partime", "sideways"])
@pytest.mark.parametrize("depth", [1, 4, 8])
def test_layerpipe2_delay_law_on_chains(name, depth):
    """LayerPipe2 (Unnikrishnan & Parhi, arXiv 2512.08160, 2025): the delay of layer l is
    2·S(l), S(l) = L − l; with an update every tick the staleness (updates in between) is
    the same number."""
    chain = Model.chain_skeleton([3] * (depth + 1), ["tanh"] * depth)
    tab = tt.timetable(name, chain, 5 * depth + 3)
    S = stages_after(chain)
    assert np.array_equal(S, depth - np.arange(1, depth + 1))
    assert law_holds(tab["delay"], 2 * S, tab["weighted"])
    steady = tab["update_tick"][2 * depth:] if depth > 1 else tab["update_tick"]
    assert np.array_equal(tab["stale"][steady, np.arange(depth)],
                          np.broadcast_to(2 * S, steady.shape))


def test_layerpipe2_law_caught_when_the_backward_is_late(monkeypatch):
    """Sabotage: a backward op one tick late breaks the law the test above checks."""
    chain = Model.chain_skeleton([3] * 5, ["tanh"] * 4)
    monkeypatch.setattr(tt, "_frame_ticks", late_backward(tt._frame_ticks))
    tab = tt.timetable("1f1b", chain, 20)
    assert not law_holds(tab["delay"], 2 * stages_after(chain), tab["weighted"])


def test_diffusion_delay_law_from_the_engine():
    """The engine's own tags give diffusion's delays: 2·S(l) on a chain (fact B′)."""
    chain = Model.chain([3, 4, 4, 4, 2], seed=1)
    u, y = stream(chain, 20)
    run = zoo.run_schedule("diffusion", chain, u, y, learning_rate=0.01, loss="mse",
                           rule=FRAME_RULE)
    assert law_holds(run["delay"], 2 * stages_after(chain), np.ones(4, bool))


@pytest.mark.parametrize("name", ["1f1b", "partime", "diffusion"])
def test_delay_law_on_dags(name):
    """Generalised: levelled, delay(v) = 2·S(v) with S(v) = bwd(v) (longest path v → out);
    unlevelled, the delay is D + bwd(v) − fwd(v) = 2·S(v) + slack(v), slack = D − fwd(v) −
    bwd(v) (> 0 off the longest paths, where the 2·S law fails): the pipelined schedules
    keep each frame's own stash and stay exact at η = 0, the engine (not levelled) claims
    the oldest frame of a mix."""
    raw = Model.from_layers(SKIP, (3,), seed=3)
    levelled = raw.level()
    for model in (levelled, Model.from_layers(RESIDUAL, (4,), seed=2).level()):
        u, y = stream(model, 20)
        run = zoo.run_schedule(name, model, u, y, learning_rate=0.01, loss="mse",
                               rule=FRAME_RULE if name == "diffusion" else None)
        fwd, bwd, D, weighted = tt.graph_clock(model)
        assert law_holds(run["delay"], 2 * bwd, weighted)
    fwd, bwd, D, weighted = tt.graph_clock(raw)
    slack = D - fwd - bwd
    assert slack[raw.names.index("s") - 1] == 2
    u, y = stream(raw, 20)
    run = zoo.run_schedule(name, raw, u, y, learning_rate=0.0, loss="mse",
                           rule={**FRAME_RULE, "levelled": False} if name == "diffusion" else None)
    assert law_holds(run["delay"], 2 * bwd + slack, weighted)
    assert not law_holds(run["delay"], 2 * bwd, weighted)
    # the stashes keep every frame apart; the engine's merges mix frames (fact B′)
    assert (np.nanmax(run["rel_error"]) > 0.1) == (name == "diffusion")


# ---------------------------------------------------------- 1F1B: stashing is exact
def hand_1f1b(params, u, y, eta):
    """A tanh chain (mse) trained by 1F1B with stashing, by hand: frame s reads (W_l, b_l)
    at tick s + l, its update of them lands at tick s + 2L − l."""
    L, F = len(params) // 2, len(u)
    history = [[(params[f"{l}.W"], params[f"{l}.b"])] for l in range(1, L + 1)]
    reads = {}
    for t in range(F + 2 * L):
        for l in range(1, L + 1):                      # forward reads at tick s + l
            if 0 <= t - l < F:
                reads[(t - l, l)] = len(history[l - 1]) - 1
        for l in range(L, 0, -1):                      # updates land at s + 2L − l
            s = t - 2 * L + l
            if 0 <= s < F:
                w = [history[j][reads[(s, j + 1)]] for j in range(L)]
                xs = [u[s]]
                for wj, bj in w:
                    xs.append(np.tanh(xs[-1] @ wj.T + bj))
                d = (xs[-1] - y[s]) * (1 - xs[-1] ** 2)
                for j in range(L - 1, l - 1, -1):
                    d = (d @ w[j][0]) * (1 - xs[j] ** 2)
                wl, bl = history[l - 1][-1]
                history[l - 1].append((wl - eta * d.T @ xs[l - 1], bl - eta * d.sum(axis=0)))
    return {f"{l}.{k}": a for l, h in enumerate(history, 1) for k, a in zip("Wb", h[-1])}


def test_1f1b_is_backprop_of_the_stashed_frame_on_a_chain():
    chain = Model.chain([3, 5, 4, 2], seed=4)
    u, y = stream(chain, 30)
    run = zoo.run_schedule("1f1b", chain, u, y, learning_rate=0.05, loss="mse")
    hand = hand_1f1b(chain.parameters(), u, y, 0.05)
    for k, a in hand.items():
        np.testing.assert_allclose(run["parameters"][k], a, rtol=0, atol=1e-12)
    cos = run["cosine"][~np.isnan(run["cosine"])]
    assert len(cos) == 3 * 30 and np.all(np.abs(cos - 1) <= 1e-12)
    assert np.nanmax(run["rel_error"]) <= 1e-12


@pytest.mark.parametrize("layers,shape", [(RESIDUAL, (4,)), (CONV, (2, 12, 12)),
                                          (ATTENTION, (3, 5))])
def test_1f1b_is_backprop_of_the_stashed_frame_on_graphs(layers, shape):
    """Residual merges, conv and pool, an unlevelled attention block: exact per frame."""
    model = Model.from_layers(layers, shape, seed=2)
    u, y = stream(model, 16)
    run = zoo.run_schedule("1f1b", model, u, y, learning_rate=0.02, loss="mse")
    assert np.nanmin(run["cosine"]) >= 1 - 1e-12
    assert np.nanmax(run["rel_error"]) <= 1e-12
    weighted = sum(bool(v.param_names) for v in model.vertices)
    assert (~np.isnan(run["cosine"])).sum() == weighted * 16


def test_a_broken_stash_is_caught(monkeypatch):
    """Sabotage: the backward on the current weights (no stash) is no frame's backprop."""
    chain = Model.chain([3, 5, 4, 2], seed=4)
    u, y = stream(chain, 30)
    monkeypatch.setitem(tt.POLICY, "1f1b", tt.Policy("current", "frame", "once"))
    run = zoo.run_schedule("1f1b", chain, u, y, learning_rate=0.05, loss="mse")
    assert np.nanmax(run["rel_error"]) > 1e-6
    hand = hand_1f1b(chain.parameters(), u, y, 0.05)
    assert np.abs(run["parameters"]["1.W"] - hand["1.W"]).max() > 1e-9


# ------------------------------------------------------- GPipe: mini-batch backprop
@pytest.mark.parametrize("micro", [1, 3, 4])
def test_gpipe_is_minibatch_backprop(micro):
    """Frozen, each flush's update is the sum of its M frames' backprop (cosine 1); learning,
    GPipe is plain mini-batch SGD: W ← W − η Σ_{s in batch} ∇ℓ_s(W), by the oracle."""
    model = Model.from_layers(RESIDUAL, (4,), seed=2)
    u, y = stream(model, 14)
    frozen = zoo.run_schedule("gpipe", model, u, y, learning_rate=0.0, loss="mse", micro=micro)
    assert np.nanmin(frozen["cosine"]) >= 1 - 1e-12 and np.nanmax(frozen["rel_error"]) <= 1e-12
    assert (~np.isnan(frozen["cosine"])).sum() == 6 * -(-14 // micro)
    run = zoo.run_schedule("gpipe", model, u, y, learning_rate=0.03, loss="mse", micro=micro)
    params = model.parameters()
    for start in range(0, 14, micro):
        step = [backprop(model, u[s], y[s], "mse", params) for s in range(start,
                                                                       min(start + micro, 14))]
        params = {k: a - 0.03 * sum(g[k] for g in step) for k, a in params.items()}
    for k, a in params.items():
        np.testing.assert_allclose(run["parameters"][k], a, rtol=0, atol=1e-12)


def test_gpipe_landing_mid_batch_is_caught(monkeypatch):
    model = Model.from_layers(RESIDUAL, (4,), seed=2)
    u, y = stream(model, 8)
    real = tt._frame_ticks

    def per_frame(*args):              # every frame its own update, in gpipe's timing
        f, b, group, sizes = real(*args)
        return f, b, np.arange(len(group)), np.ones(len(group), np.int64)
    monkeypatch.setattr(tt, "_frame_ticks", per_frame)
    run = zoo.run_schedule("gpipe", model, u, y, learning_rate=0.03, loss="mse", micro=4)
    params = model.parameters()
    for start in (0, 4):
        step = [backprop(model, u[s], y[s], "mse", params) for s in range(start, start + 4)]
        params = {k: a - 0.03 * sum(g[k] for g in step) for k, a in params.items()}
    assert max(np.abs(run["parameters"][k] - a).max() for k, a in params.items()) > 1e-9


# ------------------------------------------------ diffusion = fact B′; locked = locking
def test_diffusion_is_fact_b_prime():
    """Levelled, frame options, d_y = D, frozen: each update is backprop of frame
    t − 2D + level(v) (the delay 2D − 2·level(v)), cosine 1; with `local` options not."""
    model = Model.from_layers(RESIDUAL, (4,), seed=2).level()
    u, y = stream(model, 20)
    run = zoo.run_schedule("diffusion", model, u, y, learning_rate=0.0, loss="mse",
                           rule=FRAME_RULE)
    fwd, bwd, D, weighted = tt.graph_clock(model)
    assert np.array_equal(bwd, D - fwd)
    assert law_holds(run["delay"], 2 * D - 2 * fwd, weighted)
    assert np.nanmin(run["cosine"]) >= 1 - 1e-12 and np.nanmax(run["rel_error"]) <= 1e-12
    # the engine's tags (who holds which frame) are the pipelined timetable (fact B)
    tab = tt.timetable("1f1b", model, 20)
    keep = [v.index - 1 for v in model.vertices[1:]]
    for k in ("forward", "backward"):
        assert np.array_equal(run[k], tab[k][:, keep])
    np.testing.assert_allclose(run["utilisation"], tab["utilisation"], rtol=0, atol=1e-15)
    local = zoo.run_schedule("diffusion", model, u, y, learning_rate=0.0, loss="mse",
                             rule={"supervision_delay": "causal"})
    assert np.nanmax(local["rel_error"]) > 1e-3


def locked_by_hand(L, F):
    """Locked backprop on an L-layer chain, written from its definition: frame s enters at
    tick 2L·s, reaches layer l forward at 2L·s + l, the output's backward op falls on the
    tick after its forward op, and δ reaches layer l at 2L·s + L + 1 + (L − l)."""
    fwd, bwd = np.full((2, 2 * L * F + 1, L), -1)
    for s in range(F):
        for l in range(1, L + 1):
            fwd[2 * L * s + l, l - 1] = s
            bwd[2 * L * s + 2 * L + 1 - l, l - 1] = s
    return fwd, bwd


@pytest.mark.parametrize("depth,frames", [(1, 3), (3, 4), (5, 2)])
def test_locked_backprop_is_its_definition_and_the_locking_scene_reads_it(depth, frames):
    chain = Model.chain_skeleton([2] * (depth + 1), ["tanh"] * depth)
    tab = tt.timetable("backprop", chain, frames)
    fwd, bwd = locked_by_hand(depth, frames)
    assert np.array_equal(tab["forward"], fwd) and np.array_equal(tab["backward"], bwd)
    assert np.nanmax(tab["stale"]) == 0
    # the locking scene counts steps from tick 1 (tick 0 is idle: frame 0 is at the input)
    ref = locking.schedules(depth, frames)["backprop"]
    assert np.array_equal(fwd[1:].T, ref["forward"]) and np.array_equal(bwd[1:].T,
                                                                         ref["backward"])


def test_a_locked_schedule_off_by_one_is_caught(monkeypatch):
    """Sabotage: the backward ops one tick later no longer match the definition."""
    monkeypatch.setattr(tt, "_frame_ticks", late_backward(tt._frame_ticks))
    tab = tt.timetable("backprop", Model.chain_skeleton([2] * 4, ["tanh"] * 3), 3)
    fwd, bwd = locked_by_hand(3, 3)
    assert not np.array_equal(tab["backward"][:len(bwd)], bwd)


# ------------------------------------------------------------- 2BW and Sideways
def test_2bw_holds_two_versions():
    for model in (Model.chain_skeleton([2] * 7, ["tanh"] * 6), Model.from_layers(SKIP, (3,))):
        least = tt.min_micro_2bw(model)
        for micro in (least, least + 3):
            tab = tt.timetable("2bw", model, 6 * micro, micro)
            assert tab["versions"].max() == 2
            assert np.nanmax(tab["stale"]) == 1
        with pytest.raises(SimulatorError, match=f"micro >= {least}"):
            tt.timetable("2bw", model, 10, least - 1)


def test_2bw_with_too_short_a_version_life_is_caught(monkeypatch):
    """Sabotage: below the least micro the stash would need a third version."""
    chain = Model.chain_skeleton([2] * 7, ["tanh"] * 6)
    least = tt.min_micro_2bw(chain)
    monkeypatch.setattr(tt, "_micro", lambda call, name, model, micro: micro)
    assert tt.timetable("2bw", chain, 6 * least, least - 1)["versions"].max() > 2


def test_sideways_pairs_the_newest_x():
    """On one linear layer (D = 1) frame s's backward op is at tick s + 1, when the input
    holds frame s + 1: Sideways' step is η·δ_sᵀ u[s+1] (by hand). On a still stream the
    newest x is the frame's own, so Sideways is backprop (cosine 1) there and not on a
    moving one, where pairing the frame's x (PARTIME's stash) stays backprop at η = 0."""
    one = Model.chain([3, 2], activations="linear", seed=5, bias_scale=0.5)
    u, y = stream(one, 12)
    run = zoo.run_schedule("sideways", one, u, y, learning_rate=0.05, loss="mse")
    w, b = one.parameters()["1.W"], one.parameters()["1.b"]
    for s in range(12):
        d = u[s] @ w.T + b - y[s]
        w, b = w - 0.05 * d.T @ u[min(s + 1, 11)], b - 0.05 * d.sum(axis=0)
    np.testing.assert_allclose(run["parameters"]["1.W"], w, rtol=0, atol=1e-12)
    np.testing.assert_allclose(run["parameters"]["1.b"], b, rtol=0, atol=1e-12)
    with pytest.MonkeyPatch.context() as mp:      # sabotage: pair the frame's own x
        mp.setitem(tt.POLICY, "sideways", tt.Policy("current", "frame", "once"))
        own = zoo.run_schedule("sideways", one, u, y, learning_rate=0.05, loss="mse")
    assert np.abs(own["parameters"]["1.W"] - w).max() > 1e-6
    chain = Model.chain([3, 5, 4, 2], seed=4)
    for still, exact in ((True, True), (False, False)):
        u, y = stream(chain, 20, still=still)
        run = zoo.run_schedule("sideways", chain, u, y, learning_rate=0.0, loss="mse")
        assert (np.nanmax(run["rel_error"]) <= 1e-12) == exact
        stash = zoo.run_schedule("partime", chain, u, y, learning_rate=0.0, loss="mse")
        assert np.nanmax(stash["rel_error"]) <= 1e-12


def test_loss_and_accuracy_records():
    """The loss sits on the ticks frames reach the output; accuracy at an eval tick is the
    argmax of a hand forward pass with the weights after that tick (NaN past the run)."""
    chain = Model.chain([3, 4, 3], seed=6)
    u, y = stream(chain, 10)
    x_eval = np.random.default_rng(7).normal(size=(50, 3))
    labels = np.arange(50) % 3
    run = zoo.run_schedule("1f1b", chain, u, y, learning_rate=0.1, loss="mse",
                           eval_inputs=x_eval, eval_labels=labels, eval_ticks=(13, 99))
    assert np.array_equal(np.flatnonzero(~np.isnan(run["loss"])), np.arange(10) + 2)
    out = np.tanh(u[0] @ chain.parameters()["1.W"].T) @ chain.parameters()["2.W"].T
    assert np.isclose(run["loss"][2], 0.5 * np.sum((np.tanh(out) - y[0]) ** 2) / 3)
    p = run["parameters"]                              # T = 13: tick 12 is the last
    hand = np.tanh(np.tanh(x_eval @ p["1.W"].T + p["1.b"]) @ p["2.W"].T + p["2.b"])
    assert np.isnan(run["accuracy"]).tolist() == [True, True]
    run = zoo.run_schedule("1f1b", chain, u, y, learning_rate=0.1, loss="mse",
                           eval_inputs=x_eval, eval_labels=labels, eval_ticks=(12,))
    assert run["accuracy"][0] == np.mean(hand.argmax(axis=1) == labels)


# layer 1's steady delay, its staleness and the most versions of any layer on a chain of
# depth D, micro None (M = 2D − 2): the table of docs/explanation/schedules.md
LAYER_ONE = {"backprop": (lambda D: 2 * D - 1, 0, 1), "gpipe": (lambda D: 6 * D - 8, 0, 1),
             "1f1b": (lambda D: 2 * D - 2, None, None), "2bw": (lambda D: 4 * D - 5, 1, 2),
             "partime": (lambda D: 2 * D - 2, None, 1), "sideways": (lambda D: 2 * D - 2, None, 1),
             "diffusion": (lambda D: 2 * D - 2, None, 1)}


@pytest.mark.parametrize("name", tt.SCHEDULES)
def test_the_docs_depth_table(name):
    delay, stale, versions = LAYER_ONE[name]
    sweep = tt.depth_sweep(name, [4, 8, 16], 3)
    assert sweep["delay"][:, 0].tolist() == [delay(D) for D in (4, 8, 16)]
    want = [2 * D - 1 if versions is None else versions for D in (4, 8, 16)]
    assert np.nanmax(sweep["versions"], axis=1).tolist() == want
    chain = Model.chain_skeleton([2] * 9, ["tanh"] * 8)
    tab = tt.timetable(name, chain, 60)
    steady = tab["update_tick"][len(tab["update_tick"]) // 2, 0]
    assert tab["stale"][steady, 0] == (14 if stale is None else stale)


def test_depth_sweep_and_errors():
    sweep = tt.depth_sweep("1f1b", [2, 4], 3)
    np.testing.assert_array_equal(sweep["delay"], [[2, 0, np.nan, np.nan], [6, 4, 2, 0]])
    np.testing.assert_array_equal(sweep["versions"][1], [7, 5, 3, 1])
    assert np.nanmax(tt.depth_sweep("2bw", [4], 3)["versions"]) == 2
    with pytest.raises(SimulatorError, match="one of backprop"):
        tt.timetable("pipedream", Model.chain_skeleton([2, 2], ["tanh"]), 3)
    chain = Model.chain([3, 2], seed=0)
    u, y = stream(chain, 4)
    with pytest.raises(SimulatorError, match="only gpipe and 2bw"):
        zoo.run_schedule("1f1b", chain, u, y, learning_rate=0.1, loss="mse", micro=4)
    with pytest.raises(SimulatorError, match="diffusion only"):
        zoo.run_schedule("1f1b", chain, u, y, learning_rate=0.1, loss="mse", rule={})
    with pytest.raises(SimulatorError, match="rule"):
        zoo.run_schedule("diffusion", chain, u, y, learning_rate=0.1, loss="mse",
                         rule={"bogus": 1})
