"""Size-stratified lesion probe: does the probe's AUC drop for small lesions?

Image-level probe (``cls``/``global``/``mean`` pooling): one linear probe per finding class on
all images, scored out-of-fold; its AUC is then computed separately for images whose lesion is
*small* and *large* (box area as a fraction of the image area, split at a configurable threshold),
each against all negative images. The gap ``AUC_large − AUC_small`` gets a bootstrap CI that
resamples small positives, large positives and negatives separately (unpaired strata), and a
DeLong-type z-test built from the structural components (the two AUCs share the negatives, whose
covariance enters the variance of the gap).

Box-level probe (``roi`` pooling): the lesion box of each positive image against a *matched
control box* — the same place (relative coordinates) in a negative image.
"""
from __future__ import annotations

import logging
import math

import numpy as np
from scipy import stats as st

from radlens.errors import InputError
from radlens.probe.scoring import bootstrap_weights, percentile_ci
from radlens.stats.delong import auc_weighted, delong_components

log = logging.getLogger(__name__)


def size_threshold(area_frac, threshold) -> float:
    """Resolve the small/large threshold: a float area fraction in (0, 1), or ``"median"`` of
    the given positive lesions' area fractions."""
    a = np.asarray(area_frac, float)
    if isinstance(threshold, str):
        if threshold != "median":
            raise InputError(f"size threshold={threshold!r}: give an area fraction in (0, 1) or 'median'")
        a = a[np.isfinite(a)]
        if a.size == 0:
            raise InputError("size threshold 'median': no positive lesion has a finite box area")
        return float(np.median(a))
    if not isinstance(threshold, (int, float)) or not 0 < threshold < 1:
        raise InputError(f"size threshold={threshold!r}: must be an area fraction in (0, 1) or 'median'")
    return float(threshold)


def size_stratum(area_frac, threshold: float) -> np.ndarray:
    """``"small"`` where area fraction < threshold, ``"large"`` where ≥, ``""`` where NaN."""
    a = np.asarray(area_frac, float)
    out = np.full(a.shape, "", dtype=object)
    out[np.isfinite(a) & (a < threshold)] = "small"
    out[np.isfinite(a) & (a >= threshold)] = "large"
    return out


def stratified_gap(y, score, stratum, *, match_negatives: bool = False, n_boot: int = 1000,
                   alpha: float = 0.05, seed: int = 0) -> dict[str, dict[str, float]]:
    """AUC of small and large positives and their gap ``AUC_large − AUC_small``.

    Parameters
    ----------
    y : array-like of {0, 1}, shape (n,)
    score : array-like, shape (n,)   out-of-fold probe scores
    stratum : array-like of {"small", "large"}, shape (n,)
        Size stratum of each positive; of each negative too when ``match_negatives``.
    match_negatives : bool
        False (image-level probe): each stratum's positives against *all* negatives; the two AUCs
        share the negatives and the gap's variance carries their covariance. True (box-level
        probe): each stratum's positives against the negatives of the same stratum (controls
        matched to the lesion box), two independent AUCs.

    Returns
    -------
    dict with keys ``small``, ``large``, ``gap``; each a dict of ``estimate``, ``ci_low``,
    ``ci_high`` (percentile bootstrap resampling every (class, stratum) cell separately), ``se``
    (DeLong), ``p`` (small/large: H0 AUC = 0.5; gap: H0 gap = 0), ``n_pos``, ``n_neg``.
    """
    y = np.asarray(y).astype(int)
    s = np.asarray(score, float)
    stratum = np.asarray(stratum, dtype=object).copy()
    if not match_negatives:
        stratum[y == 0] = "neg"
        need = y == 1
    else:
        need = np.ones(y.shape, bool)
    if np.any(need & ~np.isin(stratum, ["small", "large"])):
        raise InputError("stratified_gap: every positive (and, with match_negatives, every "
                         "negative) needs a size stratum 'small' or 'large'")
    cells = np.array([f"{a}|{b}" for a, b in zip(y, stratum)])
    masks = {w: ((stratum == w) if match_negatives else ((y == 0) | (stratum == w))).astype(float)
             for w in ("small", "large")}
    reps = {w: [] for w in masks}
    for wts in bootstrap_weights(y.size, n_boot, seed, strata=cells):
        for w, mk in masks.items():
            reps[w].append(auc_weighted(y, s, wts * mk))
    reps = {w: np.concatenate(v) for w, v in reps.items()}
    comps = {}
    out: dict[str, dict[str, float]] = {}
    for which in ("small", "large"):
        keep = (stratum == which) if match_negatives else ((y == 0) | (stratum == which))
        npos = int(((y == 1) & keep).sum())
        nneg = int(((y == 0) & keep).sum())
        rec = {"estimate": np.nan, "ci_low": np.nan, "ci_high": np.nan, "se": np.nan, "p": np.nan,
               "n_pos": npos, "n_neg": nneg}
        if npos and nneg:
            a, v10, v01 = delong_components(y[keep], s[keep])
            comps[which] = (float(a[0]), v10[0], v01[0])
            var = (np.var(v10[0], ddof=1) / npos if npos > 1 else 0.0) + \
                  (np.var(v01[0], ddof=1) / nneg if nneg > 1 else 0.0)
            se = math.sqrt(var)
            lo, hi = percentile_ci(reps[which], alpha)
            rec.update(estimate=float(a[0]), ci_low=lo, ci_high=hi, se=se,
                       p=float(2 * st.norm.sf(abs(a[0] - 0.5) / se)) if se > 0 else np.nan)
        out[which] = rec
    gap = {"estimate": np.nan, "ci_low": np.nan, "ci_high": np.nan, "se": np.nan, "p": np.nan,
           "n_pos": int((y == 1).sum()), "n_neg": int((y == 0).sum())}
    if len(comps) == 2:
        (a_s, v10_s, v01_s), (a_l, v10_l, v01_l) = comps["small"], comps["large"]
        var = 0.0
        for v in (v10_s, v10_l):
            var += np.var(v, ddof=1) / v.size if v.size > 1 else 0.0
        if match_negatives:
            for v in (v01_s, v01_l):
                var += np.var(v, ddof=1) / v.size if v.size > 1 else 0.0
        elif v01_s.size > 1:  # shared negatives, same order in both
            var += np.var(v01_l - v01_s, ddof=1) / v01_s.size
        se = math.sqrt(var)
        lo, hi = percentile_ci(reps["large"] - reps["small"], alpha)
        gap.update(estimate=a_l - a_s, ci_low=lo, ci_high=hi, se=se,
                   p=float(2 * st.norm.sf(abs(a_l - a_s) / se)) if se > 0 else np.nan)
    out["gap"] = gap
    return out


def matched_control_boxes(pos_boxes, pos_shapes, neg_shapes, seed: int = 0,
                          ) -> tuple[np.ndarray, np.ndarray]:
    """For each positive lesion box, a negative image and the same place in it.

    The box keeps its relative coordinates (x/W, y/H, w/W, h/H), so images of different sizes
    match. Negative images are assigned in a random (seeded) order cycling through all of them,
    so each is reused as evenly as possible.

    Parameters
    ----------
    pos_boxes : array-like, shape (m, 4)   ``(x, y, w, h)`` in the positive image's pixels
    pos_shapes, neg_shapes : sequences of (H, W) (or (..., H, W))

    Returns
    -------
    neg_index : ndarray int, shape (m,)   index into ``neg_shapes``
    boxes : ndarray float, shape (m, 4)   control boxes in the negative image's pixels
    """
    pos_boxes = np.asarray(pos_boxes, float).reshape(-1, 4)
    if len(neg_shapes) == 0:
        raise InputError("matched control boxes: no negative image to draw controls from")
    if len(pos_shapes) != pos_boxes.shape[0]:
        raise InputError(f"matched control boxes: {pos_boxes.shape[0]} boxes but {len(pos_shapes)} shapes")
    rng = np.random.default_rng(seed)
    m, k = pos_boxes.shape[0], len(neg_shapes)
    order = np.concatenate([rng.permutation(k) for _ in range(m // k + 1)])[:m]
    boxes = np.empty((m, 4))
    for i, (b, ps, j) in enumerate(zip(pos_boxes, pos_shapes, order)):
        ph, pw = ps[-2:]
        nh, nw = neg_shapes[j][-2:]
        fx, fy = nw / pw, nh / ph
        boxes[i] = (b[0] * fx, b[1] * fy, b[2] * fx, b[3] * fy)
    return order.astype(int), boxes
