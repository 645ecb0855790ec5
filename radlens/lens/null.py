"""Null and bootstrap replicates of the shift scores, vectorised over replicates.

Null ("nothing in the change is related to the radiomics"): the head delta of the observed data is
``D = S E`` with ``S`` (m, n) the ridge smoother of the frozen hidden activations and
``E = Z_post − Z_pre`` (n, d) the per-case change of the embedding in the pre frame. Under the null
the rows of ``E`` are exchangeable with respect to the radiomics (whole patients with whole
patients), so ``D_b = S E[π_b]`` — the same estimator, the same cases, the same sample size, the
same change magnitudes, no association — is a draw from the null distribution of the delta.

Bootstrap (sampling variability of the shift): patients are resampled with replacement, both heads
are re-estimated on the resample with the same penalty (case weights), ``D*_b = S_b E``, and the
Jacobian moment ``C`` is recomputed on the resample.

Everything reduces to (m, m) matrices per replicate; the only large product is one GEMM
(B·m, n) @ (n, min(n, d)) per batch of replicates.
"""
from __future__ import annotations

import numpy as np

from radlens.lens.scores import dsigma_moment, quad_scores
from radlens.stats.bootstrap import bootstrap_indices
from radlens.stats.ridge import batched_ridge_smoothers


def cluster_permutations(groups, n_perm: int, seed: int = 0) -> np.ndarray:
    """Row permutations that move whole clusters onto clusters of the same size.

    ``perm[b, i]`` is the row of ``E`` assigned to case ``i`` in replicate ``b``. With singleton
    groups this is a plain row permutation.

    Parameters
    ----------
    groups : array-like, shape (n,);  n_perm : int

    Returns
    -------
    ndarray of int, shape (n_perm, n)
    """
    g = np.asarray(groups)
    n = g.size
    rng = np.random.default_rng(seed)
    uniq, inv = np.unique(g, return_inverse=True)
    order = np.argsort(inv, kind="stable")
    sizes = np.bincount(inv)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    out = np.empty((n_perm, n), dtype=np.int64)
    for sz in np.unique(sizes):
        ks = np.flatnonzero(sizes == sz)
        M = order[starts[ks][:, None] + np.arange(sz)[None, :]]          # (K, sz) member rows
        src = np.argsort(rng.random((n_perm, ks.size)), axis=1)         # cluster -> cluster
        within = np.argsort(rng.random((n_perm, ks.size, sz)), axis=2)  # shuffle inside a cluster
        out[:, M.ravel()] = np.take_along_axis(M[src], within, axis=2).reshape(n_perm, -1)
    return out


def bootstrap_weights(n: int, n_boot: int, seed: int = 0, groups=None) -> np.ndarray:
    """Case weights (resample counts) of ``n_boot`` (cluster) bootstrap resamples, shape (n_boot, n)."""
    idx = bootstrap_indices(n, n_boot, seed=seed, groups=groups)
    return np.vstack([np.bincount(i, minlength=n) for i in idx]).astype(float)


def low_rank_factor(E) -> tuple[np.ndarray, np.ndarray]:
    """``E = F @ V.T`` with ``V`` orthonormal columns, ``F`` of shape (n, min(n, d)), so that
    ``(S E)(S E)^T = (S F)(S F)^T`` costs O(m n min(n, d))."""
    E = np.asarray(E, float)
    n, d = E.shape
    if d <= n:
        return E, np.eye(d)
    Q, R = np.linalg.qr(E.T)          # E^T = Q R  ->  E = R^T Q^T
    return R.T, Q


def replicate_scores(W1, H, dsig, alpha: float, coef_pre, E, perms=None, boot_w=None, batch: int = 25,
                     dtype=np.float32) -> dict:
    """Squared shift (and post sensitivity) for null and bootstrap replicates of one seed.

    Parameters
    ----------
    W1 : ndarray, shape (m, p)
    H, dsig : ndarray, shape (n, m)   hidden activations and their derivatives.
    alpha : float                     ridge penalty (the one used for pre and post heads).
    coef_pre : ndarray, shape (m, d)  pre head.
    E : ndarray, shape (n, d)         Z_post − Z_pre in the frame.
    perms : ndarray, shape (B0, n), optional   null permutations (``cluster_permutations``).
    boot_w : ndarray, shape (B1, n), optional  bootstrap case weights.
    batch : int   replicates per GEMM.
    dtype : float dtype of the large product (float32 halves its cost; scores are norms of
        (m, d) matrices, far above float32 rounding).

    Returns
    -------
    dict with ``null_shift_sq`` (B0, p), ``null_sens_post_sq`` (B0, p), ``boot_shift_sq`` (B1, p).
    """
    F, V = low_rank_factor(E)
    Fd = np.ascontiguousarray(F, dtype=dtype)
    S = batched_ridge_smoothers(H, alpha)[0]                     # (m, n)
    m = S.shape[0]
    C = dsigma_moment(dsig)
    Gpre = coef_pre @ coef_pre.T
    PV = coef_pre @ V                                            # (m, r)
    out = {}
    if perms is not None:
        ns, nsp = [], []
        inv = np.argsort(perms, axis=1)                          # D_b = S[:, inv_b] @ E
        for s in range(0, perms.shape[0], batch):
            Sg = S[:, inv[s:s + batch]].transpose(1, 0, 2)      # (b, m, n)
            Y = (Sg.reshape(-1, Sg.shape[2]).astype(dtype) @ Fd).reshape(Sg.shape[0], m, -1).astype(float)
            G = Y @ Y.transpose(0, 2, 1)
            X = PV[None] @ Y.transpose(0, 2, 1)                  # coef_pre D_b^T
            ns.append(quad_scores(W1, G * C))
            nsp.append(quad_scores(W1, (Gpre + X + X.transpose(0, 2, 1) + G) * C))
        out["null_shift_sq"] = np.vstack(ns)
        out["null_sens_post_sq"] = np.vstack(nsp)
    if boot_w is not None:
        bs = []
        for s in range(0, boot_w.shape[0], batch):
            w = boot_w[s:s + batch]
            Sb = batched_ridge_smoothers(H, alpha, w)             # (b, m, n)
            Y = (Sb.reshape(-1, Sb.shape[2]).astype(dtype) @ Fd).reshape(Sb.shape[0], m, -1).astype(float)
            G = Y @ Y.transpose(0, 2, 1)
            bs.append(quad_scores(W1, G * dsigma_moment(dsig, w)))
        out["boot_shift_sq"] = np.vstack(bs)
    return out


def gamma_tail(obs, null) -> np.ndarray:
    """Upper-tail p-values of ``obs`` (p,) under a gamma distribution moment-matched to ``null``
    (B, p) column by column (Satterthwaite: a squared norm of a near-Gaussian matrix is a weighted
    sum of χ² variables, well approximated by a scaled χ², i.e. a gamma)."""
    from scipy import stats as st

    mu = null.mean(0)
    var = null.var(0, ddof=1)
    ok = (mu > 0) & (var > 0)
    p = np.full(obs.shape, np.nan)
    k = mu[ok] ** 2 / var[ok]
    theta = var[ok] / mu[ok]
    p[ok] = st.gamma.sf(obs[ok], a=k, scale=theta)
    return p


def empirical_tail(obs, null) -> np.ndarray:
    """Permutation p-values ``(1 + #{null ≥ obs}) / (B + 1)`` per column."""
    return (1 + (null >= obs[None, :]).sum(0)) / (null.shape[0] + 1)
