"""The accuracy–interpretability trade-off across checkpoints.

Per checkpoint: task performance (an AUC given in a table, or computed with its DeLong CI from a
predictions table) against a localization score (mean over samples with a cluster-bootstrap CI),
the picture of Dombrowski et al. (AAAI 2024), where fine-tuning raised task fidelity while the
maps localised findings worse. The figure is :func:`radlens.viz.localization.plot_tradeoff`.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from radlens.errors import InputError
from radlens.localization.scores import higher_is_better

log = logging.getLogger(__name__)

TASK_COLUMNS = ("checkpoint", "task_metric", "task_low", "task_high", "task_n")


def task_auc(predictions, *, checkpoint_col: str = "checkpoint", y_col: str = "y_true",
             score_col: str = "y_score", alpha: float = 0.05):
    """Task AUC per checkpoint with a DeLong CI.

    Parameters
    ----------
    predictions : pandas.DataFrame or path (.parquet/.csv)
        One row per (case, checkpoint): ``checkpoint_col``, binary ``y_col`` (0/1) and a
        continuous ``score_col`` (higher = positive).

    Returns
    -------
    pandas.DataFrame ``checkpoint, task_metric, task_low, task_high, task_n`` (AUC, Wald CI from
    the DeLong variance clipped to [0, 1], number of cases).
    """
    import pandas as pd

    from radlens.io.artifacts import read_table
    from radlens.stats.delong import delong_auc_test

    df = predictions if isinstance(predictions, pd.DataFrame) else read_table(predictions)
    miss = [c for c in (checkpoint_col, y_col, score_col) if c not in df.columns]
    if miss:
        raise InputError(f"predictions table lacks column(s) {miss}; columns: {list(df.columns)}; name them "
                         "with checkpoint_col=, y_col=, score_col=")
    rows = []
    for ck, sub in df.groupby(checkpoint_col, sort=False):
        y = pd.to_numeric(sub[y_col], errors="coerce").to_numpy(float)
        s = pd.to_numeric(sub[score_col], errors="coerce").to_numpy(float)
        ok = np.isfinite(y) & np.isfinite(s)
        bad = set(np.unique(y[ok])) - {0.0, 1.0}
        if bad:
            raise InputError(f"predictions of checkpoint {ck!r}: {y_col!r} has values {sorted(bad)[:5]}; "
                             "expected 0/1")
        r = delong_auc_test(y[ok].astype(int), s[ok], alpha=alpha, on_single_class="nan")
        rows.append({"checkpoint": str(ck), "task_metric": r["auc"], "task_low": r["ci_low"],
                     "task_high": r["ci_high"], "task_n": int(ok.sum())})
    return pd.DataFrame(rows, columns=list(TASK_COLUMNS))


def _as_long(localization, checkpoint_col: str):
    import pandas as pd

    from radlens.io.artifacts import read_table

    if isinstance(localization, Mapping):
        parts = []
        for ck, t in localization.items():
            t = t if isinstance(t, pd.DataFrame) else read_table(t)
            parts.append(t.assign(**{checkpoint_col: str(ck)}))
        return pd.concat(parts, ignore_index=True)
    if isinstance(localization, (str, Path)):
        return read_table(localization)
    return localization


def tradeoff_table(localization, score: str, *, task=None, predictions=None,
                   checkpoint_col: str = "checkpoint", order: Sequence[str] | None = None,
                   class_col: str | None = None, cls=None, group_col: str | None = "patient_id",
                   n_boot: int = 1000, alpha: float = 0.05, seed: int = 0, **task_kw):
    """One row per checkpoint: localization score and task performance, each with a CI.

    Parameters
    ----------
    localization : DataFrame, path, or dict checkpoint -> DataFrame/path
        Per-sample localization tables (``radlens localize`` output). A single table needs a
        ``checkpoint_col`` column (``map_set`` works for one ``localize`` run with two map sets).
    score : str
        Score column, e.g. ``auc``, ``pointing_game``, ``iou_topk``.
    task : DataFrame or path, optional
        Given task performance: ``checkpoint, task_metric[, task_low, task_high, task_n]``.
    predictions : DataFrame or path, optional
        Predictions to compute the task AUC from (:func:`task_auc`; ``task_kw`` names columns).
    order : sequence of str, optional
        Checkpoint order (e.g. training steps); default: order of appearance.
    class_col, cls : restrict to samples whose ``class_col`` equals ``cls``.
    group_col : cluster column for the bootstrap.

    Returns
    -------
    pandas.DataFrame
        ``checkpoint, order, score, higher_is_better, loc_mean, loc_low, loc_high, loc_n,
        task_metric, task_low, task_high, task_n, task_ci_method`` (task columns NaN when no task
        data; ``task_ci_method``: ``delong``, ``given`` or empty).
    """
    import pandas as pd

    from radlens.io.artifacts import read_table
    from radlens.stats import bootstrap_ci

    if task is not None and predictions is not None:
        raise InputError("tradeoff_table: give task (performance table) or predictions, not both")
    df = _as_long(localization, checkpoint_col)
    for c in (checkpoint_col, score):
        if c not in df.columns:
            raise InputError(f"localization table lacks column {c!r}; columns: {list(df.columns)}")
    if cls is not None:
        if class_col is None or class_col not in df.columns:
            raise InputError(f"cls={cls!r} needs class_col naming a column of the table (got {class_col!r})")
        df = df[df[class_col].astype(str) == str(cls)]
    cks = [str(c) for c in pd.unique(df[checkpoint_col].astype(str))]
    if order is not None:
        order = [str(o) for o in order]
        missing = [c for c in order if c not in cks]
        if missing:
            raise InputError(f"order names checkpoint(s) {missing} absent from the localization table {cks}")
        cks = order + [c for c in cks if c not in order]
    rows = []
    for i, ck in enumerate(cks):
        sub = df[df[checkpoint_col].astype(str) == ck]
        v = sub[score].to_numpy(float)
        ok = np.isfinite(v)
        rec = {"checkpoint": ck, "order": i, "score": score, "higher_is_better": higher_is_better(score),
               "loc_mean": np.nan, "loc_low": np.nan, "loc_high": np.nan, "loc_n": int(ok.sum())}
        if ok.any():
            g = sub[group_col].to_numpy()[ok] if group_col and group_col in sub.columns else None
            est, lo, hi, _ = bootstrap_ci(np.mean, v[ok], n_boot=n_boot, alpha=alpha, seed=seed, groups=g)
            rec.update(loc_mean=est, loc_low=lo, loc_high=hi)
        rows.append(rec)
    out = pd.DataFrame(rows)
    if predictions is not None:
        t = task_auc(predictions, alpha=alpha, **task_kw)
        ci_method = "delong"
    elif task is not None:
        ci_method = "given"
        t = task if isinstance(task, pd.DataFrame) else read_table(task)
        if "checkpoint" not in t.columns or "task_metric" not in t.columns:
            raise InputError(f"task table needs columns 'checkpoint' and 'task_metric' (optional task_low, "
                             f"task_high, task_n); columns: {list(t.columns)}")
        t = t.copy()
        for c in TASK_COLUMNS[2:]:
            if c not in t.columns:
                t[c] = np.nan
    else:
        t = pd.DataFrame(columns=list(TASK_COLUMNS))
        ci_method = ""
    t = t[list(TASK_COLUMNS)].assign(checkpoint=lambda d: d["checkpoint"].astype(str))
    nomatch = sorted(set(t["checkpoint"]) - set(cks))
    if nomatch:
        log.warning("task performance for checkpoint(s) %s has no localization scores; ignored", nomatch)
    out = out.merge(t, on="checkpoint", how="left")
    if ci_method == "given" and out["task_low"].isna().all():
        ci_method = ""
    out["task_ci_method"] = ci_method
    if (task is not None or predictions is not None) and out["task_metric"].isna().any():
        log.warning("no task performance for checkpoint(s) %s",
                    out.loc[out["task_metric"].isna(), "checkpoint"].tolist())
    return out
