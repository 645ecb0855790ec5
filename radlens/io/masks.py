"""Mask rules shared by case loading and the manifest check: a mask must be a label map, which
label is the ROI, and how a mask is put on its image's grid (pixel grid for formats without
geometry, nearest-neighbour resampling only where it applies)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from radlens.errors import InputError

#: Tolerance comparing image and mask grids: relative on spacing, absolute on direction cosines;
#: origins may differ by 1e-3 of the smallest spacing.
GEOMETRY_RTOL = 1e-4
#: Formats that store no geometry (spacing, origin, direction): SimpleITK reads them with spacing 1,
#: origin 0. Masks and images in these formats are matched by pixel grid, never resampled.
GEOMETRYLESS_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif")
#: Lossy formats: a mask stored this way holds compression artefacts around its edges.
LOSSY_SUFFIXES = (".jpg", ".jpeg")
#: A mask is a label map only if it holds at most this many distinct values (0 included); more
#: means an intensity image, an anti-aliased drawing or compression artefacts.
MAX_LABEL_VALUES = 32


def _fmt(values) -> str:
    """``(0.8, 0.8)``: plain numbers (no ``np.float64(...)``), at most 6 significant digits."""
    vals = [float(v) for v in np.ravel(values)]
    return "(" + ", ".join(f"{v:.6g}" for v in vals) + ")"


@dataclass(frozen=True)
class Grid:
    """An image's pixel grid without its pixels (the ``Get*`` methods of a SimpleITK image)."""

    size: tuple
    spacing: tuple
    origin: tuple
    direction: tuple

    def GetDimension(self) -> int:  # noqa: N802 - SimpleITK's names
        return len(self.size)

    def GetSize(self):  # noqa: N802
        return self.size

    def GetSpacing(self):  # noqa: N802
        return self.spacing

    def GetOrigin(self):  # noqa: N802
        return self.origin

    def GetDirection(self):  # noqa: N802
        return self.direction


def _size(img) -> str:
    return "×".join(str(int(v)) for v in img.GetSize())


def _geometry_problems(image, mask) -> list[str]:
    """Differences between the image's and the mask's grids, in words with plain numbers."""
    probs = []
    if image.GetDimension() != mask.GetDimension():
        return [f"dimension {image.GetDimension()}D image ({_size(image)}) vs {mask.GetDimension()}D mask "
                f"({_size(mask)})"]
    if (image.GetSize() == mask.GetSize() and image.GetSpacing() == mask.GetSpacing()
            and image.GetOrigin() == mask.GetOrigin() and image.GetDirection() == mask.GetDirection()):
        return probs  # identical grids (the usual case): nothing to compare within tolerances
    if image.GetSize() != mask.GetSize():
        probs.append(f"size {_size(image)} (image) vs {_size(mask)} (mask)")
    sp_i, sp_m = np.asarray(image.GetSpacing(), float), np.asarray(mask.GetSpacing(), float)
    if not np.allclose(sp_i, sp_m, rtol=GEOMETRY_RTOL, atol=0):
        probs.append(f"spacing {_fmt(sp_i)} (image) vs {_fmt(sp_m)} (mask)")
    o_i, o_m = np.asarray(image.GetOrigin(), float), np.asarray(mask.GetOrigin(), float)
    if not np.allclose(o_i, o_m, rtol=0, atol=1e-3 * float(sp_i.min())):
        probs.append(f"origin {_fmt(o_i)} (image) vs {_fmt(o_m)} (mask)")
    d_i, d_m = np.asarray(image.GetDirection(), float), np.asarray(mask.GetDirection(), float)
    if not np.allclose(d_i, d_m, rtol=0, atol=GEOMETRY_RTOL):
        probs.append(f"direction {_fmt(np.round(d_i, 4))} (image) vs {_fmt(np.round(d_m, 4))} (mask)")
    return probs


def is_geometryless(path) -> bool:
    """True for formats that store no spacing/origin/direction (PNG, JPEG, BMP, TIFF, GIF)."""
    return Path(str(path)).suffix.lower() in GEOMETRYLESS_SUFFIXES


def distinct_values(arr) -> np.ndarray:
    """``np.unique(arr)`` (sorted distinct values, same dtype), faster for integer masks.

    A mask is mostly background: for integer/bool arrays the minimum is found first and only the
    other pixels are sorted (~10x faster than ``np.unique`` on a 512x512x61 CT label map); float
    arrays go to ``np.unique`` as is (NaN handling unchanged).
    """
    a = np.asarray(arr)
    if a.dtype.kind not in "biu" or a.size == 0:
        return np.unique(a)
    flat = a.ravel()
    lo = flat.min()
    rest = flat[flat != lo]
    head = np.array([lo], dtype=a.dtype)
    return np.concatenate([head, np.unique(rest)]) if rest.size else head


def label_map_problem(values, path, *, lossy: bool | None = None, label_given: bool = False) -> str | None:
    """Why a mask's values do not form a label map, or None when they do.

    Parameters
    ----------
    values : array-like
        The distinct values of the mask (``np.unique`` of its pixels).
    path : path of the mask (named in the message; its suffix tells a lossy JPEG)
    lossy : bool, optional
        Treat the file as lossily compressed (default: from the suffix, ``.jpg``/``.jpeg``).
    label_given : bool
        The manifest names the ROI's label. A multi-label segmentation in a format with geometry
        (NIfTI, NRRD, ...; e.g. 100+ organs) is then accepted whatever its number of labels.

    Returns
    -------
    str or None
        A label map holds integer values only; a lossy (JPEG) mask at most 2 (background and one
        ROI value): compression leaves artefact values around every edge, so no label choice gives
        the drawn ROI; a mask in a drawing format (PNG, BMP, TIFF), or any mask whose label is left
        empty, at most :data:`MAX_LABEL_VALUES` (more: an anti-aliased drawing or an image).
    """
    v = np.asarray(values).ravel()
    name = Path(str(path)).name
    lossy = Path(str(path)).suffix.lower() in LOSSY_SUFFIXES if lossy is None else lossy
    if v.size <= 2 or (v.size <= MAX_LABEL_VALUES and not lossy):  # the usual case: cheap checks only
        if v.dtype.kind in "biu":
            return None
    shown = ", ".join(f"{x:.6g}" for x in v[:8].astype(float)) + (", ..." if v.size > 8 else "")
    if v.size and (not np.all(np.isfinite(v.astype(float))) or np.any(v.astype(float) != np.round(v.astype(float)))):
        frac = v[np.isfinite(v.astype(float)) & (v.astype(float) != np.round(v.astype(float)))]
        ex = f"{float(frac[0]):.6g}" if frac.size else "NaN/inf"
        return (f"mask {name!r} is not a label map: it holds non-integer values (e.g. {ex}; values found: {shown}), "
                "so no integer label selects its ROI; an 8-bit mask rescaled to [0, 1] or a probability map? "
                "Re-save it with integer labels (e.g. 0 = background, 1 = ROI: mask > 0, or round(mask * 255))")
    if lossy and v.size > 2:
        return (f"mask {name!r} is a lossy JPEG holding {v.size} distinct values ({shown}); compression changed "
                "the pixels around the ROI's edges, so no label gives the drawn ROI. Save masks losslessly "
                "(PNG, NIfTI, NRRD) and point the manifest's 'mask' column at that file")
    if v.size > MAX_LABEL_VALUES and (is_geometryless(path) or not label_given):
        fix = ("Give a label map (0 = background, integer ROI labels)" if is_geometryless(path) else
               "Give a label map (0 = background, integer ROI labels), or, for a multi-label segmentation, set "
               "the manifest's 'label' to the ROI's value")
        return (f"mask {name!r} holds {v.size} distinct values ({shown}), more than a label map's "
                f"{MAX_LABEL_VALUES}; an image, an anti-aliased drawing or a resampled mask was given as the mask? "
                + fix)
    return None


def infer_label(values, given, path) -> int:
    """The ROI label of a mask: ``given`` (checked), else 1, else the only non-zero value.

    Parameters
    ----------
    values : array-like   distinct values of the mask (a label map: see :func:`label_map_problem`)
    given : int or None   the manifest's ``label`` (None: left empty)
    path : the mask (named in messages)

    Returns
    -------
    int

    Raises
    ------
    InputError
        ``given`` is 0 (the background) or absent from the mask; no label given and the mask
        holds several non-zero values but not 1; the mask holds no non-zero value at all.
    """
    v = np.asarray(values).ravel()
    name = Path(str(path)).name
    listed = "[" + ", ".join(f"{x:g}" for x in v[:10].astype(float)) + (", ..." if v.size > 10 else "") + "]"
    if given is not None:
        lab = int(given)
        if lab == 0:
            raise InputError(f"label 0 is the background and cannot be the ROI (mask {name!r}, values present: "
                             f"{listed}); set the manifest's 'label' to the ROI's value or leave it empty")
        if lab not in v:
            raise InputError(f"label {lab} does not occur in mask {name!r} (values present: {listed}); set the "
                             "manifest's 'label' column to the ROI's value (e.g. 255 for 0/255 PNG masks)")
        return lab
    nonzero = v[v != 0]
    if nonzero.size == 0:
        raise InputError(f"mask {name!r} is empty (values present: {listed}): no ROI; give a mask with a non-zero "
                         "ROI label")
    if 1 in nonzero:
        return 1
    if nonzero.size == 1:
        return int(nonzero[0])
    raise InputError(f"label 1 does not occur in mask {name!r} (values present: {listed}) and the label left "
                     "empty is ambiguous; set the manifest's 'label' column to the ROI's value")


def _no_geometry(names) -> str:
    if len(names) == 1:
        return f"{names[0]!r} stores no spacing or origin (format without geometry)"
    return f"{names[0]!r} and {names[1]!r} store no spacing or origin (formats without geometry)"


def mask_grid_decision(image, mask, image_path, mask_path, resample_mask: bool | None = None) -> tuple[str, str]:
    """How a mask is put on its image's grid, decided from the two grids and file formats.

    Parameters
    ----------
    image, mask : SimpleITK images (or objects with the same ``Get*`` geometry methods)
    image_path, mask_path : their files (the formats tell whether a geometry is stored)
    resample_mask : bool or None   see :func:`load_case`

    Returns
    -------
    (action, text)
        ``("same", "")``; ``("pixel_grid", note)``: a format without geometry with the image's
        size, the mask is placed on the image's grid; ``("resample", note)``: both store a
        geometry and ``resample_mask`` is True; ``("error", message)``: the mismatch with advice
        that applies to it (a dimension mismatch or a size mismatch of a format without
        geometry is never resampled; ``--resample-mask`` is named only when ``resample_mask``
        is False, i.e. the caller has that option).
    """
    probs = _geometry_problems(image, mask)
    if not probs:
        return "same", ""
    mname, iname = Path(str(mask_path)).name, Path(str(image_path)).name
    head = f"mask {mname!r} is not on the grid of image {iname!r} (" + "; ".join(probs) + ")"
    if image.GetDimension() != mask.GetDimension():
        if image.GetDimension() == 3:
            fix = ("save the annotated slice(s) as a 3D mask on the image's grid (same size, zeros on the other "
                   f"slices), or give that image slice as a 2D image of size {_size(mask)}")
        else:
            fix = "give a 2D mask of the image's size, or the 3D image the mask was drawn on"
        return "error", (f"{head}; a {mask.GetDimension()}D mask cannot be placed on a {image.GetDimension()}D "
                         f"image (resampling does not apply); {fix}")
    nogeo = [n for n, p in ((mname, mask_path), (iname, image_path)) if is_geometryless(p)]
    if nogeo:
        if image.GetSize() == mask.GetSize():
            return "pixel_grid", (f"{_no_geometry(nogeo)}; mask {mname!r} has the image's {_size(image)} pixel grid, "
                                  f"so it was placed on that grid (spacing {_fmt(image.GetSpacing())})")
        return "error", (f"{head}; {_no_geometry(nogeo)}, so the mask can only be matched pixel for pixel, and its "
                         f"{_size(mask)} pixels do not match the image's {_size(image)}; re-export the mask at the "
                         "image's size (resampling does not apply to formats without geometry)")
    same_size = tuple(image.GetSize()) == tuple(mask.GetSize())
    header_hint = ("the mask has the image's size: if it was drawn on the image's pixels and only its header "
                   "(spacing/origin/direction) differs, copy the image's header onto it (SimpleITK: "
                   "mask.CopyInformation(image)) rather than resampling, which keeps physical positions and "
                   "would move such an ROI")
    if resample_mask:
        note = f"mask {mname!r} resampled onto the image grid by nearest neighbour (" + "; ".join(probs) + ")"
        if same_size:
            note += "; " + header_hint
        return "resample", note
    advice = "re-export the mask on the image grid (same size, spacing, origin and direction)"
    if same_size:
        advice = header_hint + "; otherwise " + advice
    if resample_mask is False:
        advice += (", or pass --resample-mask (resample_mask=True) to resample it onto the image grid by "
                   "nearest neighbour (physical positions are kept)")
    return "error", f"{head}; {advice}"
