"""Which files and folders are tickprop's: the manifest (``tickprop-manifest.json``,
what tickprop wrote in a folder, each file's size and sha256) and the removal
of stale temporaries of dead processes. The rules: docs/design/manifest.md.
"""
import contextlib
import functools
import hashlib
import json
import os
import socket
import threading

from . import files
from .files import OutputError
from .safe_read import ReadError, open_regular, read_json

try:
    import fcntl
except ImportError:                 # not POSIX: manifests are updated without a lock
    fcntl = None

MARKER = "tickprop_output"          # key set true in every run.json tickprop writes
MANIFEST = "tickprop-manifest.json"
MANIFEST_FORMAT = 1
VIEW_GENERATOR = '<meta name="generator" content="tickprop view">'
OS_FILES = (".DS_Store", "Thumbs.db", "desktop.ini")   # a file browser's, in any folder it shows
FOREIGN, CHANGED = "not written by tickprop", "changed since tickprop wrote it"
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
        return _unlisted_problems(folder)
    return _manifest_problems(folder, listed)


@contextlib.contextmanager
def recording(folder):
    """Within this block every file simulator.files writes under ``folder`` is listed
    in its manifest, if it has one, before it takes its name; yields True then. A
    damaged manifest is an OutputError naming it."""
    root = os.path.realpath(folder)
    if not os.path.isdir(root) or read_manifest(root) is None:
        yield False
        return
    with files.committing(root, functools.partial(_record, root)):
        yield True


def _record(root, tmp, path):
    """Rename ``tmp`` over ``path`` in the recorded folder ``root``: under its lock
    the manifest lists the new file first, the version on disk as ``before``."""
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
        files.replace(tmp, path)


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
    """Remove what dead tickprop processes left in ``parent``: this host's file
    temporaries, and temporary folders and backups provably tickprop's (_ours); a
    backup whose name is free is put back. Never raises; returns the paths done."""
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
    """{path: entry} of ``root``'s manifest, None if there is none, an OutputError if
    it is damaged. Kept in memory while the file is unchanged."""
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
    try:        # never through a recorded folder's commit: it is that folder's own list
        files.write_text(path, text, commit=files.replace)
        _remember_manifest(path, _stat_key(os.lstat(path)), listed)
    except BaseException:
        with _MANIFESTS_LOCK:
            _MANIFESTS.pop(path, None)
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


def adopt(root):
    """True if the folder ``root`` has a manifest, or gets one now as it is empty."""
    if not os.path.isdir(root) or read_manifest(root) is not None:
        return os.path.isdir(root)
    with _locked(root):
        if read_manifest(root) is not None:
            return True
        if not files.is_empty(root):
            return False
        write_manifest(root, {})
    return True


def scan(root, prefix=""):
    """{path: digest} of every regular file under ``root`` but the manifest, the
    marker, temporaries and OS_FILES."""
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


def _unlisted_problems(root):
    """(path, why) of everything in ``root``, which has no manifest."""
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError as exc:
        return [(".", _unreadable(exc))]
    return [(e.name + ("/" if e.is_dir(follow_symlinks=False) else ""), FOREIGN)
            for e in entries
            if e.name not in (files.TMP_MARK, *OS_FILES) and not files.live_temporary(e.name)]


def _unreadable(exc):
    return f"cannot read ({exc.strerror or exc})"
