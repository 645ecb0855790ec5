"""A case as numpy arrays, read without SimpleITK: the fast path of radiomics extraction.

:func:`load_array_case` loads a manifest row whose image and mask are NRRD files that
:func:`radlens.io.nrrd.read_nrrd` reads (attached header, raw or gzip, scalar pixels, named
space) and applies **the same rules** as :func:`radlens.io.images.load_case`: the mask must be a
label map (:func:`~radlens.io.masks.label_map_problem`), the ROI's label is checked or inferred
(:func:`~radlens.io.masks.infer_label`), image and mask grids must agree within
:data:`~radlens.io.masks.GEOMETRY_RTOL` (:func:`~radlens.io.masks.mask_grid_decision`, same
messages). It keeps only what radiomics needs: the image pixels as stored, the ROI's bounding box
and the ROI cropped to it (the full-size boolean mask of a CT volume is never built).

It returns ``None`` with the reason when the row is outside that pattern (other formats, a box
ROI, a mask that must be placed or resampled onto the image grid, a file the NRRD reader does not
take); the caller then loads the case with :func:`~radlens.io.images.load_case`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from radlens.errors import CaseError, InputError
from radlens.io.masks import Grid, infer_label, label_map_problem, mask_grid_decision


@dataclass
class ArrayCase:
    """One ROI of one image as arrays.

    Attributes
    ----------
    case_id : str
    pixels : ndarray, shape (H, W) or (D, H, W)
        The image as stored (dtype kept, native byte order; may be read-only).
    grid : Grid
        Size, spacing, origin, direction as SimpleITK reports them.
    box : (list of int, list of int)
        ``(lo, hi)``: the ROI's bounding box in numpy axis order (``hi`` exclusive).
    roi_box : ndarray of bool
        The ROI inside ``box`` (shape ``hi - lo``).
    label : int
        The mask value taken as the ROI.
    reader : str
        How the files were decoded (e.g. ``"nrrd/libdeflate"``), for the diagnostics.
    """

    case_id: str
    pixels: np.ndarray
    grid: Grid
    box: tuple
    roi_box: np.ndarray
    label: int
    reader: str
    row: dict = field(default_factory=dict, repr=False)
    warnings: list = field(default_factory=list)

    @property
    def ndim(self) -> int:
        return self.pixels.ndim

    @property
    def spacing(self) -> tuple[float, ...]:
        return tuple(self.grid.spacing)

    def box_origin(self) -> tuple[float, ...]:
        """Physical position of the box's first voxel (``origin + direction @ (lo * spacing)``, as
        SimpleITK's ``TransformIndexToPhysicalPoint``)."""
        d = len(self.grid.size)
        idx = np.asarray(self.box[0][::-1], float) * np.asarray(self.grid.spacing, float)
        m = np.asarray(self.grid.direction, float).reshape(d, d)
        return tuple(float(v) for v in np.asarray(self.grid.origin, float) + m @ idx)


def _get(row: Mapping[str, Any], key: str):
    v = row.get(key) if hasattr(row, "get") else None
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return None
    return v


def _label_values(m: np.ndarray, reuse: bool = False):
    """(sorted distinct values, flat indices of the non-zero voxels, their values) of an integer
    label map in one pass over the volume (``numpy.unique`` on the whole map sorts every voxel)."""
    from radlens.io.nrrd import buffer

    flat = m.reshape(-1)
    ne = buffer("mask/nonzero", flat.size).view(bool) if reuse else None
    nz = np.flatnonzero(np.not_equal(flat, 0, out=ne))  # nonzero() of a boolean array: ~15x faster than of int32
    vals = flat[nz]
    uniq = np.unique(vals)
    if nz.size < flat.size:  # background present
        uniq = np.unique(np.concatenate([np.zeros(1, m.dtype), uniq]))
    return uniq, nz, vals


def roi_in_box(m: np.ndarray, nz: np.ndarray, nzv: np.ndarray, label: int):
    """``(lo, hi, roi)``: the bounding box (numpy axis order, ``hi`` exclusive) of the voxels of label
    map ``m`` equal to ``label`` (non-zero, present), and the ROI inside it (bool, shape ``hi - lo``);
    ``nz``, ``nzv``: the flat indices and values of ``m``'s non-zero voxels (:func:`_label_values`)."""
    idx = np.unravel_index(nz[nzv == label], m.shape)
    lo = [int(a.min()) for a in idx]
    hi = [int(a.max()) + 1 for a in idx]
    return lo, hi, m[tuple(slice(a, b) for a, b in zip(lo, hi))] == label


def load_array_case(row: Mapping[str, Any], *, resample_mask: bool | None = None,
                    reuse: bool = False) -> tuple[ArrayCase | None, str]:
    """Load a manifest row as an :class:`ArrayCase`, or say why not.

    Parameters
    ----------
    row : mapping
        ``case_id``, ``image``, ``mask`` and optional ``label`` (as for
        :func:`radlens.io.images.load_case`).
    resample_mask : bool or None
        As for ``load_case``: only named in the error message of a grid mismatch; a mismatch that
        ``load_case`` would resample or place on the pixel grid returns ``(None, reason)``.
    reuse : bool, default False
        Read into this thread's reusable buffers (:func:`radlens.io.nrrd.read_nrrd`'s ``reuse``):
        the case's ``pixels`` are then valid only until the next ``load_array_case(...,
        reuse=True)`` of this thread (for a loop that is done with a case before loading the next).

    Returns
    -------
    (ArrayCase or None, str)
        The case and ``""``, or None and why the SimpleITK path must load it.

    Raises
    ------
    CaseError
        ``CaseError(case_id, "load", msg)``: the same problems, in the same words, as ``load_case``
        (mask not a label map, label absent or 0, grids that differ).
    """
    from radlens.io.nrrd import is_nrrd, read_nrrd, why_not

    case_id = str(_get(row, "case_id") or "?")
    image_path, mask_path = _get(row, "image"), _get(row, "mask")
    if image_path is None or mask_path is None or not str(mask_path).strip():
        return None, "no mask file (box ROI)"
    if not (is_nrrd(image_path) and is_nrrd(mask_path)):
        return None, "image or mask is not an NRRD file"
    if not Path(str(image_path)).is_file() or not Path(str(mask_path)).is_file():
        return None, "file missing (load_case reports it)"
    mask = read_nrrd(mask_path, reuse="mask" if reuse else None)
    if mask is None:
        return None, f"mask: {why_not(mask_path)}"
    m = mask.array
    if m.dtype.kind not in "iu":
        return None, f"mask of dtype {m.dtype} (not an integer label map)"
    image = read_nrrd(image_path, reuse="image" if reuse else None)
    if image is None:
        return None, f"image: {why_not(image_path)}"
    try:
        given = _get(row, "label")
        vals, nz, nzv = _label_values(m, reuse)
        prob = label_map_problem(vals, mask_path, label_given=given is not None)
        if prob is not None:
            raise CaseError(case_id, "load", prob)
        label = infer_label(vals, given, mask_path)
        action, text = mask_grid_decision(image.grid, mask.grid, image_path, mask_path, resample_mask)
    except InputError as exc:
        raise CaseError(case_id, "load", str(exc)) from exc
    if action == "error":
        raise CaseError(case_id, "load", text)
    if action != "same":
        return None, f"mask needs {action.replace('_', ' ')} onto the image grid"
    lo, hi, roi_box = roi_in_box(m, nz, nzv, label)  # label 0 is refused by infer_label: not empty
    return ArrayCase(case_id, image.array, image.grid, (lo, hi), roi_box, int(label),
                     f"nrrd/{image.inflate}", row=dict(row.items()) if hasattr(row, "items") else dict(row)), ""
