"""A regular (non-editable) install ships the scenes and runs them.

The wheel is built from a copy of the tracked sources (no build isolation, so
no network), installed into a fresh virtual environment, and its console
script is run from a folder outside the checkout, so nothing can fall back on
the checkout's ``scenes/`` folder. The run-time dependencies come from the
test environment through a path entry, as a user's pip would have installed
them.
"""
import glob
import os
import shutil
import signal
import site
import subprocess
import sys
import sysconfig
import time
import zipfile

import pip
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SKIP = {".git", ".venv", "outputs", "build", "dist", ".pytest_cache", ".hypothesis",
        "__pycache__", "docs"}


def _shipped_scenes():
    return sorted(f[:-5] for f in os.listdir(os.path.join(ROOT, "scenes")) if f.endswith(".toml"))


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A venv holding tickprop installed from a freshly built wheel; returns (bin, wheel)."""
    pytest.importorskip("wheel", reason="the test extra brings wheel")
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=lambda d, names: [n for n in names if n in SKIP
                                                        or n.endswith(".egg-info")])
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--no-build-isolation", "-w", str(tmp / "dist"), str(src)],
                   check=True, capture_output=True, text=True)
    wheel = glob.glob(str(tmp / "dist" / "tickprop-*.whl"))[0]
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    # The venv's own interpreter runs this environment's pip, so the console
    # script's shebang names the venv, as `pip install .` inside it would.
    pip_home = os.path.dirname(os.path.dirname(pip.__file__))
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-index", wheel], check=True, capture_output=True, text=True,
                   env=dict(os.environ, PYTHONPATH=pip_home))
    purelib = subprocess.run([str(venv / "bin" / "python"), "-c",
                              "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             check=True, capture_output=True, text=True).stdout.strip()
    # The dependencies (numpy, matplotlib, ...) from this test environment, after
    # the venv's own site-packages, as a plain path entry: .pth files found there
    # (the checkout's editable install) are not processed.
    deps = [p for p in site.getsitepackages() + [sysconfig.get_path("purelib")] if os.path.isdir(p)]
    with open(os.path.join(purelib, "test_deps.pth"), "w") as f:
        f.write("\n".join(dict.fromkeys(deps)) + "\n")
    return venv / "bin", wheel, tmp


def test_wheel_carries_every_scene(installed):
    _, wheel, _ = installed
    names = zipfile.ZipFile(wheel).namelist()
    shipped = sorted(os.path.basename(n)[:-5] for n in names
                     if "/data/share/tickprop/scenes/" in n and n.endswith(".toml"))
    assert shipped == _shipped_scenes()


def test_installed_tickprop_lists_and_runs_scenes(installed):
    bindir, _, tmp = installed
    work = tmp / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"
    where = subprocess.run([str(bindir / "python"), "-c",
                            "import simulator, simulator.scene as s; "
                            "print(simulator.__file__); print(s.SCENES_DIR)"],
                           cwd=work, env=env, check=True, capture_output=True, text=True)
    module_file, scenes_dir = where.stdout.split("\n")[:2]
    assert not module_file.startswith(ROOT) and not scenes_dir.startswith(ROOT)
    listed = subprocess.run([str(bindir / "tickprop"), "scenes"], cwd=work, env=env,
                            capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    names = [line.split()[0] for line in listed.stdout.splitlines() if line.strip()]
    assert names == _shipped_scenes()
    assert "(invalid" not in listed.stdout
    ran = subprocess.run([str(bindir / "tickprop"), "run", "fig1_constant", "--ticks", "20",
                          "--no-gif", "--quiet", "--out", "fig1"], cwd=work, env=env,
                         capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    assert (work / "fig1" / "trace.npz").is_file() and (work / "fig1" / "run.json").is_file()


def test_wheel_installs_one_top_level_package_and_enters_through_it(installed):
    """Only `simulator` lands in site-packages (no top-level `cli` to collide
    with anyone's), and the console script enters at simulator.__main__."""
    _, wheel, _ = installed
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        meta = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        entry = z.read(meta[0]).decode()
    top = {n.split("/")[0] for n in names}
    assert {t for t in top if not t.startswith("tickprop-0")} == {"simulator"}
    assert not any(n.endswith((".py", ".pyc")) and "/" not in n for n in names)
    assert "tickprop = simulator.__main__:main" in entry


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc to see imports start")
def test_installed_tickprop_ctrl_c_while_starting_is_one_line(installed):
    """SIGINT to the installed console script as soon as numpy starts loading:
    the entry set its handler before (`import simulator` loads no numpy), so
    `interrupted`, exit 130, no traceback, nothing written."""
    bindir, _, tmp = installed
    work = tmp / "interrupt"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    proc = subprocess.Popen([str(bindir / "tickprop"), "run", "fig3_fast", "--ticks", "3000",
                             "--out", "out"], cwd=work, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            with open(f"/proc/{proc.pid}/maps") as f:
                if "_multiarray_umath" in f.read():
                    break
        except OSError:
            break
        time.sleep(0.002)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert (proc.returncode, stderr.strip(), stdout) == (130, "interrupted", ""), stderr[-3000:]
    assert os.listdir(work) == []
