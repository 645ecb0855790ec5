"""Per-encoder preprocessing with MONAI transforms (2D and 3D), and the ROI mapped alongside.

Pipeline for one image (numpy order, ``(H, W)`` or ``(D, H, W)``):

1. ``clip`` (optional intensity window, e.g. CT HU) on the stored image;
2. ``roi.mode: crop`` only: crop the ROI's bounding box plus ``crop_margin`` × its size on each
   side, widened so the crop has the model input's aspect ratio (no distortion), rounded outward
   to whole pixels and shifted/clipped to lie inside the image;
3. resize to ``spatial_size`` (MONAI ``Resize``; ``auto`` = area averaging when every axis shrinks,
   else bilinear / trilinear);
4. intensity: ``zscore`` (per image), ``minmax`` (to [0, 1]), ``none``, or ``{mean, std}``
   per channel after min-max scaling to [0, 1] (ImageNet-style; ``rescale: none``: on the stored,
   clipped values instead, a fixed affine map with no per-image statistics);
5. channel replication to ``channels``.

The ROI follows steps 2-3 exactly (:func:`radlens.encoders.tokens.stored_to_model_coverage`): the
result is the covered fraction of every model-input pixel.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from radlens.encoders.tokens import stored_to_model_coverage
from radlens.errors import InputError

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    """One image ready for the model.

    Attributes
    ----------
    x : Tensor float32, shape (C, *spatial_size)
    roi_cov : ndarray float64, shape spatial_size, or None
        Covered fraction of each model-input pixel.
    region : list of (lo, hi)
        Part of the stored image fed to the model, per axis (the crop; whole image in full mode).
    """

    x: Any
    roi_cov: np.ndarray | None
    region: list[tuple[int, int]]


def crop_region(roi: np.ndarray, margin: float, spatial_size: Sequence[int]) -> list[tuple[int, int]]:
    """Crop box of the ROI for ``roi.mode: crop``.

    Parameters
    ----------
    roi : ndarray, shape (H, W) or (D, H, W); > 0 inside
    margin : float
        Added on each side as a fraction of the ROI's extent along that axis.
    spatial_size : model input size; the crop is widened to its aspect ratio.

    Returns
    -------
    list of (lo, hi) integer pixel bounds per axis, ``0 <= lo < hi <= shape``.
    """
    nz = np.nonzero(np.asarray(roi) > 0)
    if nz[0].size == 0:
        raise InputError("ROI is empty; crop mode needs a non-empty ROI")
    ext = [(int(ix.min()), int(ix.max()) + 1) for ix in nz]
    want = [(hi - lo) * (1.0 + 2.0 * margin) for lo, hi in ext]
    scale = max(w / s for w, s in zip(want, spatial_size))  # stored pixels per model pixel
    region = []
    for (lo, hi), s, n in zip(ext, spatial_size, roi.shape):
        size = scale * s
        c = 0.5 * (lo + hi)
        a, b = math.floor(c - size / 2 + 1e-9), math.ceil(c + size / 2 - 1e-9)
        if b - a >= n:
            a, b = 0, n
        elif a < 0:
            a, b = 0, b - a
        elif b > n:
            a, b = a - (b - n), n
        region.append((int(a), int(b)))
    return region


def _resize_mode(mode: str, src: Sequence[int], dst: Sequence[int]) -> str:
    if mode != "auto":
        if mode == "bilinear" and len(dst) == 3:
            return "trilinear"
        return mode
    if all(d <= s for s, d in zip(src, dst)):
        return "area"
    return "bilinear" if len(dst) == 2 else "trilinear"


class Preprocessor:
    """Applies an encoder's ``preprocess`` and ``roi`` spec to stored-image arrays.

    Parameters
    ----------
    pre : dict
        Normalised ``preprocess`` section (``spatial_size`` filled in).
    roi : dict
        Normalised ``roi`` section.
    channels : int
        Channels the model takes.
    """

    def __init__(self, pre: dict, roi: dict, channels: int):
        self.pre = pre
        self.roi = roi
        self.channels = int(channels)
        self.spatial_size = tuple(int(s) for s in pre["spatial_size"])

    @staticmethod
    def import_dependencies() -> None:
        """Import the transforms now (``import monai`` takes seconds: forked loader processes inherit
        them instead of importing them each)."""
        import monai.transforms  # noqa: F401
        import monai.utils  # noqa: F401

    def _check_image(self, image: np.ndarray, case_id: str) -> np.ndarray:
        image = np.asarray(image)
        nd = len(self.spatial_size)
        if image.ndim == nd + 1 and image.shape[0] == 1:
            image = image[0]
        if image.ndim != nd:
            raise InputError(f"case {case_id!r}: image has shape {image.shape} but the encoder takes {nd}D input "
                             f"(preprocess.spatial_size={list(self.spatial_size)}); use an encoder for "
                             f"{image.ndim}D images or convert the images")
        if not np.issubdtype(image.dtype, np.number):
            raise InputError(f"case {case_id!r}: image dtype {image.dtype} is not numeric")
        return image.astype(np.float32, copy=False)

    def __call__(self, image: np.ndarray, roi: np.ndarray | None = None, case_id: str = "?",
                 roi_mode: str | None = None, same_image_as: Prepared | None = None) -> Prepared:
        """Prepare one image (and its ROI).

        Parameters
        ----------
        image : ndarray, shape (H, W) or (D, H, W), stored-image pixels
        roi : ndarray bool or float in [0, 1], same shape, optional
        case_id : str
            Named in errors.
        roi_mode : {"full", "crop"}, optional
            Overrides the spec's ``roi.mode``.
        same_image_as : Prepared, optional
            The result for another ROI of this very image (full mode): its model input is reused,
            only this ROI is mapped (several ROIs of one image are decoded and resized once).

        Returns
        -------
        Prepared
        """
        import torch
        from monai.transforms import (NormalizeIntensity, Resize, ScaleIntensity, ScaleIntensityRange,
                                      SpatialCrop)
        from monai.utils import convert_to_tensor

        image = self._check_image(image, case_id)
        mode = roi_mode or self.roi["mode"]
        reuse = same_image_as is not None and mode == "full"
        if not reuse and not np.isfinite(image).all():
            raise InputError(f"case {case_id!r}: image holds NaN or infinite values; fix or mask them before embedding")
        if roi is not None:
            roi = np.asarray(roi)
            if roi.shape != image.shape:
                roi = roi.reshape(image.shape) if roi.size == image.size else roi
            if roi.shape != image.shape:
                raise InputError(f"case {case_id!r}: ROI shape {roi.shape} differs from image shape {image.shape}")
            if not (roi > 0).any():
                raise InputError(f"case {case_id!r}: ROI is empty (no pixel inside the mask/box); fix the mask, its "
                                 "label value, or bbox_w/bbox_h")
        elif mode == "crop":
            raise InputError(f"case {case_id!r}: roi.mode='crop' needs an ROI")
        region = ([(0, n) for n in image.shape] if mode == "full"
                  else crop_region(roi, self.roi["crop_margin"], self.spatial_size))
        if reuse:
            cov = stored_to_model_coverage(roi, region, self.spatial_size) if roi is not None else None
            return Prepared(same_image_as.x, cov, region)

        t = torch.from_numpy(np.ascontiguousarray(image))[None]  # (1, *spatial)
        pre = self.pre
        if pre["clip"] is not None:
            lo, hi = pre["clip"]
            t = ScaleIntensityRange(a_min=lo, a_max=hi, b_min=lo, b_max=hi, clip=True)(t)
        if mode == "crop":
            t = SpatialCrop(roi_start=[a for a, _ in region], roi_end=[b for _, b in region])(t)
        src = tuple(t.shape[1:])
        interp = _resize_mode(pre["interpolation"], src, self.spatial_size)
        if src != self.spatial_size:
            kw = {"align_corners": False} if interp in ("bilinear", "trilinear", "bicubic") else {}
            t = Resize(spatial_size=self.spatial_size, mode=interp, anti_aliasing=False, **kw)(t)
        inten = pre["intensity"]
        if inten == "zscore":
            t = NormalizeIntensity()(t)
        elif inten == "minmax" or (isinstance(inten, dict) and inten.get("rescale", "minmax") == "minmax"):
            t = ScaleIntensity(minv=0.0, maxv=1.0)(t)
        if self.channels > 1:
            # a plain copy per channel, in numpy (single-threaded): torch's copy kernels (MONAI's
            # RepeatChannel = repeat_interleave, or Tensor.repeat) go multi-threaded above 32k values
            # and cost 7-20 ms per 128 px image on a busy 2-core machine; same values
            a = convert_to_tensor(t, dtype=torch.float32, track_meta=False).numpy()
            t = torch.from_numpy(np.repeat(a, self.channels, axis=0))
        if isinstance(inten, dict):
            mean, std = inten["mean"], inten["std"]
            if len(mean) not in (1, self.channels) or len(std) not in (1, self.channels):
                raise InputError(f"preprocess.intensity mean/std have {len(mean)}/{len(std)} entries but the "
                                 f"model takes {self.channels} channels")
            mean = [mean[0]] * self.channels if len(mean) == 1 else mean
            std = [std[0]] * self.channels if len(std) == 1 else std
            t = NormalizeIntensity(subtrahend=mean, divisor=std, channel_wise=True)(t)
        x = convert_to_tensor(t, dtype=torch.float32, track_meta=False)
        cov = stored_to_model_coverage(roi, region, self.spatial_size) if roi is not None else None
        return Prepared(x.contiguous(), cov, region)
