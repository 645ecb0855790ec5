"""ROI → tokens: exact geometry from stored-image pixels to model-input pixels to the token grid.

Conventions (see ``docs/encoders.md`` for a worked example)

* Arrays are in numpy order: ``(H, W)`` or ``(D, H, W)``. Pixel ``i`` along an axis covers the
  continuous interval ``[i, i + 1)``.
* A token grid of ``g`` cells over a model input of ``S`` pixels splits the axis into equal cells:
  cell ``k`` covers ``[k * S / g, (k + 1) * S / g)`` (for a ViT ``S / g`` is the patch size; for a
  CNN feature map it is the input size over the feature-map size). Tokens are numbered row-major
  over the grid (the order of ``feature_map.flatten(2)`` and of ViT patch tokens).
* A crop ``[lo, hi)`` of the stored image resized to ``S`` model pixels maps model pixel ``i``
  onto stored interval ``[lo + i * (hi - lo) / S, lo + (i + 1) * (hi - lo) / S)``.

Every mapping is a separable linear operator (one small matrix per axis), so coverages are exact
area fractions, also for non-square images, non-integer scale factors and 3D volumes.
"""
from __future__ import annotations

import functools
import logging
from typing import Sequence

import numpy as np

from radlens.errors import InputError

log = logging.getLogger(__name__)


def interval_overlap_matrix(n_cells: int, n_pixels: int, lo: float = 0.0, hi: float | None = None) -> np.ndarray:
    """Fraction of each cell covered by each unit pixel along one axis.

    Parameters
    ----------
    n_cells : int
        Number of equal cells splitting ``[lo, hi)``.
    n_pixels : int
        Number of unit pixels ``[j, j + 1)``, ``j = 0 .. n_pixels - 1``.
    lo, hi : float
        The span the cells cover, in pixel coordinates (default the whole axis).

    Returns
    -------
    ndarray, shape (n_cells, n_pixels)
        ``A[k, j] = |cell_k ∩ [j, j+1)| / |cell_k|``; rows sum to the part of the cell inside
        ``[0, n_pixels)`` (1 for cells inside the axis).
    """
    hi = float(n_pixels) if hi is None else float(hi)
    edges = lo + (hi - lo) * np.arange(n_cells + 1, dtype=np.float64) / n_cells
    a, b = edges[:-1, None], edges[1:, None]
    j = np.arange(n_pixels, dtype=np.float64)[None, :]
    inter = np.clip(np.minimum(b, j + 1.0) - np.maximum(a, j), 0.0, None)
    return inter / (b - a)


def center_sample_matrix(n_cells: int, n_pixels: int) -> np.ndarray:
    """Weights that sample a pixel map at each cell centre along one axis.

    The centre of cell ``k`` is ``c = (k + 0.5) * n_pixels / n_cells``. It falls in pixel
    ``floor(c)``; exactly on a pixel boundary it takes the mean of the two pixels sharing it.

    Returns
    -------
    ndarray, shape (n_cells, n_pixels)
    """
    out = np.zeros((n_cells, n_pixels))
    for k in range(n_cells):
        num = (2 * k + 1) * n_pixels  # centre = num / (2 * n_cells), kept exact in integers
        den = 2 * n_cells
        if num % den == 0:
            j = num // den
            out[k, max(j - 1, 0)] += 0.5
            out[k, min(j, n_pixels - 1)] += 0.5
        else:
            out[k, min(num // den, n_pixels - 1)] = 1.0
    return out


def apply_separable(arr: np.ndarray, mats: Sequence[np.ndarray]) -> np.ndarray:
    """Apply one matrix per axis: ``out = arr ×_0 mats[0] ×_1 mats[1] ...``.

    The matrices are banded (each cell overlaps a few pixels), so they are applied as sparse
    matrices: exact, single-threaded, and free of BLAS thread contention in loader threads.

    Parameters
    ----------
    arr : ndarray, shape (n_0, ..., n_{d-1})
    mats : sequence of d arrays, ``mats[a]`` of shape (m_a, n_a)

    Returns
    -------
    ndarray float64, shape (m_0, ..., m_{d-1})
    """
    from scipy import sparse

    out = np.asarray(arr, dtype=np.float64)
    for axis, m in enumerate(mats):
        moved = np.moveaxis(out, axis, 0)
        rest = moved.shape[1:]
        csr = m if sparse.issparse(m) else sparse.csr_matrix(m)
        res = csr @ moved.reshape(moved.shape[0], -1)
        out = np.moveaxis(np.asarray(res).reshape((m.shape[0], *rest)), 0, axis)
    return out


@functools.lru_cache(maxsize=256)
def _axis_matrix(kind: str, n_cells: int, n_pixels: int, lo: float = 0.0, hi: float | None = None):
    """Cached sparse per-axis operator (the same image/grid sizes recur for every case of a cohort)."""
    from scipy import sparse

    m = (interval_overlap_matrix(n_cells, n_pixels, lo, hi) if kind == "overlap"
         else center_sample_matrix(n_cells, n_pixels))
    return sparse.csr_matrix(m)


def stored_to_model_coverage(roi: np.ndarray, region: Sequence[tuple[float, float]],
                             spatial_size: Sequence[int]) -> np.ndarray:
    """Fraction of each model-input pixel covered by the ROI.

    Parameters
    ----------
    roi : ndarray bool or float in [0, 1], shape (H, W) or (D, H, W)
        ROI in stored-image pixels (a float map gives partial pixel coverage, e.g. of a
        sub-pixel box).
    region : sequence of (lo, hi)
        The part of the stored image fed to the model (the crop), per axis; the whole image is
        ``[(0, H), (0, W)]``.
    spatial_size : sequence of int
        Model input size, per axis.

    Returns
    -------
    ndarray float64, shape spatial_size
    """
    roi = np.asarray(roi, dtype=np.float64)
    mats = [_axis_matrix("overlap", int(s), int(roi.shape[a]), float(lo), float(hi))
            for a, (s, (lo, hi)) in enumerate(zip(spatial_size, region))]
    return apply_separable(roi, mats)


def token_coverage(mask: np.ndarray, grid: Sequence[int], rule: str = "overlap") -> np.ndarray:
    """Per-token ROI score on the grid.

    ``rule="overlap"``: fraction of each token's cell covered by the ROI.
    ``rule="center"``: ROI value at each cell's centre (see :func:`center_sample_matrix`).

    Parameters
    ----------
    mask : ndarray bool or float in [0, 1], shape (H, W) or (D, H, W), model-input pixels
    grid : tuple of int, same length as ``mask.ndim``

    Returns
    -------
    ndarray float64, shape grid
    """
    mask = np.asarray(mask, dtype=np.float64)
    grid = tuple(int(g) for g in grid)
    if len(grid) != mask.ndim:
        raise InputError(f"grid={grid} has {len(grid)} axes but the ROI mask has shape {mask.shape}")
    if any(g > s for g, s in zip(grid, mask.shape)):
        raise InputError(f"grid={grid} is finer than the model input {mask.shape}; tokens must cover at least "
                         "one input pixel each")
    if rule in ("overlap", "center"):
        mats = [_axis_matrix(rule, g, int(s)) for g, s in zip(grid, mask.shape)]
    else:
        raise InputError(f"rule={rule!r} not allowed; use 'overlap' or 'center'")
    return apply_separable(mask, mats)


def select_tokens(mask: np.ndarray, grid: Sequence[int], rule: str = "overlap", min_overlap: float = 0.5,
                  case_id: str | None = None) -> tuple[np.ndarray, bool, float]:
    """:func:`roi_to_tokens` without the warning.

    Returns
    -------
    idx : ndarray int64 (k,)
        Selected tokens, row-major over ``grid``.
    fallback : bool
        True when no token met the rule and the nearest token was used.
    best_overlap : float
        Largest fraction of a token's cell covered by the ROI.
    """
    mask = np.asarray(mask, dtype=np.float64)
    who = f"case {case_id!r}: " if case_id is not None else ""
    if not (mask > 0).any():
        raise InputError(f"{who}ROI is empty in the model input (no pixel inside); check the mask/box "
                         "(label value, bbox_w/bbox_h > 0): an empty ROI cannot be pooled")
    if rule not in ("overlap", "center"):
        raise InputError(f"rule={rule!r} not allowed; use 'overlap' or 'center'")
    if not 0.0 < float(min_overlap) <= 1.0:
        raise InputError(f"min_overlap={min_overlap!r} must be in (0, 1]")
    overlap = token_coverage(mask, grid, "overlap").ravel()
    score = overlap if rule == "overlap" else token_coverage(mask, grid, "center").ravel()
    thr = float(min_overlap) if rule == "overlap" else 0.5
    sel = np.flatnonzero(score >= thr - 1e-12)
    if sel.size:
        return sel.astype(np.int64), False, float(overlap.max())
    best = np.flatnonzero(overlap >= overlap.max() - 1e-12)
    if best.size > 1:
        # tie: the cell centre nearest to the ROI's centroid (model-pixel coordinates)
        grid_t = tuple(int(g) for g in grid)
        coords = np.indices(mask.shape, dtype=np.float64).reshape(mask.ndim, -1) + 0.5
        w = mask.ravel()
        centroid = (coords * w).sum(1) / w.sum()
        cells = np.stack(np.unravel_index(best, grid_t)).astype(np.float64)
        centres = (cells + 0.5) * (np.asarray(mask.shape, float) / np.asarray(grid_t, float))[:, None]
        best = best[[int(np.argmin(((centres - centroid[:, None]) ** 2).sum(0)))]]
    return best.astype(np.int64), True, float(overlap.max())


def roi_to_tokens(mask: np.ndarray, grid: Sequence[int], rule: str = "overlap", min_overlap: float = 0.5,
                  case_id: str | None = None) -> np.ndarray:
    """Indices (row-major over ``grid``) of the tokens an ROI selects.

    ``rule="overlap"``: a token is selected when the ROI covers at least ``min_overlap`` of its
    cell. ``rule="center"``: when its cell centre lies inside the ROI (ROI value >= 0.5 there).
    When no token qualifies, the token with the largest overlap is used (ties: the cell centre
    nearest to the ROI centroid) and a warning is logged; an empty ROI is an error.

    Parameters
    ----------
    mask : ndarray bool or float in [0, 1], shape (H, W) or (D, H, W)
        ROI in model-input pixels (float = covered fraction of each pixel).
    grid : tuple of int
        Token grid, ``(h, w)`` or ``(d, h, w)``, e.g. ``(16, 16)`` for a 224-px ViT with 14-px patches.
    rule : {"overlap", "center"}
    min_overlap : float in (0, 1]
    case_id : str, optional
        Named in the warning / error.

    Returns
    -------
    ndarray int64, shape (k,), k >= 1, sorted
    """
    idx, fallback, best = select_tokens(mask, grid, rule, min_overlap, case_id)
    if fallback:
        who = f"case {case_id!r}: " if case_id is not None else ""
        log.warning("%sROI covers no token under rule=%r (min_overlap=%.2f, best overlap %.3f); using the "
                    "nearest token %s of grid %s", who, rule, float(min_overlap), best,
                    tuple(int(v) for v in np.unravel_index(idx[0], tuple(grid))), tuple(grid))
    return idx


def roi_token_weights(mask: np.ndarray, grid: Sequence[int], rule: str = "overlap", min_overlap: float = 0.5,
                      case_id: str | None = None) -> np.ndarray:
    """Pooling weights over tokens: uniform over :func:`roi_to_tokens`' selection.

    Returns
    -------
    ndarray float64, shape (prod(grid),), summing to 1
    """
    idx = roi_to_tokens(mask, grid, rule=rule, min_overlap=min_overlap, case_id=case_id)
    w = np.zeros(int(np.prod(grid)), dtype=np.float64)
    w[idx] = 1.0 / idx.size
    return w


def box_to_mask(box: Sequence[float], shape: Sequence[int]) -> np.ndarray:
    """Rasterise a box as the covered fraction of each stored-image pixel.

    Parameters
    ----------
    box : (x, y, w, h) for 2D or (x, y, z, w, h, d) for 3D, stored-image pixels; ``x`` runs
        along the last (column) axis. Integer boxes give a 0/1 mask with pixels
        ``x <= col < x + w`` (the manifest convention); fractional boxes give partial pixels.
    shape : (H, W) or (D, H, W)

    Returns
    -------
    ndarray float64, shape ``shape``, values in [0, 1]
    """
    shape = tuple(int(s) for s in shape)
    nd = len(shape)
    box = [float(v) for v in box]
    if len(box) != 2 * nd:
        raise InputError(f"box {box} has {len(box)} numbers; a {nd}D image needs "
                         + ("(x, y, w, h)" if nd == 2 else "(x, y, z, w, h, d)"))
    starts, sizes = box[:nd], box[nd:]
    if any(s <= 0 for s in sizes):
        raise InputError(f"box {box}: width/height/depth must be > 0 (empty ROI)")
    # box axes are (x, y[, z]) = numpy axes reversed
    mats = []
    for a in range(nd):
        b = nd - 1 - a
        lo, hi = starts[b], starts[b] + sizes[b]
        j = np.arange(shape[a], dtype=np.float64)
        mats.append(np.clip(np.minimum(hi, j + 1) - np.maximum(lo, j), 0.0, 1.0))
    out = mats[0]
    for m in mats[1:]:
        out = np.multiply.outer(out, m)
    return out


# --------------------------------------------------------------------------- ViT token sequences
def split_tokens(tokens, grid: Sequence[int], n_prefix: int | None = None, has_cls: bool = True):
    """Split a ViT token sequence into class token, register tokens and patch tokens.

    Layout assumed (DINOv2, ViT, CLIP, MONAI ViT): ``[cls?, registers..., patches...]``.

    Parameters
    ----------
    tokens : Tensor or ndarray, shape (B, T, D)
    grid : tuple of int
        Patch grid; ``prod(grid)`` patch tokens are the *last* ones.
    n_prefix : int, optional
        Number of non-patch tokens before the patches (default ``T - prod(grid)``).
    has_cls : bool
        Whether the first prefix token is a class token (SigLIP: False).

    Returns
    -------
    cls : (B, D) or None
    registers : (B, R, D)
    patch : (B, prod(grid), D)
    """
    n = int(np.prod(grid))
    t = tokens.shape[1]
    pre = t - n if n_prefix is None else int(n_prefix)
    if pre < 0 or pre + n != t:
        raise InputError(f"token sequence of length {t} does not hold {n} patch tokens for grid {tuple(grid)}"
                         + (f" after {n_prefix} prefix tokens" if n_prefix is not None else "")
                         + "; check the input size and tokens.patch_size / tokens.prefix in the encoder spec")
    cls = tokens[:, 0] if (has_cls and pre >= 1) else None
    start_reg = 1 if cls is not None else 0
    return cls, tokens[:, start_reg:pre], tokens[:, pre:]


def tokens_to_grid(tokens, grid: Sequence[int], n_prefix: int | None = None):
    """Patch tokens of a ViT sequence as a channels-first feature map, class/register tokens dropped.

    Parameters
    ----------
    tokens : Tensor, shape (B, T, D)
    grid : tuple of int, (h, w) or (d, h, w)
    n_prefix : int, optional
        Class + register tokens before the patches (default ``T - prod(grid)``).

    Returns
    -------
    Tensor, shape (B, D, *grid)  (what CAM code expects of a conv feature map)
    """
    _, _, patch = split_tokens(tokens, grid, n_prefix, has_cls=False)
    b, n, d = patch.shape
    return patch.transpose(1, 2).reshape(b, d, *[int(g) for g in grid])


def grid_to_tokens(fmap):
    """Channels-first feature map (B, C, *grid) → patch tokens (B, N, C), row-major over the grid."""
    return fmap.flatten(2).transpose(1, 2)
