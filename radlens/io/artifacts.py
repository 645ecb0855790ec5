"""Artifact store: atomic writes, content hashes, provenance sidecars, tables and embeddings.

Every artifact radlens writes carries ``case_id`` keys and provenance (command, config, versions,
input hashes) so any figure can be traced back and any stage re-run alone:

* parquet tables: provenance JSON in the schema metadata under ``b"radlens"``;
* npz archives: provenance JSON in a 0-d string array named ``__meta__``;
* anything else: a ``<file>.meta.json`` sidecar.

All writes go to a temporary file in the same folder and are renamed into place, so a killed run
never leaves a half-written artifact.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import platform
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from radlens.errors import InputError

log = logging.getLogger(__name__)

META_KEY = b"radlens"
NPZ_META = "__meta__"


# --------------------------------------------------------------------------- atomic writes
@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + "".join(path.suffixes), dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    return str(o)


# --------------------------------------------------------------------------- hashes
def file_hash(path: str | os.PathLike, algo: str = "sha256", chunk: int = 1 << 20) -> str:
    """Content hash of a file (or of every file in a folder, in sorted relative-path order)."""
    path = Path(path)
    h = hashlib.new(algo)
    if path.is_dir():
        for p in sorted(q for q in path.rglob("*") if q.is_file()):
            h.update(str(p.relative_to(path)).encode())
            h.update(file_hash(p, algo).encode())
        return h.hexdigest()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def bytes_hash(data: bytes, algo: str = "sha256") -> str:
    return hashlib.new(algo, data).hexdigest()


def obj_hash(obj: Any) -> str:
    """Stable hash of a JSON-able object (dict keys sorted)."""
    return bytes_hash(json.dumps(obj, sort_keys=True, default=_json_default).encode())


# --------------------------------------------------------------------------- provenance
VERSIONED = ("radlens", "numpy", "scipy", "pandas", "scikit-learn", "torch", "monai", "transformers",
             "pyradiomics-bhklab", "SimpleITK")


def versions() -> dict[str, str]:
    """Versions of Python and the libraries whose numbers matter for reproducibility."""
    return dict(_versions())


@functools.lru_cache(maxsize=1)
def _versions() -> tuple[tuple[str, str], ...]:
    out = {"python": sys.version.split()[0], "platform": platform_string()}
    # what importlib.metadata.version() returns, read from the wheel-standard folder names
    # (<name>-<version>.dist-info, first on sys.path wins) in one listing per path entry: its
    # metadata parsing costs ~25 ms per run; anything else still goes through it
    want = {_norm(n): n for n in VERSIONED}
    found: dict[str, str] = {}
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for d in names:
            if d.endswith(".dist-info") and d.count("-") == 2:  # <name>-<version>.dist-info
                name, version = d[: -len(".dist-info")].split("-")
                key = _norm(name)
                if key in want and want[key] not in found:
                    found[want[key]] = version
        if len(found) == len(want):
            break
    for name in VERSIONED:
        if name in found:
            out[name] = found[name]
            continue
        import importlib.metadata as md

        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return tuple(out.items())


def platform_string() -> str:
    """``platform.platform()``, without the ``uname -p`` subprocess it starts on Linux for the
    processor field (5-10 ms per run): that field is left out of the string whenever it is
    ``unknown`` or the machine name, which is what ``uname -p`` prints on common Linux systems."""
    if sys.platform.startswith("linux") and hasattr(platform, "_platform"):
        try:
            lib = os.confstr("CS_GNU_LIBC_VERSION").split(maxsplit=1)
        except (ValueError, OSError, AttributeError):
            lib = []
        if len(lib) == 2:
            u = os.uname()
            return platform._platform(u.sysname, u.release, u.machine, "", "with", lib[0] + lib[1])
    return platform.platform()


def _norm(name: str) -> str:
    import re

    return re.sub(r"[-_.]+", "-", name).lower()


def provenance(command: str, config: Mapping[str, Any] | None = None,
               inputs: Mapping[str, str | os.PathLike] | None = None, **extra: Any) -> dict[str, Any]:
    """Provenance record: command, config, library versions, and content hashes of the inputs."""
    rec: dict[str, Any] = {"command": command, "config": dict(config or {}), "versions": versions()}
    if inputs:
        rec["inputs"] = {k: {"path": str(v), "sha256": file_hash(v)} for k, v in inputs.items()
                         if v is not None and Path(v).exists()}
    rec.update(extra)
    return rec


# --------------------------------------------------------------------------- tables
def write_table(df, path: str | os.PathLike, meta: Mapping[str, Any] | None = None) -> Path:
    """Write a DataFrame atomically. ``.parquet`` carries ``meta`` in its schema metadata;
    ``.csv`` gets a ``.meta.json`` sidecar."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    if path.suffix == ".parquet":
        table = pa.Table.from_pandas(df, preserve_index=False)
        md = dict(table.schema.metadata or {})
        if meta is not None:
            md[META_KEY] = json.dumps(meta, default=_json_default).encode()
        table = table.replace_schema_metadata(md)
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp)
    elif path.suffix == ".csv":
        with atomic_path(path) as tmp:
            df.to_csv(tmp, index=False)
        if meta is not None:
            write_json(path.with_suffix(path.suffix + ".meta.json"), meta)
    else:
        raise InputError(f"table path {str(path)!r}: suffix {path.suffix!r} not supported; use .parquet or .csv")
    return path


def write_columns(columns: Mapping[str, Any], path: str | os.PathLike, meta: Mapping[str, Any] | None = None) -> Path:
    """Write a table given as columns without building a DataFrame (no pandas import): ``.parquet``
    through pyarrow, read back by :func:`read_table` as the DataFrame :func:`write_table` would
    have written. Columns: float arrays, or lists of str/None (string columns). ``.csv`` goes
    through :func:`write_table`."""
    path = Path(path)
    if path.suffix != ".parquet":
        import pandas as pd

        return write_table(pd.DataFrame({k: (pd.Series(v, dtype=object) if isinstance(v, list) else v)
                                         for k, v in columns.items()}), path, meta)
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_arrays([_arrow_strings(v) if isinstance(v, list) else _arrow_floats(v)
                                  for v in columns.values()], names=list(columns))
    if meta is not None:
        table = table.replace_schema_metadata({META_KEY: json.dumps(meta, default=_json_default).encode()})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return path


# pa.array() imports pandas (~0.15 s) to look for pandas objects: build arrays from buffers instead
def _validity(valid: np.ndarray):
    import pyarrow as pa

    return None if valid.all() else pa.py_buffer(np.packbits(valid, bitorder="little"))


def _arrow_floats(values):
    """float64 arrow array, NaN as null (as ``Table.from_pandas`` writes it)."""
    import pyarrow as pa

    v = np.ascontiguousarray(values, dtype=np.float64)
    return pa.Array.from_buffers(pa.float64(), len(v), [_validity(~np.isnan(v)), pa.py_buffer(v)])


def _arrow_strings(values: list):
    """utf-8 arrow array of str/None."""
    import pyarrow as pa

    enc = [b"" if s is None else str(s).encode("utf-8") for s in values]
    offsets = np.zeros(len(enc) + 1, np.int32)
    offsets[1:] = np.cumsum([len(e) for e in enc], dtype=np.int64)
    valid = np.array([s is not None for s in values], bool)
    return pa.Array.from_buffers(pa.string(), len(enc), [_validity(valid), pa.py_buffer(offsets),
                                                         pa.py_buffer(b"".join(enc))])


def read_table(path: str | os.PathLike):
    """Read a ``.parquet`` or ``.csv`` table written by radlens (or anyone)."""
    import pandas as pd

    path = Path(path)
    if not path.exists():
        raise InputError(f"table {str(path)!r} does not exist")
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix in (".csv", ".tsv"):
        return pd.read_csv(path, sep="\t" if path.suffix == ".tsv" else ",")
    raise InputError(f"table {str(path)!r}: suffix {path.suffix!r} not supported; use .parquet or .csv")


def read_table_meta(path: str | os.PathLike) -> dict[str, Any]:
    """Provenance stored with a table (empty dict when there is none)."""
    path = Path(path)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        md = pq.read_schema(path).metadata or {}
        return json.loads(md[META_KEY]) if META_KEY in md else {}
    side = path.with_suffix(path.suffix + ".meta.json")
    return read_json(side) if side.exists() else {}


# --------------------------------------------------------------------------- npz
def write_npz(path: str | os.PathLike, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any] | None = None,
              compress: bool = False) -> Path:
    """Write arrays (+ provenance JSON under ``__meta__``) to ``.npz`` atomically; never pickles."""
    payload = {k: np.asarray(v) for k, v in arrays.items()}
    for k, v in payload.items():
        if v.dtype == object:
            raise InputError(f"npz array {k!r} has dtype object; radlens never writes pickled arrays")
    if meta is not None:
        payload[NPZ_META] = np.array(json.dumps(meta, default=_json_default))
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            (np.savez_compressed if compress else np.savez)(f, **payload)
    return Path(path)


def read_npz(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read an npz written by :func:`write_npz` (``allow_pickle=False``); returns (arrays, meta)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"npz file {str(path)!r} does not exist")
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files if k != NPZ_META}
        meta = json.loads(str(z[NPZ_META])) if NPZ_META in z.files else {}
    return arrays, meta


# --------------------------------------------------------------------------- embeddings
POOLINGS = ("cls", "global", "mean", "roi")


@dataclass
class Embeddings:
    """Embeddings of a cohort under one encoder.

    Attributes
    ----------
    case_id : ndarray of str, shape (n,)
    pools : dict pooling name -> ndarray float32, shape (n, d)
        Keys among ``cls`` (ViT class token), ``global`` (CNN global average), ``mean`` (mean of
        patch tokens), ``roi`` (mean of ROI tokens), or ``external`` for a table from elsewhere.
    meta : dict
        Encoder spec, checkpoint hash, provenance.
    """

    case_id: np.ndarray
    pools: dict[str, np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def layers(self) -> list[str]:
        """Feature layers held, in embedding order.

        A multi-layer file (``radlens embed --layers``) names its arrays ``"{pooling}@{layer}"`` and
        lists the layers in ``meta["layers"]``; a single-layer file gives its one layer's name (the
        spec's ``layer``), or ``"default"`` when the encoder's own output was embedded.
        """
        lay = self.meta.get("layers")
        if lay and (len(lay) > 1 or any("@" in k for k in self.pools)):
            return [str(v) for v in lay]
        if any("@" in k for k in self.pools):  # written by hand without meta: the keys say it
            return list(dict.fromkeys(k.partition("@")[2] for k in self.pools if "@" in k))
        if lay:
            return [str(lay[0])]
        layer = (self.meta.get("encoder") or {}).get("layer") if isinstance(self.meta.get("encoder"), dict) else None
        return ["default" if layer is None else str(layer)]

    @property
    def multi_layer(self) -> bool:
        """True when the arrays are keyed ``pooling@layer``."""
        return any("@" in k for k in self.pools)

    def select(self, layer: str | int) -> "Embeddings":
        """The embeddings of one layer, with plain pooling keys (``cls``/``global``, ``mean``, ``roi``).

        Parameters
        ----------
        layer : str or int
            One of :attr:`layers` (an int is matched by its string, e.g. ``3`` for ``cls@3``).

        Returns
        -------
        Embeddings
            Same ``case_id``; ``pools`` of that layer; ``meta`` with ``layers == [layer]`` and that
            layer's ``grid``/``dim``/``has_cls``/``poolings`` when the file recorded them.

        Raises
        ------
        InputError
            ``layer`` is not held; the message names the available layers.
        """
        name = str(layer)
        available = self.layers
        if name not in available:
            raise InputError(f"layer {name!r} is not in these embeddings; available layers: {available} "
                             "(embed it with radlens embed --layers ...)")
        if not self.multi_layer:
            return self
        suffix = "@" + name
        pools = {k[: -len(suffix)]: v for k, v in self.pools.items() if k.endswith(suffix)}
        meta = dict(self.meta, layers=[name])
        info = (self.meta.get("layer_info") or {}).get(name)
        meta.pop("layer_info", None)
        if info:
            meta.update(grid=info.get("grid"), dim=info.get("dim"), has_cls=info.get("has_cls"),
                        poolings=info.get("poolings"))
        return Embeddings(self.case_id, pools, meta)

    def get(self, pooling: str) -> np.ndarray:
        if pooling not in self.pools:
            hint = (f"; these embeddings hold layers {self.layers}: pick one with .select(layer)"
                    if self.multi_layer and "@" not in pooling else "")
            raise InputError(f"pooling {pooling!r} not in these embeddings; available: {sorted(self.pools)}{hint}")
        return self.pools[pooling]

    def default_pooling(self) -> str:
        for p in ("roi", "cls", "global", "mean", "external"):
            if p in self.pools:
                return p
        return next(iter(self.pools))


def write_embeddings(path: str | os.PathLike, emb: Embeddings) -> Path:
    arrays = {"case_id": np.asarray(emb.case_id).astype(str)}
    for k, v in emb.pools.items():
        arrays[k] = np.asarray(v, dtype=np.float32)
    return write_npz(path, arrays, emb.meta)


def read_embeddings(path: str | os.PathLike, layer: str | int | None = None) -> Embeddings:
    """Read embeddings from ``radlens embed`` (.npz) or from elsewhere (.parquet/.csv with
    ``case_id`` plus numeric columns, read as pooling ``external``).

    ``layer``: return only that layer (:meth:`Embeddings.select`)."""
    if layer is not None:
        return read_embeddings(path).select(layer)
    path = Path(path)
    if path.suffix == ".npz":
        arrays, meta = read_npz(path)
        if "case_id" not in arrays:
            raise InputError(f"embeddings {str(path)!r} have no 'case_id' array; written by radlens embed?")
        cid = arrays.pop("case_id").astype(str)
        pools = {k: v.astype(np.float32, copy=False) for k, v in arrays.items() if v.ndim == 2}
        for k, v in pools.items():
            if v.shape[0] != cid.shape[0]:
                raise InputError(f"embeddings {str(path)!r}: pooling {k!r} has {v.shape[0]} rows but "
                                 f"{cid.shape[0]} case_ids")
        if not pools:
            raise InputError(f"embeddings {str(path)!r} hold no 2-D arrays (expected cls/global/mean/roi)")
        return Embeddings(cid, pools, meta)
    df = read_table(path)
    if "case_id" not in df.columns:
        raise InputError(f"embeddings table {str(path)!r} has no 'case_id' column; columns: {list(df.columns)[:10]}")
    num = df.drop(columns=["case_id"]).select_dtypes("number")
    if num.shape[1] == 0:
        raise InputError(f"embeddings table {str(path)!r} has no numeric columns besides case_id")
    return Embeddings(df["case_id"].astype(str).to_numpy(), {"external": num.to_numpy(np.float32)},
                      {"source": str(path), "columns": list(num.columns)})


def align_case_ids(left: np.ndarray, right: np.ndarray, left_name: str, right_name: str,
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Indices that put ``left`` and ``right`` in the same case order (inner join is *not*
    silent: any id missing on either side raises, listing them)."""
    left = np.asarray(left).astype(str)
    right = np.asarray(right).astype(str)
    for arr, name in ((left, left_name), (right, right_name)):
        u, c = np.unique(arr, return_counts=True)
        if (c > 1).any():
            raise InputError(f"{name}: duplicate case_id(s) {u[c > 1][:10].tolist()}")
    only_l = np.setdiff1d(left, right)
    only_r = np.setdiff1d(right, left)
    if only_l.size or only_r.size:
        raise InputError(
            f"case_id mismatch between {left_name} and {right_name}: "
            f"{only_l.size} only in {left_name} {only_l[:10].tolist()}, "
            f"{only_r.size} only in {right_name} {only_r[:10].tolist()}; "
            "compute both for the same manifest, or subset them to the same cases")
    ri = {c: i for i, c in enumerate(right)}
    return np.arange(left.size), np.array([ri[c] for c in left], dtype=int)


def write_failures(path: str | os.PathLike, rows: list[dict[str, Any]]) -> Path:
    """Failures table (``case_id``, ``stage``, ``error``) as CSV, always written (empty = none);
    the bytes pandas' ``to_csv`` writes, without importing pandas."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["case_id", "stage", "error"])
    for r in rows:
        w.writerow(["" if r.get(k) is None else str(r[k]) for k in ("case_id", "stage", "error")])
    with atomic_path(path) as tmp:
        tmp.write_text(buf.getvalue(), encoding="utf-8")
    return Path(path)
