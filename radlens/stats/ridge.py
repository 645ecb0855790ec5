"""Closed-form multi-output ridge regression: grouped cross-validation of the penalty and batched
(vectorised) refits under case weights.

One penalty is shared by all outputs, so the estimator is a fixed linear smoother
``Y -> S @ Y`` of the (centred) targets and commutes with any orthogonal transform of the outputs.
The penalty is scaled by the (weighted) number of training rows, ``alpha * n``, so one ``alpha``
means the same amount of shrinkage for a cross-validation fold, a bootstrap resample and the full
data.

Model: ``Y ≈ 1 b' + H W`` with ``W = (Hc' Ω Hc + alpha N I)^-1 Hc' Ω Yc`` where ``Ω = diag(w)``,
``N = sum(w)``, ``Hc = H - h̄_w`` and ``Yc = Y - ȳ_w`` (weighted means); the intercept is not
penalised.
"""
from __future__ import annotations

import numpy as np


def group_kfold(groups, n_splits: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Shuffled K-fold split with no group on both sides (groups shuffled with ``seed``, then dealt
    to folds greedily, largest first, to balance fold sizes).

    Parameters
    ----------
    groups : array-like, shape (n,)
    n_splits : int, at least 2 and at most the number of distinct groups.

    Returns
    -------
    list of (train_idx, test_idx) integer arrays.
    """
    g = np.asarray(groups)
    uniq, inv = np.unique(g, return_inverse=True)
    if not 2 <= n_splits <= uniq.size:
        raise ValueError(f"group_kfold: n_splits={n_splits} must be in [2, number of groups={uniq.size}]")
    rng = np.random.default_rng(seed)
    order = rng.permutation(uniq.size)
    sizes = np.bincount(inv, minlength=uniq.size)
    order = order[np.argsort(-sizes[order], kind="stable")]
    fold_of_group = np.empty(uniq.size, int)
    load = np.zeros(n_splits)
    for k in order:
        f = int(np.argmin(load))
        fold_of_group[k] = f
        load[f] += sizes[k]
    fold = fold_of_group[inv]
    return [(np.flatnonzero(fold != f), np.flatnonzero(fold == f)) for f in range(n_splits)]


def ridge_fit(H, Y, alpha: float, weights=None) -> tuple[np.ndarray, np.ndarray]:
    """Multi-output ridge with an unpenalised intercept.

    Parameters
    ----------
    H : ndarray, shape (n, m)   predictors.
    Y : ndarray, shape (n, d)   targets.
    alpha : float > 0           penalty per unit of (weighted) sample size.
    weights : ndarray, shape (n,), optional   non-negative case weights (bootstrap counts).

    Returns
    -------
    coef : ndarray, shape (m, d);  intercept : ndarray, shape (d,)
    """
    H = np.asarray(H, float)
    Y = np.asarray(Y, float)
    w = np.ones(H.shape[0]) if weights is None else np.asarray(weights, float)
    N = w.sum()
    hbar = w @ H / N
    ybar = w @ Y / N
    Hc = H - hbar
    A = (Hc * w[:, None]).T @ Hc + alpha * N * np.eye(H.shape[1])
    coef = np.linalg.solve(A, (Hc * w[:, None]).T @ (Y - ybar))
    return coef, ybar - hbar @ coef


def ridge_smoother(H, alpha: float, weights=None) -> np.ndarray:
    """The linear smoother ``S`` (m, n) with ``coef = S @ Y`` for any targets ``Y`` (n, d).

    ``S`` annihilates constants (``S @ 1 = 0``), so ``S @ (Y2 - Y1)`` is exactly the change of the
    ridge coefficients between targets ``Y1`` and ``Y2`` fitted with the same penalty and weights.
    """
    return batched_ridge_smoothers(H, alpha, None if weights is None else np.asarray(weights, float)[None])[0]


def upper_outer(A) -> np.ndarray:
    """Row-wise outer products ``a_i a_i^T`` packed as their upper triangles, shape (n, m(m+1)/2);
    ``weights @ upper_outer(A)`` gives every weighted Gram ``Σ_i w_bi a_i a_i^T`` of a batch with half
    the work of the full (n, m²) outer products (see :func:`unpack_upper`)."""
    A = np.asarray(A, float)
    iu = np.triu_indices(A.shape[1])
    return A[:, iu[0]] * A[:, iu[1]]


def unpack_upper(V, m: int) -> np.ndarray:
    """Symmetric (..., m, m) matrices from packed upper triangles (..., m(m+1)/2)."""
    V = np.asarray(V)
    iu = np.triu_indices(m)
    out = np.empty(V.shape[:-1] + (m, m), dtype=V.dtype)
    out[..., iu[0], iu[1]] = V
    out[..., iu[1], iu[0]] = V
    return out


def batched_ridge_smoothers(H, alpha: float, weights=None, outer=None) -> np.ndarray:
    """Ridge smoothers for a batch of case-weight vectors in one vectorised pass.

    Parameters
    ----------
    H : ndarray, shape (n, m)
    alpha : float
    weights : ndarray, shape (B, n), optional (default: one all-ones vector)
    outer : ndarray, shape (n, m(m+1)/2), optional   ``upper_outer(H)`` when already computed
        (it does not depend on the weights: compute it once for many batches).

    Returns
    -------
    S : ndarray, shape (B, m, n) with ``coef_b = S[b] @ Y``.
    """
    H = np.asarray(H, float)
    n, m = H.shape
    w = np.ones((1, n)) if weights is None else np.asarray(weights, float)
    N = w.sum(1)                                          # (B,)
    hbar = (w @ H) / N[:, None]                           # (B, m)
    if weights is None:                                   # unweighted: the plain centred Gram
        Hc = H - hbar[0]
        gram = (Hc.T @ Hc)[None]
    else:
        outer = upper_outer(H) if outer is None else outer
        gram = unpack_upper(w @ outer, m) - N[:, None, None] * hbar[:, :, None] * hbar[:, None, :]
    gram += (alpha * N)[:, None, None] * np.eye(m)
    ainv = np.linalg.inv(gram)                            # (B, m, m), SPD and small
    # S_b[:, i] = w_bi * A_b^-1 (h_i - hbar_b)
    B = ainv.shape[0]
    # one (B·m, m) @ (m, n) GEMM (a broadcast batched matmul does not run as one BLAS call)
    S = (ainv.reshape(B * m, m) @ H.T).reshape(B, m, n) - (ainv @ hbar[:, :, None])   # (B, m, n)
    S *= w[:, None, :]
    return S


def ridge_cv(H, Y, groups=None, alphas=None, n_splits: int = 5, seed: int = 0) -> dict:
    """Choose the ridge penalty by grouped K-fold cross-validation (pooled held-out R²).

    The eigendecomposition of each fold's training Gram matrix is computed once and reused for
    every penalty on the grid; the held-out error for all penalties follows from (m, m) and (m, d)
    products, never refitting.

    Parameters
    ----------
    H : ndarray, shape (n, m);  Y : ndarray, shape (n, d)
    groups : array-like, shape (n,), optional   no group on both sides of a fold (default: rows).
    alphas : array-like, optional   penalty grid (default ``logspace(-5, 2, 15)``).

    Returns
    -------
    dict with ``alpha`` (best), ``alphas``, ``cv_r2`` (pooled held-out R² per alpha, shape (A,)),
    ``folds`` (number of folds used).
    """
    H = np.asarray(H, float)
    Y = np.asarray(Y, float)
    n = H.shape[0]
    alphas = np.logspace(-5, 2, 15) if alphas is None else np.asarray(alphas, float)
    if alphas.ndim != 1 or alphas.size == 0 or np.any(alphas <= 0):
        raise ValueError(f"ridge_cv: alphas must be a non-empty 1-D array of positive values, got {alphas!r}")
    groups = np.arange(n) if groups is None else np.asarray(groups)
    k = int(min(n_splits, np.unique(groups).size))
    sse = np.zeros(alphas.size)
    sst = 0.0
    for tr, te in group_kfold(groups, k, seed):
        hbar = H[tr].mean(0)
        ybar = Y[tr].mean(0)
        Hc = H[tr] - hbar
        evals, U = np.linalg.eigh(Hc.T @ Hc)
        B = U.T @ (Hc.T @ (Y[tr] - ybar))                # (m, d)
        P = (H[te] - hbar) @ U                            # (n_te, m)
        R = Y[te] - ybar                                  # (n_te, d)
        cross = np.einsum("jk,jk->j", P.T @ R, B)         # (m,)
        quad = (P.T @ P) * (B @ B.T)                      # (m, m)
        f = 1.0 / (np.clip(evals, 0, None)[None, :] + alphas[:, None] * tr.size)   # (A, m)
        rr = float((R * R).sum())
        sse += rr - 2 * f @ cross + np.einsum("aj,jk,ak->a", f, quad, f)
        sst += rr
    r2 = 1 - sse / sst if sst > 0 else np.full(alphas.size, np.nan)
    best = int(np.nanargmax(r2)) if np.isfinite(r2).any() else 0
    return {"alpha": float(alphas[best]), "alphas": alphas, "cv_r2": r2, "folds": k}


def pooled_r2(Y, pred, ref_mean) -> float:
    """Pooled (variance-weighted) R² = 1 − Σ‖Y − pred‖² / Σ‖Y − ref_mean‖²; invariant to any
    orthogonal transform of the output columns."""
    Y = np.asarray(Y, float)
    sst = float(((Y - ref_mean) ** 2).sum())
    return 1 - float(((Y - pred) ** 2).sum()) / sst if sst > 0 else float("nan")
