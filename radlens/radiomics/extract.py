"""pyradiomics feature extraction at scale: cached, resumable, parallel, with a failures table.

:func:`radiomics` is what ``radlens radiomics`` runs. For each manifest row it loads the image and
ROI (:func:`radlens.io.images.load_case`) and calls pyradiomics'
``RadiomicsFeatureExtractor(params).execute`` — the params file is read by pyradiomics itself, so
a file gives exactly the features it gives pyradiomics (settings the file leaves unset take
pyradiomics' defaults).

What radlens adds, without changing a single feature value:

* **2D done right.** 2D images (and 3D files with one slice) are extracted as 2D images:
  ``shape2D`` and 2D texture. ``shape`` is skipped for 2D cases and ``shape2D`` for 3D cases
  unless ``force2D`` is set (pyradiomics would skip them with a warning per case).
* **Cache.** One JSON entry per case under ``cache_dir``, keyed by the SHA-256 of the image file,
  of the ROI (mask file + label, or the box), of the effective parameters and by the pyradiomics
  version. A re-run recomputes nothing; a run killed mid-way resumes where it stopped and writes
  the same tables. Failures are cached too (``retry_failed=True`` retries them).
* **Speed.** pyradiomics' own diagnostics (``additionalInfo``) cost about as much as the features
  on small ROIs; by default (``diagnostics="fast"``) radlens turns them off and computes the useful
  ones itself with numpy (same names). When the parameters use only the ``Original`` image type,
  no normalisation and no resampling, the image is cropped to the ROI's bounding box before it is
  handed to pyradiomics (which would crop to the same box itself), so SimpleITK works on a few
  pixels instead of the whole image. Workers run single-threaded SimpleITK, are forked with
  pyradiomics already imported and build their extractor once.
* **Failures** go to ``<out>.failures.csv`` (``case_id, stage, error``) with stage ``load``
  (unreadable image, label absent, geometry mismatch, ...) or ``extract`` (pyradiomics refused
  the ROI, e.g. too small, or every feature came out NaN); the other cases complete.

Outputs (written atomically): ``out`` (``case_id`` + one float64 column per feature, named as
pyradiomics names it, rows in manifest order, failed cases absent), ``<out>.diagnostics.parquet``
and ``<out>.failures.csv``; provenance (params, versions, counts) in the parquet metadata.
"""
from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from radlens.errors import ConfigError, InputError
from radlens.radiomics.pyrad import (  # noqa: F401  (re-exported: the public API lives here)
    DEFAULT_PARAMS,
    Params,
    _extractors,
    extract_case,
    warm_engine,
    fast_diagnostics,
    load_params,
    validate_params,
)

log = logging.getLogger(__name__)

__all__ = ["radiomics", "RadiomicsResult", "side_paths", "load_params", "validate_params", "Params",
           "extract_case", "fast_diagnostics", "DEFAULT_PARAMS", "DIAGNOSTICS", "EXTRACT_VERSION"]

#: Bump when a change here changes the numbers or records radlens caches for a case.
EXTRACT_VERSION = 3  # 2: masks must be label maps, pixel-grid PNG masks, DICOM slice gaps (1s are stale);
#                       3: radlens' feature engine (values to 1e-9 of pyradiomics'), engine in the key
DIAGNOSTICS = ("fast", "pyradiomics")
ENGINES = ("radlens", "pyradiomics")
_NDIMAGE_FROM = 256  # cases to extract from which the diagnostics use scipy.ndimage (imported once)

# --------------------------------------------------------------------------- orchestration
class RadiomicsResult:
    """What :func:`radiomics` wrote.

    Attributes
    ----------
    features : pandas.DataFrame
        ``case_id`` + one float64 column per feature, successful cases in manifest order.
    diagnostics : pandas.DataFrame
        ``case_id`` + diagnostics columns (``diagnostics_*`` as pyradiomics names them, ``radlens_*``).
    failures : pandas.DataFrame
        ``case_id, stage, error``.
    out, diagnostics_path, failures_path : pathlib.Path
    n_cases, n_features, n_failed : int
        Manifest rows, feature columns, failed cases.
    n_computed, n_cached : int
        Cases extracted in this run / taken from the cache.

    The tables are read from disk on first access when the run found them up to date.
    """

    def __init__(self, out, diagnostics_path, failures_path, *, n_cases, n_features, n_failed, n_computed=0,
                 n_cached=0, features=None, diagnostics=None, failures=None):
        self.out, self.diagnostics_path, self.failures_path = Path(out), Path(diagnostics_path), Path(failures_path)
        self.n_cases, self.n_features, self.n_failed = int(n_cases), int(n_features), int(n_failed)
        self.n_computed, self.n_cached = int(n_computed), int(n_cached)
        self._tables = {"features": features, "diagnostics": diagnostics, "failures": failures}

    def _table(self, name: str, path: Path):
        if callable(self._tables[name]):  # built from what the run computed, on first access
            self._tables[name] = self._tables[name]()
        if self._tables[name] is None:
            from radlens.io.artifacts import read_table

            self._tables[name] = read_table(path)
        return self._tables[name]

    @property
    def features(self):
        return self._table("features", self.out)

    @property
    def diagnostics(self):
        return self._table("diagnostics", self.diagnostics_path)

    @property
    def failures(self):
        return self._table("failures", self.failures_path)

    def __repr__(self) -> str:
        return (f"RadiomicsResult({str(self.out)!r}: {self.n_cases} cases, {self.n_features} features, "
                f"{self.n_failed} failed; {self.n_computed} extracted, {self.n_cached} from cache)")


def side_paths(out: str | os.PathLike) -> tuple[Path, Path]:
    """(diagnostics path, failures path) that go with a radiomics table path."""
    out = Path(out)
    stem = out.name[: -len(out.suffix)] if out.suffix else out.name
    return out.with_name(f"{stem}.diagnostics{out.suffix or '.parquet'}"), out.with_name(f"{stem}.failures.csv")


def radiomics(manifest, params=None, out: str | os.PathLike = "radiomics.parquet", *, jobs: int = 1,
              executor: str = "process", scheduler: Any = None, cache_dir: str | os.PathLike | None = None,
              use_cache: bool = True, retry_failed: bool = False, resample_mask: bool = False,
              check_images: bool = False, diagnostics: str = "fast", batch_size: int | None = None,
              show_progress: bool | None = None, engine: str = "radlens") -> RadiomicsResult:
    """Extract pyradiomics features for every ROI of a manifest.

    Parameters
    ----------
    manifest : path or Manifest
        Manifest file, or a :class:`~radlens.io.manifest.Manifest` already read (used as is).
    params : path, dict or None
        pyradiomics params file (read by pyradiomics itself), params dict, or None for
        ``radlens/configs/radiomics_default.yaml``.
    out : path
        Feature table (``.parquet`` or ``.csv``); side files ``<stem>.diagnostics.<ext>`` and
        ``<stem>.failures.csv`` go next to it.
    jobs : int or "auto", default 1
        Parallel worker processes (``<= 0``: one per CPU). ``"auto"``: one per CPU, or 1 when the
        cases to extract are too few/small for a pool to win
        (:func:`radlens.radiomics.schedule.auto_jobs`).
    executor : {"process", "dask"}
    scheduler : str, distributed.Client or None
        Dask scheduler address or client (``executor="dask"``); None starts a LocalCluster.
    cache_dir : path or None
        Per-case cache; default ``<out folder>/<out stem>.cache``.
    use_cache : bool, default True
        False: neither read nor write the cache.
    retry_failed : bool, default False
        Recompute cases whose cached result is a failure.
    resample_mask : bool, default False
        Resample masks that are not on their image's grid (nearest neighbour) instead of failing.
    check_images : bool, default False
        The manifest's structure (columns, ids, files, ROI given once) is always checked up front.
        True also opens every image and mask still to extract and reports all content problems
        (box outside the image, label absent, unreadable file) at once before extracting. False:
        each such case lands in the failures table (stage ``load``) while the others are extracted
        (and cached, so a re-run after fixing the manifest extracts only the fixed cases).
    diagnostics : {"fast", "pyradiomics"}
        ``fast``: radlens computes the diagnostics (pyradiomics' ``additionalInfo`` off, ROI crop);
        ``pyradiomics``: pyradiomics' own diagnostics as the params request them (slower).
    batch_size : int or None
        Cases per worker task (default: about 24 tasks per worker, at most 16 cases each).
    show_progress : bool or None
        Progress bar (cases done, failed, rate); None shows it on an interactive terminal.
    engine : {"radlens", "pyradiomics"}
        ``radlens``: the classes radlens' engine covers (:mod:`radlens.radiomics.engine`: first
        order, GLCM, GLRLM, GLSZM, GLDM, NGTDM; Original image, ``diagnostics="fast"``) are computed by it, equal to
        pyradiomics' values to 1e-9 relative; every other class by pyradiomics. The diagnostics
        columns ``radlens_engine`` / ``radlens_pyradiomics`` say which. ``pyradiomics``: all by
        pyradiomics (bit-identical to a plain ``execute`` loop).

    Returns
    -------
    RadiomicsResult

    Raises
    ------
    ManifestError
        The manifest has problems (all listed).
    ConfigError
        Bad params file, executor, jobs, batch_size or diagnostics value.
    """
    from radlens.radiomics.params_memo import lazy_pykwalify

    lazy_pykwalify()  # before pyradiomics is imported: its params validation may be remembered
    import radiomics as _pyradiomics_pkg
    from radlens.io.artifacts import obj_hash, read_table_meta
    from radlens.io.manifest import Manifest, read_manifest, validate_images
    from radlens.parallel import check_executor
    from radlens.radiomics.cache import CaseCache, case_key

    t0 = time.perf_counter()
    if diagnostics not in DIAGNOSTICS:
        raise ConfigError(f"diagnostics={diagnostics!r} is not allowed; use one of {list(DIAGNOSTICS)}")
    if engine not in ENGINES:
        raise ConfigError(f"engine={engine!r} is not allowed; use one of {list(ENGINES)}")
    auto = isinstance(jobs, str) and jobs.strip().lower() == "auto"
    jobs = check_executor(0 if auto else jobs, executor)
    if batch_size is not None and int(batch_size) < 1:
        raise ConfigError(f"batch_size={batch_size!r} is not allowed; use an integer >= 1")
    out = Path(out)
    if out.suffix not in (".parquet", ".csv"):
        raise InputError(f"out={str(out)!r}: use a .parquet or .csv file name")
    diag_path, fail_path = side_paths(out)
    prm = load_params(params, validate=False)
    given_manifest = isinstance(manifest, Manifest)
    man = manifest if given_manifest else read_manifest(manifest, check_images=False, frame=False)
    rows = list(man.rows())
    n = len(rows)
    label_given = np.ones(n, bool) if man.label_given is None else np.asarray(man.label_given, bool)
    version = str(getattr(_pyradiomics_pkg, "__version__", "unknown"))
    cache = CaseCache((Path(cache_dir) if cache_dir is not None else out.with_name(out.name[:-len(out.suffix)] + ".cache"))
                      if use_cache else None)
    # without a cache the keys are never looked up: do not read (hash) every image for them
    keys = [case_key(r, bool(g), prm.hash, cache, resample_mask=resample_mask, diagnostics=diagnostics,
                     pyradiomics_version=version, extract_version=EXTRACT_VERSION, engine=engine)
            if use_cache else None for r, g in zip(rows, label_given)]
    cache.save_index()
    run_key = obj_hash({"keys": keys, "case_id": [r["case_id"] for r in rows], "out": out.suffix})

    # ---- nothing changed since the last run: the tables on disk are the answer
    if use_cache and not retry_failed and out.exists() and diag_path.exists() and fail_path.exists():
        try:
            meta = read_table_meta(out)
        except Exception:  # unreadable / foreign file: rewrite it
            meta = {}
        if meta.get("run_key") == run_key:
            log.info("radiomics: %s is up to date (%d cases, nothing to extract)", out, n)
            return RadiomicsResult(out, diag_path, fail_path, n_cases=n, n_features=meta.get("n_features", 0),
                                   n_failed=meta.get("n_failed", 0), n_computed=0, n_cached=n)

    records: list[dict | None] = [cache.get(k) for k in keys]
    if retry_failed:
        records = [None if r is not None and r.get("error") else r for r in records]
    todo = [i for i in range(n) if records[i] is None]
    n_cached = n - len(todo)
    if auto and executor == "process":
        from radlens.radiomics.schedule import auto_jobs

        jobs = auto_jobs(rows, todo, jobs)
    log.info("radiomics: %d cases, %d from cache, %d to extract (jobs=%d%s, executor=%s)", n, n_cached,
             len(todo), jobs, " auto" if auto else "", executor)
    spec = cache.params_spec(prm.hash) if not todo else None
    if spec is None:
        prm = validate_params(prm)
        spec = prm.spec
        cache.put_params_spec(prm.hash, spec)
    if todo:
        local_jobs = jobs if executor == "process" else min(jobs, os.cpu_count() or 1)
        if check_images and not given_manifest:  # every content problem of the cases to extract, at once
            man = validate_images(man, todo, jobs=local_jobs if len(todo) >= 4 * local_jobs else 1,
                                  resample_mask=resample_mask)
            rows = list(man.rows())
        if executor == "process" and jobs > 1:  # a zygote sets up the same meanwhile, for its workers
            from radlens.radiomics.schedule import warm_zygote

            warm_zygote(prm, diagnostics, engine, diagnostics == "fast" and len(todo) >= _NDIMAGE_FROM)
        warm_engine(prm, diagnostics, engine)  # extractors, engine set-up: forked workers inherit them
        if diagnostics == "fast" and len(todo) >= _NDIMAGE_FROM:
            import scipy.ndimage  # noqa: F401  (connected components: ~0.1 s once, then ~40x faster per case)
        for i in todo:  # label left empty: load_case infers it from the mask (as read_manifest does)
            if not label_given[i] and rows[i].get("mask"):
                rows[i] = {**rows[i], "label": None}
        _run(rows, todo, records, keys, cache, prm, jobs=jobs, executor=executor, scheduler=scheduler,
             diagnostics=diagnostics, resample_mask=resample_mask, batch_size=batch_size,
             show_progress=show_progress, n_cached=n_cached, engine=engine)
    res = _write_tables(rows, records, out, diag_path, fail_path, meta_extra={
        "run_key": run_key, "params": spec, "params_source": prm.source if isinstance(prm.source, str) else "dict",
        "params_sha256": prm.hash, "diagnostics": diagnostics, "engine": engine, "resample_mask": resample_mask,
        "pyradiomics": version, "radlens_extract": EXTRACT_VERSION}, manifest_path=man.path)
    res.n_computed, res.n_cached = len(todo), n_cached
    log.info("radiomics: %d cases x %d features -> %s in %.1f s (%d extracted, %d cached, %d failed)",
             n - res.n_failed, res.n_features, out, time.perf_counter() - t0, len(todo), n_cached, res.n_failed)
    return res


def _run(rows, todo, records, keys, cache, prm, *, jobs, executor, scheduler, diagnostics, resample_mask,
         batch_size, show_progress, n_cached, engine="radlens") -> None:
    """Extract the ``todo`` cases, storing each result in ``records`` and the cache as it arrives."""
    from radlens.progress import progress
    from radlens.radiomics.schedule import run_scheduled

    n = len(rows)
    n_failed = sum(1 for r in records if r is not None and r.get("error"))
    if show_progress is None:  # progress() decides the same way, but only after importing tqdm (~50 ms)
        env = os.environ.get("RADLENS_PROGRESS")
        show_progress = (env != "0") if env is not None else sys.stderr.isatty()
    bar = progress(total=n, desc="radiomics", disable=False) if show_progress else _NoBar()
    bar.update(n_cached)
    try:
        for i, rec, cacheable in run_scheduled(rows, todo, prm, jobs=jobs, executor=executor, scheduler=scheduler,
                                               diagnostics=diagnostics, resample_mask=resample_mask,
                                               batch_size=batch_size, engine=engine):
            records[i] = rec
            if cacheable:
                cache.put(keys[i], rec)
            n_failed += bool(rec.get("error"))
            bar.update(1)
            bar.set_postfix(failed=n_failed, cached=n_cached, refresh=False)
    finally:
        bar.close()


class _NoBar:
    def update(self, n=1):
        pass

    def set_postfix(self, *a, **k):
        pass

    def close(self):
        pass


def _write_tables(rows, records, out, diag_path, fail_path, meta_extra, manifest_path) -> RadiomicsResult:
    """Assemble and atomically write the feature, diagnostics and failures tables (parquet through
    pyarrow alone: no pandas import; the result's DataFrames are built on first access)."""
    from radlens.io.artifacts import provenance, write_columns, write_failures

    feat_ids, feat_vals, diag_rows, fails, columns, seen = [], [], [], [], [], set()
    for r, rec in zip(rows, records):
        cid = str(r["case_id"])
        warn = " | ".join(dict.fromkeys(rec.get("warnings") or [])) or None
        diag_rows.append({"case_id": cid, **(rec.get("diagnostics") or {}), "radlens_warnings": warn})
        if rec.get("error"):
            fails.append({"case_id": cid, "stage": rec["stage"], "error": rec["error"]})
            continue
        for k in rec["features"]:
            if k not in seen:  # column order: first successful case in manifest order
                seen.add(k)
                columns.append(k)
        feat_ids.append(cid)
        feat_vals.append(rec["features"])
    # one row per case: most records hold exactly `columns` in order (a C-level list copy), the
    # others are filled by name (NaN where a feature is missing)
    mat = np.full((len(feat_vals), len(columns)), np.nan)
    col_index = {k: j for j, k in enumerate(columns)}
    for r, f in enumerate(feat_vals):
        if list(f) == columns:
            mat[r] = list(f.values())
        else:
            for k, v in f.items():
                mat[r, col_index[k]] = v
    feats: dict[str, Any] = {"case_id": feat_ids}
    for j, k in enumerate(columns):
        feats[k] = np.ascontiguousarray(mat[:, j])
    diag = _diag_columns(diag_rows)
    meta = provenance("radiomics", config={k: v for k, v in meta_extra.items() if k != "run_key"},
                      inputs={"manifest": manifest_path} if manifest_path is not None else None,
                      run_key=meta_extra["run_key"], n_cases=len(rows), n_features=len(columns),
                      n_failed=len(fails))
    # the feature table last: its run_key marks the set complete
    write_columns(diag, diag_path, meta)
    write_failures(fail_path, fails)
    write_columns(feats, out, meta)
    if fails:
        log.warning("radiomics: %d of %d cases failed; see %s", len(fails), len(rows), fail_path)
    return RadiomicsResult(out, diag_path, fail_path, n_cases=len(rows), n_features=len(columns),
                           n_failed=len(fails), features=lambda: _frame(feats, id_object=True),
                           diagnostics=lambda: _frame(diag, id_object=False),
                           failures=lambda: _failures_frame(fails))


def _diag_columns(diag_rows: list[dict]) -> dict[str, Any]:
    """Diagnostics columns: ``case_id`` (str), then each key in order of first appearance: float
    when every value is a number or missing, else str/None."""
    keys = list(dict.fromkeys(k for d in diag_rows for k in d))
    out: dict[str, Any] = {"case_id": [d["case_id"] for d in diag_rows]}
    for k in keys[1:]:
        vals = [d.get(k) for d in diag_rows]
        if all(v is None or isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
               for v in vals):
            out[k] = np.array([np.nan if v is None else v for v in vals], dtype=np.float64)
        else:
            out[k] = [None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in vals]
    return out


def _frame(cols: dict[str, Any], id_object: bool):
    """The DataFrame of a table's columns (string columns object dtype; ``case_id`` too when
    ``id_object``, else as pandas infers it)."""
    import pandas as pd

    return pd.DataFrame({k: v if k == "case_id" and not id_object else
                         pd.Series(v, dtype=object) if isinstance(v, list) else v for k, v in cols.items()})


def _failures_frame(fails: list[dict]):
    import pandas as pd

    return pd.DataFrame(fails, columns=["case_id", "stage", "error"])
