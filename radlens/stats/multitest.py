"""Multiple-testing correction."""
from __future__ import annotations

import numpy as np


def bh_qvalues(p) -> np.ndarray:
    """Benjamini–Hochberg q-values (step-up, monotone, capped at 1); NaN p stay NaN and are not
    counted in the number of tests.

    Parameters
    ----------
    p : array-like, shape (m,)

    Returns
    -------
    q : ndarray, shape (m,)
    """
    p = np.asarray(p, dtype=float)
    q = np.full_like(p, np.nan)
    ok = np.isfinite(p)
    m = int(ok.sum())
    if m == 0:
        return q
    pv = p[ok]
    order = np.argsort(pv, kind="mergesort")
    ranked = pv[order] * m / np.arange(1, m + 1)
    ranked = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(ranked, 1.0)
    q[ok] = out
    return q
