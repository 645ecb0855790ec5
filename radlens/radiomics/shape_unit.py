"""The ``shape`` unit of a split case (:mod:`radlens.radiomics.schedule`): the shape classes of a
case from its mask alone, so they run on one worker while another reads the image."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping


from radlens.radiomics.pyrad import Params


def mask_shape(row: Mapping[str, Any], params: Params) -> dict[str, Any]:
    """The shape classes of a case from its mask alone (radlens' engine; shape does not depend
    on the image): a unit that runs while another worker reads the image. The mask is read as
    :func:`radlens.io.images.load_case` reads it; load problems are reported by the ``prep`` unit."""
    import SimpleITK as sitk

    from radlens.io.arraycase import _get, _label_values, roi_in_box
    from radlens.io.images import _read_raw, _squeeze
    from radlens.io.masks import infer_label
    from radlens.radiomics import engine as eng
    from radlens.radiomics.pyrad import _extractors

    rec: dict[str, Any] = {"case_id": str(row.get("case_id")), "features": None, "diagnostics": {},
                           "stage": None, "error": None, "warnings": []}
    try:
        got = _mask_roi_nrrd(row)
        if got is None:  # not an NRRD the numpy reader takes: SimpleITK, as load_case reads it
            m = _squeeze(_read_raw(Path(row["mask"]), "mask"))
            if m.GetNumberOfComponentsPerPixel() > 1:
                m = sitk.VectorIndexSelectionCast(m, 0)
            arr = sitk.GetArrayViewFromImage(m)
            vals, nz, nzv = _label_values(arr)
            sub = roi_in_box(arr, nz, nzv, infer_label(vals, _get(row, "label"), row["mask"]))[2]
            spacing = m.GetSpacing()
        else:
            sub, spacing = got
        ex2, ex3, _ = _extractors(params, "fast")
        ex = ex2 if sub.ndim == 2 else ex3
        classes = {c: ex.enabledFeatures[c] for c in ("shape", "shape2D") if c in ex.enabledFeatures}
        eng.check_roi(sub, ex.settings)
        rec["features"] = eng.compute_arrays(None, sub, spacing, ex.settings, classes)
        rec["diagnostics"]["radlens_engine"] = ",".join(classes) or None
    except Exception as exc:  # same message as the unsplit extraction's
        msg = str(exc).strip().splitlines()
        rec.update(stage="extract", error=f"pyradiomics: {type(exc).__name__}: {msg[-1] if msg else ''}".strip())
    return rec


def _mask_roi_nrrd(row: Mapping[str, Any]):
    """``(ROI cropped to its box, spacing)`` of a case's mask read by the numpy NRRD reader (into
    this thread's reused ``mask`` buffers, as whole-case loading reads it; no SimpleITK image, no
    full-size boolean mask), or None when that reader does not take the file or the label is not plain (the caller then
    reads it with SimpleITK; the ``prep`` unit reports load problems)."""
    from radlens.io.arraycase import _get, _label_values, roi_in_box
    from radlens.io.masks import infer_label
    from radlens.io.nrrd import is_nrrd, read_nrrd

    path = row.get("mask")
    if not (isinstance(path, (str, os.PathLike)) and is_nrrd(path)):
        return None
    vol = read_nrrd(path, reuse="mask")  # the slot whole-case loading uses: no second mask buffer
    if vol is None or vol.array.dtype.kind not in "iu":
        return None
    m = vol.array
    try:
        vals, nz, nzv = _label_values(m, True)
        label = infer_label(vals, _get(row, "label"), path)
    except Exception:
        return None
    return roi_in_box(m, nz, nzv, label)[2], tuple(vol.grid.spacing)
