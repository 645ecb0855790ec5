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
from typing import Any, Mapping

import numpy as np

from radlens.errors import CaseError, InputError

log = logging.getLogger(__name__)

DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
#: Tolerance comparing image and mask grids: relative on spacing, absolute on direction cosines;
#: origins may differ by 1e-3 of the smallest spacing.
GEOMETRY_RTOL = 1e-4


def _sitk():
    import SimpleITK as sitk

    return sitk


# --------------------------------------------------------------------------- low-level readers
def _is_dicom_file(path: Path) -> bool:
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    if path.suffix:
        return False
    try:
        with open(path, "rb") as f:
            head = f.read(132)
        return len(head) == 132 and head[128:132] == b"DICM"
    except OSError:
        return False


def _dicom_series_files(folder: Path) -> list[str]:
    sitk = _sitk()
    ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if not ids:
        raise InputError(f"image folder {str(folder)!r} holds no DICOM series; a folder image must be "
                         "one DICOM series (one file per slice)")
    if len(ids) > 1:
        raise InputError(f"image folder {str(folder)!r} holds {len(ids)} DICOM series {list(ids)[:5]}; "
                         "put each series in its own folder and give one folder per manifest row")
    return list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), ids[0]))


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


def _monochrome1_fix(img, path: Path):
    """Make a MONOCHROME1 DICOM file bright-is-high (inverting only if SimpleITK did not)."""
    sitk = _sitk()
    try:
        import pydicom

        ds = pydicom.dcmread(str(path))
        raw = np.asarray(ds.pixel_array)
    except Exception as exc:  # no decoder for this transfer syntax: trust ITK (>= 5.3 inverts)
        log.warning("%s: MONOCHROME1 but pydicom cannot decode the pixels (%s); relying on SimpleITK's "
                    "own MONOCHROME1 handling", path, exc)
        return img
    bits = int(getattr(ds, "BitsStored", raw.dtype.itemsize * 8))
    signed = int(getattr(ds, "PixelRepresentation", 0)) == 1
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2 ** bits - 1)
    slope = float(getattr(ds, "RescaleSlope", 1) or 1)
    inter = float(getattr(ds, "RescaleIntercept", 0) or 0)
    arr = sitk.GetArrayFromImage(img)
    raw_r = (raw.astype(np.float64) * slope + inter).reshape(arr.shape)
    inv_r = ((lo + hi) - raw.astype(np.float64)) * slope + inter
    inv_r = inv_r.reshape(arr.shape)
    if np.array_equal(arr.astype(np.float64), inv_r):
        return img  # SimpleITK already inverted
    if not np.array_equal(arr.astype(np.float64), raw_r):
        log.warning("%s: MONOCHROME1 pixels read by SimpleITK match neither the raw nor the inverted "
                    "values; leaving them as SimpleITK read them", path)
        return img
    if np.issubdtype(arr.dtype, np.integer) and np.all(inv_r == np.round(inv_r)) and \
            inv_r.min() >= np.iinfo(arr.dtype).min and inv_r.max() <= np.iinfo(arr.dtype).max:
        new = inv_r.astype(arr.dtype)
    else:
        new = inv_r.astype(np.float32)
    out = sitk.GetImageFromArray(new)
    out.CopyInformation(img)
    return out


def _photometric(path: Path) -> str:
    sitk = _sitk()
    r = sitk.ImageFileReader()
    r.SetFileName(str(path))
    r.ReadImageInformation()
    return r.GetMetaData("0028|0004").strip() if r.HasMetaDataKey("0028|0004") else ""


def _read_raw(path: Path, what: str):
    """Read a file/folder as a SimpleITK image (no squeezing or grey conversion)."""
    sitk = _sitk()
    if not path.exists():
        raise InputError(f"{what} {str(path)!r} does not exist; fix the path in the manifest "
                         "(relative paths are resolved against the manifest's folder)")
    if path.is_dir():
        files = _dicom_series_files(path)
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(files)
        return reader.Execute()
    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        if _is_dicom_file(path):
            return _read_dicom_pydicom(path, exc)
        msg = str(exc).strip().splitlines()
        raise InputError(f"{what} {str(path)!r} cannot be read ({msg[-1] if msg else exc}); supported: PNG, "
                         "JPEG, DICOM (file or series folder), NIfTI, NRRD, MHA/MHD, TIFF") from exc
    if _is_dicom_file(path) and _photometric(path) == "MONOCHROME1":
        img = _monochrome1_fix(img, path)
    return img


def _read_dicom_pydicom(path: Path, sitk_exc: Exception):
    """Fallback for DICOM files SimpleITK cannot read."""
    sitk = _sitk()
    try:
        import pydicom

        ds = pydicom.dcmread(str(path))
        arr = np.asarray(ds.pixel_array)
    except Exception as exc:
        raise InputError(f"DICOM file {str(path)!r} cannot be read by SimpleITK ({sitk_exc}) nor pydicom "
                         f"({exc}); for compressed transfer syntaxes install a pydicom decoder "
                         "(pylibjpeg, gdcm) or convert the file") from exc
    slope = float(getattr(ds, "RescaleSlope", 1) or 1)
    inter = float(getattr(ds, "RescaleIntercept", 0) or 0)
    if str(getattr(ds, "PhotometricInterpretation", "")).strip() == "MONOCHROME1":
        bits = int(getattr(ds, "BitsStored", arr.dtype.itemsize * 8))
        signed = int(getattr(ds, "PixelRepresentation", 0)) == 1
        lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2 ** bits - 1)
        arr = ((lo + hi) - arr.astype(np.int64)).astype(arr.dtype)
    if slope != 1 or inter != 0:
        arr = (arr.astype(np.float32) * slope + inter).astype(np.float32)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4) and getattr(ds, "SamplesPerPixel", 1) > 1:
        img = sitk.GetImageFromArray(arr, isVector=True)
    else:
        img = sitk.GetImageFromArray(arr)
    ps = getattr(ds, "PixelSpacing", None) or getattr(ds, "ImagerPixelSpacing", None)
    if ps is not None and img.GetDimension() == 2:
        img.SetSpacing((float(ps[1]), float(ps[0])))
    return img


# --------------------------------------------------------------------------- public readers
def load_image(path: str | os.PathLike, *, what: str = "image"):
    """Read an image file or DICOM series folder as a scalar SimpleITK image.

    Parameters
    ----------
    path : str or path-like
        Image file (PNG, JPEG, DICOM, NIfTI, NRRD, MHA, ...) or a folder holding one DICOM series.
    what : str
        Word used in error messages (``"image"``, ``"mask"``).

    Returns
    -------
    SimpleITK.Image
        2D (size ``(W, H)``) or 3D (size ``(W, H, D)``), scalar, stored pixel type (colour images
        become float32 grey). Singleton third axes are squeezed; MONOCHROME1 is inverted.

    Raises
    ------
    InputError
        Missing or unreadable file.
    """
    img = _squeeze(_read_raw(Path(path), what))
    return _to_grey(img)


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
    """

    case_id: str
    image: Any
    mask: Any
    bbox: tuple[float, float, float, float]
    row: dict = field(default_factory=dict, repr=False)

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


def _geometry_problems(image, mask) -> list[str]:
    probs = []
    if image.GetDimension() != mask.GetDimension():
        return [f"dimension {image.GetDimension()}D image vs {mask.GetDimension()}D mask"]
    if image.GetSize() != mask.GetSize():
        probs.append(f"size {image.GetSize()} (image) vs {mask.GetSize()} (mask)")
    sp_i, sp_m = np.asarray(image.GetSpacing(), float), np.asarray(mask.GetSpacing(), float)
    if not np.allclose(sp_i, sp_m, rtol=GEOMETRY_RTOL, atol=0):
        probs.append(f"spacing {tuple(np.round(sp_i, 6))} (image) vs {tuple(np.round(sp_m, 6))} (mask)")
    o_i, o_m = np.asarray(image.GetOrigin(), float), np.asarray(mask.GetOrigin(), float)
    if not np.allclose(o_i, o_m, rtol=0, atol=1e-3 * float(sp_i.min())):
        probs.append(f"origin {tuple(np.round(o_i, 6))} (image) vs {tuple(np.round(o_m, 6))} (mask)")
    d_i, d_m = np.asarray(image.GetDirection(), float), np.asarray(mask.GetDirection(), float)
    if not np.allclose(d_i, d_m, rtol=0, atol=GEOMETRY_RTOL):
        probs.append(f"direction {tuple(np.round(d_i, 4))} (image) vs {tuple(np.round(d_m, 4))} (mask)")
    return probs


def _resample_nearest(mask, image):
    sitk = _sitk()
    return sitk.Resample(mask, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0, mask.GetPixelID())


def load_case(row: Mapping[str, Any], *, resample_mask: bool = False, image: Any = None) -> Case:
    """Load the image and ROI of one manifest row.

    Parameters
    ----------
    row : mapping (dict or pandas Series)
        A row of :attr:`radlens.io.manifest.Manifest.df`: ``case_id``, ``image`` and either
        ``mask`` (+ ``label``) or ``bbox_x, bbox_y, bbox_w, bbox_h``. A missing/None/NaN
        ``label`` means 1, or the mask's only non-zero value when 1 does not occur (0/255 masks).
    resample_mask : bool, default False
        When the mask's grid differs from the image's (size, spacing, origin or direction),
        resample the mask onto the image grid by nearest neighbour instead of failing.
    image : SimpleITK.Image, optional
        ``row["image"]`` already loaded (``Case.image`` of another row of the same file): it is not
        read again (several ROIs of one image are decoded once).

    Returns
    -------
    Case

    Raises
    ------
    CaseError
        ``CaseError(case_id, "load", msg)`` for anything wrong with this case (unreadable file,
        label absent from the mask, empty ROI, geometry mismatch, box outside the image).
    """
    case_id = str(_get(row, "case_id", "?"))
    try:
        return _load_case(case_id, row, resample_mask, image)
    except CaseError:
        raise
    except InputError as exc:
        raise CaseError(case_id, "load", str(exc)) from exc
    except Exception as exc:  # unexpected reader failure: still attribute it to the case
        raise CaseError(case_id, "load", f"{type(exc).__name__}: {exc}") from exc


def _load_case(case_id: str, row: Mapping[str, Any], resample_mask: bool, image: Any = None) -> Case:
    sitk = _sitk()
    image_path = _get(row, "image")
    if image_path is None:
        raise CaseError(case_id, "load", "no image path in the manifest row")
    if image is None:
        image = load_image(image_path)
    mask_path = _get(row, "mask")
    if mask_path is not None and str(mask_path).strip():
        given = _get(row, "label", None)
        label = 1 if given is None else int(given)
        mask_raw = _squeeze(_read_raw(Path(mask_path), "mask"))
        if mask_raw.GetNumberOfComponentsPerPixel() > 1:
            mask_raw = sitk.VectorIndexSelectionCast(mask_raw, 0)
        probs = _geometry_problems(image, mask_raw)
        if probs:
            if not resample_mask:
                raise CaseError(case_id, "load", f"mask {str(mask_path)!r} is not on the image's grid ("
                                + "; ".join(probs) + "); re-export the mask on the image grid, or pass "
                                "resample_mask=True (CLI: --resample-mask) to resample it by nearest neighbour")
            mask_raw = _resample_nearest(mask_raw, image)
        m = sitk.GetArrayViewFromImage(mask_raw)
        roi = (m == label)
        if not roi.any() and given is None:  # no label given: a single-valued mask's value (0/255 PNG)
            vals = np.unique(m)
            if vals[vals != 0].size == 1:
                label = int(vals[vals != 0][0])
                roi = (m == label)
        if not roi.any():
            vals = np.unique(m)
            raise CaseError(case_id, "load", f"label {label} does not occur in mask {str(mask_path)!r}"
                            + (" after resampling" if probs else "")
                            + f" (values present: {vals[:10].tolist()}); set the manifest's 'label' column "
                            "to the ROI's value (e.g. 255 for 0/255 PNG masks)")
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
                            f"{image.GetDimension()}D {image.GetSize()}; give a mask for 3D images")
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
                row=dict(row.items()) if hasattr(row, "items") else dict(row))


def _roi_bbox(roi: np.ndarray) -> tuple[float, float, float, float]:
    """In-plane (x, y, w, h) bounding box of a boolean ROI of shape (H, W) or (D, H, W)."""
    plane = roi if roi.ndim == 2 else roi.any(axis=0)
    ys = np.flatnonzero(plane.any(axis=1))
    xs = np.flatnonzero(plane.any(axis=0))
    return (float(xs[0]), float(ys[0]), float(xs[-1] - xs[0] + 1), float(ys[-1] - ys[0] + 1))
