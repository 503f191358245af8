"""Every saved file tickprop reads goes through here: run.json, trace.npz and
the other results of each kind (results.json, relaxation.npz, training.npz,
wave.npz, locking.npz), for ``tickprop render``, ``tickprop view`` and the
notebook's ``Trace.load`` alike, a sweep's point files, and the gzipped data
files of simulator.datasets.

A damaged or hostile file is one ``ReadError`` (a SimulatorError: one
``error:`` line) naming the file and what is wrong, never a traceback and
never a hang:

- only regular files are read: a FIFO, a device or a socket is refused
  without blocking (opened with O_NONBLOCK, checked with fstat);
- a JSON file larger than ``MAX_JSON_BYTES``, nested deeper than
  ``MAX_JSON_DEPTH`` (RecursionError) or too big for memory (MemoryError) is
  refused, and its top level must be of the expected type;
- an .npz archive is checked before anything is inflated: every member's
  .npy header (shape × dtype itemsize) must agree with the size the archive
  declares for it, and the sum must fit ``read_budget()`` -- so a small file
  that would inflate to GiB is refused, not a MemoryError -- object arrays
  are refused (no pickle, ever) and strings are accepted only where text is
  expected (a ``tick`` of strings is damaged);
- each file's layout (its arrays, their shapes, dtypes and the values the
  drawing code indexes with) is checked here once, so every reader sees the
  same file or the same error.

The ground floor: this module imports numpy and simulator.errors only.
"""
import gzip
import json
import math
import os
import stat
import zipfile
import zlib

import numpy as np
from numpy.lib import format as npy

from .errors import SimulatorError

try:                    # not on every platform (Windows has no address-space limits)
    import resource
except ImportError:     # pragma: no cover
    resource = None

# A saved JSON file larger than this is not one tickprop wrote (a run.json is a
# few KiB; results.json holds a few curves).
MAX_JSON_BYTES = 64 * 2**20
# run.json and results.json are a few levels deep; deeper is hostile.
MAX_JSON_DEPTH = 64
# trace.npz holds a few dozen arrays.
MAX_MEMBERS = 4096
MAX_HEADER_BYTES = 10000        # numpy's own limit for a trusted .npy header
# The arrays of one file may take at most this fraction of the memory the
# process can still allocate (read_budget): drawing needs copies beside them.
# (Not the run's own record.memory_budget: run.json is as open to damage as
# the archive it would vouch for, and the machine reading may be smaller.)
BUDGET_FRACTION = 0.5
# Bytes the arrays of one file may take; None: BUDGET_FRACTION of
# available_memory() at the time of reading. Tests set it.
READ_BUDGET = None
# Where the kernel tells what memory is left (Linux; elsewhere only what is found).
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
    """The name errors give ``path``: the file a symlink points to (a render
    draws in a scratch folder of links to the run's files), else ``path``."""
    path = os.fspath(path)
    return os.path.realpath(path) if os.path.islink(path) else path


def _format_bytes(n):
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024


# ------------------------------------------------------------------- memory
def _read_number(path, field=None):
    """An integer from a /proc or /sys file (``field``: the line starting with
    it, in kiB as /proc/meminfo gives it), or None where there is none."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return None
    if field is None:
        word = text.split()[0] if text.split() else ""
        return int(word) if word.isdigit() else None
    for line in text.splitlines():
        if line.startswith(field + ":"):
            parts = line.split()
            return int(parts[1]) * 1024 if len(parts) > 1 and parts[1].isdigit() else None
    return None


def _address_space_headroom():
    """Bytes the address-space and data limits (RLIMIT_AS, RLIMIT_DATA) leave
    above what the process maps now; None where there is no such limit."""
    if resource is None:
        return None
    pages = _read_number(STATM)
    used = pages * os.sysconf("SC_PAGE_SIZE") if pages is not None else 0
    room = []
    for name in ("RLIMIT_AS", "RLIMIT_DATA"):
        soft = resource.getrlimit(getattr(resource, name))[0] if hasattr(resource, name) \
            else resource.RLIM_INFINITY
        if soft != resource.RLIM_INFINITY:
            room.append(max(0, soft - used))
    return min(room) if room else None


def _cgroup_headroom():
    """Bytes left under this process's cgroup (v2) memory limit; None if none."""
    limit = _read_number(os.path.join(CGROUP, "memory.max"))
    current = _read_number(os.path.join(CGROUP, "memory.current"))
    return None if limit is None or current is None else max(0, limit - current)


def available_memory():
    """Bytes this process can still allocate: the least of the system's
    available memory (MemAvailable), the headroom under its cgroup's memory
    limit and under its address-space limits (ulimit -v)."""
    found = [_read_number(MEMINFO, "MemAvailable"), _cgroup_headroom(),
             _address_space_headroom()]
    if found[0] is None and hasattr(os, "sysconf"):
        try:
            found[0] = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError):
            pass
    found = [n for n in found if n is not None]
    return min(found) if found else 2**63


def read_budget():
    """Bytes the arrays of one saved file may take once read: READ_BUDGET if
    set, else BUDGET_FRACTION of available_memory()."""
    if READ_BUDGET is not None:
        return int(READ_BUDGET)
    return int(available_memory() * BUDGET_FRACTION)


# -------------------------------------------------------------- plain files
def open_regular(path, follow_links=True):
    """Open ``path`` for reading in binary, refusing anything but a regular
    file without ever blocking (a FIFO is opened with O_NONBLOCK and refused
    after fstat); with ``follow_links`` False a symbolic link is refused too
    (O_NOFOLLOW: what tickprop checks as its own is never a link). Returns
    (file object, size in bytes)."""
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
    if stat.S_ISREG(mode):
        return
    what = next((name for test, name in _KINDS if test(mode)), "not a regular file")
    raise ReadError(f"{shown(path)}: is {what}, not a file tickprop wrote; tickprop reads "
                    "only regular files")


def read_head(path, size, follow_links=True):
    """The first ``size`` bytes of the regular file ``path`` (all of it if
    shorter); refused as open_regular refuses, a read error a ReadError."""
    f, _ = open_regular(path, follow_links)
    with f:
        try:
            return f.read(size)
        except OSError as exc:
            raise ReadError(f"{shown(path)}: cannot read ({exc.strerror or exc})") from None


def _read_bytes(path, limit, follow_links=True):
    """The bytes of regular file ``path``, refused past ``limit`` bytes; read
    at the file's own size (a buffer of ``limit`` bytes could be a
    MemoryError under an address-space limit)."""
    f, size = open_regular(path, follow_links)
    with f:
        if size > limit:
            raise ReadError(f"{shown(path)}: {_format_bytes(size)}, larger than any file "
                            f"tickprop writes there ({_format_bytes(limit)} at most)")
        try:
            data = f.read(size + 1)
        except OSError as exc:
            raise ReadError(f"{shown(path)}: cannot read ({exc.strerror or exc})") from None
    if len(data) > limit:
        raise ReadError(f"{shown(path)}: larger than {_format_bytes(limit)}; not a file "
                        "tickprop wrote")
    return data


def _depth(value):
    """Nesting depth of a parsed JSON value (lists and objects), iteratively."""
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
    """The parsed content of the saved JSON file ``path``, whose top level
    must be of type ``top``. Missing, not a regular file (a link too, without
    ``follow_links``), over ``limit`` bytes, not UTF-8 JSON, nested deeper
    than MAX_JSON_DEPTH or too big for memory is one ReadError naming the
    file."""
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
    """The decompressed bytes of the gzip file ``path``, inflated in steps so
    that a small file that would inflate past ``limit`` bytes is one
    ReadError, not a MemoryError."""
    f, _ = open_regular(path)
    name = shown(path)
    parts, total = [], 0
    try:
        with f, gzip.GzipFile(fileobj=f) as z:
            while True:
                part = z.read(2**20)
                if not part:
                    break
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


# ---------------------------------------------------------------- archives
NUMBERS = "biuf"            # dtype kinds of numeric arrays (bool, ints, floats)
REAL = "iuf"                # dtype kinds of arrays of values (not flags)
TEXT = "US"                 # dtype kinds of text arrays


def _member_header(zf, info, name):
    """(key, shape, dtype) of one .npy member, from its header alone; a header
    that is not numpy's, or that disagrees with the member's declared size,
    is damage."""
    if not info.filename.endswith(".npy"):
        raise ReadError(f"{name}: damaged or not a tickprop result (member "
                        f"{info.filename!r} is not an array)")
    key = info.filename[:-len(".npy")]
    try:
        with zf.open(info) as fp:
            version = npy.read_magic(fp)
            if version == (1, 0):
                shape, _, dtype = npy.read_array_header_1_0(fp, max_header_size=MAX_HEADER_BYTES)
            elif version == (2, 0):
                shape, _, dtype = npy.read_array_header_2_0(fp, max_header_size=MAX_HEADER_BYTES)
            else:
                raise ValueError(f"unsupported .npy version {version}")
            header = fp.tell()
    except (ValueError, EOFError, OSError, zipfile.BadZipFile, zlib.error, RuntimeError,
            SyntaxError, TypeError, RecursionError, MemoryError) as exc:
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
    return key, tuple(int(n) for n in shape), dtype


def read_npz(path, required=(), text=(), budget=None):
    """{name: array} of the saved .npz archive ``path``. Before anything is
    inflated every member's header is checked against its declared size and
    the total against ``budget`` (default read_budget()); arrays other than
    those named in ``text`` must hold numbers (no pickled objects, ever); the
    names in ``required`` must be there. Anything wrong is one ReadError
    naming the file."""
    f, size = open_regular(path)
    name = shown(path)
    with f:
        if size == 0:
            raise ReadError(f"{name}: damaged (the file is empty); re-run the scene to write it "
                            "again")
        try:
            zf = zipfile.ZipFile(f)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, zlib.error,
                RuntimeError) as exc:       # an unknown compression or an encrypted member
            raise ReadError(f"{name}: damaged (not an .npz archive: {exc}); re-run the scene "
                            "to write it again") from None
        with zf:
            return _read_members(zf, name, required, text,
                                 read_budget() if budget is None else int(budget))


def _budget_words(budget):
    """How an error names the budget of a read: where it comes from."""
    if READ_BUDGET is None:
        return (f"the {_format_bytes(budget)} this process may use now (a fraction "
                f"{BUDGET_FRACTION:g} of the memory available)")
    return f"the read budget of {_format_bytes(budget)}"


def _read_members(zf, name, required, text, budget):
    infos = zf.infolist()
    if len(infos) > MAX_MEMBERS:
        raise ReadError(f"{name}: damaged ({len(infos)} members; a tickprop result has a few "
                        "dozen)")
    headers = {}
    for info in infos:
        key, shape, dtype = _member_header(zf, info, name)
        if key in headers:
            raise ReadError(f"{name}: damaged (array {key!r} stored twice)")
        if dtype.kind in TEXT and key not in text:
            raise ReadError(f"{name}: damaged (array {key!r} holds text ({dtype}); expected "
                            "numbers)")
        headers[key] = (info, shape, dtype)
    missing = [k for k in required if k not in headers]
    if missing:
        raise ReadError(f"{name}: damaged or not a tickprop result (no {', '.join(missing)})")
    total = sum(info.file_size for info, _, _ in headers.values())
    if total > budget:
        raise ReadError(f"{name}: its arrays take {_format_bytes(total)} once read, more than "
                        f"{_budget_words(budget)}; free memory or read it on a larger "
                        "machine")
    arrays = {}
    for key, (info, shape, dtype) in headers.items():
        try:
            with zf.open(info) as fp:
                arrays[key] = npy.read_array(fp, allow_pickle=False,
                                             max_header_size=MAX_HEADER_BYTES)
        except MemoryError:
            raise ReadError(f"{name}: too large to read in the memory available (array "
                            f"{key!r}, {_format_bytes(info.file_size)})") from None
        except (ValueError, EOFError, OSError, zipfile.BadZipFile, zlib.error,
                RuntimeError) as exc:      # RuntimeError: also an unknown compression
            raise ReadError(f"{name}: damaged (array {key!r}: {str(exc)[:160]})") from None
    return arrays


# ------------------------------------------------------------- the layouts
def _damaged(name, what):
    return ReadError(f"{name}: damaged ({what}); re-run the scene to write it again")


def _want_shape(name, arrays, key, shape):
    """Refuse ``arrays[key]`` unless its shape is ``shape`` (None: any length)."""
    got = arrays[key].shape
    if len(got) != len(shape) or any(w is not None and g != w for g, w in zip(got, shape)):
        want = "(" + ", ".join("n" if w is None else str(w) for w in shape) + \
               ("," if len(shape) == 1 else "") + ")"
        raise _damaged(name, f"array '{key}' has shape {got}, expected {want}")


def _want_kind(name, arrays, key, kinds, what):
    if arrays[key].dtype.kind not in kinds:
        raise _damaged(name, f"array '{key}' holds {arrays[key].dtype}, expected {what}")


def _want_range(name, arrays, key, low, high=None):
    """Refuse integer values of ``arrays[key]`` outside low..high."""
    a = arrays[key]
    if a.size and (int(a.min()) < low or (high is not None and int(a.max()) > high)):
        span = f"outside {low}..{high}" if high is not None else f"below {low}"
        raise _damaged(name, f"array '{key}' holds values {span}")


def _want_increasing(name, arrays, key):
    a = arrays[key]
    if a.size > 1 and not bool(np.all(np.diff(a) > 0)):
        raise _damaged(name, f"array '{key}' is not strictly increasing")


# trace.npz: what the Recorder writes (simulator.probes describes every array).
TAG_KEYS = ("input", "supervision", "output", "sigma_lo", "sigma_hi", "pair")
METRIC_KEYS = ("mismatch_cos", "mismatch_rel", "grad_norm", "ref_norm")
TRACE_TEXT = ("vertex_names", "vertex_kinds", "schema")
TRACE_INTEGERS = ("tick", "stream_frame", "sizes", "state_tick", "state_layers",
                  "vertex_levels", "vertex_bwd", "vertex_edges", "source_tick",
                  "source_stream_frame")
VERTEX_KEYS = ("vertex_names", "vertex_kinds", "vertex_levels", "vertex_bwd", "vertex_sync")


def trace_shapes(arrays):
    """Expected shape of every per-row array a trace must (or may) hold, from
    its own ``sizes`` and ``tick``; the metrics are optional (absent when
    record.metrics = false), as are the graph tags' newest frames."""
    L, T = len(arrays["sizes"]) - 1, len(arrays["tick"])
    want = {"sizes": (L + 1,), "tick": (T,), "stream_frame": (T,),
            "x_norm": (T, L + 1), "delta_norm": (T, L + 1)}
    for key in TAG_KEYS:
        want["tag_" + key] = (T, L + 1)
    for key in METRIC_KEYS:
        want[key] = (T, L)
    for key in ("input", "supervision", "output", "pair"):
        want[f"tag_{key}_hi"] = (T, L + 1)
    return want


REQUIRED_ARRAYS = ("sizes", "tick", "stream_frame", "x_norm", "delta_norm") + tuple(
    "tag_" + k for k in TAG_KEYS)
OPTIONAL_ROW_ARRAYS = METRIC_KEYS + tuple(f"tag_{k}_hi" for k in
                                          ("input", "supervision", "output", "pair"))


def check_trace(name, arrays):
    """Refuse a trace (trace.npz's arrays, named ``name`` in errors) that the
    renderers and the viewer could not draw: a missing array, a wrong shape
    or dtype (numbers where numbers are expected, integers for ticks, tags
    and indices), no recorded tick, ticks not increasing, a layer width below
    1, state arrays that do not match their layers, graph vertices whose
    levels or edges point outside the graph."""
    missing = [k for k in REQUIRED_ARRAYS if k not in arrays]
    if missing:
        raise _damaged(name, f"missing arrays {', '.join(missing)}")
    for key in arrays:
        if key in TRACE_INTEGERS or key.startswith("tag_"):      # -1 marks "none"
            _want_kind(name, arrays, key, "i", "signed integers")
        elif key == "vertex_sync":
            _want_kind(name, arrays, key, "biu", "true/false flags")
        elif key not in TRACE_TEXT:
            _want_kind(name, arrays, key, REAL, "numbers")
    sizes, tick = arrays["sizes"], arrays["tick"]
    if sizes.ndim != 1 or len(sizes) < 2 or tick.ndim != 1:
        raise _damaged(name, f"'sizes' must list at least two widths and 'tick' be 1-D, got "
                             f"shapes {sizes.shape} and {tick.shape}")
    if len(tick) == 0:
        raise _damaged(name, "no recorded tick: 'tick' is empty")
    _want_range(name, arrays, "sizes", 1)
    _want_range(name, arrays, "tick", 0)
    _want_increasing(name, arrays, "tick")
    for key, shape in trace_shapes(arrays).items():
        if key in arrays:
            _want_shape(name, arrays, key, shape)
    for key in arrays:
        if key.startswith("tag_"):
            _want_range(name, arrays, key, -1)
    _check_states(name, arrays)
    _check_vertices(name, arrays)
    for key in ("source_tick", "source_stream_frame"):
        if key in arrays:
            _want_shape(name, arrays, key, (None,))
    if ("source_tick" in arrays) != ("source_stream_frame" in arrays) or (
            "source_tick" in arrays and
            arrays["source_tick"].shape != arrays["source_stream_frame"].shape):
        raise _damaged(name, "'source_tick' and 'source_stream_frame' must come together, "
                             "of one length")


def _check_states(name, arrays):
    """The recorded neuron states: (rows, layers, batch, width) of the layers
    in ``state_layers`` at the ticks in ``state_tick``, at least one sample
    and as wide as the widest recorded layer."""
    keys = ("state_x", "state_delta", "state_tick", "state_layers")
    present = [k for k in keys if k in arrays]
    if not present:
        return
    if len(present) < len(keys):
        absent = [k for k in keys if k not in arrays]
        raise _damaged(name, f"{present[0]} without {', '.join(absent)}")
    _want_shape(name, arrays, "state_tick", (None,))
    _want_shape(name, arrays, "state_layers", (None,))
    L = len(arrays["sizes"]) - 1
    _want_range(name, arrays, "state_layers", 0, L)
    _want_increasing(name, arrays, "state_tick")
    S, nl = len(arrays["state_tick"]), len(arrays["state_layers"])
    for key in ("state_x", "state_delta"):
        shape = arrays[key].shape
        if len(shape) != 4 or shape[:2] != (S, nl) or shape[2] < 1:
            raise _damaged(name, f"array '{key}' has shape {shape}, expected ({S}, {nl}, "
                                 "batch, width)")
    if arrays["state_x"].shape != arrays["state_delta"].shape:
        raise _damaged(name, f"'state_x' {arrays['state_x'].shape} and 'state_delta' "
                             f"{arrays['state_delta'].shape} differ")
    layers = arrays["state_layers"].astype(np.int64)
    widest = int(arrays["sizes"][layers].max()) if nl else 0
    if arrays["state_x"].shape[3] < widest:
        raise _damaged(name, f"array 'state_x' holds {arrays['state_x'].shape[3]} neurons per "
                             f"layer, fewer than its widest recorded layer ({widest})")


def _check_vertices(name, arrays):
    """A graph trace's vertices: names, levels and synchronization flags for
    every vertex, levels and distances to the output in 0..L, edges (parent,
    child) between vertices."""
    given = [k for k in VERTEX_KEYS + ("vertex_edges",) if k in arrays]
    if not given:
        return
    for key in ("vertex_names", "vertex_levels", "vertex_sync"):
        if key not in arrays:
            raise _damaged(name, f"{given[0]} without {key}")
    n = len(arrays["sizes"])
    for key in VERTEX_KEYS:
        if key in arrays:
            _want_shape(name, arrays, key, (n,))
    if arrays["vertex_names"].dtype.kind not in TEXT:
        raise _damaged(name, f"array 'vertex_names' holds {arrays['vertex_names'].dtype}, "
                             "expected names")
    for key in ("vertex_levels", "vertex_bwd"):
        if key in arrays:
            _want_range(name, arrays, key, 0, n - 1)
    if "vertex_edges" in arrays:
        edges = arrays["vertex_edges"]
        if edges.ndim != 2 or edges.shape[1] != 2:
            raise _damaged(name, f"array 'vertex_edges' has shape {edges.shape}, expected "
                                 "(edges, 2)")
        _want_range(name, arrays, "vertex_edges", 0, n - 1)


def read_trace(folder):
    """The checked arrays of ``folder``/trace.npz (check_trace), its stored
    ``schema`` entry left out."""
    path = os.path.join(os.fspath(folder), "trace.npz")
    arrays = read_npz(path, text=TRACE_TEXT)
    arrays.pop("schema", None)
    check_trace(shown(path), arrays)
    return arrays


def read_run_meta(folder):
    """run.json of a run folder as a dict, checked where readers index it
    (``name``, ``kind`` and ``scene.description`` text, ``scene`` and its
    sections tables, ``pictures`` a list of file names). A folder that does
    not exist, has no run.json, or a damaged one is one ReadError."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise ReadError(f"{folder}: no such run folder")
    path = os.path.join(folder, "run.json")
    if not os.path.lexists(path):
        raise ReadError(f"{folder}: not a tickprop run folder (no run.json in it)")
    meta = read_json(path, dict)
    name = shown(path)
    for key in ("name", "kind"):
        if key in meta and not isinstance(meta[key], str):
            raise _damaged(name, f"'{key}' is {type(meta[key]).__name__}, expected text")
    scene = meta.get("scene", {})
    if not isinstance(scene, dict):
        raise _damaged(name, f"'scene' is {type(scene).__name__}, expected a table")
    for key, value in scene.items():
        if key == "description" and not isinstance(value, str):
            raise _damaged(name, f"'scene.description' is {type(value).__name__}, expected text")
        if key not in ("description", "kind") and not isinstance(value, dict):
            raise _damaged(name, f"'scene.{key}' is {type(value).__name__}, expected a table")
    if "kind" in scene and not isinstance(scene["kind"], str):
        raise _damaged(name, f"'scene.kind' is {type(scene['kind']).__name__}, expected text")
    pictures = meta.get("pictures", [])
    if not isinstance(pictures, list) or not all(isinstance(p, str) for p in pictures):
        raise _damaged(name, "'pictures' must be a list of file names")
    return meta


def read_relaxation(folder):
    """relaxation.npz of an ar_converge run: errors, predicted, changes (and
    norms) of one shape (η_x values, relaxation ticks, layers ≥ 2), eta_x one
    value per η_x; ticks and layers, when there, one per tick and layer."""
    path = os.path.join(os.fspath(folder), "relaxation.npz")
    arrays = read_npz(path, ("errors", "predicted", "changes", "eta_x"), text=("variant",))
    name = shown(path)
    for key in ("errors", "predicted", "changes", "norms", "eta_x"):
        if key in arrays:
            _want_kind(name, arrays, key, REAL, "numbers")
    eta = arrays["eta_x"]
    _want_shape(name, arrays, "eta_x", (None,))
    errors = arrays["errors"]
    if errors.ndim != 3 or errors.shape[0] != len(eta) or len(eta) < 1 or errors.shape[1] < 1 \
            or errors.shape[2] < 2:
        raise _damaged(name, f"array 'errors' has shape {errors.shape}, expected "
                             f"({len(eta)} η_x values, ticks ≥ 1, layers ≥ 2)")
    for key in ("predicted", "changes", "norms"):
        if key in arrays:
            _want_shape(name, arrays, key, errors.shape)
    for key, n in (("ticks", errors.shape[1]), ("layers", errors.shape[2])):
        if key in arrays:
            _want_shape(name, arrays, key, (n,))
            _want_kind(name, arrays, key, "iu", "integers")
    if "variant" in arrays:
        _want_shape(name, arrays, "variant", ())
    return arrays


def read_training(folder):
    """training.npz of an ar_train run: ``steps`` (at least one evaluation)
    and, per model (backprop first), ``test_<name>`` and ``train_<name>``
    accuracies (seeds × evaluations)."""
    path = os.path.join(os.fspath(folder), "training.npz")
    arrays = read_npz(path, ("steps", "test_backprop", "train_backprop"))
    name = shown(path)
    for key in arrays:
        _want_kind(name, arrays, key, REAL, "numbers")
    _want_shape(name, arrays, "steps", (None,))
    steps = len(arrays["steps"])
    if steps < 1:
        raise _damaged(name, "no evaluation: 'steps' is empty")
    for key in arrays:
        if key.startswith(("test_", "train_")):
            other = ("train_" + key[5:]) if key.startswith("test_") else "test_" + key[6:]
            if other not in arrays:
                raise _damaged(name, f"'{key}' without '{other}'")
            a = arrays[key]
            if a.ndim not in (1, 2) or a.shape[-1] != steps or a.size == 0:
                raise _damaged(name, f"array '{key}' has shape {a.shape}, expected (seeds, "
                                     f"{steps})")
    return arrays


def read_wave(folder):
    """wave.npz of a pc_wave run: ‖ε‖ ``by_level`` (ticks, levels) and
    ``by_vertex`` (ticks, vertices), ``levels`` of every vertex in 0..levels-1."""
    path = os.path.join(os.fspath(folder), "wave.npz")
    arrays = read_npz(path, ("by_level", "by_vertex", "levels"))
    name = shown(path)
    for key in ("by_level", "by_vertex"):
        _want_kind(name, arrays, key, REAL, "numbers")
    by_level = arrays["by_level"]
    if by_level.ndim != 2 or 0 in by_level.shape:
        raise _damaged(name, f"array 'by_level' has shape {by_level.shape}, expected (ticks ≥ "
                             "1, levels ≥ 1)")
    T, n = by_level.shape
    _want_shape(name, arrays, "levels", (None,))
    _want_kind(name, arrays, "levels", "iu", "integers")
    _want_range(name, arrays, "levels", 0, n - 1)
    _want_shape(name, arrays, "by_vertex", (T, len(arrays["levels"])))
    return arrays


LOCKING_ARRAYS = ("backprop_forward", "backprop_backward", "pipelined_forward",
                  "pipelined_backward")


def read_locking(folder):
    """locking.npz of a locking run: the four occupancy tables (layers × ticks)."""
    path = os.path.join(os.fspath(folder), "locking.npz")
    arrays = read_npz(path, LOCKING_ARRAYS)
    for key in LOCKING_ARRAYS:
        _want_shape(shown(path), arrays, key, (None, None))
    return arrays


def read_results(folder):
    """results.json of a train run: ``curves`` {rule: curve}, each curve's
    ``tick``, ``accuracy`` and ``loss`` lists of numbers (null for none) of
    one length (at least one evaluation), ``angles`` (and ``grad_angles``)
    one list of numbers per evaluation, ``diverged`` true or false."""
    path = os.path.join(os.fspath(folder), "results.json")
    results = read_json(path, dict)
    name = shown(path)
    curves = results.get("curves")
    if not isinstance(curves, dict) or not curves:
        raise _damaged(name, "no curves")
    for rule, c in curves.items():
        _check_curve(name, rule, c)
    return results


def _numbers(value):
    """``value`` as a float array if it is a list of numbers (null: NaN), else None."""
    if not isinstance(value, list) or not all(
            v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))
            for v in value):
        return None
    return np.array([np.nan if v is None else v for v in value], dtype=float)


def _check_curve(name, rule, c):
    if not isinstance(c, dict):
        raise _damaged(name, f"curve {rule!r} is not a table")
    n = None
    for key in ("tick", "accuracy", "loss"):
        values = _numbers(c.get(key))
        if values is None or (n is not None and len(values) != n) or not len(values):
            raise _damaged(name, f"curve {rule!r}: '{key}' must be a non-empty list of numbers "
                                 "as long as 'tick'")
        n = len(values)
    for key in ("angles", "grad_angles"):
        if key not in c and key == "grad_angles":
            continue
        rows = c.get(key)
        if not isinstance(rows, list) or len(rows) != n or any(_numbers(r) is None
                                                                 for r in rows):
            raise _damaged(name, f"curve {rule!r}: '{key}' must hold one list of numbers per "
                                 "evaluation")
    if not isinstance(c.get("diverged"), bool):
        raise _damaged(name, f"curve {rule!r}: 'diverged' must be true or false")
    if not isinstance(c.get("error", ""), str):
        raise _damaged(name, f"curve {rule!r}: 'error' must be text")


__all__ = ["ReadError", "read_json", "read_head", "read_npz", "read_gzip", "read_trace",
           "check_trace", "read_run_meta", "read_relaxation", "read_training", "read_wave",
           "read_locking", "read_results", "open_regular", "available_memory", "read_budget", "shown",
           "TAG_KEYS", "METRIC_KEYS", "REQUIRED_ARRAYS", "trace_shapes"]
