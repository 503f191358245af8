"""Every file and folder tickprop writes goes through here, atomically.

Single files (JSON, CSV, text, npz, PNG, GIF) are written to a temporary name
in the same folder and moved over the final name with ``os.replace``: a reader
sees the old file or the new one, never half of one. Output folders are filled
under a temporary sibling name ``.<name>.tmp-<pid>-<token>`` and then put under
their name in one step: on Linux ``renameat2(RENAME_EXCHANGE)`` swaps the new
folder with the old one, which is deleted afterwards; where the exchange is not
available the old folder is first moved to a backup ``.<name>.old-<pid>-<token>``
that the next run into the same parent restores if it finds the name empty.

What may be replaced (``check_out``): a missing or empty folder, or a tickprop
output (its run.json carries ``"tickprop_output": true``, or is an older run.json
with ``scene`` and ``versions``). Anything else is refused before any work,
unless ``force``; even then the root folder, the home folder, the current folder
and the folders above it, and any folder holding a ``.git`` are never replaced.
A symlinked output is followed: the real folder it names is written with the
same rules and the link stays. Temporary folders of killed runs are removed by
the next run into the same parent, and only those provably tickprop's (a marker
file inside, or a tickprop run.json, or empty) whose process is gone.
Writes are atomic against a killed process, not against a power loss (no fsync).
"""
import csv
import ctypes
import errno
import io
import json
import os
import platform
import re
import shutil
import socket
import unicodedata
import uuid

import imageio.v3 as iio
import numpy as np

from .errors import SimulatorError

MARKER = "tickprop_output"          # run.json key that makes a folder a tickprop output
TMP_MARK = ".tickprop-tmp"          # inside a folder tickprop is writing (pid and host)
FILE_MODE, DIR_MODE = 0o644, 0o755
_SWEEP_FILES = (".csv", ".png", ".json", ".gif", ".tmp")
_STALE = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<pid>\d+)-[0-9a-f]{12}$")
_ATTEMPTS = 200                     # exchanges lost to concurrent writers before giving up
_GIT_SCAN_LIMIT = 100_000           # entries looked at for a .git before --force gives up


class OutputError(SimulatorError):
    """An output cannot be written where asked: names the path and the reason."""


def output_error(exc, path=None):
    """The OutputError for an OSError met while writing: ``path: reason``
    (the OS's file name if it gave one, else ``path``)."""
    where = exc.filename if getattr(exc, "filename", None) else path
    reason = exc.strerror or str(exc)
    return OutputError(f"{where}: cannot write ({reason})" if where else f"cannot write ({reason})")


# ------------------------------------------------------------------ single files
def atomic_write(path, write, binary=False):
    """Call ``write(fileobj)`` on a temporary file beside ``path``, then move it
    over ``path`` (mode 0644): never half a file. The temporary file is removed
    on any failure, and the error (an OSError for a full or read-only disk)
    goes on to the caller. Returns ``path``."""
    path = os.fspath(path)
    folder, base = os.path.split(os.path.abspath(path))
    tmp = os.path.join(folder, f".{base}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with open(tmp, "xb" if binary else "x", **({} if binary else {"newline": ""})) as f:
            write(f)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
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


def is_tickprop_output(path):
    """True if ``path`` is a folder tickprop wrote: its run.json has the
    ``tickprop_output`` marker or is an older tickprop run.json (``scene`` and
    ``versions``, or a pc-table's ``table1``), or it is a sweep folder of an
    earlier version (``points/`` of *.json beside only csv/png/json/gif files)."""
    meta_path = os.path.join(path, "run.json")
    if os.path.isfile(meta_path) and not os.path.islink(meta_path):
        try:
            with open(meta_path, "rb") as f:
                meta = json.load(f)
        except (OSError, ValueError, RecursionError):
            meta = None
        if isinstance(meta, dict) and (meta.get(MARKER) is True or {"scene", "versions"} <= set(meta)
                                       or {"name", "table1", "table2"} <= set(meta)):
            return True
    points = os.path.join(path, "points")
    try:
        if not os.path.isdir(points) or os.path.islink(points):
            return False
        others = [e for e in os.scandir(path) if e.name != "points"]
        return (all(n.endswith((".json", ".tmp")) for n in os.listdir(points))
                and all(e.is_file(follow_symlinks=False) and e.name.endswith(_SWEEP_FILES)
                        for e in others))
    except OSError:
        return False


def check_out(out, force=False):
    """Refuse, before any work, an output folder tickprop may not replace; return
    its real path (a symlink is followed). Accepted: a missing name whose parent
    can hold it, an empty folder, a tickprop output, or, with ``force``, any
    other folder, except that the root, home and current folders, any folder
    above the current or home folder, and any folder holding a '.git' are
    refused even with ``force``. Raises OutputError."""
    given = os.fspath(out)
    if not given:
        raise OutputError("--out: expected a folder name, got ''")
    real = os.path.realpath(given)
    why = _protected(real)
    if why:
        raise OutputError(f"{given}: refusing to write over {why}; choose a new folder for --out")
    _check_parent(given, os.path.dirname(real))
    if not os.path.lexists(real):
        return real
    if not os.path.isdir(real):
        raise OutputError(f"{given}: exists and is not a folder; choose another --out")
    if os.path.lexists(os.path.join(real, ".git")):
        raise OutputError(f"{given}: holds a .git (a checkout); tickprop never replaces it")
    if _is_empty(real) or is_tickprop_output(real):
        return real
    if not force:
        raise OutputError(f"{given}: exists and is not a tickprop output (no run.json written by "
                          "tickprop); choose another --out, remove it yourself, or pass --force "
                          "to replace it")
    git = _find_git(real)
    if git:
        raise OutputError(f"{given}: {git}; --force never replaces a folder holding a checkout")
    return real


def write_folder(out, fill, force=False):
    """Write a whole output folder atomically: ``fill(folder)`` writes the files
    into a fresh temporary sibling and returns the run.json content (a dict, to
    which ``"tickprop_output": true`` is added); then the folder takes the name
    ``out`` in one step (see the module notes), the old output is deleted, and
    stale temporary folders of killed runs in the same parent are removed. On
    any failure or interrupt the temporary folder is removed and the earlier
    output is left as it was; an OSError becomes an OutputError naming the path
    and the OS's reason. ``force``: see check_out. Returns ``out``."""
    target = check_out(out, force)
    parent, base = os.path.split(target)
    try:
        os.makedirs(parent, mode=DIR_MODE, exist_ok=True)
        clean_stale(parent)
    except OSError as exc:
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
        _install(tmp, target, force, out)
    except OSError as exc:
        _remove_tree(tmp)
        if exc.filename and os.fspath(exc.filename) == tmp:
            exc.filename = out
        elif exc.filename and os.fspath(exc.filename).startswith(tmp + os.sep):
            exc.filename = os.path.join(out, os.path.relpath(exc.filename, tmp))
        raise output_error(exc, out) from None
    except BaseException:
        _remove_tree(tmp)
        raise
    return out


def claim_folder(out, force=False, meta=None):
    """Check, before any work, a folder that is written in place over several
    runs (a sweep, which resumes): refused as check_out refuses. A missing or
    empty folder or a tickprop output is left as it is (the caller creates it);
    a foreign folder accepted with ``force`` is replaced at once, atomically as
    write_folder does, by an empty one holding a run.json of ``meta`` plus the
    marker. Returns ``out``."""
    target = check_out(out, force)
    if os.path.isdir(target) and not (_is_empty(target) or is_tickprop_output(target)):
        write_folder(out, lambda folder: dict(meta or {}), force=True)
    return out


def clean_stale(parent):
    """Remove what killed runs left in ``parent``: temporary folders
    ``.<name>.tmp-<pid>-*`` and backups ``.<name>.old-<pid>-*`` whose process is
    gone and that are provably tickprop's (marker file, tickprop run.json, or
    empty). A backup whose name is now free is put back under it instead.
    Never raises; returns the paths removed or restored."""
    done = []
    try:
        entries = sorted(os.scandir(parent), key=lambda e: e.name)
    except OSError:
        return done
    backups = {}
    for entry in entries:
        m = _STALE.match(entry.name)
        if not m or not entry.is_dir(follow_symlinks=False) or _alive(int(m["pid"])):
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
    return os.path.join(parent, f".{base}.{kind}-{os.getpid()}-{uuid.uuid4().hex[:12]}")


def _mark(path):
    with open(os.path.join(path, TMP_MARK), "w") as f:
        json.dump({"pid": os.getpid(), "host": socket.gethostname()}, f)


def _unmark(path):
    try:
        os.remove(os.path.join(path, TMP_MARK))
    except OSError:
        pass


def _ours(path):
    """Provably written by tickprop on this host: marker file, tickprop run.json, or empty."""
    mark = os.path.join(path, TMP_MARK)
    if os.path.isfile(mark):
        try:
            with open(mark) as f:
                host = json.load(f).get("host")
        except (OSError, ValueError, AttributeError):
            host = None
        return host in (None, socket.gethostname())
    return _is_empty(path) or is_tickprop_output(path)


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
    if _is_empty(path) or is_tickprop_output(path):
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


__all__ = ["MARKER", "OutputError", "output_error", "atomic_write", "write_text", "write_json",
           "write_csv", "write_npz", "PNG_HOOKS", "save_png", "write_gif", "default_out", "is_tickprop_output",
           "check_out", "write_folder", "claim_folder", "clean_stale"]
