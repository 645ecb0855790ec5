"""The two stages of a case split by feature class (:mod:`radlens.radiomics.schedule`): ``prep``
(load, diagnose, crop to the ROI's box) and ``classes`` (some feature classes on that crop)."""
from __future__ import annotations

import logging
from typing import Any, Mapping

import numpy as np

from radlens.radiomics.pyrad import Params


def prepare_case(row: Mapping[str, Any], params: Params, *, resample_mask: bool = False, finish_below: int = 0,
                 skip_shape: bool = False, engine: str = "radlens") -> dict[str, Any]:
    """First stage of a case split by feature class: load it, compute the (fast) diagnostics and
    crop image and mask to the ROI's box. Only for parameters where cropping is safe.

    When the ROI's box has fewer than ``finish_below`` voxels, the classes are cheap: they are
    computed here (all enabled classes but the shape classes when ``skip_shape``) and returned
    in ``part`` (what :func:`extract_classes` returns for them), with no crop.

    Returns
    -------
    dict
        A failure record (``stage='load'``), or a record without features with ``ndim`` and
        either ``part`` (see above; ``crop`` None) or ``crop``: what :func:`extract_classes`
        needs, ``(image array, spacing, direction, origin, ROI array)`` of the box (a few KB to
        MB: cheap to send between processes).
    """
    from radlens.errors import CaseError
    from radlens.radiomics.pyrad import _crop_to_roi, _roi_box, fast_diagnostics, load_engine_case

    rec: dict[str, Any] = {"case_id": str(row.get("case_id")), "features": None, "diagnostics": {},
                           "stage": None, "error": None, "warnings": []}
    try:  # as extract_case loads it (numpy NRRD reader where it applies)
        case, reader = load_engine_case(row, resample_mask=resample_mask, fast=engine == "radlens")
    except CaseError as exc:
        rec.update(stage="load", error=exc.message)
        return rec
    import SimpleITK as sitk

    rec["warnings"].extend(case.warnings)  # what loading assumed, as extract_case reports it
    box = case.box if hasattr(case, "roi_box") else _roi_box(case.roi)
    rec["diagnostics"] = fast_diagnostics(case, box)
    if reader is not None:
        rec["diagnostics"]["radlens_reader"] = reader
    image, mask = _crop_to_roi(case, box)
    rec["crop"] = (sitk.GetArrayFromImage(image), image.GetSpacing(), image.GetDirection(), image.GetOrigin(),
                   sitk.GetArrayViewFromImage(mask).astype(bool))
    rec["ndim"] = rec["crop"][0].ndim
    rec["part"] = None
    if rec["crop"][4].size < finish_below:
        from radlens.radiomics.pyrad import _extractors

        ex2, ex3, _ = _extractors(params, "fast")
        classes = tuple(c for c in (ex2 if rec["ndim"] == 2 else ex3).enabledFeatures
                        if not (skip_shape and c.startswith("shape")))
        rec["part"] = extract_classes(rec["case_id"], rec["crop"], params, classes, engine=engine)
        rec["crop"] = None
    return rec


def extract_classes(case_id: str, crop: tuple, params: Params, classes: tuple[str, ...], *,
                    engine: str = "radlens") -> dict[str, Any]:
    """Second stage of a split case: the features of ``classes`` on a :func:`prepare_case` crop
    (``diagnostics='fast'``). Never raises for a case problem."""
    import SimpleITK as sitk

    arr, spacing, direction, origin, roi = crop
    image = sitk.GetImageFromArray(arr)
    image.SetSpacing(spacing)
    image.SetDirection(direction)
    image.SetOrigin(origin)
    mask = sitk.GetImageFromArray(roi.astype(np.uint8))
    mask.CopyInformation(image)
    from radlens.radiomics.pyrad import _COLLECTOR, _PARTS, _extractors, run_features

    ex2, ex3, _ = _extractors(params, "fast")
    base = ex2 if arr.ndim == 2 else ex3
    key = (id(base), "classes", classes)
    ex = _PARTS.get(key)
    if ex is None:
        import copy

        ex = copy.deepcopy(base)
        ex.enabledFeatures = {c: v for c, v in base.enabledFeatures.items() if c in classes}
        _PARTS[key] = ex
    rec: dict[str, Any] = {"case_id": case_id, "features": None, "diagnostics": {}, "stage": None, "error": None,
                           "warnings": []}
    lg = logging.getLogger("radiomics")
    if _COLLECTOR not in lg.handlers:
        lg.addHandler(_COLLECTOR)
    _COLLECTOR.local.buf = rec["warnings"]
    try:
        rec["features"] = run_features(ex, image, mask, rec, engine=engine)
    except Exception as exc:
        msg = str(exc).strip().splitlines()
        rec.update(stage="extract", error=f"pyradiomics: {type(exc).__name__}: {msg[-1] if msg else ''}".strip())
    finally:
        _COLLECTOR.local.buf = None
    return rec
