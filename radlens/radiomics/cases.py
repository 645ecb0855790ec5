"""One case made ready for radlens' engine: loading (numpy NRRD reader or SimpleITK), the ROI's
box, the crop and radlens' fast diagnostics.

* :func:`load_engine_case`: the case of a manifest row and which reader loaded it (the numpy NRRD
  reader of :mod:`radlens.io.arraycase` where it applies, else :func:`radlens.io.images.load_case`);
* :func:`fast_diagnostics`: pyradiomics-style diagnostics computed with numpy;
* :class:`ArrayCrop` / :func:`_crop_to_roi`: image and ROI cropped to the ROI's box, as arrays or
  SimpleITK images.

They accept both kinds of case: a :class:`radlens.io.images.Case` (SimpleITK images) and a
:class:`radlens.io.arraycase.ArrayCase` (arrays, the ROI already cropped to its box).
:mod:`radlens.radiomics.pyrad` re-exports them.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np


def _roi_box(roi: np.ndarray) -> tuple[list[int], list[int]]:
    """(lo, hi) array-order bounds of a non-empty boolean ROI: one projection per axis (much
    cheaper than ``np.nonzero`` on a large volume)."""
    lo, hi = [], []
    for ax in range(roi.ndim):
        prof = np.flatnonzero(roi.any(axis=tuple(a for a in range(roi.ndim) if a != ax)))
        lo.append(int(prof[0]))
        hi.append(int(prof[-1]) + 1)
    return lo, hi


def _crop_to_roi(case, box=None):
    """Image and mask cropped to the ROI's bounding box (same physical positions and spacing)."""
    import SimpleITK as sitk

    if hasattr(case, "roi_box"):  # an ArrayCase (radlens.io.arraycase): no SimpleITK image yet
        sl = tuple(slice(a, b) for a, b in zip(*case.box))
        image = sitk.GetImageFromArray(np.ascontiguousarray(case.pixels[sl]))
        image.SetSpacing(case.grid.spacing)
        image.SetDirection(case.grid.direction)
        image.SetOrigin(case.box_origin())
        mask = sitk.GetImageFromArray(case.roi_box.astype(np.uint8))
        mask.CopyInformation(image)
        return image, mask
    roi = case.roi
    lo, hi = box if box is not None else _roi_box(roi)
    sl = tuple(slice(a, b) for a, b in zip(lo, hi))
    image = sitk.GetImageFromArray(np.ascontiguousarray(sitk.GetArrayViewFromImage(case.image)[sl]))
    image.SetSpacing(case.image.GetSpacing())
    image.SetDirection(case.image.GetDirection())
    image.SetOrigin(case.image.TransformIndexToPhysicalPoint(lo[::-1]))
    mask = sitk.GetImageFromArray(roi[sl].astype(np.uint8))
    mask.CopyInformation(image)
    return image, mask


def image_mean(arr: np.ndarray) -> float:
    """``numpy.mean(arr)`` of an image, bit for bit, about twice as fast for 8/16-bit integers:
    the sum is exact in both (integer partial sums below 2**53 are exact in float64), so the
    row sums are taken in int32 and the total in int64, then divided by the voxel count once."""
    if arr.dtype.kind in "iu" and arr.dtype.itemsize <= 2 and 0 < arr.shape[-1] < (1 << 15) and arr.size < (1 << 36):
        return int(np.add.reduce(arr, axis=-1, dtype=np.int32).sum(dtype=np.int64)) / arr.size
    return float(np.mean(arr, dtype=np.float64))


def fast_diagnostics(case, box=None) -> dict[str, Any]:
    """pyradiomics-style diagnostics of the original image and ROI, computed with numpy.

    Same names and meaning as pyradiomics' ``additionalInfo`` entries (``diagnostics_Image-original_*``,
    ``diagnostics_Mask-original_*``); ``VolumeNum`` counts fully connected components on the ROI's
    box (scipy's labelling when scipy.ndimage is already imported, e.g. before a large run forks its
    workers; else, on a box of at most 4096 voxels, radlens' numpy union-find; else SimpleITK's,
    as pyradiomics does: importing scipy costs more than a few cases).
    """
    import sys

    import SimpleITK as sitk

    if hasattr(case, "roi_box"):  # an ArrayCase: pixels, grid and the ROI's box already there
        arr, grid = case.pixels, case.grid
        lo, hi = case.box
        sub = case.roi_box
    else:
        arr = sitk.GetArrayViewFromImage(case.image)  # native dtype, no copy (pyradiomics' numpy.mean(im_arr))
        grid = case.image
        lo, hi = box if box is not None else _roi_box(case.roi)
        sub = case.roi[tuple(slice(a, b) for a, b in zip(lo, hi))]
    nd = arr.ndim
    sl = tuple(slice(a, b) for a, b in zip(lo, hi))
    ndi = sys.modules.get("scipy.ndimage")
    if ndi is not None:
        n_comp = int(ndi.label(sub, structure=np.ones((3,) * nd, bool))[1])
    elif sub.size <= 4096:  # small box: numpy union-find (no thread start-up, ~0.1 ms)
        from radlens.radiomics.kernels.components import count_components

        n_comp = count_components(sub)
    else:
        cc = sitk.ConnectedComponentImageFilter()
        cc.FullyConnectedOn()
        cc.SetNumberOfThreads(1)  # a few-voxel box: thread start-up would cost more than the work
        cc.Execute(sitk.GetImageFromArray(sub.astype(np.uint8)))
        n_comp = int(cc.GetObjectCount())
    idx = np.nonzero(sub)
    vals = arr[sl][sub].astype(np.float64)
    com = tuple(float(np.mean(a)) + o for a, o in zip(idx, lo))[::-1]
    return {
        "diagnostics_Image-original_Dimensionality": f"{nd}D",
        "diagnostics_Image-original_Spacing": str(tuple(grid.GetSpacing())),
        "diagnostics_Image-original_Size": str(tuple(grid.GetSize())),
        "diagnostics_Image-original_Mean": image_mean(arr),
        "diagnostics_Image-original_Minimum": float(arr.min()),
        "diagnostics_Image-original_Maximum": float(arr.max()),
        "diagnostics_Mask-original_BoundingBox": str(tuple(lo[::-1]) + tuple(h - l for l, h in zip(lo, hi))[::-1]),
        "diagnostics_Mask-original_VoxelNum": int(idx[0].size),
        "diagnostics_Mask-original_VolumeNum": n_comp,
        "diagnostics_Mask-original_CenterOfMassIndex": str(com),
        "diagnostics_Mask-original_Mean": float(vals.mean()),
        "diagnostics_Mask-original_Minimum": float(vals.min()),
        "diagnostics_Mask-original_Maximum": float(vals.max()),
    }


class ArrayCrop:
    """Image and ROI cropped to the ROI's box as numpy arrays (no SimpleITK images: building one
    costs ~70 us, a view ~15 us, per image and case). ``images()`` builds the SimpleITK pair
    :func:`_crop_to_roi` gives, for what pyradiomics itself computes."""

    def __init__(self, case, box):
        self.case, self.box = case, box
        sl = tuple(slice(a, b) for a, b in zip(*box))
        if hasattr(case, "roi_box"):  # an ArrayCase: no SimpleITK image at all
            self.arr, self.roi, self.spacing = case.pixels[sl], case.roi_box, case.grid.spacing
            return
        import SimpleITK as sitk

        self.arr = sitk.GetArrayViewFromImage(case.image)[sl]
        self.roi = np.ascontiguousarray(case.roi[sl])
        self.spacing = case.image.GetSpacing()

    def images(self):
        return _crop_to_roi(self.case, self.box)


def load_engine_case(row: Mapping[str, Any], *, resample_mask: bool = False, fast: bool = True):
    """(case, reader) of a manifest row for extraction. ``fast`` (the engine covers the settings
    and the diagnostics are radlens'): NRRD image and mask are read by radlens' numpy reader
    (:func:`radlens.io.arraycase.load_array_case`, into this thread's reused buffers: done with
    the case before loading the next), ``reader`` e.g. ``"nrrd/libdeflate"``; anything it does
    not take is loaded by :func:`radlens.io.images.load_case` (SimpleITK) and ``reader`` says
    why (``"SimpleITK (<reason>)"``). Not ``fast``: ``load_case``, ``reader`` None.

    Raises
    ------
    CaseError
        A problem with the case (same messages through either reader).
    """
    from radlens.errors import CaseError
    from radlens.io.arraycase import load_array_case
    from radlens.io.images import load_case

    if not fast:
        return load_case(row, resample_mask=resample_mask), None
    try:
        case, why = load_array_case(row, resample_mask=resample_mask, reuse=True)
    except CaseError:
        raise
    except Exception as exc:  # never lose a case to the fast reader: SimpleITK reads it
        case, why = None, f"numpy reader failed: {type(exc).__name__}: {exc}"
    if case is not None:
        return case, case.reader
    return load_case(row, resample_mask=resample_mask), f"SimpleITK ({why})"
