"""The ``shape`` unit of a split case (:mod:`radlens.radiomics.schedule`): the shape classes of a
case from its mask alone, so they run on one worker while another reads the image."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from radlens.radiomics.pyrad import Params


def mask_shape(row: Mapping[str, Any], params: Params) -> dict[str, Any]:
    """The shape classes of a case from its mask alone (radlens' engine; shape does not depend
    on the image): a unit that runs while another worker reads the image. The mask is read as
    :func:`radlens.io.images.load_case` reads it; load problems are reported by the ``prep`` unit."""
    import SimpleITK as sitk

    from radlens.io.images import _read_raw, _squeeze
    from radlens.radiomics import engine as eng
    from radlens.radiomics.pyrad import _extractors, _roi_box

    rec: dict[str, Any] = {"case_id": str(row.get("case_id")), "features": None, "diagnostics": {},
                           "stage": None, "error": None, "warnings": []}
    try:
        got = _mask_roi_nrrd(row)
        if got is None:  # not an NRRD the numpy reader takes: SimpleITK, as load_case reads it
            m = _squeeze(_read_raw(Path(row["mask"]), "mask"))
            if m.GetNumberOfComponentsPerPixel() > 1:
                m = sitk.VectorIndexSelectionCast(m, 0)
            arr = sitk.GetArrayViewFromImage(m)
            label = row.get("label")
            if label is None or (isinstance(label, float) and np.isnan(label)):
                label = 1
                if not (arr == 1).any():
                    vals = np.unique(arr)
                    if vals[vals != 0].size == 1:
                        label = vals[vals != 0][0]
            roi = arr == int(label)
            lo, hi = _roi_box(roi)
            sub, spacing = roi[tuple(slice(a, b) for a, b in zip(lo, hi))], m.GetSpacing()
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
    this thread's reused ``shape-mask`` buffers; no SimpleITK image, no full-size boolean mask),
    or None when that reader does not take the file or the label is not plain (the caller then
    reads it with SimpleITK; the ``prep`` unit reports load problems)."""
    from radlens.io.arraycase import _label_values
    from radlens.io.masks import infer_label
    from radlens.io.nrrd import is_nrrd, read_nrrd

    path = row.get("mask")
    if not (isinstance(path, (str, os.PathLike)) and is_nrrd(path)):
        return None
    vol = read_nrrd(path, reuse="shape-mask")
    if vol is None or vol.array.dtype.kind not in "iu":
        return None
    m = vol.array
    try:
        vals, nz, nzv = _label_values(m, True)
        given = row.get("label")
        if given is not None and isinstance(given, float) and np.isnan(given):
            given = None
        label = infer_label(vals, given, path)
    except Exception:
        return None
    sel = nz[nzv == label]
    if not sel.size:
        return None
    idx = np.unravel_index(sel, m.shape)
    sl = tuple(slice(int(a.min()), int(a.max()) + 1) for a in idx)
    return m[sl] == label, tuple(vol.grid.spacing)
