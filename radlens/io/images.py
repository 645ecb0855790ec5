"""Image and ROI loading: one :class:`Case` per manifest row.

Formats (all through SimpleITK, pydicom where it does better):

* 2D: PNG, JPEG, BMP, TIFF, DICOM file, 2D NIfTI (also a 3D file whose third axis has size 1);
* 3D: NIfTI, NRRD, MHA/MHD, a folder holding one DICOM series.

Conventions

* A 3D image with a singleton axis is squeezed to 2D, so 2D data are always handled as 2D
  (pyradiomics then computes ``shape2D`` and 2D texture natively).
* Colour images (RGB/RGBA PNG or JPEG) become grey levels: the first channel when all colour
  channels are equal, else ITU-R BT.601 luma ``0.299 R + 0.587 G + 0.114 B`` (float32).
* DICOM ``MONOCHROME1`` (bright = low attenuation, e.g. many CR chest films) is inverted so that
  high values are bright: ``x' = lo + hi - x`` over the range allowed by ``BitsStored`` and
  ``PixelRepresentation`` (after rescale). Recent SimpleITK (ITK >= 5.3) already does this on
  read; radlens checks against the raw pixels (pydicom) and inverts only when it was not done.
* Image pixel types are kept as stored (``case.image``), so radiomic values equal those of
  pyradiomics run on the same files; ``case.array`` is the float32 copy for everything else.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from radlens.errors import CaseError, InputError
from radlens.io.dicom import (DICOM_SUFFIXES, SLICE_GAP_POLICIES, SLICE_STEP_RTOL, _check_dicom_spacing,  # noqa: F401
                              _dicom_series_files, _is_dicom_file, _monochrome1_fix, _photometric,
                              _read_dicom_pydicom, dicom_series_problem)
from radlens.io.masks import (GEOMETRY_RTOL, GEOMETRYLESS_SUFFIXES, LOSSY_SUFFIXES, MAX_LABEL_VALUES, Grid,  # noqa: F401
                              _fmt, _geometry_problems, _size, distinct_values, infer_label, is_geometryless, label_map_problem,
                              mask_grid_decision)
from radlens.io.nifti import read_nifti_2d

log = logging.getLogger(__name__)


def _sitk():
    import SimpleITK as sitk

    return sitk


# --------------------------------------------------------------------------- low-level readers


def _squeeze(img):
    """Drop a singleton third axis (2D data stored as 3D)."""
    sitk = _sitk()
    if img.GetDimension() == 3 and img.GetSize()[2] == 1:
        size = list(img.GetSize())
        size[2] = 0
        img = sitk.Extract(img, size, [0, 0, 0], sitk.ExtractImageFilter.DIRECTIONCOLLAPSETOSUBMATRIX)
    elif img.GetDimension() == 4 and img.GetSize()[3] == 1:
        size = list(img.GetSize())
        size[3] = 0
        img = _squeeze(sitk.Extract(img, size, [0, 0, 0, 0], sitk.ExtractImageFilter.DIRECTIONCOLLAPSETOSUBMATRIX))
    return img


def _to_grey(img):
    """Vector (RGB/RGBA) image -> scalar grey-level image."""
    sitk = _sitk()
    n = img.GetNumberOfComponentsPerPixel()
    if n == 1:
        return img
    arr = sitk.GetArrayFromImage(img)  # (..., n)
    if n in (2, 4):  # grey+alpha or RGBA: drop alpha
        arr = arr[..., : n - 1]
    if arr.shape[-1] == 1 or all(np.array_equal(arr[..., 0], arr[..., k]) for k in range(1, arr.shape[-1])):
        grey = np.ascontiguousarray(arr[..., 0])
    else:
        grey = (0.299 * arr[..., 0].astype(np.float32) + 0.587 * arr[..., 1].astype(np.float32)
                + 0.114 * arr[..., 2].astype(np.float32)).astype(np.float32)
    out = sitk.GetImageFromArray(grey)
    out.CopyInformation(img)
    return out


def _read_raw(path: Path, what: str, notes: list[str] | None = None, slice_gaps: str = "error"):
    """Read a file/folder as a SimpleITK image (no squeezing or grey conversion).

    ``notes`` (a list) collects warnings about the file (e.g. an invalid DICOM PixelSpacing);
    ``slice_gaps``: ``"error"`` raises on a DICOM series with missing/duplicate/uneven slices,
    ``"warn"`` reads it and adds the problem to ``notes``.
    """
    sitk = _sitk()
    if not path.exists():
        raise InputError(f"{what} {str(path)!r} does not exist; fix the path in the manifest "
                         "(relative paths are resolved against the manifest's folder)")
    if path.is_dir():
        files = _dicom_series_files(path)
        prob = dicom_series_problem(path, files)
        if prob is not None:
            if slice_gaps != "warn":
                raise InputError(prob)
            log.warning("%s (read anyway: slice_gaps='warn')", prob)
            if notes is not None:
                notes.append(prob.split("; a volume read")[0] + " (read with one uniform spacing: slice_gaps = warn)")
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(files)
        img = reader.Execute()
        _check_dicom_spacing(files[0], what, notes)
        return img
    if path.name.lower().endswith((".nii", ".nii.gz")):
        img = read_nifti_2d(path)  # simple 2D axis-aligned NIfTI: ~10x faster, same image; else None
        if img is not None:
            return img
    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        if _is_dicom_file(path):
            return _read_dicom_pydicom(path, exc)
        msg = str(exc).strip().splitlines()
        raise InputError(f"{what} {str(path)!r} cannot be read ({msg[-1] if msg else exc}); supported: PNG, "
                         "JPEG, DICOM (file or series folder), NIfTI, NRRD, MHA/MHD, TIFF") from exc
    if _is_dicom_file(path):
        _check_dicom_spacing(str(path), what, notes)
        if _photometric(path) == "MONOCHROME1":
            img = _monochrome1_fix(img, path)
    return img


# --------------------------------------------------------------------------- public readers
def load_image(path: str | os.PathLike, *, what: str = "image", notes: list[str] | None = None,
               slice_gaps: str = "error"):
    """Read an image file or DICOM series folder as a scalar SimpleITK image.

    Parameters
    ----------
    path : str or path-like
        Image file (PNG, JPEG, DICOM, NIfTI, NRRD, MHA, ...) or a folder holding one DICOM series.
    what : str
        Word used in error messages (``"image"``, ``"mask"``).
    notes : list of str, optional
        Collects warnings about the file (invalid DICOM PixelSpacing, accepted slice gaps).
    slice_gaps : {"error", "warn"}
        A DICOM series folder whose slice positions have gaps, duplicates or uneven steps raises
        :class:`InputError` naming the slices (``"error"``), or is read with one uniform spacing and
        the problem added to ``notes`` (``"warn"``, an explicit opt-in).

    Returns
    -------
    SimpleITK.Image
        2D (size ``(W, H)``) or 3D (size ``(W, H, D)``), scalar, stored pixel type (colour images
        become float32 grey). Singleton third axes are squeezed; MONOCHROME1 is inverted.

    Raises
    ------
    InputError
        Missing or unreadable file; a DICOM series with missing/duplicate/uneven slices.
    """
    if slice_gaps not in SLICE_GAP_POLICIES:
        raise InputError(f"slice_gaps={slice_gaps!r} is not allowed; use one of {list(SLICE_GAP_POLICIES)}")
    img = _squeeze(_read_raw(Path(path), what, notes, slice_gaps))
    return _to_grey(img)


def read_mask(path: str | os.PathLike, *, notes: list[str] | None = None, slice_gaps: str = "error"):
    """Read a mask file as a scalar SimpleITK image with its stored values (no grey conversion).

    A colour mask (RGB/RGBA PNG) whose colour channels are equal is read from its first channel;
    one whose channels differ (a coloured outline or overlay) cannot be a label map.

    Raises
    ------
    InputError
        Missing/unreadable file, or a colour mask whose channels differ.
    """
    sitk = _sitk()
    img = _squeeze(_read_raw(Path(path), "mask", notes, slice_gaps))
    n = img.GetNumberOfComponentsPerPixel()
    if n == 1:
        return img
    arr = sitk.GetArrayViewFromImage(img)
    col = arr[..., : n - 1] if n in (2, 4) else arr  # alpha dropped
    if not all(np.array_equal(col[..., 0], col[..., k]) for k in range(1, col.shape[-1])):
        raise InputError(f"mask {Path(str(path)).name!r} is a colour image whose channels differ (a coloured outline "
                         "or overlay on the image?); save the ROI as a single-channel label map (0 = background, "
                         "the ROI = 1 or 255)")
    return sitk.VectorIndexSelectionCast(img, 0)


def read_image_array(path: str | os.PathLike) -> np.ndarray:
    """Pixels of an image file or DICOM series folder.

    Returns
    -------
    ndarray of float32, shape (H, W) or (D, H, W)
        Numpy axis order (SimpleITK size reversed); same conventions as :func:`load_image`.
    """
    sitk = _sitk()
    return sitk.GetArrayFromImage(load_image(path)).astype(np.float32, copy=False)


def image_size(path: str | os.PathLike) -> tuple[int, ...]:
    """Size of an image in SimpleITK order ``(W, H[, D])`` from its header only (no pixel data;
    singleton axes dropped). DICOM series folders read only the first file's header."""
    sitk = _sitk()
    path = Path(path)
    if path.is_dir():
        files = _dicom_series_files(path)
        r = sitk.ImageFileReader()
        r.SetFileName(files[0])
        r.ReadImageInformation()
        size = list(r.GetSize())[:2] + ([len(files)] if len(files) > 1 else [])
        return tuple(int(s) for s in size)
    r = sitk.ImageFileReader()
    r.SetFileName(str(path))
    try:
        r.ReadImageInformation()
    except RuntimeError:
        return tuple(load_image(path).GetSize())
    size = list(r.GetSize())
    while len(size) > 2 and size[-1] == 1:
        size.pop()
    return tuple(int(s) for s in size)


def image_grid(path: str | os.PathLike, *, slice_gaps: str = "error") -> Grid:
    """The grid of an image as :func:`load_image` returns it (singleton axes dropped), from file
    headers only where possible (DICOM series folders are read in full).

    Raises
    ------
    InputError
        Missing or unreadable file (or a series with slice gaps, see :func:`load_image`).
    """
    sitk = _sitk()
    path = Path(path)
    if path.is_dir():
        img = load_image(path, slice_gaps=slice_gaps)
        return Grid(tuple(img.GetSize()), tuple(img.GetSpacing()), tuple(img.GetOrigin()), tuple(img.GetDirection()))
    r = sitk.ImageFileReader()
    r.SetFileName(str(path))
    try:
        r.ReadImageInformation()
    except RuntimeError:
        img = load_image(path)
        return Grid(tuple(img.GetSize()), tuple(img.GetSpacing()), tuple(img.GetOrigin()), tuple(img.GetDirection()))
    size, sp, org = list(r.GetSize()), list(r.GetSpacing()), list(r.GetOrigin())
    d = len(size)
    direc = np.asarray(r.GetDirection(), float).reshape(d, d)
    while len(size) > 2 and size[-1] == 1:
        k = len(size) - 1
        size, sp, org = size[:k], sp[:k], org[:k]
        direc = direc[:k, :k]
    return Grid(tuple(int(v) for v in size), tuple(float(v) for v in sp), tuple(float(v) for v in org),
                tuple(float(v) for v in direc.ravel()))


# --------------------------------------------------------------------------- cases
@dataclass
class Case:
    """One ROI of one image, ready for any analysis.

    Attributes
    ----------
    case_id : str
    image : SimpleITK.Image
        Scalar image, 2D or 3D, stored pixel type, MONOCHROME1 already inverted.
    mask : SimpleITK.Image
        UInt8, 1 inside the ROI and 0 outside, same geometry as ``image``.
    bbox : tuple of float (x, y, w, h)
        The manifest's box in stored-image pixels, or the ROI's in-plane bounding box.
    row : dict
        The manifest row the case came from.
    warnings : list of str
        What loading assumed or accepted (mask placed on the image's pixel grid, invalid DICOM
        spacing, accepted slice gaps); callers record them in the case's row.
    """

    case_id: str
    image: Any
    mask: Any
    bbox: tuple[float, float, float, float]
    row: dict = field(default_factory=dict, repr=False)
    warnings: list = field(default_factory=list)

    @cached_property
    def array(self) -> np.ndarray:
        """ndarray float32, shape (H, W) or (D, H, W): the image pixels."""
        return _sitk().GetArrayFromImage(self.image).astype(np.float32, copy=False)

    @cached_property
    def roi(self) -> np.ndarray:
        """ndarray bool, same shape as :attr:`array`: True inside the ROI."""
        return _sitk().GetArrayViewFromImage(self.mask) > 0

    @property
    def spacing(self) -> tuple[float, ...]:
        """Pixel spacing in SimpleITK order ``(sx, sy[, sz])``."""
        return tuple(self.image.GetSpacing())

    @property
    def ndim(self) -> int:
        return int(self.image.GetDimension())


def _get(row: Mapping[str, Any], key: str, default=None):
    v = row.get(key, default) if hasattr(row, "get") else default
    if v is None:
        return default
    try:
        if isinstance(v, float) and np.isnan(v):
            return default
    except TypeError:
        pass
    return v


def box_to_mask(image, bbox: tuple[float, float, float, float]) -> np.ndarray:
    """Rasterise a box on an image's grid.

    Parameters
    ----------
    image : SimpleITK.Image
        2D image of size (W, H).
    bbox : (x, y, w, h)
        Pixels ``i`` with ``x <= i < x + w`` (and ``y`` likewise) are inside; fractional edges
        round inwards, but at least one pixel per axis is kept.

    Returns
    -------
    ndarray of uint8, shape (H, W)
    """
    w_img, h_img = image.GetSize()[:2]
    x, y, w, h = (float(v) for v in bbox)
    x0, x1 = int(np.ceil(x)), int(np.ceil(x + w))
    y0, y1 = int(np.ceil(y)), int(np.ceil(y + h))
    if x1 <= x0:
        x0, x1 = int(np.floor(x)), int(np.floor(x)) + 1
    if y1 <= y0:
        y0, y1 = int(np.floor(y)), int(np.floor(y)) + 1
    out = np.zeros((h_img, w_img), np.uint8)
    out[max(y0, 0):min(y1, h_img), max(x0, 0):min(x1, w_img)] = 1
    return out


def _resample_nearest(mask, image):
    sitk = _sitk()
    return sitk.Resample(mask, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0, mask.GetPixelID())


def load_case(row: Mapping[str, Any], *, resample_mask: bool | None = None, slice_gaps: str = "error",
              image: Any = None, image_notes: Sequence[str] = ()) -> Case:
    """Load the image and ROI of one manifest row.

    Parameters
    ----------
    row : mapping (dict or pandas Series)
        A row of :attr:`radlens.io.manifest.Manifest.df`: ``case_id``, ``image`` and either
        ``mask`` (+ ``label``) or ``bbox_x, bbox_y, bbox_w, bbox_h``. A missing/None/NaN
        ``label`` means 1, or the mask's only non-zero value when 1 does not occur (0/255 masks).
        The mask must be a label map (:func:`label_map_problem`); label 0 is never the ROI.
    resample_mask : bool or None, default None
        When the mask's grid differs from the image's (size, spacing, origin or direction) and
        both files store a geometry, resample the mask onto the image grid by nearest neighbour
        (True) instead of failing. ``False`` fails and the message names ``--resample-mask``
        (the option of ``radlens radiomics`` / ``radlens localize``, the callers that pass it);
        ``None`` (callers without such an option) fails with advice on re-exporting only.
        Never applied to a dimension mismatch or to formats without geometry (PNG/JPEG/BMP/
        TIFF), which are matched by pixel grid: same size -> the mask is placed on the image's
        grid and ``Case.warnings`` says so.
    slice_gaps : {"error", "warn"}
        DICOM series with missing/duplicate/uneven slices: a ``load`` failure naming the slices
        (default), or read with one uniform spacing and a note in ``Case.warnings``. A row's
        ``slice_gaps`` value (manifest column, the per-case explicit opt-in) wins.
    image, image_notes : SimpleITK.Image and list of str, optional
        ``row["image"]`` already read for another row of the same file (its ``Case.image``) and the
        notes that reading gave: the file is not read again (several ROIs of one image are decoded
        once).

    Returns
    -------
    Case

    Raises
    ------
    CaseError
        ``CaseError(case_id, "load", msg)`` for anything wrong with this case (unreadable file,
        mask not a label map, label absent from the mask or 0, empty ROI, geometry mismatch,
        DICOM slice gaps, box outside the image).
    """
    case_id = str(_get(row, "case_id", "?"))
    try:
        policy = str(_get(row, "slice_gaps", None) or slice_gaps).strip().lower()
        if policy not in SLICE_GAP_POLICIES:
            raise InputError(f"slice_gaps = {policy!r} is not allowed; use one of {list(SLICE_GAP_POLICIES)} "
                             "(manifest column 'slice_gaps', or slice_gaps=)")
        return _load_case(case_id, row, resample_mask, policy, image, image_notes)
    except CaseError:
        raise
    except InputError as exc:
        raise CaseError(case_id, "load", str(exc)) from exc
    except Exception as exc:  # unexpected reader failure: still attribute it to the case
        raise CaseError(case_id, "load", f"{type(exc).__name__}: {exc}") from exc


def _match_mask_grid(case_id, image, mask_raw, image_path, mask_path, resample_mask, notes):
    """Put the mask on the image's grid (:func:`mask_grid_decision`) or raise a CaseError."""
    action, text = mask_grid_decision(image, mask_raw, image_path, mask_path, resample_mask)
    if action == "same":
        return mask_raw, False
    if action == "error":
        raise CaseError(case_id, "load", text)
    log.info("case %r: %s", case_id, text)
    notes.append(text)
    if action == "pixel_grid":
        out = _sitk().Image(mask_raw)
        out.CopyInformation(image)
        return out, False
    return _resample_nearest(mask_raw, image), True


def _load_case(case_id: str, row: Mapping[str, Any], resample_mask: bool | None, slice_gaps: str,
               image: Any = None, image_notes: Sequence[str] = ()) -> Case:
    sitk = _sitk()
    notes: list[str] = []
    image_path = _get(row, "image")
    if image_path is None:
        raise CaseError(case_id, "load", "no image path in the manifest row")
    if image is None:
        image = load_image(image_path, notes=notes, slice_gaps=slice_gaps)
    else:
        notes.extend(image_notes)
    mask_path = _get(row, "mask")
    if mask_path is not None and str(mask_path).strip():
        given = _get(row, "label", None)
        mask_raw = read_mask(mask_path, notes=notes, slice_gaps=slice_gaps)
        vals = distinct_values(sitk.GetArrayViewFromImage(mask_raw))
        prob = label_map_problem(vals, mask_path, label_given=given is not None)
        if prob is not None:
            raise CaseError(case_id, "load", prob)
        label = infer_label(vals, given, mask_path)
        mask_raw, resampled = _match_mask_grid(case_id, image, mask_raw, image_path, mask_path, resample_mask, notes)
        m = sitk.GetArrayViewFromImage(mask_raw)
        roi = (m == label)
        if not roi.any():
            raise CaseError(case_id, "load", f"label {label} of mask {Path(str(mask_path)).name!r} covers no pixel of "
                            "the image after resampling onto its grid (the mask lies outside the image?); check the "
                            "mask's origin and direction")
        if (not resampled and mask_raw.GetPixelID() == sitk.sitkUInt8 and label == 1
                and all(v in (0, 1) for v in np.asarray(vals).tolist())):
            mask = mask_raw  # already the 0/1 uint8 ROI image: no second copy (16 MB on a CT volume)
        else:
            mask = sitk.GetImageFromArray(roi.astype(np.uint8))
        mask.CopyInformation(image)
        bbox = _roi_bbox(roi)
    else:
        box = tuple(_get(row, k) for k in ("bbox_x", "bbox_y", "bbox_w", "bbox_h"))
        if any(v is None for v in box):
            raise CaseError(case_id, "load", "row has neither a mask nor a complete box "
                            "(bbox_x, bbox_y, bbox_w, bbox_h)")
        if image.GetDimension() != 2:
            raise CaseError(case_id, "load", f"boxes are 2D but image {str(image_path)!r} is "
                            f"{image.GetDimension()}D ({_size(image)}); give a mask for 3D images")
        w_img, h_img = image.GetSize()
        x, y, w, h = (float(v) for v in box)
        if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > w_img or y + h > h_img:
            raise CaseError(case_id, "load", f"box (x={x:g}, y={y:g}, w={w:g}, h={h:g}) is empty or outside "
                            f"the {w_img}x{h_img} image {str(image_path)!r}")
        arr = box_to_mask(image, box)
        mask = sitk.GetImageFromArray(arr)
        mask.CopyInformation(image)
        bbox = (x, y, w, h)
    return Case(case_id=case_id, image=image, mask=mask, bbox=bbox,
                row=dict(row.items()) if hasattr(row, "items") else dict(row), warnings=notes)


def _roi_bbox(roi: np.ndarray) -> tuple[float, float, float, float]:
    """In-plane (x, y, w, h) bounding box of a boolean ROI of shape (H, W) or (D, H, W)."""
    plane = roi if roi.ndim == 2 else roi.any(axis=0)
    ys = np.flatnonzero(plane.any(axis=1))
    xs = np.flatnonzero(plane.any(axis=0))
    return (float(xs[0]), float(ys[0]), float(xs[-1] - xs[0] + 1), float(ys[-1] - ys[0] + 1))
