"""Everything radlens does *inside* pyradiomics' world: parameters, extractors, one case.

* :func:`load_params` / :func:`validate_params`: a params file or dict, validated by pyradiomics
  itself (``RadiomicsFeatureExtractor(params)``), hashed for the cache;
* :func:`extract_case`: load one manifest row and run ``extractor.execute`` on it, never raising
  for a case problem (the failure is returned as a record);
* :func:`fast_diagnostics`: pyradiomics-style diagnostics computed with numpy.

Speed-ups that leave every feature value unchanged (the tests require bit-identical values to
``RadiomicsFeatureExtractor(params).execute(image_path, mask_path)``) are applied only inside
:class:`_QuietPyradiomics`, which also keeps pyradiomics' logging off stderr, and are undone on exit.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from radlens.errors import ConfigError
from radlens.radiomics.cases import (  # noqa: F401  (re-exported: callers and tests use them from here)
    ArrayCrop,
    _crop_to_roi,
    _roi_box,
    fast_diagnostics,
    load_engine_case,
)
from radlens.radiomics.params_memo import (  # noqa: F401  (re-exported: callers and tests use them from here)
    lazy_pykwalify,
    new_extractor as _new_extractor,
    params_memo_dir,
    validated_once as _validated_once,
)

log = logging.getLogger(__name__)

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
    text: bytes | None = None  # the file's bytes, for workers on machines that lack the file

    def local_source(self):
        """``source`` usable on this machine: a Dask worker elsewhere gets a copy of the file's
        bytes in a temporary file of the same suffix (pyradiomics then reads it exactly the same)."""
        if not isinstance(self.source, str) or os.path.isfile(self.source) or self.text is None:
            return self.source
        import tempfile

        path = Path(tempfile.gettempdir()) / f"radlens-params-{self.hash[:16]}{Path(self.source).suffix}"
        if not path.exists():
            tmp = path.with_name(path.name + f".{os.getpid()}")
            tmp.write_bytes(self.text)
            os.replace(tmp, path)
        return str(path)


def _crop_safe(settings: Mapping, image_types: Mapping) -> bool:
    """True when cropping the image to the ROI box first cannot change any feature: only the
    Original image (filters look outside the ROI), no normalisation (uses the whole image), no
    resampling (the grid would be computed from the crop)."""
    return (set(image_types) <= _CROP_SAFE_IMAGE_TYPES and not settings.get("normalize", False)
            and settings.get("resampledPixelSpacing") is None)


class _QuietPyradiomics:
    """Context: pyradiomics logs go to radlens' tables, not to stderr, and the speed-ups below are
    active. Re-entrant and thread-safe (Dask threads): the first entry applies, the last exit
    restores what was there before."""

    _lock = __import__("threading").Lock()
    _depth = 0
    _saved: tuple = ()

    def __enter__(self):
        with _QuietPyradiomics._lock:
            if _QuietPyradiomics._depth == 0:
                _QuietPyradiomics._saved = self._apply()
            _QuietPyradiomics._depth += 1
        return self

    def __exit__(self, *exc):
        with _QuietPyradiomics._lock:
            _QuietPyradiomics._depth -= 1
            if _QuietPyradiomics._depth == 0:
                self._restore(_QuietPyradiomics._saved)
        return False

    @staticmethod
    def _apply() -> tuple:
        from radiomics import imageoperations  # (pyradiomics adds its stderr handler at import)
        from radiomics.base import RadiomicsFeaturesBase

        lg, kw = logging.getLogger("radiomics"), logging.getLogger("pykwalify")
        saved = (lg.level, lg.propagate, [(h, h.level) for h in lg.handlers], kw.level,
                 RadiomicsFeaturesBase.__dict__["getFeatureNames"], imageoperations.cropToTumorMask)
        for h in lg.handlers:
            if h is not _COLLECTOR:
                h.setLevel(logging.CRITICAL + 1)
        lg.setLevel(logging.WARNING)  # no INFO/DEBUG records are even created
        lg.propagate = False
        kw.setLevel(logging.WARNING)
        # pyradiomics re-derives every feature class's feature list with inspect.getmembers each
        # time a class is instantiated (7x per case, ~10 % of a small ROI's time); the list
        # depends only on the class, so radlens memoises it while it extracts.
        RadiomicsFeaturesBase.getFeatureNames = _memo_feature_names(saved[4])
        # It also crops image and mask to the ROI's box with SimpleITK (4 filter runs per case); on
        # an image radlens already cropped to that box that crop is the identity, so it is skipped.
        imageoperations.cropToTumorMask = _skip_identity_crop(saved[5])
        return saved

    @staticmethod
    def _restore(saved: tuple) -> None:
        from radiomics import imageoperations
        from radiomics.base import RadiomicsFeaturesBase

        level, prop, handlers, kwlevel, names, crop = saved
        lg = logging.getLogger("radiomics")
        lg.setLevel(level)
        lg.propagate = prop
        for h, hl in handlers:
            h.setLevel(hl)
        logging.getLogger("pykwalify").setLevel(kwlevel)
        RadiomicsFeaturesBase.getFeatureNames = names
        imageoperations.cropToTumorMask = crop


_FEATURE_NAMES: dict[type, dict] = {}


def _memo_feature_names(orig: classmethod) -> classmethod:
    cache = _FEATURE_NAMES

    def getFeatureNames(cls):
        names = cache.get(cls)
        if names is None:
            names = cache[cls] = orig.__func__(cls)
        return dict(names)

    return classmethod(getFeatureNames)


def _skip_identity_crop(orig):
    def cropToTumorMask(imageNode, maskNode, boundingBox, **kwargs):
        pad = kwargs.get("padDistance", 0)
        size = np.array(maskNode.GetSize())
        lo = np.maximum(np.asarray(boundingBox[0::2]) - pad, 0)
        hi = np.maximum(size - np.asarray(boundingBox[1::2]) - pad - 1, 0)
        if not lo.any() and not hi.any() and imageNode.GetSize() == maskNode.GetSize():
            return imageNode, maskNode  # what CropImageFilter with zero crop sizes returns (as a copy)
        return orig(imageNode, maskNode, boundingBox, **kwargs)

    return cropToTumorMask


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
        text = p.read_bytes()
        prm = Params(str(p.resolve()), bytes_hash(text), text=text)
    else:
        prm = Params(dict(params), obj_hash(dict(params)))
    return validate_params(prm) if validate else prm


def validate_params(prm: Params) -> Params:
    """``prm`` with ``spec`` filled by pyradiomics (raises :class:`ConfigError` if it rejects them).

    Parameters with the same hash (file bytes or dict) validated before in this process reuse that
    extractor (pyradiomics' schema validation parses YAML in pure Python: tens of ms per run)."""
    ex = _BASE.get(prm.hash)
    if ex is None:
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
    return Params(prm.source, prm.hash, spec, prm.text)


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
    import sys

    nrrd = sys.modules.get("radlens.io.nrrd")
    if nrrd is not None:  # a forked worker: writing into the parent's reading buffers (tens of MB
        # for a CT volume) would copy every page (copy-on-write) in both; this process's copies of
        # them are given back, so the parent writes into its own without copying either
        nrrd.drop_inherited_buffers()


def _extractors(params: Params, diagnostics: str):
    """(2D extractor, 3D extractor, crop_safe), built once per process and parameter set (and
    built in the parent before workers are forked, so they inherit them ready to use)."""
    import copy

    key = (params.hash, diagnostics)
    if key not in _WORKER:
        base = _BASE.get(params.hash)
        if base is None:
            with _QuietPyradiomics():
                base = _BASE[params.hash] = _new_extractor(params.local_source())
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


def _part_extractor(ex, part):
    """``ex`` restricted to one part of a split case: ``part = (image types, with_shape)``."""
    key = (id(ex), tuple(part[:2]))
    sub = _PARTS.get(key)
    if sub is None:
        import copy

        types, with_shape = part[0], part[1]
        sub = copy.deepcopy(ex)
        sub.enabledImagetypes = {t: v for t, v in ex.enabledImagetypes.items() if t in types}
        if not with_shape:
            sub.enabledFeatures.pop("shape", None)
            sub.enabledFeatures.pop("shape2D", None)
        _PARTS[key] = sub
    return sub


_PARTS: dict[Any, Any] = {}


def _engine_split(ex, engine: str, crop_safe: bool):
    """(classes radlens' engine computes {class: names}, extractor for the rest) for ``ex``."""
    if engine != "radlens" or not crop_safe:
        return {}, ex
    key = (id(ex), "engine")
    got = _PARTS.get(key)
    if got is None:
        import copy

        from radlens.radiomics import engine as eng

        classes = eng.engine_classes(ex.settings, ex.enabledFeatures, ex.enabledImagetypes)
        rest = copy.deepcopy(ex)
        for c in classes:
            rest.enabledFeatures.pop(c)
        got = _PARTS[key] = ({c: ex.enabledFeatures[c] for c in classes}, rest)
    return got


def run_features(ex, image, mask, rec: dict[str, Any], *, engine: str = "radlens", crop_safe: bool = True) -> dict:
    """Features of ``ex``'s classes on (image, mask): radlens' engine for the classes it covers
    (image and mask already cropped to the ROI), pyradiomics for the others, merged in the order
    one ``execute`` gives them. pyradiomics' diagnostics go to ``rec['diagnostics']``, and which
    classes each engine computed to ``radlens_engine`` / ``radlens_pyradiomics``. Raises what
    pyradiomics raises for a bad ROI. ``image`` may be an :class:`ArrayCrop` (``mask`` None):
    SimpleITK images are then built only if pyradiomics computes something."""
    eng_classes, ex_rest = _engine_split(ex, engine, crop_safe)
    crop = image if isinstance(image, ArrayCrop) else None
    if crop is not None and (not eng_classes or ex_rest.enabledFeatures):
        image, mask = crop.images()
        crop = None
    if eng_classes and not ex_rest.enabledFeatures:  # nothing left for pyradiomics: its ROI checks only
        from radlens.radiomics import engine as eng

        eng.check_roi(crop.roi if crop is not None else sitk_array(mask) == 1, ex.settings)
        result = {}
    else:
        result = ex_rest.execute(image, mask, label=1)  # also pyradiomics' ROI checks (size, dimensions)
    feats: dict[str, float] = {}
    for k, v in result.items():
        if k.startswith("diagnostics_"):
            rec["diagnostics"][k] = _diag_value(v)
        else:
            feats[k] = float(v)
    if eng_classes:
        from radlens.radiomics import engine as eng

        try:
            if crop is not None:
                feats.update(eng.compute_arrays(crop.arr, crop.roi, crop.spacing, ex.settings, eng_classes))
            else:
                feats.update(eng.compute(image, mask, ex.settings, eng_classes))
        except Exception as exc:  # never lose a case to the engine: pyradiomics computes those classes
            log.warning("radlens engine failed on case %s (%s: %s); pyradiomics computes %s instead",
                        rec.get("case_id"), type(exc).__name__, exc, ", ".join(eng_classes))
            rec["warnings"].append(f"radlens engine failed ({type(exc).__name__}: {exc}); pyradiomics used")
            if crop is not None:
                image, mask = crop.images()
            return run_features(ex, image, mask, rec, engine="pyradiomics", crop_safe=crop_safe)
        feats = order_features(feats, ex.enabledFeatures)
    rec["diagnostics"]["radlens_engine"] = ",".join(eng_classes) or None
    rec["diagnostics"]["radlens_pyradiomics"] = ",".join(c for c in ex.enabledFeatures if c not in eng_classes) or None
    return feats


def warm_engine(params: Params, diagnostics: str, engine: str) -> None:
    """Build what every case needs from the engine (class split, feature names) once, in the
    parent, before workers are forked (else each worker pays it)."""
    ex2, ex3, crop_safe = _extractors(params, diagnostics)
    if engine != "radlens" or diagnostics != "fast":
        return
    from radlens.radiomics import engine as eng

    for ex in (ex2, ex3):
        for cls in _engine_split(ex, engine, crop_safe)[0]:
            eng.feature_names(cls)


def sitk_array(img) -> np.ndarray:
    import SimpleITK as sitk

    return sitk.GetArrayViewFromImage(img)


def order_features(feats: Mapping[str, float], enabled: Mapping[str, Any]) -> dict[str, float]:
    """Features of the Original image in the order one ``execute`` gives them: shape, shape2D,
    then the other classes in params order (stable within a class)."""
    key = (tuple(feats), tuple(enabled))
    order = _ORDER.get(key)
    if order is None:  # the same names in the same order for every case of a run: sort once
        rank = {"shape": -2, "shape2D": -1, **{c: i for i, c in enumerate(enabled) if not c.startswith("shape")}}
        order = sorted(feats, key=lambda k: rank.get(k.split("_")[1], len(rank)))
        if len(_ORDER) > 64:
            _ORDER.clear()
        _ORDER[key] = order
    return {k: feats[k] for k in order}


_ORDER: dict[tuple, list] = {}


def extract_case(row: Mapping[str, Any], params: Params, *, diagnostics: str = "fast",
                 resample_mask: bool = False, part: tuple | None = None, engine: str = "radlens") -> dict[str, Any]:
    """Extract one case; never raises for a case problem.

    ``part = (image types, with_shape)`` extracts only those image types (and the shape classes
    and the diagnostics when ``with_shape``; ``(image types, False, True)``: every class but the
    shape classes, with the diagnostics): one piece of a case split across workers (joined by
    :func:`radlens.radiomics.schedule.merge_parts`). ``engine='radlens'`` computes the classes
    radlens' engine covers with it (:mod:`radlens.radiomics.engine`; fast diagnostics and
    cropping-safe params only), ``'pyradiomics'`` leaves every class to pyradiomics.

    Returns
    -------
    dict
        ``case_id``, ``features`` (dict name -> float, or None on failure), ``diagnostics`` (dict),
        ``stage`` and ``error`` (None on success), ``warnings`` (list of pyradiomics warnings).
    """
    from radlens.errors import CaseError

    case_id = str(row.get("case_id"))
    rec: dict[str, Any] = {"case_id": case_id, "features": None, "diagnostics": {}, "stage": None,
                           "error": None, "warnings": []}
    ex2, ex3, crop_safe = _extractors(params, diagnostics)
    fast = diagnostics == "fast" and crop_safe and engine == "radlens"
    try:
        case, reader = load_engine_case(row, resample_mask=resample_mask, fast=fast)
    except CaseError as exc:
        rec.update(stage="load", error=exc.message)
        return rec
    rec["warnings"].extend(case.warnings)  # what loading assumed (pixel-grid mask, accepted slice gaps, ...)
    ex = ex2 if case.ndim == 2 else ex3
    if part is not None:
        ex = _part_extractor(ex, part)
    lg = logging.getLogger("radiomics")
    if _COLLECTOR not in lg.handlers:
        lg.addHandler(_COLLECTOR)
    _COLLECTOR.local.buf = rec["warnings"]
    try:
        if diagnostics == "fast":
            box = case.box if hasattr(case, "roi_box") else _roi_box(case.roi)
            if part is None or part[-1]:  # (types, with_shape[, with_diagnostics])
                rec["diagnostics"] = fast_diagnostics(case, box)
                if reader is not None:  # which reader loaded the files, and why SimpleITK when it did
                    rec["diagnostics"]["radlens_reader"] = reader
            if crop_safe and engine == "radlens":
                image, mask = ArrayCrop(case, box), None  # SimpleITK images only if pyradiomics needs them
            else:
                image, mask = _crop_to_roi(case, box) if crop_safe else (case.image, case.mask)
        else:
            image, mask = case.image, case.mask
        feats = run_features(ex, image, mask, rec, engine=engine if diagnostics == "fast" else "pyradiomics",
                             crop_safe=crop_safe)
    except Exception as exc:  # pyradiomics signals bad ROIs with ValueError/AssertionError/RuntimeError
        msg = str(exc).strip().splitlines()
        rec.update(stage="extract", error=f"pyradiomics: {type(exc).__name__}: {msg[-1] if msg else ''}".strip())
        return rec
    finally:
        _COLLECTOR.local.buf = None
    rec["features"] = feats
    return rec if part is not None else check_features(rec)  # a part is judged once the parts are merged


def check_features(rec: dict[str, Any]) -> dict[str, Any]:
    """Turn a record whose features are empty or all NaN into an ``extract`` failure."""
    feats = rec.get("features")
    if rec.get("error") or feats is None:
        return rec
    if not feats:
        rec.update(stage="extract", features=None, error="pyradiomics computed no features: enable feature "
                   "classes / image types in the params file (for 2D images, 'shape' is 3D-only: use 'shape2D')")
    elif all(v != v for v in feats.values()):  # every value NaN (float NaN is the only x != x)
        rec.update(stage="extract", features=None,
                   error=f"all {len(feats)} features are NaN (degenerate ROI or intensities)")
    return rec


def _extract_batch(task: tuple) -> list[dict[str, Any]]:
    rows, params, diagnostics, resample_mask, part, engine = task
    with _QuietPyradiomics():
        return [extract_case(r, params, diagnostics=diagnostics, resample_mask=resample_mask, part=part,
                             engine=engine) for r in rows]
