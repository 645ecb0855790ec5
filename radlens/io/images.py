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
#: Formats that store no geometry (spacing, origin, direction): SimpleITK reads them with spacing 1,
#: origin 0. Masks and images in these formats are matched by pixel grid, never resampled.
GEOMETRYLESS_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif")
#: Lossy formats: a mask stored this way holds compression artefacts around its edges.
LOSSY_SUFFIXES = (".jpg", ".jpeg")
#: A mask is a label map only if it holds at most this many distinct values (0 included); more
#: means an intensity image, an anti-aliased drawing or compression artefacts.
MAX_LABEL_VALUES = 32
#: DICOM series: slice steps (along the slice normal) may differ from their median by this
#: fraction before the series counts as non-uniform (a missing slice doubles one step).
SLICE_STEP_RTOL = 0.01
SLICE_GAP_POLICIES = ("error", "warn")


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


def _fmt(values) -> str:
    """``(0.8, 0.8)``: plain numbers (no ``np.float64(...)``), at most 6 significant digits."""
    vals = [float(v) for v in np.ravel(values)]
    return "(" + ", ".join(f"{v:.6g}" for v in vals) + ")"


def _series_positions(files: list[str]) -> tuple[np.ndarray, list[str]] | None:
    """Slice positions along the slice normal (mm) of a DICOM series, in file order, or None
    when the files lack ImagePositionPatient / ImageOrientationPatient."""
    import pydicom

    pos, names = [], []
    normal = None
    for f in files:
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True,
                                 specific_tags=["ImagePositionPatient", "ImageOrientationPatient"])
            ipp = [float(v) for v in ds.ImagePositionPatient]
            iop = [float(v) for v in ds.ImageOrientationPatient]
        except Exception:  # noqa: BLE001 - no positions: nothing to check
            return None
        if normal is None:
            normal = np.cross(iop[:3], iop[3:])
        pos.append(float(np.dot(normal, ipp)))
        names.append(Path(f).name)
    return np.asarray(pos), names


def dicom_series_problem(folder: str | os.PathLike, files: list[str] | None = None) -> str | None:
    """Check the slice positions of a DICOM series folder.

    Parameters
    ----------
    folder : path of a folder holding one DICOM series
    files : the series' files as SimpleITK orders them (default: read from ``folder``)

    Returns
    -------
    str or None
        None when the slices are evenly spaced (or the files carry no positions); otherwise a
        sentence naming the duplicate positions or the uneven steps (a missing slice shows as one
        step about twice the others), with the slices' file names and positions in mm.
    """
    files = _dicom_series_files(Path(folder)) if files is None else files
    if len(files) < 3:
        got = _series_positions(files) if len(files) == 2 else None
        if got is not None and abs(got[0][1] - got[0][0]) < 1e-6:
            return (f"DICOM series {str(folder)!r}: its 2 slices share the position {got[0][0]:.6g} mm "
                    f"({got[1][0]}, {got[1][1]}): duplicate slices")
        return None
    got = _series_positions(files)
    if got is None:
        return None
    z, names = got
    order = np.argsort(z, kind="mergesort")
    z, names = z[order], [names[i] for i in order]
    steps = np.diff(z)
    dup = np.flatnonzero(np.abs(steps) < 1e-6)
    if dup.size:
        pairs = "; ".join(f"{names[i]} and {names[i + 1]} at {z[i]:.6g} mm" for i in dup[:5])
        return (f"DICOM series {str(folder)!r} has {dup.size} duplicate slice position(s) ({pairs}); remove the "
                "duplicate files (a re-sent or second series?) so that each position occurs once; a volume read "
                "with one uniform spacing would misplace slices")
    med = float(np.median(steps))
    bad = np.flatnonzero(np.abs(steps - med) > SLICE_STEP_RTOL * abs(med))
    if not bad.size:
        return None
    where = "; ".join(f"{steps[i]:.6g} mm between {names[i]} (z = {z[i]:.6g}) and {names[i + 1]} "
                      f"(z = {z[i + 1]:.6g})" for i in bad[:5])
    missing = [int(round(steps[i] / med)) - 1 for i in bad if steps[i] > med]
    hint = (f" — about {sum(missing)} missing slice(s)" if missing and sum(missing) > 0 else "")
    return (f"DICOM series {str(folder)!r} has non-uniform slice positions: {len(z)} slices, median step "
            f"{med:.6g} mm, but {where}{hint}; a volume read with one uniform spacing would misplace slices "
            "and misstate volumes. Restore the missing slice files, or accept the series with one uniform spacing by "
            "setting the manifest's 'slice_gaps' column to 'warn' for this case (the problem is then recorded as a "
            "warning in the case's row)")


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


def _check_dicom_spacing(file: str, what: str, notes: list[str] | None) -> None:
    """Warn when a DICOM file's PixelSpacing / ImagerPixelSpacing is present but not positive
    (e.g. ``0\\0``): SimpleITK then reads 1.0, i.e. spacing in pixels, not mm."""
    sitk = _sitk()
    r = sitk.ImageFileReader()
    r.SetFileName(file)
    try:
        r.ReadImageInformation()
    except RuntimeError:
        return
    for tag, name in (("0028|0030", "PixelSpacing"), ("0018|1164", "ImagerPixelSpacing")):
        if not r.HasMetaDataKey(tag):
            continue
        raw = r.GetMetaData(tag).strip()
        try:
            vals = [float(v) for v in raw.split("\\") if v.strip()]
        except ValueError:
            vals = []
        if len(vals) != 2 or not all(np.isfinite(v) and v > 0 for v in vals):
            msg = (f"{what} {file!r}: DICOM {name} is {raw!r}, not a valid spacing; read as "
                   f"{_fmt(r.GetSpacing()[:2])} mm, so physical sizes (areas, volumes, spacing-based "
                   "resampling) are in pixels; fix the tag if the true spacing is known")
            log.warning("%s", msg)
            if notes is not None:
                notes.append(msg)
            return


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


def _size(img) -> str:
    return "×".join(str(int(v)) for v in img.GetSize())


def _geometry_problems(image, mask) -> list[str]:
    """Differences between the image's and the mask's grids, in words with plain numbers."""
    probs = []
    if image.GetDimension() != mask.GetDimension():
        return [f"dimension {image.GetDimension()}D image ({_size(image)}) vs {mask.GetDimension()}D mask "
                f"({_size(mask)})"]
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


def label_map_problem(values, path, *, lossy: bool | None = None) -> str | None:
    """Why a mask's values do not form a label map, or None when they do.

    Parameters
    ----------
    values : array-like
        The distinct values of the mask (``np.unique`` of its pixels).
    path : path of the mask (named in the message; its suffix tells a lossy JPEG)
    lossy : bool, optional
        Treat the file as lossily compressed (default: from the suffix, ``.jpg``/``.jpeg``).

    Returns
    -------
    str or None
        A label map holds integer values only, at most :data:`MAX_LABEL_VALUES` of them, and a
        lossy (JPEG) mask at most 2 (background and one ROI value): compression leaves
        artefact values around every edge, so no label choice gives the drawn ROI.
    """
    v = np.asarray(values).ravel()
    name = Path(str(path)).name
    lossy = Path(str(path)).suffix.lower() in LOSSY_SUFFIXES if lossy is None else lossy
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
    if v.size > MAX_LABEL_VALUES:
        return (f"mask {name!r} holds {v.size} distinct values ({shown}), more than a label map's "
                f"{MAX_LABEL_VALUES}; an image, an anti-aliased drawing or a resampled mask was given as the mask? "
                "Give a label map (0 = background, integer ROI labels)")
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


def _resample_nearest(mask, image):
    sitk = _sitk()
    return sitk.Resample(mask, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0, mask.GetPixelID())


def load_case(row: Mapping[str, Any], *, resample_mask: bool | None = None, slice_gaps: str = "error") -> Case:
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
        return _load_case(case_id, row, resample_mask, policy)
    except CaseError:
        raise
    except InputError as exc:
        raise CaseError(case_id, "load", str(exc)) from exc
    except Exception as exc:  # unexpected reader failure: still attribute it to the case
        raise CaseError(case_id, "load", f"{type(exc).__name__}: {exc}") from exc


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
    if resample_mask:
        return "resample", f"mask {mname!r} resampled onto the image grid by nearest neighbour (" + "; ".join(probs) + ")"
    advice = "re-export the mask on the image grid (same size, spacing, origin and direction)"
    if resample_mask is False:
        advice += (", or pass --resample-mask (resample_mask=True) to resample it onto the image grid by "
                   "nearest neighbour (physical positions are kept)")
    return "error", f"{head}; {advice}"


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


def _load_case(case_id: str, row: Mapping[str, Any], resample_mask: bool | None, slice_gaps: str) -> Case:
    sitk = _sitk()
    notes: list[str] = []
    image_path = _get(row, "image")
    if image_path is None:
        raise CaseError(case_id, "load", "no image path in the manifest row")
    image = load_image(image_path, notes=notes, slice_gaps=slice_gaps)
    mask_path = _get(row, "mask")
    if mask_path is not None and str(mask_path).strip():
        given = _get(row, "label", None)
        mask_raw = _squeeze(_read_raw(Path(mask_path), "mask", notes, slice_gaps))
        if mask_raw.GetNumberOfComponentsPerPixel() > 1:
            mask_raw = sitk.VectorIndexSelectionCast(mask_raw, 0)
        vals = np.unique(sitk.GetArrayViewFromImage(mask_raw))
        prob = label_map_problem(vals, mask_path)
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
