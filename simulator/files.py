"""Every single file tickprop writes goes through here, atomically, and every
temporary it makes is named here.

Single files (JSON, CSV, text, npz, PNG, GIF) are written to a temporary name
``.<name>.tmp-<pid>-<token>`` in the same folder and moved over the final name
with ``os.replace``: a reader sees the old file or the new one, never half of
one. Inside a folder being recorded (simulator.manifest's ``recording``, which
uses ``committing``) that rename is the folder's own commit: the manifest
lists the new file first. Writes are atomic against a killed process, not
against a power loss (no fsync).

Temporaries. Every temporary -- a single file's, an output's folder and a
backup (simulator.outputs), the scratch folder of an in-place render
(``.tickprop-render.tmp-<pid>-<token>`` inside the run folder) -- is named
``.<name>.tmp|old-<pid>-<token>`` (STALE): it carries the writer's pid, and
its token starts with a tag of this host's name (HOST_TAG), so another host's
files on a shared disk are told apart. A temporary folder holds a marker file
TMP_MARK (pid and host) while it is filled and while it is deleted, so a kill
midway leaves a folder that simulator.manifest's ``clean_stale`` knows for
tickprop's and removes once its process is gone.

Errors. OutputError names the output and the reason; ``output_error`` makes
one of an OSError, ``cannot write`` only for the errors only a write meets
(WRITE_ERRNOS); ``speak_of`` makes an error name the output, never the
temporary folder it was filled in.

Test hook (tests only, never set it otherwise): with the environment variable
TICKPROP_TEST_KILL_AT_RENAME naming a file (its base name, or a path ending
with it), the process kills itself with SIGKILL right before renaming that
file's temporary into place.

This module imports simulator.errors only (of the package): simulator.manifest
and simulator.outputs build on it.
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
    tmp = tmp_name(folder, base, "tmp")
    try:
        with open(tmp, "xb" if binary else "x", **({} if binary else {"newline": ""})) as f:
            write(f)
        os.chmod(tmp, FILE_MODE)
        _commit(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
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


def write_csv(path, columns, rows, newline="\n"):
    """Write a CSV atomically: a header of ``columns``, then one line per row
    (a mapping, read by column with '' for a missing key, or a sequence)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator=newline)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([row.get(c, "") for c in columns] if hasattr(row, "get") else row)
    return write_text(path, buf.getvalue())


def write_npz(path, arrays):
    """Write {name: array} as a compressed .npz atomically."""
    return atomic_write(path, lambda f: np.savez_compressed(f, **arrays), binary=True)


# Callables hook(fig, path) that save_png calls before writing each figure:
# a place for checks (the figure-lint test registers one); empty in a run.
PNG_HOOKS = []


def save_png(fig, path):
    """Write a matplotlib Figure as a PNG at its own dpi atomically; returns
    ``path``. Each hook in PNG_HOOKS sees (fig, path) first."""
    for hook in list(PNG_HOOKS):
        hook(fig, path)
    return atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=fig.dpi), binary=True)


def _commit(tmp, path):
    """The last step of every single-file write: rename ``tmp`` over ``path``,
    or, inside a folder being recorded (``committing``), let that folder's
    commit do it (it lists the new file in the folder's manifest first)."""
    commit = _committer(path)
    if commit is None:
        kill_hook(path)
        os.replace(tmp, path)
    else:
        commit(tmp, path)


@contextlib.contextmanager
def committing(root, commit):
    """Within this block every single file written under the real folder
    ``root`` (by atomic_write and its writers, or move_into_place) takes its
    name by ``commit(tmp, path)`` instead of a plain rename: how
    simulator.manifest's ``recording`` lists it in the folder's manifest
    first. Blocks nest; the first one's ``commit`` holds while any is open."""
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
    if not want:
        return
    if os.path.abspath(path).endswith(os.sep + want.strip(os.sep)):
        os.kill(os.getpid(), signal.SIGKILL)


# ------------------------------------------------------------------ temporaries
def scratch_folder(folder, what):
    """A private scratch folder ``.tickprop-<what>.tmp-<pid>-<token>`` inside
    ``folder``, marked as tickprop's, so that simulator.manifest.clean_stale
    removes it if this process dies before ``remove_scratch``; an error making it names
    ``folder``. Returns its path."""
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
    """``parent/.<base>.<kind>-<pid>-<token>``; the token starts with this
    host's tag, so clean_stale leaves other hosts' files alone."""
    return os.path.join(parent, f".{base}.{kind}-{os.getpid()}-{HOST_TAG}{uuid.uuid4().hex[:8]}")


def mark_folder(path):
    """Write the marker file TMP_MARK (this pid and host) into the folder ``path``."""
    with open(os.path.join(path, TMP_MARK), "w") as f:
        json.dump({"pid": os.getpid(), "host": socket.gethostname()}, f)


def unmark_folder(path):
    """Remove the marker file of the folder ``path``, if there is one."""
    with contextlib.suppress(OSError):
        os.remove(os.path.join(path, TMP_MARK))


def remove_tree(path, mark=False):
    """Delete a folder this run owns; with ``mark`` the marker file is written
    first and removed last, so a kill midway leaves a folder clean_stale knows."""
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
        return True
    return True


def live_temporary(name):
    """A temporary name (``.<name>.tmp|old-<pid>-<token>``) of a live process."""
    m = STALE.match(name)
    return bool(m) and alive(int(m["pid"]))


def is_empty(path):
    """Is ``path`` a folder with nothing in it (False if it cannot be listed)?"""
    try:
        with os.scandir(path) as it:
            return next(it, None) is None
    except OSError:
        return False


__all__ = ["TMP_MARK", "KILL_HOOK", "FILE_MODE", "DIR_MODE", "STALE", "WRITE_ERRNOS", "HOST_TAG",
           "OutputError", "output_error", "speak_of", "atomic_write", "move_into_place",
           "write_text", "write_json", "write_csv", "write_npz", "PNG_HOOKS", "save_png",
           "committing", "kill_hook", "scratch_folder", "remove_scratch",
           "make_tmp", "tmp_name", "mark_folder", "unmark_folder", "remove_tree", "alive",
           "live_temporary", "is_empty"]
