"""Phantom cohorts with planted ground truth: chest-X-ray-like 2D images (and small MRI-like volumes).

Every lesion is drawn with independent attributes -- size, mean intensity, texture (a Gaussian random
field with its own correlation length and amplitude), shape (elongation, orientation) and position --
and all of them are written to the manifest, together with three balanced binary tasks, each derived
from **one** attribute:

``task_texture``    1 = coarse texture (long correlation length), 0 = fine texture
``task_intensity``  1 = bright lesion (high mean intensity), 0 = faint lesion
``task_shape``      1 = elongated lesion, 0 = roundish lesion

Because the attributes are drawn independently, a model (or a radiomic feature) that carries one task
carries no information about the others: texture lives in the second-order statistics (GLCM, GLRLM,
GLSZM, NGTDM, GLDM), intensity in first-order statistics, shape in ``shape2D`` / ``shape``.

Lesion-free images (``has_lesion = 0``) get a *control* ROI of a lesion-like size at a plausible
location (inside a lung field), so every row has a valid ROI; their lesion-appearance attributes and
task labels are empty (NaN).  ``has_lesion`` itself is a detection task.

Intensities are on a [0, 1] scale (air ~0.05, lung ~0.2-0.3, soft tissue ~0.5-0.6, mediastinum
~0.7); a lesion's pixels are ``(1 - a) * background + a * (lesion_intensity + texture_amp * field)``
with ``a`` the anti-aliased lesion coverage, so the mean inside the mask is ~``lesion_intensity``
whatever the anatomy underneath.  Gaussian noise is added last, everywhere.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from radlens.errors import InputError
from radlens.synth.render import (  # noqa: F401  (re-exported: volume.py and tests use them from here)
    _pick_center,
    chest_background,
    gaussian_field,
    patient_anatomy,
    render_case_2d,
    soft_ellipse,
)

log = logging.getLogger(__name__)

#: attribute ranges at the 64-pixel reference size (lengths scale with ``image_size / 64``)
RADIUS_RANGE = (2.0, 12.0)          # equivalent radius sqrt(a*b), px; drawn log-uniform
INTENSITY_RANGES = ((0.36, 0.48), (0.56, 0.70))    # task_intensity 0 / 1
CORR_LEN_RANGES = ((0.5, 0.8), (2.0, 3.2))         # task_texture 0 / 1 (Gaussian sigma, px)
TEXTURE_AMP_RANGE = (0.06, 0.12)    # std of the lesion texture field (nuisance, independent)
ELONGATION_RANGES = ((1.0, 1.1), (4.0, 6.0))         # task_shape 0 / 1 (major / minor axis)
NOISE_RANGE = (0.012, 0.022)        # image noise std
ORIENTATION_RANGE = (0.0, np.pi)    # major-axis angle, radians (pi / 2 = vertical); drawn uniform

ATTRIBUTE_COLUMNS = (
    "has_lesion", "lesion_radius", "lesion_area_frac", "lesion_intensity", "texture_corr_len",
    "texture_amp", "elongation", "orientation", "center_x", "center_y",
)
TASK_COLUMNS = ("task_texture", "task_intensity", "task_shape")
_ROI_CHOICES = ("mask", "bbox")
_FORMAT_CHOICES = ("nii.gz", "png")
_PNG_DTYPES = ("uint8", "uint16")


# --------------------------------------------------------------------------- attribute sampling
def _balanced(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` binary labels with ``n // 2`` ones (one more zero when ``n`` is odd), shuffled."""
    lab = np.zeros(n, dtype=np.int64)
    lab[: n // 2] = 1
    rng.shuffle(lab)
    return lab


DEFAULT_RANGES = {
    "radius": RADIUS_RANGE, "intensity": INTENSITY_RANGES, "corr_len": CORR_LEN_RANGES,
    "texture_amp": TEXTURE_AMP_RANGE, "elongation": ELONGATION_RANGES, "noise": NOISE_RANGE,
    "orientation": ORIENTATION_RANGE,
}
_PLACEMENTS = ("center", "inside")


def _resolve_ranges(ranges) -> dict:
    """Merge user overrides into :data:`DEFAULT_RANGES`, validating keys and shapes."""
    out = dict(DEFAULT_RANGES)
    for k, v in (ranges or {}).items():
        if k not in DEFAULT_RANGES:
            raise InputError(f"ranges key {k!r} is not known; allowed: {sorted(DEFAULT_RANGES)}")
        arr = np.asarray(v, dtype=float)
        if arr.shape != np.asarray(DEFAULT_RANGES[k]).shape or np.any(arr[..., 0] > arr[..., 1]):
            raise InputError(f"ranges[{k!r}]={v!r} must look like {DEFAULT_RANGES[k]!r} "
                             "(low <= high; per class for the task attributes)")
        out[k] = tuple(map(tuple, arr)) if arr.ndim == 2 else tuple(arr)
    return out


def sample_attributes(n_cases: int = 200, seed: int = 0, *, lesion_free_fraction: float = 0.2,
                      images_per_patient: int = 2, test_fraction: float = 0.3,
                      image_size: int = 64, dim: int = 2, ranges: dict | None = None):
    """Draw the planted attributes of a cohort (no pixels).

    Parameters
    ----------
    n_cases : int
        Number of images (rows).
    seed : int
        Seed; same arguments and seed give the same table.
    lesion_free_fraction : float in [0, 1)
        Fraction of images without a lesion (rounded to the nearest integer count).
    images_per_patient : int
        Consecutive cases share a ``patient_id`` (and the patient's anatomy).
    test_fraction : float in (0, 1)
        Fraction of *patients* in the ``test`` split; the rest are ``train``.
    image_size : int
        Image side (px); lesion lengths scale with ``image_size / 64``.
    dim : {2, 3}
        2D images or 3D volumes (3D radii are capped to the smaller volume).
    ranges : dict, optional
        Overrides of :data:`DEFAULT_RANGES` (lengths in px at the 64-px reference size), e.g.
        ``{"elongation": ((1.0, 1.2), (3.0, 5.0)), "radius": (4, 14)}`` for an easier shape task.
        Task attributes take one ``(low, high)`` per class (class 0 first).

    Returns
    -------
    pandas.DataFrame, shape (n_cases, ...)
        ``case_id, patient_id, split, has_lesion, task_*`` and the lesion attributes before
        rendering (``center_x/center_y/lesion_area_frac`` are filled in by rendering).
    """
    import pandas as pd

    _check_common(n_cases, image_size, dim, lesion_free_fraction)
    if int(images_per_patient) < 1:
        raise InputError(f"images_per_patient={images_per_patient!r} must be an integer >= 1")
    if not 0.0 < float(test_fraction) < 1.0:
        raise InputError(f"test_fraction={test_fraction!r} must be in (0, 1), e.g. 0.3")
    rg = _resolve_ranges(ranges)
    rng = np.random.default_rng([int(seed), 0xC0407])
    n = int(n_cases)
    scale = image_size / 64.0
    n_free = int(round(lesion_free_fraction * n))
    has = np.ones(n, dtype=np.int64)
    has[rng.permutation(n)[:n_free]] = 0
    les = np.flatnonzero(has == 1)

    tasks = {t: np.full(n, np.nan) for t in TASK_COLUMNS}
    for t in TASK_COLUMNS:  # independent balanced permutations among lesion cases
        tasks[t][les] = _balanced(rng, les.size)

    r_lo, r_hi = rg["radius"]
    r_hi_eff = r_hi if dim == 2 else 0.7 * r_hi  # volumes: keep lesions inside the gland region
    radius = np.exp(rng.uniform(np.log(max(r_lo * scale, 2.0)), np.log(max(r_hi_eff * scale, 3.0)), n))

    def draw(ranges, labels, unit=1.0):
        lo = np.where(labels == 1, ranges[1][0], ranges[0][0]) * unit
        hi = np.where(labels == 1, ranges[1][1], ranges[0][1]) * unit
        return rng.uniform(lo, hi)

    ti = np.nan_to_num(tasks["task_intensity"]).astype(int)
    tt = np.nan_to_num(tasks["task_texture"]).astype(int)
    # shape: control ROIs of lesion-free images draw their elongation like a random lesion
    ts = np.where(has == 1, np.nan_to_num(tasks["task_shape"]), rng.integers(0, 2, n)).astype(int)
    intensity = draw(rg["intensity"], ti)
    corr = draw(rg["corr_len"], tt, unit=max(scale, 0.5))
    amp = rng.uniform(*rg["texture_amp"], n)
    elong = draw(rg["elongation"], ts)
    noise = rng.uniform(*rg["noise"], n)
    orient = rng.uniform(*rg["orientation"], n)
    for arr in (intensity, corr, amp):
        arr[has == 0] = np.nan

    ipp = int(images_per_patient)
    pat_idx = np.arange(n) // ipp
    n_pat = int(pat_idx.max()) + 1 if n else 0
    n_test = min(max(int(round(test_fraction * n_pat)), 1), max(n_pat - 1, 1)) if n_pat > 1 else 0
    test_pat = set(rng.permutation(n_pat)[:n_test].tolist())
    width = max(4, len(str(n - 1)))
    pwidth = max(3, len(str(max(n_pat - 1, 0))))
    df = pd.DataFrame({
        "case_id": [f"case{i:0{width}d}" for i in range(n)],
        "patient_id": [f"pat{p:0{pwidth}d}" for p in pat_idx],
        "split": ["test" if p in test_pat else "train" for p in pat_idx],
        "has_lesion": has,
        **{t: tasks[t] for t in TASK_COLUMNS},
        "lesion_radius": radius,
        "lesion_intensity": intensity,
        "texture_corr_len": corr,
        "texture_amp": amp,
        "elongation": elong,
        "orientation": orient,
        "noise_sd": noise,
    })
    return df


def _check_common(n_cases, image_size, dim, lesion_free_fraction):
    if not isinstance(n_cases, (int, np.integer)) or n_cases < 2:
        raise InputError(f"n_cases={n_cases!r} must be an integer >= 2 (e.g. 200)")
    if dim not in (2, 3):
        raise InputError(f"dim={dim!r} is not allowed; use 2 (chest-X-ray-like images) or 3 (MRI-like volumes)")
    lo = 32 if dim == 2 else 16
    hi = 1024 if dim == 2 else 128
    if not isinstance(image_size, (int, np.integer)) or not lo <= image_size <= hi:
        raise InputError(f"image_size={image_size!r} must be an integer in [{lo}, {hi}] for dim={dim}")
    if not 0.0 <= float(lesion_free_fraction) < 1.0:
        raise InputError(f"lesion_free_fraction={lesion_free_fraction!r} must be in [0, 1), e.g. 0.2")


def _check_placement(placement):
    if placement not in _PLACEMENTS:
        raise InputError(f"placement={placement!r} is not allowed; use one of {list(_PLACEMENTS)}")


# --------------------------------------------------------------------------- rendering helpers
def _write_image(arr, path: Path, fmt: str, png_dtype: str, is_mask: bool):
    if fmt == "png":
        from PIL import Image

        if is_mask:
            Image.fromarray(arr.astype(np.uint8)).save(path)
        else:
            top = 255 if png_dtype == "uint8" else 65535
            q = np.round(np.clip(arr, 0.0, 1.0) * top).astype(png_dtype)
            Image.fromarray(q).save(path)
        return
    import SimpleITK as sitk

    im = sitk.GetImageFromArray(arr.astype(np.uint8) if is_mask else arr.astype(np.float32))
    sitk.WriteImage(im, str(path), True)


def _bbox(roi: np.ndarray):
    rows = np.flatnonzero(roi.any(axis=1))
    cols = np.flatnonzero(roi.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)


def iter_cases(table, image_size: int, seed: int, dim: int = 2, placement: str = "center"):
    """Render the cases of an attribute table one by one (what :func:`make_cohort` writes).

    Case ``i`` depends only on ``seed``, ``i``, its row and its patient's anatomy, never on the
    other cases.

    Parameters
    ----------
    table : pandas.DataFrame
        :func:`sample_attributes` output.
    image_size : int
    seed : int
    dim : {2, 3}
    placement : {"center", "inside"}
        Where 2D lesions go (see :func:`render_case_2d`); volumes ignore it.

    Yields
    ------
    record : dict
        The table row.
    image : numpy.ndarray, float32, shape (S, S) or (S, S, S)
    roi : numpy.ndarray, bool, same shape
    center : numpy.ndarray (dim,)
        ROI centre, numpy order (row, col) / (z, row, col), pixels.
    """
    if dim == 3:
        from radlens.synth.volume import patient_anatomy_3d, render_case_3d
    anatomies: dict[str, dict] = {}
    for i, rec in enumerate(table.to_dict("records")):
        pid = rec["patient_id"]
        if pid not in anatomies:
            prng = np.random.default_rng([int(seed), 0xA7A, int(pid[3:])])
            anatomies[pid] = patient_anatomy(prng) if dim == 2 else patient_anatomy_3d(prng)
        rng = np.random.default_rng([int(seed), 0x1AA9E, i])
        if dim == 2:
            img, m, c = render_case_2d(rec, image_size, anatomies[pid], rng, placement)
        else:
            img, m, c = render_case_3d(rec, image_size, anatomies[pid], rng)
        yield rec, img, m, c


def render_cohort(n_cases: int = 200, image_size: int = 64, seed: int = 0, dim: int = 2,
                  lesion_free_fraction: float = 0.2, placement: str = "center", **kwargs):
    """The cohort :func:`make_cohort` would write, in memory (same pixels, nothing on disk).

    Parameters
    ----------
    n_cases, image_size, seed, dim, lesion_free_fraction, placement
        As in :func:`make_cohort`.
    **kwargs
        ``images_per_patient``, ``test_fraction``, ``ranges`` (see :func:`sample_attributes`).

    Returns
    -------
    images : numpy.ndarray, float32, shape (n_cases, S, S) or (n_cases, S, S, S)
    rois : numpy.ndarray, bool, same shape
    table : pandas.DataFrame
        :func:`sample_attributes` plus ``center_x``, ``center_y`` (``center_z``) and
        ``lesion_area_frac``.
    """
    _check_placement(placement)
    table = sample_attributes(n_cases, seed, lesion_free_fraction=lesion_free_fraction, image_size=image_size,
                              dim=dim, **kwargs)
    imgs, rois, cents = [], [], []
    for _, img, m, c in iter_cases(table, image_size, seed, dim, placement):
        imgs.append(img)
        rois.append(m)
        cents.append(c)
    cents = np.asarray(cents)
    table = table.copy()
    table["center_x"], table["center_y"] = cents[:, -1], cents[:, -2]
    if dim == 3:
        table["center_z"] = cents[:, 0]
    rois = np.stack(rois)
    table["lesion_area_frac"] = rois.reshape(len(rois), -1).mean(axis=1)
    return np.stack(imgs), rois, table


def make_cohort(out_dir, n_cases: int = 200, image_size: int = 64, seed: int = 0, dim: int = 2,
                lesion_free_fraction: float = 0.2, roi: str = "mask", image_format: str = "nii.gz", *,
                images_per_patient: int = 2, test_fraction: float = 0.3, png_dtype: str = "uint8",
                ranges: dict | None = None, placement: str = "center",
                show_progress: bool | None = None) -> Path:
    """Generate a phantom cohort with planted ground truth and write its manifest.

    Parameters
    ----------
    out_dir : path
        Output folder (created); images go to ``images/<case_id>.<ext>``, masks to ``masks/``.
    n_cases : int
        Number of images (rows), >= 2.
    image_size : int
        Side in pixels: 2D images are ``(image_size, image_size)``, volumes ``image_size**3``.
    seed : int
        Same arguments + seed give identical files.
    dim : {2, 3}
        2 = chest-X-ray-like images; 3 = small MRI-like volumes (see :mod:`radlens.synth.volume`).
    lesion_free_fraction : float in [0, 1)
        Fraction of images without a lesion (they carry a control ROI and ``has_lesion = 0``).
    roi : {"mask", "bbox"}
        ROI form written in the manifest: a ``mask`` column (uint8 0/1 files) or ``bbox_x, bbox_y,
        bbox_w, bbox_h`` (the mask's tight bounding box in stored-image pixels, x = column, y = row;
        2D only).
    image_format : {"nii.gz", "png"}
        ``nii.gz``: float32 images, uint8 masks (SimpleITK, unit spacing). ``png``: images scaled
        from [0, 1] to ``png_dtype`` (2D only).
    images_per_patient : int
        Consecutive images share a patient (same anatomy, different pose, noise and lesion).
    test_fraction : float
        Fraction of patients in the ``test`` split.
    png_dtype : {"uint8", "uint16"}
    ranges : dict, optional
        Overrides of the attribute ranges (see :func:`sample_attributes`).
    placement : {"center", "inside"}
        ``center``: each lesion's centre lies in a lung field; ``inside``: the whole lesion does, where
        it fits (see :func:`render_case_2d`; 2D only, volumes ignore it).
    show_progress : bool or None
        Progress bar (None: only on an interactive terminal).

    Returns
    -------
    pathlib.Path
        ``out_dir/manifest.csv`` (columns: ``case_id, patient_id, split, image, mask`` or
        ``bbox_*``, ``label``, ``has_lesion``, ``task_texture, task_intensity, task_shape``,
        ``lesion_radius, lesion_area_frac, lesion_intensity, texture_corr_len, texture_amp,
        elongation, orientation, noise_sd, center_x, center_y`` (+ ``center_z`` when ``dim=3``)). A provenance sidecar
        ``manifest.csv.meta.json`` records the arguments and attribute definitions.
    """
    from radlens.io.artifacts import provenance, write_table
    from radlens.progress import progress

    if roi not in _ROI_CHOICES:
        raise InputError(f"roi={roi!r} is not allowed; use one of {list(_ROI_CHOICES)}")
    if image_format not in _FORMAT_CHOICES:
        raise InputError(f"image_format={image_format!r} is not allowed; use one of {list(_FORMAT_CHOICES)}")
    if png_dtype not in _PNG_DTYPES:
        raise InputError(f"png_dtype={png_dtype!r} is not allowed; use one of {list(_PNG_DTYPES)}")
    _check_common(n_cases, image_size, dim, lesion_free_fraction)
    _check_placement(placement)
    if dim == 3 and (roi == "bbox" or image_format == "png"):
        raise InputError(f"dim=3 volumes need roi='mask' and image_format='nii.gz' "
                         f"(got roi={roi!r}, image_format={image_format!r}); boxes and PNG are 2D only")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    if roi == "mask":
        (out / "masks").mkdir(parents=True, exist_ok=True)
    df = sample_attributes(n_cases, seed, lesion_free_fraction=lesion_free_fraction,
                           images_per_patient=images_per_patient, test_fraction=test_fraction,
                           image_size=image_size, dim=dim, ranges=ranges)
    ext = ".png" if image_format == "png" else ".nii.gz"
    images, masks, cx, cy, cz, area, boxes = [], [], [], [], [], [], []
    cases = iter_cases(df, image_size, seed, dim, placement)
    for rec, img, m, c in progress(cases, total=len(df), desc="phantoms", disable=(
            None if show_progress is None else not show_progress)):
        ip = out / "images" / f"{rec['case_id']}{ext}"
        _write_image(img, ip, image_format, png_dtype, is_mask=False)
        images.append(f"images/{ip.name}")
        if roi == "mask":
            mp = out / "masks" / f"{rec['case_id']}{ext}"
            _write_image(m, mp, image_format, png_dtype, is_mask=True)
            masks.append(f"masks/{mp.name}")
        else:
            boxes.append(_bbox(m))
        cy.append(float(c[-2]))
        cx.append(float(c[-1]))
        if dim == 3:
            cz.append(float(c[0]))
        area.append(float(m.mean()))

    cols = {"case_id": df["case_id"], "patient_id": df["patient_id"], "split": df["split"],
            "image": images}
    if roi == "mask":
        cols["mask"] = masks
    else:
        b = np.asarray(boxes)
        cols.update(bbox_x=b[:, 0], bbox_y=b[:, 1], bbox_w=b[:, 2], bbox_h=b[:, 3])
    cols["label"] = 1
    import pandas as pd

    man = pd.DataFrame(cols)
    man["has_lesion"] = df["has_lesion"].to_numpy()
    for t in TASK_COLUMNS:
        man[t] = df[t].astype("Int64").to_numpy()
    man["lesion_radius"] = df["lesion_radius"].round(4).to_numpy()
    man["lesion_area_frac"] = np.asarray(area)  # exact: ROI pixels / image pixels
    for c in ("lesion_intensity", "texture_corr_len", "texture_amp", "elongation", "orientation"):
        man[c] = df[c].round(4).to_numpy()
    man["noise_sd"] = df["noise_sd"].round(4).to_numpy()
    man["center_x"] = np.round(cx, 3)
    man["center_y"] = np.round(cy, 3)
    if dim == 3:
        man["center_z"] = np.round(cz, 3)
    config = dict(n_cases=int(n_cases), image_size=int(image_size), seed=int(seed), dim=int(dim),
                  lesion_free_fraction=float(lesion_free_fraction), roi=roi, image_format=image_format,
                  images_per_patient=int(images_per_patient), test_fraction=float(test_fraction),
                  png_dtype=png_dtype, ranges=_resolve_ranges(ranges), placement=placement)
    meta = provenance("synth", config, attributes=attribute_docs(ranges))
    path = write_table(man, out / "manifest.csv", meta=meta)
    log.info("wrote %d phantom cases (%d lesion-free) to %s", len(man), int((man.has_lesion == 0).sum()),
             os.fspath(path))
    return path


def attribute_docs(ranges: dict | None = None) -> dict:
    """:data:`ATTRIBUTE_DOCS` with the task classes' ranges as resolved from ``ranges`` overrides
    (a swapped range pair swaps what class 1 means, e.g. ``corr_len`` ``((2.0, 3.2), (0.5, 0.8))``
    makes ``task_texture = 1`` the fine texture)."""
    rg = _resolve_ranges(ranges)
    d = dict(ATTRIBUTE_DOCS)
    fine_is_one = rg["corr_len"][1][1] < rg["corr_len"][0][0]
    d["lesion_intensity"] = ("planted mean intensity inside the lesion on the [0, 1] scale "
                             "(task_intensity=1: %s, 0: %s)" % (rg["intensity"][1], rg["intensity"][0]))
    d["texture_corr_len"] = ("Gaussian-random-field smoothing sigma in px at 64 px, scaled with size "
                             "(task_texture=1: %s, 0: %s)" % (rg["corr_len"][1], rg["corr_len"][0]))
    d["elongation"] = "major / minor axis (task_shape=1: %s, 0: %s)" % (rg["elongation"][1], rg["elongation"][0])
    d["texture_amp"] = "std of the texture field, drawn independently of every task: %s" % (rg["texture_amp"],)
    d["task_texture"] = ("1 = %s texture (%s correlation length); empty when has_lesion=0"
                         % (("fine", "short") if fine_is_one else ("coarse", "long")))
    return d


ATTRIBUTE_DOCS = {
    "has_lesion": "1 = lesion planted in the ROI; 0 = lesion-free image with a control ROI",
    "lesion_radius": "equivalent radius sqrt(major*minor semi-axes) in px (3D: cube root of the three); "
                     "log-uniform; for has_lesion=0 the control ROI's",
    "lesion_area_frac": "ROI pixels / image pixels (3D: voxels / volume)",
    "lesion_intensity": "planted mean intensity inside the lesion on the [0, 1] scale "
                        "(task_intensity=1: %s, 0: %s)" % (INTENSITY_RANGES[1], INTENSITY_RANGES[0]),
    "texture_corr_len": "Gaussian-random-field smoothing sigma in px at 64 px, scaled with size "
                        "(task_texture=1: %s, 0: %s)" % (CORR_LEN_RANGES[1], CORR_LEN_RANGES[0]),
    "texture_amp": "std of the texture field, drawn independently of every task: %s" % (TEXTURE_AMP_RANGE,),
    "elongation": "major / minor axis (task_shape=1: %s, 0: %s)" % (ELONGATION_RANGES[1], ELONGATION_RANGES[0]),
    "orientation": "major-axis angle in radians, counter-clockwise from the image x axis as displayed "
                   "(pi/2 = vertical); uniform over [0, pi) unless ranges['orientation'] narrows it",
    "noise_sd": "std of the additive image noise (3D: of each Rician component)",
    "center_x": "ROI centre column (px)", "center_y": "ROI centre row (px)",
    "task_texture": "1 = coarse texture (long correlation length); empty when has_lesion=0",
    "task_intensity": "1 = bright lesion; empty when has_lesion=0",
    "task_shape": "1 = elongated lesion; empty when has_lesion=0",
}
