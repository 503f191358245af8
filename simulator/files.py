"""Every file and folder tickprop writes goes through here, atomically.

Single files (JSON, CSV, text, npz, PNG, GIF) are written to a temporary name
``.<name>.tmp-<pid>-<token>`` in the same folder and moved over the final name
with ``os.replace``: a reader sees the old file or the new one, never half of
one. Output folders are filled under a temporary sibling name
``.<name>.tmp-<pid>-<token>`` (a marker file ``.tickprop-tmp`` inside) and then
put under their name in one step: on Linux ``renameat2(RENAME_EXCHANGE)`` swaps
the new folder with the old one, which is deleted afterwards; where the
exchange is not available the old folder is first moved to a backup
``.<name>.old-<pid>-<token>`` that the next run into the same parent restores
if it finds the name empty.

The manifest. Every folder tickprop writes holds ``tickprop-manifest.json``
(MANIFEST): ``{"tickprop_manifest": 1, "files": {path: {"size": bytes,
"sha256": hex}}}``, one entry per file tickprop wrote there (paths relative to
the folder, '/'-separated; the manifest itself is not listed). A whole output
(a run of any kind, ``render --out``) gets it last, before the folder takes its
name. A folder written in place -- a sweep (points, sweep.csv, pictures), a
``view.html`` that ``tickprop view`` writes into a run folder, the pictures of
an in-place ``render`` -- updates it with every file (``recording``): under an
exclusive ``flock`` of the folder itself, the manifest is read, the entry of
the file is set and the manifest replaced atomically, then the file is renamed
into place; until that rename the entry also keeps the version on disk (``before``),
so a kill between the two steps leaves a folder whose files are all listed.

What may be replaced or reused (``check_out``, ``claim_folder`` and the install
step, which checks again): a missing name, an empty folder, or a folder whose
manifest lists exactly what it holds, each file with its listed size and
sha256 (a listed file that is gone is fine; empty subfolders hold nothing and
are not counted, nor are the files a file browser leaves in any folder it
shows, OS_FILES: .DS_Store, Thumbs.db, desktop.ini). Stale temporaries of
dead tickprop processes are removed first; those of live ones are not counted. Anything else -- a file the manifest
does not list (a note the user added), a listed file changed since, a link, a
FIFO, a damaged manifest -- stops the command before any work with one
OutputError naming those files (a few, then "and N more"), unless ``force``.
One exception, for a sweep's reuse only: a listed point file that changed is
run again (the sweep checks every point file itself). Even with ``force`` the
root folder, the home folder, the current folder and the folders above them,
and any folder holding a ``.git`` are never replaced. A symlinked output is
followed: the real folder it names is written with the same rules and the link
stays.

Folders of the version before the manifest (LEGACY) are recognised by exact
content only, never by a ``points/`` folder or by JSON keys:

- a run folder: its run.json is a JSON object with ``"tickprop_output": true``,
  and every other entry is a file that run.json's ``"pictures"`` list names, a
  result file of its ``"kind"`` (RESULT_FILES: diffusion trace.npz, train
  results.json, ar_converge relaxation.npz, ar_train training.npz, pc_table
  table1.csv and table2.csv, pc_wave wave.npz, locking locking.npz), or a
  ``view.html`` whose first 2 KiB hold VIEW_GENERATOR;
- a sweep folder: ``points/`` holds only valid point files (``<key>.json``
  whose record has that key and whose scene and options hash to it, as
  ``simulator.points.read_point`` checks), at least one of them, and beside it
  only SWEEP_FILES and, from a forced ``claim_folder``, a run.json with the
  marker and ``"kind": "sweep"`` (which stands for the points if none ran yet).

In both, OS_FILES are not counted, and the marker file ``.tickprop-tmp`` and
that version's single-file temporaries ``.<name>.<12 hex>.tmp`` of a file the
rule accepts count as tickprop's. A sweep, an in-place render or a view written into such a folder
first gives it a manifest of what it holds (and removes those temporaries).

Temporaries. Every temporary -- a single file's, an output's folder, a backup,
the scratch folder of an in-place render
(``.tickprop-render.tmp-<pid>-<token>`` inside the run folder, marked) --
carries the writer's pid in its name;
``clean_stale`` removes those of dead processes: a file by its name alone
(its token starts with a tag of this host's name, so another host's files on
a shared disk are left), a folder only if provably tickprop's (its marker
file, its manifest or the legacy rule, or empty). Commands run it on the
folders they write in or check: the parent of an output, the output itself
and its ``points/``, the folder of a view.html, the run folder of an in-place
render. A run that fails removes its temporary folder and every parent folder
it created that is still empty. Writes are atomic against a killed process,
not against a power loss (no fsync).

Test hook (tests only, never set it otherwise): with the environment variable
TICKPROP_TEST_KILL_AT_RENAME naming a file (its base name, or a path ending
with it), the process kills itself with SIGKILL right before renaming that
file's temporary into place.
"""
import contextlib
import csv
import ctypes
import errno
import hashlib
import io
import json
import os
import platform
import re
import shutil
import signal
import socket
import threading
import unicodedata
import uuid

import imageio.v3 as iio
import numpy as np

from .errors import SimulatorError
from .points import read_point
from .runfiles import MAX_JSON_BYTES, ReadError, open_regular, read_head, read_json

try:
    import fcntl
except ImportError:                 # not POSIX: manifests are updated without a lock
    fcntl = None

MARKER = "tickprop_output"          # run.json key that makes a folder a tickprop output
MANIFEST = "tickprop-manifest.json"  # what tickprop wrote in a folder (see the module notes)
MANIFEST_FORMAT = 1
TMP_MARK = ".tickprop-tmp"          # inside a folder tickprop is writing (pid and host)
KILL_HOOK = "TICKPROP_TEST_KILL_AT_RENAME"   # tests only: SIGKILL before this file's rename
VIEW_GENERATOR = '<meta name="generator" content="tickprop view">'
RESULT_FILES = {"diffusion": ("trace.npz",), "train": ("results.json",),
                "ar_converge": ("relaxation.npz",), "ar_train": ("training.npz",),
                "pc_table": ("table1.csv", "table2.csv"), "pc_wave": ("wave.npz",),
                "locking": ("locking.npz",)}
SWEEP_FILES = ("sweep.csv", "phase.png", "boundary.json", "accuracy.png")
OS_FILES = (".DS_Store", "Thumbs.db", "desktop.ini")   # a file browser's, in any folder it shows
FILE_MODE, DIR_MODE = 0o644, 0o755
_STALE = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<pid>\d+)-[0-9a-f]{12}$")
_LEGACY_TMP = re.compile(r"^\.(?P<name>.+)\.[0-9a-f]{12}\.tmp$")
_POINT_FILE = re.compile(r"^[0-9a-f]{64}\.json$")
_POINT_PATH = re.compile(r"^points/[0-9a-f]{64}\.json$")
_ATTEMPTS = 200                     # exchanges lost to concurrent writers before giving up
_GIT_SCAN_LIMIT = 100_000           # entries looked at for a .git before --force gives up
_NAMED = 5                          # foreign files an error names before "and N more"
_MANIFEST_BYTES = 1 << 30          # a manifest larger than this is damaged
FOREIGN, CHANGED = "not written by tickprop", "changed since tickprop wrote it"
# OS errors only a write meets (output_error): any other is told as the OS tells it.
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EROFS, errno.EFBIG,
                          getattr(errno, "EDQUOT", errno.ENOSPC)})


class OutputError(SimulatorError):
    """An output cannot be written where asked: names the path and the reason."""


def output_error(exc, path=None):
    """The OutputError for an OSError met while writing an output, naming the
    OS's file name if it gave one, else ``path``: ``cannot write (reason)``
    for the errors only a write meets (WRITE_ERRNOS: a full, read-only or
    over-quota disk, a file too large), else the OS's reason alone -- a
    source file that cannot be read while an output is filled is no write
    error."""
    where = exc.filename if getattr(exc, "filename", None) else path
    reason = exc.strerror or str(exc) or type(exc).__name__
    if exc.errno in WRITE_ERRNOS:
        reason = f"cannot write ({reason})"
    return OutputError(f"{where}: {reason}" if where else reason)


def speak_of(exc, private, public):
    """Make ``exc`` name ``public`` where it names the private (temporary or
    scratch) folder ``private``: an OSError's file names, the message of any
    other exception. Returns ``exc`` (changed in place), for ``raise``."""
    private = os.fspath(private)
    public = os.fspath(public)

    def swap(text):
        return text.replace(private, public) if isinstance(text, str) else text
    if isinstance(exc, OSError):
        for attr in ("filename", "filename2"):
            name = getattr(exc, attr, None)
            if name is not None:
                setattr(exc, attr, swap(os.fspath(name)))
    else:
        exc.args = tuple(swap(a) for a in exc.args)
    return exc


# ------------------------------------------------------------------ single files
def atomic_write(path, write, binary=False):
    """Call ``write(fileobj)`` on a temporary file ``.<name>.tmp-<pid>-<token>``
    beside ``path``, then move it over ``path`` (mode 0644): never half a file.
    In a folder being ``recording``-ed the manifest lists the new file first.
    The temporary file is removed on any failure, and the error (an OSError for
    a full or read-only disk) goes on to the caller. Returns ``path``."""
    path = os.fspath(path)
    folder, base = os.path.split(os.path.abspath(path))
    tmp = _tmp_name(folder, base, "tmp")
    try:
        with open(tmp, "xb" if binary else "x", **({} if binary else {"newline": ""})) as f:
            write(f)
        os.chmod(tmp, FILE_MODE)
        _commit(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    return path


def move_into_place(source, path):
    """Rename the finished file ``source`` (on the same file system) over
    ``path``, as atomic_write's last step: recorded in the manifest of a
    folder being ``recording``-ed. Returns ``path``."""
    os.chmod(source, FILE_MODE)
    _commit(os.fspath(source), os.fspath(path))
    return path


def write_text(path, text):
    """Write a str as UTF-8 text atomically; returns ``path``."""
    return atomic_write(path, lambda f: f.write(text.encode()), binary=True)


def write_json(path, data, indent=2):
    """Write ``data`` as JSON atomically; numpy scalars and arrays become plain
    numbers and lists, anything else unknown is refused (never silently str()'d)."""
    text = json.dumps(data, indent=indent, default=_plain)
    return write_text(path, text)


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in JSON")


def write_csv(path, columns, rows):
    """Write a CSV atomically: a header of ``columns``, then one line per row
    (a mapping, read by column with '' for a missing key, or a sequence)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([row.get(c, "") for c in columns] if hasattr(row, "get") else row)
    return write_text(path, buf.getvalue())


def write_npz(path, arrays, compressed=True):
    """Write {name: array} as an .npz atomically (compressed unless told not)."""
    save = np.savez_compressed if compressed else np.savez
    return atomic_write(path, lambda f: save(f, **arrays), binary=True)


# Callables hook(fig, path) that save_png calls before writing each figure:
# a place for checks (the figure-lint test registers one); empty in a run.
PNG_HOOKS = []


def save_png(fig, path):
    """Write a matplotlib Figure as a PNG at its own dpi atomically; returns
    ``path``. Each hook in PNG_HOOKS sees (fig, path) first."""
    for hook in list(PNG_HOOKS):
        hook(fig, path)
    return atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=fig.dpi), binary=True)


def write_gif(path, frames, **options):
    """Write frames (uint8 arrays, (n, h, w) or (n, h, w, 3|4)) as a GIF with
    imageio atomically; ``options`` go to ``imageio.v3.imwrite`` (duration in
    ms, loop, ...). Returns ``path``."""
    return atomic_write(path, lambda f: iio.imwrite(f, frames, extension=".gif", **options),
                        binary=True)


def _commit(tmp, path):
    """The last step of every single-file write: rename ``tmp`` over ``path``,
    after listing the new file in the manifest of the folder being recorded
    that holds it (if any), under that folder's lock."""
    root = _recording_root(path)
    if root is None:
        _kill_hook(path)
        os.replace(tmp, path)
        return
    real = os.path.join(os.path.realpath(os.path.dirname(os.path.abspath(path))),
                        os.path.basename(path))
    rel = os.path.relpath(real, root).replace(os.sep, "/")
    entry = _digest(tmp)
    if entry is None:
        raise OutputError(f"{path}: cannot read back the file just written")
    with _locked(root):
        files = _read_manifest(root)
        if files is None:
            files = {}
        now = _digest(real)
        if now is not None and not _same(now, entry):
            entry["before"] = now
        files[rel] = entry
        _write_manifest(root, files)
        _kill_hook(path)
        os.replace(tmp, path)


def _kill_hook(path):
    """Tests only: SIGKILL this process if TICKPROP_TEST_KILL_AT_RENAME names ``path``."""
    want = os.environ.get(KILL_HOOK)
    if not want:
        return
    if os.path.abspath(path).endswith(os.sep + want.strip(os.sep)):
        os.kill(os.getpid(), signal.SIGKILL)


# ------------------------------------------------------------------ manifests
_DIGESTS = {}                       # stat identity -> sha256: a file is hashed once per process
_DIGESTS_LOCK = threading.Lock()
_MANIFESTS = {}                     # manifest path -> (stat identity, entries) last seen
_MANIFESTS_LOCK = threading.Lock()
_RECORDING = {}                     # real folder -> open recording() blocks in this process
_RECORDING_LOCK = threading.Lock()
_HOST_TAG = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:4]


def foreign_files(folder):
    """What in ``folder`` tickprop cannot show it wrote: a list of (path
    relative to ``folder``, why), why being FOREIGN, CHANGED or 'damaged' (the
    manifest); [] for an empty folder or a tickprop output (see the module
    notes: its manifest, else the legacy rule). Stale temporaries of dead
    tickprop processes in it are removed first."""
    folder = os.fspath(folder)
    clean_stale(folder)
    try:
        listed = _read_manifest(folder)
    except OutputError:
        return [(MANIFEST, "damaged")]
    if listed is None:
        return _legacy_problems(folder)
    return _manifest_problems(folder, listed)


@contextlib.contextmanager
def recording(folder):
    """Within this block every single file written under ``folder`` (by
    atomic_write and its writers, or move_into_place) is listed in
    ``folder``'s manifest before it takes its name (module notes), if
    ``folder`` is a tickprop output: it has a manifest, or it is a non-empty
    folder of the version before manifests that the legacy rule recognises,
    which gets one now. Elsewhere the writes are plain atomic writes. Yields
    True when recording. A damaged manifest is an OutputError naming it."""
    root = os.path.realpath(folder)
    if not _adopt(root):
        yield False
        return
    with _RECORDING_LOCK:
        _RECORDING[root] = _RECORDING.get(root, 0) + 1
    try:
        yield True
    finally:
        with _RECORDING_LOCK:
            if _RECORDING[root] > 1:
                _RECORDING[root] -= 1
            else:
                del _RECORDING[root]


def file_status(folder, name):
    """What tickprop knows of ``folder/name`` before an in-place write replaces
    it: 'missing'; 'ours' (the manifest lists it as it is); 'changed' (listed,
    but changed since); 'foreign' (the manifest does not list it); 'unknown'
    (the folder has no manifest: the caller's own rule decides). A damaged
    manifest is an OutputError naming it."""
    path = os.path.join(folder, name)
    if not os.path.lexists(path):
        return "missing"
    listed = _read_manifest(os.path.realpath(folder))
    if listed is None:
        return "unknown"
    want = listed.get(name.replace(os.sep, "/"))
    if want is None:
        return "foreign"
    return "ours" if _matches(_digest(path), want) else "changed"


def scratch_folder(folder, what):
    """A private scratch folder ``.tickprop-<what>.tmp-<pid>-<token>`` inside
    ``folder``, marked as tickprop's, so that clean_stale removes it if this
    process dies before ``remove_scratch``; an error making it names
    ``folder``. Returns its path."""
    path = _tmp_name(os.path.realpath(folder), f"tickprop-{what}", "tmp")
    try:
        _make_tmp(path)
    except BaseException as exc:
        _remove_tree(path)
        raise speak_of(exc, path, folder)
    return path


def remove_scratch(path):
    """Delete a scratch folder of this process (and what is in it)."""
    _remove_tree(path, mark=True)


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
            h, buf = hashlib.sha256(), bytearray(1 << 20)
            view = memoryview(buf)
            try:
                while n := f.readinto(buf):
                    h.update(view[:n])
            except OSError:
                return None
            known = h.hexdigest()
            with _DIGESTS_LOCK:
                _DIGESTS[key] = known
    return {"size": key[2], "sha256": known}


def _same(a, b):
    return (isinstance(a, dict) and isinstance(b, dict) and a.get("size") == b.get("size")
            and a.get("sha256") == b.get("sha256"))


def _matches(got, want):
    """Is the file (its digest ``got``) the version its entry ``want`` lists,
    or the one it replaces (``before``, kept until the rename is done)?"""
    return got is not None and (_same(got, want) or _same(got, want.get("before")))


def _read_manifest(root):
    """{path: entry} of the manifest in ``root``; None if there is none; an
    OutputError naming it if it is damaged (not a small regular file of the
    documented shape). The manifest this process last read or wrote is kept
    while the file is unchanged (same inode, size and times)."""
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
    try:
        data = read_json(path, dict, limit=_MANIFEST_BYTES, follow_links=False)
    except ReadError:
        data = None
    listed = data.get("files") if isinstance(data, dict) else None
    if (not isinstance(data, dict) or data.get("tickprop_manifest") != MANIFEST_FORMAT
            or not isinstance(listed, dict)
            or not all(_good_path(k) and _good_entry(v) for k, v in listed.items())):
        raise OutputError(f"{path}: damaged (not a tickprop manifest); move it away, or pass "
                          "--force to replace the folder")
    _remember_manifest(path, key, listed)
    return listed


def _remember_manifest(path, key, listed):
    if key is None:
        return
    with _MANIFESTS_LOCK:
        _MANIFESTS[path] = (key, listed)


def _stat_key(st):
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _good_path(rel):
    return (isinstance(rel, str) and rel and not rel.startswith("/")
            and all(p not in ("", ".", "..") for p in rel.split("/")))


def _good_entry(entry, nested=False):
    if not isinstance(entry, dict):
        return False
    ok = (isinstance(entry.get("size"), int) and isinstance(entry.get("sha256"), str)
          and len(entry["sha256"]) == 64)
    before = entry.get("before")
    return ok and (before is None or (not nested and _good_entry(before, nested=True)))


def _write_manifest(root, listed):
    """Replace ``root``'s manifest with one listing ``listed``, atomically: one
    line per file, in path order (the C JSON encoder: a sweep of thousands of
    points rewrites it after each)."""
    text = json.dumps({"files": listed, "tickprop_manifest": MANIFEST_FORMAT}, sort_keys=True)
    # Inside a JSON string a quote is escaped, so '}, "' only ever ends an entry.
    text = text.replace('{"files": {', '{"files": {\n', 1).replace('}, "', '},\n"') + "\n"
    path = os.path.join(root, MANIFEST)
    tmp = _tmp_name(root, MANIFEST, "tmp")
    try:
        with open(tmp, "xb") as f:
            f.write(text.encode())
        os.chmod(tmp, FILE_MODE)
        _kill_hook(path)
        os.replace(tmp, path)
        _remember_manifest(path, _stat_key(os.lstat(path)), listed)
    except BaseException:
        with _MANIFESTS_LOCK:
            _MANIFESTS.pop(path, None)
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise


@contextlib.contextmanager
def _locked(root):
    """Hold an exclusive flock on the folder ``root`` itself (no lock file to
    account for): one manifest update at a time, across processes and threads."""
    if fcntl is None:
        yield
        return
    fd = os.open(root, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _recording_root(path):
    """The deepest folder being recorded that holds ``path``, or None."""
    with _RECORDING_LOCK:
        if not _RECORDING:
            return None
        roots = list(_RECORDING)
    real = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    inside = [r for r in roots if real == r or real.startswith(r.rstrip(os.sep) + os.sep)]
    return max(inside, key=len) if inside else None


def _adopt(root, empty=False):
    """Make sure the tickprop output ``root`` has a manifest: True if it has
    one, or if it is recognised by the legacy rule (or is empty, with
    ``empty``) and one listing what it holds is written now (that version's
    temporaries removed first); False if it is no tickprop output."""
    if not os.path.isdir(root) or _read_manifest(root) is not None:
        return os.path.isdir(root)
    with _locked(root):
        if _read_manifest(root) is not None:
            return True
        if _is_empty(root):
            if not empty:
                return False
        elif _legacy_problems(root):
            return False
        _drop_legacy_temporaries(root)
        _write_manifest(root, _scan(root))
    return True


def _scan(root, prefix=""):
    """{path: digest} of every regular file under ``root`` but the manifest,
    the marker file, temporaries and OS_FILES: the manifest of a folder
    tickprop wrote."""
    out = {}
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if entry.name in (TMP_MARK, *OS_FILES) or _STALE.match(entry.name) or (
                not prefix and entry.name == MANIFEST):
            continue
        if entry.is_dir(follow_symlinks=False):
            out.update(_scan(entry.path, prefix + entry.name + "/"))
            continue
        digest = _digest(entry.path)
        if digest is not None:
            out[prefix + entry.name] = digest
    return out


def _manifest_problems(root, listed):
    """(path, why) of what ``root`` holds beyond its manifest ``listed``."""
    folders = {"/".join(p.split("/")[:i]) for p in listed for i in range(1, p.count("/") + 1)}
    problems = []

    def walk(path, prefix):
        try:
            entries = sorted(os.scandir(path), key=lambda e: e.name)
        except OSError as exc:
            problems.append((prefix or ".", f"cannot read ({exc.strerror or exc})"))
            return
        for entry in entries:
            rel = prefix + entry.name
            if (not prefix and entry.name in (MANIFEST, TMP_MARK)) or _live_temporary(entry.name):
                continue
            if entry.is_dir(follow_symlinks=False):
                clean_stale(entry.path)
                if rel in folders:
                    walk(entry.path, rel + "/")
                elif not _is_empty(entry.path):
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
    """(path, why) of what ``root``, a folder without a manifest, holds beyond
    what the legacy rule recognises (module notes); [] if it is one."""
    try:
        entries = {e.name: e for e in os.scandir(root) if e.name != TMP_MARK
                   and e.name not in OS_FILES and not _live_temporary(e.name)}
    except OSError as exc:
        return [(".", f"cannot read ({exc.strerror or exc})")]
    everything = [(_shown(e), FOREIGN) for _, e in sorted(entries.items())]
    run = entries.get("run.json")
    meta = _json_or_none(run.path) if run is not None and run.is_file(follow_symlinks=False) \
        else None
    marked = isinstance(meta, dict) and meta.get(MARKER) is True
    kind = meta.get("kind") if marked else None
    if isinstance(kind, str) and kind in RESULT_FILES:
        pictures = meta.get("pictures")
        allowed = {"run.json", *RESULT_FILES[kind]} | {
            p for p in (pictures if isinstance(pictures, list) else [])
            if isinstance(p, str) and _plain_name(p)}
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
    """Does the legacy rule for a run folder accept this entry?"""
    if not entry.is_file(follow_symlinks=False):
        return False
    if entry.name in allowed or (entry.name == "view.html" and _is_view(entry.path)):
        return True
    old = _LEGACY_TMP.match(entry.name)
    return bool(old) and old["name"] in allowed | {"view.html"}


def _legacy_sweep_problems(entries, sweep_json):
    """(problems, valid points) of a folder the legacy sweep rule may recognise."""
    allowed = set(SWEEP_FILES) | ({"run.json"} if sweep_json else set())
    problems, valid = [], 0
    for name, entry in sorted(entries.items()):
        if name == "points" and entry.is_dir(follow_symlinks=False):
            found, valid = _legacy_points_problems(entry.path)
            problems += found
            continue
        old = _LEGACY_TMP.match(name)
        if entry.is_file(follow_symlinks=False) and (name in allowed
                                                     or (old and old["name"] in allowed)):
            continue
        problems.append((_shown(entry), FOREIGN))
    return problems, valid


def _legacy_points_problems(points):
    """(problems, valid points) of a sweep's points/ folder: only point files
    whose record checks out against its name (simulator.points.read_point)."""
    clean_stale(points)
    problems, valid = [], 0
    try:
        entries = sorted(os.scandir(points), key=lambda e: e.name)
    except OSError as exc:
        return [("points/", f"cannot read ({exc.strerror or exc})")], 0
    for entry in entries:
        name = entry.name
        if name in OS_FILES or _live_temporary(name):
            continue
        if entry.is_file(follow_symlinks=False):
            old = _LEGACY_TMP.match(name)
            if old and _POINT_FILE.match(old["name"]):
                continue
            if (_POINT_FILE.match(name) and entry.stat(follow_symlinks=False).st_size <= MAX_JSON_BYTES
                    and read_point(points, name[:-len(".json")])[0] is not None):
                valid += 1
                continue
        problems.append(("points/" + _shown(entry), FOREIGN))
    return problems, valid


def _drop_legacy_temporaries(root):
    """Remove the single-file temporaries ``.<name>.<12 hex>.tmp`` of the version
    before manifests from a folder the legacy rule recognised (and its points/)."""
    for folder in (root, os.path.join(root, "points")):
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if _LEGACY_TMP.match(entry.name) and entry.is_file(follow_symlinks=False):
                try:
                    os.remove(entry.path)
                except OSError:
                    pass


def _shown(entry):
    """An entry's name as an error shows it: a folder ends with '/'."""
    return entry.name + "/" if entry.is_dir(follow_symlinks=False) else entry.name


def _plain_name(name):
    return name not in ("", ".", "..") and "/" not in name and os.sep not in name


def _json_or_none(path):
    """The JSON object of the file ``path`` as simulator.runfiles reads it
    (never a link, a FIFO or past MAX_JSON_BYTES), None if it is no such file."""
    try:
        return read_json(path, dict, follow_links=False)
    except ReadError:
        return None


def _is_view(path):
    """Does the regular file ``path`` start (first 2 KiB) with tickprop view's
    generator tag?"""
    try:
        head = read_head(path, 2048, follow_links=False)
    except ReadError:
        return False
    return VIEW_GENERATOR in head.decode("utf-8", errors="replace")


def _live_temporary(name):
    """A temporary name (``.<name>.tmp|old-<pid>-<token>``) of a live process."""
    m = _STALE.match(name)
    return bool(m) and _alive(int(m["pid"]))


def _describe(problems):
    """'a, b (why); c (why) and N more': the first few problems, by reason."""
    shown, rest = problems[:_NAMED], len(problems) - _NAMED
    parts = []
    for why in dict.fromkeys(w for _, w in shown):
        parts.append(f"{', '.join(p for p, w in shown if w == why)} ({why})")
    return "; ".join(parts) + (f" and {rest} more" if rest > 0 else "")


# ------------------------------------------------------------------ output folders
def default_out(name, root="outputs"):
    """``root/<name>`` with ``name`` made a single safe folder name: path
    separators, '.', '..' and characters outside letters (any script, NFC),
    digits, '_', '-', '.' become '_' and leading dots go, so a replayed
    run.json whose name is '../x' or '/x' still writes inside ``root``, and
    'szené' keeps its 'é' (two scenes differing in one accent do not share a
    folder)."""
    parts = [p for p in re.split(r"[\\/]+", str(name)) if p not in ("", ".", "..")]
    safe = re.sub(r"[^\w.-]", "_", unicodedata.normalize("NFC", "_".join(parts))).lstrip(".")
    return os.path.join(root, safe or "run")


def check_out(out, force=False):
    """Refuse, before any work, an output folder tickprop may not replace; return
    its real path (a symlink is followed). Accepted: a missing name whose parent
    can hold it, an empty folder, a tickprop output (foreign_files finds
    nothing), or, with ``force``, any other folder, except that the root, home
    and current folders, any folder above the current or home folder, and any
    folder holding a '.git' are refused even with ``force``. Raises
    OutputError naming the foreign or changed files."""
    return _check_out(out, force)[0]


def _check_out(out, force, renewed=None):
    """check_out's work: (real path, what is foreign in it, [] unless forced).
    A listed file that changed is not counted if ``renewed`` (a compiled
    pattern of relative paths) matches it: the caller checks and rewrites it."""
    given = os.fspath(out)
    if not given:
        raise OutputError("--out: expected a folder name, got ''")
    real = os.path.realpath(given)
    why = _protected(real)
    if why:
        raise OutputError(f"{given}: refusing to write over {why}; choose a new folder for --out")
    _check_parent(given, os.path.dirname(real))
    if not os.path.lexists(real):
        return real, []
    if not os.path.isdir(real):
        raise OutputError(f"{given}: exists and is not a folder; choose another --out")
    if os.path.lexists(os.path.join(real, ".git")):
        raise OutputError(f"{given}: holds a .git (a checkout); tickprop never replaces it")
    problems = [(rel, why) for rel, why in foreign_files(real)
                if not (renewed and why == CHANGED and renewed.match(rel))]
    if not problems:
        return real, []
    if not force:
        raise OutputError(f"{given}: not a tickprop output as it stands: {_describe(problems)}; "
                          "choose another --out, move those away, or pass --force to replace "
                          "the folder anyway")
    git = _find_git(real)
    if git:
        raise OutputError(f"{given}: {git}; --force never replaces a folder holding a checkout")
    return real, problems


def write_folder(out, fill, force=False):
    """Write a whole output folder atomically: ``fill(folder)`` writes the files
    into a fresh temporary sibling and returns the run.json content (a dict, to
    which ``"tickprop_output": true`` is added); the manifest listing every
    file is written last; then the folder takes the name ``out`` in one step
    (see the module notes), the old output is deleted, and stale temporaries
    of killed runs in the same parent are removed. On any failure or interrupt
    the temporary folder is removed, and so is every parent folder this call
    created that is still empty; the earlier output is left as it was. An
    OSError becomes an OutputError naming the path and the OS's reason, and an
    error naming the temporary folder names ``out`` instead. ``force``: see
    check_out. Returns ``out``."""
    target = check_out(out, force)
    parent, base = os.path.split(target)
    made = _missing_folders(parent)
    try:
        os.makedirs(parent, mode=DIR_MODE, exist_ok=True)
        clean_stale(parent)
    except OSError as exc:
        _remove_empty(made)
        raise output_error(exc, out) from None
    # Named first and made inside the try: an interrupt that lands while the
    # folder is being made (before its marker exists, so no later run would
    # clean it) still removes it.
    tmp = _tmp_name(parent, base, "tmp")
    try:
        _make_tmp(tmp)
        meta = fill(tmp)
        if not isinstance(meta, dict):
            raise TypeError(f"fill must return the run.json dict, got {type(meta).__name__}")
        write_json(os.path.join(tmp, "run.json"), {MARKER: True, **meta})
        _write_manifest(tmp, _scan(tmp))
        _install(tmp, target, force, out)
    except OSError as exc:
        _remove_tree(tmp)
        _remove_empty(made)
        if exc.filename and os.fspath(exc.filename) == tmp:
            exc.filename = out
        elif exc.filename and os.fspath(exc.filename).startswith(tmp + os.sep):
            exc.filename = os.path.join(out, os.path.relpath(exc.filename, tmp))
        raise output_error(exc, out) from None
    except BaseException as exc:
        _remove_tree(tmp)
        _remove_empty(made)
        raise speak_of(exc, tmp, os.fspath(out))
    return out


def claim_folder(out, force=False, meta=None):
    """Check, before any work, a sweep folder, which is written in place over
    several runs (it resumes): refused as check_out refuses, except that a
    point file the manifest lists (points/<key>.json) that changed since is
    not counted: the sweep reads every point file back itself and runs a
    damaged one again. A missing or empty folder is made with an empty
    manifest; a tickprop output of the version before manifests gets one
    listing what it holds; a foreign folder accepted with ``force`` is
    replaced at once, atomically as write_folder does, by an empty one holding
    a run.json of ``meta`` plus the marker. Returns ``out``."""
    real, problems = _check_out(out, force, renewed=_POINT_PATH)
    if problems:
        write_folder(out, lambda folder: dict(meta or {}), force=True)
        return out
    try:
        os.makedirs(real, mode=DIR_MODE, exist_ok=True)
        adopted = _adopt(real, empty=True)
    except OSError as exc:
        raise output_error(exc, out) from None
    if not adopted:
        raise OutputError(f"{out}: changed while it was being checked; try again")
    return out


@contextlib.contextmanager
def claimed(out, force=False, meta=None):
    """``claim_folder(out, force, meta)``, then ``recording(out)`` for the
    block; if the block fails (interrupt included) before any file was written
    in a folder this claim made, that folder goes again, with every parent
    folder it made that is still empty."""
    made = _missing_folders(os.path.realpath(os.fspath(out)))
    claim_folder(out, force, meta)
    try:
        with recording(out):
            yield
    except BaseException:
        if made and _unused(made[0]):
            _remove_empty(made)
        raise


def _unused(folder):
    """Empty ``folder`` of what an unused claim left (an empty manifest and
    empty subfolders); True if nothing else was in it."""
    try:
        if _read_manifest(folder) != {}:
            return False
        entries = [e for e in os.scandir(folder) if e.name != MANIFEST]
        if not all(e.is_dir(follow_symlinks=False) and _is_empty(e.path) for e in entries):
            return False
        for entry in entries:
            os.rmdir(entry.path)
        os.remove(os.path.join(folder, MANIFEST))
    except (OSError, OutputError):
        return False
    return True


def clean_stale(parent):
    """Remove what killed tickprop processes left in ``parent``: single-file
    temporaries ``.<name>.tmp-<pid>-<token>`` written on this host, temporary
    folders ``.<name>.tmp-<pid>-*`` and backups ``.<name>.old-<pid>-*`` that are
    provably tickprop's (marker file, manifest or legacy rule, or empty), each
    only if its process is gone. A backup whose name is now free is put back
    under it instead. Never raises; returns the paths removed or restored."""
    done = []
    try:
        entries = sorted(os.scandir(parent), key=lambda e: e.name)
    except OSError:
        return done
    backups = {}
    for entry in entries:
        m = _STALE.match(entry.name)
        if not m or _alive(int(m["pid"])):
            continue
        if entry.is_file(follow_symlinks=False):
            if m["kind"] == "tmp" and entry.name.endswith(_HOST_TAG, -12, -8):
                try:
                    os.remove(entry.path)
                    done.append(entry.path)
                except OSError:
                    pass
            continue
        if not entry.is_dir(follow_symlinks=False):
            continue
        if m["kind"] == "old":
            backups.setdefault(m["name"], []).append(entry.path)
        elif _ours(entry.path) and _remove_tree(entry.path):
            done.append(entry.path)
    for name, paths in backups.items():
        target = os.path.join(parent, name)
        if not os.path.lexists(target):         # killed between its two renames
            newest = max(paths, key=_ctime)
            try:
                os.rename(newest, target)
                _unmark(target)
                done.append(newest)
                paths.remove(newest)
            except OSError:
                pass
        for path in paths:
            if _ours(path) and _remove_tree(path):
                done.append(path)
    return done


# ------------------------------------------------------------------ internals
def _missing_folders(path):
    """The folders from ``path`` up that do not exist yet, deepest first."""
    missing = []
    while path and not os.path.lexists(path) and os.path.dirname(path) != path:
        missing.append(path)
        path = os.path.dirname(path)
    return missing


def _remove_empty(folders):
    """Remove the folders this run created (deepest first) while they are empty."""
    for folder in folders:
        try:
            os.rmdir(folder)
        except OSError:
            return


def _protected(real):
    """Why ``real`` must never be replaced, or None."""
    if real == os.path.dirname(real):
        return "the root folder"
    places = [("the current folder", os.path.realpath(os.getcwd())),
              ("your home folder", os.path.realpath(os.path.expanduser("~")))]
    for what, place in places:
        if real == place:
            return what
    for what, place in places:
        if place.startswith(real.rstrip(os.sep) + os.sep):
            return f"a folder that holds {what}"
    return None


def _check_parent(given, parent):
    """The deepest existing ancestor of the output's parent must be a folder we may write in."""
    while not os.path.lexists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise OutputError(f"{given}: cannot write there ({parent} is not a folder)")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{given}: cannot write there ({parent}: permission denied)")


def _is_empty(path):
    try:
        with os.scandir(path) as it:
            return next(it, None) is None
    except OSError:
        return False


def _find_git(path):
    """A description of a '.git' somewhere under ``path`` (or of a tree too
    big to check), None if there is none."""
    seen = 0
    for root, dirs, files in os.walk(path):
        if ".git" in dirs or ".git" in files:
            return f"holds {os.path.join(root, '.git')}"
        seen += len(dirs) + len(files)
        if seen > _GIT_SCAN_LIMIT:
            return f"holds more than {_GIT_SCAN_LIMIT} files (too many to check for a .git)"
    return None


def _make_tmp(path):
    """Create the temporary folder ``path`` (mode 0755) with its marker file."""
    os.mkdir(path)
    os.chmod(path, DIR_MODE)
    _mark(path)
    return path


def _tmp_name(parent, base, kind):
    """``parent/.<base>.<kind>-<pid>-<token>``; the token starts with this
    host's tag, so clean_stale leaves other hosts' files alone."""
    return os.path.join(parent, f".{base}.{kind}-{os.getpid()}-{_HOST_TAG}{uuid.uuid4().hex[:8]}")


def _mark(path):
    with open(os.path.join(path, TMP_MARK), "w") as f:
        json.dump({"pid": os.getpid(), "host": socket.gethostname()}, f)


def _unmark(path):
    try:
        os.remove(os.path.join(path, TMP_MARK))
    except OSError:
        pass


def _ours(path):
    """Provably written by tickprop on this host: marker file, or what
    foreign_files accepts (manifest, legacy rule, empty)."""
    mark = os.path.join(path, TMP_MARK)
    if os.path.isfile(mark):
        try:
            host = read_json(mark, dict).get("host")
        except ReadError:
            host = None
        return host in (None, socket.gethostname())
    return _is_empty(path) or not foreign_files(path)


def _alive(pid):
    if os.name != "posix" or pid <= 0:
        return True                     # cannot tell: leave it alone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _ctime(path):
    try:
        return os.lstat(path).st_ctime
    except OSError:
        return 0.0


def _replaceable(path, force):
    """May this folder (just moved aside) be deleted in favour of a new output?"""
    if os.path.islink(path) or not os.path.isdir(path):
        return False
    if os.path.lexists(os.path.join(path, ".git")):
        return False
    if _is_empty(path) or not foreign_files(path):
        return True
    return force and _find_git(path) is None


def _install(tmp, target, force, given):
    """Put the filled folder ``tmp`` under ``target``; delete what was there."""
    for _ in range(_ATTEMPTS):
        if not os.path.lexists(target):
            try:
                os.rename(tmp, target)
            except OSError as exc:
                if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                    continue                    # another run got there first
                raise
            _unmark(target)
            return
        try:
            swapped = _exchange(tmp, target)
        except FileNotFoundError:
            continue                            # the old one vanished meanwhile
        if not swapped:
            return _install_with_backup(tmp, target, force, given)
        if not _replaceable(tmp, force):        # changed since check_out: put it back
            _exchange(tmp, target)
            raise OutputError(f"{given}: changed while the run was writing and is no longer "
                              "a tickprop output; left as it is")
        _unmark(target)
        _remove_tree(tmp, mark=True)
        return
    raise OutputError(f"{given}: other runs kept replacing it; try again")


def _install_with_backup(tmp, target, force, given):
    """Without an exchange: old -> backup, new -> name, delete backup. Until the
    second rename only the backup holds the old output; clean_stale restores it
    if this process dies there."""
    parent, base = os.path.split(target)
    backups = []
    try:
        for _ in range(_ATTEMPTS):
            if os.path.lexists(target):
                backup = _tmp_name(parent, base, "old")
                try:
                    _rename(target, backup)
                except FileNotFoundError:
                    continue
                backups.append(backup)
                if not _replaceable(backup, force):
                    _rename(backup, target)
                    backups.pop()
                    raise OutputError(f"{given}: changed while the run was writing and is no "
                                      "longer a tickprop output; left as it is")
            try:
                _rename(tmp, target)
            except OSError as exc:
                if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                    continue
                raise
            break
        else:
            raise OutputError(f"{given}: other runs kept replacing it; try again")
    except BaseException:
        if backups and not os.path.lexists(target):
            try:
                _rename(backups.pop(), target)
            except OSError:
                pass
        raise
    _unmark(target)
    for backup in backups:
        _remove_tree(backup, mark=True)


def _rename(src, dst):
    os.rename(src, dst)


def _remove_tree(path, mark=False):
    """Delete a folder this run owns; with ``mark`` the marker file is written
    first and removed last, so a kill midway leaves a folder clean_stale knows."""
    try:
        if mark:
            _mark(path)
        with os.scandir(path) as it:
            entries = [e for e in it if e.name != TMP_MARK]
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                os.remove(entry.path)
        _unmark(path)
        os.rmdir(path)
        return True
    except OSError:
        shutil.rmtree(path, ignore_errors=True)
        return not os.path.lexists(path)


# renameat2(2): Linux >= 3.15; glibc >= 2.28 has the wrapper, else the raw syscall.
_AT_FDCWD, _RENAME_EXCHANGE = -100, 2
_SYSCALL_RENAMEAT2 = {"x86_64": 316, "amd64": 316, "aarch64": 276, "arm64": 276,
                      "ppc64le": 357, "ppc64": 357, "s390x": 347, "riscv64": 276}


def _load_renameat2():
    if platform.system() != "Linux":
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    fn = getattr(libc, "renameat2", None)
    if fn is not None:
        fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
        fn.restype = ctypes.c_int
        return fn
    number = _SYSCALL_RENAMEAT2.get(platform.machine().lower())
    if number is None or not hasattr(libc, "syscall"):
        return None
    syscall = libc.syscall
    syscall.restype = ctypes.c_long

    def raw(olddir, old, newdir, new, flags):
        return syscall(ctypes.c_long(number), ctypes.c_int(olddir), ctypes.c_char_p(old),
                       ctypes.c_int(newdir), ctypes.c_char_p(new), ctypes.c_uint(flags))
    return raw


_RENAMEAT2 = _load_renameat2()


def _exchange(a, b):
    """Swap the names ``a`` and ``b`` in one step. True if swapped; False where
    this system or file system cannot (the caller falls back); other failures
    raise OSError (FileNotFoundError if either name is missing)."""
    if _RENAMEAT2 is None:
        return False
    if _RENAMEAT2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EPERM):
        return False
    raise OSError(err, os.strerror(err), a, None, b)


__all__ = ["MARKER", "MANIFEST", "RESULT_FILES", "SWEEP_FILES", "VIEW_GENERATOR", "OutputError",
           "output_error", "speak_of", "atomic_write", "move_into_place", "write_text",
           "write_json", "write_csv", "write_npz", "PNG_HOOKS", "save_png", "write_gif",
           "foreign_files", "recording", "file_status", "scratch_folder", "remove_scratch",
           "default_out", "check_out", "write_folder", "claim_folder", "claimed", "clean_stale"]
