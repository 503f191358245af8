"""Every engine option reaches a test that would fail if the option were ignored.
Expectations come from closed forms built from the engine's observable state
or from the plain reference, never from the engine's own gradient code."""
import numpy as np
import pytest

from oracles import chain_backprop, chain_forward, host, layer_rel, max_rel, per_layer
from simulator import Network, SimulatorError
from simulator.engine import Engine


def net5(seed=0, act="tanh"):
    return Network.random([3, 4, 4, 4, 4, 2], [act] * 4 + ["linear"], seed=seed, bias_scale=0.3)


def settle(engine, u, y, ticks):
    be = engine.backend
    for _ in range(ticks):
        engine.step(be.asarray(u), be.asarray(y))


def constant_pair(rng, batch=1):
    return rng.normal(size=(batch, 3)), rng.normal(size=(batch, 2))


@pytest.mark.parametrize("feedback", ["random", "sign"])
def test_fixed_feedback_converges_to_backprop_through_that_feedback(device, rng, feedback):
    net = net5(1)
    u, y = constant_pair(rng)
    engine = Engine(net, feedback=feedback, feedback_seed=5, device=device)
    settle(engine, u, y, 12)
    fb = host(per_layer(engine.feedback_weights()))
    if feedback == "sign":
        w = net.weights[1]     # biotorch's uSF: sign(W) · √(2/(fan_in + fan_out))
        np.testing.assert_array_equal(fb[1], np.sign(w) * np.sqrt(2 / sum(w.shape)))
    want = chain_backprop(net, u, y, feedback=fb)
    assert max_rel(host(per_layer(engine.gradients())), want) < 1e-12
    assert max_rel(host(per_layer(engine.gradients())), chain_backprop(net, u, y)) > 1e-3


def test_derivative_none_drops_sigma_prime_below_the_output(rng):
    net = net5(2)
    u, y = constant_pair(rng)
    engine = Engine(net, derivative="none")
    settle(engine, u, y, 12)
    xs, ds = chain_forward(net, u)
    delta = ds[-1] * (xs[-1] - y)
    want = [None] * 5
    for l in range(5, 0, -1):
        want[l - 1] = delta.T @ xs[l - 1]
        if l > 1:
            delta = delta @ net.weights[l - 1]            # no σ' factor
    assert max_rel(host(per_layer(engine.gradients())), want) < 1e-12


@pytest.mark.parametrize("kind", ["itd-y", "itd-dy"])
def test_temporal_differencing_uses_one_tick_differences(rng, kind):
    net = net5(3)
    engine = Engine(net, derivative=kind, itd_epsilon=1e-9)
    L = 5
    states = []
    for t in range(14):
        u, y = rng.normal(size=(1, 3)), rng.normal(size=(1, 2))
        engine.step(u, y)
        states.append(({l: engine.activity(l).copy() for l in range(L + 1)},
                       {l: engine.preactivation(l).copy() for l in range(1, L + 1)},
                       {l: engine.delta(l).copy() for l in range(1, L + 1)}))
    (x1, a1, _), (x2, a2, _), (_, _, d3) = states[-3], states[-2], states[-1]
    for l in range(1, L):
        factor = x2[l] - x1[l]
        if kind == "itd-dy":
            factor = factor / (a2[l] - a1[l])
        np.testing.assert_allclose(d3[l], factor * (states[-2][2][l + 1] @ net.weights[l]),
                                   rtol=1e-10, atol=1e-14)


def test_itd_dy_keeps_the_last_quotient_when_a_stops_changing(rng):
    net = net5(4)
    engine = Engine(net, derivative="itd-dy")
    u1, y = constant_pair(rng)
    settle(engine, rng.normal(size=(1, 3)), y, 6)
    settle(engine, u1, y, 14)                    # a is constant again from here on
    # Constant input: the last finite quotient is the secant slope of the
    # transition, not σ'(a), and it is kept; δ below the top stays non-zero.
    assert np.linalg.norm(engine.delta(1)) > 0
    kept = [engine.delta(l).copy() for l in range(1, 5)]
    settle(engine, u1, y, 3)
    for l in range(1, 5):
        np.testing.assert_array_equal(engine.delta(l), kept[l - 1])


def test_supervision_delay_pairs_the_output_with_an_older_target(rng):
    net = net5(5)
    L, d_y = 5, 3
    us, ys = rng.normal(size=(20, 1, 3)), rng.normal(size=(20, 1, 2))
    engine = Engine(net, supervision_delay=d_y)
    for t in range(20):
        engine.step(us[t], ys[t])
        if t < d_y:
            assert np.all(host([engine.delta(L)])[0] == 0)
    xs, ds = chain_forward(net, us[engine.tick - L])
    np.testing.assert_allclose(engine.delta(L), ds[-1] * (xs[-1] - ys[engine.tick - d_y]),
                               rtol=1e-12)
    assert engine.tags()["supervision"][L] == engine.tick - d_y


@pytest.mark.parametrize("decay", [0.0, 0.3])
def test_online_learning_applies_eta_g_every_tick_to_weights_and_biases(device, rng, decay):
    net = net5(6)
    u, y = constant_pair(rng)
    eta = 0.01
    engine = Engine(net, learning_rate=eta, weight_decay=decay, device=device)
    settle(engine, u, y, 5)
    before_w = host(per_layer(engine.parameters()))
    before_b = host(per_layer(engine.parameters(), "b"))
    settle(engine, u, y, 1)
    g, gb = host(per_layer(engine.gradients())), host(per_layer(engine.gradients(), "b"))
    for w0, w1, gi in zip(before_w, host(per_layer(engine.parameters())), g):
        np.testing.assert_allclose(w1, (1 - eta * decay) * w0 - eta * gi, rtol=1e-12, atol=1e-15)
    for b0, b1, gi in zip(before_b, host(per_layer(engine.parameters(), "b")), gb):
        np.testing.assert_allclose(b1, b0 - eta * gi, rtol=1e-12, atol=1e-15)


def test_accumulate_applies_the_sum_every_k_ticks(rng):
    net = net5(7)
    u, y = constant_pair(rng)
    engine = Engine(net, learning_rate=0.02, accumulate=3)
    w0 = host(per_layer(engine.parameters()))
    gs = []
    for t in range(3):
        settle(engine, u, y, 1)
        gs.append(host(per_layer(engine.gradients())))
        if t < 2:
            assert max_rel(host(per_layer(engine.parameters())), w0) == 0.0
    want = [w - 0.02 * (a + b + c) for w, a, b, c in zip(w0, *gs)]
    assert max_rel(host(per_layer(engine.parameters())), want) < 1e-12


def test_learned_feedback_gets_the_weights_update_and_decay_closes_the_gap(device, rng):
    net = net5(8)
    u, y = constant_pair(rng)
    eta, lam, ticks = 0.05, 0.5, 7
    engine = Engine(net, feedback="learned", learning_rate=eta, weight_decay=lam, device=device)
    gap0 = [f - w for f, w in zip(host(per_layer(engine.feedback_weights())), host(per_layer(engine.parameters())))]
    settle(engine, u, y, ticks)
    gap = [f - w for f, w in zip(host(per_layer(engine.feedback_weights())), host(per_layer(engine.parameters())))]
    # Kolen–Pollack: B − W shrinks by (1 − ηλ) per update whatever the gradients.
    keep = (1 - eta * lam) ** ticks
    for g0, g1 in zip(gap0, gap):
        np.testing.assert_allclose(g1, keep * g0, rtol=1e-10, atol=1e-13)


def test_transpose_feedback_follows_learning_and_sign_is_refreshed(rng):
    net = net5(9)
    u, y = constant_pair(rng)
    for fb in ("transpose", "sign"):
        engine = Engine(net, feedback=fb, learning_rate=0.5)
        settle(engine, u, y, 10)
        w = host(per_layer(engine.parameters()))
        f = host(per_layer(engine.feedback_weights()))
        # sign: biotorch's uSF, sign(W) scaled by √(2/(fan_in + fan_out)), W (out, in)
        want = w if fb == "transpose" else [np.sign(m) * np.sqrt(2 / sum(m.shape)) for m in w]
        assert max_rel(f, want) == 0.0


def test_pairing_frame_alone_uses_the_x_of_the_deltas_frame(rng):
    net = net5(10)
    L = 5
    us, ys = rng.normal(size=(16, 1, 3)), rng.normal(size=(16, 1, 2))
    engine = Engine(net, pairing="frame")
    xs_by_tick = []
    for t in range(16):
        engine.step(us[t], ys[t])
        xs_by_tick.append([engine.activity(l).copy() for l in range(L + 1)])
    t = engine.tick
    for l in range(1, L + 1):
        lag = 2 * L - 2 * l + 1
        want = engine.delta(l).T @ xs_by_tick[t - lag][l - 1]
        np.testing.assert_allclose(host(per_layer(engine.gradients()))[l - 1], want, rtol=1e-12)
        assert engine.tags()["pair"][l] == t - 2 * L + l


def test_derivative_frame_alone_uses_sigma_prime_of_the_deltas_frame(rng):
    """With constant input every frame's σ' is the same, so use a stream and
    check against σ' of the output-activity frame."""
    L = 3
    net = Network.random([2, 3, 3, 2], ["tanh", "tanh", "linear"], seed=11)
    us, ys = rng.normal(size=(12, 1, 2)), rng.normal(size=(12, 1, 2))
    engine = Engine(net, derivative="frame", supervision_delay=L)
    deltas = []
    for t in range(12):
        engine.step(us[t], ys[t])
        deltas.append({l: engine.delta(l).copy() for l in range(1, L + 1)})
    t = engine.tick
    s = t - 2 * L + 1                           # frame of δ[t, 1]
    _, ds = chain_forward(net, us[s])
    np.testing.assert_allclose(deltas[-1][1], ds[1] * (deltas[-2][2] @ net.weights[1]), rtol=1e-12)
    tags = engine.tags()
    assert tags["sigma_lo"][1] == tags["sigma_hi"][1] == tags["output"][1] == s


def test_local_derivative_mixes_frames_in_the_sigma_tags(rng):
    engine = Engine(net5(12))
    settle(engine, *constant_pair(rng), 12)
    tags = engine.tags()
    assert tags["sigma_lo"][1] < tags["sigma_hi"][1]
    assert tags["output"][1] == tags["sigma_lo"][1]


def test_float32_runs_in_float32():
    engine = Engine(net5(13), dtype="float32")
    engine.step(np.ones((1, 3), np.float32), np.ones((1, 2), np.float32))
    assert host(per_layer(engine.gradients()))[0].dtype == np.float32


@pytest.mark.parametrize("kwargs", [
    {"loss": "hinge"}, {"feedback": "tranpose"}, {"derivative": "global"},
    {"pairing": "late"}, {"supervision_delay": -1}, {"batch": 0},
    {"learning_rate": -0.1}, {"accumulate": 0}, {"dtype": "float16"}, {"device": "tpu"},
])
def test_bad_options_raise_one_clear_error(kwargs):
    with pytest.raises(SimulatorError) as err:
        Engine(net5(), **kwargs)
    assert str(next(iter(kwargs)).split("_")[0]) in str(err.value) or "expected" in str(err.value)


def test_engine_does_not_mutate_the_network(rng):
    net = net5(14)
    w0 = [w.copy() for w in net.weights]
    engine = Engine(net, learning_rate=0.1)
    settle(engine, *constant_pair(rng), 5)
    assert max_rel(net.weights, w0) == 0.0
    assert layer_rel(host(per_layer(engine.parameters())), w0)[0] > 0


def test_accessors_return_copies_not_live_views(device, rng):
    net = net5(15)
    engine = Engine(net, device=device)
    be = engine.backend
    us = rng.normal(size=(6, 1, 3))
    kept = {"activity": [], "preactivation": [], "delta": []}
    want = {"activity": [], "preactivation": [], "delta": []}
    x_prev = [np.zeros((1, n)) for n in net.sizes]
    for t in range(6):
        engine.step(be.asarray(us[t]), be.asarray(np.zeros((1, 2))))
        kept["activity"].append(engine.activity(1))
        kept["preactivation"].append(engine.preactivation(1))
        kept["delta"].append(engine.delta(5))
        # Closed forms from the tick rule: a[t,1] = W_0 x[t−1,0] + b_0, x[t,1] = tanh(a[t,1]).
        a1 = x_prev[0] @ net.weights[0].T + net.biases[0]
        want["preactivation"].append(a1)
        want["activity"].append(np.tanh(a1))
        x_now = [us[t]] + [None] * 5
        for l in range(1, 6):
            a = x_prev[l - 1] @ net.weights[l - 1].T + net.biases[l - 1]
            x_now[l] = a if l == 5 else np.tanh(a)
        want["delta"].append(x_now[5] - 0.0)        # linear output, mse, y = 0
        x_prev = x_now
    for key in kept:
        got = host(kept[key])
        assert len({g.tobytes() for g in got[1:]}) == 5, key
        for g, w in zip(got, want[key]):
            np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("u_shape,y_shape,named", [
    ((2, 4), (2, 2), "u"), ((3, 3), (2, 2), "u"), ((2, 3), (2, 3), "y"),
    ((3,), (2, 2), "u"), ((2, 3), (1, 2), "y"),
])
def test_step_refuses_wrong_shapes_naming_expected_and_given(u_shape, y_shape, named):
    engine = Engine(net5(16), batch=2)
    with pytest.raises(SimulatorError) as err:
        engine.step(np.zeros(u_shape), np.zeros(y_shape))
    message = str(err.value)
    expected = (2, 3) if named == "u" else (2, 2)
    given = u_shape if named == "u" else y_shape
    assert f"frame {named}" in message and str(expected) in message and str(given) in message
    assert engine.tick == -1


@pytest.mark.parametrize("derivative", ["local", "itd-y", "itd-dy"])
@pytest.mark.parametrize("hold", [1, 4])
def test_sigma_tags_follow_the_tick_rule(rng, derivative, hold):
    """δ[t,l] = D[t−1,l] ⊙ F δ[t−1,l+1]: its newest σ' factor is D[t−1,l], whose
    frame entered layer 0 at tick t−1−l; its oldest is σ'_L of the output
    activity it started from, frame t+l−2L (itd factors also reach t−2−l)."""
    L = 5
    engine = Engine(net5(17), derivative=derivative, itd_epsilon=1e-9)
    u = np.repeat(rng.normal(size=(40 // hold + 1, 1, 3)), hold, axis=0)
    for t in range(40):
        engine.step(u[t], np.zeros((1, 2)))
        tags = engine.tags()
        for l in range(1, L):
            assert tags["sigma_hi"][l] == max(t - l - 1, -1), (t, l)
            if t >= 2 * L:
                assert tags["sigma_lo"][l] == t + l - 2 * L, (t, l)
        assert tags["sigma_hi"][L] == (t - L if t >= L else -1)
