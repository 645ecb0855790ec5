"""Per-case cache of radiomics extraction (used by :mod:`radlens.radiomics.extract`).

Layout under the cache folder:

* ``<key[:2]>/<key>.json``: one entry per case (features, diagnostics, or the failure), written
  atomically by the main process as results arrive, so a killed run keeps every finished case;
* ``file_hashes.json``: (path, size, mtime) -> SHA-256, so unchanged files are not re-hashed;
* ``params/<hash>.json``: what pyradiomics made of each params file (for provenance).

Floats go through JSON with ``repr`` (the shortest string that reads back to the same double), so
a cached value is bit-identical to the computed one.
"""
from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path
from typing import Any, Mapping

log = logging.getLogger(__name__)


class CaseCache:
    """Per-case result store; ``root=None`` disables it (every method becomes a no-op)."""

    def __init__(self, root: Path | None):
        self.root = root
        self._index: dict[str, list] = {}
        self._dirty = False
        self._memo: dict[str, str] = {}
        if root is not None:
            root.mkdir(parents=True, exist_ok=True)
            idx = root / "file_hashes.json"
            if idx.exists():
                try:
                    self._index = json.loads(idx.read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    log.warning("cache index %s unreadable; files will be re-hashed", idx)

    # ---- file content hashes
    def file_hash(self, path: str) -> str:
        """SHA-256 of a file's bytes (a DICOM folder: of its files), re-used while size and mtime hold."""
        from radlens.io.artifacts import file_hash

        if path in self._memo:
            return self._memo[path]
        st = os.stat(path)
        if stat.S_ISREG(st.st_mode):
            p = path
            hit = self._index.get(path)
            if hit is not None and hit[0] == st.st_size and hit[1] == st.st_mtime_ns:
                h = hit[2]
            else:
                h = file_hash(p)
                self._index[path] = [st.st_size, st.st_mtime_ns, h]
                self._dirty = True
        else:  # a DICOM series folder
            h = file_hash(path)
        self._memo[path] = h
        return h

    def save_index(self) -> None:
        if self.root is not None and self._dirty:
            from radlens.io.artifacts import write_json

            write_json(self.root / "file_hashes.json", self._index)
            self._dirty = False

    # ---- case entries
    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        if self.root is None:
            return None
        p = self._path(key)
        try:
            return json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            log.warning("cache entry %s unreadable; recomputing that case", p)
            return None

    def put(self, key: str, rec: dict) -> None:
        if self.root is None:
            return
        from radlens.io.artifacts import atomic_write_text

        atomic_write_text(self._path(key), json.dumps(rec))  # keeps pyradiomics feature order

    # ---- params
    def params_spec(self, params_hash: str) -> dict | None:
        if self.root is None:
            return None
        try:
            return json.loads((self.root / "params" / f"{params_hash}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def put_params_spec(self, params_hash: str, spec: dict) -> None:
        if self.root is not None:
            from radlens.io.artifacts import write_json

            write_json(self.root / "params" / f"{params_hash}.json", spec)


def case_key(row: Mapping[str, Any], label_given: bool, params_hash: str, cache: CaseCache, *,
             resample_mask: bool, diagnostics: str, pyradiomics_version: str, extract_version: int,
             engine: str = "pyradiomics") -> str:
    """Cache key of one case: content of the image and ROI, the params, versions and options."""
    from radlens.io.artifacts import obj_hash

    mask = row.get("mask")
    if isinstance(mask, str) and mask:
        roi = {"mask": cache.file_hash(mask), "label": int(row["label"]) if label_given else None,
               "resample_mask": bool(resample_mask)}
    else:
        roi = {"box": [float(row[c]) for c in ("bbox_x", "bbox_y", "bbox_w", "bbox_h")]}
    gaps = row.get("slice_gaps")
    if isinstance(gaps, str) and gaps.strip():  # the per-case opt-in changes the result (absent: old keys)
        roi["slice_gaps"] = gaps.strip().lower()
    return obj_hash({"image": cache.file_hash(row["image"]), "roi": roi, "params": params_hash,
                     "pyradiomics": pyradiomics_version, "radlens_extract": extract_version,
                     "diagnostics": diagnostics, "engine": engine})
