"""Recorder and metrics: Gram-matrix mismatch against explicitly formed
matrices, tags against their closed forms, the memory budget, chunked transfer."""
import numpy as np
import pytest

from simulator import Network, reference
from simulator.engine import Engine
from simulator.errors import BudgetError, NumericalError
from simulator.metrics import mismatch
from simulator.probes import Recorder, RecordPlan, parse_bytes
from simulator.streams import HeldStream, teacher_target


def test_gram_mismatch_equals_explicit_matrices(rng):
    d, x = rng.normal(size=(3, 4, 5)), rng.normal(size=(3, 4, 6))
    d2, x2 = rng.normal(size=(3, 4, 5)), rng.normal(size=(3, 4, 6))
    cos, rel = mismatch(np, d, x, d2, x2)
    for l in range(3):
        g, G = d[l].T @ x[l], d2[l].T @ x2[l]
        assert cos[l] == pytest.approx(np.sum(g * G) / np.linalg.norm(g) / np.linalg.norm(G), rel=1e-12)
        assert rel[l] == pytest.approx(np.linalg.norm(g - G) / np.linalg.norm(G), rel=1e-10)


def run_recorded(net, ticks, device="cpu", reference_kind="input", chunk=7, every=1, **engine_kw):
    rng = np.random.default_rng(0)
    teacher = Network.random(net.sizes, net.activations, seed=1)
    stream = HeldStream(net.sizes[0], engine_kw.get("batch", 1), rng,
                        teacher_target(teacher, engine_kw.get("loss", "mse")), hold=3)
    engine = Engine(net, device=device, **engine_kw)
    plan = RecordPlan(ticks, net.depth, max(net.sizes), engine.batch, 8, states=True,
                      every=every, layers=[0, 2], chunk=chunk)
    rec = Recorder(engine, plan, reference=reference_kind)
    engine.run(stream, ticks, rec)
    return rec.trace(), engine


@pytest.mark.parametrize("device", ["cpu", "strict"])
def test_recorded_mismatch_matches_reference_of_the_tagged_frame(device):
    net = Network.random([3, 4, 4, 2], ["tanh", "tanh", "linear"], seed=2, bias_scale=0.2)
    trace, engine = run_recorded(net, 20, device=device)
    # Recompute the last tick by hand: reference of the frame that tag_pair names.
    rng = np.random.default_rng(0)
    teacher = Network.random(net.sizes, net.activations, seed=1)
    stream = HeldStream(3, 1, rng, teacher_target(teacher, "mse"), hold=3)
    us, ys, _ = stream.take(20)
    g = [np.asarray(np.from_dlpack(a)) for a in engine.gradients()]
    for l in range(1, 4):
        s = trace["tag_pair"][-1, l]
        G = reference.backprop(net, us[s], ys[s])[l - 1]
        want = np.sum(g[l - 1] * G) / np.linalg.norm(g[l - 1]) / np.linalg.norm(G)
        assert trace["mismatch_cos"][-1, l - 1] == pytest.approx(want, rel=1e-10)
        assert trace["ref_norm"][-1, l - 1] == pytest.approx(np.linalg.norm(G), rel=1e-10)


def test_tags_follow_the_tick_rule_and_rows_are_decimated():
    net = Network.random([3, 4, 4, 2], "tanh", seed=3)
    full, _ = run_recorded(net, 15, supervision_delay=1)
    trace, _ = run_recorded(net, 15, supervision_delay=1, every=2)
    for key in ("x_norm", "tag_sigma_hi", "mismatch_cos", "stream_frame"):
        np.testing.assert_array_equal(trace[key], full[key][::2])
    t = np.arange(0, 15, 2)[:, None]
    l = np.arange(4)[None, :]
    np.testing.assert_array_equal(trace["tag_input"], np.where(t - l >= 0, t - l, -1))
    sup = np.where((t - 1 - (3 - l) >= 0) & (l >= 1) & (t - (3 - l) >= 1), t - 1 - (3 - l), -1)
    np.testing.assert_array_equal(trace["tag_supervision"], sup)
    assert trace["state_x"].shape == (8, 2, 1, 4)
    np.testing.assert_array_equal(trace["state_tick"], np.arange(0, 15, 2))
    assert np.isnan(trace["state_x"][:, 0, :, 3]).all()       # layer 0 has 3 neurons
    assert np.isfinite(trace["state_x"][:, 1]).all()


def test_reference_supervision_compares_with_the_target_frame():
    L = 3
    net = Network.random([3, 4, 4, 2], "linear", seed=4)
    trace, _ = run_recorded(net, 30, reference_kind="supervision", loss="linear")
    ls = (L + 1) // 2
    assert np.nanmax(trace["mismatch_rel"][10:, ls - 1]) < 1e-6


def test_memory_budget_refuses_before_running_and_says_what_to_decimate():
    plan = RecordPlan(10000, 9, 16, 1, 8, states=True, budget="1MiB")
    with pytest.raises(BudgetError) as err:
        plan.check_budget()
    assert "record.every" in str(err.value) and "1.0 MiB" in str(err.value)
    assert RecordPlan(100, 9, 16, 1, 8, states=True).check_budget() < parse_bytes("1GiB")


@pytest.mark.parametrize("text,value", [("1GiB", 2**30), ("512MiB", 2**29), ("2e3", 2000), (77, 77)])
def test_parse_bytes(text, value):
    assert parse_bytes(text) == value
