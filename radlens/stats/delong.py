"""Fast DeLong: AUC, its variance, and the paired test for correlated AUCs.

Implements the O(n log n) midrank algorithm of Sun & Xu (2014, IEEE Signal Processing Letters
21(11):1389–1393) for the DeLong, DeLong & Clarke-Pearson (1988) covariance of one or several
AUCs computed on the *same* samples. The structural components are

    V10_i = (1/n) Σ_j ψ(X_i, Y_j)   for each positive i (X: scores of the m positives),
    V01_j = (1/m) Σ_i ψ(X_i, Y_j)   for each negative j (Y: scores of the n negatives),

with ψ(x, y) = 1 if x > y, 1/2 if x = y, 0 otherwise, so ties count one half. Sun & Xu obtain
them from midranks: with Tz the midranks in the pooled sample, Tx within the positives and Ty
within the negatives, V10_i = (Tz_i − Tx_i)/n and V01_j = 1 − (Tz_j − Ty_j)/m.

A sample with a single class has no AUC: :func:`auc` and :func:`delong_covariance` raise
:class:`radlens.errors.InputError` (a ``ValueError``, so :func:`radlens.stats.bootstrap_ci`
records such a resample as NaN and drops it), and :func:`delong_test` can instead return NaNs
(``on_single_class="nan"``).
"""
from __future__ import annotations

import math

import numpy as np
from scipy import stats as st

from radlens.errors import InputError

__all__ = ["midrank", "auc", "auc_weighted", "delong_components", "delong_covariance", "delong_auc_test",
           "delong_test", "undefined_auc_reason"]


def midrank(x) -> np.ndarray:
    """Midranks (1-based; ties share the average of their ranks) of ``x``, shape (n,), in
    O(n log n). Equal to ``scipy.stats.rankdata(x, method="average")``."""
    x = np.asarray(x, dtype=float)
    n = x.size
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    # start index of each run of equal values
    new = np.empty(n, dtype=bool)
    if n:
        new[0] = True
        new[1:] = xs[1:] != xs[:-1]
    starts = np.flatnonzero(new)
    ends = np.append(starts[1:], n)  # exclusive
    run_rank = (starts + ends + 1) / 2.0  # mean of 1-based ranks starts+1 .. ends
    ranks_sorted = np.repeat(run_rank, ends - starts)
    out = np.empty(n, dtype=float)
    out[order] = ranks_sorted
    return out


def _check(y, scores) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y)
    s = np.asarray(scores, dtype=float)
    if s.ndim == 1:
        s = s[None, :]
    if s.ndim != 2:
        raise InputError(f"scores: expected shape (n,) or (k, n), got {s.shape}")
    if y.ndim != 1 or y.shape[0] != s.shape[1]:
        raise InputError(f"labels y: shape {y.shape} does not match scores shape {s.shape} "
                         "(need y of shape (n,) and scores (n,) or (k, n))")
    if not np.all(np.isfinite(s)):
        raise InputError(f"scores: {int((~np.isfinite(s)).sum())} non-finite value(s); drop or "
                         "impute them before computing an AUC")
    u = np.unique(y)
    if not np.all(np.isin(u, [0, 1, False, True])):
        raise InputError(f"labels y: values {u[:6].tolist()} are not binary; use 0 (negative) "
                         "and 1 (positive)")
    yb = y.astype(bool)
    m = int(yb.sum())
    if m == 0 or m == yb.size:
        raise InputError(f"labels y: {undefined_auc_reason(yb)}; an AUC needs both")
    return yb, s


def undefined_auc_reason(y) -> str | None:
    """Why an AUC of labels ``y`` is undefined, in words, or None when it is defined.

    Parameters
    ----------
    y : array-like of {0, 1}, shape (n,)

    Returns
    -------
    str or None
        ``"one class only (15 positives, 0 negatives)"``, ``"no samples (...)"``, or None.
    """
    yb = np.asarray(y).astype(bool).ravel()
    if yb.size == 0:
        return "no samples (0 positives, 0 negatives)"
    m = int(yb.sum())
    if m == 0 or m == yb.size:
        return f"one class only ({m} positives, {yb.size - m} negatives)"
    return None


def delong_components(y, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """DeLong structural components by the Sun & Xu midrank algorithm.

    Parameters
    ----------
    y : array-like of {0, 1}, shape (n,)
    scores : array-like, shape (n,) or (k, n)
        Higher score = more likely positive; k score vectors on the same samples.

    Returns
    -------
    aucs : ndarray, shape (k,)
    v10 : ndarray, shape (k, m)   one value per positive (in sample order)
    v01 : ndarray, shape (k, n_neg)   one value per negative (in sample order)
    """
    yb, s = _check(y, scores)
    pos, neg = np.flatnonzero(yb), np.flatnonzero(~yb)
    m, n = pos.size, neg.size
    k = s.shape[0]
    v10 = np.empty((k, m))
    v01 = np.empty((k, n))
    aucs = np.empty(k)
    for r in range(k):
        tz = midrank(s[r])
        tx = midrank(s[r, pos])
        ty = midrank(s[r, neg])
        aucs[r] = _exact_auc(tz[pos].sum(), m, n)
        v10[r] = (tz[pos] - tx) / n
        v01[r] = 1.0 - (tz[neg] - ty) / m
    return aucs, v10, v01


def auc(y, score) -> float:
    """Area under the ROC curve (Mann–Whitney, ties count one half) in O(n log n).

    Raises :class:`InputError` (a ``ValueError``) when ``y`` holds a single class.
    """
    yb, s = _check(y, score)
    if s.shape[0] != 1:
        raise InputError(f"auc: expected one score vector, got shape {s.shape}")
    m = int(yb.sum())
    n = yb.size - m
    tz = midrank(s[0])
    return _exact_auc(tz[yb].sum(), m, n)


def _exact_auc(rank_sum: float, m: int, n: int) -> float:
    """Mann–Whitney AUC ``(R − m(m+1)/2) / (m n)`` from the positives' midrank sum ``R``.

    Midranks are multiples of 1/2, so the numerator is an exact half-integer in floating point
    (for any realistic m, n) and the one division is correctly rounded: a perfect separation
    gives exactly 1.0 and a perfect inversion exactly 0.0 (the form ``R/(m n) − (m+1)/(2n)``, a
    difference of two rounded terms, gives 1.0000000000000002 for e.g. m = 7, n = 3). The result
    is clipped to [0, 1] against any residual rounding.
    """
    u = float(rank_sum) - m * (m + 1) / 2.0
    return float(min(1.0, max(0.0, u / (float(m) * float(n)))))


def auc_weighted(y, score, weights) -> np.ndarray:
    """AUCs of one score vector under many sample weightings, O(B·n) after one sort.

    A bootstrap resample is a weighting by multiplicity (``np.bincount(idx, minlength=n)``), so
    this gives the AUC of every resample at once, equal to :func:`auc` on the resampled arrays.

    Parameters
    ----------
    y : array-like of {0, 1}, shape (n,)
    score : array-like, shape (n,)
    weights : array-like, shape (B, n) or (n,), non-negative

    Returns
    -------
    ndarray, shape (B,) — NaN where a weighting leaves no positive or no negative weight.
    """
    y = np.asarray(y).astype(bool)
    s = np.asarray(score, dtype=float)
    w = np.atleast_2d(np.asarray(weights, dtype=float))
    if s.ndim != 1 or y.shape != s.shape or w.shape[1] != s.size:
        raise InputError(f"auc_weighted: y {y.shape}, score {s.shape} and weights {w.shape} do not "
                         "match (need (n,), (n,), (B, n))")
    order = np.argsort(s, kind="mergesort")
    ss, ys, ws = s[order], y[order], w[:, order]
    new = np.ones(ss.size, dtype=bool)
    new[1:] = ss[1:] != ss[:-1]
    starts = np.flatnonzero(new)
    wn = np.where(ys, 0.0, ws)
    wp = np.where(ys, ws, 0.0)
    neg_tie = np.add.reduceat(wn, starts, axis=1)          # (B, U) negative weight per value
    pos_tie = np.add.reduceat(wp, starts, axis=1)          # (B, U) positive weight per value
    neg_below = np.cumsum(neg_tie, axis=1) - neg_tie       # negative weight strictly below
    num = (pos_tie * (neg_below + 0.5 * neg_tie)).sum(axis=1)
    den = wp.sum(axis=1) * wn.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, np.clip(num / np.where(den > 0, den, 1.0), 0.0, 1.0), np.nan)


def delong_covariance(y, scores, groups=None) -> tuple[np.ndarray, np.ndarray]:
    """AUCs and their DeLong covariance matrix.

    Parameters
    ----------
    y : array-like of {0, 1}, shape (n,)
    scores : array-like, shape (n,) or (k, n)
    groups : array-like, shape (n,), optional
        Cluster of each sample (e.g. the source image of a clean/perturbed pair, or a patient).
        Samples of one cluster are dependent: the covariance is then Obuchowski's (1997,
        Biometrics 53:567) clustered extension of DeLong, built from the same structural
        components summed per cluster: with A_c = Σ_{pos in c}(V10 − θ)/m + Σ_{neg in c}(V01 − θ)/n,
        cov = K/(K−1) Σ_c A_c A_cᵀ over the K clusters. Without ``groups`` samples are independent.

    Returns
    -------
    aucs : ndarray, shape (k,)
    cov : ndarray, shape (k, k)   unclustered: S10/m + S01/n with S10, S01 the sample
        covariances (ddof=1) of the structural components; a class of size one contributes zero
        variance from its side.
    """
    aucs, v10, v01 = delong_components(y, scores)
    m, n = v10.shape[1], v01.shape[1]
    k = aucs.size
    if groups is not None:
        yb = np.asarray(y).astype(bool)
        g = np.asarray(groups)
        if g.shape != yb.shape:
            raise InputError(f"groups: shape {g.shape} does not match labels {yb.shape}")
        _, inv = np.unique(g, return_inverse=True)
        n_cl = int(inv.max()) + 1
        if n_cl < 2:
            raise InputError("groups: all samples are in one cluster; a clustered variance needs >= 2")
        ip, ineg = inv[yb], inv[~yb]
        A = np.empty((k, n_cl))
        for r in range(k):
            A[r] = (np.bincount(ip, weights=(v10[r] - aucs[r]) / m, minlength=n_cl)
                    + np.bincount(ineg, weights=(v01[r] - aucs[r]) / n, minlength=n_cl))
        return aucs, n_cl / (n_cl - 1.0) * (A @ A.T)

    def _cov(v):
        if v.shape[1] < 2:
            return np.zeros((k, k))
        return np.atleast_2d(np.cov(v, ddof=1))

    return aucs, _cov(v10) / m + _cov(v01) / n


def _nan_result(keys) -> dict:
    return {k: np.nan for k in keys}


def delong_auc_test(y, score, null: float = 0.5, alpha: float = 0.05,
                    on_single_class: str = "raise", groups=None) -> dict[str, float]:
    """One AUC with its DeLong standard error, a Wald CI and a two-sided test of AUC = ``null``.

    Returns
    -------
    dict with ``auc`` (exact at 0 and 1), ``se``, ``ci_low``, ``ci_high`` (clipped to [0, 1], so
    ``ci_low <= auc <= ci_high``), ``z``, ``p``, ``n_pos``, ``n_neg``. With
    ``on_single_class="nan"`` a single-class sample gives NaNs instead of raising, plus a key
    ``note`` naming the cause (``"AUC undefined: labels hold one class only (15 positives, 0
    negatives)"``). ``groups``: clustered samples (see :func:`delong_covariance`).
    """
    keys = ("auc", "se", "ci_low", "ci_high", "z", "p", "n_pos", "n_neg")
    _check_policy(on_single_class)
    aucs, cov, nan_out = _covariance_or_nan(y, score, groups, on_single_class, keys)
    if nan_out is not None:
        return nan_out
    a = float(aucs[0])
    se = float(math.sqrt(max(cov[0, 0], 0.0)))
    zc = st.norm.ppf(1 - alpha / 2)
    z = (a - null) / se if se > 0 else (0.0 if a == null else math.copysign(math.inf, a - null))
    p = float(2 * st.norm.sf(abs(z)))
    yb = np.asarray(y).astype(bool)
    return {"auc": a, "se": se, "ci_low": max(0.0, a - zc * se), "ci_high": min(1.0, a + zc * se),
            "z": float(z), "p": p, "n_pos": int(yb.sum()), "n_neg": int((~yb).sum())}


def delong_test(y, score_a, score_b, alpha: float = 0.05,
                on_single_class: str = "raise", groups=None) -> dict[str, float]:
    """DeLong test for two correlated AUCs (two score vectors on the same samples).

    Parameters
    ----------
    y : array-like of {0, 1}, shape (n,)
    score_a, score_b : array-like, shape (n,)
    alpha : level of the Wald CI of the difference.
    on_single_class : ``"raise"`` (default) or ``"nan"`` (return NaNs, e.g. inside a resampling
        loop).
    groups : array-like, shape (n,), optional
        Clustered samples (paired designs): Obuchowski's clustered covariance
        (see :func:`delong_covariance`).

    Returns
    -------
    dict with ``auc_a``, ``auc_b``, ``diff`` (= auc_b − auc_a), ``se``, ``ci_low``, ``ci_high``,
    ``z``, ``p`` (two-sided), ``corr`` (correlation of the two AUC estimates), ``n_pos``, ``n_neg``.
    When the variance of the difference is 0 (identical rankings) ``p`` is 1 if the AUCs are
    equal and 0 otherwise.
    """
    keys = ("auc_a", "auc_b", "diff", "se", "ci_low", "ci_high", "z", "p", "corr", "n_pos", "n_neg")
    _check_policy(on_single_class)
    a = np.asarray(score_a, dtype=float)
    b = np.asarray(score_b, dtype=float)
    if a.shape != b.shape:
        raise InputError(f"delong_test: score_a shape {a.shape} != score_b shape {b.shape}; "
                         "both must score the same samples")
    aucs, cov, nan_out = _covariance_or_nan(y, np.vstack([a, b]), groups, on_single_class, keys)
    if nan_out is not None:
        return nan_out
    diff = float(aucs[1] - aucs[0])
    var = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    se = math.sqrt(max(var, 0.0))
    if se > 1e-15:
        z = diff / se
        p = float(2 * st.norm.sf(abs(z)))
    else:
        z, p = (0.0, 1.0) if abs(diff) < 1e-15 else (math.copysign(math.inf, diff), 0.0)
    zc = st.norm.ppf(1 - alpha / 2)
    den = math.sqrt(max(cov[0, 0], 0) * max(cov[1, 1], 0))
    yb = np.asarray(y).astype(bool)
    return {"auc_a": float(aucs[0]), "auc_b": float(aucs[1]), "diff": diff, "se": se,
            "ci_low": diff - zc * se, "ci_high": diff + zc * se, "z": float(z), "p": p,
            "corr": float(cov[0, 1] / den) if den > 0 else np.nan,
            "n_pos": int(yb.sum()), "n_neg": int((~yb).sum())}


def _covariance_or_nan(y, scores, groups, on_single_class: str, keys):
    """``(aucs, cov, None)``, or ``(None, None, NaN result)`` when ``y`` has one class and the policy
    is ``"nan"``; any other input error propagates."""
    try:
        aucs, cov = delong_covariance(y, scores, groups)
    except InputError:
        if on_single_class == "nan" and _is_single_class(y):
            out = _nan_result(keys)
            out.update(n_pos=int(np.sum(np.asarray(y) == 1)), n_neg=int(np.sum(np.asarray(y) == 0)))
            out["note"] = f"AUC undefined: labels hold {undefined_auc_reason(y)}"
            return None, None, out
        raise
    return aucs, cov, None


def _check_policy(on_single_class: str) -> None:
    if on_single_class not in ("raise", "nan"):
        raise InputError(f"on_single_class={on_single_class!r} is not allowed; use 'raise' or 'nan'")


def _is_single_class(y) -> bool:
    y = np.asarray(y)
    return y.ndim == 1 and np.unique(y).size < 2
