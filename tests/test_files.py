"""Outputs are sacred: what --out may replace, how it is replaced (one exchange,
or a backup the next run restores), what killed runs leave and who cleans it,
and the single-file writers. Expectations come from the rules in the README
(Outputs), checked on real folders, real subprocesses and real signals."""
import errno
import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.command import main as tickprop
from simulator import files, manifest, outputs, points
from simulator.errors import SimulatorError
from cli_errors import one_error_line

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK = ["--ticks", "5", "--no-gif", "--no-png", "--quiet"]


def invoke(runner, *args):
    return runner.invoke(tickprop, list(args))


def snapshot(path):
    """Every file, folder and link under ``path`` with its bytes or target."""
    out = {}
    for root, dirs, names in os.walk(path):
        for name in dirs + names:
            full = os.path.join(root, name)
            rel = os.path.relpath(full, path)
            if os.path.islink(full):
                out[rel] = ("link", os.readlink(full))
            elif os.path.isdir(full):
                out[rel] = ("dir",)
            else:
                with open(full, "rb") as f:
                    out[rel] = ("file", f.read())
    return out


def user_folder(path):
    os.makedirs(os.path.join(path, "sub"))
    for rel, text in (("notes.txt", "my thesis"), ("sub/data.csv", "1,2,3\n")):
        with open(os.path.join(path, rel), "w") as f:
            f.write(text)
    return snapshot(path)



def leftovers(parent):
    return [n for n in os.listdir(parent) if ".tmp-" in n or ".old-" in n or n.startswith(".old")]


@pytest.fixture
def no_simulation(monkeypatch):
    """Fail the test if a run gets as far as simulating."""
    from simulator import runner as runner_mod

    def boom(*a, **k):
        raise AssertionError("simulated although the output folder was refused")
    monkeypatch.setattr(runner_mod.Prepared, "simulate", boom)


# ------------------------------------------------------------------ 1. what may be replaced
def test_folder_of_user_files_is_refused_before_any_work(runner, no_simulation):
    before = user_folder("mine")
    line = one_error_line(invoke(runner, "run", "fig3_fast", "--out", "mine", *QUICK))
    assert "mine" in line and "not a tickprop output" in line and "--force" in line
    assert snapshot("mine") == before
    assert leftovers(".") == []


def test_out_dot_inside_a_checkout_is_refused_even_with_force(runner, tmp_path, no_simulation):
    checkout = tmp_path / "repo"
    before = user_folder(checkout)
    os.makedirs(checkout / ".git")
    (checkout / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    before = snapshot(checkout)
    os.chdir(checkout)
    for extra in ([], ["--force"]):
        line = one_error_line(invoke(runner, "run", "fig3_fast", "--out", ".", *QUICK, *extra))
        assert "current folder" in line
        assert snapshot(checkout) == before
        assert leftovers(tmp_path) == []


def test_a_checkout_elsewhere_is_refused_even_with_force(runner, tmp_path, no_simulation):
    before = user_folder("clone")
    os.makedirs("clone/deep/.git")
    before = snapshot("clone")
    for extra in ([], ["--force"]):
        one_error_line(invoke(runner, "run", "fig3_fast", "--out", "clone", *QUICK, *extra))
        assert snapshot("clone") == before


def test_force_replaces_a_foreign_folder_but_never_root_or_home(runner, tmp_path, monkeypatch):
    user_folder("mine")
    res = invoke(runner, "run", "fig3_fast", "--out", "mine", "--force", *QUICK)
    assert res.exit_code == 0, res.output
    assert sorted(os.listdir("mine")) == ["run.json", manifest.MANIFEST, "trace.npz"]
    home = tmp_path / "home"
    before = user_folder(home)
    root_before = set(os.listdir("/"))
    monkeypatch.setenv("HOME", str(home))
    for out, why in ((str(home), "home"), ("/", "root"), (str(tmp_path), "current folder")):
        line = one_error_line(invoke(runner, "run", "fig3_fast", "--out", out, "--force", *QUICK))
        assert why in line
    assert snapshot(home) == before and set(os.listdir("/")) == root_before


def test_tickprop_outputs_are_replaced_and_others_even_old_ones_refused(runner):
    res = invoke(runner, "run", "fig3_fast", "--out", "new", *QUICK)
    assert res.exit_code == 0, res.output
    assert json.load(open("new/run.json"))[manifest.MARKER] is True
    assert invoke(runner, "run", "fig3_fast", "--out", "new", *QUICK).exit_code == 0
    os.makedirs("old")                        # the version before manifests: no manifest
    json.dump({manifest.MARKER: True, "kind": "diffusion", "pictures": ["waves.png"]},
              open("old/run.json", "w"))
    open("old/trace.npz", "wb").close()
    open("old/waves.png", "wb").close()
    before = snapshot("old")
    one_error_line(invoke(runner, "run", "fig3_fast", "--out", "old", *QUICK))
    assert snapshot("old") == before
    os.makedirs("other")                      # scene and versions: any tool may write those
    json.dump({"name": "x", "scene": {}, "versions": {"numpy": "1"}}, open("other/run.json", "w"))
    one_error_line(invoke(runner, "run", "fig3_fast", "--out", "other", *QUICK))
    assert json.load(open("other/run.json"))["versions"] == {"numpy": "1"}
    os.makedirs("fake")                       # someone else's run.json
    json.dump({"name": "x"}, open("fake/run.json", "w"))
    one_error_line(invoke(runner, "run", "fig3_fast", "--out", "fake", *QUICK))
    assert json.load(open("fake/run.json")) == {"name": "x"}
    assert leftovers(".") == []


def test_pc_table_and_sweep_refuse_a_foreign_out(runner, tmp_path, no_simulation):
    before = user_folder("mine")
    one_error_line(invoke(runner, "pc-table", "--repeats", "1", "--out", "mine"))
    sweep = tmp_path / "tiny.toml"
    sweep.write_text('description = "tiny"\nkind = "sweep"\n[sweep]\nbase = "fig3_fast"\n'
                     'seeds = [0]\n[sweep.set]\n"run.ticks" = 5\n[sweep.grid]\n"stream.hold" = [1]\n')
    one_error_line(invoke(runner, "sweep", str(sweep), "--quiet", "--out", "mine"))
    assert snapshot("mine") == before


# ------------------------------------------------------------------ 2. one atomic step
def fill_with(tag, pause=0.0):
    """A fill writing a marker file; run.json repeats the tag so a torn folder shows."""
    def fill(folder):
        with open(os.path.join(folder, "data.txt"), "w") as f:
            f.write(tag)
        if pause:
            time.sleep(pause)
        return {"name": "t", "tag": tag}
    return fill


def read_output(path):
    meta = json.load(open(os.path.join(path, "run.json")))
    data = open(os.path.join(path, "data.txt")).read()
    assert meta["tag"] == data, "torn output: run.json and data.txt from different runs"
    return data


@pytest.mark.skipif(outputs._RENAMEAT2 is None, reason="no renameat2 on this system")
def test_replacement_is_one_exchange_the_name_never_missing(tmp_path, monkeypatch):
    out = str(tmp_path / "out")
    outputs.write_folder(out, fill_with("first"))
    calls = []
    real_exchange = outputs._exchange
    monkeypatch.setattr(outputs, "_exchange", lambda a, b: calls.append((a, b)) or real_exchange(a, b))
    stop, missing = threading.Event(), []

    def watch():
        while not stop.is_set():
            if not os.path.isfile(os.path.join(out, "run.json")):
                missing.append(time.perf_counter())

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for i in range(40):
            outputs.write_folder(out, fill_with(f"run{i}"))
    finally:
        stop.set()
        watcher.join()
    assert len(calls) == 40 and missing == []
    assert read_output(out) == "run39"
    assert os.listdir(tmp_path) == ["out"]


def test_fallback_without_exchange_replaces_and_cleans_up(tmp_path, monkeypatch):
    monkeypatch.setattr(outputs, "_exchange", lambda a, b: False)
    out = str(tmp_path / "out")
    outputs.write_folder(out, fill_with("a"))
    outputs.write_folder(out, fill_with("b"))
    assert read_output(out) == "b"
    assert os.listdir(tmp_path) == ["out"]


KILL_SCRIPT = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, {repo!r})
    from simulator import files, outputs
    out, where = sys.argv[1], sys.argv[2]
    def fill(folder):
        open(os.path.join(folder, "data.txt"), "w").write("new")
        return {{"name": "t", "tag": "new"}}
    if where == "between-renames":           # no exchange: die after old -> backup
        outputs._exchange = lambda a, b: False
        real = outputs._rename
        def rename(src, dst):
            real(src, dst)
            os._exit(9)
        outputs._rename = rename
    else:                                      # exchange done, die before deleting the old
        def remove(path, mark=False):
            os._exit(9)
        files.remove_tree = remove
    outputs.write_folder(out, fill)
""")


def killed_writer(tmp_path, where):
    out = str(tmp_path / "out")
    outputs.write_folder(out, fill_with("old"))
    script = tmp_path / "kill.py"
    script.write_text(KILL_SCRIPT.format(repo=REPO))
    proc = subprocess.run([sys.executable, str(script), out, where], capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr
    return out


def test_kill_between_the_fallback_renames_is_undone_by_the_next_run(tmp_path):
    out = killed_writer(tmp_path, "between-renames")
    assert not os.path.exists(out)            # the moment the fallback cannot avoid ...
    backups = [n for n in os.listdir(tmp_path) if n.startswith(".out.old-")]
    assert len(backups) == 1                  # ... but the old output is kept aside
    manifest.clean_stale(str(tmp_path))          # what the next run into this parent does first
    assert read_output(out) == "old"
    assert sorted(os.listdir(tmp_path)) == ["kill.py", "out"]
    outputs.write_folder(out, fill_with("next"))
    assert read_output(out) == "next"


@pytest.mark.skipif(outputs._RENAMEAT2 is None, reason="no renameat2 on this system")
def test_kill_after_the_exchange_leaves_new_output_and_next_run_cleans(tmp_path):
    out = killed_writer(tmp_path, "after-exchange")
    assert read_output(out) == "new"
    stale = [n for n in os.listdir(tmp_path) if n.startswith(".out.tmp-")]
    assert len(stale) == 1
    outputs.write_folder(str(tmp_path / "other"), fill_with("x"))      # any run into the parent
    assert sorted(os.listdir(tmp_path)) == ["kill.py", "other", "out"]


# ------------------------------------------------------------------ 3. stale temporaries
def dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_only_provably_stale_tickprop_temporaries_are_removed(tmp_path):
    dead = dead_pid()
    token = "0123456789ab"

    def make(name, marker=False, content=False):
        path = tmp_path / name
        os.makedirs(path)
        if marker:
            files.mark_folder(str(path))
        if content:
            (path / "thesis.txt").write_text("keep me")
        return name

    removed = [make(f".x.tmp-{dead}-{token}", marker=True, content=True),
               make(f".y.tmp-{dead}-{token}")]                               # empty: nothing lost
    kept = [make(f".z.tmp-{dead}-{token}", content=True),                    # no proof it is ours
            make(f".x.tmp-{os.getpid()}-{token}", marker=True),              # owner still running
            make(f".w.tmp-{dead}", marker=True),                             # not our name pattern
            make(".old-abc", content=True), make("results")]
    os.symlink(tmp_path / "results", tmp_path / f".v.tmp-{dead}-{token}")   # links are never ours
    kept.append(f".v.tmp-{dead}-{token}")
    manifest.clean_stale(str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == sorted(kept)
    assert not any(os.path.lexists(tmp_path / name) for name in removed)
    assert (tmp_path / f".z.tmp-{dead}-{token}" / "thesis.txt").read_text() == "keep me"


def test_leftovers_of_a_sigkilled_run_are_removed_by_the_next_run(tmp_path):
    env = dict(os.environ, PYTHONPATH=REPO)
    proc = subprocess.Popen([sys.executable, "-m", "simulator", "run", "train_teacher", "--ticks",
                             "1000000", "--quiet", "--out", "X"], cwd=tmp_path, env=env,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 60
        while not [n for n in os.listdir(tmp_path) if n.startswith(".X.tmp-")]:
            assert proc.poll() is None, proc.stderr.read()
            assert time.time() < deadline
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()
    assert [n for n in os.listdir(tmp_path) if n.startswith(".X.tmp-")]
    res = subprocess.run([sys.executable, "-m", "simulator", "run", "fig3_fast", *QUICK,
                          "--out", "X"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert os.listdir(tmp_path) == ["X"]


# ------------------------------------------------------------------ 4, 5. links, / and .
def test_a_symlinked_out_is_followed_never_replaced(runner):
    assert invoke(runner, "run", "fig3_fast", "--out", "real", *QUICK).exit_code == 0
    os.symlink("real", "link")
    res = invoke(runner, "run", "fig3_fast", "--out", "link", *QUICK, "--seed", "7")
    assert res.exit_code == 0, res.output
    assert os.path.islink("link") and os.readlink("link") == "real"
    assert json.load(open("real/run.json"))["scene"]["run"]["seed"] == 7
    before = user_folder("theirs")
    os.symlink("theirs", "link2")
    one_error_line(invoke(runner, "run", "fig3_fast", "--out", "link2", *QUICK))
    assert os.path.islink("link2") and snapshot("theirs") == before
    os.symlink("fresh", "dangling")
    assert invoke(runner, "run", "fig3_fast", "--out", "dangling", *QUICK).exit_code == 0
    assert os.path.islink("dangling") and os.path.isfile("fresh/run.json")
    assert leftovers(".") == []


def test_out_root_dot_and_dotdot_are_refused_leaving_nothing(runner, tmp_path, no_simulation):
    root_before = set(os.listdir("/"))
    one_error_line(invoke(runner, "run", "fig3_fast", "--out", "/", *QUICK))
    assert set(os.listdir("/")) == root_before
    os.makedirs("plain")
    os.chdir("plain")
    one_error_line(invoke(runner, "run", "fig3_fast", "--out", ".", *QUICK))
    one_error_line(invoke(runner, "run", "fig3_fast", "--out", "..", *QUICK))
    assert os.listdir(".") == [] and os.listdir(tmp_path) == ["plain"]


# ------------------------------------------------------------------ 6. replay names
@pytest.mark.parametrize("bad", ["../escaped", "ABS", "a/../../escaped", "..", ".", "x\\..\\y"])
def test_a_replay_cannot_write_outside_outputs(runner, tmp_path, bad):
    assert invoke(runner, "run", "fig3_fast", *QUICK).exit_code == 0
    meta = json.load(open("outputs/fig3_fast/run.json"))
    meta["name"] = str(tmp_path / "abs_escaped") if bad == "ABS" else bad
    json.dump(meta, open("evil.json", "w"))
    res = invoke(runner, "run", "evil.json", "--quiet")
    assert res.exit_code in (0, 2), res.output
    root = os.path.realpath("outputs")
    assert sorted(os.listdir(tmp_path)) == ["evil.json", "outputs"]
    for name in os.listdir(root):
        assert os.path.dirname(os.path.realpath(os.path.join(root, name))) == root


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_default_out_is_always_one_folder_inside_root(name):
    path = outputs.default_out(name, root="outputs")
    head, tail = os.path.split(path)
    assert head == "outputs" and tail not in ("", ".", "..") and not tail.startswith(".")
    assert os.sep not in tail and "/" not in tail and "\\" not in tail and "\0" not in tail


def test_default_out_keeps_plain_names():
    assert outputs.default_out("fig1_constant") == os.path.join("outputs", "fig1_constant")
    assert outputs.default_out("fig3_fast_replay") == os.path.join("outputs", "fig3_fast_replay")


# ------------------------------------------------------------------ 7. full or read-only disk
def test_full_disk_is_one_line_and_earlier_output_survives(runner, monkeypatch):
    assert invoke(runner, "run", "fig3_fast", *QUICK).exit_code == 0
    before = snapshot("outputs/fig3_fast")

    def full(file, *a, **k):
        if hasattr(file, "write"):
            file.write(b"PK\x03\x04 half a zip")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(np, "savez_compressed", full)   # trace.npz, deflated or not
    monkeypatch.setattr(np, "savez", full)
    line = one_error_line(invoke(runner, "run", "fig3_fast", *QUICK))
    assert "No space left on device" in line and "fig3_fast" in line
    assert ".tmp" not in line                  # names the output, not our temporary folder
    assert snapshot("outputs/fig3_fast") == before
    assert os.listdir("outputs") == ["fig3_fast"]


def test_read_only_file_system_is_one_line(runner, monkeypatch):
    assert invoke(runner, "run", "fig3_fast", *QUICK).exit_code == 0
    before = snapshot("outputs/fig3_fast")
    real_mkdir = os.mkdir

    def read_only(path, *a, **k):
        if os.path.abspath(path).startswith(os.path.abspath("outputs")):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)
        return real_mkdir(path, *a, **k)
    monkeypatch.setattr(os, "mkdir", read_only)
    line = one_error_line(invoke(runner, "run", "fig3_fast", *QUICK))
    assert "Read-only file system" in line
    assert snapshot("outputs/fig3_fast") == before and os.listdir("outputs") == ["fig3_fast"]


def test_a_file_where_a_folder_is_expected_is_refused_before_work(runner, no_simulation):
    open("afile", "w").write("keep")
    line = one_error_line(invoke(runner, "run", "fig3_fast", "--out", "afile/sub", *QUICK))
    assert "afile" in line and "not a folder" in line
    assert open("afile").read() == "keep"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through chmod")
def test_a_read_only_parent_is_refused_before_work(runner, no_simulation):
    os.makedirs("ro")
    os.chmod("ro", 0o555)
    try:
        line = one_error_line(invoke(runner, "run", "fig3_fast", "--out", "ro/x", *QUICK))
        assert "permission denied" in line.lower()
    finally:
        os.chmod("ro", 0o755)


def test_an_oserror_elsewhere_in_writing_is_one_line(runner, monkeypatch):
    from simulator.probes import Trace

    def denied(*a, **k):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), "/some/where")
    monkeypatch.setattr(Trace, "save", denied)
    line = one_error_line(invoke(runner, "run", "fig3_fast", *QUICK))
    assert "/some/where" in line and "Permission denied" in line


# ------------------------------------------------------------------ 8. concurrent writers
def _concurrent(out, n, tag_prefix):
    errors, done = [], []
    barrier = threading.Barrier(n)

    def one(i):
        barrier.wait()
        try:
            outputs.write_folder(out, fill_with(f"{tag_prefix}{i}", pause=random.random() * 0.01))
            done.append(i)
        except SimulatorError as exc:
            errors.append(exc)
    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(done) + len(errors) == n        # nothing else was raised
    return done


@pytest.mark.parametrize("exchange", ["renameat2", "fallback"])
def test_many_concurrent_writers_leave_one_complete_output(tmp_path, monkeypatch, exchange):
    if exchange == "fallback":
        monkeypatch.setattr(outputs, "_exchange", lambda a, b: False)
    elif outputs._RENAMEAT2 is None:
        pytest.skip("no renameat2 on this system")
    out = str(tmp_path / "out")
    outputs.write_folder(out, fill_with("seed"))
    done = _concurrent(out, 24, "t")
    assert done and read_output(out) in {f"t{i}" for i in done}
    assert os.listdir(tmp_path) == ["out"]


def _process_writer(out, i, start):
    start.wait()
    try:
        outputs.write_folder(out, fill_with(f"p{i}", pause=random.random() * 0.01))
    except SimulatorError:
        sys.exit(3)


def test_many_concurrent_processes_leave_one_complete_output(tmp_path):
    out = str(tmp_path / "out")
    ctx = multiprocessing.get_context("fork")
    start = ctx.Event()
    procs = [ctx.Process(target=_process_writer, args=(out, i, start)) for i in range(20)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(60)
    assert all(p.exitcode in (0, 3) for p in procs), [p.exitcode for p in procs]
    winners = {f"p{i}" for i, p in enumerate(procs) if p.exitcode == 0}
    assert read_output(out) in winners
    manifest.clean_stale(str(tmp_path))
    assert os.listdir(tmp_path) == ["out"]


# ------------------------------------------------------------------ 9. Ctrl-C and SIGTERM
def test_ctrl_c_while_writing_is_one_line_exit_130_nothing_left(runner, monkeypatch):
    from simulator.probes import Trace
    assert invoke(runner, "run", "fig3_fast", *QUICK).exit_code == 0
    before = snapshot("outputs/fig3_fast")

    def interrupted(self, folder, compress=False):
        open(os.path.join(folder, "trace.npz"), "wb").write(b"half")
        raise KeyboardInterrupt
    monkeypatch.setattr(Trace, "save", interrupted)
    res = invoke(runner, "run", "fig3_fast", *QUICK)
    assert res.exit_code == 130, res.output
    assert res.stderr.strip().splitlines() == ["interrupted"]
    assert snapshot("outputs/fig3_fast") == before and os.listdir("outputs") == ["fig3_fast"]


def catches_sigterm(pid):
    """Whether process ``pid`` has a SIGTERM handler (its /proc SigCgt mask): the
    command installs one as it starts its work, nothing imported before does."""
    try:
        with open(f"/proc/{pid}/status") as f:
            mask = next(line.split()[1] for line in f if line.startswith("SigCgt:"))
    except (OSError, StopIteration):
        return False
    return bool(int(mask, 16) >> (signal.SIGTERM - 1) & 1)


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc to see the handler")
@pytest.mark.parametrize("scene,wait_for_tmp", [("fig3_fast", False), ("train_teacher", True)])
def test_sigterm_is_a_clean_exit(tmp_path, scene, wait_for_tmp):
    """SIGTERM once the command runs (its handler is seen installed, or its
    temporary folder appeared: events, not a sleep, so load cannot make the
    signal land while Python still starts): one line, 143, nothing left."""
    env = dict(os.environ, PYTHONPATH=REPO)
    first = subprocess.run([sys.executable, "-m", "simulator", "run", "fig3_fast", *QUICK,
                            "--out", "X"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    before = snapshot(tmp_path / "X")
    long = (["--ticks", "200000", "--set", "record.states=false", "--no-gif", "--no-png"]
            if scene == "fig3_fast" else ["--ticks", "1000000"])
    proc = subprocess.Popen([sys.executable, "-m", "simulator", "run", scene, *long, "--quiet",
                             "--out", "X"], cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120

        def started():
            if wait_for_tmp:
                return any(n.startswith(".X.tmp-") for n in os.listdir(tmp_path))
            return catches_sigterm(proc.pid)
        while not started():
            assert proc.poll() is None and time.time() < deadline, proc.stderr.read()
            time.sleep(0.02)
        assert proc.poll() is None, proc.stderr.read()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, err
    assert err.strip().splitlines() == ["terminated"]
    assert os.listdir(tmp_path) == ["X"]
    assert snapshot(tmp_path / "X") == before


SWALLOWED = """
import os, signal, sys, time
from simulator import streams
take = streams.HeldStream.take       # fig3_fast's stream

def swallowing_take(self, n):
    # mid-run, a SIGTERM whose exception is swallowed the way a C extension
    # calling back into Python may clear it
    if self.t == 1024:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        except KeyboardInterrupt:
            pass
    return take(self, n)

streams.HeldStream.take = swallowing_take
from simulator.command import main
main(sys.argv[1:])
"""


@pytest.mark.parametrize("backend", ["numpy", "jax"])
def test_a_swallowed_sigterm_still_stops_the_run(tmp_path, backend):
    """The SIGTERM's exception cleared somewhere below: the next chunk's
    progress call raises it again; 143, one line, nothing written."""
    if backend == "jax":
        pytest.importorskip("jax")
    env = dict(os.environ, PYTHONPATH=REPO)
    proc = subprocess.run([sys.executable, "-c", SWALLOWED, "run", "fig3_fast", "--ticks",
                           "20000", "--set", "record.states=false", "--set",
                           f"run.backend='{backend}'", "--no-gif", "--no-png", "--quiet",
                           "--out", "X"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 143, proc.stderr
    assert proc.stderr.strip().splitlines() == ["terminated"]
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------ 10. single-file writers
def test_single_file_writers_write_what_they_are_given(tmp_path):
    from matplotlib.figure import Figure
    import imageio.v3 as iio
    p = str(tmp_path)
    files.write_json(f"{p}/a.json", {"x": np.float64(0.5), "v": np.arange(3), "n": np.int32(2)})
    assert json.load(open(f"{p}/a.json")) == {"x": 0.5, "v": [0, 1, 2], "n": 2}
    with pytest.raises(TypeError):
        files.write_json(f"{p}/b.json", {"x": object()})
    files.write_csv(f"{p}/t.csv", ["a", "b"], [{"a": 1, "b": "x,y"}, {"a": 2}, [3, 4]])
    assert open(f"{p}/t.csv").read() == 'a,b\n1,"x,y"\n2,\n3,4\n'
    files.write_text(f"{p}/t.md", "π ≈ 3\n")
    assert open(f"{p}/t.md", encoding="utf-8").read() == "π ≈ 3\n"
    files.write_npz(f"{p}/z.npz", {"a": np.eye(2)})
    with np.load(f"{p}/z.npz") as z:
        np.testing.assert_array_equal(z["a"], np.eye(2))
    fig = Figure(figsize=(3.2, 2.0), dpi=100)
    fig.add_subplot().plot([0, 1], [1, 0])
    files.save_png(fig, f"{p}/f.png")
    assert iio.imread(f"{p}/f.png").shape[:2] == (200, 320)
    for name in os.listdir(p):
        assert os.stat(f"{p}/{name}").st_mode & 0o777 == 0o644, name
    assert sorted(os.listdir(p)) == ["a.json", "f.png", "t.csv", "t.md", "z.npz"]


def test_a_failing_file_writer_keeps_the_old_file_and_no_temp(tmp_path):
    path = tmp_path / "a.json"
    files.write_json(path, {"v": 1})

    def broken(f):
        f.write("{half")
        raise OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(OSError):
        files.atomic_write(path, broken)
    assert json.load(open(path)) == {"v": 1} and os.listdir(tmp_path) == ["a.json"]


def test_output_folders_are_0755_and_their_files_0644(tmp_path):
    old = os.umask(0o077)
    try:
        out = outputs.write_folder(str(tmp_path / "o"), fill_with("m"))
    finally:
        os.umask(old)
    assert os.stat(out).st_mode & 0o777 == 0o755
    assert os.stat(os.path.join(out, "run.json")).st_mode & 0o777 == 0o644
    assert sorted(os.listdir(out)) == ["data.txt", "run.json", manifest.MANIFEST]   # no marker file


def test_a_sweep_folder_is_resumed_and_a_foreign_one_forced_is_emptied(runner, tmp_path):
    sweep = tmp_path / "tiny.toml"
    sweep.write_text('description = "tiny"\nkind = "sweep"\n[sweep]\nbase = "fig3_fast"\n'
                     'seeds = [0]\n[sweep.set]\n"run.ticks" = 5\n"network.depth" = 3\n'
                     '[sweep.grid]\n"stream.hold" = [1]\n')
    for _ in range(2):                         # the second run resumes in the same folder
        res = invoke(runner, "sweep", str(sweep), "--quiet", "--out", "sw")
        assert res.exit_code == 0, res.output
    user_folder("mine")
    res = invoke(runner, "sweep", str(sweep), "--quiet", "--out", "mine", "--force")
    assert res.exit_code == 0, res.output
    assert not os.path.exists("mine/notes.txt") and os.path.isfile("mine/sweep.csv")
    assert json.load(open("mine/run.json"))[manifest.MARKER] is True
    assert leftovers(".") == []


def _point(seed=0):
    """(file name, JSON text) of a valid sweep point file, as tickprop writes it."""
    from simulator import sweep as sweeps
    scene, options = {"kind": "diffusion", "run": {"seed": seed}}, {"summary": "mismatch"}
    key = points.point_key(scene, options)
    return f"{key}.json", json.dumps(sweeps._record(key, {"run.seed": seed}, scene, options))


VIEW = '<!DOCTYPE html><html><head><meta charset="utf-8">' + manifest.VIEW_GENERATOR + "</head>"


def test_what_counts_as_a_tickprop_output(tmp_path):
    """Without a manifest only an empty folder counts: every entry of any
    other is foreign, even exactly what the version before the manifest wrote
    (a marked run.json and its kind's files, a points/ folder of valid point
    files with the sweep's own files beside it)."""
    def folder(name, entries):
        path = tmp_path / name
        path.mkdir()
        for rel, text in entries.items():
            (path / rel).parent.mkdir(parents=True, exist_ok=True)
            if text is not None:
                (path / rel).write_text(text)
        return str(path)
    point, record = _point()
    other, other_record = _point(seed=1)
    run = json.dumps({manifest.MARKER: True, "kind": "diffusion", "pictures": ["waves.png"]})
    table = json.dumps({manifest.MARKER: True, "kind": "pc_table", "pictures": ["tables.md"]})
    assert manifest.foreign_files(folder("empty", {})) == []
    old = {"marked_run": {"run.json": run, "trace.npz": "x", "waves.png": "x"},
           "marked_run_with_view": {"run.json": run, "trace.npz": "x", "view.html": VIEW},
           "pc_table": {"run.json": table, "table1.csv": "a", "table2.csv": "b", "tables.md": "m"},
           "sweep": {f"points/{point}": record, "sweep.csv": "a\n", "phase.png": "x",
                     "boundary.json": "{}"},
           "forced_sweep": {"run.json": json.dumps({manifest.MARKER: True, "kind": "sweep"}),
                            "points/.keep": None},
           "old_temporary": {"run.json": run, "trace.npz": "x",
                             ".trace.npz.0123456789ab.tmp": "half"}}
    theirs = {"plain": {"thesis.tex": "x"},
              "fake_run": {"run.json": json.dumps({"name": "a"})},
              "scene_and_versions": {"run.json": json.dumps({"name": "a", "scene": {},
                                                             "versions": {}}), "trace.npz": "x"},
              "old_pc_table_keys": {"run.json": json.dumps({"name": "pc_table", "table1": [],
                                                            "table2": []})},
              "marker_not_true": {"run.json": json.dumps({manifest.MARKER: "yes"})},
              "broken_run": {"run.json": "{"},
              "note_in_a_run": {"run.json": run, "trace.npz": "x", "my_notes.md": "notes"},
              "other_kinds_file": {"run.json": run, "relaxation.npz": "x"},
              "view_not_tickprops": {"run.json": run, "view.html": "<p>mine</p>"},
              "points_and_thesis": {f"points/{point}": record, "thesis.tex": "x"},
              "points_and_results": {"points/.keep": None, "results.csv": "x"},
              "invalid_points": {"points/ab.json": "{}", "sweep.csv": "a\n"},
              "renamed_point": {f"points/{point}": other_record, "sweep.csv": "a\n"},
              "points_of_other": {"points/ab.txt": "x"}}
    for name, entries in {**old, **theirs}.items():
        path = folder(name, entries)
        every = [(e + "/" if os.path.isdir(os.path.join(path, e)) else e, manifest.FOREIGN)
                 for e in sorted(os.listdir(path))]
        assert manifest.foreign_files(path) == every, name


def test_an_interrupt_while_the_temporary_folder_is_made_leaves_nothing(tmp_path, monkeypatch):
    """The folder exists before its marker does: an interrupt in between (where
    a later run's clean-up could not know it is ours) must still remove it."""
    def interrupted(path):
        raise KeyboardInterrupt
    monkeypatch.setattr(files, "mark_folder", interrupted)
    with pytest.raises(KeyboardInterrupt):
        outputs.write_folder(str(tmp_path / "X"), lambda folder: {})
    assert os.listdir(tmp_path) == []
