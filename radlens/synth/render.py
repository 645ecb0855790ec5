"""Drawing the phantoms: anatomy, background, anti-aliased lesions and where they go.

Used by :mod:`radlens.synth.cohort` (2D chest-X-ray-like images) and :mod:`radlens.synth.volume`
(3D); the model of intensities is described in :mod:`radlens.synth.cohort`.
"""
from __future__ import annotations

import numpy as np


def soft_ellipse(shape, center, radii, angle=0.0, supersample=4, blur=0.0):
    """Anti-aliased coverage of an ellipse (2D) or ellipsoid (3D) on a pixel grid.

    Parameters
    ----------
    shape : tuple of int
        ``(H, W)`` or ``(D, H, W)``.
    center : sequence of float
        Centre in pixel coordinates, **numpy order** (``(row, col)`` / ``(z, row, col)``).
    radii : sequence of float
        Semi-axes, numpy order, *before* rotation.
    angle : float
        Rotation (radians) in the (row, col) plane, counter-clockwise as displayed.
    supersample : int
        Sub-samples per pixel per axis.
    blur : float
        Optional Gaussian blur (px) of the coverage (soft edges).

    Returns
    -------
    numpy.ndarray, float32, shape ``shape``
        Coverage fraction in [0, 1].
    """
    from scipy import ndimage

    nd = len(shape)
    ss = int(supersample)
    off = (np.arange(ss) + 0.5) / ss - 0.5
    axes = [(np.arange(s)[:, None] + off[None, :]).ravel() for s in shape]
    grids = np.meshgrid(*axes, indexing="ij")
    d = [g - c for g, c in zip(grids, center)]
    ca, sa = np.cos(angle), np.sin(angle)
    # rotate (row, col): u along the first in-plane axis, v along the second
    r_, c_ = d[-2], d[-1]
    u = ca * c_ - sa * r_
    v = sa * c_ + ca * r_
    # radii[-1] is the semi-axis along u (x direction before rotation), radii[-2] along v
    q = (u / radii[-1]) ** 2 + (v / radii[-2]) ** 2
    if nd == 3:
        q = q + (d[0] / radii[0]) ** 2
    inside = (q <= 1.0).astype(np.float32)
    cov = inside.reshape(*[x for s in shape for x in (s, ss)]).mean(axis=tuple(range(1, 2 * nd, 2)))
    if blur > 0:
        cov = ndimage.gaussian_filter(cov, blur)
    return cov.astype(np.float32)


def gaussian_field(shape, corr_len, rng):
    """Zero-mean, unit-std Gaussian random field (white noise smoothed with a Gaussian of ``corr_len`` px)."""
    from scipy import ndimage

    f = ndimage.gaussian_filter(rng.standard_normal(shape), float(corr_len), mode="wrap")
    return ((f - f.mean()) / (f.std() + 1e-12)).astype(np.float32)


def _sigmoid_ellipse(xx, yy, cx, cy, rx, ry, soft):
    r = np.sqrt(((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2)
    return 1.0 / (1.0 + np.exp(np.clip((r - 1.0) / soft, -50, 50)))


def patient_anatomy(rng: np.random.Generator) -> dict:
    """Patient-level anatomy parameters (shared by all images of a patient)."""
    return {
        "lung_rx": rng.uniform(0.15, 0.19), "lung_ry": rng.uniform(0.27, 0.33),
        "lung_sep": rng.uniform(0.19, 0.24), "heart_r": rng.uniform(0.13, 0.18),
        "rib_period": rng.uniform(0.085, 0.11), "rib_curv": rng.uniform(0.8, 1.6),
        "rib_phase": rng.uniform(0, 1), "tissue": rng.uniform(0.50, 0.60),
        "lung_depth": rng.uniform(0.28, 0.34),
    }


def chest_background(size: int, anatomy: dict, rng: np.random.Generator):
    """A chest-X-ray-like background (frontal view, bright = dense).

    Returns
    -------
    image : numpy.ndarray, float32, shape (size, size)
    lung : numpy.ndarray, float32, shape (size, size)
        Lung-field weight in [0, 1] (where lesions may sit).
    """
    from scipy import ndimage

    a = anatomy
    dx, dy = rng.normal(0, 0.015, 2)      # image-level pose jitter
    ys, xs = (np.mgrid[0:size, 0:size] + 0.5) / size - 0.5
    xx, yy = xs - dx, ys - dy
    body = _sigmoid_ellipse(xx, yy, 0.0, 0.08, 0.47, 0.62, 0.03)
    img = 0.06 + (a["tissue"] - 0.06) * body
    img = img + 0.04 * (yy + 0.5) * body                          # denser towards the abdomen
    lungs = np.maximum(
        _sigmoid_ellipse(xx, yy, -a["lung_sep"], -0.04, a["lung_rx"], a["lung_ry"], 0.06),
        _sigmoid_ellipse(xx, yy, a["lung_sep"] + 0.01, -0.05, a["lung_rx"] * 0.95, a["lung_ry"] * 0.95, 0.06),
    )
    heart = _sigmoid_ellipse(xx, yy, 0.07, 0.17, a["heart_r"] * 1.15, a["heart_r"], 0.08)
    lungs = lungs * (1.0 - 0.85 * heart)
    img = img - a["lung_depth"] * lungs
    spine = np.exp(-0.5 * (xx / 0.045) ** 2) * body
    img = img + 0.10 * spine + 0.06 * heart
    ribs_y = yy - a["rib_curv"] * xx ** 2 + 0.15 * np.abs(xx)
    ribs = (0.5 * (1 + np.cos(2 * np.pi * (ribs_y / a["rib_period"] + a["rib_phase"])))) ** 3
    img = img + 0.06 * ribs * body * (0.4 + 0.6 * lungs) * (np.abs(xx) > 0.04)
    clav = np.exp(-0.5 * ((yy + 0.30 - 0.35 * np.abs(xx)) / 0.02) ** 2) * (np.abs(xx) < 0.32)
    img = img + 0.06 * clav * body
    low = ndimage.gaussian_filter(rng.standard_normal((size, size)), size / 10.0, mode="reflect")
    img = img + 0.025 * low / (low.std() + 1e-12) * body
    img = ndimage.gaussian_filter(img, 0.5 * size / 64.0)
    return img.astype(np.float32), lungs.astype(np.float32)


def _pick_center(weight: np.ndarray, extent: float, rng: np.random.Generator, thresh=0.7):
    """A centre (numpy order) where ``weight > thresh`` whose ``extent``-px box stays in the image.

    The threshold is relaxed step by step when no position qualifies (very large lesions on small
    images); the image centre is the last resort.
    """
    size = np.asarray(weight.shape, dtype=float)
    margin = float(np.ceil(extent) + 1)
    idx = np.indices(weight.shape)
    inside = np.ones(weight.shape, bool)
    for ax in range(weight.ndim):
        inside &= (idx[ax] >= margin) & (idx[ax] < size[ax] - margin)
    for t in (thresh, 0.4, 0.1, -1.0):
        cand = np.argwhere(inside & (weight > t))
        if len(cand):
            c = cand[rng.integers(len(cand))] + 0.5 + rng.uniform(-0.5, 0.5, weight.ndim)
            return np.clip(c, margin, size - margin)
    return size / 2.0


def _pick_inside(weight: np.ndarray, footprint: np.ndarray, rng: np.random.Generator, thresh=0.8):
    """A centre (numpy order, 2D) where the lesion ``footprint`` lies inside ``weight``: the mean of
    ``weight`` under the footprint (outside the image counts as 0) is >= ``thresh``.

    The threshold is relaxed step by step when the lesion fits nowhere; the best-covered position is
    the last resort. ``footprint`` is the lesion's coverage on an odd-sided grid centred on the lesion.
    """
    from scipy import ndimage

    k = footprint / max(float(footprint.sum()), 1e-12)
    cover = ndimage.correlate(weight.astype(np.float64), k, mode="constant", cval=0.0)
    for t in (thresh, 0.6, 0.4):
        cand = np.argwhere(cover >= t)
        if len(cand):
            return cand[rng.integers(len(cand))] + rng.uniform(-0.5, 0.5, weight.ndim)
    return np.asarray(np.unravel_index(int(np.argmax(cover)), cover.shape), dtype=float)


def _paint_lesion(img, center, radii, angle, attrs, rng, shape_only=False):
    """Blend a textured lesion into ``img`` (in place) and return its boolean mask."""
    cov = soft_ellipse(img.shape, center, radii, angle, supersample=4)
    mask = cov >= 0.5
    if not mask.any():  # sub-pixel lesion: keep at least the centre pixel
        mask[tuple(np.clip(np.floor(center).astype(int), 0, np.array(img.shape) - 1))] = True
    if shape_only:
        return mask
    from scipy import ndimage

    alpha = ndimage.gaussian_filter(cov, 0.4)  # slightly soft edges
    field = gaussian_field(img.shape, attrs["texture_corr_len"], rng)
    lesion = attrs["lesion_intensity"] + attrs["texture_amp"] * field
    img *= (1.0 - alpha)
    img += alpha * lesion
    return mask


def render_case_2d(attrs: dict, image_size: int, anatomy: dict, rng: np.random.Generator,
                   placement: str = "center"):
    """Render one chest-X-ray-like image with its lesion (or control ROI).

    Parameters
    ----------
    attrs : dict
        One row of :func:`sample_attributes` (``has_lesion``, ``lesion_radius``, ``elongation``,
        ``orientation`` and, for lesions, ``lesion_intensity``, ``texture_corr_len``, ``texture_amp``).
    image_size : int
    anatomy : dict
        :func:`patient_anatomy` output.
    rng : numpy.random.Generator
    placement : {"center", "inside"}
        ``center``: the lesion's centre lies in a lung field (a long lesion may reach into the
        mediastinum); ``inside``: the whole lesion lies in a lung field where it fits (mean lung
        weight under it >= 0.8), so its outline is seen against lung everywhere.

    Returns
    -------
    image : numpy.ndarray, float32, shape (image_size, image_size)
    roi : numpy.ndarray, bool, shape (image_size, image_size)
    center : ndarray (2,)
        ROI centre (row, col) in pixels.
    """
    img, lungs = chest_background(image_size, anatomy, rng)
    r, e = float(attrs["lesion_radius"]), float(attrs["elongation"])
    major, minor = r * np.sqrt(e), r / np.sqrt(e)
    if placement == "inside":
        half = int(np.ceil(major)) + 1
        foot = soft_ellipse((2 * half + 1,) * 2, (half, half), (minor, major),
                            float(attrs["orientation"]), supersample=2)
        center = _pick_inside(lungs, foot, rng)
    else:
        center = _pick_center(lungs, major + 1, rng)
    roi = _paint_lesion(img, center, (minor, major), float(attrs["orientation"]), attrs, rng,
                        shape_only=not int(attrs["has_lesion"]))
    img += rng.normal(0.0, float(attrs["noise_sd"]), img.shape).astype(np.float32)
    return img.astype(np.float32), roi, center


# --------------------------------------------------------------------------- writing
