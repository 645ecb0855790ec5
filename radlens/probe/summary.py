"""From out-of-fold scores to the result table: AUCs with CIs, DeLong tests, gaps, pre vs post, BH.

The table is long (one row per estimate) with these columns:

``analysis``  panel | panel_pooling | jitter | lesion_image | lesion_image_pooling | lesion_box |
              lesion_box_jitter, and ``<analysis>_pre_post`` for the checkpoint differences
``checkpoint`` pre | post | post-pre
``metric``    auc | auc_diff (pooling − pooling_ref, or post − pre) | auc_gap (large − small)
``pooling``, ``pooling_ref``; ``perturbation``, ``footprint_frac``, ``strength``; ``finding``,
``stratum`` (all | small | large | large-small), ``size_threshold``; ``jitter``, ``mean_iou``
``estimate``, ``ci_low``, ``ci_high``, ``ci_method`` (``delong_clustered_wald`` in the paired panel,
``bootstrap_percentile`` for independent samples; see :mod:`radlens.probe.scoring`), ``se``
(DeLong), ``p``, ``q`` (BH within each (analysis, checkpoint, metric) family), ``test``, ``n_pos``,
``n_neg``, ``n_groups``, ``note`` (why an estimate is undefined, e.g. one class only).
"""
from __future__ import annotations

import itertools
import logging
from typing import Sequence

import numpy as np

from radlens.probe.analyses import ScoreSet
from radlens.probe.scoring import auc_summary, paired_auc_difference
from radlens.probe.sizes import stratified_gap
from radlens.stats import bh_qvalues

log = logging.getLogger(__name__)

COLUMNS = ["analysis", "checkpoint", "metric", "pooling", "pooling_ref", "perturbation",
           "footprint_frac", "strength", "finding", "stratum", "size_threshold", "jitter",
           "mean_iou", "estimate", "ci_low", "ci_high", "ci_method", "se", "p", "q", "test", "n_pos", "n_neg",
           "n_groups", "note"]
_POOL_ORDER = ("cls", "global", "mean", "roi")


def _pool_pairs(pools: Sequence[str]) -> list[tuple[str, str]]:
    """(pooling, reference) pairs: every later pooling in cls/global < mean < roi vs an earlier one."""
    ps = [p for p in _POOL_ORDER if p in pools]
    return [(b, a) for a, b in itertools.combinations(ps, 2)]


def _base(ss: ScoreSet, ckpt: str) -> dict:
    return {"analysis": ss.analysis, "checkpoint": ckpt, **{k: v for k, v in ss.key.items()}}


def _subset(ss: ScoreSet, which: str) -> np.ndarray:
    if which == "all" or ss.stratum is None:
        return np.ones(ss.y.shape, bool)
    if ss.match_negatives:
        return ss.stratum == which
    return (ss.y == 0) | (ss.stratum == which)


def summarize(sets: Sequence[ScoreSet], *, n_boot: int = 1000, alpha: float = 0.05,
              seed: int = 0, pre: str = "pre", post: str = "post"):
    """Result table (pandas DataFrame, columns :data:`COLUMNS`) of a list of score sets."""
    import pandas as pd

    rows: list[dict] = []
    kw = {"n_boot": n_boot, "alpha": alpha, "seed": seed}
    for ss in sets:
        grp = ss.groups if ss.paired else None
        strata_list = ["all"]
        if ss.stratum is not None and ss.analysis in ("lesion_image", "lesion_box"):
            strata_list += ["small", "large"]
        for ckpt, pools in ss.scores.items():
            for p, s in pools.items():
                if ss.stratum is not None and ss.analysis in ("lesion_image", "lesion_box"):
                    g = stratified_gap(ss.y, s, ss.stratum, match_negatives=ss.match_negatives, **kw)
                    allr = auc_summary(ss.y, s, groups=grp, **kw)
                    for which, r in (("all", allr), ("small", g["small"]), ("large", g["large"])):
                        rows.append({**_base(ss, ckpt), "metric": "auc", "pooling": p, "stratum": which,
                                     "test": "delong_auc_vs_0.5", **_clean(r)})
                    rows.append({**_base(ss, ckpt), "analysis": ss.analysis + "_gap", "metric": "auc_gap",
                                 "pooling": p, "stratum": "large-small", "test": "delong_gap",
                                 **_clean(g["gap"])})
                else:
                    r = auc_summary(ss.y, s, groups=grp, **kw)
                    rows.append({**_base(ss, ckpt), "metric": "auc", "pooling": p, "stratum": "all",
                                 "test": "delong_auc_vs_0.5", **_clean(r)})
            if ss.analysis in ("panel", "lesion_image"):
                for p, ref in _pool_pairs(list(pools)):
                    r = paired_auc_difference(ss.y, pools[ref], pools[p], groups=grp, **kw)
                    rows.append({**_base(ss, ckpt), "analysis": ss.analysis + "_pooling",
                                 "metric": "auc_diff", "pooling": p, "pooling_ref": ref,
                                 "stratum": "all", "test": "delong_paired", **_clean(r)})
        if pre in ss.scores and post in ss.scores:
            for p in ss.scores[pre]:
                if p not in ss.scores[post]:
                    continue
                for which in strata_list:
                    keep = _subset(ss, which)
                    if np.unique(ss.y[keep]).size < 2:
                        continue
                    r = paired_auc_difference(ss.y[keep], ss.scores[pre][p][keep],
                                              ss.scores[post][p][keep],
                                              groups=None if grp is None else grp[keep], **kw)
                    rows.append({**_base(ss, f"{post}-{pre}"), "analysis": ss.analysis + "_pre_post",
                                 "metric": "auc_diff", "pooling": p, "pooling_ref": p,
                                 "stratum": which, "test": "delong_paired", **_clean(r)})
    df = pd.DataFrame(rows)
    for c in COLUMNS:
        if c not in df.columns:
            df[c] = np.nan
    df = df[COLUMNS]
    df["ci_method"] = df["ci_method"].fillna("bootstrap_percentile")  # size gaps: stratified bootstrap
    df["note"] = df["note"].fillna("")
    for _, r in df[df["note"] != ""].iterrows():
        log.warning("%s / %s / %s (%s): %s", r["analysis"], r["checkpoint"], r["pooling"], r["metric"], r["note"])
    if len(df):
        df["q"] = np.nan
        for _, idx in df.groupby(["analysis", "checkpoint", "metric"], dropna=False).groups.items():
            df.loc[idx, "q"] = bh_qvalues(df.loc[idx, "p"].to_numpy(float))
    return df


def _clean(r: dict) -> dict:
    keep = ("estimate", "ci_low", "ci_high", "ci_method", "se", "p", "n_pos", "n_neg", "n_groups", "note")
    return {k: r[k] for k in keep if k in r}


def scores_table(sets: Sequence[ScoreSet]):
    """Per-sample out-of-fold scores: one row per (score set, checkpoint, pooling, sample)."""
    import pandas as pd

    frames = []
    for ss in sets:
        for ckpt, pools in ss.scores.items():
            for p, s in pools.items():
                d = {"analysis": ss.analysis, "checkpoint": ckpt, "pooling": p,
                     "sample_id": ss.sample_id, "group": ss.groups, "label": ss.y, "score": s,
                     "stratum": ss.stratum if ss.stratum is not None else ""}
                for k, v in ss.key.items():
                    d[k] = v
                frames.append(pd.DataFrame(d))
    if not frames:
        return pd.DataFrame(columns=["analysis", "checkpoint", "pooling", "sample_id", "group",
                                     "label", "score", "stratum"])
    return pd.concat(frames, ignore_index=True)
