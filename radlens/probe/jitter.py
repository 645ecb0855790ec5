"""Box-jitter sensitivity: how much does ROI pooling depend on an exact box?

At jitter level ``j`` each box ``(x, y, w, h)`` is moved by ``(u_x·j·w, u_y·j·h)`` and scaled
about its centre by ``(1 + j)^v`` with ``u_x, u_y, v ~ U(−1, 1)`` drawn independently per box
(seeded), then clipped to the image. ``j = 0`` returns the boxes unchanged; ``j = 1`` moves a box
up to its own size and scales it by up to ×2 or ×½. The mean IoU with the true boxes is reported
next to each level so a curve can be read in either unit.
"""
from __future__ import annotations

import numpy as np

from radlens.errors import InputError


def jitter_boxes(boxes, level: float, shapes, seed: int = 0) -> np.ndarray:
    """Jittered copies of ``boxes``.

    Parameters
    ----------
    boxes : array-like, shape (n, 4)   ``(x, y, w, h)`` in pixels
    level : float >= 0   jitter level (fraction of the box size; see module docstring)
    shapes : sequence of n image shapes (..., H, W) for clipping
    seed : same seed → same jitter (per level, the draws of a box do not depend on other boxes)

    Returns
    -------
    ndarray float, shape (n, 4); each box at least 1 pixel wide and tall, inside its image.
    """
    b = np.asarray(boxes, float).reshape(-1, 4)
    if not np.isfinite(level) or level < 0:
        raise InputError(f"jitter level={level!r} must be a finite number >= 0")
    if len(shapes) != b.shape[0]:
        raise InputError(f"jitter_boxes: {b.shape[0]} boxes but {len(shapes)} image shapes")
    if level == 0:
        return b.copy()
    rng = np.random.default_rng(seed)
    u = rng.uniform(-1, 1, size=(b.shape[0], 3))
    w = b[:, 2] * (1 + level) ** u[:, 2]
    h = b[:, 3] * (1 + level) ** u[:, 2]
    cx = b[:, 0] + b[:, 2] / 2 + u[:, 0] * level * b[:, 2]
    cy = b[:, 1] + b[:, 3] / 2 + u[:, 1] * level * b[:, 3]
    out = np.empty_like(b)
    for i, shp in enumerate(shapes):
        H, W = shp[-2:]
        x0 = np.clip(cx[i] - w[i] / 2, 0, W - 1)
        y0 = np.clip(cy[i] - h[i] / 2, 0, H - 1)
        x1 = np.clip(cx[i] + w[i] / 2, x0 + 1, W)
        y1 = np.clip(cy[i] + h[i] / 2, y0 + 1, H)
        out[i] = (x0, y0, x1 - x0, y1 - y0)
    return out


def box_iou(a, b) -> np.ndarray:
    """IoU of paired boxes ``(x, y, w, h)``, shapes (n, 4) and (n, 4) → (n,)."""
    a = np.asarray(a, float).reshape(-1, 4)
    b = np.asarray(b, float).reshape(-1, 4)
    ix = np.clip(np.minimum(a[:, 0] + a[:, 2], b[:, 0] + b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, 1] + a[:, 3], b[:, 1] + b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    inter = ix * iy
    union = a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
