"""Agreement between rankings and between representations."""
from __future__ import annotations

import numpy as np
from scipy import stats as st


def rank_agreement(a, b) -> dict[str, float]:
    """Spearman ρ and Kendall τ-b between two score vectors over the same items."""
    a = np.asarray(a, float)
    b = np.asarray(b, float)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3:
        return {"spearman": np.nan, "kendall_tau": np.nan, "n": int(ok.sum())}
    return {"spearman": float(st.spearmanr(a[ok], b[ok]).statistic),
            "kendall_tau": float(st.kendalltau(a[ok], b[ok]).statistic), "n": int(ok.sum())}


def kendall_w(scores) -> float:
    """Kendall's coefficient of concordance W for ``scores`` of shape (raters, items) (higher
    score = higher rank; ties get average ranks, with the tie correction)."""
    x = np.asarray(scores, float)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 2:
        raise ValueError(f"kendall_w: need shape (raters>=2, items>=2), got {x.shape}")
    m, n = x.shape
    r = np.vstack([st.rankdata(row) for row in x])
    s = ((r.sum(0) - m * (n + 1) / 2) ** 2).sum()
    ties = 0.0
    for row in x:
        _, c = np.unique(row, return_counts=True)
        ties += (c ** 3 - c).sum()
    denom = m ** 2 * (n ** 3 - n) - m * ties
    return float(12 * s / denom) if denom > 0 else np.nan


def linear_cka(x, y) -> float:
    """Linear centred kernel alignment between representations ``x`` (n, p) and ``y`` (n, q)
    of the same n samples (Kornblith et al. 2019): ‖Yc'Xc‖_F² / (‖Xc'Xc‖_F ‖Yc'Yc‖_F)."""
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"linear_cka: x has {x.shape[0]} rows, y has {y.shape[0]}")
    x = x - x.mean(0)
    y = y - y.mean(0)
    num = np.linalg.norm(y.T @ x) ** 2
    den = np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)
    return float(num / den) if den > 0 else np.nan
