"""Permutation nulls shared by the analyses: cluster (patient) permutations, tail probabilities of
non-negative statistics, and the z / p / BH-q summary of an observed statistic against its null
replicates."""
from __future__ import annotations

import numpy as np


def cluster_permutations(groups, n_perm: int, seed: int = 0) -> np.ndarray:
    """Row permutations that move whole clusters onto clusters of the same size.

    ``perm[b, i]`` is the row assigned to case ``i`` in replicate ``b``. With singleton groups this
    is a plain row permutation.

    Parameters
    ----------
    groups : array-like, shape (n,);  n_perm : int;  seed : int

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


def gamma_tail(obs, null) -> np.ndarray:
    """Upper-tail p-values of ``obs`` (p,) under a gamma distribution moment-matched to ``null``
    (B, p) column by column (Satterthwaite: a squared norm of a near-Gaussian matrix is a weighted
    sum of χ² variables, well approximated by a scaled χ², i.e. a gamma). NaN where the null has
    no spread."""
    from scipy import stats as st

    obs = np.asarray(obs, float)
    null = np.asarray(null, float)
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
    obs = np.asarray(obs, float)
    null = np.asarray(null, float)
    return (1 + (null >= obs[None, :]).sum(0)) / (null.shape[0] + 1)


def squared_norm_null_summary(T, T_null, *, degenerate: bool = False) -> dict:
    """z, p, q of non-negative statistics ``T`` (squared norms, one per item) against null
    replicates ``T_null``.

    ``z = (sqrt(T) − mean sqrt(T_b)) / sd sqrt(T_b)`` (the score in null SDs), ``p`` = upper tail of
    the moment-matched gamma (:func:`gamma_tail`), ``p_perm`` = :func:`empirical_tail`, ``q`` =
    Benjamini–Hochberg over items.

    Parameters
    ----------
    T : ndarray, shape (p,)
    T_null : ndarray, shape (B, p)
    degenerate : bool
        The statistic is identically zero up to rounding (nothing changed): report z = 0 and
        p = p_perm = q = 1 instead of testing rounding noise.

    Returns
    -------
    dict of ndarrays (p,): ``null_mean``, ``null_sd`` (of ``sqrt(T_b)``), ``z``, ``p``, ``p_perm``, ``q``.
    """
    from radlens.stats.multitest import bh_qvalues

    T = np.asarray(T, float)
    rn = np.sqrt(np.clip(np.asarray(T_null, float), 0, None))
    mean, sd = rn.mean(0), rn.std(0, ddof=1)
    if degenerate:
        return _no_change(mean, sd, T)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (np.sqrt(T) - mean) / sd
    p = gamma_tail(T, T_null)
    return {"null_mean": mean, "null_sd": sd, "z": z, "p": p, "p_perm": empirical_tail(T, T_null),
            "q": bh_qvalues(p)}


def _no_change(mean, sd, like) -> dict:
    """The summary of a statistic that cannot have changed: z = 0, p = p_perm = q = 1."""
    return {"null_mean": mean, "null_sd": sd, "z": np.zeros_like(like), "p": np.ones_like(like),
            "p_perm": np.ones_like(like), "q": np.ones_like(like)}


def signed_null_summary(obs, null, *, degenerate: bool = False) -> dict:
    """Two-sided z, p, q of signed statistics ``obs`` (p,) against null replicates ``null`` (B, p).

    ``z = (obs − mean_b) / sd_b``; ``p`` = two-sided normal tail of z; ``p_perm`` =
    ``(1 + #{|null_b − mean| ≥ |obs − mean|}) / (B + 1)``; ``q`` = Benjamini–Hochberg of ``p``.
    ``degenerate``: nothing changed (z = 0, p = p_perm = q = 1).

    Returns
    -------
    dict of ndarrays (p,): ``null_mean``, ``null_sd``, ``z``, ``p``, ``p_perm``, ``q``.
    """
    from scipy import stats as st

    from radlens.stats.multitest import bh_qvalues

    obs = np.asarray(obs, float)
    null = np.asarray(null, float)
    mean, sd = null.mean(0), null.std(0, ddof=1)
    if degenerate:
        return _no_change(mean, sd, obs)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (obs - mean) / sd
    p = 2 * st.norm.sf(np.abs(z))
    p_perm = (1 + (np.abs(null - mean) >= np.abs(obs - mean)[None, :]).sum(0)) / (null.shape[0] + 1)
    return {"null_mean": mean, "null_sd": sd, "z": z, "p": p, "p_perm": p_perm, "q": bh_qvalues(p)}
