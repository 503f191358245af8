"""Golden outputs: today's tick engines replay every run of the option grid
recorded in tests/golden/ (tests/golden/record.py says what and why).

Oracle: the engines' own trajectories as recorded at an earlier commit, so
this tier guards refactoring (merging engines, executors, recorders), not
correctness, which the reference and finite-difference tiers check. A
failure names the run (model|derivative|pairing|feedback|mode), the array and
the first tick that moved.
"""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "golden"))
import record as golden  # noqa: E402

RTOL = 1e-12


def _close(name, what, got, want, labels=None):
    """Equal within RTOL of each array's largest magnitude over the run."""
    assert got.shape == want.shape, f"{name}: {what} has shape {got.shape}, recorded {want.shape}"
    scale = np.nanmax(np.abs(want), axis=0, initial=0.0) if want.ndim > 1 else np.abs(want)
    bad = ~np.isclose(got, want, rtol=RTOL, atol=RTOL * np.maximum(scale, 1e-300), equal_nan=True)
    if bad.any():
        where = np.argwhere(bad)[0]
        label = labels[where[-1]] if labels is not None else where[-1]
        tick = f" tick {where[0]}" if got.ndim > 1 else ""
        pytest.fail(f"{name}: {what} {label}{tick}: got {got[tuple(where)]!r}, recorded "
                    f"{want[tuple(where)]!r}")


@pytest.mark.parametrize("model", list(golden.models()))
def test_every_run_of_the_option_grid_replays_the_recorded_trajectory(model):
    with np.load(golden.golden_path(model)) as data:
        recorded = {k: data[k] for k in data.files}
    combos = [c for c in golden.grid() if c[0] == model]
    assert len(recorded) == 3 * len(combos) == 3 * 200
    for combo in combos:
        name = golden.run_name(*combo)
        with np.errstate(all="ignore"):
            values, params, tags = golden.run(*combo)
        _close(name, "state", values, recorded[name + "|values"])
        _close(name, "parameter", params, recorded[name + "|params"])
        want = recorded[name + "|tags"]
        assert tags.shape == want.shape and np.array_equal(tags, want), \
            f"{name}: tags differ first at tick {np.argwhere(tags != want)[0][0]}"


def test_the_fingerprint_sees_a_change_of_one_value_in_the_last_bits():
    """A change of one entry by 1e-9 relative moves the projection beyond RTOL,
    while rounding noise on every entry (a few ulps, as another summation order
    gives) does not."""
    g = np.random.default_rng(0)
    a = g.normal(size=(2, 7))
    moved = a.copy()
    moved[1, 3] *= 1 + 1e-9
    rounded = a * (1 + 4e-16 * g.choice([-1.0, 1.0], size=a.shape))
    f = golden.fingerprint(a)
    assert not np.isclose(golden.fingerprint(moved), f, rtol=RTOL, atol=0)
    assert np.isclose(golden.fingerprint(rounded), f, rtol=RTOL, atol=0)


# ------------------------------------------------------------ shipped scenes
import json  # noqa: E402

import scenes as golden_scenes  # noqa: E402

with open(golden_scenes.PATH) as _f:
    SCENES = json.load(_f)


def _assert_same_prints(where, got, want):
    """Every recorded fingerprint is there again, equal (floats within RTOL
    of their scale, everything else exactly); nothing new appeared."""
    assert sorted(got) == sorted(want), \
        f"{where}: saved numbers differ in name: {sorted(set(got) ^ set(want))[:5]}"
    for key, w in want.items():
        g = got[key]
        if isinstance(w, dict) and "value" in w:
            assert {k: v for k, v in g.items() if k not in ("value", "scale")} == \
                   {k: v for k, v in w.items() if k not in ("value", "scale")}, f"{where}: {key}"
            assert abs(g["value"] - w["value"]) <= RTOL * max(w["scale"], 1e-300), \
                f"{where}: {key}: projection {g['value']!r}, recorded {w['value']!r}"
        elif isinstance(w, float) and isinstance(g, (int, float)) and not isinstance(g, bool):
            assert abs(g - w) <= RTOL * abs(w) + 1e-12, f"{where}: {key}: {g!r}, recorded {w!r}"
        else:
            assert g == w, f"{where}: {key}: {g!r}, recorded {w!r}"


def test_every_shipped_scene_but_sweeps_is_recorded():
    assert sorted(SCENES) == sorted(golden_scenes.shipped())


@pytest.mark.parametrize("name", sorted(SCENES))
def test_a_short_run_of_every_shipped_scene_and_its_replay_give_the_recorded_numbers(
        name, tmp_path):
    want = SCENES[name]["fingerprints"]
    _, got = golden_scenes.run_short(name, str(tmp_path / "run"))
    _assert_same_prints(name, got, want)
    recorded = tmp_path / "recorded_run.json"        # today's run.json of the same run
    recorded.write_text(json.dumps(SCENES[name]["run.json"]))
    from simulator import kinds, scene as scenes
    replay_name, resolved = scenes.load(str(recorded))
    meta = kinds.run_scene(replay_name, resolved, str(tmp_path / "replay"),
                           draw_options={"png": False, "gif": False})
    _assert_same_prints(f"{name} (replayed run.json)",
                 golden_scenes.fingerprint_folder(str(tmp_path / "replay"), meta), want)
