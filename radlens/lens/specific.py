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


def specific_moments(W1, b1, X, E, S, C, alpha: float, act: str, chunk: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Null mean and variance of the squared shift of every feature under its own H0_r.

    Parameters
    ----------
    W1 : (m, p);  b1 : (m,);  X : (n, p) standardised radiomics;  E : (n, d) per-case change;
    S : (m, n) ridge smoother of the full hidden layer;  C : (m, m) ``mean σ'σ'^T``;
    alpha : ridge penalty;  act : activation name;  chunk : features per vectorised batch.

    Returns
    -------
    mean, var : ndarray, shape (p,)
    """
    n, p = X.shape
    m = W1.shape[0]
    # eigen-coordinates of the change: Ec = F V^T with F^T F = diag(lam); then Omega = E^T E is diagonal
    Ec = E - E.mean(0)
    lam, V = np.linalg.eigh(Ec.T @ Ec) if Ec.shape[1] <= n else (None, None)
    if lam is None:
        F0, _ = low_rank_factor(Ec)
        lam, V = np.linalg.eigh(F0.T @ F0)
        Ec = F0
    keep = lam > max(float(lam.max()), 0.0) * 1e-12
    lam, V = lam[keep], V[:, keep]
    F = Ec @ V                                        # (n, q), orthogonal columns, ‖F[:, k]‖² = lam[k]
    SS = S @ S.T
    U = X @ W1.T + b1
    I = np.eye(m)
    mean, var = np.empty(p), np.empty(p)
    for s0 in range(0, p, chunk):
        rs = np.arange(s0, min(p, s0 + chunk))
        c = rs.size
        Wc = W1[:, rs].T                                             # (c, m)
        Hr = activation(act, U[None] - X[:, rs].T[:, :, None] * Wc[:, None, :])[0]   # (c, n, m)
        Hc = Hr - Hr.mean(1, keepdims=True)
        G = np.einsum("cnj,cnk->cjk", Hc, Hc, optimize=True)        # (c, m, m)
        Ainv = np.linalg.inv(G + alpha * n * I)
        P = (Hc.transpose(0, 2, 1).reshape(c * m, n) @ F).reshape(c, m, -1)   # Hc^T F  (c, m, q)
        K = Ainv @ P                                                 # reduced heads
        A = np.einsum("jn,cnk->cjk", S, Hc, optimize=True) @ K      # S Ê_r  (c, m, q)
        Mw = C[None] * (Wc[:, :, None] * Wc[:, None, :])             # (c, m, m)
        MS = Mw @ SS
        trMS = np.einsum("cjj->c", MS)
        r2 = lam.sum() - 2 * (K * P).sum((1, 2)) + (K * (G @ K)).sum((1, 2))   # ‖R_r‖²
        mean[rs] = (A * (Mw @ A)).sum((1, 2)) + r2 / (n - 1) * trMS
        B = np.concatenate([P, K], axis=1)                           # (c, 2m, q)
        Mid = np.zeros((c, 2 * m, 2 * m))
        Mid[:, :m, m:] = -I
        Mid[:, m:, :m] = -I
        Mid[:, m:, m:] = G
        BL = B * lam[None, None, :]
        BB = B @ B.transpose(0, 2, 1)
        BOB = BL @ B.transpose(0, 2, 1)
        AB = A @ B.transpose(0, 2, 1)                                # (c, m, 2m)
        ARRA = (A * lam[None, None, :]) @ A.transpose(0, 2, 1) + AB @ Mid @ AB.transpose(0, 2, 1)
        t1 = 4 * np.einsum("cjj->c", SS[None] @ Mw @ ARRA @ Mw) / (n - 1)
        MB = Mid @ BB
        trS2 = ((lam ** 2).sum() + 2 * np.einsum("cjj->c", Mid @ BOB) + np.einsum("cjk,ckj->c", MB, MB)) / (n - 1) ** 2
        t2 = 2 * trS2 * np.einsum("cjk,ckj->c", MS, MS)
        var[rs] = np.clip(t1 + t2, 0, None)
    return mean, var


def gamma_sf_moments(obs, mean, var) -> np.ndarray:
    """Upper tail of a gamma with the given mean and variance, elementwise (NaN where undefined)."""
    from scipy import stats as st

    obs, mean, var = (np.asarray(a, float) for a in (obs, mean, var))
    p = np.full(obs.shape, np.nan)
    ok = (mean > 0) & (var > 0)
    p[ok] = st.gamma.sf(obs[ok], a=mean[ok] ** 2 / var[ok], scale=var[ok] / mean[ok])
    return p
