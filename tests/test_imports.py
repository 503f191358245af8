"""The house has no import circles and no function-local imports that dodge one
(ARCHITECTURE.md). Checked on the source itself: an AST walk collects every
module's import statements, the module-level ones form a graph that must have
no cycle, and an import of a project module inside a function is allowed only
where a comment beside it says it defers matplotlib (start-up time). Every module stands
on one floor of the table FLOORS below and imports nothing from a floor above its
own (model/ imports nothing above the model; probes/ no renderer or viewer)."""
import ast
import os
import re
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


def _from_base(node, module, path):
    """The absolute module an ImportFrom node names (its dots resolved)."""
    base = node.module or ""
    if node.level:
        pkg = _package(module, path)
        for _ in range(node.level - 1):
            pkg = pkg.rpartition(".")[0]
        base = f"{pkg}.{base}" if base else pkg
    return base


def _targets(node, module, path):
    """Project modules an Import/ImportFrom node loads (absolute names)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = _from_base(node, module, path)
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
    importing the command's entry (what `tickprop --help` and a sweep worker
    pay) loads no matplotlib."""
    code = "import sys, simulator.__main__; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "False"


def test_importing_the_package_loads_no_numpy_so_the_entry_guards_the_start():
    """simulator.__main__ (the console script's entry) sets its start-up Ctrl-C
    handler after `import simulator` ran, so the package itself must load
    nothing heavy; its public names load on first use, all of them."""
    code = ("import sys, simulator\nlight = 'numpy' not in sys.modules\n"
            "from simulator.model import reference\nfrom simulator.probes import Trace\n"
            "names = [getattr(simulator, n) for n in simulator.__all__]\n"
            "print(light, simulator.reference is reference and simulator.Trace is Trace,\n"
            "      Trace.html_viewer is not None)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["True", "True", "True"]


@pytest.mark.parametrize("scene", ["fig3_fast", "train_teacher", "locking"])
def test_a_run_that_draws_nothing_loads_no_plotting_library(tmp_path, scene):
    """`tickprop run ... --no-png --no-gif` simulates and saves without loading
    matplotlib (a kind's draw returns before it imports its renderer); the
    array-API wrapper the reference uses is loaded when the engine's Backend
    is made, not on the first reference call of the run."""
    out = tmp_path / "run"
    ticks = "" if scene == "locking" else "'--ticks', '20', "    # locking has no run.ticks
    code = ("import sys\nfrom simulator.__main__ import main as tickprop\n"
            "from simulator.backend import Backend\n"
            "Backend()\n"
            "wrapped = 'array_api_compat.numpy' in sys.modules\n"
            f"sys.argv = ['tickprop', 'run', {scene!r}, {ticks}'--no-png', "
            f"'--no-gif', '--quiet', '--out', {str(out)!r}]\n"
            "try:\n    tickprop()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "print(wrapped, 'matplotlib' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["True", "False"]
    assert (out / "run.json").exists()
    assert not list(out.glob("*.png")) and not list(out.glob("*.gif"))


# ---------------------------------------------------------------------------
# Floors: the one table of which module stands on which floor (lowest first).
# A module may import modules of its own floor or of the floors below it, never
# above (ARCHITECTURE.md: "one direction, no back and forth"). An entry names a
# package (it covers the package and everything inside) or one module; the
# longest entry that covers a module gives its floor, so a module filed in a
# folder of another floor is named on its own line, with the reason.
FLOORS = [
    ("ground", [  # errors, argument checks, array backend, files and run folders
        "simulator.errors", "simulator.arguments", "simulator.backend", "simulator.files",
        "simulator.paths", "simulator.threads", "simulator.pool", "simulator.version",
        "simulator.runfiles", "simulator.points", "simulator.manifest", "simulator.outputs",
        "simulator.selection", "simulator.safe_read", "simulator.dask_pool"]),
    ("model", [  # the one network type, its layers and the oracle
        "simulator.model", "simulator.network", "simulator.options"]),
    ("engine", ["simulator.engine"]),  # SPEC §1 ticks of any Model: the door, executors, tags
    ("rules", ["simulator.rules"]),  # the other credit-assignment rules on a Model
    ("data", ["simulator.datasets", "simulator.streams"]),
    ("probes", [  # the recorder; metrics is the recorder's Gram-identity mismatch
        "simulator.probes", "simulator.metrics"]),
    ("analysis", ["simulator.analysis"]),
    ("render/view", [  # read a Trace, never simulate; kinds and sweeps call them to draw
        "simulator.render", "simulator.view"]),
    ("scene", ["simulator.scene"]),
    ("build", ["simulator.build", "simulator.runner"]),
    ("experiments", [  # paper-specific loops: online training, paper 001, paper 002's graphs
        "simulator.experiments"]),
    ("kinds", ["simulator.kinds"]),
    ("sweep", ["simulator.sweep"]),
    ("api", ["simulator", "simulator.api", "cli"]),
]

# Packages on one floor that must not import each other.
SIBLINGS = [("simulator.render", "simulator.view")]

# Upward imports allowed for now, each with what it takes and who removes it (none
# today). The list must be exact: a new upward import fails, and so does an entry
# that is gone.
KNOWN_UPWARD = {}


def _covers(entry, module):
    return module == entry or module.startswith(entry + ".")


def floor_of(module, floors=FLOORS):
    """(index, name) of the floor whose longest entry covers ``module``, or None."""
    best = None
    for i, (name, entries) in enumerate(floors):
        for entry in entries:
            if _covers(entry, module) and (best is None or len(entry) > best[0]):
                best = (len(entry), i, name)
    return None if best is None else best[1:]


def upward_imports(graph, floors=FLOORS, siblings=SIBLINGS):
    """{(importer, imported)} of a {module: set(modules)} graph that go up a
    floor, or across between sibling packages."""
    bad = set()
    for src, targets in graph.items():
        for dst in targets:
            if floor_of(dst, floors)[0] > floor_of(src, floors)[0]:
                bad.add((src, dst))
            for a, b in siblings:
                if (_covers(a, src) and _covers(b, dst)) or (_covers(b, src) and _covers(a, dst)):
                    bad.add((src, dst))
    return bad


def dependency_graph():
    """Every project import, module-level or function-local (a deferred import
    is still a dependency)."""
    graph = {}
    for m in MODULES:
        top, local = imports(m)
        graph[m] = top | {t for _, t, _ in local}
    return graph


def test_every_module_stands_on_a_floor_and_every_entry_names_a_module():
    assert [m for m in sorted(MODULES) if floor_of(m) is None] == []
    entries = [e for _, es in FLOORS for e in es]
    assert sorted(e for e in set(entries) if e not in MODULES) == []
    assert len(entries) == len(set(entries))


def test_no_module_imports_a_floor_above_its_own():
    found = upward_imports(dependency_graph())
    new = sorted(found - set(KNOWN_UPWARD))
    gone = sorted(set(KNOWN_UPWARD) - found)
    assert new == [], "upward imports (see FLOORS): %s" % [
        f"{s} ({floor_of(s)[1]}) -> {d} ({floor_of(d)[1]})" for s, d in new]
    assert gone == [], f"no longer imported: delete from KNOWN_UPWARD {gone}"


def test_the_floor_check_catches_an_upward_or_sideways_import():
    """Fed a graph with fake edges (no real code edited), the checker reports
    exactly the edges that go up or across, and passes those that go down."""
    graph = dependency_graph()
    fake = {
        ("simulator.model.graph", "simulator.kinds.train"),  # model importing a kind
        ("simulator.probes.recorder", "simulator.render.raster"),  # probes importing render
        ("simulator.render.raster", "simulator.view.data"),  # sibling across
        ("simulator.errors", "simulator.model"),  # the ground importing the model
    }
    down = {("simulator.kinds.train", "simulator.model.graph"),
            ("simulator.view.data", "simulator.errors")}
    for src, dst in fake | down:
        graph[src] = graph[src] | {dst}
    assert upward_imports(graph) - set(KNOWN_UPWARD) == fake
    # a new module in a package takes the package's floor
    assert floor_of("simulator.model.new_layer") == floor_of("simulator.model.graph")
    assert upward_imports({"simulator.model.new_layer": {"simulator.sweep"}}) == {
        ("simulator.model.new_layer", "simulator.sweep")}


def _bound_names(path):
    """Names a module binds at its top level (definitions, assignments, imports)."""
    with open(path) as f:
        tree = ast.parse(f.read())
    bound = set()
    body = list(tree.body)
    for node in body:
        if isinstance(node, ast.If):            # `if TYPE_CHECKING:` (lazy public names)
            body.extend(node.body + node.orelse)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            bound.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
    return bound


def _missing_project_imports(path, module=None):
    """(line, name) of every import in the file at ``path`` that names a
    ``simulator`` module (absolute, or relative inside the package) which is
    not in this tree. Such an import is not silently harmless: an editable
    install of another checkout would answer it with that checkout's file."""
    with open(path) as f:
        tree = ast.parse(f.read())
    missing = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _from_base(node, module, path)
            names = [base]
            # `from pkg import x` needs x as a submodule or a name pkg binds
            if base in MODULES and MODULES[base].endswith("__init__.py"):
                bound = _bound_names(MODULES[base])
                names += [f"{base}.{a.name}" for a in node.names if a.name not in bound]
        else:
            continue
        missing += [(node.lineno, n) for n in names
                    if (n == "simulator" or n.startswith("simulator.")) and n not in MODULES]
    return missing


def test_every_project_import_names_a_module_of_this_tree(tmp_path):
    """After a module moves, no import anywhere (package, cli, tests,
    benchmarks, docs scripts) still names its old place."""
    found = {}
    for m, path in MODULES.items():
        found.update({(path, line, n): 1 for line, n in _missing_project_imports(path, m)})
    for folder in ("tests", "benchmarks", "docs"):
        for f in sorted(os.listdir(os.path.join(ROOT, folder))):
            if f.endswith(".py"):
                path = os.path.join(ROOT, folder, f)
                found.update({(path, line, n): 1 for line, n in _missing_project_imports(path)})
    assert sorted(found) == []
    stale = tmp_path / "stale.py"
    stale.write_text("import simulator.sync\nfrom simulator.pc import graph\n"
                     "from simulator.analysis import sync\nfrom simulator import Model, training\n")
    assert _missing_project_imports(str(stale)) == [
        (1, "simulator.sync"), (2, "simulator.pc"), (4, "simulator.training")]


def test_the_tests_readme_files_every_test_file_once():
    """tests/README.md groups the tests by oracle: a new test file is filed
    there under the oracle it is checked against, a deleted one is struck."""
    with open(os.path.join(ROOT, "tests", "README.md")) as f:
        listed = re.findall(r"^\| (test_\w+\.py) \|", f.read(), re.M)
    files = sorted(f for f in os.listdir(os.path.join(ROOT, "tests"))
                   if f.startswith("test_") and f.endswith(".py"))
    assert sorted(set(files) - set(listed)) == [], "file these in tests/README.md"
    assert sorted(set(listed) - set(files)) == [], "no such test file"
    assert len(listed) == len(set(listed)), "a file is listed twice"
