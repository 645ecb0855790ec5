"""Feature-specific null (Freedman–Lane residual permutation) with analytic moments.

The global null of :mod:`radlens.lens.null` asks whether the change carries *any* radiomic
information. A change driven by some features also moves the lens's sensitivity to other features
that share hidden units with them (leakage). The specific null for feature r asks whether the
change needs feature r:

H0_r: E[E | X] does not depend on x_r.

Freedman–Lane: fit the change with a *reduced* lens whose input r is held at its mean (0 after
standardisation), ``Ê_r = Hc_r S_r E``; permute the residuals ``R_r = Ec − Ê_r``; the null change is
``Ê_r + R_r[π]`` and its head delta ``D* = S Ê_r + S R_r[π] = A_r + N``. The squared shift of
feature r under this null is the quadratic form ``tr((A_r + N)^T M_r (A_r + N))`` with
``M_r = diag(w_r) C diag(w_r)``. Its first two moments follow in closed form from
``E[N N^T] = tr(Σ_R) S S^T`` (exact under permutation, ``Σ_R = R^T R / (n − 1)``) and a Gaussian
approximation of ``N`` for the variance:

    mean = tr(A^T M A) + tr(Σ_R) tr(M S S^T)
    var  = 4 tr(S S^T M A Σ_R A^T M) + 2 tr(Σ_R²) tr((M S S^T)²)

and the p-value is the upper tail of the moment-matched gamma (Satterthwaite). Every quantity is an
(m, m) or (m, q) product, q = rank(E) ≤ min(n, d); no replicate is drawn.
"""
from __future__ import annotations

import numpy as np

from radlens.lens.mlp import activation
from radlens.lens.null import low_rank_factor


def change_basis(E) -> tuple[np.ndarray, np.ndarray]:
    """Eigen-coordinates of the centred change: ``Ec = F V^T`` with orthonormal ``V`` and
    ``F^T F = diag(lam)`` (numerically zero directions dropped).

    Returns
    -------
    F : ndarray, shape (n, q);  lam : ndarray, shape (q,)
    """
    Ec = np.asarray(E, float) - np.asarray(E, float).mean(0)
    n, d = Ec.shape
    if d > n:
        Ec, _ = low_rank_factor(Ec)
    lam, V = np.linalg.eigh(Ec.T @ Ec)
    keep = lam > max(float(lam.max()), 0.0) * 1e-12
    return Ec @ V[:, keep], lam[keep]


def specific_moments(W1, b1, X, E, S, C, alpha: float, act: str, chunk: int = 32,
                     basis=None) -> tuple[np.ndarray, np.ndarray]:
    """Null mean and variance of the squared shift of every feature under its own H0_r.

    Parameters
    ----------
    W1 : (m, p);  b1 : (m,);  X : (n, p) standardised radiomics;  E : (n, d) per-case change;
    S : (m, n) ridge smoother of the full hidden layer;  C : (m, m) ``mean σ'σ'^T``;
    alpha : ridge penalty;  act : activation name;  chunk : features per vectorised batch;
    basis : ``change_basis(E)`` when already computed (it is shared by every lens seed).

    Returns
    -------
    mean, var : ndarray, shape (p,)
    """
    return specific_moments_many(W1, b1, X, [change_basis(E) if basis is None else basis], S, C, alpha, act,
                                 chunk)[0]


def specific_moments_many(W1, b1, X, bases, S, C, alpha: float, act: str, chunk: int = 32) -> list:
    """:func:`specific_moments` of several changes through one lens seed: the reduced lenses
    (one per feature: hidden activations, Gram, inverse, smoother products) are built once and serve
    every change.

    Parameters
    ----------
    bases : list of ``change_basis(E_j)``;  the other parameters as :func:`specific_moments`.

    Returns
    -------
    list of (mean, var), each ndarray of shape (p,), in the order of ``bases``.
    """
    n, p = X.shape
    m = W1.shape[0]
    F32s = [np.ascontiguousarray(F, dtype=np.float32) for F, _ in bases]
    lams = [lam for _, lam in bases]
    SS = S @ S.T
    U = X @ W1.T + b1
    I = np.eye(m)
    out = [(np.empty(p), np.empty(p)) for _ in bases]
    for s0 in range(0, p, chunk):
        rs = np.arange(s0, min(p, s0 + chunk))
        c = rs.size
        Wc = W1[:, rs].T                                             # (c, m)
        Hr = activation(act, U[None] - X[:, rs].T[:, :, None] * Wc[:, None, :])[0]   # (c, n, m)
        Hc = Hr - Hr.mean(1, keepdims=True)
        G = np.einsum("cnj,cnk->cjk", Hc, Hc, optimize=True)        # (c, m, m)
        Ainv = np.linalg.inv(G + alpha * n * I)
        Hc32 = Hc.transpose(0, 2, 1).reshape(c * m, n).astype(np.float32)
        NA = np.einsum("jn,cnk->cjk", S, Hc, optimize=True) @ Ainv   # A = NA P
        Mw = C[None] * (Wc[:, :, None] * Wc[:, None, :])             # (c, m, m)
        MS = Mw @ SS
        trMS = np.einsum("cjj->c", MS)
        trMS2 = np.einsum("cjk,ckj->c", MS, MS)
        GA = G @ Ainv
        SSMw = SS[None] @ Mw
        tr = lambda X, Y: np.einsum("cjk,ckj->c", X, Y)   # noqa: E731   tr(X Y), batched
        # The residual second moments below are written in (m, m) blocks: with L = [I; Ainv] and
        # Mid = [[0, -I], [-I, G]], R^T R = Omega + B^T Mid B, B = L P (see specific_moments' algebra)
        for (mean, var), F32, lam in zip(out, F32s, lams):
            # P = Hc^T F (c, m, q) is the only O(n q) product; everything else needs only P P^T and P Λ P^T
            P = (Hc32 @ F32).reshape(c, m, -1).astype(float)
            Q1 = P @ P.transpose(0, 2, 1)                            # (c, m, m)
            QL = (P * lam[None, None, :]) @ P.transpose(0, 2, 1)
            K = Ainv @ Q1                                            # Ainv P P^T
            # ‖R_r‖² = Σλ − 2 tr(K P^T) + tr(K^T G K), K = Ainv P
            r2 = lam.sum() - 2 * np.einsum("cjj->c", K) + tr(GA, Q1 @ Ainv)
            AAt = NA @ Q1 @ NA.transpose(0, 2, 1)                    # A A^T
            mean[rs] = np.einsum("cjk,ckj->c", Mw, AAt) + r2 / (n - 1) * trMS
            # A R^T R A^T = NA QL NA^T + AB Mid AB^T with AB = [U1, U1 Ainv], U1 = NA Q1
            U1 = NA @ Q1
            U2 = U1 @ Ainv
            U1U2 = U1 @ U2.transpose(0, 2, 1)
            ARRA = NA @ QL @ NA.transpose(0, 2, 1) - U1U2 - U1U2.transpose(0, 2, 1) + U2 @ G @ U2.transpose(0, 2, 1)
            t1 = 4 * np.einsum("cjj->c", SSMw @ ARRA @ Mw) / (n - 1)
            # tr(Mid L QL L^T) = −2 tr(Ainv QL) + tr(G Ainv QL Ainv);  tr((Mid L Q1 L^T)²) with
            # Mid L Q1 L^T = [[−K, −K Ainv], [Z, Z Ainv]], Z = G K − Q1:  tr(K²) − 2 tr(K Ainv Z) + tr((Z Ainv)²)
            AQL = Ainv @ QL
            trMBOB = -2 * np.einsum("cjj->c", AQL) + tr(GA, QL @ Ainv)
            Z = G @ K - Q1
            ZA = Z @ Ainv
            trMB2 = tr(K, K) - 2 * tr(K @ Ainv, Z) + tr(ZA, ZA)
            trS2 = ((lam ** 2).sum() + 2 * trMBOB + trMB2) / (n - 1) ** 2
            t2 = 2 * trS2 * trMS2
            var[rs] = np.clip(t1 + t2, 0, None)
    return out


def gamma_sf_moments(obs, mean, var) -> np.ndarray:
    """Upper tail of a gamma with the given mean and variance, elementwise (NaN where undefined)."""
    from scipy import stats as st

    obs, mean, var = (np.asarray(a, float) for a in (obs, mean, var))
    p = np.full(obs.shape, np.nan)
    ok = (mean > 0) & (var > 0)
    p[ok] = st.gamma.sf(obs[ok], a=mean[ok] ** 2 / var[ok], scale=var[ok] / mean[ok])
    return p
