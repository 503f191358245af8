"""Damaged and hostile run folders (issue 19, item 4): `tickprop render` and
`tickprop view` read every saved file through one loader
(simulator.runfiles over simulator.safe_read), so each damage below ends in
exit 2 and exactly one ``error:`` line naming the file -- never a traceback, never a hang, never a
MemoryError -- for both commands. Real run folders are made once per module
(tiny runs of every kind) and damaged copy by copy; the memory-cap, FIFO and
Ctrl-C cases run the command line in a real subprocess."""
import errno
import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner
from numpy.lib import format as npy

from simulator.command import main as tickprop
from tiny_runs import TINY_RUNS, make_tiny_runs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMANDS = ("render", "view")
RUNS = TINY_RUNS        # one tiny saved run per kind


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{kind: folder} of one tiny saved run per kind (no pictures)."""
    return make_tiny_runs(tmp_path_factory.mktemp("runs"), RUNS, pictures=False)


def copy_run(runs, kind, tmp_path):
    """A fresh copy of the ``kind`` run to damage (its real path: errors name it)."""
    folder = os.path.join(os.path.realpath(tmp_path), "run")
    shutil.copytree(runs[kind], folder)
    return folder


def args_of(command, folder):
    return [command, folder] + (["--no-gif"] if command == "render" else ["--no-open"])


def invoke(command, folder):
    return CliRunner().invoke(tickprop, args_of(command, folder))


def check_one_error_line(res, *needles):
    """Exit 2, no exception but the exit, stderr exactly one ``error:`` line
    holding every needle; returns the line."""
    assert res.exit_code == 2 and isinstance(res.exception, SystemExit), (
        res.exit_code, repr(res.exception), res.output)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr[-3000:]
    assert "Traceback" not in res.output
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def check_one_error_line_of(proc, *needles):
    """The same for a finished subprocess (CompletedProcess)."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-3000:]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def rewrite_npz(path, change):
    """Apply ``change`` to the {name: array} of an .npz and save it back."""
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    change(arrays)
    np.savez(path, **arrays)


def edit_json(path, change):
    with open(path) as f:
        value = json.load(f)
    change(value)
    with open(path, "w") as f:
        json.dump(value, f)


def trace_of(folder):
    return os.path.join(folder, "trace.npz")


# ------------------------------------------------------------------ run.json
DEEP = 100_000


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("content", [
    "[" * DEEP + "]" * DEEP,
    '{"kind": "diffusion", "scene": ' + "[" * DEEP + "]" * DEEP + "}",
    '{"kind": "diffusion", "scene": {"render": ' + '{"a": ' * 200 + "1" + "}" * 201 + "}",
], ids=["deep-array", "deep-scene", "nested-200"])
def test_a_deeply_nested_run_json_is_one_error_line(runs, tmp_path, command, content):
    folder = copy_run(runs, "diffusion", tmp_path)
    with open(os.path.join(folder, "run.json"), "w") as f:
        f.write(content)
    check_one_error_line(invoke(command, folder), os.path.join(folder, "run.json"), "nested")


@pytest.mark.parametrize("block, needle", [
    ({"png": True, "gif": "yes", "every": 1}, "scene.render.gif"),
    ({"every": "x"}, "scene.render.every"),
    ({"every": 0}, "scene.render.every"),
    ({"windows": [[5, 2]]}, "scene.render.windows"),
    ({"color": ["both"]}, "scene.render.color"),
], ids=["gif-text", "every-text", "every-zero", "window-backwards", "color-list"])
def test_a_bad_render_block_is_one_error_line_naming_the_key(runs, tmp_path, block, needle):
    """Render options are read from the saved scene and checked as a scene
    file's are; view draws no pictures and shows such a run as it is."""
    folder = copy_run(runs, "diffusion", tmp_path)
    edit_json(os.path.join(folder, "run.json"),
              lambda m: m["scene"].__setitem__("render", block))
    check_one_error_line(invoke("render", folder), os.path.join(folder, "run.json"), needle)
    assert invoke("view", folder).exit_code == 0


def test_a_render_block_without_some_keys_draws_with_the_defaults(runs, tmp_path):
    """A render block lacking 'gif' (KeyError: 'gif' before) takes the
    schema's default for what it lacks."""
    folder = copy_run(runs, "diffusion", tmp_path)
    edit_json(os.path.join(folder, "run.json"),
              lambda m: m["scene"].__setitem__("render", {"png": True, "every": 2}))
    res = CliRunner().invoke(tickprop, ["render", folder])
    assert res.exit_code == 0, res.output
    assert os.path.isfile(os.path.join(folder, "waves.gif"))


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("change, needle", [
    (lambda m: m.__setitem__("scene", [1, 2]), "'scene'"),
    (lambda m: m["scene"].__setitem__("render", ["png"]), "scene.render"),
    (lambda m: m.__setitem__("pictures", 7), "'pictures'"),
    (lambda m: m.__setitem__("pictures", [1, 2]), "'pictures'"),
    (lambda m: m.__setitem__("name", {"a": 1}), "'name'"),
    (lambda m: m["scene"].__setitem__("description", ["x"]), "scene.description"),
], ids=["scene-list", "render-list", "pictures-int", "pictures-numbers", "name-table",
        "description-list"])
def test_run_json_fields_of_the_wrong_type_are_one_error_line(runs, tmp_path, command, change,
                                                              needle):
    folder = copy_run(runs, "diffusion", tmp_path)
    edit_json(os.path.join(folder, "run.json"), change)
    check_one_error_line(invoke(command, folder), os.path.join(folder, "run.json"), needle)


# ------------------------------------------------------------------ trace.npz
@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("change, needle", [
    (lambda a: a.update(tick=a["tick"].astype(str)), "'tick' holds text"),
    (lambda a: a.update(tick=np.array([str(t) for t in a["tick"]], dtype=object)), "'tick'"),
    (lambda a: a.update(x_norm=a["x_norm"][:-1]), "'x_norm' has shape"),
    (lambda a: a.update(delta_norm=a["delta_norm"][:, :3]), "'delta_norm' has shape"),
    (lambda a: a.update(tag_pair=a["tag_pair"].astype(float)), "'tag_pair' holds float64"),
    (lambda a: a.update(sizes=np.zeros_like(a["sizes"])), "'sizes' holds values below 1"),
    (lambda a: a.update(tick=a["tick"][::-1].copy()), "'tick' is not strictly increasing"),
    (lambda a: a.update(state_x=a["state_x"][:, :, :, :2]), "state_x"),
    (lambda a: a.update(state_layers=a["state_layers"] + 50), "'state_layers'"),
    (lambda a: a.pop("state_tick"), "without state_tick"),
    (lambda a: a.update(x_norm=a["x_norm"].astype(complex)), "'x_norm' holds"),
    (lambda a: a.update(tag_pair=a["tag_pair"].astype(np.uint64)), "'tag_pair' holds uint64"),
    (lambda a: a.update(state_delta=a["state_delta"] > 0), "'state_delta' holds bool"),
], ids=["tick-text", "tick-objects", "short-x-norm", "narrow-delta", "float-tags",
        "zero-widths", "ticks-backwards", "narrow-states", "state-layer-outside",
        "states-without-ticks", "complex-norms", "unsigned-tags", "flag-states"])
def test_a_damaged_trace_is_one_error_line(runs, tmp_path, command, change, needle):
    folder = copy_run(runs, "diffusion", tmp_path)
    rewrite_npz(trace_of(folder), change)
    check_one_error_line(invoke(command, folder), trace_of(folder), needle)


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("change, needle", [
    (lambda a: a.pop("vertex_sync"), "without vertex_sync"),
    (lambda a: a.update(vertex_levels=a["vertex_levels"] + 100), "'vertex_levels' holds values"),
    (lambda a: a.update(vertex_edges=a["vertex_edges"] + 100), "'vertex_edges' holds values"),
    (lambda a: a.update(vertex_edges=a["vertex_edges"].reshape(-1)), "'vertex_edges' has shape"),
    (lambda a: a.update(vertex_names=np.arange(len(a["sizes"]))), "'vertex_names'"),
    (lambda a: a.update(tag_pair_hi=a["tag_pair_hi"][:, :2]), "'tag_pair_hi' has shape"),
], ids=["no-sync-flags", "levels-outside", "edges-outside", "edges-flat", "names-numbers",
        "narrow-newest-tags"])
def test_a_damaged_graph_trace_is_one_error_line(runs, tmp_path, command, change, needle):
    folder = copy_run(runs, "graph", tmp_path)
    rewrite_npz(trace_of(folder), change)
    check_one_error_line(invoke(command, folder), trace_of(folder), needle)


@pytest.mark.parametrize("command", COMMANDS)
def test_a_trace_with_no_recorded_tick_is_one_error_line(runs, tmp_path, command):
    folder = copy_run(runs, "diffusion", tmp_path)

    def empty(arrays):
        for key in list(arrays):
            if key not in ("sizes", "state_layers", "schema"):
                arrays[key] = arrays[key][:0]
    rewrite_npz(trace_of(folder), empty)
    check_one_error_line(invoke(command, folder), trace_of(folder), "no recorded tick")


@pytest.mark.parametrize("command", COMMANDS)
def test_an_npz_member_whose_header_disagrees_with_its_size_is_damaged(runs, tmp_path,
                                                                        command):
    """A header declaring 2**40 values over 8 bytes of data: damaged, found
    from the header before anything is allocated."""
    folder = copy_run(runs, "diffusion", tmp_path)
    with np.load(trace_of(folder)) as data:
        arrays = {k: data[k] for k in data.files if k != "x_norm"}
    np.savez(trace_of(folder), **arrays)
    with zipfile.ZipFile(trace_of(folder), "a") as z:
        with z.open("x_norm.npy", "w") as f:
            npy.write_array_header_1_0(f, {"descr": "<f8", "fortran_order": False,
                                           "shape": (2**40,)})
            f.write(bytes(8))
    check_one_error_line(invoke(command, folder), trace_of(folder), "'x_norm'", "header declares")


# ----------------------------------------------------------- special files
@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("name", ["trace.npz", "run.json"])
def test_a_fifo_in_place_of_a_saved_file_is_one_error_line_not_a_hang(runs, tmp_path, command,
                                                                      name):
    """Nothing ever writes to the FIFO: a reader that opened it would block
    for ever (view did). Run as a real process with a timeout."""
    folder = copy_run(runs, "diffusion", tmp_path)
    os.remove(os.path.join(folder, name))
    os.mkfifo(os.path.join(folder, name))
    proc = subprocess.run([sys.executable, "-m", "simulator", *args_of(command, folder)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    line = check_one_error_line_of(proc)
    if name == "trace.npz" or command == "view":
        assert os.path.join(folder, name) in line and "FIFO" in line
    else:       # render finds no run.json file there at all
        assert "no run.json" in line


@pytest.mark.parametrize("command", COMMANDS)
def test_a_device_in_place_of_a_saved_file_is_refused(runs, tmp_path, command):
    folder = copy_run(runs, "diffusion", tmp_path)
    os.remove(trace_of(folder))
    os.symlink("/dev/zero", trace_of(folder))
    check_one_error_line(invoke(command, folder), "/dev/zero", "character device")


# ------------------------------------------------------------ other kinds
@pytest.mark.parametrize("kind, commands, filename, change, needle", [
    ("ar_converge", COMMANDS, "relaxation.npz",
     lambda a: a.update(changes=a["changes"][0]), "'changes' has shape"),
    ("ar_converge", COMMANDS, "relaxation.npz",
     lambda a: a.update(eta_x=a["eta_x"][:1]), "'errors' has shape"),
    ("ar_converge", COMMANDS, "relaxation.npz",
     lambda a: a.update(errors=a["errors"].astype(str)), "'errors' holds text"),
    ("pc_wave", COMMANDS, "wave.npz",
     lambda a: a.update(levels=a["levels"] + 100), "'levels' holds values outside"),
    ("pc_wave", COMMANDS, "wave.npz",
     lambda a: a.update(by_vertex=a["by_vertex"][:1]), "'by_vertex' has shape"),
    ("pc_wave", COMMANDS, "wave.npz",
     lambda a: a.update(by_level=a["by_level"][:0]), "'by_level' has shape"),
    ("ar_train", ("render",), "training.npz",
     lambda a: a.update(test_backprop=a["test_backprop"][..., :0]), "'test_backprop'"),
    ("ar_train", ("render",), "training.npz",
     lambda a: a.update(steps=a["steps"][:0]), "'steps' is empty"),
    ("locking", ("render",), "locking.npz",
     lambda a: a.update(backprop_forward=a["backprop_forward"].astype(str)),
     "'backprop_forward' holds text"),
    ("locking", ("render",), "locking.npz",
     lambda a: a.pop("pipelined_backward"), "no pipelined_backward"),
], ids=["relax-changes-2d", "relax-eta-count", "relax-text", "wave-levels", "wave-vertex-ticks",
        "wave-no-ticks", "train-no-points", "train-no-steps", "locking-text", "locking-missing"])
def test_a_damaged_result_of_another_kind_is_one_error_line(runs, tmp_path, kind, commands,
                                                            filename, change, needle):
    folder = copy_run(runs, kind, tmp_path)
    rewrite_npz(os.path.join(folder, filename), change)
    for command in commands:
        check_one_error_line(invoke(command, folder), os.path.join(folder, filename), needle)


@pytest.mark.parametrize("change, needle", [
    (lambda r: r.update(curves=[]), "no curves"),
    (lambda r: r["curves"]["backprop"].update(tick=["a", "b", "c"]), "'tick'"),
    (lambda r: r["curves"]["backprop"].update(loss=[1.0]), "'loss'"),
    (lambda r: r["curves"]["backprop"].update(angles=[[1.0]]), "'angles'"),
    (lambda r: r["curves"]["backprop"].update(angles=[["x"]] * 3), "'angles'"),
    (lambda r: r["curves"]["backprop"].pop("diverged"), "'diverged'"),
    (lambda r: r["curves"].update(backprop=7), "'backprop'"),
], ids=["curves-list", "tick-text", "loss-short", "angles-short", "angles-text",
        "no-diverged", "curve-number"])
def test_damaged_training_results_are_one_error_line(runs, tmp_path, change, needle):
    folder = copy_run(runs, "train", tmp_path)
    path = os.path.join(folder, "results.json")
    edit_json(path, change)
    check_one_error_line(invoke("render", folder), path, needle)


# ------------------------------------------------------------ read errors
@pytest.mark.parametrize("command", COMMANDS)
def test_a_read_error_says_cannot_read(runs, tmp_path, monkeypatch, command):
    """An OSError met while reading a saved file is the loader's own error:
    'cannot read', not 'cannot write'."""
    folder = copy_run(runs, "diffusion", tmp_path)
    real_open = os.open

    def failing(path, *a, **k):
        if str(path).endswith("trace.npz"):
            raise OSError(errno.EIO, os.strerror(errno.EIO), path)
        return real_open(path, *a, **k)
    monkeypatch.setattr(os, "open", failing)
    line = check_one_error_line(invoke(command, folder), trace_of(folder), "cannot read",
                          "Input/output error")
    assert "cannot write" not in line


def test_an_oserror_met_while_reading_a_run_folder_is_not_called_a_write_error(
        runs, tmp_path, monkeypatch):
    """render lists the run folder to draw beside it: a folder it cannot list
    is named with the OS's reason (an OSError no command caught), not as
    'cannot write'."""
    folder = copy_run(runs, "diffusion", tmp_path)
    real_scandir = os.scandir

    def denied(path=".", *a, **k):
        if isinstance(path, str) and path == folder:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
        return real_scandir(path, *a, **k)
    monkeypatch.setattr(os, "scandir", denied)
    line = check_one_error_line(invoke("render", folder), folder, "Permission denied")
    assert "cannot write" not in line


# ------------------------------------------------------------- memory caps
# The command line in a process whose address space is capped (ulimit -v):
# numpy's threads held to one so the cap is not spent on their stacks.
CAPPED = """
import os, pathlib, resource, sys
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
if os.environ.get("TICKPROP_TEST_MNIST"):
    from simulator import datasets
    datasets.mnist_path = lambda: pathlib.Path(os.environ["TICKPROP_TEST_MNIST"])
from simulator.command import main as tickprop
tickprop(args=sys.argv[2:], prog_name="tickprop")
"""
CAP = 1 * 2**30
BOMB = 1 * 2**30            # bytes a bomb inflates to; its file is ~5 MB


def run_capped(args, **env):
    """Run the CLI with ``args`` under an address-space cap of CAP bytes."""
    return subprocess.run([sys.executable, "-c", CAPPED, str(CAP), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",
                                   MKL_NUM_THREADS="1", **env))


@pytest.fixture(scope="module")
def npz_bomb(runs, tmp_path_factory):
    """A diffusion run whose trace.npz holds its real arrays but an x_norm
    that inflates to BOMB bytes of zeros (deflated to a few MB)."""
    folder = str(tmp_path_factory.mktemp("bomb") / "run")
    shutil.copytree(runs["diffusion"], folder)
    path = trace_of(folder)
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files if k != "x_norm"}
    np.savez(path, **arrays)
    chunk = bytes(64 * 2**20)
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        with z.open("x_norm.npy", "w", force_zip64=True) as f:
            npy.write_array_header_1_0(f, {"descr": "<f8", "fortran_order": False,
                                           "shape": (BOMB // 8,)})
            for _ in range(BOMB // len(chunk)):
                f.write(chunk)
    assert os.path.getsize(path) < 16 * 2**20
    return folder


@pytest.mark.parametrize("command", COMMANDS)
def test_an_npz_that_inflates_past_memory_is_refused_before_inflating(runs, npz_bomb, command):
    ok = run_capped(args_of(command, runs["diffusion"]))
    assert ok.returncode == 0, ok.stderr[-3000:]        # the cap alone is not the error
    line = check_one_error_line_of(run_capped(args_of(command, npz_bomb)), trace_of(npz_bomb))
    assert "1.0 GiB" in line and "more than" in line


def test_a_gzip_that_inflates_past_its_cap_is_one_error_line(tmp_path):
    """The MNIST sample is inflated in steps with a cap: a small gzip that
    inflates to a GiB is refused under a memory cap (a MemoryError before)."""
    member = gzip.compress(bytes(16 * 2**20), compresslevel=9)
    bomb = tmp_path / "mnist_5k.csv.gz"
    with open(bomb, "wb") as f:
        for _ in range(BOMB // (16 * 2**20)):
            f.write(member)           # concatenated gzip members inflate one after another
    assert bomb.stat().st_size < 2**20
    proc = run_capped(["run", "train_mnist", "--out", str(tmp_path / "out"), "--quiet"],
                      TICKPROP_TEST_MNIST=str(bomb))
    check_one_error_line_of(proc, str(bomb), "inflates to more than")
    assert not (tmp_path / "out").exists()


def test_the_read_budget_follows_the_address_space_cap():
    """available_memory() sees ulimit -v: under a 1 GiB cap the budget is
    below half a GiB, whatever the machine has."""
    code = ("import resource; resource.setrlimit(resource.RLIMIT_AS, (2**30, 2**30)); "
            "from simulator import safe_read; print(safe_read.read_budget())")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True, env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))
    assert 0 < int(out.stdout) < 2**29


# ----------------------------------------------------------------- Ctrl-C
def numpy_loaded(pid):
    """Whether process ``pid`` has mapped numpy's core library (its imports
    are under way: the interpreter itself has started)."""
    try:
        with open(f"/proc/{pid}/maps") as f:
            return "_multiarray_umath" in f.read()
    except OSError:
        return False


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc to see imports start")
@pytest.mark.parametrize("delay", [0.0, 0.05, 0.2, 0.5, 1.0])
def test_ctrl_c_in_the_first_second_is_one_line_and_exit_130(tmp_path, delay):
    """SIGINT ``delay`` seconds after the process starts importing numpy (so
    while numpy, matplotlib and the simulator import, or as the run starts):
    `interrupted`, exit 130, no traceback, nothing in the out folder.
    (Before the interpreter runs any of tickprop's code -- its first ~20 ms --
    Ctrl-C is Python's own.)"""
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "simulator", "run", "fig3_fast", "--ticks",
                             "3000", "--out", str(out)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not numpy_loaded(proc.pid) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, (proc.returncode, stderr[-3000:])
    assert stderr.strip() == "interrupted" and stdout == ""
    assert not out.exists() and os.listdir(tmp_path) == []


def check_interrupted(tmp_path, body):
    """Run ``tickprop run fig3_fast`` as ``python -m`` of a module that first
    replaces scene loading by ``body`` (Python source of a function
    ``interrupted(*a, **k)``) -- a Ctrl-C met at a chosen awkward place."""
    (tmp_path / "interrupt_here.py").write_text(
        "import time\nfrom simulator.__main__ import main as tickprop\n"
        "from simulator import scene\n" + body +
        "scene.load = interrupted\n"
        f"tickprop(args=['run', 'fig3_fast', '--out', {str(tmp_path / 'out')!r}])\n")
    path = os.pathsep.join([ROOT] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    proc = subprocess.run([sys.executable, "-m", "interrupt_here"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PYTHONPATH=path))
    assert proc.returncode == 130 and proc.stderr.strip() == "interrupted", (
        proc.returncode, proc.stderr[-2000:])
    assert not (tmp_path / "out").exists()


def test_ctrl_c_met_inside_an_eval_still_exits_130(tmp_path):
    """CPython marks a KeyboardInterrupt that escapes an eval() of a string
    as unhandled (numpy's f2py evals strings while it imports, so Ctrl-C
    lands there now and then) and, run as ``python -m``, ends the process by
    SIGINT (exit -2) after the handled Ctrl-C asked for 130, unless the mark
    is cleared."""
    check_interrupted(tmp_path, "def interrupted(*a, **k):\n"
                              "    eval('(_ for _ in ()).throw(KeyboardInterrupt)')\n")


def test_ctrl_c_that_broke_an_extension_import_exits_130(tmp_path):
    """Ctrl-C inside a C extension's initialisation (matplotlib's ft2font,
    imported when the first picture is drawn) comes out as
    ImportError('initialization failed') raised from the KeyboardInterrupt:
    `interrupted` and 130, not a traceback."""
    check_interrupted(tmp_path, "def interrupted(*a, **k):\n"
                              "    raise ImportError('initialization failed') "
                              "from KeyboardInterrupt()\n")


def test_ctrl_c_dropped_in_a_finalizer_still_stops_the_command(tmp_path):
    """A Ctrl-C that lands in a finalizer or weakref callback is one Python
    can only print as 'Exception ignored' and drop, and the run went on to
    exit 0; it is delivered again, so the command stops with 130."""
    check_interrupted(tmp_path, "class Doomed:\n"
                              "    def __del__(self):\n"
                              "        raise KeyboardInterrupt\n"
                              "def interrupted(*a, **k):\n"
                              "    Doomed()\n"
                              "    time.sleep(5)\n")


# ------------------------------------------------------------ the loader
def test_the_loader_refuses_what_numpy_would_unpickle_or_inflate(tmp_path, monkeypatch):
    """read_npz directly: object arrays, a single .npy, and a budget smaller
    than the arrays are refused before any array is read."""
    from simulator import safe_read
    path = tmp_path / "a.npz"
    np.savez(path, a=np.arange(1000.0))
    assert safe_read.read_npz(path, ["a"])["a"].sum() == np.arange(1000.0).sum()
    with pytest.raises(safe_read.ReadError, match=r"7.9 KiB once read, more than the 3.9 KiB"):
        safe_read.read_npz(path, ["a"], budget=4000)
    monkeypatch.setattr(safe_read, "READ_BUDGET", 4000)
    with pytest.raises(safe_read.ReadError, match="more than the read budget of 3.9 KiB"):
        safe_read.read_npz(path, ["a"])
    np.savez(path, a=np.array([{"x": 1}], dtype=object))
    with pytest.raises(safe_read.ReadError, match="dtype object"):
        safe_read.read_npz(path, ["a"])
    np.save(tmp_path / "b.npy", np.arange(3))
    with pytest.raises(safe_read.ReadError, match="not an .npz archive"):
        safe_read.read_npz(tmp_path / "b.npy")
    for header, needle in (({"descr": "<f8", "fortran_order": False, "shape": (-1, 0)},
                            "negative shape"),
                           ({"descr": "<U0", "fortran_order": False, "shape": (2**50,)},
                            "dtype <U0"),
                           ({"descr": "<f8", "fortran_order": False, "shape": (3,)},
                            "header declares shape")):
        with zipfile.ZipFile(path, "w") as z, z.open("a.npy", "w") as f:
            npy.write_array_header_1_0(f, header)
        with pytest.raises(safe_read.ReadError, match=needle):
            safe_read.read_npz(path, ["a"], text=["a"])



def test_the_loader_reads_a_head_refuses_links_when_asked_and_caps_json_by_size(tmp_path):
    """What the ownership checks (simulator.manifest) read through the loader:
    the first bytes of a file (read_head), never through a link where they
    ask (follow_links=False: a link is refused, it is not what tickprop
    wrote), and a JSON file with a cap of their own (the manifest's)."""
    from simulator import safe_read
    real = tmp_path / "view.html"
    real.write_text("<!DOCTYPE html>" + "x" * 5000)
    link = tmp_path / "link.json"
    (tmp_path / "real.json").write_text('{"a": 1}')
    link.symlink_to(tmp_path / "real.json")
    assert safe_read.read_head(real, 15) == b"<!DOCTYPE html>"
    assert safe_read.read_head(real, 10**6) == real.read_bytes()
    assert safe_read.read_json(link) == {"a": 1}
    with pytest.raises(safe_read.ReadError, match="is a symbolic link"):
        safe_read.read_json(link, follow_links=False)
    with pytest.raises(safe_read.ReadError, match="is a symbolic link"):
        safe_read.read_head(link, 4, follow_links=False)
    with pytest.raises(safe_read.ReadError, match="larger than any file"):
        safe_read.read_json(tmp_path / "real.json", limit=4)
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(safe_read.ReadError, match="FIFO"):
        safe_read.read_head(tmp_path / "fifo", 4, follow_links=False)

# ---------------------------------------------------------------- sweeps
SWEEP = """description = "two points"
kind = "sweep"

[sweep]
base = "fig3_fast"
seeds = [0]

[sweep.set]
"run.ticks" = 8
"record.states" = false
"network.depth" = 2

[sweep.grid]
"stream.hold" = [1, 2]
"""


def test_a_fifo_or_a_deep_nesting_among_sweep_points_is_computed_again(tmp_path):
    """A sweep's point files are saved files too: one replaced by a FIFO (a
    reader would block for ever) or by deeply nested JSON (RecursionError) is
    damaged, so the point runs again; the sweep finishes (a real process
    with a timeout)."""
    scene_path = tmp_path / "two.toml"
    scene_path.write_text(SWEEP)
    out = tmp_path / "out"
    args = [sys.executable, "-m", "simulator", "sweep", str(scene_path), "--out", str(out),
            "--quiet"]
    assert subprocess.run(args, cwd=ROOT, capture_output=True, timeout=120).returncode == 0
    points = sorted((out / "points").iterdir())
    assert len(points) == 2
    points[0].unlink()
    os.mkfifo(points[0])
    points[1].write_text("[" * DEEP + "]" * DEEP)
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr[-3000:]
    for point in points:
        assert point.is_file() and json.loads(point.read_text())["status"] == "ok"
