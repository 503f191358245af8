"""Which files and folders are tickprop's: the manifest (``tickprop-manifest.json``,
what tickprop wrote in a folder, each file's size and sha256), the rule for
folders of the version before it (LEGACY), and the removal of stale
temporaries of dead processes. The rules: docs/design/manifest.md.
"""
import contextlib
import functools
import hashlib
import json
import os
import re
import socket
import threading

from . import files
from .files import OutputError
from .points import read_point
from .safe_read import MAX_JSON_BYTES, ReadError, open_regular, read_head, read_json

try:
    import fcntl
except ImportError:                 # not POSIX: manifests are updated without a lock
    fcntl = None

MARKER = "tickprop_output"          # run.json key that makes a folder a tickprop output
MANIFEST = "tickprop-manifest.json"
MANIFEST_FORMAT = 1
VIEW_GENERATOR = '<meta name="generator" content="tickprop view">'
RESULT_FILES = {"diffusion": ("trace.npz",), "train": ("results.json",),
                "ar_converge": ("relaxation.npz",), "ar_train": ("training.npz",),
                "pc_table": ("table1.csv", "table2.csv"), "pc_wave": ("wave.npz",),
                "locking": ("locking.npz",)}
SWEEP_FILES = ("sweep.csv", "phase.png", "boundary.json", "accuracy.png")
OS_FILES = (".DS_Store", "Thumbs.db", "desktop.ini")   # a file browser's, in any folder it shows
FOREIGN, CHANGED = "not written by tickprop", "changed since tickprop wrote it"
_LEGACY_TMP = re.compile(r"^\.(?P<name>.+)\.[0-9a-f]{12}\.tmp$")
_POINT_FILE = re.compile(r"^[0-9a-f]{64}\.json$")
_MANIFEST_BYTES = 1 << 30          # a manifest larger than this is damaged
_DIGESTS = {}                       # stat identity -> sha256: a file is hashed once per process
_DIGESTS_LOCK = threading.Lock()
_MANIFESTS = {}                     # manifest path -> (stat identity, entries) last seen
_MANIFESTS_LOCK = threading.Lock()


def foreign_files(folder):
    """[(path relative to ``folder``, why)] of what tickprop cannot show it
    wrote, why being FOREIGN, CHANGED or 'damaged' (the manifest); [] for an
    empty folder or a tickprop output. Stale temporaries are removed first."""
    folder = os.fspath(folder)
    clean_stale(folder)
    try:
        listed = read_manifest(folder)
    except OutputError:
        return [(MANIFEST, "damaged")]
    if listed is None:
        return _legacy_problems(folder)
    return _manifest_problems(folder, listed)


@contextlib.contextmanager
def recording(folder):
    """Within this block every file simulator.files writes under ``folder`` is
    listed in its manifest before it takes its name, if ``folder`` is a
    tickprop output (a legacy one gets a manifest now); elsewhere the writes
    are plain atomic writes. Yields True when recording. A damaged manifest
    is an OutputError naming it."""
    root = os.path.realpath(folder)
    if not adopt(root):
        yield False
        return
    with files.committing(root, functools.partial(_record, root)):
        yield True


def _record(root, tmp, path):
    """Rename ``tmp`` over ``path`` in the recorded folder ``root``: under its
    lock the manifest lists the new file first, the version on disk as
    ``before``."""
    real = os.path.join(os.path.realpath(os.path.dirname(os.path.abspath(path))),
                        os.path.basename(path))
    rel = os.path.relpath(real, root).replace(os.sep, "/")
    entry = _digest(tmp)
    if entry is None:
        raise OutputError(f"{path}: cannot read back the file just written")
    with _locked(root):
        listed = read_manifest(root) or {}
        now = _digest(real)
        if now is not None and not _same(now, entry):
            entry["before"] = now
        listed[rel] = entry
        write_manifest(root, listed)
        files.kill_hook(path)
        os.replace(tmp, path)


def file_status(folder, name):
    """'missing', 'ours' (listed as it is), 'changed' (listed, changed since),
    'foreign' (not listed) or 'unknown' (no manifest: the caller decides) for
    ``folder/name``. A damaged manifest is an OutputError naming it."""
    path = os.path.join(folder, name)
    if not os.path.lexists(path):
        return "missing"
    listed = read_manifest(os.path.realpath(folder))
    if listed is None:
        return "unknown"
    want = listed.get(name.replace(os.sep, "/"))
    if want is None:
        return "foreign"
    return "ours" if _matches(_digest(path), want) else "changed"


def clean_stale(parent):
    """Remove what dead tickprop processes left in ``parent``: this host's
    single-file temporaries, temporary folders and backups that are provably
    tickprop's (_ours); a backup whose name is free is put back under it.
    Never raises; returns the paths removed or restored."""
    done = []
    try:
        entries = sorted(os.scandir(parent), key=lambda e: e.name)
    except OSError:
        return done
    backups = {}
    for entry in entries:
        m = files.STALE.match(entry.name)
        if not m or files.alive(int(m["pid"])):
            continue
        if entry.is_file(follow_symlinks=False):
            if m["kind"] == "tmp" and entry.name.endswith(files.HOST_TAG, -12, -8):
                with contextlib.suppress(OSError):
                    os.remove(entry.path)
                    done.append(entry.path)
        elif not entry.is_dir(follow_symlinks=False):
            continue
        elif m["kind"] == "old":
            backups.setdefault(m["name"], []).append(entry.path)
        elif _ours(entry.path) and files.remove_tree(entry.path):
            done.append(entry.path)
    for name, paths in backups.items():
        target = os.path.join(parent, name)
        if not os.path.lexists(target):         # killed between its two renames
            newest = max(paths, key=_ctime)
            with contextlib.suppress(OSError):
                os.rename(newest, target)
                files.unmark_folder(target)
                done.append(newest)
                paths.remove(newest)
        for path in paths:
            if _ours(path) and files.remove_tree(path):
                done.append(path)
    return done


def _ours(path):
    """Provably tickprop's: this host's marker file, or foreign_files finds nothing."""
    mark = os.path.join(path, files.TMP_MARK)
    if os.path.isfile(mark):
        host = None
        with contextlib.suppress(ReadError):
            host = read_json(mark, dict).get("host")
        return host in (None, socket.gethostname())
    return files.is_empty(path) or not foreign_files(path)


def _ctime(path):
    try:
        return os.lstat(path).st_ctime
    except OSError:
        return 0.0


def _digest(path):
    """{"size", "sha256"} of the regular file ``path``; None for anything else."""
    try:
        f, _ = open_regular(path, follow_links=False)
    except ReadError:
        return None
    with f:
        key = _stat_key(os.fstat(f.fileno()))
        with _DIGESTS_LOCK:
            known = _DIGESTS.get(key)
        if known is None:
            try:
                known = hashlib.file_digest(f, "sha256").hexdigest()
            except OSError:
                return None
            with _DIGESTS_LOCK:
                _DIGESTS[key] = known
    return {"size": key[2], "sha256": known}


def _same(a, b):
    return (isinstance(a, dict) and isinstance(b, dict) and a.get("size") == b.get("size")
            and a.get("sha256") == b.get("sha256"))


def _matches(got, want):
    """Is digest ``got`` the version entry ``want`` lists, or its ``before``?"""
    return got is not None and (_same(got, want) or _same(got, want.get("before")))


def read_manifest(root):
    """{path: entry} of ``root``'s manifest, None if there is none, an
    OutputError if it is damaged. Kept in memory while the file is unchanged."""
    path = os.path.join(root, MANIFEST)
    try:
        key = _stat_key(os.lstat(path))
    except FileNotFoundError:
        return None
    except OSError:
        key = None
    with _MANIFESTS_LOCK:
        known = _MANIFESTS.get(path)
    if key is not None and known is not None and known[0] == key:
        return known[1]
    data = {}
    with contextlib.suppress(ReadError):
        data = read_json(path, dict, limit=_MANIFEST_BYTES, follow_links=False)
    listed = data.get("files")
    if (data.get("tickprop_manifest") != MANIFEST_FORMAT or not isinstance(listed, dict)
            or not all(_good_path(k) and _good_entry(v) for k, v in listed.items())):
        raise OutputError(f"{path}: damaged (not a tickprop manifest); move it away, or pass "
                          "--force to replace the folder")
    _remember_manifest(path, key, listed)
    return listed


def _remember_manifest(path, key, listed):
    if key is not None:
        with _MANIFESTS_LOCK:
            _MANIFESTS[path] = (key, listed)


def _stat_key(st):
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _good_path(rel):
    """A manifest path: relative, '/'-separated, no empty, '.' or '..' part."""
    return (isinstance(rel, str) and rel and not rel.startswith("/")
            and all(p not in ("", ".", "..") for p in rel.split("/")))


def _good_entry(entry, nested=False):
    """A manifest entry: size and sha256, and at most one level of ``before``."""
    if not isinstance(entry, dict):
        return False
    ok = (isinstance(entry.get("size"), int) and isinstance(entry.get("sha256"), str)
          and len(entry["sha256"]) == 64)
    before = entry.get("before")
    return ok and (before is None or (not nested and _good_entry(before, nested=True)))


def write_manifest(root, listed):
    """Replace ``root``'s manifest atomically: one line per file, in path order
    (the C JSON encoder: a sweep of thousands of points rewrites it after each)."""
    text = json.dumps({"files": listed, "tickprop_manifest": MANIFEST_FORMAT}, sort_keys=True)
    # Inside a JSON string a quote is escaped, so '}, "' only ever ends an entry.
    text = text.replace('{"files": {', '{"files": {\n', 1).replace('}, "', '},\n"') + "\n"
    path = os.path.join(root, MANIFEST)
    tmp = files.tmp_name(root, MANIFEST, "tmp")
    try:
        with open(tmp, "xb") as f:
            f.write(text.encode())
        os.chmod(tmp, files.FILE_MODE)
        files.kill_hook(path)
        os.replace(tmp, path)
        _remember_manifest(path, _stat_key(os.lstat(path)), listed)
    except BaseException:
        with _MANIFESTS_LOCK:
            _MANIFESTS.pop(path, None)
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


@contextlib.contextmanager
def _locked(root):
    """An exclusive flock on the folder ``root`` itself (no lock file to account for)."""
    if fcntl is None:
        yield
        return
    fd = os.open(root, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def adopt(root, empty=False):
    """True if the folder ``root`` has a manifest, or gets one now because the
    legacy rule recognises it (or, with ``empty``, it is empty); else False."""
    if not os.path.isdir(root) or read_manifest(root) is not None:
        return os.path.isdir(root)
    with _locked(root):
        if read_manifest(root) is not None:
            return True
        if not empty if files.is_empty(root) else _legacy_problems(root):
            return False
        _drop_legacy_temporaries(root)
        write_manifest(root, scan(root))
    return True


def scan(root, prefix=""):
    """{path: digest} of every regular file under ``root`` but the manifest,
    the marker file, temporaries and OS_FILES."""
    out = {}
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if entry.name in (files.TMP_MARK, *OS_FILES) or files.STALE.match(entry.name) or (
                not prefix and entry.name == MANIFEST):
            continue
        if entry.is_dir(follow_symlinks=False):
            out.update(scan(entry.path, prefix + entry.name + "/"))
        elif (digest := _digest(entry.path)) is not None:
            out[prefix + entry.name] = digest
    return out


def _manifest_problems(root, listed):
    """(path, why) of what ``root`` holds beyond ``listed``."""
    folders = {"/".join(p.split("/")[:i]) for p in listed for i in range(1, p.count("/") + 1)}
    problems = []

    def walk(path, prefix):
        try:
            entries = sorted(os.scandir(path), key=lambda e: e.name)
        except OSError as exc:
            problems.append((prefix or ".", _unreadable(exc)))
            return
        for entry in entries:
            rel = prefix + entry.name
            if ((not prefix and entry.name in (MANIFEST, files.TMP_MARK))
                    or files.live_temporary(entry.name)):
                continue
            if entry.is_dir(follow_symlinks=False):
                clean_stale(entry.path)
                if rel in folders:
                    walk(entry.path, rel + "/")
                elif not files.is_empty(entry.path):
                    problems.append((rel + "/", FOREIGN))
                continue
            if entry.name in OS_FILES:
                continue
            want = listed.get(rel)
            if want is None:
                problems.append((rel, FOREIGN))
            elif not _matches(_digest(entry.path), want):
                problems.append((rel, CHANGED))
    walk(root, "")
    return problems


def _legacy_problems(root):
    """(path, why) of what ``root``, without a manifest, holds beyond the legacy rule."""
    try:
        entries = {e.name: e for e in os.scandir(root) if e.name != files.TMP_MARK
                   and e.name not in OS_FILES and not files.live_temporary(e.name)}
    except OSError as exc:
        return [(".", _unreadable(exc))]
    everything = [(_shown(e), FOREIGN) for _, e in sorted(entries.items())]
    run = entries.get("run.json")
    meta = None
    if run is not None and run.is_file(follow_symlinks=False):
        with contextlib.suppress(ReadError):
            meta = read_json(run.path, dict, follow_links=False)
    marked = isinstance(meta, dict) and meta.get(MARKER) is True
    kind = meta.get("kind") if marked else None
    if isinstance(kind, str) and kind in RESULT_FILES:
        pictures = meta.get("pictures")
        allowed = {"run.json", *RESULT_FILES[kind]} | {
            p for p in (pictures if isinstance(pictures, list) else [])
            if isinstance(p, str) and p not in ("", ".", "..") and "/" not in p
            and os.sep not in p}
        return [(_shown(e), FOREIGN) for name, e in sorted(entries.items())
                if not _legacy_run_file(e, allowed)]
    sweep_json = marked and kind == "sweep"
    points = entries.get("points")
    if sweep_json or (run is None and points is not None and points.is_dir(follow_symlinks=False)):
        problems, valid = _legacy_sweep_problems(entries, sweep_json)
        if valid or sweep_json:
            return problems
    return everything


def _legacy_run_file(entry, allowed):
    if not entry.is_file(follow_symlinks=False):
        return False
    if entry.name in allowed or (entry.name == "view.html" and _is_view(entry.path)):
        return True
    return _legacy_tmp(entry.name) in allowed | {"view.html"}


def _legacy_sweep_problems(entries, sweep_json):
    """(problems, valid points) under the legacy sweep rule."""
    allowed = set(SWEEP_FILES) | ({"run.json"} if sweep_json else set())
    problems, valid = [], 0
    for name, entry in sorted(entries.items()):
        if name == "points" and entry.is_dir(follow_symlinks=False):
            found, valid = _legacy_points_problems(entry.path)
            problems += found
            continue
        if entry.is_file(follow_symlinks=False) and (name in allowed
                                                     or _legacy_tmp(name) in allowed):
            continue
        problems.append((_shown(entry), FOREIGN))
    return problems, valid


def _legacy_points_problems(points):
    """(problems, valid points) of a sweep's points/ folder."""
    clean_stale(points)
    problems, valid = [], 0
    try:
        entries = sorted(os.scandir(points), key=lambda e: e.name)
    except OSError as exc:
        return [("points/", _unreadable(exc))], 0
    for entry in entries:
        name = entry.name
        if name in OS_FILES or files.live_temporary(name):
            continue
        if entry.is_file(follow_symlinks=False):
            if _POINT_FILE.match(_legacy_tmp(name) or ""):
                continue
            if (_POINT_FILE.match(name)
                    and entry.stat(follow_symlinks=False).st_size <= MAX_JSON_BYTES
                    and read_point(points, name[:-len(".json")])[0] is not None):
                valid += 1
                continue
        problems.append(("points/" + _shown(entry), FOREIGN))
    return problems, valid


def _drop_legacy_temporaries(root):
    """Remove the legacy temporaries of ``root`` and its points/."""
    for folder in (root, os.path.join(root, "points")):
        with contextlib.suppress(OSError):
            for entry in list(os.scandir(folder)):
                if _LEGACY_TMP.match(entry.name) and entry.is_file(follow_symlinks=False):
                    with contextlib.suppress(OSError):
                        os.remove(entry.path)


def _legacy_tmp(name):
    """The file a legacy temporary ``.<name>.<12 hex>.tmp`` stood for, else None."""
    old = _LEGACY_TMP.match(name)
    return old["name"] if old else None


def _unreadable(exc):
    return f"cannot read ({exc.strerror or exc})"


def _shown(entry):
    return entry.name + "/" if entry.is_dir(follow_symlinks=False) else entry.name


def _is_view(path):
    """Do the first 2 KiB of the regular file ``path`` hold VIEW_GENERATOR?"""
    try:
        head = read_head(path, 2048, follow_links=False)
    except ReadError:
        return False
    return VIEW_GENERATOR in head.decode("utf-8", errors="replace")

