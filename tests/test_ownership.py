"""Ownership by manifest (issue 19): every folder tickprop writes lists what it
wrote in tickprop-manifest.json, a folder is replaced or reused only if it
holds exactly that, and no temporary outlives its command -- a SIGKILL right
before a file's rename (the test hook) leaves nothing the next command does
not remove. Real folders, real user files, real subprocesses."""
import errno
import hashlib
import json
import multiprocessing
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from simulator.command import main as tickprop
from simulator import files, outputs
from simulator import manifest as manifests
from simulator import sweep as sweeps
from cli_errors import one_error_line

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK = ["--ticks", "5", "--no-gif", "--no-png", "--quiet"]
PNG = ["--ticks", "5", "--no-gif", "--quiet"]
TINY_SWEEP = ('description = "tiny"\nkind = "sweep"\n[sweep]\nbase = "fig3_fast"\n'
              'seeds = [0]\n[sweep.set]\n"run.ticks" = 5\n"network.depth" = 3\n'
              '"record.states" = false\n[sweep.grid]\n"stream.hold" = [1]\n')


def invoke(runner, *args):
    return runner.invoke(tickprop, list(args))


def ok(res):
    assert res.exit_code == 0, res.output
    return res



def refuse_simulating(monkeypatch):
    """From now on, fail the test if a command gets as far as simulating or
    running a sweep point."""
    from simulator import runner as runner_mod

    def boom(*a, **k):
        raise AssertionError("worked although the output folder was refused")
    monkeypatch.setattr(runner_mod.Prepared, "simulate", boom)
    monkeypatch.setattr(sweeps, "summarize_point", boom)


def temporaries(path):
    """Every temporary name under ``path`` (files and folders, hidden or not)."""
    found = []
    for root, dirs, names in os.walk(path):
        found += [os.path.join(root, n) for n in dirs + names
                  if ".tmp" in n or ".old-" in n or n == files.TMP_MARK]
    return found


def contents(path):
    """{relative path: bytes (None for a folder)} of everything under ``path``."""
    out = {}
    for root, dirs, names in os.walk(path):
        for name in dirs:
            out[os.path.relpath(os.path.join(root, name), path)] = None
        for name in names:
            with open(os.path.join(root, name), "rb") as f:
                out[os.path.relpath(os.path.join(root, name), path)] = f.read()
    return out


def manifest(folder):
    with open(os.path.join(folder, manifests.MANIFEST)) as f:
        return json.load(f)["files"]


def cli_run(cwd, *args, kill_at=None):
    """``tickprop ARGS`` in a fresh process; with ``kill_at`` the test hook
    SIGKILLs it right before that file's rename."""
    env = dict(os.environ, PYTHONPATH=REPO)
    env.pop(files.KILL_HOOK, None)
    if kill_at:
        env[files.KILL_HOOK] = kill_at
    return subprocess.run([sys.executable, "-m", "simulator", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def done(proc):
    assert proc.returncode == 0, proc.stderr
    return proc


def killed(proc):
    assert proc.returncode == -9, (proc.returncode, proc.stderr)
    return proc


# ------------------------------------------------------------------ the manifest
def test_every_output_lists_each_file_with_its_size_and_sha256(runner):
    ok(invoke(runner, "run", "fig3_fast", "--out", "o", *PNG))
    listed = manifest("o")
    on_disk = sorted(n for n in os.listdir("o") if n != manifests.MANIFEST)
    assert sorted(listed) == on_disk == ["mismatch.png", "run.json", "trace.npz", "waves.png"]
    for name, entry in listed.items():
        data = open(os.path.join("o", name), "rb").read()
        assert entry == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def test_view_render_and_sweep_record_what_they_write(runner, tmp_path):
    ok(invoke(runner, "run", "fig1_constant", "--out", "o", *PNG))
    ok(invoke(runner, "view", "o", "--no-open"))
    ok(invoke(runner, "render", "o", "--no-png", "--every", "2"))      # adds waves.gif in place
    assert {"view.html", "waves.gif"} <= set(manifest("o"))
    assert manifests.foreign_files("o") == []
    ok(invoke(runner, "render", "o", "--out", "r", "--no-gif"))
    assert sorted(manifest("r")) == sorted(n for n in os.listdir("r") if n != manifests.MANIFEST)
    (tmp_path / "tiny.toml").write_text(TINY_SWEEP)
    ok(invoke(runner, "sweep", "tiny.toml", "--quiet", "--out", "sw"))
    listed = manifest("sw")
    assert "sweep.csv" in listed and [p for p in listed if p.startswith("points/")]
    assert manifests.foreign_files("sw") == []


def _record_many(folder, tag, start):
    start.wait()
    with manifests.recording(folder):
        for i in range(30):
            files.write_text(os.path.join(folder, f"{tag}{i}.txt"), f"{tag} {i}\n" * (i + 1))
            files.write_text(os.path.join(folder, "shared.txt"), f"{tag} {i}\n")


def test_concurrent_processes_recording_one_folder_lose_no_entry(tmp_path):
    out = str(tmp_path / "o")
    outputs.write_folder(out, lambda folder: {"name": "t"})
    ctx = multiprocessing.get_context("fork")
    start = ctx.Event()
    procs = [ctx.Process(target=_record_many, args=(out, tag, start)) for tag in "abcd"]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    assert len(manifest(out)) == 1 + 4 * 30 + 1          # run.json, 120 files, shared.txt
    assert manifests.foreign_files(out) == []
    assert temporaries(out) == []


# ------------------------------------------------------------------ data loss (issue 19)
def test_points_folder_beside_user_files_is_not_a_sweep(runner, monkeypatch):
    """mkdir -p paper/points; echo x > paper/results.csv; tickprop run fig1_constant --out paper"""
    refuse_simulating(monkeypatch)
    os.makedirs("paper/points")
    open("paper/results.csv", "w").write("x\n")
    line = one_error_line(invoke(runner, "run", "fig1_constant", "--out", "paper", *QUICK))
    assert "results.csv" in line and "--force" in line
    assert open("paper/results.csv").read() == "x\n" and os.path.isdir("paper/points")


def test_run_json_with_scene_and_versions_of_another_tool_is_refused(runner, monkeypatch):
    refuse_simulating(monkeypatch)
    os.makedirs("theirs")
    meta = {"name": "analysis", "scene": {"a": 1}, "versions": {"numpy": "2"}}
    json.dump(meta, open("theirs/run.json", "w"))
    open("theirs/fit.csv", "w").write("1,2\n")
    line = one_error_line(invoke(runner, "run", "fig3_fast", "--out", "theirs", *QUICK))
    assert "run.json" in line and "--force" in line
    assert json.load(open("theirs/run.json")) == meta and os.path.isfile("theirs/fit.csv")


def test_a_note_added_inside_an_earlier_output_is_kept(runner, monkeypatch, tmp_path):
    """echo notes > o/my_notes.md, then a run (or a sweep) into o."""
    ok(invoke(runner, "run", "fig3_fast", "--out", "o", *QUICK))
    open("o/my_notes.md", "w").write("notes\n")
    (tmp_path / "tiny.toml").write_text(TINY_SWEEP)
    refuse_simulating(monkeypatch)
    for command in (["run", "fig3_fast", "--out", "o", *QUICK],
                    ["sweep", "tiny.toml", "--quiet", "--out", "o"]):
        line = one_error_line(invoke(runner, *command))
        assert "my_notes.md" in line and "not written by tickprop" in line and "--force" in line
        assert open("o/my_notes.md").read() == "notes\n"
    assert manifests.foreign_files("o") == [("my_notes.md", manifests.FOREIGN)]


def test_a_file_changed_since_is_refused_even_at_the_same_size(runner, monkeypatch):
    ok(invoke(runner, "run", "fig3_fast", "--out", "o", *QUICK))
    data = bytearray(open("o/trace.npz", "rb").read())
    data[-1] ^= 0xFF                                   # same size, other bytes
    open("o/trace.npz", "wb").write(bytes(data))
    refuse_simulating(monkeypatch)
    line = one_error_line(invoke(runner, "run", "fig3_fast", "--out", "o", *QUICK))
    assert "trace.npz (changed since tickprop wrote it)" in line
    assert open("o/trace.npz", "rb").read() == bytes(data)


def test_many_foreign_files_are_named_a_few_then_counted(runner, monkeypatch):
    refuse_simulating(monkeypatch)
    os.makedirs("mine/sub")
    for i in range(8):
        open(f"mine/f{i}.txt", "w").write("x")
    line = one_error_line(invoke(runner, "run", "fig3_fast", "--out", "mine", *QUICK))
    assert "f0.txt, f1.txt, f2.txt, f3.txt, f4.txt (not written by tickprop) and 4 more" in line


def test_a_fifo_in_an_output_is_foreign_and_never_read(runner, monkeypatch):
    ok(invoke(runner, "run", "fig3_fast", "--out", "o", *QUICK))
    os.mkfifo("o/pipe")
    refuse_simulating(monkeypatch)
    line = one_error_line(invoke(runner, "run", "fig3_fast", "--out", "o", *QUICK))
    assert "pipe" in line
    os.remove("o/trace.npz")
    os.mkfifo("o/trace.npz")                          # where a listed file was: never opened
    assert ("trace.npz", manifests.CHANGED) in manifests.foreign_files("o")


def test_force_still_replaces_and_a_damaged_manifest_is_named(runner):
    ok(invoke(runner, "run", "fig3_fast", "--out", "o", *QUICK))
    open("o/my_notes.md", "w").write("notes\n")
    ok(invoke(runner, "run", "fig3_fast", "--out", "o", "--force", *QUICK))
    assert not os.path.exists("o/my_notes.md") and manifests.foreign_files("o") == []
    open(os.path.join("o", manifests.MANIFEST), "w").write("{")
    line = one_error_line(invoke(runner, "run", "fig3_fast", "--out", "o", *QUICK))
    assert f"{manifests.MANIFEST} (damaged)" in line


def test_in_place_writers_refuse_a_file_changed_since(runner):
    ok(invoke(runner, "run", "fig1_constant", "--out", "o", *PNG))
    ok(invoke(runner, "view", "o", "--no-open"))
    page = open("o/view.html").read().replace("</body>", "<p>my remark</p></body>")
    open("o/view.html", "w").write(page)
    line = one_error_line(invoke(runner, "view", "o", "--no-open"))
    assert "view.html" in line and "changed since" in line
    assert open("o/view.html").read() == page
    open("o/waves.png", "ab").write(b"edited")
    line = one_error_line(invoke(runner, "render", "o", "--no-gif"))
    assert "waves.png" in line and "changed since" in line
    assert open("o/waves.png", "rb").read().endswith(b"edited")


# ------------------------------------------------------------------ happy paths
def test_own_outputs_are_rerun_resumed_rendered_and_viewed(runner, tmp_path):
    for _ in range(2):
        ok(invoke(runner, "run", "fig1_constant", "--out", "o", *PNG))
    ok(invoke(runner, "render", "o", "--no-gif"))                   # in place
    ok(invoke(runner, "view", "o", "--no-open"))                     # view.html in the run
    ok(invoke(runner, "run", "fig1_constant", "--out", "o", *PNG))   # and again over all that
    assert not os.path.exists("o/view.html") and manifests.foreign_files("o") == []
    for _ in range(2):
        ok(invoke(runner, "render", "o", "--out", "r", "--no-gif"))
    (tmp_path / "tiny.toml").write_text(TINY_SWEEP)
    ok(invoke(runner, "sweep", "tiny.toml", "--quiet", "--out", "sw"))
    before = manifest("sw")
    res = ok(invoke(runner, "sweep", "tiny.toml", "--out", "sw"))   # resumes: nothing to run
    assert "(0 run now" in res.output and manifest("sw") == before
    assert temporaries(".") == []


def test_outputs_of_the_version_before_manifests_are_refused_and_kept(runner, monkeypatch,
                                                                      tmp_path):
    """No compatibility rule: a folder as the version before manifests left it
    is foreign, refused with one error line, and left byte for byte."""
    ok(invoke(runner, "run", "fig1_constant", "--out", "o", *PNG))
    (tmp_path / "tiny.toml").write_text(TINY_SWEEP)
    ok(invoke(runner, "sweep", "tiny.toml", "--quiet", "--out", "sw"))
    for folder in ("o", "sw"):                         # as that version left them
        os.remove(os.path.join(folder, manifests.MANIFEST))
    open("o/.trace.npz.0123456789ab.tmp", "wb").write(b"half")       # its kind of leftover
    before = contents(".")
    refuse_simulating(monkeypatch)
    for command in (["run", "fig1_constant", "--out", "o", *QUICK],
                    ["sweep", "tiny.toml", "--quiet", "--out", "sw"]):
        line = one_error_line(invoke(runner, *command))
        assert "(not written by tickprop)" in line and "--force" in line
    assert contents(".") == before
    assert (".trace.npz.0123456789ab.tmp", manifests.FOREIGN) in manifests.foreign_files("o")


# ------------------------------------------------------------------ temporaries
def test_live_temporaries_are_left_alone_and_stale_ones_removed(tmp_path):
    out = str(tmp_path / "o")
    outputs.write_folder(out, lambda folder: {"name": "t"})
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    tag = files.HOST_TAG
    live = f".run.json.tmp-{os.getpid()}-{tag}01234567"
    stale = f".run.json.tmp-{dead.pid}-{tag}01234567"
    elsewhere = f".run.json.tmp-{dead.pid}-{'0000' if tag != '0000' else '1111'}01234567"
    for name in (live, stale, elsewhere):
        open(os.path.join(out, name), "w").write("half")
    problems = manifests.foreign_files(out)
    assert sorted(os.listdir(out)) == sorted([manifests.MANIFEST, "run.json", live, elsewhere])
    assert problems == [(elsewhere, manifests.FOREIGN)]    # another host's: not provably stale


def test_a_failed_run_removes_every_parent_folder_it_made(runner, monkeypatch):
    from simulator.probes import Trace
    os.makedirs("keep")

    def full(*a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(Trace, "save", full)
    one_error_line(invoke(runner, "run", "fig3_fast", "--out", "new1/new2/out", *QUICK))
    one_error_line(invoke(runner, "run", "fig3_fast", "--out", "keep/new3/out", *QUICK))
    assert sorted(os.listdir(".")) == ["keep"] and os.listdir("keep") == []


@pytest.mark.parametrize("kill_at", ["view.html", manifests.MANIFEST])
def test_sigkill_at_the_rename_of_view_html_leaves_nothing_after_the_next_command(tmp_path,
                                                                                   kill_at):
    """The page replaces an earlier one: killed between the manifest's update
    and the rename, the folder still holds only what its manifest lists."""
    done(cli_run(tmp_path, "run", "fig1_constant", "--out", "o", *QUICK))
    done(cli_run(tmp_path, "run", "fig1_constant", "--out", "p", *QUICK, "--ticks", "7"))
    done(cli_run(tmp_path, "view", "o", "--no-open"))
    killed(cli_run(tmp_path, "view", "p", "--out", "o/view.html", "--no-open", kill_at=kill_at))
    assert temporaries(tmp_path / "o")                 # what the kill left ...
    assert manifests.foreign_files(str(tmp_path / "o")) == []
    done(cli_run(tmp_path, "view", "o", "--no-open"))
    assert temporaries(tmp_path) == []                 # ... the next command removed
    assert manifests.foreign_files(str(tmp_path / "o")) == []
    done(cli_run(tmp_path, "run", "fig1_constant", "--out", "o", *QUICK))


def test_sigkill_at_the_rename_of_a_sweep_point_leaves_nothing_after_the_resume(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_SWEEP)
    (point,) = sweeps.plan_sweep(str(path))[4]
    killed(cli_run(tmp_path, "sweep", "tiny.toml", "--quiet", "--out", "sw",
                   kill_at=f"points/{point.key}.json"))
    assert temporaries(tmp_path / "sw")
    res = done(cli_run(tmp_path, "sweep", "tiny.toml", "--out", "sw"))
    assert "(1 run now" in res.stdout
    assert temporaries(tmp_path) == []
    assert manifests.foreign_files(str(tmp_path / "sw")) == []


@pytest.mark.parametrize("kill_at", ["o/waves.png", "waves.png"])
def test_sigkill_in_an_in_place_render_leaves_nothing_after_the_next_render(tmp_path, kill_at):
    """At the picture's move into the run folder, or while drawing it in the scratch folder."""
    done(cli_run(tmp_path, "run", "fig3_fast", "--out", "o", *PNG))
    killed(cli_run(tmp_path, "render", "o", "--no-gif", "--color", "tag", kill_at=kill_at))
    assert temporaries(tmp_path / "o")
    assert manifests.foreign_files(str(tmp_path / "o")) == []
    done(cli_run(tmp_path, "render", "o", "--no-gif"))
    assert temporaries(tmp_path) == []
    assert manifests.foreign_files(str(tmp_path / "o")) == []
    done(cli_run(tmp_path, "run", "fig3_fast", "--out", "o", *QUICK))


def test_sigkill_in_a_render_out_leaves_nothing_after_the_next_render(tmp_path):
    done(cli_run(tmp_path, "run", "fig3_fast", "--out", "o", *PNG))
    killed(cli_run(tmp_path, "render", "o", "--out", "r", "--no-gif", kill_at="waves.png"))
    assert temporaries(tmp_path) and not os.path.exists(tmp_path / "r")
    done(cli_run(tmp_path, "render", "o", "--out", "r", "--no-gif"))
    assert temporaries(tmp_path) == []
    assert manifests.foreign_files(str(tmp_path / "r")) == []


def test_render_errors_name_the_run_folder_not_a_scratch_folder(runner):
    ok(invoke(runner, "run", "fig3_fast", "--out", "o", *PNG))
    open("o/trace.npz", "wb").write(b"PK\x03\x04 not a zip")
    for extra in ([], ["--out", "r"]):
        line = one_error_line(invoke(runner, "render", "o", *extra))
        assert "o/trace.npz" in line, line
        assert ".tmp" not in line and "tickprop-render" not in line, line
    assert temporaries(".") == [] and not os.path.exists("r")


def test_a_run_folder_render_cannot_write_in_is_named_not_its_scratch(runner, monkeypatch):
    ok(invoke(runner, "run", "fig3_fast", "--out", "o", *PNG))

    def read_only(path):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)
    monkeypatch.setattr(files, "make_tmp", read_only)
    line = one_error_line(invoke(runner, "render", "o", "--no-gif"))
    assert "Read-only file system" in line and "o" in line, line
    assert ".tmp" not in line and "tickprop-render" not in line, line


def test_what_a_killed_write_or_a_file_browser_leaves_does_not_block_a_sweep(tmp_path):
    """A point killed while its temporary was still being written (before the
    manifest lists it) leaves a stale temporary in points/; Finder leaves a
    .DS_Store. Neither is the user's: the sweep resumes, the temporary goes."""
    out = tmp_path / "sw"
    outputs.claim_folder(str(out))
    (out / "points").mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = out / "points" / f".{'a' * 64}.json.tmp-{dead.pid}-{files.HOST_TAG}01234567"
    stale.write_text('{"half')
    (out / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    assert manifests.foreign_files(str(out)) == []
    assert not stale.exists()
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_SWEEP)
    assert sweeps.run_sweep(str(path), str(out))["ran"] == 1
    assert ".DS_Store" not in manifest(out)


def test_an_output_of_any_kind_without_its_manifest_is_foreign(tmp_path):
    """An output of every kind, its manifest taken away (as the version before
    manifests left it): every file in it is named foreign, and check_out
    refuses it and leaves it as it was."""
    import glob
    from simulator import scene as scenes
    from test_fuzz import fast_scene, write_scene
    seen = set()
    for path in sorted(glob.glob(os.path.join(scenes.SCENES_DIR, "*.toml"))):
        doc = fast_scene(path)
        kind = json.loads(doc.get("kind", '"diffusion"'))
        if kind in seen or kind == "sweep":
            continue
        seen.add(kind)
        scene_path = tmp_path / os.path.basename(path)
        write_scene(doc, scene_path)
        out = tmp_path / kind
        res = CliRunner().invoke(tickprop, ["run", str(scene_path), "--out", str(out), "--quiet",
                                            "--no-gif"])
        assert res.exit_code == 0, (path, res.output)
        os.remove(out / manifests.MANIFEST)
        before = contents(out)
        assert manifests.foreign_files(str(out)) == [
            (name, manifests.FOREIGN) for name in sorted(os.listdir(out))], kind
        with pytest.raises(files.OutputError, match="not written by tickprop"):
            outputs.check_out(str(out))
        assert contents(out) == before, kind


def test_view_never_replaces_a_tickprop_file_that_is_not_a_page(runner):
    """run.json is listed in the manifest as it is, but it is no view: --out
    pointing at it must not replace it."""
    ok(invoke(runner, "run", "fig1_constant", "--out", "o", *QUICK))
    before = open("o/run.json").read()
    for target in ("o/run.json", f"o/{manifests.MANIFEST}"):
        line = one_error_line(invoke(runner, "view", "o", "--out", target, "--no-open"))
        assert "not written by tickprop view" in line
    assert open("o/run.json").read() == before and manifests.foreign_files("o") == []
