"""Linear CKA (centred kernel alignment, Kornblith et al. 2019) with a case-bootstrap CI.

For representations ``X`` (n, p) and ``Y`` (n, q) of the same n cases,

    CKA(X, Y) = ‖Ycᵀ Xc‖_F² / (‖Xcᵀ Xc‖_F ‖Ycᵀ Yc‖_F),

``Xc``, ``Yc`` column-centred. It is 1 for ``Y = c X Q`` (any scale c ≠ 0, orthogonal Q, any
translation), 0 when the centred columns of X and Y are orthogonal.

The bootstrap resamples cases (whole patients when ``groups`` is given) and recomputes CKA on each
resample. A resample is a vector of case counts ``w`` (n,); with ``m = w / Σw``, the resample's
HSIC is, up to a factor common to the numerator and the denominator,

    hsic_m(K, L) = mᵀ (K ∘ L) m − 2 Σ_i m_i (K m)_i (L m)_i + (mᵀ K m)(mᵀ L m),

with the uncentred Gram matrices ``K = X Xᵀ``, ``L = Y Yᵀ`` (the weighted centring of ``K`` has
zero weighted row sums, so the centring of ``L`` drops out). This is exactly the CKA of the
explicitly resampled rows, and a batch of resamples costs five (B, n) @ (n, n) products instead of
B products of size n × p × q. Above ``gram_max_n`` cases the feature-space form is used per
resample (memory O(p q) instead of O(n²)).
"""
from __future__ import annotations

import numpy as np

from radlens.stats.agreement import linear_cka
from radlens.stats.bootstrap import bootstrap_indices

__all__ = ["linear_cka", "cka_bootstrap", "weighted_linear_cka"]


def _as_pair(x, y):
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    if x.ndim != 2 or y.ndim != 2:
        raise ValueError(f"CKA: x and y must be 2-D (cases, dims); got shapes {x.shape} and {y.shape}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"CKA: x has {x.shape[0]} rows, y has {y.shape[0]}; give the same cases in the same order")
    if x.shape[0] < 2:
        raise ValueError(f"CKA: need at least 2 cases, got {x.shape[0]}")
    return x, y


def weighted_linear_cka(x, y, weights) -> np.ndarray:
    """Linear CKA of case-weighted representations (a weight is how often the case is repeated).

    Parameters
    ----------
    x : ndarray, shape (n, p);  y : ndarray, shape (n, q)
    weights : ndarray, shape (n,) or (B, n)   non-negative case weights (bootstrap counts).

    Returns
    -------
    float or ndarray of shape (B,); NaN where a representation has no variance under the weights.
    """
    x, y = _as_pair(x, y)
    w = np.asarray(weights, float)
    single = w.ndim == 1
    W = np.atleast_2d(w)
    if W.shape[1] != x.shape[0]:
        raise ValueError(f"CKA: weights have {W.shape[1]} columns, x has {x.shape[0]} rows")
    M = W / W.sum(1, keepdims=True)
    # shift by the unweighted mean first: CKA is translation invariant, and centred data keep the
    # Gram entries small (less cancellation in the weighted centring)
    x = x - x.mean(0)
    y = y - y.mean(0)
    K = x @ x.T
    L = y @ y.T
    KM, LM = M @ K, M @ L                                   # (B, n) = (K m_b)ᵀ
    a, b = (M * KM).sum(1), (M * LM).sum(1)                 # mᵀ K m, mᵀ L m

    def hsic(G, GM, HM, g, h):
        return ((M @ G) * M).sum(1) - 2 * (M * GM * HM).sum(1) + g * h

    kl = hsic(K * L, KM, LM, a, b)
    kk = hsic(K * K, KM, KM, a, a)
    ll = hsic(L * L, LM, LM, b, b)
    den = np.sqrt(np.clip(kk, 0, None) * np.clip(ll, 0, None))
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(den > 0, kl / den, np.nan)
    return float(out[0]) if single else out


def _feature_cka(x, y, w):
    m = w / w.sum()
    xc = x - m @ x
    yc = y - m @ y
    xs = xc * np.sqrt(m)[:, None]
    ys = yc * np.sqrt(m)[:, None]
    den = np.linalg.norm(xs.T @ xs) * np.linalg.norm(ys.T @ ys)
    return float(np.linalg.norm(ys.T @ xs) ** 2 / den) if den > 0 else np.nan


def cka_bootstrap(x, y, *, n_boot: int = 200, seed: int = 0, groups=None, alpha: float = 0.05,
                  batch: int = 50, gram_max_n: int = 4000) -> dict:
    """Linear CKA between two representations of the same cases with a percentile bootstrap CI.

    Parameters
    ----------
    x : ndarray, shape (n, p);  y : ndarray, shape (n, q)   rows are the same cases.
    n_boot : int   bootstrap resamples (0: no CI).
    seed : int
    groups : array-like, shape (n,), optional   patient labels; whole patients are resampled.
    alpha : float   1 − coverage of the interval.
    batch : int   resamples per Gram-form batch.
    gram_max_n : int   above this many cases the per-resample feature-space form is used.

    Returns
    -------
    dict with ``cka`` (float), ``ci_low``, ``ci_high`` (NaN when ``n_boot`` is 0), ``n_boot``,
    ``replicates`` (ndarray, shape (n_boot,)).
    """
    x, y = _as_pair(x, y)
    if not (isinstance(n_boot, (int, np.integer)) and n_boot >= 0):
        raise ValueError(f"cka_bootstrap: n_boot={n_boot!r} must be an integer >= 0")
    if not 0 < alpha < 1:
        raise ValueError(f"cka_bootstrap: alpha={alpha!r} must be in (0, 1)")
    n = x.shape[0]
    est = linear_cka(x, y)
    reps = np.full(n_boot, np.nan)
    if n_boot:
        idx = bootstrap_indices(n, n_boot, seed=seed, groups=groups)
        Wt = np.vstack([np.bincount(i, minlength=n) for i in idx]).astype(float)
        if n <= gram_max_n:
            for s in range(0, n_boot, batch):
                reps[s:s + batch] = weighted_linear_cka(x, y, Wt[s:s + batch])
        else:
            for b in range(n_boot):
                reps[b] = _feature_cka(x, y, Wt[b])
    ok = reps[np.isfinite(reps)]
    lo, hi = (np.quantile(ok, [alpha / 2, 1 - alpha / 2]) if ok.size else (np.nan, np.nan))
    return {"cka": est, "ci_low": float(lo), "ci_high": float(hi), "n_boot": int(n_boot), "replicates": reps}
