"""Small MRI-like phantom volumes (axial T2-weighted pelvis, prostate-like gland) for ``dim=3`` cohorts.

The same planted lesion attributes as the 2D cohort (:mod:`radlens.synth.cohort`): an ellipsoid of
equivalent radius ``lesion_radius`` (cube root of the semi-axes' product), elongated along an
in-plane axis at ``orientation``, filled with ``lesion_intensity + texture_amp * field`` where
``field`` is a unit-variance 3D Gaussian random field of correlation length ``texture_corr_len``.
Arrays are numpy order ``(D, H, W)`` = ``(z, row, col)``; intensities on a [0, 1] scale with a smooth
multiplicative bias field and Rician noise, as in magnitude MR images.
"""
from __future__ import annotations

import numpy as np

from radlens.synth.render import gaussian_field, soft_ellipse


def patient_anatomy_3d(rng: np.random.Generator) -> dict:
    """Patient-level anatomy of the pelvis phantom (shared by a patient's volumes)."""
    return {
        "body_rx": rng.uniform(0.42, 0.47), "body_ry": rng.uniform(0.32, 0.37),
        "fat": rng.uniform(0.05, 0.08), "gland_rx": rng.uniform(0.20, 0.24),
        "gland_ry": rng.uniform(0.15, 0.19), "gland_rz": rng.uniform(0.26, 0.32),
        "muscle": rng.uniform(0.30, 0.36), "tz": rng.uniform(0.40, 0.46), "pz": rng.uniform(0.56, 0.62),
    }


def _ell(zz, yy, xx, c, r):
    return ((zz - c[0]) / r[0]) ** 2 + ((yy - c[1]) / r[1]) ** 2 + ((xx - c[2]) / r[2]) ** 2


def pelvis_background(size: int, anatomy: dict, rng: np.random.Generator):
    """An MRI-like pelvis volume.

    Returns
    -------
    volume : numpy.ndarray, float32, shape (size, size, size)
        Noise-free volume (noise is added after the lesion).
    gland : numpy.ndarray, float32, shape (size, size, size)
        Gland weight in [0, 1] (where lesions may sit).
    """
    from scipy import ndimage

    a = anatomy
    shift = rng.normal(0, 0.015, 3)
    zz, yy, xx = (np.mgrid[0:size, 0:size, 0:size] + 0.5) / size - 0.5
    zz, yy, xx = zz - shift[0], yy - shift[1], xx - shift[2]
    inplane_body = (yy / a["body_ry"]) ** 2 + (xx / a["body_rx"]) ** 2
    body = (inplane_body <= 1.0).astype(np.float32)
    inner = (((yy / (a["body_ry"] - a["fat"])) ** 2 + (xx / (a["body_rx"] - a["fat"])) ** 2) <= 1.0)
    vol = np.where(body > 0, 0.78, 0.02).astype(np.float32)           # subcutaneous fat: bright on T2
    vol = np.where(inner, a["muscle"], vol)
    bones = [(0.0, 0.02, s * 0.29) for s in (-1, 1)]                   # femoral heads: dark cortex, fatty marrow
    for c in bones:
        q = _ell(zz, yy, xx, c, (0.6, 0.075, 0.075))
        vol = np.where(q <= 1.0, 0.12, vol)
        vol = np.where(q <= 0.55, 0.62, vol)
    gland_q = _ell(zz, yy, xx, (0.0, -0.02, 0.0), (a["gland_rz"], a["gland_ry"], a["gland_rx"]))
    gland = (gland_q <= 1.0).astype(np.float32)
    pz = gland * ((yy + 0.02) > 0.25 * a["gland_ry"])                  # posterior peripheral zone
    vol = np.where(gland > 0, a["tz"], vol)
    vol = np.where(pz > 0, a["pz"], vol)
    rectum = _ell(zz, yy, xx, (0.0, a["gland_ry"] + 0.09, 0.0), (0.8, 0.06, 0.08)) <= 1.0
    vol = np.where(rectum, 0.05, vol)
    vol = ndimage.gaussian_filter(vol, 0.6 * size / 32.0)
    bias = ndimage.gaussian_filter(rng.standard_normal((size,) * 3), size / 5.0, mode="reflect")
    vol = vol * (1.0 + 0.12 * bias / (bias.std() + 1e-12))
    gland_w = ndimage.gaussian_filter(gland, 1.0)
    return vol.astype(np.float32), gland_w.astype(np.float32)


def render_case_3d(attrs: dict, image_size: int, anatomy: dict, rng: np.random.Generator):
    """Render one MRI-like volume with its lesion (or control ROI).

    Parameters
    ----------
    attrs : dict
        One row of :func:`radlens.synth.cohort.sample_attributes`.
    image_size : int
        Volume side (voxels).
    anatomy : dict
        :func:`patient_anatomy_3d` output.
    rng : numpy.random.Generator

    Returns
    -------
    volume : numpy.ndarray, float32, shape (image_size,) * 3
    roi : numpy.ndarray, bool, same shape
    center : ndarray (3,)
        ROI centre ``(z, row, col)`` in voxels.
    """
    from radlens.synth.render import _pick_center

    vol, gland = pelvis_background(image_size, anatomy, rng)
    r, e = float(attrs["lesion_radius"]), float(attrs["elongation"])
    major, minor = r * e ** (2.0 / 3.0), r * e ** (-1.0 / 3.0)
    center = _pick_center(gland, major + 1, rng, thresh=0.6)
    cov = soft_ellipse(vol.shape, center, (minor, minor, major), float(attrs["orientation"]), supersample=3)
    roi = cov >= 0.5
    if not roi.any():
        roi[tuple(np.clip(np.floor(center).astype(int), 0, image_size - 1))] = True
    if int(attrs["has_lesion"]):
        from scipy import ndimage

        alpha = ndimage.gaussian_filter(cov, 0.4)
        field = gaussian_field(vol.shape, attrs["texture_corr_len"], rng)
        vol = (1.0 - alpha) * vol + alpha * (attrs["lesion_intensity"] + attrs["texture_amp"] * field)
    sigma = float(attrs["noise_sd"])
    n1 = rng.normal(0.0, sigma, vol.shape)
    n2 = rng.normal(0.0, sigma, vol.shape)
    vol = np.sqrt((vol + n1) ** 2 + n2 ** 2)                            # Rician magnitude noise
    return vol.astype(np.float32), roi, center
