"""DICOM specifics: series folders (one series, evenly spaced unique slice positions), MONOCHROME1,
invalid PixelSpacing, and the pydicom fallback reader."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from radlens.errors import InputError
from radlens.io.masks import _fmt

log = logging.getLogger(__name__)


def _sitk():
    import SimpleITK as sitk

    return sitk


DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
#: DICOM series: slice steps (along the slice normal) may differ from their median by this
#: fraction before the series counts as non-uniform (a missing slice doubles one step).
SLICE_STEP_RTOL = 0.01
SLICE_GAP_POLICIES = ("error", "warn")


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
        try:
            sp = (float(ps[1]), float(ps[0]))
        except (TypeError, ValueError, IndexError):
            sp = (0.0, 0.0)
        if all(np.isfinite(v) and v > 0 for v in sp):
            img.SetSpacing(sp)
        else:
            log.warning("%s: DICOM PixelSpacing/ImagerPixelSpacing %r is not a valid spacing; read as (1, 1) mm "
                        "(physical sizes are in pixels)", path, list(ps))
    return img
