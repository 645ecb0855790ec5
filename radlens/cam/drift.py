"""Drift metrics between two checkpoints' maps of the same samples (same method, same target class),
and the true-positive filter. Exact definitions: ``docs/cam.md``.

All functions take stacks of maps ``(n, *spatial)`` (2D or 3D), non-negative (ReLU'd), at the
same resolution; every metric is invariant to a positive rescaling of either map, so raw and
max-normalised maps give the same numbers.
"""
from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

from radlens.errors import InputError

log = logging.getLogger(__name__)


def _flat(m, name):
    m = np.asarray(m, dtype=np.float64)
    if m.ndim not in (3, 4):
        raise InputError(f"{name}: maps must have shape (n, H, W) or (n, D, H, W), got {m.shape}")
    if not np.all(np.isfinite(m)):
        raise InputError(f"{name}: maps contain NaN or inf")
    if (m < 0).any():
        raise InputError(f"{name}: maps must be non-negative (ReLU'd attributions); min is {m.min():.3g}")
    return m


def _k_label(k: float) -> str:
    return f"{k:g}"


def centroid(maps) -> np.ndarray:
    """Attribution-weighted centroid of each map, in voxel index units (numpy axis order).

    Parameters
    ----------
    maps : array, shape (n, *spatial), non-negative

    Returns
    -------
    ndarray, shape (n, len(spatial)); NaN rows for all-zero maps.
    """
    m = _flat(maps, "centroid")
    n, spatial = m.shape[0], m.shape[1:]
    tot = m.reshape(n, -1).sum(1)
    out = np.full((n, len(spatial)), np.nan)
    ok = tot > 0
    for ax, s in enumerate(spatial):
        shape = [1] * len(spatial)
        shape[ax] = s
        coord = np.arange(s, dtype=np.float64).reshape(shape)
        out[ok, ax] = (m[ok] * coord).reshape(int(ok.sum()), int(np.prod(spatial))).sum(1) / tot[ok]
    return out


def top_mask(maps, k_percent: float) -> np.ndarray:
    """Boolean masks of the ``k_percent`` % highest-valued voxels of each map (equal area:
    ``max(1, round(k/100 * N))`` voxels; ties broken by flat index order, lowest first).

    Returns
    -------
    ndarray bool, shape (n, *spatial)
    """
    m = np.asarray(maps, dtype=np.float64)
    if not 0 < k_percent <= 100:
        raise InputError(f"top_k={k_percent!r} must be a percentage in (0, 100]")
    n = m.shape[0]
    flat = m.reshape(n, -1)
    n_top = max(1, int(round(k_percent / 100.0 * flat.shape[1])))
    order = np.argsort(-flat, axis=1, kind="stable")[:, :n_top]
    out = np.zeros_like(flat, dtype=bool)
    np.put_along_axis(out, order, True, axis=1)
    return out.reshape(m.shape)


def _iou(ma, mb):
    n = ma.shape[0]
    inter = (ma & mb).reshape(n, -1).sum(1)
    union = (ma | mb).reshape(n, -1).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.maximum(union, 1), np.nan)


def _pearson_rows(a, b):
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    den = np.sqrt((a * a).sum(1) * (b * b).sum(1))
    num = (a * b).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def _entropy(flat):
    tot = flat.sum(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(tot > 0, flat / np.where(tot > 0, tot, 1), 0)
        h = -(np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0)).sum(1)
    h = h / np.log(flat.shape[1]) if flat.shape[1] > 1 else np.zeros(flat.shape[0])
    return np.where(tot[:, 0] > 0, h, np.nan)


def _gini(flat):
    n = flat.shape[1]
    x = np.sort(flat, axis=1)
    tot = x.sum(1)
    i = np.arange(1, n + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        g = (2 * (x * i).sum(1)) / (n * tot) - (n + 1) / n
    return np.where(tot > 0, g, np.nan)


def _top_mass(flat, k):
    n_top = max(1, int(round(k / 100.0 * flat.shape[1])))
    part = -np.partition(-flat, n_top - 1, axis=1)[:, :n_top]
    tot = flat.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(tot > 0, part.sum(1) / np.where(tot > 0, tot, 1), np.nan)


def concentration(maps, top_k: Sequence[float] = (10.0,)) -> dict[str, np.ndarray]:
    """Concentration of each map: top-k % mass share, normalised entropy, Gini coefficient.

    Returns
    -------
    dict name -> ndarray (n,): ``topmass<k>``, ``entropy``, ``gini`` (NaN for all-zero maps)
    """
    m = _flat(maps, "concentration")
    flat = m.reshape(m.shape[0], -1)
    out = {f"topmass{_k_label(k)}": _top_mass(flat, k) for k in top_k}
    out["entropy"] = _entropy(flat)
    out["gini"] = _gini(flat)
    return out


def drift_metrics(maps_a, maps_b, *, top_k: Sequence[float] = (10.0,), thresholds: Sequence[float] = ()):
    """Per-sample drift between two stacks of maps of the same samples.

    Parameters
    ----------
    maps_a, maps_b : array, shape (n, *spatial), non-negative
        Maps of checkpoint A (e.g. transfer learning) and B (fine-tuned), same method and target.
    top_k : sequence of float
        Percentages for the equal-area top-k % masks (``iou_top<k>``) and mass shares.
    thresholds : sequence of float in (0, 1]
        Optional fixed thresholds on the max-normalised maps (``iou_thr<t>``: voxels >= t * max).

    Returns
    -------
    pandas.DataFrame, n rows: ``centroid_disp``, ``iou_top<k>``, ``iou_thr<t>``, ``pearson``,
    ``spearman``, ``topmass<k>_a/_b/_delta``, ``entropy_a/_b/_delta``, ``gini_a/_b/_delta``,
    ``degenerate`` (either map all zero: metrics NaN).
    """
    import pandas as pd
    from scipy.stats import rankdata

    a = _flat(maps_a, "maps_a")
    b = _flat(maps_b, "maps_b")
    if a.shape != b.shape:
        raise InputError(f"drift_metrics: maps_a {a.shape} and maps_b {b.shape} must have the same shape")
    for t in thresholds:
        if not 0 < t <= 1:
            raise InputError(f"thresholds: {t!r} must be in (0, 1] (fraction of each map's maximum)")
    n, spatial = a.shape[0], a.shape[1:]
    fa, fb = a.reshape(n, -1), b.reshape(n, -1)
    zero = (fa.max(1) <= 0) | (fb.max(1) <= 0)
    cols: dict[str, np.ndarray] = {}
    diag = float(np.sqrt(np.sum(np.square(spatial, dtype=np.float64))))
    cols["centroid_disp"] = np.linalg.norm(centroid(a) - centroid(b), axis=1) / diag
    for k in top_k:
        cols[f"iou_top{_k_label(k)}"] = _iou(top_mask(a, k), top_mask(b, k))
    for t in thresholds:
        with np.errstate(invalid="ignore", divide="ignore"):
            na = fa / np.where(fa.max(1, keepdims=True) > 0, fa.max(1, keepdims=True), 1)
            nb = fb / np.where(fb.max(1, keepdims=True) > 0, fb.max(1, keepdims=True), 1)
        cols[f"iou_thr{_k_label(t)}"] = _iou(na >= t, nb >= t)
    cols["pearson"] = _pearson_rows(fa, fb)
    cols["spearman"] = _pearson_rows(rankdata(fa, axis=1), rankdata(fb, axis=1))
    ca, cb = concentration(a, top_k), concentration(b, top_k)
    for name in ca:
        cols[f"{name}_a"], cols[f"{name}_b"] = ca[name], cb[name]
        cols[f"{name}_delta"] = cb[name] - ca[name]
    df = pd.DataFrame(cols)
    df.loc[zero, [c for c in df.columns]] = np.nan
    df["degenerate"] = zero
    return df


# Orientation of each metric: +1 when a larger value means more drift, -1 when less.
def drift_direction(metric: str) -> int:
    """+1 if a larger value of ``metric`` means more drift (displacement, |concentration change|),
    -1 if it means less (IoU, correlations); raises for metrics that carry no drift direction."""
    if metric == "centroid_disp" or metric.endswith("_delta"):
        return 1
    if metric.startswith("iou_") or metric in ("pearson", "spearman"):
        return -1
    raise InputError(f"metric {metric!r} has no drift direction; use centroid_disp, iou_*, pearson, spearman "
                     "or a *_delta concentration change")


def _label_key(v) -> str:
    """Comparable key of a label value: 1, 1.0, "1" and np.int64(1) all map to "1"."""
    if isinstance(v, (bool, np.bool_)):
        return str(int(v))
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v).strip()
    if np.isfinite(f) and f.is_integer():
        return str(int(f))
    return repr(f)


def true_positive_filter(labels, pred_a, pred_b, positive=1, *, mode: str = "tp"):
    """Samples both checkpoints classify correctly.

    Parameters
    ----------
    labels : array, shape (n,)
        Ground-truth labels (the user's label column).
    pred_a, pred_b : array, shape (n,)
        Predicted labels of checkpoint A and B, in the same label space as ``labels``.
    positive : scalar
        The positive class value.
    mode : {"tp", "correct"}
        ``tp``: label == positive and both predict positive. ``correct``: both predict the label.

    Returns
    -------
    keep : ndarray bool, shape (n,)
    counts : dict
        ``n_total, n_missing_label, n_positive, n_correct_a, n_correct_b, n_tp_a, n_tp_b, n_kept``.
    """
    labels = np.asarray(labels, dtype=object)
    pa, pb = np.asarray(pred_a, dtype=object), np.asarray(pred_b, dtype=object)
    if not (labels.shape == pa.shape == pb.shape):
        raise InputError(f"true_positive_filter: labels {labels.shape}, pred_a {pa.shape}, pred_b {pb.shape} differ")
    if mode not in ("tp", "correct"):
        raise InputError(f"samples mode {mode!r} not allowed; use 'tp' or 'correct'")
    import pandas as pd

    missing = pd.isna(pd.Series(labels)).to_numpy()
    lab = np.array([_label_key(v) for v in labels])
    sa, sb, pos = (np.array([_label_key(v) for v in pa]), np.array([_label_key(v) for v in pb]),
                   _label_key(positive))
    is_pos = (lab == pos) & ~missing
    tp_a, tp_b = is_pos & (sa == pos), is_pos & (sb == pos)
    ok_a, ok_b = (sa == lab) & ~missing, (sb == lab) & ~missing
    keep = (tp_a & tp_b) if mode == "tp" else (ok_a & ok_b)
    counts = {"n_total": int(labels.size), "n_missing_label": int(missing.sum()), "n_positive": int(is_pos.sum()),
              "n_correct_a": int(ok_a.sum()), "n_correct_b": int(ok_b.sum()), "n_tp_a": int(tp_a.sum()),
              "n_tp_b": int(tp_b.sum()), "n_kept": int(keep.sum()), "mode": mode}
    return keep, counts
