"""Facts A–D of SPEC §1, each against the plain reference backprop AND central
finite differences, over several seeds, odd and even depths, and activations.
Engine tests run under numpy and again under array-api-strict (``device``)."""
import numpy as np
import pytest

from oracles import chain_backprop, finite_difference, host, layer_rel, max_rel, per_layer
from simulator import Network
from simulator.engine import Engine

DEPTHS = [3, 4, 5]
ACTS = ["tanh", "logistic", "relu"]


def make_net(depth, act, seed, width=4, n_in=3, n_out=2, output="linear"):
    sizes = [n_in] + [width] * (depth - 1) + [n_out]
    return Network.random(sizes, [act] * (depth - 1) + [output], seed=seed, bias_scale=0.3)


def drive(engine, us, ys):
    """Step through frames; yield (tick, gradients on the host) after each step."""
    be = engine.backend
    for u, y in zip(us, ys):
        engine.step(be.asarray(u), be.asarray(y))
        yield engine.tick, host(per_layer(engine.gradients()))


# ----------------------------------------------------------------- fact A
@pytest.mark.parametrize("depth", DEPTHS)
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("seed", [0, 1])
def test_fact_a_constant_input_gives_backprop_from_tick_2L_minus_1(device, depth, act, seed):
    net = make_net(depth, act, seed)
    rng = np.random.default_rng(seed)
    u, y = rng.normal(size=(1, 3)), rng.normal(size=(1, 2))
    want = chain_backprop(net, u, y)
    fd = finite_difference(net, u, y)
    engine = Engine(net, device=device)
    L = depth
    for t, g in drive(engine, [u] * (2 * L + 3), [y] * (2 * L + 3)):
        if t == 2 * L - 2 and act != "relu":
            # One tick earlier layer 1 still holds a delta from the empty state:
            # pins the first exact tick to 2L − 1 (relu may leave layer 1 dead).
            assert layer_rel(g, want)[0] > 1e-6
        if t >= 2 * L - 1:
            assert max_rel(g, want) < 1e-12
            assert max_rel(g, fd) < 1e-6


def test_fact_a_layer_l_is_exact_from_tick_2L_minus_l():
    net = make_net(5, "tanh", 7)
    rng = np.random.default_rng(7)
    u, y = rng.normal(size=(1, 3)), rng.normal(size=(1, 2))
    want = chain_backprop(net, u, y)
    L = 5
    for t, g in drive(Engine(net), [u] * 12, [y] * 12):
        rel = layer_rel(g, want)
        for l in range(1, L + 1):
            assert (rel[l - 1] < 1e-12) == (t >= 2 * L - l), (t, l)


@pytest.mark.parametrize("loss", ["mse", "xent", "linear"])
def test_fact_a_holds_for_every_loss_and_batch(loss):
    net = make_net(4, "tanh", 3)
    rng = np.random.default_rng(3)
    u = rng.normal(size=(3, 3))
    y = rng.dirichlet(np.ones(2), size=3) if loss == "xent" else rng.normal(size=(3, 2))
    want = chain_backprop(net, u, y, loss)
    fd = finite_difference(net, u, y, loss)
    *_, (t, g) = drive(Engine(net, loss=loss, batch=3), [u] * 9, [y] * 9)
    assert max_rel(g, want) < 1e-12
    assert max_rel(g, fd) < 1e-6


def test_fact_a_in_float32():
    net = make_net(5, "tanh", 4)
    rng = np.random.default_rng(4)
    u, y = rng.normal(size=(1, 3)), rng.normal(size=(1, 2))
    want = chain_backprop(net, u, y)
    *_, (t, g) = drive(Engine(net, dtype="float32"), [u] * 12, [y] * 12)
    assert g[0].dtype == np.float32
    assert max_rel(g, want) < 1e-5


# ----------------------------------------------------------------- fact B
@pytest.mark.parametrize("depth", DEPTHS)
@pytest.mark.parametrize("act", ["tanh", "logistic"])
def test_fact_b_frame_options_are_pipelined_backprop_on_white_noise(device, depth, act):
    L = depth
    net = make_net(L, act, 10 + L)
    rng = np.random.default_rng(L)
    T = 4 * L + 4
    us, ys = rng.normal(size=(T, 2, 3)), rng.normal(size=(T, 2, 2))
    engine = Engine(net, derivative="frame", pairing="frame", supervision_delay=L,
                    batch=2, device=device)
    checked = 0
    for t, g in drive(engine, us, ys):
        for l in range(1, L + 1):
            s = t - 2 * L + l
            if s < 0:
                continue
            want = chain_backprop(net, us[s], ys[s])[l - 1]
            assert np.linalg.norm(g[l - 1] - want) <= 1e-12 * np.linalg.norm(want)
            checked += 1
    assert checked > 2 * L
    # and the frames' gradients are the true derivatives of their losses
    s = T - 2 * L
    fd = finite_difference(net, us[s], ys[s])
    assert np.linalg.norm(g[0] - fd[0]) < 1e-6 * np.linalg.norm(fd[0])


def test_fact_b_fails_without_the_history_buffers():
    """Same stream, local options: the estimate is NOT any frame's gradient."""
    L = 4
    net = make_net(L, "tanh", 1)
    rng = np.random.default_rng(1)
    us, ys = rng.normal(size=(20, 1, 3)), rng.normal(size=(20, 1, 2))
    *_, (t, g) = drive(Engine(net, supervision_delay=L), us, ys)
    want = chain_backprop(net, us[t - 2 * L + 1], ys[t - 2 * L + 1])
    assert layer_rel(g, want)[0] > 0.05


# ----------------------------------------------------------------- fact C
@pytest.mark.parametrize("depth", [3, 4, 5, 8, 9])
def test_fact_c_input_and_supervision_tags_meet_only_at_ls(depth):
    L = depth
    net = make_net(L, "tanh", 0)
    engine = Engine(net)
    rng = np.random.default_rng(0)
    for _ in range(3 * L):
        engine.step(rng.normal(size=(1, 3)), rng.normal(size=(1, 2)))
    tags, t = engine.tags(), engine.tick
    equal = [l for l in range(1, L + 1) if tags["input"][l - 1] == tags["supervision"][l]]
    if L % 2:
        ls = (L + 1) // 2
        assert equal == [ls]
        s = tags["pair"][ls]
        assert t == s + (L - 1) // 2          # gradient of frame s formed with delay ls − 1
    else:
        assert equal == []
        gaps = [abs(tags["input"][l - 1] - tags["supervision"][l]) for l in range(1, L + 1)]
        assert sorted(np.argsort(gaps)[:2] + 1) == [L // 2, L // 2 + 1]
        assert min(gaps) == 1


# ----------------------------------------------------------------- fact D
@pytest.mark.parametrize("depth", [3, 5, 7])
@pytest.mark.parametrize("seed", [0, 1])
def test_fact_d_linear_network_exact_at_ls_on_white_noise(device, depth, seed):
    L, ls = depth, (depth + 1) // 2
    sizes = [3] + [4] * (L - 1) + [2]
    net = Network.random(sizes, "linear", seed=seed, bias_scale=0.2)
    rng = np.random.default_rng(seed)
    T = 3 * L
    us, ys = rng.normal(size=(T, 1, 3)), rng.normal(size=(T, 1, 2))
    engine = Engine(net, loss="linear", device=device)
    others = []
    for t, g in drive(engine, us, ys):
        if t < 2 * L:
            continue
        s = t - (ls - 1)
        want = chain_backprop(net, us[s], ys[s], "linear")
        rel = layer_rel(g, want)
        assert rel[ls - 1] < 1e-12
        others.append([r for i, r in enumerate(rel) if i != ls - 1])
    assert np.min(others) > 1e-2                 # no other layer is exact
    fd = finite_difference(net, us[s], ys[s], "linear")
    assert np.linalg.norm(g[ls - 1] - fd[ls - 1]) < 1e-6 * np.linalg.norm(fd[ls - 1])


def test_fact_d_breaks_with_nonlinear_layers_or_mse():
    """With σ' factors or an output-dependent loss, ls is only approximately synchronized."""
    ls = 3
    rng = np.random.default_rng(2)
    us, ys = rng.normal(size=(20, 1, 3)), rng.normal(size=(20, 1, 2))
    for act, loss in (("tanh", "linear"), ("linear", "mse")):
        net = Network.random([3, 4, 4, 4, 4, 2], [act] * 4 + ["linear"], seed=2)
        *_, (t, g) = drive(Engine(net, loss=loss), us, ys)
        want = chain_backprop(net, us[t - ls + 1], ys[t - ls + 1], loss)
        assert layer_rel(g, want)[ls - 1] > 1e-3, (act, loss)
