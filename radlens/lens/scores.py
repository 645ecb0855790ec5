"""Per-feature scores through the frozen first layer.

Notation (per seed): ``W1`` (m, p) and ``b1`` (m,) the frozen first layer, ``σ'_i = σ'(W1 x_i + b1)``
(m,) for case i, a head ``coef`` (m, d) (the issue's ``W2`` is ``coef.T``), so the Jacobian of the
embedding with respect to the standardised radiomics is ``J_i = coef.T diag(σ'_i) W1`` (d, p).

All scores aggregate over cases by the root mean square, which has an exact closed form through
(m, m) matrices: with ``C = mean_i σ'_i σ'_i^T`` and any head matrix ``A`` (m, d),

    mean_i ‖A^T diag(σ'_i) W1[:, r]‖²  =  W1[:, r]^T ((A A^T) ∘ C) W1[:, r]

(∘ = elementwise product). ``A = coef`` gives the squared sensitivity, ``A = coef_post − coef_pre``
the squared shift. Nothing here depends on the embedding basis: only ``A A^T`` enters.
"""
from __future__ import annotations

import numpy as np


def dsigma_moment(dsig, weights=None, outer=None) -> np.ndarray:
    """``C = Σ_i w_i σ'_i σ'_i^T / Σ_i w_i``.

    Parameters
    ----------
    dsig : ndarray, shape (n, m)   activation derivatives per case.
    weights : ndarray, shape (n,) or (B, n), optional
    outer : ndarray, shape (n, m(m+1)/2), optional   ``upper_outer(dsig)`` when already computed
        (batched weights only).

    Returns
    -------
    ndarray, shape (m, m) or (B, m, m)
    """
    from radlens.stats.ridge import unpack_upper, upper_outer

    dsig = np.asarray(dsig, float)
    if weights is None:
        return dsig.T @ dsig / dsig.shape[0]
    w = np.asarray(weights, float)
    if w.ndim == 1:
        return (dsig * w[:, None]).T @ dsig / w.sum()
    outer = upper_outer(dsig) if outer is None else outer
    return unpack_upper((w @ outer) / w.sum(1)[:, None], dsig.shape[1])


def quad_scores(W1, M) -> np.ndarray:
    """``out[..., r] = W1[:, r]^T M[...] W1[:, r]``.

    Parameters
    ----------
    W1 : ndarray, shape (m, p);  M : ndarray, shape (..., m, m)

    Returns
    -------
    ndarray, shape (..., p)
    """
    W1 = np.asarray(W1, float)
    M = np.asarray(M, float)
    m, p = W1.shape
    # one GEMM (..., m²) @ (m², p) with the column outer products w_r w_r^T (a batched einsum runs
    # one small product per matrix)
    return (M.reshape(-1, m * m) @ (W1[:, None, :] * W1[None, :, :]).reshape(m * m, p)).reshape(M.shape[:-2] + (p,))


def sensitivity_sq(W1, coef, C) -> np.ndarray:
    """Squared RMS sensitivity ``mean_i ‖J_i[:, r]‖²`` per feature, shape (p,)."""
    return quad_scores(W1, (coef @ coef.T) * C)


def shift_sq(W1, delta, C) -> np.ndarray:
    """Squared RMS shift ``mean_i ‖delta^T diag(σ'_i) W1[:, r]‖²`` per feature, shape (p,)."""
    return quad_scores(W1, (delta @ delta.T) * C)


def shares(sq) -> np.ndarray:
    """Share of each feature in the total squared sensitivity, along the last axis (sums to 1)."""
    sq = np.asarray(sq, float)
    tot = sq.sum(-1, keepdims=True)
    return np.divide(sq, tot, out=np.zeros_like(sq), where=tot > 0)


def mean_norm_shift(W1, delta, dsig, chunk: int = 256, outer=None) -> np.ndarray:
    """The literal (mean of norms) shift ``mean_i ‖delta^T diag(σ'_i) W1[:, r]‖``, shape (p,).

    Exact, O(n p m²); reported next to the RMS shift for reference (it is never larger).
    ``delta`` may also be a list of head changes (then a list of results); ``outer`` is
    ``upper_outer(dsig)`` when already computed. The squared norm per case and feature is
    ``Σ_jk G_jk σ'_ij σ'_ik W1_jr W1_kr`` (``G = delta delta^T``): one GEMM of the packed outer
    products of ``σ'_i`` (n, m(m+1)/2) with the packed ``G_jk W1_jr W1_kr`` of every change.
    """
    from radlens.stats.ridge import upper_outer

    many = isinstance(delta, (list, tuple))
    deltas = list(delta) if many else [delta]
    W1 = np.asarray(W1, float)
    m, p = W1.shape
    iu = np.triu_indices(m)
    twice = np.where(iu[0] == iu[1], 1.0, 2.0)[:, None]              # off-diagonal pairs count twice
    WW = W1[iu[0]] * W1[iu[1]] * twice                                # (m(m+1)/2, p)
    K = np.hstack([(d @ d.T)[iu][:, None] * WW for d in deltas])      # (m(m+1)/2, p·J)
    outer = upper_outer(dsig) if outer is None else outer
    n = outer.shape[0]
    out = np.zeros(K.shape[1])
    for s in range(0, n, chunk):
        out += np.sqrt(np.clip(outer[s:s + chunk] @ K, 0, None)).sum(0)
    out = (out / n).reshape(len(deltas), p)
    return list(out) if many else out[0]
