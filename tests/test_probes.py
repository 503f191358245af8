"""Recorder and metrics: Gram-matrix mismatch against explicitly formed
matrices, tags against their closed forms, the memory budget, chunked transfer."""
import json

import numpy as np

from oracles import per_layer
import pytest

from oracles import chain_backprop
from simulator import Network
from simulator.engine import Engine
from simulator.errors import BudgetError, SimulatorError
from simulator.metrics import mismatch
from simulator.probes import Recorder, RecordPlan, Trace, parse_bytes
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
    g = [np.asarray(np.from_dlpack(a)) for a in per_layer(engine.gradients())]
    for l in range(1, 4):
        s = trace["tag_pair"][-1, l]
        G = chain_backprop(net, us[s], ys[s])[l - 1]
        want = np.sum(g[l - 1] * G) / np.linalg.norm(g[l - 1]) / np.linalg.norm(G)
        assert trace["mismatch_cos"][-1, l - 1] == pytest.approx(want, rel=1e-10)
        assert trace["ref_norm"][-1, l - 1] == pytest.approx(np.linalg.norm(G), rel=1e-10)


def test_batched_recording_gives_numpys_trace_in_every_namespace(device):
    """At batch 2 with a row every tick the recorder reads references as ring
    slices (at batch 1 it gathers them): the same trace under array-api-strict
    (and cupy where present) as under numpy, for both ways."""
    net = Network.random([3, 4, 4, 2], ["tanh", "tanh", "linear"], seed=2, bias_scale=0.2)
    for batch in (1, 2):
        want, _ = run_recorded(net, 40, batch=batch)
        got, _ = run_recorded(net, 40, device=device, batch=batch)
        assert np.isfinite(want["mismatch_cos"]).sum() > 60
        for key in ("mismatch_cos", "mismatch_rel", "grad_norm", "ref_norm", "x_norm"):
            np.testing.assert_allclose(got[key], want[key], rtol=1e-9, atol=1e-9,
                                       equal_nan=True, err_msg=key)


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


@pytest.mark.parametrize("hold", [1, 3])
@pytest.mark.parametrize("derivative", ["local", "itd-y", "itd-dy"])
def test_recorded_sigma_hi_is_the_frame_of_the_newest_sigma_factor(hold, derivative):
    # δ[t,l]'s newest σ' factor is D[t−1,l]: the frame that entered layer 0 at t−1−l.
    net = Network.random([3, 4, 4, 4, 2], "tanh", seed=5)
    rng = np.random.default_rng(0)
    stream = HeldStream(3, 1, rng, teacher_target(net, "mse"), hold=hold)
    engine = Engine(net, derivative=derivative)
    rec = Recorder(engine, RecordPlan(30, 4, 4, 1, 8, chunk=8))
    engine.run(stream, 30, rec)
    t = np.arange(30)[:, None]
    l = np.arange(1, 4)[None, :]
    np.testing.assert_array_equal(rec.trace()["tag_sigma_hi"][:, 1:4], np.maximum(t - l - 1, -1))


def saved_trace(folder):
    net = Network.random([3, 4, 2], "tanh", seed=6)
    trace, _ = run_recorded(net, 12)
    trace.meta = {"name": "t"}
    trace.save(str(folder))
    with open(folder / "run.json", "w") as f:
        json.dump(trace.meta, f)
    return trace


def rewrite_npz(folder, change):
    with np.load(folder / "trace.npz") as data:
        arrays = {k: data[k] for k in data.files}
    change(arrays)
    np.savez(folder / "trace.npz", **arrays)


@pytest.mark.parametrize("damage,needle", [
    (lambda f: open(f / "trace.npz", "wb").close(), "empty"),
    (lambda f: (f / "trace.npz").write_bytes((f / "trace.npz").read_bytes()[:200]), "trace.npz"),
    (lambda f: (f / "trace.npz").write_bytes(b"not a zip at all"), "trace.npz"),
    (lambda f: rewrite_npz(f, lambda a: a.pop("x_norm")), "x_norm"),
    (lambda f: rewrite_npz(f, lambda a: a.update(x_norm=a["x_norm"][:-1])), "x_norm"),
    (lambda f: rewrite_npz(f, lambda a: a.update(sizes=np.array([3]))), "sizes"),
    (lambda f: rewrite_npz(f, lambda a: a.update(state_x=a["state_x"][:, :1])), "state_x"),
    (lambda f: (f / "run.json").unlink(), "run.json"),
    (lambda f: (f / "run.json").write_text("{\"name\": "), "run.json"),
    (lambda f: (f / "run.json").write_text("[1, 2]"), "run.json"),
    (lambda f: (f / "run.json").write_bytes(b"\xff\xfe\x00"), "run.json"),
])
def test_loading_a_damaged_run_names_the_file_and_what_is_wrong(tmp_path, damage, needle):
    saved_trace(tmp_path)
    assert Trace.load(str(tmp_path)).arrays["x_norm"].shape == (12, 3)
    damage(tmp_path)
    with pytest.raises(SimulatorError) as err:
        Trace.load(str(tmp_path))
    assert needle in str(err.value) and str(tmp_path) in str(err.value)
