"""A numpy-only reader for the common NRRD files: attached header, raw or gzip, scalar pixels.

SimpleITK reads a gzip NRRD CT volume in ~80 ms, most of it inflating the payload, and then
radlens wraps its pixels in SimpleITK images it hardly needs. For the NRRD files most tools write
(a ``NRRD000x`` header followed by the data in the same file, ``raw`` or ``gzip`` encoding, one
scalar per voxel, ``space directions`` and ``space origin`` in a named 3D space), this module
parses the header with plain Python, inflates the payload straight into the buffer a numpy array
views (libdeflate through the ``deflate`` package when installed: ~1.7x faster than zlib and
SimpleITK's own inflate on CT volumes; else the standard library's zlib) and derives spacing,
origin and direction **exactly as SimpleITK reports them** (ITK's NRRD reader: the norm of each
space direction is the spacing, the unit vectors the direction columns, RAS / LAS headers flipped
to ITK's LPS). ``tests/test_nrrd_reader.py`` compares both readers field by field and voxel by
voxel.

Anything outside that pattern (detached headers, ``data file``, line/byte skips, other encodings,
vector or RGB kinds, axes without a space direction, singleton axes SimpleITK would squeeze,
spaces other than LPS/RAS/LAS or a plain ``space dimension``) is not read: :func:`read_nrrd`
returns ``None`` with the reason in :func:`why_not`, and the caller reads the file with SimpleITK.
"""
from __future__ import annotations

import ctypes
import gzip
import math
import os
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from radlens.io.masks import Grid

try:  # libdeflate: the fastest whole-buffer inflate with a wheel (optional)
    import deflate as _deflate
except ImportError:  # pragma: no cover - depends on the environment
    _deflate = None

#: NRRD ``type`` names (all spellings of the format spec) -> numpy dtype (ITK keeps each as is)
_TYPES = {}
for _names, _dt in (
        (("signed char", "int8", "int8_t"), "i1"),
        (("uchar", "unsigned char", "uint8", "uint8_t"), "u1"),
        (("short", "short int", "signed short", "signed short int", "int16", "int16_t"), "i2"),
        (("ushort", "unsigned short", "unsigned short int", "uint16", "uint16_t"), "u2"),
        (("int", "signed int", "int32", "int32_t"), "i4"),
        (("uint", "unsigned int", "uint32", "uint32_t"), "u4"),
        (("longlong", "long long", "long long int", "signed long long", "signed long long int", "int64",
          "int64_t"), "i8"),
        (("ulonglong", "unsigned long long", "unsigned long long int", "uint64", "uint64_t"), "u8"),
        (("float",), "f4"), (("double",), "f8")):
    for _n in _names:
        _TYPES[_n] = _dt
#: named 3D spaces ITK reads, and the sign flips that take them to LPS
_SPACES = {"left-posterior-superior": (1, 1, 1), "lps": (1, 1, 1),
           "right-anterior-superior": (-1, -1, 1), "ras": (-1, -1, 1),
           "left-anterior-superior": (1, -1, 1), "las": (1, -1, 1)}
_MAX_HEADER = 1 << 16
_SPATIAL_KINDS = ("domain", "space", "???", "none")


@dataclass(frozen=True)
class Volume:
    """A scalar image read from an NRRD file.

    Attributes
    ----------
    array : ndarray, shape (H, W) or (D, H, W)
        Pixels in numpy order (SimpleITK's size reversed), stored dtype in native byte order
        (read-only when it views the inflated buffer).
    grid : Grid
        Size, spacing, origin and direction as ``SimpleITK.ReadImage`` gives them.
    path : pathlib.Path
    inflate : str
        How the payload was decoded: ``"libdeflate"``, ``"zlib"`` or ``"raw"``.
    """

    array: np.ndarray
    grid: Grid
    path: Path
    inflate: str


class _NotHandled(Exception):
    pass


_WHY: dict[str, str] = {}


def why_not(path) -> str | None:
    """Why the last :func:`read_nrrd` of ``path`` returned None (None if it did not)."""
    return _WHY.get(str(path))


def is_nrrd(path) -> bool:
    return str(path).lower().endswith(".nrrd")


def read_nrrd(path, *, reuse: str | None = None) -> Volume | None:
    """Read an NRRD file with numpy, or return None when it is not a kind this reader handles
    (:func:`why_not` says why; read it with SimpleITK then).

    Parameters
    ----------
    path : path-like
    reuse : str or None
        None: the array owns fresh memory. A slot name (e.g. ``"image"``): the file and the
        inflated pixels go to this thread's buffers of that slot, reused by the next call with the
        same slot; the array is then **valid only until that call** (radiomics extraction reads
        case after case: no fresh 30-100 MB per CT case to page in and give back, which costs
        about as much as the inflating itself). See :func:`release_buffers`.

    Raises nothing for a file it cannot handle, including unreadable or damaged ones: SimpleITK
    then reads it and reports the problem in its own words.
    """
    path = Path(path)
    _WHY.pop(str(path), None)
    try:
        return _read(path, reuse)
    except _NotHandled as exc:
        _WHY[str(path)] = str(exc)
    except (OSError, ValueError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        _WHY[str(path)] = f"{type(exc).__name__}: {exc}"
    return None


def parse_header(head: bytes) -> tuple[dict[str, str], int]:
    """(fields, offset of the data) of an attached NRRD header; field names lower-cased."""
    if not head.startswith(b"NRRD000"):
        raise _NotHandled("not an NRRD file (no NRRD000x magic)")
    end = head.find(b"\n\n")
    if end < 0:
        raise _NotHandled("header end (blank line) not found in the first 64 KiB")
    fields: dict[str, str] = {}
    for line in head[:end].decode("latin-1").split("\n")[1:]:
        if not line or line.startswith("#"):
            continue
        kv, fv = line.find(":="), line.find(": ")
        if kv >= 0 and (fv < 0 or kv < fv):
            continue  # key:=value pairs (metadata only)
        key, sep, val = line.partition(": ")
        if not sep:
            raise _NotHandled(f"header line {line[:40]!r} is not 'field: value'")
        fields[key.strip().lower()] = val.strip()
    return fields, end + 2


def _vector(txt: str) -> list[float]:
    txt = txt.strip()
    if not (txt.startswith("(") and txt.endswith(")")):
        raise _NotHandled(f"vector {txt[:40]!r} is not '(x,y,z)'")
    return [float(v) for v in txt[1:-1].split(",")]


def _geometry(f: dict[str, str], dim: int, sizes: list[int]) -> Grid:
    """SimpleITK's spacing / origin / direction from the header fields (ITK NrrdImageIO rules)."""
    if "space" in f:
        flip = _SPACES.get(f["space"].strip().lower())
        if flip is None:
            raise _NotHandled(f"space {f['space']!r} (this reader takes LPS, RAS and LAS)")
        if dim != 3:
            raise _NotHandled(f"a {dim}D image in the 3D space {f['space']!r}")
    elif "space dimension" in f:
        if int(f["space dimension"]) != dim:
            raise _NotHandled(f"space dimension {f['space dimension']} of a {dim}D image")
        flip = (1,) * dim
    else:
        raise _NotHandled("no 'space' / 'space dimension' field (spacings-only header)")
    if "space directions" not in f:
        raise _NotHandled("no 'space directions' field")
    dirs_txt = f["space directions"].split()
    if len(dirs_txt) != dim or any(d.lower() == "none" for d in dirs_txt):
        raise _NotHandled(f"space directions {f['space directions']!r}: an axis without a direction")
    cols = []
    for t in dirs_txt:
        v = _vector(t)
        if len(v) != dim:
            raise _NotHandled(f"space direction {t!r} has {len(v)} components for a {dim}D space")
        cols.append([s * x for s, x in zip(flip, v)])
    spacing = []
    for c in cols:  # ITK: spacing = the vector's norm, the direction column = the vector * (1 / norm)
        n = math.sqrt(sum(x * x for x in c))
        if not n > 0:
            raise _NotHandled("a zero-length space direction")
        spacing.append(n)
    inv = [1.0 / n for n in spacing]  # teem's nrrdSpaceVecScale(dir, 1/norm, vec), as ITK calls it
    direction = tuple(cols[c][r] * inv[c] for r in range(dim) for c in range(dim))
    if "space origin" in f:
        o = _vector(f["space origin"])
        if len(o) != dim:
            raise _NotHandled(f"space origin {f['space origin']!r} for a {dim}D space")
        origin = tuple(float(s * x) for s, x in zip(flip, o))
    else:
        origin = (0.0,) * dim
    return Grid(tuple(sizes), tuple(spacing), origin, direction)


def _read(path: Path, reuse: str | None = None) -> Volume:
    if not is_nrrd(path):
        raise _NotHandled("not a .nrrd file (detached .nhdr headers are read by SimpleITK)")
    with open(path, "rb") as fh:
        if reuse is None:
            data = memoryview(fh.read())
        else:
            # read into a reused buffer, never memory-mapped: mapping large files (>= 1 MB) saved a forked
            # worker ~4 ms on lung1 but cost --jobs 1 5-11 ms of inflate time (page faults on the
            # mapped pages) over the five real 3D cases (lead's A/B, 2026-11-29)
            size = os.fstat(fh.fileno()).st_size
            raw = buffer(f"{reuse}/file", size)
            data = memoryview(raw)[:fh.readinto(memoryview(raw))]
    f, off = parse_header(bytes(data[:_MAX_HEADER]))
    for key in ("data file", "datafile"):
        if key in f:
            raise _NotHandled("detached data ('data file')")
    for key in ("line skip", "lineskip", "byte skip", "byteskip"):
        if key in f and f[key].strip() != "0":
            raise _NotHandled(f"'{key}: {f[key]}'")
    dim = int(f.get("dimension", "0"))
    sizes = [int(s) for s in f.get("sizes", "").split()]
    if dim not in (2, 3) or len(sizes) != dim or min(sizes) < 1:
        raise _NotHandled(f"dimension {dim} with sizes {f.get('sizes')!r} (this reader takes 2D and 3D)")
    if dim == 3 and sizes[2] == 1:
        raise _NotHandled("a singleton third axis (SimpleITK's path squeezes it)")
    kinds = f.get("kinds", "").lower().split()
    if kinds and (len(kinds) != dim or any(k not in _SPATIAL_KINDS for k in kinds)):
        raise _NotHandled(f"kinds {f.get('kinds')!r} (vector or colour pixels)")
    tname = " ".join(f.get("type", "").lower().split())
    if tname not in _TYPES:
        raise _NotHandled(f"type {f.get('type')!r}")
    dtype = np.dtype(_TYPES[tname])
    if dtype.itemsize > 1:
        endian = f.get("endian", "").strip().lower()
        if endian not in ("little", "big"):
            raise _NotHandled(f"endian {f.get('endian')!r}")
        dtype = dtype.newbyteorder("<" if endian == "little" else ">")
    grid = _geometry(f, dim, sizes)
    count = math.prod(sizes)
    nbytes = count * dtype.itemsize
    enc = f.get("encoding", "").strip().lower()
    payload = data[off:]
    if enc == "raw":
        if len(payload) < nbytes:
            raise _NotHandled(f"raw payload has {len(payload)} bytes, {nbytes} expected")
        buf, how = payload[:nbytes], "raw"
        if reuse is None:
            buf = bytes(buf)  # the array must not keep the whole file alive through a view
    elif enc in ("gzip", "gz"):
        out = buffer(reuse, nbytes) if reuse is not None else None
        buf, how = _inflate(payload, nbytes, out)
        if len(buf) != nbytes:
            raise _NotHandled(f"gzip payload inflates to {len(buf)} bytes, {nbytes} expected")
    else:
        raise _NotHandled(f"encoding {f.get('encoding')!r} (this reader takes raw and gzip)")
    arr = np.frombuffer(buf, dtype=dtype, count=count).reshape(sizes[::-1])
    if not dtype.isnative:
        arr = arr.astype(dtype.newbyteorder("="))
    return Volume(arr, grid, path, how)


def _inflate(payload: memoryview, nbytes: int, out: np.ndarray | None = None):
    """(inflated bytes, how) of a gzip payload: libdeflate when available and the stream is one
    gzip member of the expected size (into ``out`` when given), zlib otherwise (e.g. concatenated
    members, > 4 GiB)."""
    if nbytes < (1 << 32):
        lib = _libdeflate()
        if lib is not None:
            dec = _decompressor(lib)
            dst = out if out is not None else np.empty(nbytes, np.uint8)
            src = np.frombuffer(payload, np.uint8)
            actual = ctypes.c_size_t(0)
            rc = lib.libdeflate_gzip_decompress(dec, src.ctypes.data, src.size, dst.ctypes.data, nbytes,
                                                ctypes.byref(actual))
            if rc == 0 and actual.value == nbytes:
                return dst, "libdeflate"
        elif _deflate is not None:
            try:
                got = _deflate.gzip_decompress(payload)
                if len(got) == nbytes:
                    return got, "libdeflate"
            except _deflate.DeflateError:
                pass
    d = zlib.decompressobj(31)
    got = d.decompress(payload)
    while d.eof and d.unused_data:  # further gzip members
        rest = d.unused_data
        d = zlib.decompressobj(31)
        got += d.decompress(rest)
    return got, "zlib"


# --------------------------------------------------------------------------- buffers and libdeflate
class _Local(threading.local):
    def __init__(self):
        self.buffers: dict[str, np.ndarray] = {}
        self.decompressor = None


_LOCAL = _Local()
#: buffers above this size are not kept between calls
MAX_KEPT_BYTES = 1 << 30
#: a buffer is allocated this many times larger than asked: only the pages written are ever backed
#: by memory, and the next, somewhat larger volume fits without a new allocation (in a forked
#: worker, whose buffers are all new: a forked worker reads pyradiomics' lung1 then lung2's mask)
HEADROOM = 1.5


def buffer(slot: str, nbytes: int) -> np.ndarray:
    """This thread's reusable uint8 buffer ``slot`` with ``nbytes`` bytes (grown when needed).
    Its content is overwritten by the next user of the slot."""
    b = _LOCAL.buffers.get(slot)
    if b is None or b.size < nbytes:
        want = max(nbytes, min(int(nbytes * HEADROOM), MAX_KEPT_BYTES))  # the headroom never stops it being kept
        b = np.empty(max(want, min(int(b.size * 1.25), MAX_KEPT_BYTES) if b is not None else 0), np.uint8)
        if b.size <= MAX_KEPT_BYTES:
            _LOCAL.buffers[slot] = b
    return b[:nbytes]


def drop_inherited_buffers() -> None:
    """In a forked process: give back to the kernel this process's copies of the parent's reading
    buffers (``madvise(MADV_DONTNEED)`` on their whole pages, then :func:`release_buffers`). The
    parent, still writing into them, then faults on each page without copying it (copy-on-write
    ends when only one process maps a page). Pages of a dropped buffer read as zeros here."""
    libc = _libc()
    for b in list(_LOCAL.buffers.values()):
        lo, hi = _page_range(b)
        if libc is not None and hi > lo:
            libc.madvise(ctypes.c_void_p(lo), ctypes.c_size_t(hi - lo), 4)  # MADV_DONTNEED
    release_buffers()


#: this thread's reading buffers while :func:`excluded_from_fork` is active (in the process that
#: excluded them): a process forked meanwhile has no mapping of their pages
_EXCLUDING: list = []
#: in a process forked inside :func:`excluded_from_fork`: the parent's buffers, unmapped here, kept
#: referenced so that they are never freed (glibc would hand their addresses out again)
_UNMAPPED: list = []


def _page_range(b: np.ndarray) -> tuple[int, int]:
    """``(lo, hi)``: the whole pages strictly inside buffer ``b`` (hi <= lo: none)."""
    import mmap

    page = mmap.PAGESIZE
    start = b.ctypes.data
    lo = (start + page - 1) // page * page + page
    hi = (start + b.nbytes) // page * page - page
    return lo, hi


class excluded_from_fork:
    """Context manager around a ``fork``: this thread's reading buffers are not inherited by the
    child (``madvise(MADV_DONTFORK)`` on their whole pages, undone on exit in this process). The
    parent then writes into them after the fork without copy-on-write faults (a CoW fault costs
    ~3 us per 4 KiB page here, ~10x a fresh page's), and the child has nothing to give back: a
    fork hook (``os.register_at_fork``) sets them aside there at once, never used nor freed
    (their pages are not mapped there)."""

    def __enter__(self):
        self.pid = os.getpid()
        self.done: list[tuple[int, int]] = []
        libc = _libc()
        if libc is None:
            return self
        for b in list(_LOCAL.buffers.values()):
            lo, hi = _page_range(b)
            if hi > lo and libc.madvise(ctypes.c_void_p(lo), ctypes.c_size_t(hi - lo), 10) == 0:  # MADV_DONTFORK
                self.done.append((lo, hi))
                _EXCLUDING.append(b)
        return self

    def __exit__(self, *exc):
        if os.getpid() == self.pid:  # not in a child that leaves the block (its hook did the rest)
            libc = _libc()
            for lo, hi in self.done:
                libc.madvise(ctypes.c_void_p(lo), ctypes.c_size_t(hi - lo), 11)  # MADV_DOFORK
            _EXCLUDING.clear()
        return False


def _after_fork_in_child() -> None:
    if _EXCLUDING:  # forked inside excluded_from_fork: those buffers' pages are not mapped here
        _UNMAPPED.extend(_EXCLUDING)
        gone = {id(b) for b in _EXCLUDING}
        for slot, b in list(_LOCAL.buffers.items()):
            if id(b) in gone:
                del _LOCAL.buffers[slot]
        _EXCLUDING.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


_LIBC: list = []


def _libc():
    """The C library through ctypes (``madvise``), or None (not Linux/glibc)."""
    if not _LIBC:
        try:  # the process's own symbols (the interpreter links the C library): no ldconfig lookup
            lib = ctypes.CDLL(None, use_errno=True)
            lib.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        except (OSError, AttributeError):
            lib = None
        _LIBC.append(lib)
    return _LIBC[0]


def release_buffers() -> None:
    """Free this thread's reusable buffers (arrays read with ``reuse=`` become invalid)."""
    _LOCAL.buffers.clear()


_LIB: list = []


def _libdeflate():
    """libdeflate's C API through ctypes (the ``deflate`` wheel's extension exports it), or None.
    Needed to inflate into a reused buffer: the package's Python API returns new bytes."""
    if not _LIB:
        lib = None
        if _deflate is not None:
            try:
                from deflate import _deflate as ext

                lib = ctypes.CDLL(ext.__file__)
                lib.libdeflate_alloc_decompressor.restype = ctypes.c_void_p
                lib.libdeflate_alloc_decompressor.argtypes = []
                lib.libdeflate_gzip_decompress.restype = ctypes.c_int
                lib.libdeflate_gzip_decompress.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t,
                                                           ctypes.c_void_p, ctypes.c_size_t,
                                                           ctypes.POINTER(ctypes.c_size_t)]
                lib.libdeflate_free_decompressor.argtypes = [ctypes.c_void_p]
            except (OSError, AttributeError, ImportError):
                lib = None
        _LIB.append(lib)
    return _LIB[0]


def _decompressor(lib):
    """This thread's libdeflate decompressor (not thread-safe: one per thread, kept)."""
    if _LOCAL.decompressor is None:
        _LOCAL.decompressor = lib.libdeflate_alloc_decompressor()
    return _LOCAL.decompressor
