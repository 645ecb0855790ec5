"""Aggregation of per-sample drift: summaries with bootstrap CIs, paired tests, architecture
rankings per metric and method, and the ranking-reversal analysis (Kendall tau between methods).

Input is the tidy per-sample table of :func:`radlens.cam.run.cam_drift` (one row per
architecture x task x method x case, metric columns).
"""
from __future__ import annotations

import itertools
import logging
from typing import Sequence

import numpy as np

from radlens.cam.drift import drift_direction
from radlens.errors import InputError

log = logging.getLogger(__name__)

GROUP = ("architecture", "task", "method")
#: Metrics ranked by default (drift-oriented: displacement, overlap, correlation, concentration change).
DEFAULT_RANK_METRICS = ("centroid_disp", "iou_top10", "pearson", "spearman", "topmass10_delta")


def metric_columns(df) -> list[str]:
    """Numeric per-sample metric columns of a drift table (identifiers and flags excluded)."""
    skip = {"case_id", "patient_id", "target", "step", "degenerate", "label", "score_a", "score_b"}
    return [c for c in df.columns if c not in skip and c not in GROUP and c not in ("ref", "model_a", "model_b")
            and df[c].dtype.kind == "f"]


def _check_cols(df, cols, what):
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise InputError(f"{what}: column(s) {missing} not in the drift table; columns: {list(df.columns)[:20]}")


def summarize(df, metrics: Sequence[str] | None = None, by: Sequence[str] = GROUP, *, n_boot: int = 1000,
              alpha: float = 0.05, seed: int = 0, groups_col: str | None = "patient_id"):
    """Per-group distribution summary of each metric.

    Parameters
    ----------
    df : DataFrame
        Per-sample drift table.
    metrics : list of str, optional
        Metric columns (default: every float column).
    by : sequence of str
        Grouping columns (present ones are used).
    n_boot, alpha, seed :
        Percentile bootstrap of the mean and the median (cases resampled; whole patients when
        ``groups_col`` is present).

    Returns
    -------
    DataFrame, one row per group x metric: ``n, mean, mean_ci_low, mean_ci_high, median,
    median_ci_low, median_ci_high, q25, q75, iqr``.
    """
    import pandas as pd

    from radlens.stats.bootstrap_location import bootstrap_mean_median, resample_counts

    metrics = list(metrics) if metrics is not None else metric_columns(df)
    _check_cols(df, metrics, "summarize")
    by = [c for c in by if c in df.columns]
    rows = []
    for key, g in (df.groupby(by, sort=True, dropna=False) if by else [((), df)]):
        key = key if isinstance(key, tuple) else (key,)
        cache: dict = {}  # resamples shared by the metrics observed on the same rows
        for m in metrics:
            v = g[m].to_numpy(float)
            ok = np.isfinite(v)
            x = v[ok]
            row = dict(zip(by, key), metric=m, n=int(ok.sum()), n_nan=int((~ok).sum()))
            if x.size == 0:
                rows.append(row)
                continue
            grp = g[groups_col].to_numpy()[ok] if groups_col and groups_col in g.columns else None
            q25, med, q75 = np.quantile(x, [0.25, 0.5, 0.75])
            row.update(mean=float(x.mean()), median=float(med), q25=float(q25), q75=float(q75), iqr=float(q75 - q25))
            if x.size >= 2:
                ck = ok.tobytes()
                if ck not in cache:
                    cache[ck] = resample_counts(x.size, n_boot, seed, grp)
                row.update(bootstrap_mean_median(x, n_boot=n_boot, alpha=alpha, seed=seed, counts=cache[ck]))
            rows.append(row)
    cols = list(by) + ["metric", "n", "n_nan", "mean", "mean_ci_low", "mean_ci_high", "median", "median_ci_low",
                       "median_ci_high", "q25", "q75", "iqr"]
    return pd.DataFrame(rows).reindex(columns=cols)


def paired_tests(df, metrics: Sequence[str] | None = None, *, compare: str = "method",
                 by: Sequence[str] = ("architecture", "task"), n_boot: int = 1000, seed: int = 0):
    """Paired comparisons between the levels of ``compare`` on the same cases.

    For every group of ``by`` and every pair of levels ``(l1, l2)`` of ``compare`` (e.g. two
    methods, or two architectures on the same cohort), cases present under both are matched by
    ``case_id``; the mean of ``l2 - l1`` gets a bootstrap CI and a Wilcoxon signed-rank p,
    and q-values (Benjamini-Hochberg) are computed over all rows.

    Returns
    -------
    DataFrame: ``by..., metric, level_1, level_2, n, n_dropped, mean_diff, ci_low, ci_high,
    p_wilcoxon, q_bh``.
    """
    import pandas as pd

    from radlens.stats.multitest import bh_qvalues
    from radlens.stats.paired import paired_summary

    metrics = list(metrics) if metrics is not None else metric_columns(df)
    _check_cols(df, metrics + [compare, "case_id"], "paired_tests")
    by = [c for c in by if c in df.columns and c != compare]
    rows = []
    for key, g in (df.groupby(by, sort=True) if by else [((), df)]):
        key = key if isinstance(key, tuple) else (key,)
        levels = sorted(g[compare].unique().tolist(), key=str)
        for l1, l2 in itertools.combinations(levels, 2):
            a = g[g[compare] == l1].set_index("case_id")
            b = g[g[compare] == l2].set_index("case_id")
            common = a.index.intersection(b.index)
            if a.index.has_duplicates or b.index.has_duplicates:
                raise InputError(f"paired_tests: duplicate case_id within {dict(zip(by, key))} {compare}="
                                 f"{l1!r}/{l2!r}; add the distinguishing column to `by`")
            grp = a.loc[common, "patient_id"].to_numpy() if "patient_id" in a.columns else None
            for m in metrics:
                s = paired_summary(a.loc[common, m].to_numpy(float), b.loc[common, m].to_numpy(float),
                                   n_boot=n_boot, seed=seed, groups=grp)
                rows.append(dict(zip(by, key), metric=m, level_1=l1, level_2=l2, **s))
    out = pd.DataFrame(rows)
    if len(out):
        out["q_bh"] = bh_qvalues(out["p_wilcoxon"].to_numpy(float))
    return out


def concentration_tests(df, bases: Sequence[str] | None = None, *, by: Sequence[str] = GROUP,
                        n_boot: int = 1000, seed: int = 0):
    """Paired checkpoint comparison of each concentration measure (``<base>_a`` vs ``<base>_b``
    on the same cases): did fine-tuning concentrate or spread the evidence?

    Returns
    -------
    DataFrame: ``by..., measure, n, mean_a, mean_b, mean_diff (b - a), ci_low, ci_high, p_wilcoxon, q_bh``.
    """
    import pandas as pd

    from radlens.stats.multitest import bh_qvalues
    from radlens.stats.paired import paired_summary

    if bases is None:
        bases = [c[:-2] for c in df.columns if c.endswith("_a") and f"{c[:-2]}_b" in df.columns]
    by = [c for c in by if c in df.columns]
    rows = []
    for key, g in (df.groupby(by, sort=True) if by else [((), df)]):
        key = key if isinstance(key, tuple) else (key,)
        grp = g["patient_id"].to_numpy() if "patient_id" in g.columns else None
        for base in bases:
            a, b = g[f"{base}_a"].to_numpy(float), g[f"{base}_b"].to_numpy(float)
            s = paired_summary(a, b, n_boot=n_boot, seed=seed, groups=grp)
            rows.append(dict(zip(by, key), measure=base, mean_a=float(np.nanmean(a)) if np.isfinite(a).any() else np.nan,
                             mean_b=float(np.nanmean(b)) if np.isfinite(b).any() else np.nan, **s))
    out = pd.DataFrame(rows)
    if len(out):
        out["q_bh"] = bh_qvalues(out["p_wilcoxon"].to_numpy(float))
    return out


def sanity_exclusions(sanity):
    """Architecture x task x method combinations that failed the model-randomisation check.

    A method's maps of an architecture enter the architecture rankings (and their reversals) only
    when the maps of **both** checkpoints passed (:func:`radlens.cam.run._sanity`): a map that
    survives re-initialising every weight reflects the input, not what the model learned, so its
    drift says nothing about fine-tuning.

    Parameters
    ----------
    sanity : DataFrame
        ``architecture, task, method, model, spearman_median, threshold, passed`` (one row per
        checkpoint).

    Returns
    -------
    DataFrame: ``architecture, task, method, models_failed, spearman_median_max, threshold, reason``,
    one row per excluded combination (empty when every combination passed or nothing was checked).
    """
    import pandas as pd

    cols = ["architecture", "task", "method", "models_failed", "spearman_median_max", "threshold", "reason"]
    if sanity is None or not len(sanity):
        return pd.DataFrame(columns=cols)
    rows = []
    for (arch, task, method), g in sanity.groupby(["architecture", "task", "method"], sort=False):
        bad = g[~g["passed"].astype(bool)]
        if not len(bad):
            continue
        rho = float(np.nanmax(bad["spearman_median"].to_numpy(float)))
        thr = float(bad["threshold"].iloc[0])
        models = ",".join(str(m) for m in bad["model"])
        rows.append({"architecture": arch, "task": task, "method": method, "models_failed": models,
                     "spearman_median_max": rho, "threshold": thr,
                     "reason": f"model-randomisation sanity check failed for model {models}: maps of the "
                               f"re-initialised model keep median Spearman {rho:.2f} >= {thr:.2f} with the "
                               "trained model's maps"})
    return pd.DataFrame(rows, columns=cols)


def drop_combinations(table, excluded):
    """Rows of ``table`` whose ``architecture, task, method`` is not listed in ``excluded``."""
    if excluded is None or not len(excluded) or not len(table):
        return table
    key = ["architecture", "task", "method"]
    bad = set(map(tuple, excluded[key].astype(str).to_numpy()))
    mask = [tuple(r) not in bad for r in table[key].astype(str).to_numpy()]
    return table[np.asarray(mask, dtype=bool)]


def architecture_rankings(summary, metrics: Sequence[str] | None = None, *, stat: str = "median"):
    """Rank architectures by drift, per task x method x metric (rank 1 = most drift).

    Parameters
    ----------
    summary : DataFrame
        Output of :func:`summarize` (columns ``architecture, task, method, metric, <stat>``).
    metrics : list of str, optional
        Metrics to rank (default: :data:`DEFAULT_RANK_METRICS`, with the first ``iou_top*`` and
        ``topmass*_delta`` present when ``--top-k`` differs from 10).
    stat : {"median", "mean"}

    Returns
    -------
    DataFrame: ``task, method, metric, architecture, value, drift_score, rank`` where
    ``drift_score`` is larger for more drift: ``value`` for displacement, ``-value`` for IoU and
    correlations, ``|value|`` for concentration changes (``*_delta``: either direction is drift);
    ties share the average rank.
    """
    import pandas as pd
    from scipy.stats import rankdata

    if stat not in ("median", "mean"):
        raise InputError(f"architecture_rankings: stat={stat!r} not allowed; use 'median' or 'mean'")
    _check_cols(summary, ["architecture", "method", "metric", stat], "architecture_rankings")
    s = summary if "task" in summary.columns else summary.assign(task="task")
    if metrics is None:
        present = list(dict.fromkeys(s["metric"]))
        metrics = [m for m in DEFAULT_RANK_METRICS if m in present]
        for prefix, suffix in (("iou_top", ""), ("topmass", "_delta")):  # other --top-k values
            if not any(m.startswith(prefix) and m.endswith(suffix) for m in metrics):
                metrics += [m for m in present if m.startswith(prefix) and m.endswith(suffix)][:1]
    rows = []
    for (task, method, metric), g in s[s["metric"].isin(list(metrics))].groupby(["task", "method", "metric"]):
        g = g[np.isfinite(g[stat].to_numpy(float))]
        if g.empty:
            continue
        d = drift_direction(metric)
        vals = g[stat].to_numpy(float)
        score = np.abs(vals) if metric.endswith("_delta") else d * vals
        ranks = rankdata(-score, method="average")
        for arch, v, sc, r in zip(g["architecture"], g[stat], score, ranks):
            rows.append(dict(task=task, method=method, metric=metric, architecture=arch, value=float(v),
                             drift_score=float(sc), rank=float(r)))
    return pd.DataFrame(rows, columns=["task", "method", "metric", "architecture", "value", "drift_score", "rank"])


def _boot_drift_scores(drift, metric: str, n_boot: int, seed: int) -> dict:
    """Bootstrap replicates of each (task, architecture, method)'s median drift score for ``metric``:
    cases resampled (whole patients when ``patient_id`` is present), the same resamples for every
    method of one architecture x task (its cases are the same for all methods)."""
    from radlens.stats.bootstrap_location import resample_counts, weighted_median_rows

    d = drift_direction(metric)
    out = {}
    for (task, arch), g in drift.groupby(["task", "architecture"]):
        cases = np.array(sorted(g["case_id"].astype(str).unique()))
        pid = None
        if "patient_id" in g.columns:
            pmap = g.drop_duplicates("case_id").set_index("case_id")["patient_id"].astype(str)
            pid = pmap.reindex(cases).to_numpy()
        counts = resample_counts(cases.size, n_boot, seed, pid)
        for meth, gm in g.groupby("method"):
            v = gm.drop_duplicates("case_id").set_index("case_id")[metric].reindex(cases).to_numpy(float)
            ok = np.isfinite(v)
            order = np.argsort(v[ok], kind="stable")
            med = weighted_median_rows(v[ok][order], counts[:, ok][:, order])
            out[(task, arch, meth)] = np.abs(med) if metric.endswith("_delta") else d * med
    return out


def ranking_reversals(rankings, drift=None, *, n_boot: int = 1000, seed: int = 0):
    """Do the architecture rankings agree between methods? (the ranking-reversal analysis)

    For every task x metric and every pair of methods, over the architectures ranked under both:
    Kendall tau-b between their drift scores, the architecture pairs whose order flips, whether
    the most-drifting architecture(s) (ties joined by ``|``) change; plus Kendall's W over all
    methods of that task x metric. With the per-case ``drift`` table, a bootstrap over cases
    (``n_boot`` resamples, patients whole) gives ``boot_reversal_rate``: the fraction of resamples
    in which at least one architecture pair flips order between the two methods (near 1: a robust
    reversal; near 0: robust agreement).

    Returns
    -------
    DataFrame: ``task, metric, method_1, method_2, n_arch, kendall_tau, n_pairs, n_flipped,
    flipped_pairs, top_1, top_2, top_changed, reversal, kendall_w, boot_reversal_rate``.
    ``reversal`` is True when at least one architecture pair flips order.
    """
    import pandas as pd
    from scipy.stats import kendalltau

    from radlens.stats.agreement import kendall_w

    rows = []
    for (task, metric), g in rankings.groupby(["task", "metric"]):
        wide = g.pivot_table(index="architecture", columns="method", values="drift_score")
        methods = sorted(wide.columns.tolist(), key=str)
        full = wide.dropna()
        w = kendall_w(full[methods].to_numpy().T) if len(methods) >= 2 and len(full) >= 2 else np.nan
        boot = None
        if drift is not None and metric in drift.columns and wide.shape[0] >= 2:
            boot = _boot_drift_scores(drift[drift["task"] == task], metric, n_boot, seed)
        for m1, m2 in itertools.combinations(methods, 2):
            sub = wide[[m1, m2]].dropna()
            archs = sub.index.tolist()
            x, y = sub[m1].to_numpy(), sub[m2].to_numpy()
            tau = float(kendalltau(x, y).statistic) if len(archs) >= 2 else np.nan
            pairs = list(itertools.combinations(range(len(archs)), 2))
            flipped = [f"{archs[i]}|{archs[j]}" for i, j in pairs if np.sign(x[i] - x[j]) * np.sign(y[i] - y[j]) < 0]
            top1 = "|".join(a for a, v in zip(archs, x) if v == x.max()) if archs else None
            top2 = "|".join(a for a, v in zip(archs, y) if v == y.max()) if archs else None
            rate = np.nan
            if boot is not None and pairs:
                bx = np.stack([boot[(task, a, m1)] for a in archs], axis=1)  # (n_boot, n_arch)
                by = np.stack([boot[(task, a, m2)] for a in archs], axis=1)
                flip = np.zeros(bx.shape[0], dtype=bool)
                for i, j in pairs:
                    flip |= np.sign(bx[:, i] - bx[:, j]) * np.sign(by[:, i] - by[:, j]) < 0
                valid = np.isfinite(bx).all(1) & np.isfinite(by).all(1)
                rate = float(flip[valid].mean()) if valid.any() else np.nan
            rows.append(dict(task=task, metric=metric, method_1=m1, method_2=m2, n_arch=len(archs),
                             kendall_tau=tau, n_pairs=len(pairs), n_flipped=len(flipped),
                             flipped_pairs=";".join(flipped), top_1=top1, top_2=top2,
                             top_changed=bool(archs) and not (set(top1.split("|")) & set(top2.split("|"))),
                             reversal=bool(flipped), kendall_w=w,
                             boot_reversal_rate=rate))
    cols = ["task", "metric", "method_1", "method_2", "n_arch", "kendall_tau", "n_pairs", "n_flipped",
            "flipped_pairs", "top_1", "top_2", "top_changed", "reversal", "kendall_w", "boot_reversal_rate"]
    return pd.DataFrame(rows, columns=cols)
