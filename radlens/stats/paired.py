"""Paired comparisons of two measurements on the same samples."""
from __future__ import annotations

import numpy as np
from scipy import stats as st

from radlens.stats.bootstrap import bootstrap_ci


def paired_summary(a, b, n_boot: int = 1000, seed: int = 0, groups=None) -> dict[str, float]:
    """Mean of ``b - a`` with a percentile bootstrap CI and a two-sided Wilcoxon signed-rank p.

    Pairs with a NaN on either side are dropped (counted in ``n_dropped``).
    """
    a = np.asarray(a, float)
    b = np.asarray(b, float)
    ok = np.isfinite(a) & np.isfinite(b)
    d = b[ok] - a[ok]
    out = {"n": int(ok.sum()), "n_dropped": int((~ok).sum()), "mean_diff": np.nan,
           "ci_low": np.nan, "ci_high": np.nan, "p_wilcoxon": np.nan}
    if d.size == 0:
        return out
    g = None if groups is None else np.asarray(groups)[ok]
    est, lo, hi, _ = bootstrap_ci(np.mean, d, n_boot=n_boot, seed=seed, groups=g)
    out.update(mean_diff=est, ci_low=lo, ci_high=hi)
    if d.size >= 2 and np.any(d != 0):
        nz = d[d != 0]
        # exact null distribution only when it is exact (small n, no ties, no zeros); scipy's
        # fallback for ties is a slow permutation test, the normal approximation is standard there
        exact = nz.size <= 50 and nz.size == d.size and np.unique(np.abs(nz)).size == nz.size
        out["p_wilcoxon"] = float(st.wilcoxon(d, zero_method="wilcox",
                                              method="exact" if exact else "approx").pvalue)
    elif d.size >= 2:
        out["p_wilcoxon"] = 1.0
    return out
