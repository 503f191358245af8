"""Every single file tickprop writes goes through here, atomically: written to a
temporary beside it, then ``os.replace``-d (atomic against a killed process, not a
power loss: no fsync); inside a folder being recorded (``committing``) the manifest
lists it first. Every temporary is named here (STALE, the token starting with this
host's tag); a temporary folder holds the marker TMP_MARK while it is filled or
deleted, so manifest.clean_stale removes it once its process is gone.
"""
import contextlib
import csv
import errno
import hashlib
import io
import json
import os
import re
import shutil
import signal
import socket
import threading
import uuid

import numpy as np

from .errors import SimulatorError

TMP_MARK = ".tickprop-tmp"          # inside a folder tickprop is writing (pid and host)
KILL_HOOK = "TICKPROP_TEST_KILL_AT_RENAME"   # tests only: SIGKILL before this file's rename
FILE_MODE, DIR_MODE = 0o644, 0o755
STALE = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<pid>\d+)-[0-9a-f]{12}$")
HOST_TAG = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:4]
# OS errors only a write meets (output_error): any other is told as the OS tells it.
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EROFS, errno.EFBIG,
                          getattr(errno, "EDQUOT", errno.ENOSPC)})
_COMMITTING = {}                    # real folder -> [open committing() blocks, commit]
_COMMITTING_LOCK = threading.Lock()


class OutputError(SimulatorError):
    """An output cannot be written where asked: names the path and the reason."""


def output_error(exc, path=None):
    """The OutputError of an OSError met writing an output, naming its file (else
    ``path``): ``cannot write (reason)`` for WRITE_ERRNOS, else the OS's reason."""
    where = exc.filename if getattr(exc, "filename", None) else path
    reason = exc.strerror or str(exc) or type(exc).__name__
    if exc.errno in WRITE_ERRNOS:
        reason = f"cannot write ({reason})"
    return OutputError(f"{where}: {reason}" if where else reason)


def speak_of(exc, private, public):
    """``exc``, changed to name ``public`` where it names the temporary folder
    ``private`` (an OSError's file names, else its message), for ``raise``."""
    private, public = os.fspath(private), os.fspath(public)

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


def atomic_write(path, write, binary=False, commit=None):
    """``write(fileobj)`` into a temporary beside ``path``, then move it over ``path``
    (mode 0644; ``commit(tmp, path)``, by default through a recorded folder's) and
    return ``path``; on any failure the temporary goes and the error goes on."""
    path = os.fspath(path)
    folder, base = os.path.split(os.path.abspath(path))
    tmp = tmp_name(folder, base, "tmp")
    try:
        with open(tmp, "xb" if binary else "x", **({} if binary else {"newline": ""})) as f:
            write(f)
        os.chmod(tmp, FILE_MODE)
        (commit or _commit)(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    return path


def move_into_place(source, path):
    """Rename the finished file ``source`` (same file system) over ``path``; returns ``path``."""
    os.chmod(source, FILE_MODE)
    _commit(os.fspath(source), os.fspath(path))
    return path


def write_text(path, text, commit=None):
    """Write a str as UTF-8 text atomically (as atomic_write); returns ``path``."""
    return atomic_write(path, lambda f: f.write(text.encode()), binary=True, commit=commit)


def write_json(path, data, indent=2):
    """Write ``data`` as JSON atomically; numpy scalars and arrays become numbers and
    lists, anything else unknown is refused (never silently str()'d)."""
    return write_text(path, json.dumps(data, indent=indent, default=_plain))


def _plain(value):
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in JSON")


def write_csv(path, columns, rows, newline="\n"):
    """Write a CSV atomically: ``columns``, then one line per row (a mapping,
    '' for a missing key, or a sequence)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator=newline)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([row.get(c, "") for c in columns] if hasattr(row, "get") else row)
    return write_text(path, buf.getvalue())


def write_npz(path, arrays):
    """Write {name: array} as a compressed .npz atomically."""
    return atomic_write(path, lambda f: np.savez_compressed(f, **arrays), binary=True)


PNG_HOOKS = []      # hook(fig, path) called before each PNG is written (tests' figure lint)


def save_png(fig, path):
    """Write a matplotlib Figure as a PNG at its own dpi atomically; returns ``path``."""
    for hook in list(PNG_HOOKS):
        hook(fig, path)
    return atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=fig.dpi), binary=True)


def _commit(tmp, path):
    """Rename ``tmp`` over ``path``, by the commit of a folder being recorded if any."""
    (_committer(path) or replace)(tmp, path)


def replace(tmp, path):
    """``os.replace``, the last step of every write (where tests may kill the process)."""
    kill_hook(path)
    os.replace(tmp, path)


@contextlib.contextmanager
def committing(root, commit):
    """Within this block every file written here under the real folder ``root``
    takes its name by ``commit(tmp, path)`` instead of a plain rename (how
    manifest.recording lists it). Blocks nest; the first one's commit holds."""
    with _COMMITTING_LOCK:
        held = _COMMITTING.setdefault(root, [0, commit])
        held[0] += 1
    try:
        yield
    finally:
        with _COMMITTING_LOCK:
            held[0] -= 1
            if not held[0]:
                del _COMMITTING[root]


def _committer(path):
    """The commit of the deepest folder being recorded that holds ``path``, or None."""
    with _COMMITTING_LOCK:
        if not _COMMITTING:
            return None
        roots = dict(_COMMITTING)
    real = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    inside = [r for r in roots if real == r or real.startswith(r.rstrip(os.sep) + os.sep)]
    return roots[max(inside, key=len)][1] if inside else None


def kill_hook(path):
    """Tests only: SIGKILL this process if TICKPROP_TEST_KILL_AT_RENAME names ``path``."""
    want = os.environ.get(KILL_HOOK)
    if want and os.path.abspath(path).endswith(os.sep + want.strip(os.sep)):
        os.kill(os.getpid(), signal.SIGKILL)


def scratch_folder(folder, what):
    """The path of a new marked scratch folder ``.tickprop-<what>.tmp-<pid>-<token>``
    inside ``folder``; an error making it names ``folder``."""
    path = tmp_name(os.path.realpath(folder), f"tickprop-{what}", "tmp")
    try:
        make_tmp(path)
    except BaseException as exc:
        remove_tree(path)
        raise speak_of(exc, path, folder)
    return path


def remove_scratch(path):
    """Delete a scratch folder of this process (and what is in it)."""
    remove_tree(path, mark=True)


def make_tmp(path):
    """Create the temporary folder ``path`` (mode 0755) with its marker file."""
    os.mkdir(path)
    os.chmod(path, DIR_MODE)
    mark_folder(path)
    return path


def tmp_name(parent, base, kind):
    """``parent/.<base>.<kind>-<pid>-<token>``, the token starting with HOST_TAG."""
    return os.path.join(parent, f".{base}.{kind}-{os.getpid()}-{HOST_TAG}{uuid.uuid4().hex[:8]}")


def mark_folder(path):
    """Write the marker file TMP_MARK (pid and host) into the folder ``path``."""
    with open(os.path.join(path, TMP_MARK), "w") as f:
        json.dump({"pid": os.getpid(), "host": socket.gethostname()}, f)


def unmark_folder(path):
    """Remove the marker file of the folder ``path``, if there is one."""
    with contextlib.suppress(OSError):
        os.remove(os.path.join(path, TMP_MARK))


def remove_tree(path, mark=False):
    """Delete a folder this run owns; with ``mark`` the marker is written first
    and removed last. True if it is gone."""
    try:
        if mark:
            mark_folder(path)
        with os.scandir(path) as it:
            entries = [e for e in it if e.name != TMP_MARK]
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                os.remove(entry.path)
        unmark_folder(path)
        os.rmdir(path)
        return True
    except OSError:
        shutil.rmtree(path, ignore_errors=True)
        return not os.path.lexists(path)


def alive(pid):
    """Is the process ``pid`` running (True where this system cannot tell)?"""
    if os.name != "posix" or pid <= 0:
        return True                     # cannot tell: leave it alone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        pass
    return True


def live_temporary(name):
    """Is ``name`` a temporary (STALE) of a live process?"""
    m = STALE.match(name)
    return bool(m) and alive(int(m["pid"]))


def is_empty(path):
    """Is ``path`` a folder with nothing in it (False if it cannot be listed)?"""
    try:
        with os.scandir(path) as it:
            return next(it, None) is None
    except OSError:
        return False

