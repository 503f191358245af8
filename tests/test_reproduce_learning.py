"""The training checks of ``tickprop reproduce`` at tiny sizes: the contract's keys and
types, one seed's numbers reproduced, sabotaged variants failing their pass rule, and the
local MNIST reader against files written here by hand."""
import gzip
import struct

import numpy as np
import pytest

from simulator.errors import SimulatorError
from simulator.experiments import reproduce_learning as rl

KEYS = {"name": str, "claim": str, "source": str, "published": str, "ours": str,
        "passed": bool, "seeds": list, "settings": dict, "cpu_s": float}


@pytest.fixture
def tiny(monkeypatch):
    """Seconds-sized checks: the 8x8 digits, few rows, small nets, one or two epochs."""
    monkeypatch.setattr(rl, "offline_mnist", rl._digits)
    monkeypatch.setattr(rl, "AR", dict(rl.AR, hidden=(12, 12, 8), epochs={"offline": 1,
                                                                          "data": 1},
                                       train_rows=256))
    monkeypatch.setattr(rl, "PC", dict(rl.PC, hidden=(12, 12, 12), epochs={"offline": 1,
                                                                           "data": 1},
                                       train_rows=256))
    monkeypatch.setattr(rl, "FB", dict(rl.FB, epochs={"offline": 1, "data": 1}, train_rows=128,
                                       channels=(2,), dense=(8,),
                                       seeds={"offline": 3, "data": 3}))


def _run(name, tier="offline", data=None, seed=0):
    calls = []
    result = rl.CHECKS[name](tier, data, seed, calls.append)
    return result, calls


@pytest.mark.parametrize("name", list(rl.CHECKS))
def test_contract_and_reproducible(tiny, name):
    result, calls = _run(name)
    assert set(result) == set(KEYS)
    for key, kind in KEYS.items():
        assert isinstance(result[key], kind), (key, type(result[key]))
    assert result["name"] == name
    assert result["seeds"] == [0, 1, 2]
    assert result["cpu_s"] > 0
    assert " ± " in result["ours"]
    assert calls and all(0 < f <= 1 for f in calls) and calls[-1] == 1
    again, _ = _run(name)
    assert {k: v for k, v in again.items() if k != "cpu_s"} == \
        {k: v for k, v in result.items() if k != "cpu_s"}
    other, _ = _run(name, seed=5)
    assert other["seeds"] == [5, 6, 7] and other["ours"] != result["ours"]


def test_ar_passes_at_k100_and_fails_at_k1(tiny, monkeypatch):
    good, _ = _run("ar_matches_backprop")
    assert good["passed"], good["ours"]
    monkeypatch.setattr(rl, "AR", dict(rl.AR, K=1))
    bad, _ = _run("ar_matches_backprop")
    assert not bad["passed"] and bad["settings"]["K"] == 1
    assert float(bad["ours"].rsplit(" ", 1)[1]) < 0.5    # one tick reaches one layer only


def test_pc_fails_at_t1(tiny, monkeypatch):
    monkeypatch.setattr(rl, "PC", dict(rl.PC, T=1))
    bad, _ = _run("pc_il_matches_backprop")
    assert not bad["passed"]
    # after one tick only the top two weight matrices have an error: cos 0 below
    assert bad["ours"].endswith("0.000")


def test_feedback_fails_when_dfa_is_backprop(tiny, monkeypatch):
    """DFA replaced by transpose feedback learns exactly as BP: the check fails."""
    monkeypatch.setattr(rl, "ALIGNED", (("FA", "random"), ("DFA", "transpose")))
    bad, _ = _run("feedback_family_ordering")
    assert not bad["passed"]
    assert "DFA − family worst 0.00" in bad["ours"] or "DFA − family worst -" in bad["ours"]


def test_feedback_fails_when_fa_is_backprop(tiny, monkeypatch):
    """FA replaced by transpose feedback learns exactly as BP: not 'clearly behind'."""
    monkeypatch.setattr(rl, "ALIGNED", (("FA", "transpose"),))
    bad, _ = _run("feedback_family_ordering")
    assert not bad["passed"]
    assert "FA − family worst 0.00" in bad["ours"] or "FA − family worst -" in bad["ours"]


def test_ordering_rule_by_hand():
    published = {k: v for k, v in rl.PUBLISHED_ERRORS.items() if k != "DFA"}
    assert rl.ordering_passes(rl.PUBLISHED_ERRORS)     # biotorch's own numbers pass
    assert not rl.ordering_passes(dict(rl.PUBLISHED_ERRORS, DFA=1.4))  # DFA < 0.5 behind
    assert not rl.ordering_passes(dict(rl.PUBLISHED_ERRORS, DFA=0.9))  # DFA not behind
    assert rl.ordering_passes(published)               # FA alone: the rule without DFA
    assert not rl.ordering_passes(dict(published, FA=1.0))   # FA not behind
    assert not rl.ordering_passes(dict(published, uSF=3.0))  # family spread 2.09 > 1.5
    assert not rl.ordering_passes({"BP": 1.0, "FA": 5.0})    # one family member is no spread
    assert rl.ordering_passes({"BP": 1.0, "uSF": 1.2, "FA": 1.7})
    assert not rl.ordering_passes({"BP": 1.0, "uSF": 1.2, "FA": 1.69})   # < 0.5 behind
    assert rl.ordering_passes({"BP": 1.0, "uSF": 2.4, "FA": 3.9})
    assert not rl.ordering_passes({"BP": 1.0, "uSF": 2.4, "FA": 3.8})    # not > spread 1.4


def test_mean_sd_format():
    # mean 0.5, sample sd 0.1 (hand: deviations ±0.1, (0.01 + 0 + 0.01)/2 = 0.01)
    assert rl._pm([0.004, 0.005, 0.006]) == "0.50 ± 0.10"


def _idx_bytes(array):
    dims = array.shape
    return bytes([0, 0, 8, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + \
        array.astype(np.uint8).tobytes()


def _fake_mnist(rng, n_train=300, n_test=60):
    return (rng.integers(0, 256, (n_train, 28, 28)), rng.integers(0, 10, n_train),
            rng.integers(0, 256, (n_test, 28, 28)), rng.integers(0, 10, n_test))


@pytest.mark.parametrize("form", ["idx", "idx.gz", "npz", "npz-file"])
def test_local_mnist_forms(tmp_path, form):
    parts = _fake_mnist(np.random.default_rng(3))
    names = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
             "t10k-labels-idx1-ubyte"]
    path = tmp_path
    if form.startswith("idx"):
        for name, a in zip(names, parts):
            raw = _idx_bytes(a)
            if form == "idx.gz":
                (tmp_path / f"{name}.gz").write_bytes(gzip.compress(raw))
            else:
                (tmp_path / name).write_bytes(raw)
    else:
        np.savez(tmp_path / "mnist.npz", **dict(zip(rl.MNIST_NPZ, parts)))
        if form == "npz-file":
            path = tmp_path / "mnist.npz"
    ds = rl.load_local_mnist(str(path))
    np.testing.assert_array_equal(ds.train_x, parts[0].reshape(300, 784) / 255.0)
    np.testing.assert_array_equal(ds.test_labels, parts[3])
    assert ds.train_targets[np.arange(300), parts[1]].sum() == 300
    assert ds.image_shape == (28, 28) and ds.train_x.dtype == np.float64


def test_local_mnist_mistakes(tmp_path):
    with pytest.raises(SimulatorError, match="train-images-idx3-ubyte"):
        rl.load_local_mnist(str(tmp_path))
    (tmp_path / "x.txt").write_text("no")
    with pytest.raises(SimulatorError, match="expected a folder"):
        rl.load_local_mnist(str(tmp_path / "x.txt"))
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (tmp_path / name).write_bytes(b"\x00\x00\x08\x01" + struct.pack(">I", 5) + b"\x01")
    with pytest.raises(SimulatorError, match="not an idx file of unsigned bytes with 3 dim"):
        rl.load_local_mnist(str(tmp_path))      # a labels file where the images belong
    (tmp_path / "train-images-idx3-ubyte").write_bytes(
        b"\x00\x00\x08\x03" + struct.pack(">3I", 2, 28, 28) + b"\x01")
    with pytest.raises(SimulatorError, match="1 data bytes, expected 1568"):
        rl.load_local_mnist(str(tmp_path))


@pytest.mark.parametrize("name", list(rl.CHECKS))
def test_data_tier_reads_the_folder(tiny, tmp_path, name):
    parts = _fake_mnist(np.random.default_rng(4))
    np.savez(tmp_path / "mnist.npz", **dict(zip(rl.MNIST_NPZ, parts)))
    result, _ = _run(name, tier="data", data=str(tmp_path))
    assert str(tmp_path) in result["settings"]["dataset"]
    settings = result["settings"]
    if name == "feedback_family_ordering":     # LeNet-5's kernels on 28x28
        assert settings["input"] == [1, 28, 28] and settings["layers"][0]["kernel"] == 5
    else:
        assert settings["sizes"][0] == 784


def test_unreadable_data_is_a_failed_result(tmp_path):
    result, _ = _run("pc_il_matches_backprop", tier="data", data=str(tmp_path))
    assert not result["passed"] and result["ours"].startswith("not measured:")
    assert set(result) == set(KEYS)


def test_il_learner_step_by_hand():
    """One ILLearner step on a 4-3-2 chain (tanh, linear output, MSE) against IL written
    here in numpy: T ticks of x1 ← x1 − γ(δ2 W2 − ε1), then W ← W − lr/B ∂F/∂W."""
    from simulator.model.graph import Model
    rng = np.random.default_rng(7)
    model = Model.chain([4, 3, 2], ["tanh", "linear"], seed=2, bias_scale=0.3)
    u, y = rng.normal(size=(5, 4)), rng.normal(size=(5, 2))
    T, gamma, lr = 3, 0.4, 0.2
    p = model.parameters()
    w1, b1, w2, b2 = p["1.W"], p["1.b"], p["2.W"], p["2.b"]
    pre1 = u @ w1.T + b1
    mu1 = np.tanh(pre1)
    x1 = mu1.copy()
    for _ in range(T):
        e2 = x1 @ w2.T + b2 - y           # the output's ε: ∂½‖μ − y‖²/∂μ
        x1 = x1 - gamma * (e2 @ w2 - (mu1 - x1))
    e2 = x1 @ w2.T + b2 - y
    d1 = (1 - np.tanh(pre1) ** 2) * (mu1 - x1)
    want = {"1.W": w1 - lr / 5 * d1.T @ u, "1.b": b1 - lr / 5 * d1.sum(0),
            "2.W": w2 - lr / 5 * e2.T @ x1, "2.b": b2 - lr / 5 * e2.sum(0)}
    learner = rl.ILLearner(model, T, gamma, "mse")
    for k, g in learner.gradients(u, y).items():
        np.testing.assert_allclose(p[k] - lr * g, want[k], rtol=1e-12, atol=1e-14)
    learner.params = want
    np.testing.assert_allclose(learner.predict(u), np.tanh(u @ want["1.W"].T + want["1.b"])
                               @ want["2.W"].T + want["2.b"], rtol=1e-12)


def test_adam_by_hand():
    """Three Adam steps on a quadratic (gradient w − c) against Kingma & Ba's Algorithm 1
    in its folded form: α_t = α √(1 − β2^t) / (1 − β1^t), ε̂ = ε √(1 − β2^t)."""
    class Quadratic:
        backend, model = None, type("M", (), {"depth": 1})()

        def __init__(self):
            self.params = {"w": np.array([0.3, -2.0, 5.0])}

        def gradients(self, u, y):
            return {"w": self.params["w"] - np.array([1.0, 1.0, -1.0])}

    q = Quadratic()
    opt, (b1, b2, eps), lr = rl.Adam(q), rl.ADAM, 0.1
    w, m, v = q.params["w"].copy(), 0.0, 0.0
    for t in (1, 2, 3):
        opt.step(None, None, lr)
        g = w - np.array([1.0, 1.0, -1.0])
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g ** 2
        alpha, eps_hat = lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t), eps * np.sqrt(1 - b2 ** t)
        w = w - alpha * m / (np.sqrt(v) + eps_hat)
        np.testing.assert_allclose(q.params["w"], w, rtol=1e-13)
    q.params["w"][0] = np.nan
    with pytest.raises(rl.NumericalError):
        opt.step(None, None, lr)
