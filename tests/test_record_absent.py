"""Nothing is allocated or written for what a run does not record: without
metrics the recorder holds no metric arrays, trace.npz has none, and every
reader (Trace, render, view, the summary) copes with their absence."""
import numpy as np
from click.testing import CliRunner

from simulator.command import main as tickprop
from simulator.probes import METRIC_KEYS, Trace
from simulator.runner import Prepared
from simulator.scene import apply_overrides, load, validate


def _scene(metrics, states=False):
    return validate({"network": {"depth": 3, "width": 4, "inputs": 3, "outputs": 2},
                     "stream": {"kind": "held", "hold": 2, "batch": 2},
                     "record": {"metrics": metrics, "states": states, "chunk": 8},
                     "run": {"ticks": 30, "seed": 3}}, "test")


def test_no_metric_arrays_without_metrics(tmp_path):
    prepared = Prepared("t", _scene(False))
    trace = prepared.simulate()
    assert not any(k in trace.arrays for k in METRIC_KEYS)
    # what the budget charges is what is kept: no metric parts at all
    assert not {"reference ring", "metric work"} & set(prepared.budget.items)
    with_metrics = Prepared("t", _scene(True))
    assert prepared.plan.size() < with_metrics.plan.size()
    trace.save(str(tmp_path))
    with np.load(tmp_path / "trace.npz") as data:
        assert not set(METRIC_KEYS) & set(data.files)
        assert "x_norm" in data.files
    loaded = Trace.load(str(tmp_path), meta={"name": "t"})
    assert "mismatch_cos" not in loaded
    assert loaded["mismatch_cos"].shape == (30, 3) and np.isnan(loaded["mismatch_cos"]).all()
    # the norms and tags are those of the same run with metrics
    full = with_metrics.simulate()
    for key in ("x_norm", "delta_norm", "tag_pair", "tag_supervision"):
        np.testing.assert_array_equal(trace[key], full[key])


def test_render_view_and_summary_of_a_run_without_metrics(tmp_path):
    out = tmp_path / "run"
    runner = CliRunner()
    res = runner.invoke(tickprop, ["run", "scenes/fig3_fast.toml", "--ticks", "60", "--set",
                                   "record.metrics=false", "--out", str(out), "--no-gif"])
    assert res.exit_code == 0, res.output
    assert "no layer has a gradient mismatch recorded" in res.output
    with np.load(out / "trace.npz") as data:
        assert not set(METRIC_KEYS) & set(data.files)
    res = runner.invoke(tickprop, ["render", str(out), "--no-gif"])
    assert res.exit_code == 0, res.output
    assert (out / "mismatch.png").is_file()
    res = runner.invoke(tickprop, ["view", str(out), "--no-open"])
    assert res.exit_code == 0, res.output
    assert (out / "view.html").stat().st_size > 0


def test_graph_run_without_metrics_keeps_no_metric_arrays():
    name, scene = load("conv_digits")
    scene = apply_overrides(scene, ["run.ticks=12", "record.metrics=false"], name)
    trace = Prepared(name, scene).simulate()
    assert not any(k in trace.arrays for k in METRIC_KEYS)
    assert np.isnan(trace["mismatch_cos"]).all() and "vertex_names" in trace
