"""`tickprop render RUN_DIR [--out DIR] [--ticks A:B] [--layers ...] [--neurons ...]`:
re-draws without simulating; --out leaves RUN_DIR byte for byte and writes a
complete folder; the selectors change what is drawn; bad values are one line."""
import hashlib
import json
import os
import struct

import imageio.v3 as iio
import numpy as np
import pytest

from simulator.command import main as tickprop
from cli_errors import one_error_line

RUN = "outputs/fig3_fast"


@pytest.fixture
def fig3(runner):
    res = runner.invoke(tickprop, ["run", "fig3_fast", "--ticks", "40", "--quiet", "--set",
                                   "record.states=true", "--set", "render.every=1"])
    assert res.exit_code == 0, res.output
    return runner


def render(runner, *args):
    res = runner.invoke(tickprop, ["render", *args])
    assert res.exit_code == 0, res.output + res.stderr
    return res



def snapshot(folder):
    out = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
    return out


def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def gif_frames(path):
    return iio.imread(path, index=None)


def test_render_out_leaves_the_run_byte_identical_and_writes_a_complete_folder(fig3):
    before = snapshot(RUN)
    res = render(fig3, RUN, "--out", "part", "--ticks", "10:30", "--layers", "4:7",
                 "--neurons", "0:4")
    assert "part" in res.stdout
    assert snapshot(RUN) == before
    meta = json.load(open("part/run.json"))
    assert meta["tickprop_output"] is True and meta["kind"] == "diffusion"
    assert sorted(meta["pictures"]) == ["mismatch.png", "waves.gif", "waves.png"]
    assert meta["rendered_from"]["select"] == {"ticks": [10, 30], "layers": ["4:7"],
                                               "neurons": ["0:4"]}
    for name in meta["pictures"]:
        assert os.path.getsize(os.path.join("part", name)) > 1000
    assert snapshot("part")["trace.npz"] == before["trace.npz"]     # results copied as they are
    assert not [n for n in os.listdir(".") if n.startswith(".")]     # no temporary left


def test_ticks_window_sets_the_gif_length(fig3):
    render(fig3, RUN, "--out", "all", "--no-png")
    render(fig3, RUN, "--out", "win", "--ticks", "10:30", "--no-png")
    assert len(gif_frames("all/waves.gif")) == 40
    assert len(gif_frames("win/waves.gif")) == 20
    render(fig3, RUN, "--out", "tail", "--ticks", "35:", "--no-png")
    assert len(gif_frames("tail/waves.gif")) == 5


def test_layers_shrink_the_raster_and_neurons_change_the_gif(fig3):
    render(fig3, RUN, "--out", "all", "--no-gif")
    render(fig3, RUN, "--out", "few", "--no-gif", "--layers", "4:7")
    # a chain of 10 layers drawn whole vs 4 rows (0, 4, 5, 6): the same
    # picture width, and the raster's rows are what grows with the height
    w_all, _ = png_size("all/waves.png")
    w_few, _ = png_size("few/waves.png")
    assert w_all == w_few
    a, b = (iio.imread(p)[..., :3].astype(int) for p in ("all/waves.png", "few/waves.png"))
    assert a.shape != b.shape or np.abs(a - b).sum() > 0
    render(fig3, RUN, "--out", "n2", "--no-png", "--neurons", "0:2")
    render(fig3, RUN, "--out", "n16", "--no-png")
    assert not np.array_equal(gif_frames("n2/waves.gif")[20], gif_frames("n16/waves.gif")[20])


def test_in_place_render_replaces_only_the_pictures(fig3):
    before = snapshot(RUN)
    render(fig3, RUN, "--ticks", "0:20")
    after = snapshot(RUN)
    assert set(after) == set(before)
    assert after["trace.npz"] == before["trace.npz"] and after["run.json"] == before["run.json"]
    assert after["waves.gif"] != before["waves.gif"]
    assert len(gif_frames(os.path.join(RUN, "waves.gif"))) == 20


@pytest.mark.parametrize("args, word", [
    (["--ticks", "30:10"], "--ticks"), (["--ticks", "abc"], "--ticks"),
    (["--ticks", "500:600"], "ticks"), (["--layers", "nope"], "layers"),
    (["--layers", "99"], "layers"), (["--layers", "3:3"], "--layers"),
    (["--neurons", "x"], "--neurons"), (["--neurons", "50"], "neurons"),
    (["--out", "outputs/fig3_fast/inside"], "--out"),
])
def test_bad_selections_are_one_error_line_and_write_nothing(fig3, args, word):
    before = snapshot(RUN)
    line = one_error_line(fig3.invoke(tickprop, ["render", RUN, "--out", "new", *args]
                                      if "--out" not in args else ["render", RUN, *args]))
    assert word in line
    assert snapshot(RUN) == before and not os.path.exists("new")


def test_neurons_of_a_run_without_states_is_refused(runner):
    runner.invoke(tickprop, ["run", "fig1_constant", "--ticks", "20", "--quiet", "--set",
                             "record.states=false"])
    line = one_error_line(runner.invoke(tickprop, ["render", "outputs/fig1_constant",
                                                   "--neurons", "0:3"]))
    assert "record.states" in line


def test_selectors_of_kinds_without_them_name_the_kinds_they_apply_to(runner):
    runner.invoke(tickprop, ["run", "locking", "--quiet", "--set", "locking.frames=2",
                             "--set", "locking.depth=3"])
    for option in ("--ticks", "--layers", "--neurons"):
        line = one_error_line(runner.invoke(tickprop, ["render", "outputs/locking", option, "1"]))
        assert option in line and "locking" in line and "diffusion" in line


def test_graph_layers_by_vertex_name(runner):
    runner.invoke(tickprop, ["run", "residual_levelling", "--ticks", "30", "--quiet"])
    folder = "outputs/residual_levelling"
    render(runner, folder, "--out", "all", "--no-gif")
    render(runner, folder, "--out", "h3", "--no-gif", "--layers", "h3,out")
    assert png_size("h3/waves.png")[1] <= png_size("all/waves.png")[1]
    assert snapshot("h3")["waves.png"] != snapshot("all")["waves.png"]
    line = one_error_line(runner.invoke(tickprop, ["render", folder, "--layers", "h4"]))
    assert "h4" in line and "did you mean" in line


def test_out_over_a_foreign_folder_needs_force(fig3):
    os.makedirs("mine")
    open("mine/notes.txt", "w").write("keep")
    line = one_error_line(fig3.invoke(tickprop, ["render", RUN, "--out", "mine"]))
    assert "--force" in line and open("mine/notes.txt").read() == "keep"


def test_a_run_file_render_out_cannot_read_is_no_write_error(fig3, monkeypatch):
    """render --out copies the run's results while its new folder is filled:
    a source file that cannot be read is named with the OS's reason, not
    called 'cannot write', and nothing is written."""
    import builtins
    import errno
    real_open = builtins.open
    source = os.path.join(RUN, "trace.npz")

    def failing(path, mode="r", *a, **k):
        if str(path).endswith(source) and "r" in mode:
            raise OSError(errno.EIO, os.strerror(errno.EIO), path)
        return real_open(path, mode, *a, **k)
    monkeypatch.setattr(builtins, "open", failing)
    line = one_error_line(fig3.invoke(tickprop, ["render", RUN, "--out", "part", "--no-gif"]))
    assert source in line and "Input/output error" in line, line
    assert "cannot write" not in line, line
    assert not os.path.exists("part")
