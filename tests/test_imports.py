"""The house has no import circles and no function-local imports that dodge one
(ARCHITECTURE.md). Checked on the source itself: an AST walk collects every
module's import statements, the module-level ones form a graph that must have
no cycle, and an import of a project module inside a function is allowed only
where a comment beside it says it defers matplotlib (start-up time)."""
import ast
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def project_modules():
    """{module name: path} of cli.py and every module of the simulator package."""
    out = {"cli": os.path.join(ROOT, "cli.py")}
    for folder, _, files in os.walk(os.path.join(ROOT, "simulator")):
        for f in files:
            if f.endswith(".py"):
                rel = os.path.relpath(os.path.join(folder, f), ROOT)[:-3].split(os.sep)
                if rel[-1] == "__init__":
                    rel = rel[:-1]
                out[".".join(rel)] = os.path.join(folder, f)
    return out


MODULES = project_modules()


def _package(module, path):
    return module if path.endswith("__init__.py") else module.rpartition(".")[0]


def _targets(node, module, path):
    """Project modules an Import/ImportFrom node loads (absolute names)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = node.module or ""
        if node.level:
            pkg = _package(module, path)
            for _ in range(node.level - 1):
                pkg = pkg.rpartition(".")[0]
            base = f"{pkg}.{base}" if base else pkg
        # `from pkg import sub` needs the submodule pkg.sub; it needs pkg itself
        # only for names that are attributes of pkg (not submodules).
        subs = [f"{base}.{a.name}" for a in node.names]
        names = [s for s in subs if s in MODULES]
        if len(names) < len(subs):
            names.append(base)
    return {n for n in names if n in MODULES}


def imports(module):
    """(module-level imports, [(line, target, justified)] function-local ones)."""
    path = MODULES[module]
    with open(path) as f:
        source = f.read()
    lines = source.splitlines()
    top, local = set(), []

    def walk(node, in_function):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                targets = _targets(child, module, path)
                if in_function:
                    near = " ".join(lines[max(0, child.lineno - 3):child.lineno])
                    local.extend((child.lineno, t, "matplotlib" in near) for t in targets)
                else:
                    top.update(targets)
            walk(child, in_function or isinstance(child, (ast.FunctionDef,
                                                          ast.AsyncFunctionDef, ast.Lambda)))
    walk(ast.parse(source), False)
    top.discard(module)
    return top, local


def find_cycle(graph):
    """One cycle of a {node: set(nodes)} graph as a list, or None."""
    state, stack = {}, []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state:
                found = visit(m)
                if found:
                    return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state:
            found = visit(n)
            if found:
                return found
    return None


def test_cycle_finder_finds_a_cycle_and_accepts_a_dag():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_import_walker_sees_relative_and_local_imports(tmp_path, monkeypatch):
    path = tmp_path / "x.py"
    path.write_text("from . import runner\nfrom .kinds import base\nimport os\n"
                    "from . import __version__\n"
                    "def f():\n    from .scene import load\n")
    monkeypatch.setitem(MODULES, "simulator.x", str(path))
    top, local = imports("simulator.x")
    # `from . import runner` needs the submodule only; `__version__` is the package's
    assert top == {"simulator", "simulator.runner", "simulator.kinds.base"}
    assert [(line, target) for line, target, _ in local] == [(6, "simulator.scene")]


def test_no_import_circle_among_module_level_imports():
    graph = {m: imports(m)[0] for m in MODULES}
    assert find_cycle(graph) is None


@pytest.mark.parametrize("module", [
    m for m in sorted(MODULES)])
def test_no_function_local_import_of_a_project_module(module):
    """Allowed only to defer matplotlib, with a comment saying so."""
    _, local = imports(module)
    assert [(line, target) for line, target, ok in local if not ok] == []


def test_every_module_imports_in_a_fresh_interpreter():
    names = sorted(MODULES)
    code = "import importlib\nfor m in %r:\n    importlib.import_module(m)\n" % names
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_the_command_line_loads_no_plotting_library_until_it_draws():
    """The comments beside the deferred matplotlib imports must stay true:
    importing cli (what `tickprop --help` and a sweep worker pay) loads no
    matplotlib."""
    code = "import sys, cli; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "False"


def test_a_run_that_draws_nothing_loads_no_plotting_library(tmp_path):
    """`tickprop run ... --no-png --no-gif` simulates and saves without loading
    matplotlib; the array-API wrapper the reference uses is loaded when the
    engine's Backend is made, not on the first reference call of the run."""
    out = tmp_path / "run"
    code = ("import sys, cli\n"
            "from simulator.backend import Backend\n"
            "Backend()\n"
            "wrapped = 'array_api_compat.numpy' in sys.modules\n"
            f"sys.argv = ['tickprop', 'run', 'fig3_fast', '--ticks', '20', '--no-png', "
            f"'--no-gif', '--quiet', '--out', {str(out)!r}]\n"
            "try:\n    cli.main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "print(wrapped, 'matplotlib' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["True", "False"]
    assert (out / "trace.npz").exists()
