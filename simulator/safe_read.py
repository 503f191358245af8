"""Every saved file tickprop reads is opened through here (README "Commands":
run folders are read with one set of checks). A damaged or hostile file is one
``ReadError`` naming it, never a traceback or a hang: only regular files are
read; JSON is bounded in bytes and depth; an .npz archive's .npy headers are
checked against its sizes and ``read_budget()`` before anything is inflated,
and never unpickled. Ground floor: numpy and simulator.errors only.
"""
import contextlib
import gzip
import json
import math
import os
import stat
import zipfile
import zlib

from numpy.lib import format as npy

from .errors import SimulatorError

try:                    # not on every platform (Windows has no address-space limits)
    import resource
except ImportError:     # pragma: no cover
    resource = None

MAX_JSON_BYTES = 64 * 2**20     # a run.json is a few KiB: larger is not tickprop's
MAX_JSON_DEPTH = 64             # run.json and results.json are a few levels deep
MAX_MEMBERS = 4096              # trace.npz holds a few dozen arrays
MAX_HEADER_BYTES = 10000        # numpy's own limit for a trusted .npy header
# The arrays of one file may take this fraction of the memory the process can
# still allocate (drawing needs copies beside them); not the run's own
# record.memory_budget: run.json is as open to damage as the archive.
BUDGET_FRACTION = 0.5
READ_BUDGET = None              # bytes for the arrays of one file; None: as above (tests set it)
MEMINFO = "/proc/meminfo"
STATM = "/proc/self/statm"
CGROUP = "/sys/fs/cgroup"

_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISDIR, "a folder"), (stat.S_ISLNK, "a symbolic link"))


class ReadError(SimulatorError):
    """A saved file is missing, unreadable, not a regular file, damaged or too
    large to read; the message names the file and what is wrong."""


def shown(path):
    """The name errors give ``path``: the file a symlink points to, else ``path``."""
    path = os.fspath(path)
    return os.path.realpath(path) if os.path.islink(path) else path


def _format_bytes(n):
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024


def _read_number(path, field=None):
    """An integer from a /proc or /sys file (``field``: that line's, kiB -> bytes), or None."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return None
    if field is None:
        words = text.split()
        return int(words[0]) if words and words[0].isdigit() else None
    for line in text.splitlines():
        if line.startswith(field + ":"):
            parts = line.split()
            return int(parts[1]) * 1024 if len(parts) > 1 and parts[1].isdigit() else None
    return None


def _address_space_headroom():
    """Bytes RLIMIT_AS and RLIMIT_DATA leave above what the process maps; None if unlimited."""
    if resource is None:
        return None
    pages = _read_number(STATM)
    used = pages * os.sysconf("SC_PAGE_SIZE") if pages is not None else 0
    softs = [resource.getrlimit(getattr(resource, name))[0]
             for name in ("RLIMIT_AS", "RLIMIT_DATA") if hasattr(resource, name)]
    room = [max(0, soft - used) for soft in softs if soft != resource.RLIM_INFINITY]
    return min(room) if room else None


def _cgroup_headroom():
    """Bytes left under this process's cgroup (v2) memory limit; None if none."""
    limit = _read_number(os.path.join(CGROUP, "memory.max"))
    current = _read_number(os.path.join(CGROUP, "memory.current"))
    return None if limit is None or current is None else max(0, limit - current)


def available_memory():
    """Bytes this process can still allocate: the least of MemAvailable and the
    headroom under its cgroup's limit and its address-space limits (ulimit -v)."""
    found = [_read_number(MEMINFO, "MemAvailable"), _cgroup_headroom(),
             _address_space_headroom()]
    if found[0] is None and hasattr(os, "sysconf"):
        with contextlib.suppress(ValueError, OSError):
            found[0] = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    found = [n for n in found if n is not None]
    return min(found) if found else 2**63


def read_budget():
    """Bytes the arrays of one saved file may take: READ_BUDGET, else
    BUDGET_FRACTION of available_memory()."""
    return int(READ_BUDGET if READ_BUDGET is not None else available_memory() * BUDGET_FRACTION)


def open_regular(path, follow_links=True):
    """(binary file object, size) of the regular file ``path``, anything else refused
    without blocking (O_NONBLOCK, then fstat); without ``follow_links`` a symbolic
    link is refused too (O_NOFOLLOW)."""
    path = os.fspath(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    if not follow_links:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        mode = (os.stat if follow_links else os.lstat)(path).st_mode
        _refuse_special(path, mode)
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise ReadError(f"{shown(path)}: missing; the run folder is incomplete") from None
    except OSError as exc:
        raise ReadError(f"{shown(path)}: cannot read ({exc.strerror or exc})") from None
    try:
        info = os.fstat(fd)
        _refuse_special(path, info.st_mode)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb"), info.st_size
    except BaseException:
        os.close(fd)
        raise


def _refuse_special(path, mode):
    if not stat.S_ISREG(mode):
        what = next((name for test, name in _KINDS if test(mode)), "not a regular file")
        raise ReadError(f"{shown(path)}: is {what}, not a file tickprop wrote; tickprop reads "
                        "only regular files")


def read_head(path, size, follow_links=True):
    """The first ``size`` bytes of the regular file ``path`` (as open_regular refuses)."""
    return _read_bytes(path, size, follow_links, head=True)


def _read_bytes(path, limit, follow_links=True, head=False):
    """The bytes of the regular file ``path``, refused past ``limit`` (``head``: cut
    there); read at the file's own size (a ``limit``-byte buffer may not fit)."""
    f, size = open_regular(path, follow_links)
    with f:
        if size > limit and not head:
            raise ReadError(f"{shown(path)}: {_format_bytes(size)}, larger than any file "
                            f"tickprop writes there ({_format_bytes(limit)} at most)")
        try:
            data = f.read(limit if head else size + 1)
        except OSError as exc:
            raise ReadError(f"{shown(path)}: cannot read ({exc.strerror or exc})") from None
    if len(data) > limit:
        raise ReadError(f"{shown(path)}: larger than {_format_bytes(limit)}; not a file "
                        "tickprop wrote")
    return data


def _depth(value):
    """Nesting depth of a parsed JSON value, iteratively."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, d = stack.pop()
        if isinstance(item, (list, dict)):
            deepest = max(deepest, d)
            if deepest > MAX_JSON_DEPTH:
                return deepest
            stack.extend((v, d + 1) for v in (item.values() if isinstance(item, dict) else item))
    return deepest


_TYPE_NAMES = {dict: "a JSON object", list: "a JSON array"}


def read_json(path, top=dict, limit=MAX_JSON_BYTES, follow_links=True):
    """The parsed JSON file ``path``, its top level of type ``top``; missing, not a
    regular file, over ``limit`` bytes, not UTF-8 JSON, nested deeper than
    MAX_JSON_DEPTH or too big for memory is one ReadError."""
    data = _read_bytes(path, limit, follow_links)
    name = shown(path)
    if not data.strip():
        raise ReadError(f"{name}: damaged (the file is empty)")
    try:
        value = json.loads(data.decode("utf-8"))
    except RecursionError:
        raise ReadError(f"{name}: damaged (JSON nested too deeply)") from None
    except MemoryError:
        raise ReadError(f"{name}: too large to read in the memory available") from None
    except UnicodeDecodeError as exc:
        raise ReadError(f"{name}: damaged (not UTF-8 text: {exc.reason} at byte "
                        f"{exc.start})") from None
    except ValueError as exc:
        raise ReadError(f"{name}: damaged (not valid JSON: {str(exc)[:120]})") from None
    if _depth(value) > MAX_JSON_DEPTH:
        raise ReadError(f"{name}: damaged (JSON nested more than {MAX_JSON_DEPTH} levels deep)")
    if not isinstance(value, top):
        raise ReadError(f"{name}: damaged (expected {_TYPE_NAMES.get(top, top.__name__)}, "
                        f"got {type(value).__name__})")
    return value


def read_gzip(path, limit):
    """The decompressed bytes of the gzip file ``path``, inflated in steps: past
    ``limit`` bytes it is one ReadError, not a MemoryError."""
    f, _ = open_regular(path)
    name = shown(path)
    parts, total = [], 0
    try:
        with f, gzip.GzipFile(fileobj=f) as z:
            while part := z.read(2**20):
                total += len(part)
                if total > limit:
                    raise ReadError(f"{name}: inflates to more than {_format_bytes(limit)}; "
                                    "not the expected file")
                parts.append(part)
    except (OSError, EOFError, zlib.error) as exc:
        raise ReadError(f"{name}: cannot read ({exc})") from None
    except MemoryError:
        raise ReadError(f"{name}: too large to read in the memory available") from None
    return b"".join(parts)


NUMBERS = "biuf"            # dtype kinds of numeric arrays (bool, ints, floats)
REAL = "iuf"                # dtype kinds of arrays of values (not flags)
TEXT = "US"                 # dtype kinds of text arrays
# What a damaged archive raises; RuntimeError: an unknown compression or an encrypted member.
_ZIP_ERRORS = (ValueError, EOFError, OSError, zipfile.BadZipFile, zlib.error, RuntimeError)


def _member_header(zf, info, name):
    """(key, dtype) of one .npy member from its header, checked against its size."""
    if not info.filename.endswith(".npy"):
        raise ReadError(f"{name}: damaged or not a tickprop result (member "
                        f"{info.filename!r} is not an array)")
    key = info.filename[:-len(".npy")]
    try:
        with zf.open(info) as fp:
            version = npy.read_magic(fp)
            read = {(1, 0): npy.read_array_header_1_0,
                    (2, 0): npy.read_array_header_2_0}.get(version)
            if read is None:
                raise ValueError(f"unsupported .npy version {version}")
            shape, _, dtype = read(fp, max_header_size=MAX_HEADER_BYTES)
            header = fp.tell()
    except (*_ZIP_ERRORS, SyntaxError, TypeError, RecursionError, MemoryError) as exc:
        raise ReadError(f"{name}: damaged (array {key!r}: {str(exc)[:160] or type(exc).__name__})"
                        ) from None
    if dtype.hasobject or dtype.kind not in NUMBERS + TEXT or dtype.names is not None \
            or dtype.itemsize == 0:
        raise ReadError(f"{name}: damaged (array {key!r} holds {dtype.kind!r} values of dtype "
                        f"{dtype}; expected numbers)")
    if any(int(n) < 0 for n in shape):
        raise ReadError(f"{name}: damaged (array {key!r}: its header declares the negative "
                        f"shape {tuple(shape)})")
    count = math.prod(int(n) for n in shape)
    if header + count * dtype.itemsize != info.file_size:
        raise ReadError(f"{name}: damaged (array {key!r}: its header declares shape "
                        f"{tuple(shape)} of {dtype} ({_format_bytes(count * dtype.itemsize)}) "
                        f"but the archive holds {_format_bytes(info.file_size - header)})")
    return key, dtype


def read_npz(path, required=(), text=(), budget=None):
    """{name: array} of the .npz archive ``path``, its headers checked before anything
    is inflated (total within ``budget``, default read_budget()); arrays not named in
    ``text`` hold numbers, those in ``required`` must be there. Anything wrong is one
    ReadError naming the file."""
    f, size = open_regular(path)
    name = shown(path)
    with f:
        if size == 0:
            raise ReadError(f"{name}: damaged (the file is empty); re-run the scene to write it "
                            "again")
        try:
            zf = zipfile.ZipFile(f)
        except _ZIP_ERRORS as exc:
            raise ReadError(f"{name}: damaged (not an .npz archive: {exc}); re-run the scene "
                            "to write it again") from None
        with zf:
            return _read_members(zf, name, required, text,
                                 read_budget() if budget is None else int(budget))


def _read_members(zf, name, required, text, budget):
    infos = zf.infolist()
    if len(infos) > MAX_MEMBERS:
        raise ReadError(f"{name}: damaged ({len(infos)} members; a tickprop result has a few "
                        "dozen)")
    headers = {}
    for info in infos:
        key, dtype = _member_header(zf, info, name)
        if key in headers:
            raise ReadError(f"{name}: damaged (array {key!r} stored twice)")
        if dtype.kind in TEXT and key not in text:
            raise ReadError(f"{name}: damaged (array {key!r} holds text ({dtype}); expected "
                            "numbers)")
        headers[key] = info
    missing = [k for k in required if k not in headers]
    if missing:
        raise ReadError(f"{name}: damaged or not a tickprop result (no {', '.join(missing)})")
    total = sum(info.file_size for info in headers.values())
    if total > budget:
        words = (f"the {_format_bytes(budget)} this process may use now (a fraction "
                 f"{BUDGET_FRACTION:g} of the memory available)" if READ_BUDGET is None
                 else f"the read budget of {_format_bytes(budget)}")
        raise ReadError(f"{name}: its arrays take {_format_bytes(total)} once read, more than "
                        f"{words}; free memory or read it on a larger machine")
    arrays = {}
    for key, info in headers.items():
        try:
            with zf.open(info) as fp:
                arrays[key] = npy.read_array(fp, allow_pickle=False,
                                             max_header_size=MAX_HEADER_BYTES)
        except MemoryError:
            raise ReadError(f"{name}: too large to read in the memory available (array "
                            f"{key!r}, {_format_bytes(info.file_size)})") from None
        except _ZIP_ERRORS as exc:
            raise ReadError(f"{name}: damaged (array {key!r}: {str(exc)[:160]})") from None
    return arrays

