"""Reference-based localization scores of one attribution / attention map against ground truth.

Every score compares a real-valued map ``m`` (shape ``S``, 2-D ``(H, W)`` or 3-D ``(D, H, W)``)
with a ground truth made of one or more objects (boxes or masks) on the same grid. The exact
definitions, tie rules, multi-object rules and the conventions that differ from Quantus are in
``docs/localization.md``; the short version:

=====================  =====================================================  ==============
column                 definition                                             multi-object
=====================  =====================================================  ==============
``pointing_game``      share of the map's maximal pixels inside the GT         union
                       (dilated by ``tolerance`` px); tie rule ``fraction``
``auc``                pixel AUC-ROC, map values vs GT labels, average ranks   union
``cnr``                (mean_in - mean_out) / sqrt(var_in + var_out), signed   union
``gcnr``               1 - overlap of the inside/outside value histograms      union
``mass_inside``        positive attribution inside / positive attribution      union
``iou_<b>``            IoU of the binarised map with the GT                    union
``miou_<b>``           mean of foreground and background IoU                   union
``box_iou_<b>``        IoU of the binarised map's bounding box, best GT box    max over boxes
``centroid_dist_<b>``  distance of the binarised region's centroid to the      nearest object
                       nearest GT object centroid (pixels; ``_norm``: / diag)
=====================  =====================================================  ==============

``<b>`` is the binarisation: ``otsu``, ``topk`` (the top pixels matching the GT area) or
``fixed`` (min-max normalised map >= threshold). Empty ground truth gives NaN everywhere with a
reason; a constant map gives the chance-level values (AUC 0.5, pointing game |GT|/N, ...).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from radlens.errors import InputError

log = logging.getLogger(__name__)

BINARIZATIONS = ("otsu", "topk", "fixed")
TIE_RULES = ("fraction", "any", "all", "first")
BOX_FROM = ("largest", "all")

#: base score name -> True when higher is better
HIGHER_IS_BETTER = {
    "pointing_game": True, "auc": True, "cnr": True, "gcnr": True, "mass_inside": True,
    "iou": True, "miou": True, "box_iou": True, "centroid_dist": False, "centroid_dist_norm": False,
}
_BIN_SCORES = ("iou", "miou", "box_iou", "centroid_dist", "centroid_dist_norm")


def score_columns(binarize: Sequence[str] = BINARIZATIONS) -> list[str]:
    """Names of the score columns produced for the given binarisations, in table order."""
    cols = ["pointing_game", "auc", "cnr", "gcnr", "mass_inside"]
    for b in binarize:
        cols += [f"{s}_{b}" for s in _BIN_SCORES]
    return cols


def higher_is_better(column: str) -> bool:
    """Direction of a score column (``centroid_dist*`` are lower-is-better)."""
    base = column
    for b in BINARIZATIONS:
        if column.endswith("_" + b):
            base = column[: -len(b) - 1]
    if base not in HIGHER_IS_BETTER:
        raise InputError(f"score column {column!r} unknown; known bases: {sorted(HIGHER_IS_BETTER)}")
    return HIGHER_IS_BETTER[base]


# --------------------------------------------------------------------------- ground truth
@dataclass
class GroundTruth:
    """Ground-truth objects on one image grid.

    Attributes
    ----------
    shape : tuple of int
        Grid shape ``S`` (numpy order, ``(H, W)`` or ``(D, H, W)``).
    mask : ndarray of bool, shape S
        Union of all objects.
    boxes : ndarray of int, shape (k, 2 * ndim)
        Half-open bounding box of each object in index coordinates: ``lo_0..lo_{d-1}, hi_0..hi_{d-1}``
        (numpy axis order; for 2-D: ``row0, col0, row1, col1``). Empty objects are dropped.
    centroids : ndarray of float, shape (k, ndim)
        Pixel-index centroid of each object's pixels (box objects: the rasterised box's centre).
    """

    shape: tuple
    mask: np.ndarray
    boxes: np.ndarray
    centroids: np.ndarray
    n_objects_given: int = 0
    notes: list = field(default_factory=list)

    @property
    def n_objects(self) -> int:
        return int(self.boxes.shape[0])


def rasterize_box(shape: Sequence[int], x: float, y: float, w: float, h: float) -> np.ndarray:
    """Boolean mask of a 2-D box ``(x, y, w, h)`` in pixels of the stored image.

    Pixel column ``i`` is inside when ``x <= i < x + w`` and row ``j`` when ``y <= j < y + h``
    (the manifest contract, same rule as :func:`radlens.io.images.box_to_mask`: integer boxes cover
    exactly ``w * h`` pixels, fractional edges round inwards, at least one pixel per axis is
    kept). Parts outside the image are clipped.

    Returns
    -------
    ndarray of bool, shape ``shape`` (H, W)
    """
    H, W = int(shape[-2]), int(shape[-1])
    if len(shape) != 2:
        raise InputError(f"rasterize_box: boxes (x, y, w, h) are 2-D, image shape is {tuple(shape)}; "
                         "give a mask for 3-D ground truth")
    vals = (x, y, w, h)
    if not all(np.isfinite(v) for v in vals) or w < 0 or h < 0:
        raise InputError(f"box (x={x}, y={y}, w={w}, h={h}) is not finite / has negative size; "
                         "fix bbox_x, bbox_y, bbox_w, bbox_h")
    c0, c1 = math.ceil(x), math.ceil(x + w)
    r0, r1 = math.ceil(y), math.ceil(y + h)
    if c1 <= c0:  # thinner than a pixel: keep the pixel holding its left edge (as radlens.io.images)
        c0, c1 = math.floor(x), math.floor(x) + 1
    if r1 <= r0:
        r0, r1 = math.floor(y), math.floor(y) + 1
    c0, c1, r0, r1 = max(0, c0), min(W, c1), max(0, r0), min(H, r1)
    m = np.zeros((H, W), bool)
    if c1 > c0 and r1 > r0:
        m[r0:r1, c0:c1] = True
    return m


def ground_truth(shape: Sequence[int], boxes: Iterable | None = None,
                 masks: Iterable | None = None) -> GroundTruth:
    """Build a :class:`GroundTruth` from boxes and/or masks on a grid of shape ``shape``.

    Parameters
    ----------
    shape : tuple of int
        Image grid ``(H, W)`` or ``(D, H, W)``.
    boxes : iterable of (x, y, w, h), optional
        2-D boxes in pixels (manifest convention, see :func:`rasterize_box`). Each is one object.
    masks : iterable of array-like of bool, shape ``shape``, optional
        Each mask is one object (its bounding box and centroid are computed from all its pixels,
        even if it has several connected pieces).

    Returns
    -------
    GroundTruth
        Objects that cover no pixel (e.g. a box entirely outside the image) are dropped and noted.
    """
    shape = tuple(int(s) for s in shape)
    objs, notes = [], []
    n_given = 0
    for b in (boxes or []):
        n_given += 1
        objs.append(rasterize_box(shape, *[float(v) for v in b]))
    for mk in (masks or []):
        n_given += 1
        mk = np.asarray(mk).astype(bool)
        if mk.shape != shape:
            raise InputError(f"ground-truth mask shape {mk.shape} != image shape {shape}; "
                             "resample the mask onto the image grid")
        objs.append(mk)
    union = np.zeros(shape, bool)
    bx, cen = [], []
    for o in objs:
        if not o.any():
            notes.append("a ground-truth object covers no pixel of the image (dropped)")
            continue
        union |= o
        idx = np.nonzero(o)
        bx.append([int(i.min()) for i in idx] + [int(i.max()) + 1 for i in idx])
        cen.append([float(i.mean()) for i in idx])
    nd = len(shape)
    return GroundTruth(shape, union, np.asarray(bx, int).reshape(-1, 2 * nd),
                       np.asarray(cen, float).reshape(-1, nd), n_given, notes)


def _as_gt(gt, shape) -> GroundTruth:
    if isinstance(gt, GroundTruth):
        if gt.shape != tuple(shape):
            raise InputError(f"ground truth shape {gt.shape} != map shape {tuple(shape)}; resize the "
                             "map onto the image grid first (radlens.localization.maps.resize_map)")
        return gt
    return ground_truth(shape, masks=[gt])


# --------------------------------------------------------------------------- primitives
def pixel_auc(values: np.ndarray, labels: np.ndarray) -> float:
    """AUC-ROC of ``values`` as scores for boolean ``labels`` (Mann–Whitney, average ranks for ties,
    identical to the trapezoidal ROC area). NaN when one class is empty."""
    from scipy.stats import rankdata

    v = np.asarray(values, float).ravel()
    y = np.asarray(labels, bool).ravel()
    n1 = int(y.sum())
    n0 = y.size - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    r = rankdata(v, method="average")
    return float((r[y].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def otsu_threshold_bin(values: np.ndarray, nbins: int = 256) -> tuple[np.ndarray, int]:
    """Otsu's split on a histogram of ``values``.

    The values are binned into ``nbins`` equal-width bins spanning ``[min, max]`` (numpy
    convention: the last bin is closed). For every split ``k`` in ``1..nbins-1`` (class 0 = bins
    ``< k``, class 1 = bins ``>= k``) the between-class variance ``w0 w1 (mu0 - mu1)^2`` is
    computed with bin centres as values; the first maximising ``k`` wins.

    Returns
    -------
    bin_index : ndarray of int, same shape as ``values`` (each value's bin)
    k : int, the chosen split; the foreground is ``bin_index >= k``.
    """
    v = np.asarray(values, float)
    lo, hi = float(v.min()), float(v.max())
    if hi <= lo:
        return np.zeros(v.shape, int), 0
    edges = np.linspace(lo, hi, nbins + 1)
    idx = np.clip(np.searchsorted(edges, v, side="right") - 1, 0, nbins - 1)
    counts = np.bincount(idx.ravel(), minlength=nbins).astype(float)
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(counts)[:-1]
    s0 = np.cumsum(counts * centres)[:-1]
    tot_w, tot_s = counts.sum(), (counts * centres).sum()
    w1 = tot_w - w0
    with np.errstate(divide="ignore", invalid="ignore"):
        mu0 = s0 / w0
        mu1 = (tot_s - s0) / w1
        between = w0 * w1 * (mu0 - mu1) ** 2
    between[~np.isfinite(between)] = -1.0
    k = int(np.argmax(between)) + 1
    return idx, k


def binarize_map(m: np.ndarray, method: str, *, gt_area: int | None = None, threshold: float = 0.5,
                 topk: float | None = None, otsu_bins: int = 256) -> np.ndarray:
    """Binarise a map.

    Parameters
    ----------
    m : ndarray, shape S
    method : {'otsu', 'topk', 'fixed'}
        ``otsu``: :func:`otsu_threshold_bin`; ``topk``: pixels ``>=`` the n-th largest value, with
        ``n = gt_area`` (or ``round(topk * m.size)``; ties at the cut are all included);
        ``fixed``: ``(m - min) / (max - min) >= threshold``.
    gt_area : int, optional
        Number of ground-truth pixels (for ``topk`` when ``topk`` is None).

    Returns
    -------
    ndarray of bool, shape S. A constant map binarises to the whole image under every method.
    """
    m = np.asarray(m, float)
    lo, hi = float(m.min()), float(m.max())
    if hi <= lo:
        return np.ones(m.shape, bool)
    if method == "fixed":
        if not 0 < threshold <= 1:
            raise InputError(f"threshold={threshold!r} not allowed; use 0 < threshold <= 1 (applied to "
                             "the min-max normalised map)")
        return (m - lo) / (hi - lo) >= threshold
    if method == "otsu":
        idx, k = otsu_threshold_bin(m, otsu_bins)
        return idx >= k
    if method == "topk":
        if topk is not None:
            if not 0 < topk <= 1:
                raise InputError(f"topk={topk!r} not allowed; use a fraction of the image in (0, 1], or "
                                 "None to match the ground-truth area")
            n = max(1, int(round(topk * m.size)))
        else:
            if not gt_area:
                raise InputError("binarize_map(method='topk'): gt_area is required when topk is None")
            n = int(gt_area)
        n = min(n, m.size)
        cut = np.partition(m.ravel(), m.size - n)[m.size - n]
        return m >= cut
    raise InputError(f"binarize={method!r} not allowed; choose from {BINARIZATIONS}")


def _region(binary: np.ndarray, m: np.ndarray, box_from: str) -> np.ndarray:
    """The binarised region used for the box and centroid: all pixels, or the largest
    full-connectivity component (ties: larger summed map value, then first in raster order)."""
    if box_from == "all":
        return binary
    from scipy import ndimage

    lab, n = ndimage.label(binary, structure=ndimage.generate_binary_structure(binary.ndim, binary.ndim))
    if n <= 1:
        return binary
    sizes = np.bincount(lab.ravel(), minlength=n + 1)[1:]
    mass = np.bincount(lab.ravel(), weights=m.ravel(), minlength=n + 1)[1:]
    order = np.lexsort((np.arange(n), -mass, -sizes))  # size desc, mass desc, label asc
    return lab == int(order[0]) + 1


def _box_iou(a: np.ndarray, b: np.ndarray, nd: int) -> float:
    inter = 1.0
    for d in range(nd):
        inter *= max(0, min(a[nd + d], b[nd + d]) - max(a[d], b[d]))
    va = float(np.prod(a[nd:] - a[:nd]))
    vb = float(np.prod(b[nd:] - b[:nd]))
    return inter / (va + vb - inter)


def _gcnr(inside: np.ndarray, outside: np.ndarray, lo: float, hi: float, bins: int) -> float:
    edges = np.linspace(lo, hi, bins + 1)
    pi = np.histogram(inside, edges)[0] / inside.size
    po = np.histogram(outside, edges)[0] / outside.size
    return float(1.0 - np.minimum(pi, po).sum())


# --------------------------------------------------------------------------- one map
def check_options(*, binarize: Sequence[str] = BINARIZATIONS, threshold: float = 0.5, topk: float | None = None,
                  tolerance: float = 0.0, tie_rule: str = "fraction", box_from: str = "largest",
                  gcnr_bins: int = 256, otsu_bins: int = 256, absolute: bool = False) -> None:
    """Validate :func:`score_map` options up front; raises :class:`InputError` naming the option,
    its value and what is allowed."""
    for name, val, allowed in (("tie_rule", tie_rule, TIE_RULES), ("box_from", box_from, BOX_FROM)):
        if val not in allowed:
            raise InputError(f"{name}={val!r} not allowed; choose from {allowed}")
    if isinstance(binarize, str) or not len(binarize):
        raise InputError(f"binarize={binarize!r}: give a non-empty sequence from {BINARIZATIONS}")
    for b in binarize:
        if b not in BINARIZATIONS:
            raise InputError(f"binarize={b!r} not allowed; choose from {BINARIZATIONS}")
    if not (isinstance(threshold, (int, float)) and 0 < threshold <= 1):
        raise InputError(f"threshold={threshold!r} not allowed; use 0 < threshold <= 1 (applied to the min-max "
                         "normalised map)")
    if topk is not None and not (isinstance(topk, (int, float)) and 0 < topk <= 1):
        raise InputError(f"topk={topk!r} not allowed; use a fraction of the image in (0, 1], or None to match "
                         "the ground-truth area")
    if not (isinstance(tolerance, (int, float)) and np.isfinite(tolerance) and tolerance >= 0):
        raise InputError(f"tolerance={tolerance!r} not allowed; use a distance in pixels >= 0")
    for name, val in (("gcnr_bins", gcnr_bins), ("otsu_bins", otsu_bins)):
        if not (isinstance(val, (int, np.integer)) and val >= 2):
            raise InputError(f"{name}={val!r} not allowed; use an integer >= 2")


def score_map(m, gt, *, binarize: Sequence[str] = BINARIZATIONS, threshold: float = 0.5,
              topk: float | None = None, tolerance: float = 0.0, tie_rule: str = "fraction",
              box_from: str = "largest", gcnr_bins: int = 256, otsu_bins: int = 256,
              absolute: bool = False) -> dict:
    """All localization scores of one map against its ground truth.

    Parameters
    ----------
    m : array-like, shape S
        The map on the image grid (resize it first: :func:`radlens.localization.maps.resize_map`).
        Higher = more attributed. Signed maps are used as they are (``absolute=True`` scores |m|).
    gt : GroundTruth or array-like of bool, shape S
        Ground truth (a bare mask is one object).
    binarize : sequence of {'otsu', 'topk', 'fixed'}
        Binarisations for the IoU / mIoU / box IoU / centroid scores (one column set each).
    threshold : float in (0, 1]
        For ``fixed``: threshold on the min-max normalised map.
    topk : float in (0, 1], optional
        For ``topk``: fraction of pixels kept; None keeps as many as the GT has.
    tolerance : float >= 0
        Pointing game: a maximal pixel counts as a hit when within this Euclidean distance (pixels,
        between pixel centres) of a GT pixel.
    tie_rule : {'fraction', 'any', 'all', 'first'}
        Pointing game when several pixels share the maximum: ``fraction`` scores the share of them
        that hit (the expected hit under random tie-breaking), ``any`` 1 if one hits (Quantus),
        ``all`` 1 only if all hit, ``first`` the first in C (raster) order (``np.argmax``).
    box_from : {'largest', 'all'}
        Region of the binarised map whose bounding box and centroid are scored.
    gcnr_bins : int
        Equal-width histogram bins over the map's [min, max] for gCNR.
    absolute : bool
        Score ``|m|`` instead of ``m``.

    Returns
    -------
    dict
        The columns of :func:`score_columns` plus ``gt_pixels``, ``n_objects`` and ``reason``
        (empty string when every score is defined; otherwise why some are NaN).
    """
    check_options(binarize=binarize, threshold=threshold, topk=topk, tolerance=tolerance, tie_rule=tie_rule,
                  box_from=box_from, gcnr_bins=gcnr_bins, otsu_bins=otsu_bins)
    m = np.asarray(m, dtype=float)
    if m.ndim not in (2, 3):
        raise InputError(f"map has shape {m.shape}; expected a 2-D (H, W) or 3-D (D, H, W) map")
    g = _as_gt(gt, m.shape)
    cols = score_columns(binarize)
    out: dict = {c: np.nan for c in cols}
    out.update(gt_pixels=int(g.mask.sum()), n_objects=g.n_objects)
    reasons = list(g.notes)
    if absolute:
        m = np.abs(m)
    if not np.isfinite(m).all():
        out["reason"] = "; ".join(reasons + [f"map has {int((~np.isfinite(m)).sum())} non-finite values"])
        return out
    if g.n_objects == 0:
        out["reason"] = "; ".join(reasons + ["empty ground truth (no object pixels): nothing to localise"])
        return out
    inside, outside = m[g.mask], m[~g.mask]
    N = m.size
    lo, hi = float(m.min()), float(m.max())
    constant = hi <= lo

    # pointing game
    hit_region = g.mask
    if tolerance > 0:
        from scipy import ndimage

        hit_region = ndimage.distance_transform_edt(~g.mask) <= tolerance
    top = m == hi
    if tie_rule == "first":
        out["pointing_game"] = float(hit_region.ravel()[int(np.argmax(m))])
    else:
        hits = hit_region[top]
        out["pointing_game"] = float({"fraction": hits.mean(), "any": hits.any(),
                                      "all": hits.all()}[tie_rule])

    # mass inside (positive part; a constant map is uniform attention)
    if constant:
        out["mass_inside"] = inside.size / N
    else:
        pos = np.clip(m, 0, None)
        tot = pos.sum()
        if tot > 0:
            out["mass_inside"] = float(pos[g.mask].sum() / tot)
        else:
            reasons.append("map has no positive attribution: mass_inside undefined")

    # AUC, CNR, gCNR need pixels on both sides
    if outside.size == 0:
        reasons.append("ground truth covers the whole image: auc, cnr, gcnr undefined")
    else:
        out["auc"] = 0.5 if constant else pixel_auc(m, g.mask)
        d = float(inside.mean() - outside.mean())
        s = math.sqrt(float(inside.var()) + float(outside.var()))
        if s > 0:
            out["cnr"] = d / s
        elif d == 0:
            out["cnr"] = 0.0
        else:
            out["cnr"] = math.copysign(math.inf, d)
            reasons.append("cnr infinite: the map is constant inside and constant outside")
        out["gcnr"] = 0.0 if constant else _gcnr(inside, outside, lo, hi, int(gcnr_bins))

    # binarised scores
    diag = math.sqrt(sum(s_ * s_ for s_ in m.shape))
    nd = m.ndim
    for b in binarize:
        B = binarize_map(m, b, gt_area=int(g.mask.sum()), threshold=threshold, topk=topk,
                         otsu_bins=otsu_bins)
        inter = np.logical_and(B, g.mask).sum()
        union = np.logical_or(B, g.mask).sum()
        iou_fg = inter / union
        bg_union = np.logical_or(~B, ~g.mask).sum()
        bg_inter = np.logical_and(~B, ~g.mask).sum()
        out[f"iou_{b}"] = float(iou_fg)
        out[f"miou_{b}"] = float((iou_fg + bg_inter / bg_union) / 2) if bg_union else float(iou_fg)
        R = _region(B, m, box_from)
        idx = np.nonzero(R)
        pbox = np.array([int(i.min()) for i in idx] + [int(i.max()) + 1 for i in idx])
        out[f"box_iou_{b}"] = float(max(_box_iou(pbox, gb, nd) for gb in g.boxes))
        c = np.array([float(i.mean()) for i in idx])
        dist = float(np.min(np.sqrt(((g.centroids - c) ** 2).sum(1))))
        out[f"centroid_dist_{b}"] = dist
        out[f"centroid_dist_norm_{b}"] = dist / diag
    out["reason"] = "; ".join(reasons)
    return out


def score_maps(maps, gts, *, case_ids: Sequence[str] | None = None, **kwargs):
    """Score many maps; one row per map.

    Parameters
    ----------
    maps : ndarray, shape (n, *S), or sequence of n arrays (each on its own image grid)
    gts : ndarray of bool, shape (n, *S), or sequence of n GroundTruth / bool masks
    case_ids : sequence of str, optional
        Row keys (default ``"0".."n-1"``).
    **kwargs
        Passed to :func:`score_map` (``binarize``, ``threshold``, ``tolerance``, ...).

    Returns
    -------
    pandas.DataFrame
        ``case_id``, the :func:`score_columns`, ``gt_pixels``, ``n_objects``, ``reason``.
    """
    import pandas as pd

    n = len(maps)
    if len(gts) != n:
        raise InputError(f"score_maps: {n} maps but {len(gts)} ground truths; give one per map")
    if case_ids is None:
        case_ids = [str(i) for i in range(n)]
    if len(case_ids) != n:
        raise InputError(f"score_maps: {n} maps but {len(case_ids)} case_ids")
    rows = []
    for cid, m, g in zip(case_ids, maps, gts):
        r = score_map(m, g, **kwargs)
        rows.append({"case_id": str(cid), **r})
    cols = ["case_id"] + score_columns(kwargs.get("binarize", BINARIZATIONS)) + ["gt_pixels", "n_objects", "reason"]
    return pd.DataFrame(rows, columns=cols)
