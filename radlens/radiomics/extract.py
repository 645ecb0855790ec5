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
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from radlens.errors import ConfigError, InputError

log = logging.getLogger(__name__)

#: Bump when a change here changes the numbers or records radlens caches for a case.
EXTRACT_VERSION = 1
DIAGNOSTICS = ("fast", "pyradiomics")
DEFAULT_PARAMS = Path(__file__).resolve().parents[1] / "configs" / "radiomics_default.yaml"
_CROP_SAFE_IMAGE_TYPES = {"Original"}


# --------------------------------------------------------------------------- parameters
@dataclass(frozen=True)
class Params:
    """pyradiomics parameters as pyradiomics reads them.

    Attributes
    ----------
    source : str or dict
        The params file path (given to pyradiomics as is) or a parameter dict.
    hash : str
        SHA-256 of the file's bytes (or of the dict): the cache-key part.
    spec : dict or None
        What pyradiomics made of it (``setting``, ``imageType``, ``featureClass``); None until
        validated (:func:`load_params` with ``validate=True``).
    """

    source: Any
    hash: str
    spec: dict | None = None


def _crop_safe(settings: Mapping, image_types: Mapping) -> bool:
    """True when cropping the image to the ROI box first cannot change any feature: only the
    Original image (filters look outside the ROI), no normalisation (uses the whole image), no
    resampling (the grid would be computed from the crop)."""
    return (set(image_types) <= _CROP_SAFE_IMAGE_TYPES and not settings.get("normalize", False)
            and settings.get("resampledPixelSpacing") is None)


class _QuietPyradiomics:
    """Context: pyradiomics logs go to radlens' tables, not to stderr (restored on exit)."""

    def __enter__(self):
        import radiomics

        self.lg = logging.getLogger("radiomics")
        self.kw = logging.getLogger("pykwalify")
        self.saved = (self.lg.level, self.lg.propagate, [h.level for h in self.lg.handlers], self.kw.level)
        for h in self.lg.handlers:
            if h is not _COLLECTOR:
                h.setLevel(logging.CRITICAL + 1)
        self.lg.setLevel(logging.WARNING)  # no INFO/DEBUG records are even created
        self.lg.propagate = False
        self.kw.setLevel(logging.WARNING)
        del radiomics
        return self

    def __exit__(self, *exc):
        level, prop, hlevels, kwlevel = self.saved
        self.lg.setLevel(level)
        self.lg.propagate = prop
        for h, hl in zip(list(self.lg.handlers), hlevels):
            h.setLevel(hl)
        self.kw.setLevel(kwlevel)
        return False


def _new_extractor(source, **overrides):
    from radiomics.featureextractor import RadiomicsFeatureExtractor

    if isinstance(source, dict):
        import copy

        return RadiomicsFeatureExtractor(copy.deepcopy(source), **overrides)
    return RadiomicsFeatureExtractor(str(source), **overrides)


def load_params(params: str | os.PathLike | Mapping | None = None, *, validate: bool = True) -> Params:
    """Locate (and validate) pyradiomics parameters.

    Parameters
    ----------
    params : path, dict or None
        A pyradiomics YAML/JSON params file, a params dict (``setting`` / ``imageType`` /
        ``featureClass``), or None for radlens' default (``radlens/configs/radiomics_default.yaml``).
    validate : bool, default True
        Build a ``RadiomicsFeatureExtractor`` from them (pyradiomics' own schema validation) and
        record what it made of them in ``spec``.

    Raises
    ------
    ConfigError
        Missing file, or pyradiomics rejects the parameters (its validation message is included).
    """
    from radlens.io.artifacts import bytes_hash, obj_hash

    if params is None:
        params = DEFAULT_PARAMS
    if isinstance(params, Params):
        return validate_params(params) if validate and params.spec is None else params
    if not isinstance(params, Mapping):
        p = Path(params).expanduser()
        if not p.is_file():
            raise ConfigError(f"params file {str(params)!r} does not exist; give a pyradiomics params YAML "
                              f"(e.g. {DEFAULT_PARAMS})")
        prm = Params(str(p.resolve()), bytes_hash(p.read_bytes()))
    else:
        prm = Params(dict(params), obj_hash(dict(params)))
    return validate_params(prm) if validate else prm


def validate_params(prm: Params) -> Params:
    """``prm`` with ``spec`` filled by pyradiomics (raises :class:`ConfigError` if it rejects them)."""
    with _QuietPyradiomics():
        try:
            ex = _new_extractor(prm.source)
        except Exception as exc:
            where = f"params file {prm.source!r}" if isinstance(prm.source, str) else "params dict"
            raise ConfigError(f"{where} is not valid pyradiomics parameters: {str(exc).strip()[:800]}; see "
                              "https://pyradiomics.readthedocs.io/en/latest/customization.html") from exc
    _BASE[prm.hash] = ex
    spec = {"setting": _jsonable(ex.settings), "imageType": _jsonable(ex.enabledImagetypes),
            "featureClass": _jsonable(ex.enabledFeatures)}
    if ex.settings.get("label", 1) != 1:
        log.warning("params set label=%s; radlens takes each ROI's label from the manifest's 'label' column "
                    "and ignores the params' label", ex.settings["label"])
    if ex.settings.get("voxelBased") or ex.settings.get("label_channel") is not None:
        raise ConfigError("params: voxel-based extraction and label_channel are not supported by radlens radiomics")
    return Params(prm.source, prm.hash, spec)


def _jsonable(obj):
    import json

    return json.loads(json.dumps(obj, default=str))


# --------------------------------------------------------------------------- worker side
_WORKER: dict[Any, Any] = {}
_BASE: dict[str, Any] = {}  # params hash -> validated RadiomicsFeatureExtractor
#: pyradiomics warnings that say nothing about the case (emitted for every case)
_BENIGN_WARNINGS = ("GLCM is symmetrical, therefore Sum Average = 2 * Joint Average",)


def _worker_init(sitk_threads: int | None) -> None:
    """Per-process set-up of a worker: SimpleITK threads (pyradiomics is quieted by the parent's
    context, inherited by forked workers; dask workers quiet it in :func:`_extractors`)."""
    if sitk_threads:
        import SimpleITK as sitk

        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(int(sitk_threads))


def _extractors(params: Params, diagnostics: str):
    """(2D extractor, 3D extractor, crop_safe), built once per process and parameter set (and
    built in the parent before workers are forked, so they inherit them ready to use)."""
    import copy

    key = (params.hash, diagnostics)
    if key not in _WORKER:
        base = _BASE.get(params.hash)
        if base is None:
            with _QuietPyradiomics():
                base = _BASE[params.hash] = _new_extractor(params.source)
        ex2, ex3 = copy.deepcopy(base), copy.deepcopy(base)
        if diagnostics != "pyradiomics":
            ex2.settings["additionalInfo"] = ex3.settings["additionalInfo"] = False
        ex2.enabledFeatures.pop("shape", None)        # 3D shape is undefined on a 2D image
        if not ex3.settings.get("force2D", False):
            ex3.enabledFeatures.pop("shape2D", None)  # pyradiomics needs force2D for shape2D on 3D
        _WORKER[key] = (ex2, ex3, _crop_safe(ex2.settings, ex2.enabledImagetypes))
    return _WORKER[key]


class _WarningCollector(logging.Handler):
    """Collects pyradiomics warnings of the case being extracted (thread-local)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        import threading

        self.local = threading.local()

    def emit(self, record):
        buf = getattr(self.local, "buf", None)
        if buf is not None:
            msg = record.getMessage()
            if not msg.startswith(_BENIGN_WARNINGS):
                buf.append(msg)


_COLLECTOR = _WarningCollector()


def _crop_to_roi(case):
    """Image and mask cropped to the ROI's bounding box (same physical positions and spacing)."""
    import SimpleITK as sitk

    roi = case.roi
    idx = np.nonzero(roi)
    lo = [int(a.min()) for a in idx]
    hi = [int(a.max()) + 1 for a in idx]
    sl = tuple(slice(a, b) for a, b in zip(lo, hi))
    image = sitk.GetImageFromArray(np.ascontiguousarray(sitk.GetArrayViewFromImage(case.image)[sl]))
    image.SetSpacing(case.image.GetSpacing())
    image.SetDirection(case.image.GetDirection())
    image.SetOrigin(case.image.TransformIndexToPhysicalPoint(lo[::-1]))
    mask = sitk.GetImageFromArray(roi[sl].astype(np.uint8))
    mask.CopyInformation(image)
    return image, mask


def fast_diagnostics(case) -> dict[str, Any]:
    """pyradiomics-style diagnostics of the original image and ROI, computed with numpy.

    Same names and meaning as pyradiomics' ``additionalInfo`` entries (``diagnostics_Image-original_*``,
    ``diagnostics_Mask-original_*``); ``VolumeNum`` counts fully connected components.
    """
    from scipy import ndimage

    arr = case.array
    roi = case.roi
    nd = arr.ndim
    idx = np.nonzero(roi)
    lo = [int(a.min()) for a in idx]
    hi = [int(a.max()) + 1 for a in idx]
    sub = roi[tuple(slice(a, b) for a, b in zip(lo, hi))]
    _, n_comp = ndimage.label(sub, structure=np.ones((3,) * nd, bool))
    vals = arr[roi].astype(np.float64)
    com = tuple(float(np.mean(a)) for a in idx)[::-1]
    return {
        "diagnostics_Image-original_Dimensionality": f"{nd}D",
        "diagnostics_Image-original_Spacing": str(tuple(case.image.GetSpacing())),
        "diagnostics_Image-original_Size": str(tuple(case.image.GetSize())),
        "diagnostics_Image-original_Mean": float(np.mean(arr, dtype=np.float64)),
        "diagnostics_Image-original_Minimum": float(arr.min()),
        "diagnostics_Image-original_Maximum": float(arr.max()),
        "diagnostics_Mask-original_BoundingBox": str(tuple(lo[::-1]) + tuple(h - l for l, h in zip(lo, hi))[::-1]),
        "diagnostics_Mask-original_VoxelNum": int(roi.sum()),
        "diagnostics_Mask-original_VolumeNum": int(n_comp),
        "diagnostics_Mask-original_CenterOfMassIndex": str(com),
        "diagnostics_Mask-original_Mean": float(vals.mean()),
        "diagnostics_Mask-original_Minimum": float(vals.min()),
        "diagnostics_Mask-original_Maximum": float(vals.max()),
    }


def _diag_value(v):
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(v)
    if isinstance(v, np.ndarray) and v.ndim == 0:
        return _diag_value(v.item())
    return str(v)


def extract_case(row: Mapping[str, Any], params: Params, *, diagnostics: str = "fast",
                 resample_mask: bool = False) -> dict[str, Any]:
    """Extract one case; never raises for a case problem.

    Returns
    -------
    dict
        ``case_id``, ``features`` (dict name -> float, or None on failure), ``diagnostics`` (dict),
        ``stage`` and ``error`` (None on success), ``warnings`` (list of pyradiomics warnings).
    """
    from radlens.errors import CaseError
    from radlens.io.images import load_case

    case_id = str(row.get("case_id"))
    rec: dict[str, Any] = {"case_id": case_id, "features": None, "diagnostics": {}, "stage": None,
                           "error": None, "warnings": []}
    try:
        case = load_case(row, resample_mask=resample_mask)
    except CaseError as exc:
        rec.update(stage="load", error=exc.message)
        return rec
    ex2, ex3, crop_safe = _extractors(params, diagnostics)
    ex = ex2 if case.ndim == 2 else ex3
    lg = logging.getLogger("radiomics")
    if _COLLECTOR not in lg.handlers:
        lg.addHandler(_COLLECTOR)
    _COLLECTOR.local.buf = rec["warnings"]
    try:
        if diagnostics == "fast":
            rec["diagnostics"] = fast_diagnostics(case)
            image, mask = _crop_to_roi(case) if crop_safe else (case.image, case.mask)
        else:
            image, mask = case.image, case.mask
        result = ex.execute(image, mask, label=1)
    except Exception as exc:  # pyradiomics signals bad ROIs with ValueError/AssertionError/RuntimeError
        msg = str(exc).strip().splitlines()
        rec.update(stage="extract", error=f"pyradiomics: {type(exc).__name__}: {msg[-1] if msg else ''}".strip())
        return rec
    finally:
        _COLLECTOR.local.buf = None
    feats: dict[str, float] = {}
    for k, v in result.items():
        if k.startswith("diagnostics_"):
            rec["diagnostics"][k] = _diag_value(v)
        else:
            feats[k] = float(v)
    if not feats:
        rec.update(stage="extract", error="pyradiomics computed no features: enable feature classes / image types "
                   "in the params file (for 2D images, 'shape' is 3D-only: use 'shape2D')")
    elif all(np.isnan(v) for v in feats.values()):
        rec.update(stage="extract", error=f"all {len(feats)} features are NaN (degenerate ROI or intensities)")
    else:
        rec["features"] = feats
    return rec


def _extract_batch(task: tuple) -> list[dict[str, Any]]:
    rows, params, diagnostics, resample_mask = task
    with _QuietPyradiomics():
        return [extract_case(r, params, diagnostics=diagnostics, resample_mask=resample_mask) for r in rows]


# --------------------------------------------------------------------------- orchestration
@dataclass
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
    n_computed, n_cached : int
        Cases extracted in this run / taken from the cache.
    """

    features: Any
    diagnostics: Any
    failures: Any
    out: Path
    diagnostics_path: Path
    failures_path: Path
    n_computed: int
    n_cached: int


def side_paths(out: str | os.PathLike) -> tuple[Path, Path]:
    """(diagnostics path, failures path) that go with a radiomics table path."""
    out = Path(out)
    stem = out.name[: -len(out.suffix)] if out.suffix else out.name
    return out.with_name(f"{stem}.diagnostics{out.suffix or '.parquet'}"), out.with_name(f"{stem}.failures.csv")


def radiomics(manifest, params=None, out: str | os.PathLike = "radiomics.parquet", *, jobs: int = 1,
              executor: str = "process", scheduler: Any = None, cache_dir: str | os.PathLike | None = None,
              use_cache: bool = True, retry_failed: bool = False, resample_mask: bool = False,
              check_images: bool = True, diagnostics: str = "fast", batch_size: int | None = None,
              show_progress: bool | None = None) -> RadiomicsResult:
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
    jobs : int, default 1
        Parallel worker processes (``<= 0``: one per CPU).
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
    check_images : bool, default True
        Before extracting, check the content of every case still to extract (see
        :func:`radlens.io.manifest.read_manifest`) and report all problems at once. False: such
        cases land in the failures table (stage ``load``) instead.
    diagnostics : {"fast", "pyradiomics"}
        ``fast``: radlens computes the diagnostics (pyradiomics' ``additionalInfo`` off, ROI crop);
        ``pyradiomics``: pyradiomics' own diagnostics as the params request them (slower).
    batch_size : int or None
        Cases per worker task (default: about 8 tasks per worker, at most 32 cases).
    show_progress : bool or None
        Progress bar (cases done, failed, rate); None shows it on an interactive terminal.

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
    import radiomics as _pyradiomics_pkg
    from radlens.io.artifacts import obj_hash, read_table, read_table_meta
    from radlens.io.manifest import Manifest, read_manifest, validate_images
    from radlens.parallel import check_executor
    from radlens.radiomics.cache import CaseCache, case_key

    t0 = time.perf_counter()
    if diagnostics not in DIAGNOSTICS:
        raise ConfigError(f"diagnostics={diagnostics!r} is not allowed; use one of {list(DIAGNOSTICS)}")
    jobs = check_executor(jobs, executor)
    if batch_size is not None and int(batch_size) < 1:
        raise ConfigError(f"batch_size={batch_size!r} is not allowed; use an integer >= 1")
    out = Path(out)
    if out.suffix not in (".parquet", ".csv"):
        raise InputError(f"out={str(out)!r}: use a .parquet or .csv file name")
    diag_path, fail_path = side_paths(out)
    prm = load_params(params, validate=False)
    given_manifest = isinstance(manifest, Manifest)
    man = manifest if given_manifest else read_manifest(manifest, check_images=False)
    rows = list(man.rows())
    n = len(rows)
    label_given = np.ones(n, bool) if man.label_given is None else np.asarray(man.label_given, bool)
    version = str(getattr(_pyradiomics_pkg, "__version__", "unknown"))
    cache = CaseCache((Path(cache_dir) if cache_dir is not None else out.with_name(out.name[:-len(out.suffix)] + ".cache"))
                      if use_cache else None)
    keys = [case_key(r, bool(g), prm.hash, cache, resample_mask=resample_mask, diagnostics=diagnostics,
                     pyradiomics_version=version, extract_version=EXTRACT_VERSION) for r, g in zip(rows, label_given)]
    cache.save_index()
    run_key = obj_hash({"keys": keys, "case_id": [r["case_id"] for r in rows], "out": out.suffix})

    # ---- nothing changed since the last run: the tables on disk are the answer
    if use_cache and not retry_failed and out.exists() and diag_path.exists() and fail_path.exists():
        try:
            up_to_date = read_table_meta(out).get("run_key") == run_key
        except Exception:  # unreadable / foreign file: rewrite it
            up_to_date = False
        if up_to_date:
            log.info("radiomics: %s is up to date (%d cases, nothing to extract)", out, n)
            return RadiomicsResult(read_table(out), read_table(diag_path), read_table(fail_path), out, diag_path,
                                   fail_path, 0, n)

    records: list[dict | None] = [cache.get(k) for k in keys]
    if retry_failed:
        records = [None if r is not None and r.get("error") else r for r in records]
    todo = [i for i in range(n) if records[i] is None]
    n_cached = n - len(todo)
    log.info("radiomics: %d cases, %d from cache, %d to extract (jobs=%d, executor=%s)", n, n_cached,
             len(todo), jobs, executor)
    spec = cache.params_spec(prm.hash) if not todo else None
    if spec is None:
        prm = validate_params(prm)
        spec = prm.spec
        cache.put_params_spec(prm.hash, spec)
    if todo:
        local_jobs = jobs if executor == "process" else min(jobs, os.cpu_count() or 1)
        if check_images and not given_manifest:  # every content problem of the cases to extract, at once
            man = validate_images(man, todo, jobs=local_jobs if len(todo) >= 4 * local_jobs else 1)
            rows = list(man.rows())
        _extractors(prm, diagnostics)  # forked workers inherit them
        _run(rows, todo, records, keys, cache, prm, jobs=jobs, executor=executor, scheduler=scheduler,
             diagnostics=diagnostics, resample_mask=resample_mask, batch_size=batch_size,
             show_progress=show_progress, n_cached=n_cached)
    res = _write_tables(rows, records, out, diag_path, fail_path, meta_extra={
        "run_key": run_key, "params": spec, "params_source": prm.source if isinstance(prm.source, str) else "dict",
        "params_sha256": prm.hash, "diagnostics": diagnostics, "resample_mask": resample_mask,
        "pyradiomics": version, "radlens_extract": EXTRACT_VERSION}, manifest_path=man.path)
    res.n_computed, res.n_cached = len(todo), n_cached
    log.info("radiomics: %d cases x %d features -> %s in %.1f s (%d extracted, %d cached, %d failed)",
             len(res.features), res.features.shape[1] - 1, out, time.perf_counter() - t0, len(todo), n_cached,
             len(res.failures))
    return res


def _run(rows, todo, records, keys, cache, prm, *, jobs, executor, scheduler, diagnostics, resample_mask,
         batch_size, show_progress, n_cached) -> None:
    """Extract the ``todo`` cases, storing each result in ``records`` and the cache as it arrives."""
    from radlens.parallel import iter_cases
    from radlens.progress import progress

    n = len(rows)
    workers = 1 if (executor == "process" and jobs == 1) else jobs
    bs = int(batch_size) if batch_size else max(1, min(32, -(-len(todo) // (8 * workers))))
    batches = [todo[j:j + bs] for j in range(0, len(todo), bs)]
    tasks = [([rows[i] for i in b], prm, diagnostics, resample_mask) for b in batches]
    threads = None if workers == 1 else max(1, (os.cpu_count() or 1) // workers)
    n_failed = sum(1 for r in records if r is not None and r.get("error"))
    bar = progress(total=n, desc="radiomics", disable=None if show_progress is None else not show_progress)
    bar.update(n_cached)
    try:
        for b, res in iter_cases(_extract_batch, tasks, jobs=jobs, executor=executor, scheduler=scheduler,
                                 initializer=_worker_init, initargs=(threads,)):
            crashed = not isinstance(res, list)
            if crashed:  # the worker itself failed: every case of the batch fails (not cached: may be transient)
                res = [{"case_id": rows[i]["case_id"], "features": None, "diagnostics": {}, "stage": "extract",
                        "error": f"worker error: {res}", "warnings": []} for i in batches[b]]
            for i, rec in zip(batches[b], res):
                records[i] = rec
                if not crashed:
                    cache.put(keys[i], rec)
                n_failed += bool(rec.get("error"))
            bar.update(len(res))
            bar.set_postfix(failed=n_failed, cached=n_cached, refresh=False)
    finally:
        bar.close()


def _write_tables(rows, records, out, diag_path, fail_path, meta_extra, manifest_path) -> RadiomicsResult:
    """Assemble and atomically write the feature, diagnostics and failures tables."""
    import pandas as pd

    from radlens.io.artifacts import provenance, write_failures, write_table

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
    data: dict[str, Any] = {"case_id": pd.Series(feat_ids, dtype=object)}
    for k in columns:
        data[k] = np.array([f.get(k, np.nan) for f in feat_vals], dtype=np.float64)
    features = pd.DataFrame(data)
    diag = pd.DataFrame(diag_rows)
    for c in diag.columns[1:]:
        vals = diag[c].tolist()
        if all(v is None or isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
            diag[c] = pd.to_numeric(diag[c], errors="coerce").astype(float)
        else:
            diag[c] = pd.Series([None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)
                                 for v in vals], dtype=object)
    failures = pd.DataFrame(fails, columns=["case_id", "stage", "error"])
    meta = provenance("radiomics", config={k: v for k, v in meta_extra.items() if k != "run_key"},
                      inputs={"manifest": manifest_path} if manifest_path is not None else None,
                      run_key=meta_extra["run_key"], n_cases=len(rows), n_features=len(columns),
                      n_failed=len(fails))
    # the feature table last: its run_key marks the set complete
    write_table(diag, diag_path, meta)
    write_failures(fail_path, fails)
    write_table(features, out, meta)
    if fails:
        log.warning("radiomics: %d of %d cases failed; see %s", len(fails), len(rows), fail_path)
    return RadiomicsResult(features, diag, failures, out, diag_path, fail_path, 0, 0)
