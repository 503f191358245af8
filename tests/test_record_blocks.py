"""The recorder measures in blocks of K ticks (one batched backprop over the
block's distinct frames when the weights are frozen): whatever K, and across
held frames that straddle a block's edge, the trace equals a per-tick oracle
computed here with simulator.reference on every tick's own frame."""
import zipfile

import numpy as np
import pytest

from simulator import reference
from oracles import per_layer
from simulator.probes import plan as probe_plan
from simulator.build import build
from simulator.probes import RecordPlan, Recorder
from simulator.runner import Prepared
from simulator.scene import validate


# unequal widths (5 wide hidden layers between 3 and 2) and equal ones
WIDTHS = {"unequal": (3, 2), "equal": (5, 5)}


def _scene(hold, learning_rate=0.0, every=1, ticks=60, widths="unequal"):
    n_in, n_out = WIDTHS[widths]
    return validate({"network": {"depth": 4, "width": 5, "inputs": n_in, "outputs": n_out},
                     "stream": {"kind": "held", "hold": hold, "batch": 2},
                     "rule": {"learning_rate": learning_rate},
                     "record": {"every": every, "chunk": 16},
                     "run": {"ticks": ticks, "seed": 3}}, "test")


def _oracle_cos(sc):
    """Per recorded tick and layer, (cos(g, G), ‖G‖) with G backprop's gradient of the
    frame the pair tag names, with the weights the engine holds at the end of
    that frame's tick (after its update, when learning): an engine stepped by
    hand, the reference called per frame."""
    parts = build(sc)
    eng = parts.engine()
    T = sc["run"]["ticks"]
    u, y, _ = parts.stream.take(T)
    nets, cos, norms = [], [], []
    for t in range(T):
        eng.step(u[t], y[t])
        nets.append(eng.current_model())
        if t % sc["record"]["every"]:
            continue
        g = per_layer(eng.gradients())
        pair = eng.tags()["pair"][1:]
        row, nrow = [], []
        for l in range(eng.depth):
            s = int(pair[l])
            if s < 0 or s <= t - (2 * eng.depth + 2):
                row.append(np.nan)
                nrow.append(np.nan)
                continue
            G = reference.backprop(nets[s], u[s], y[s], eng.loss)[f"{l + 1}.W"]
            with np.errstate(invalid="ignore", divide="ignore"):
                row.append(float(np.sum(g[l] * G) / (np.linalg.norm(g[l]) * np.linalg.norm(G))))
            nrow.append(float(np.linalg.norm(G)))
        cos.append(row)
        norms.append(nrow)
    return np.array(cos), np.array(norms)


@pytest.mark.parametrize("hold, lr, every", [(1, 0.0, 1), (3, 0.0, 1), (5, 0.0, 2),
                                             (1, 0.05, 1), (4, 0.05, 3)])
@pytest.mark.parametrize("block_bytes", [1, 700, probe_plan.BLOCK_BYTES])
@pytest.mark.parametrize("widths", sorted(WIDTHS))
def test_block_size_never_changes_the_trace(monkeypatch, hold, lr, every, block_bytes, widths):
    monkeypatch.setattr(probe_plan, "BLOCK_BYTES", block_bytes)
    sc = _scene(hold, lr, every, widths=widths)
    trace = Prepared("t", sc).simulate()
    want, want_norm = _oracle_cos(sc)
    got = trace["mismatch_cos"]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12, equal_nan=True)
    np.testing.assert_allclose(trace["ref_norm"], want_norm, rtol=1e-9, atol=1e-12,
                               equal_nan=True)
    assert np.isfinite(got).sum() > got.size // 3


def test_blocks_hold_several_ticks_at_small_sizes():
    plan = RecordPlan(100, 4, 5, 2, 8, chunk=64)
    assert probe_plan.block_ticks(plan, 4, 2, 5, 8) == 64
    assert probe_plan.block_ticks(plan, 4, 2048, 2048, 8) == 1


def test_trace_npz_is_stored_uncompressed_unless_asked(tmp_path):
    for compress, kind in ((False, zipfile.ZIP_STORED), (True, zipfile.ZIP_DEFLATED)):
        sc = _scene(2)
        sc["record"]["compress"] = compress
        trace = Prepared("t", sc).simulate()
        folder = tmp_path / str(compress)
        folder.mkdir()
        trace.save(str(folder), compress=compress)
        with zipfile.ZipFile(folder / "trace.npz") as z:
            assert {i.compress_type for i in z.infolist()} == {kind}
