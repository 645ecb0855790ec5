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
from radlens.stats.permutation import cluster_permutations, empirical_tail, gamma_tail  # noqa: F401 (re-exported)
from radlens.stats.ridge import batched_ridge_smoothers


_CONTROLLER = []


def single_thread():
    """Context manager limiting BLAS to one thread (the thread pools are looked up once per process:
    ``threadpool_limits`` rescans the loaded libraries on every call)."""
    if not _CONTROLLER:
        from threadpoolctl import ThreadpoolController

        _CONTROLLER.append(ThreadpoolController())
    return _CONTROLLER[0].limit(limits=1)


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


def replicate_grams(H, alpha: float, factors, perms=None, boot_w=None, batch: int = 25, dtype=np.float32,
                    cross=None, dsig=None, diffs=()) -> dict:
    """Head-delta Gram matrices ``D_b D_b^T`` (m, m) of null and bootstrap replicates for several
    per-case changes at once (one smoother per replicate, one GEMM for all changes).

    Parameters
    ----------
    H : ndarray, shape (n, m)   hidden activations.
    alpha : float               ridge penalty.
    factors : list of ndarray, shapes (n, r_j)
        Low-rank factors ``F_j`` of the changes, ``E_j = F_j V_j^T`` with orthonormal ``V_j``
        (:func:`low_rank_factor`); ``D_j = S E_j`` so ``D_j D_j^T = (S F_j)(S F_j)^T``.
    perms : ndarray, shape (B0, n), optional   null permutations (rows of E assigned to each case).
    boot_w : ndarray, shape (B1, n), optional  bootstrap case weights.
    batch : int   replicates per GEMM.
    dtype : float dtype of the large product.
    cross : ndarray, shape (m, r_0), or list of such, optional
        ``coef_pre @ V_0``: also return ``coef_pre D_{0,b}^T`` of the null replicates of the first
        change (for the null of the post sensitivities); a list ``[coef_pre @ V_j, ...]`` does so for
        the first ``len(cross)`` changes.
    dsig : ndarray, shape (n, m), optional
        Activation derivatives: also return the resampled Jacobian moments ``C_b`` of the bootstrap
        (:func:`radlens.lens.scores.dsigma_moment` with the bootstrap weights).
    diffs : sequence of (i, j) factor indices
        Bootstrap only: also return the Grams of ``S_b (F_i − F_j)`` from the two products already
        computed (key ``boot_diff``), for a change that is the difference of two factored embeddings
        with the same (identity) basis ``V`` — no GEMM of its own.

    Returns
    -------
    dict: ``null`` list over changes of (B0, m, m), ``null_cross`` (B0, m, m) when ``cross`` is given
    (a list of them when ``cross`` is a list),
    ``boot`` list over changes of (B1, m, m), ``boot_C`` (B1, m, m) when ``dsig`` is given.
    """
    from radlens.stats.ridge import upper_outer

    sizes = [F.shape[1] for F in factors]
    splits = np.cumsum(sizes)[:-1]
    Fd = np.ascontiguousarray(np.hstack(factors), dtype=dtype)
    S = batched_ridge_smoothers(H, alpha)[0]                     # (m, n)
    m, n = S.shape
    J = len(factors)

    def grams(Sg, pairs=()):
        b = Sg.shape[0]
        Y = (Sg.reshape(-1, n).astype(dtype, copy=False) @ Fd).reshape(b, m, -1)
        # contiguous blocks so that the batched product runs as BLAS GEMMs (a strided view does not);
        # a Gram of (m, r) float32 blocks is accurate to ~1e-6 relative, far below any null spread
        parts = [np.ascontiguousarray(P) for P in np.split(Y, splits, axis=2)] if len(factors) > 1 else [Y]
        parts += [parts[i] - parts[j] for i, j in pairs]
        with single_thread():   # tiny GEMMs: extra BLAS threads only add hand-off latency
            return [np.stack([np.dot(Pi, Pi.T) for Pi in P]).astype(float) for P in parts], parts

    out = {}
    one = cross is not None and not isinstance(cross, (list, tuple))
    cross = [cross] if one else list(cross or [])
    if perms is not None:
        acc, accx = [[] for _ in range(J)], [[] for _ in cross]
        inv = np.argsort(perms, axis=1)                          # D_b = S[:, inv_b] @ E
        ST = np.ascontiguousarray(S.T, dtype=dtype)              # (n, m): gather whole rows, once rounded
        FT = Fd.T
        offs = np.concatenate([[0], np.cumsum(sizes)])
        for s in range(0, perms.shape[0], batch):
            idx = inv[s:s + batch]
            b = idx.shape[0]
            # (n, b·m) gathered smoothers, contiguous: D_b^T = F^T S[:, inv_b]^T for the whole batch in one GEMM
            Y = FT @ ST[idx.T].reshape(n, b * m)                 # (Σ r_j, b·m)
            with single_thread():
                for j in range(J):
                    Yj = Y[offs[j]:offs[j + 1]]
                    acc[j].append(np.stack([np.dot(Yj[:, i * m:(i + 1) * m].T, Yj[:, i * m:(i + 1) * m])
                                            for i in range(b)]).astype(float))
                for j, cx in enumerate(cross):
                    Yj = Y[offs[j]:offs[j + 1]].astype(float)
                    accx[j].append(np.stack([cx @ Yj[:, i * m:(i + 1) * m] for i in range(b)]))
        out["null"] = [np.concatenate(a) for a in acc]
        if cross:
            out["null_cross"] = [np.concatenate(a) for a in accx]
            if one:
                out["null_cross"] = out["null_cross"][0]
    if boot_w is not None:
        diffs = list(diffs)
        acc, accc = [[] for _ in range(J + len(diffs))], []
        outer = upper_outer(H)                                   # weight-free: once for every batch
        outer_d = upper_outer(dsig) if dsig is not None else None
        for s in range(0, boot_w.shape[0], batch):
            G, _ = grams(batched_ridge_smoothers(H, alpha, boot_w[s:s + batch], outer=outer), diffs)
            for j in range(J + len(diffs)):
                acc[j].append(G[j])
            if dsig is not None:
                accc.append(dsigma_moment(dsig, boot_w[s:s + batch], outer=outer_d))
        out["boot"] = [np.concatenate(a) for a in acc[:J]]
        if diffs:
            out["boot_diff"] = [np.concatenate(a) for a in acc[J:]]
        if dsig is not None:
            out["boot_C"] = np.concatenate(accc)
    return out


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
    C = dsigma_moment(dsig)
    rep = replicate_grams(H, alpha, [F], perms, boot_w, batch, dtype, cross=coef_pre @ V, dsig=dsig)
    out = {}
    if perms is not None:
        G, X = rep["null"][0], rep["null_cross"]
        Gpre = coef_pre @ coef_pre.T
        out["null_shift_sq"] = quad_scores(W1, G * C)
        out["null_sens_post_sq"] = quad_scores(W1, (Gpre + X + X.transpose(0, 2, 1) + G) * C)
    if boot_w is not None:
        out["boot_shift_sq"] = quad_scores(W1, rep["boot"][0] * rep["boot_C"])
    return out
