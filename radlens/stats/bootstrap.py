"""Bootstrap resampling, optionally grouped (e.g. by ``patient_id``: a patient is resampled whole)."""
from __future__ import annotations

import logging
from typing import Callable, Sequence

import numpy as np

log = logging.getLogger(__name__)


def bootstrap_indices(n: int, n_boot: int, seed: int = 0, groups: Sequence | None = None,
                      strata: Sequence | None = None) -> list[np.ndarray]:
    """Row indices of ``n_boot`` bootstrap resamples.

    Parameters
    ----------
    n : number of rows.
    groups : array-like, shape (n,), optional
        Cluster labels; whole clusters are drawn with replacement (cluster bootstrap).
    strata : array-like, shape (n,), optional
        Resample within each stratum separately (e.g. positives and negatives for an AUC, so no
        resample is single-class). Not combinable with ``groups``.
    """
    rng = np.random.default_rng(seed)
    if groups is not None and strata is not None:
        raise ValueError("bootstrap_indices: give groups or strata, not both")
    if groups is not None:
        g = np.asarray(groups)
        uniq, inv = np.unique(g, return_inverse=True)
        members = [np.flatnonzero(inv == k) for k in range(uniq.size)]
        out = []
        for _ in range(n_boot):
            pick = rng.integers(0, uniq.size, uniq.size)
            out.append(np.concatenate([members[k] for k in pick]))
        return out
    if strata is not None:
        s = np.asarray(strata)
        parts = [np.flatnonzero(s == v) for v in np.unique(s)]
        return [np.concatenate([p[rng.integers(0, p.size, p.size)] for p in parts]) for _ in range(n_boot)]
    return [rng.integers(0, n, n) for _ in range(n_boot)]


def bootstrap_ci(stat: Callable[..., float], *arrays, n_boot: int = 1000, alpha: float = 0.05,
                 seed: int = 0, groups=None, strata=None) -> tuple[float, float, float, np.ndarray]:
    """Percentile bootstrap CI of ``stat(*arrays)`` (rows resampled jointly across arrays).

    Returns
    -------
    estimate, ci_low, ci_high, replicates (shape (n_boot,), NaN where the statistic is undefined
    on a resample; those are dropped from the percentiles).
    """
    arrays = [np.asarray(a) for a in arrays]
    n = arrays[0].shape[0]
    if any(a.shape[0] != n for a in arrays):
        raise ValueError(f"bootstrap_ci: arrays have different lengths {[a.shape[0] for a in arrays]}")
    if not 0 < alpha < 1:
        raise ValueError(f"bootstrap_ci: alpha={alpha!r} must be in (0, 1)")
    est = float(stat(*arrays))
    reps = np.empty(n_boot)
    first_reason = None
    for b, idx in enumerate(bootstrap_indices(n, n_boot, seed, groups, strata)):
        try:
            reps[b] = stat(*(a[idx] for a in arrays))
        except ValueError as exc:  # statistic undefined on this resample (e.g. single class)
            reps[b] = np.nan
            first_reason = first_reason or str(exc)
    ok = reps[np.isfinite(reps)]
    if ok.size < n_boot:
        why = f" (e.g. {first_reason})" if first_reason else " (the statistic returned NaN/inf)"
        level = logging.WARNING if ok.size == 0 else logging.DEBUG
        log.log(level, "bootstrap_ci: statistic undefined on %d of %d resamples%s%s", n_boot - ok.size, n_boot,
                why, "; CI undefined" if ok.size == 0 else "; dropped from the percentiles")
    if ok.size == 0:
        return est, np.nan, np.nan, reps
    lo, hi = np.quantile(ok, [alpha / 2, 1 - alpha / 2])
    return est, float(lo), float(hi), reps
