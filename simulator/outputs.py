"""Every output folder tickprop writes is put in place here, atomically, and
only where tickprop may (README, `--out`): a run of any kind, ``render --out``
(``write_folder``) and a sweep (``claim_folder``, ``claimed``). A whole output
is filled under a marked temporary sibling, given its manifest last, then
takes its name in one ``renameat2(RENAME_EXCHANGE)`` (elsewhere through a
backup ``.<name>.old-<pid>-<token>`` that manifest.clean_stale restores).
"""
import contextlib
import ctypes
import errno
import os
import platform
import re
import unicodedata

from . import files, manifest
from .files import OutputError

_POINT_PATH = re.compile(r"^points/[0-9a-f]{64}\.json$")
_ATTEMPTS = 200                     # exchanges lost to concurrent writers before giving up
_GIT_SCAN_LIMIT = 100_000           # entries looked at for a .git before --force gives up
_NAMED = 5                          # foreign files an error names before "and N more"
_CHANGED = "changed while the run was writing and is no longer a tickprop output; left as it is"
_CROWDED = "other runs kept replacing it; try again"


def default_out(name, root="outputs"):
    """``root/<name>`` with ``name`` made one folder name inside ``root``: NFC
    letters of any script, digits, '_', '-', '.' kept, the rest '_', leading dots gone."""
    parts = [p for p in re.split(r"[\\/]+", str(name)) if p not in ("", ".", "..")]
    safe = re.sub(r"[^\w.-]", "_", unicodedata.normalize("NFC", "_".join(parts))).lstrip(".")
    return os.path.join(root, safe or "run")


def check_out(out, force=False):
    """The real path of ``out`` if tickprop may replace it (README, `--out`), checked
    before any work; else an OutputError naming the foreign or changed files."""
    return _check_out(out, force)[0]


def _check_out(out, force, renewed=None):
    """(real path, what is foreign in it: [] unless forced); a changed listed
    file whose path the pattern ``renewed`` matches is not counted."""
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
    problems = [(rel, why) for rel, why in manifest.foreign_files(real)
                if not (renewed and why == manifest.CHANGED and renewed.match(rel))]
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
    """Write a whole output folder atomically and return ``out``: ``fill(folder)``
    fills a temporary sibling and returns the run.json dict (the marker is added),
    the manifest comes last, then the folder replaces ``out``. On any failure the
    temporary folder and the parents made here go, the old output stays, and the
    error (an OSError as an OutputError) names ``out``, never the temporary."""
    target = check_out(out, force)
    parent, base = os.path.split(target)
    made = _missing_folders(parent)
    try:
        os.makedirs(parent, mode=files.DIR_MODE, exist_ok=True)
        manifest.clean_stale(parent)
    except OSError as exc:
        _remove_empty(made)
        raise files.output_error(exc, out) from None
    # Made inside the try: an interrupt before its marker exists still removes it.
    tmp = files.tmp_name(parent, base, "tmp")
    try:
        files.make_tmp(tmp)
        meta = fill(tmp)
        if not isinstance(meta, dict):
            raise TypeError(f"fill must return the run.json dict, got {type(meta).__name__}")
        files.write_json(os.path.join(tmp, "run.json"), {manifest.MARKER: True, **meta})
        manifest.write_manifest(tmp, manifest.scan(tmp))
        _install(tmp, target, force, out)
    except BaseException as exc:
        files.remove_tree(tmp)
        _remove_empty(made)
        if not isinstance(exc, OSError):
            raise files.speak_of(exc, tmp, os.fspath(out))
        if exc.filename and os.fspath(exc.filename) == tmp:
            exc.filename = out
        elif exc.filename and os.fspath(exc.filename).startswith(tmp + os.sep):
            exc.filename = os.path.join(out, os.path.relpath(exc.filename, tmp))
        raise files.output_error(exc, out) from None
    return out


def claim_folder(out, force=False, meta=None):
    """Check and claim a sweep folder, written in place (it resumes), as check_out
    does but for changed point files (the sweep runs them again). A missing or empty
    folder gets an empty manifest; a foreign one accepted with ``force`` is replaced
    by an empty one holding a run.json of ``meta``. Returns ``out``."""
    real, problems = _check_out(out, force, renewed=_POINT_PATH)
    if problems:
        write_folder(out, lambda folder: dict(meta or {}), force=True)
        return out
    try:
        os.makedirs(real, mode=files.DIR_MODE, exist_ok=True)
        adopted = manifest.adopt(real)
    except OSError as exc:
        raise files.output_error(exc, out) from None
    if not adopted:
        raise OutputError(f"{out}: changed while it was being checked; try again")
    return out


@contextlib.contextmanager
def claimed(out, force=False, meta=None):
    """``claim_folder`` then ``manifest.recording``; if the block fails before
    writing a file, the folders this claim made go again."""
    made = _missing_folders(os.path.realpath(os.fspath(out)))
    claim_folder(out, force, meta)
    try:
        with manifest.recording(out):
            yield
    except BaseException:
        if made and _unused(made[0]):
            _remove_empty(made)
        raise


def _unused(folder):
    """Empty ``folder`` of what an unused claim left; True if nothing else was there."""
    try:
        if manifest.read_manifest(folder) != {}:
            return False
        entries = [e for e in os.scandir(folder) if e.name != manifest.MANIFEST]
        if not all(e.is_dir(follow_symlinks=False) and files.is_empty(e.path) for e in entries):
            return False
        for entry in entries:
            os.rmdir(entry.path)
        os.remove(os.path.join(folder, manifest.MANIFEST))
    except (OSError, OutputError):
        return False
    return True


def _describe(problems):
    """'a, b (why); c (why) and N more': the first few problems, by reason."""
    shown, rest = problems[:_NAMED], len(problems) - _NAMED
    parts = [f"{', '.join(p for p, w in shown if w == why)} ({why})"
             for why in dict.fromkeys(w for _, w in shown)]
    return "; ".join(parts) + (f" and {rest} more" if rest > 0 else "")


def _missing_folders(path):
    """The folders from ``path`` up that do not exist yet, deepest first."""
    missing = []
    while path and not os.path.lexists(path) and os.path.dirname(path) != path:
        missing.append(path)
        path = os.path.dirname(path)
    return missing


def _remove_empty(folders):
    """Remove ``folders`` (deepest first) while they are empty."""
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
    return next((f"a folder that holds {what}" for what, place in places
                 if place.startswith(real.rstrip(os.sep) + os.sep)), None)


def _check_parent(given, parent):
    """The deepest existing ancestor of ``parent`` must be a folder we may write in."""
    while not os.path.lexists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise OutputError(f"{given}: cannot write there ({parent} is not a folder)")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{given}: cannot write there ({parent}: permission denied)")


def _find_git(path):
    """Where a '.git' is under ``path`` (or that the tree is too big to check), else None."""
    seen = 0
    for root, dirs, names in os.walk(path):
        if ".git" in dirs or ".git" in names:
            return f"holds {os.path.join(root, '.git')}"
        seen += len(dirs) + len(names)
        if seen > _GIT_SCAN_LIMIT:
            return f"holds more than {_GIT_SCAN_LIMIT} files (too many to check for a .git)"
    return None


def _replaceable(path, force):
    """May this folder (just moved aside) be deleted in favour of a new output?"""
    if (os.path.islink(path) or not os.path.isdir(path)
            or os.path.lexists(os.path.join(path, ".git"))):
        return False
    if files.is_empty(path) or not manifest.foreign_files(path):
        return True
    return force and _find_git(path) is None


def _install(tmp, target, force, given):
    """Put the filled folder ``tmp`` under ``target``; delete what was there."""
    for _ in range(_ATTEMPTS):
        if not os.path.lexists(target):
            if _renamed(os.rename, tmp, target):
                files.unmark_folder(target)
                return
            continue
        try:
            swapped = _exchange(tmp, target)
        except FileNotFoundError:
            continue                            # the old one vanished meanwhile
        if not swapped:
            return _install_with_backup(tmp, target, force, given)
        if not _replaceable(tmp, force):        # changed since check_out: put it back
            _exchange(tmp, target)
            raise OutputError(f"{given}: {_CHANGED}")
        files.unmark_folder(target)
        files.remove_tree(tmp, mark=True)
        return
    raise OutputError(f"{given}: {_CROWDED}")


def _install_with_backup(tmp, target, force, given):
    """Without an exchange: old -> backup, new -> name, delete backup."""
    parent, base = os.path.split(target)
    backups = []
    try:
        for _ in range(_ATTEMPTS):
            if os.path.lexists(target):
                backup = files.tmp_name(parent, base, "old")
                try:
                    _rename(target, backup)
                except FileNotFoundError:
                    continue
                backups.append(backup)
                if not _replaceable(backup, force):
                    _rename(backup, target)
                    backups.pop()
                    raise OutputError(f"{given}: {_CHANGED}")
            if _renamed(_rename, tmp, target):
                break
        else:
            raise OutputError(f"{given}: {_CROWDED}")
    except BaseException:
        if backups and not os.path.lexists(target):
            with contextlib.suppress(OSError):
                _rename(backups.pop(), target)
        raise
    files.unmark_folder(target)
    for backup in backups:
        files.remove_tree(backup, mark=True)


def _rename(src, dst):
    os.rename(src, dst)             # named so that tests can stop between two renames


def _renamed(rename, src, dst):
    """``rename(src, dst)``; False if another run got to ``dst`` first."""
    try:
        rename(src, dst)
    except OSError as exc:
        if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
            return False
        raise
    return True


# renameat2(2): Linux >= 3.15; glibc >= 2.28 has the wrapper, else the raw syscall.
_AT_FDCWD, _RENAME_EXCHANGE = -100, 2
_SYSCALL_RENAMEAT2 = {"x86_64": 316, "amd64": 316, "aarch64": 276, "arm64": 276,
                      "ppc64le": 357, "ppc64": 357, "s390x": 347, "riscv64": 276}


def _load_renameat2():
    """renameat2 from the C library (or the raw syscall); None where there is none."""
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
    """Swap the names ``a`` and ``b`` in one step: True if swapped, False where
    this system cannot; other failures raise OSError."""
    if _RENAMEAT2 is None:
        return False
    if _RENAMEAT2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EPERM):
        return False
    raise OSError(err, os.strerror(err), a, None, b)

