"""The viewer's payload of a schedules run (simulator.view.data.schedules_payload),
without a browser: a run folder holding the synthetic schedules.npz of
tests/schedules_synthetic.py. The wave bits are checked against the hand-written
timetable (frame s forward at stage v at tick s + fwd(v), backward at
s + D + S(v)), the fields against the saved arrays; mistakes are one error line.
The page in a browser: test_schedules_viewer_browser.py."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from schedules_synthetic import NAMES, synthetic_schedules
from simulator.command import main as tickprop
from simulator.view.data import decode, run_payload

FORWARD, BACKWARD, UPDATE = 1, 2, 4


def schedules_run(folder, **kwargs):
    """A schedules run folder (run.json, schedules.npz) of synthetic_schedules(**kwargs)."""
    folder.mkdir(parents=True)
    raw = synthetic_schedules(**kwargs)
    np.savez(folder / "schedules.npz", **raw)
    (folder / "run.json").write_text(json.dumps({"kind": "schedules", "name": "zoo"}))
    return raw


def pipelined_bits(T, levels, after, depth, frames, ends, updates=True):
    """(T, V) wave bits of a pipelined schedule from its timetable, idle from ``ends`` on."""
    t = np.arange(T)[:, None]
    fwd = (t - levels >= 0) & (t - levels < frames) & (t < ends)
    bwd = (t - depth - after >= 0) & (t - depth - after < frames) & (t < ends)
    return FORWARD * fwd + BACKWARD * bwd + UPDATE * (bwd & updates)


def test_a_view_per_schedule_on_one_tick_axis(tmp_path):
    raw = schedules_run(tmp_path / "run")
    p = run_payload(tmp_path / "run")
    assert p["kind"] == "schedules" and [v["label"] for v in p["views"]] == list(NAMES)
    T = 2 * 4 * 16                                  # locked backprop: 16 frames, 2D each
    assert p["ticks"] == list(range(T))
    assert any("1f1b 24" in n for n in p["notes"])
    levels, after = np.arange(1, 5), 3 - np.arange(4)
    for view in p["views"]:
        name = view["label"]
        assert [r["name"] for r in view["rows"]] == ["h1", "h2", "h3", "out"]
        assert [r["label"] for r in view["rows"]] == ["h1 (1)", "h2 (2)", "h3 (3)", "out (4)"]
        wave = decode(view["wave"]).astype(int)
        assert wave.shape == (T, 4)
        n = len(raw[f"{name}__forward"])
        if name in ("1f1b", "partime", "sideways", "diffusion"):
            np.testing.assert_array_equal(wave, pipelined_bits(T, levels, after, 4, 16, n))
        if name == "backprop":        # frame s at stage v forward at 8s + v, alone
            fwd_ticks = np.flatnonzero(wave[:, 0] & FORWARD)
            np.testing.assert_array_equal(fwd_ticks, 8 * np.arange(16))
        fwd = decode(view["tags"]["forward"])
        np.testing.assert_array_equal(fwd[:n], raw[f"{name}__forward"])
        assert (fwd[n:] == -1).all()
        delay = decode(view["fields"]["delay"])
        np.testing.assert_array_equal(delay[:n], raw[f"{name}__delay"])
        assert np.isnan(delay[n:]).all()
        np.testing.assert_array_equal(decode(view["fields"]["versions"])[:n],
                                      raw[f"{name}__versions"])
        assert view["bars"]["hi"] == raw[f"{name}__versions"].max()


def test_the_cosine_curve_holds_the_latest_update(tmp_path):
    raw = schedules_run(tmp_path / "run")
    view = run_payload(tmp_path / "run")["views"][NAMES.index("2bw")]
    cos = decode(view["fields"]["mismatch_cos"])
    saved = raw["2bw__cosine"]
    for v in range(4):
        ticks = np.flatnonzero(np.isfinite(saved[:, v]))
        assert np.isnan(cos[:ticks[0], v]).all()
        for a, b in zip(ticks, list(ticks[1:]) + [len(saved)]):
            assert (cos[a:b, v] == np.float32(saved[a, v])).all()     # float32 in the page
        assert np.isnan(cos[len(saved):, v]).all()


def test_the_cli_writes_the_page(tmp_path):
    schedules_run(tmp_path / "run")
    res = CliRunner().invoke(tickprop, ["view", str(tmp_path / "run"), "--no-open"])
    assert res.exit_code == 0 and "view written" in res.output, res.output
    page = (tmp_path / "run" / "view.html").read_text(encoding="utf-8")
    assert '"kind":"schedules"' in page and "update marks" in page


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "schedules.npz").unlink(), "schedules.npz"),
    (lambda d: np.savez(d / "schedules.npz", **{k: v for k, v in synthetic_schedules().items()
                                                  if k != "sideways__backward"}),
     "sideways__backward"),
])
def test_a_missing_file_or_array_is_one_error_line(tmp_path, damage, message):
    schedules_run(tmp_path / "run")
    damage(tmp_path / "run")
    res = CliRunner().invoke(tickprop, ["view", str(tmp_path / "run"), "--no-open"])
    lines = res.output.strip().splitlines()
    assert res.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: ")
    assert message in lines[0], lines
    assert not (tmp_path / "run" / "view.html").exists()
