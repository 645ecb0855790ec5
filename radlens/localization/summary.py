"""Per-class summaries of localization scores and paired comparisons of two map sets.

Both read the per-sample table written by :func:`radlens.localization.run.localize` (long format:
one row per sample and map set) and use :mod:`radlens.stats` for the statistics.
"""
from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

from radlens.errors import InputError
from radlens.localization.scores import higher_is_better

log = logging.getLogger(__name__)

ALL = "(all)"


def _classes(df, class_col):
    if class_col is None:
        return [(ALL, np.ones(len(df), bool))]
    vals = df[class_col]
    out = [(ALL, np.ones(len(df), bool))]
    for v in sorted(vals.dropna().unique(), key=str):
        out.append((str(v), (vals == v).to_numpy()))
    return out


def summarize_scores(per_sample, score_cols: Sequence[str], *, class_col: str | None = None,
                     group_col: str | None = "patient_id", n_boot: int = 1000, alpha: float = 0.05,
                     seed: int = 0):
    """Mean of every score per map set and class, with a percentile bootstrap CI.

    Parameters
    ----------
    per_sample : pandas.DataFrame
        One row per (sample, map set): ``map_set``, the score columns, optional class and group
        columns.
    score_cols : sequence of str
    class_col : str, optional
        Label column; rows are summarised per class and over all samples (class ``"(all)"``).
    group_col : str, optional
        Cluster column for the bootstrap (a patient is resampled whole).
    n_boot, alpha, seed : bootstrap settings.

    Returns
    -------
    pandas.DataFrame
        ``map_set, class, score, higher_is_better, n, n_undefined, mean, ci_low, ci_high, median``.
        Non-finite scores (NaN: undefined; ±inf CNR) are excluded from ``n`` and counted in
        ``n_undefined``.
    """
    import pandas as pd
    from radlens.stats import bootstrap_ci

    if class_col is not None and class_col not in per_sample.columns:
        raise InputError(f"class column {class_col!r} not in the table; columns: {list(per_sample.columns)}")
    rows = []
    for ms, sub in per_sample.groupby("map_set", sort=False):
        sub = sub.reset_index(drop=True)
        for cls, sel in _classes(sub, class_col):
            part = sub[sel]
            groups = part[group_col].to_numpy() if group_col and group_col in part.columns else None
            for col in score_cols:
                v = part[col].to_numpy(float)
                ok = np.isfinite(v)
                rec = {"map_set": ms, "class": cls, "score": col, "higher_is_better": higher_is_better(col),
                       "n": int(ok.sum()), "n_undefined": int((~ok).sum()), "mean": np.nan,
                       "ci_low": np.nan, "ci_high": np.nan, "median": np.nan}
                if ok.sum() >= 1:
                    g = None if groups is None else groups[ok]
                    est, lo, hi, _ = bootstrap_ci(np.mean, v[ok], n_boot=n_boot, alpha=alpha, seed=seed, groups=g)
                    rec.update(mean=est, ci_low=lo, ci_high=hi, median=float(np.median(v[ok])))
                rows.append(rec)
    return pd.DataFrame(rows)


def paired_scores(per_sample, score_cols: Sequence[str], names: tuple[str, str] = ("a", "b"), *,
                  class_col: str | None = None, key: str = "sample_id", group_col: str | None = "patient_id",
                  n_boot: int = 1000, seed: int = 0):
    """Paired differences ``b - a`` of every score on the samples both map sets scored.

    Uses :func:`radlens.stats.paired_summary` (mean difference, cluster-bootstrap CI, two-sided
    Wilcoxon signed-rank p) and Benjamini–Hochberg q-values over every row of the table
    (all scores x classes). ``improved`` is True when the mean difference points in the score's
    better direction.

    Returns
    -------
    pandas.DataFrame
        ``class, score, higher_is_better, n, n_dropped, mean_a, mean_b, mean_diff, ci_low,
        ci_high, p_wilcoxon, q_bh, improved, map_set_a, map_set_b``.
    """
    import pandas as pd
    from radlens.stats import bh_qvalues, paired_summary

    a_name, b_name = names
    a = per_sample[per_sample["map_set"] == a_name].set_index(key)
    b = per_sample[per_sample["map_set"] == b_name].set_index(key)
    common = [k for k in a.index if k in b.index]
    if not common:
        raise InputError(f"paired comparison: no sample scored under both map sets {a_name!r} and "
                         f"{b_name!r}; do the two map files cover the same case ids?")
    a, b = a.loc[common], b.loc[common]
    meta = a.reset_index()
    rows = []
    for cls, sel in _classes(meta, class_col):
        groups = meta.loc[sel, group_col].to_numpy() if group_col and group_col in meta.columns else None
        for col in score_cols:
            va = a[col].to_numpy(float)[sel]
            vb = b[col].to_numpy(float)[sel]
            # +-inf (CNR of piecewise-constant maps) cannot be differenced: treat as undefined
            va = np.where(np.isfinite(va), va, np.nan)
            vb = np.where(np.isfinite(vb), vb, np.nan)
            ps = paired_summary(va, vb, n_boot=n_boot, seed=seed, groups=groups)
            ok = np.isfinite(va) & np.isfinite(vb)
            hib = higher_is_better(col)
            rows.append({"class": cls, "score": col, "higher_is_better": hib, "n": ps["n"],
                         "n_dropped": ps["n_dropped"],
                         "mean_a": float(va[ok].mean()) if ok.any() else np.nan,
                         "mean_b": float(vb[ok].mean()) if ok.any() else np.nan,
                         "mean_diff": ps["mean_diff"], "ci_low": ps["ci_low"], "ci_high": ps["ci_high"],
                         "p_wilcoxon": ps["p_wilcoxon"],
                         "improved": bool(np.isfinite(ps["mean_diff"]) and
                                          (ps["mean_diff"] > 0 if hib else ps["mean_diff"] < 0))})
    out = pd.DataFrame(rows)
    out.insert(out.columns.get_loc("p_wilcoxon") + 1, "q_bh", bh_qvalues(out["p_wilcoxon"].to_numpy()))
    out["map_set_a"], out["map_set_b"] = a_name, b_name
    return out
