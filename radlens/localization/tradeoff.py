"""The accuracy–interpretability trade-off across checkpoints.

Per checkpoint: task performance (an AUC given in a table, or computed with its DeLong CI from a
predictions table) against a localization score (mean over samples with a cluster-bootstrap CI),
the picture of Dombrowski et al. (AAAI 2024), where fine-tuning raised task fidelity while the
maps localised findings worse. The figure is :func:`radlens.viz.localization.plot_tradeoff`;
:func:`tradeoff` (``radlens tradeoff``) writes the table and the figure from ``localize`` outputs.
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
    pandas.DataFrame ``checkpoint, task_metric, task_low, task_high, task_n, task_note`` (AUC,
    Wald CI from the DeLong variance clipped to [0, 1], number of cases, and why the AUC is
    undefined where it is NaN, e.g. ``"y_true holds one class only (15 positives, 0
    negatives); task AUC undefined"``; empty otherwise).
    """
    import pandas as pd

    from radlens.io.artifacts import read_table
    from radlens.stats.delong import delong_auc_test, undefined_auc_reason

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
        note = ""
        if not np.isfinite(r["auc"]):
            reason = undefined_auc_reason(y[ok]) or "undefined"
            note = f"{y_col} holds {reason}; task AUC undefined"
            log.warning("checkpoint %r: %s (%d prediction rows, %d usable)", str(ck), note, len(sub), int(ok.sum()))
        rows.append({"checkpoint": str(ck), "task_metric": r["auc"], "task_low": r["ci_low"],
                     "task_high": r["ci_high"], "task_n": int(ok.sum()), "task_note": note})
    return pd.DataFrame(rows, columns=list(TASK_COLUMNS) + ["task_note"])


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
        task_metric, task_low, task_high, task_n, task_note, task_ci_method`` (task columns NaN when
        no task data; ``task_note``: why the task metric is missing or undefined, e.g. one class
        present; ``task_ci_method``: ``delong``, ``given`` or empty).
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
    if "task_note" not in t.columns:
        t = t.assign(task_note="")
    t = t[list(TASK_COLUMNS) + ["task_note"]].assign(checkpoint=lambda d: d["checkpoint"].astype(str))
    nomatch = sorted(set(t["checkpoint"]) - set(cks))
    if nomatch:
        log.warning("task performance for checkpoint(s) %s has no localization scores; ignored", nomatch)
    out = out.merge(t, on="checkpoint", how="left")
    if ci_method == "given" and out["task_low"].isna().all():
        ci_method = ""
    out["task_ci_method"] = ci_method
    if task is not None or predictions is not None:
        absent = ~out["checkpoint"].isin(set(t["checkpoint"]))
        if absent.any():
            src = "predictions" if predictions is not None else "task table"
            log.warning("no task performance for checkpoint(s) %s: the %s has no rows for them",
                        out.loc[absent, "checkpoint"].tolist(), src)
        out["task_note"] = out["task_note"].fillna("").astype(str)
        out.loc[absent, "task_note"] = "no task rows for this checkpoint"
        empty = ~absent & out["task_metric"].isna() & (out["task_note"] == "")
        out.loc[empty, "task_note"] = "task_metric is empty in the task table"
        if task is not None:
            _check_given_ci(out)
    else:
        out["task_note"] = ""
    return out


def _check_given_ci(out) -> None:
    """Given task CIs that exclude their estimate: warn, naming the checkpoints (the figure then
    draws zero-length bars on the wrong side instead of crashing)."""
    x, lo, hi = (out[c].to_numpy(float) for c in ("task_metric", "task_low", "task_high"))
    with np.errstate(invalid="ignore"):
        bad = (lo > x) | (hi < x)
    if bad.any():
        log.warning("task table: the CI of checkpoint(s) %s excludes its own task_metric (task_low <= task_metric "
                    "<= task_high expected); check the table", out.loc[bad, "checkpoint"].tolist())


def _figure_stem(out: Path) -> Path:
    """``tradeoff.csv`` -> ``tradeoff`` (PNG/SVG written as ``tradeoff.png``/``.svg`` next to it)."""
    return out.with_suffix("")


def _read_loc(src, what: str):
    """Read one localization table; ``what`` names it in messages."""
    import pandas as pd

    from radlens.io.artifacts import read_table

    if isinstance(src, pd.DataFrame):
        return src
    p = Path(src)
    if not p.exists():
        raise InputError(f"{what}: file {str(p)!r} does not exist; give the per-sample table written by "
                         "`radlens localize --out`")
    return read_table(p)


def _check_loc_columns(df, what: str, score: str, group_col: str | None, class_col: str | None):
    from radlens.localization.scores import score_columns

    if {"score", "mean", "ci_low"} <= set(df.columns) and "sample_id" not in df.columns:
        raise InputError(f"{what} looks like a `localize` summary table (columns score, mean, ci_low); give the "
                         "per-sample table (the file passed to `radlens localize --out`, not its .summary)")
    if score not in df.columns:
        have = [c for c in score_columns() if c in df.columns]
        raise InputError(f"{what} has no score column {score!r}; score columns there: {have}; pick one with "
                         "--score (score=), or re-run `radlens localize` with the --binarize that produces it")
    try:
        higher_is_better(score)
    except InputError:
        raise InputError(f"--score {score!r} (score=) is not a localization score; choose one of "
                         f"{[c for c in score_columns() if c in df.columns]}") from None
    if group_col is not None and group_col not in df.columns:
        raise InputError(f"{what} has no group column {group_col!r} for the cluster bootstrap; columns: "
                         f"{list(df.columns)}; name it with --group-col (group_col=), or --group-col none "
                         "to resample samples one by one")
    if class_col is not None and class_col not in df.columns:
        raise InputError(f"{what} has no class column {class_col!r}; columns: {list(df.columns)}; name it "
                         "with --class-col (class_col=) — `radlens localize --class-col` keeps that column")


def _long_localization(localization, score: str, group_col, class_col):
    """Localization input -> (long table with a ``checkpoint`` column, checkpoint order, input paths).

    ``localization`` is a dict ``checkpoint -> table`` (path or DataFrame, or ``(table, map_set)`` to
    take one map set of a two-set ``localize`` output), or a single table whose map sets (its
    ``map_set`` column; a ``checkpoint`` column wins when present) are the checkpoints.
    """
    import pandas as pd

    inputs: dict = {}
    if isinstance(localization, Mapping):
        if not localization:
            raise InputError("no localization table given; pass one per checkpoint (--loc NAME=PATH)")
        parts = []
        for ck, src in localization.items():
            ck = str(ck)
            map_set = None
            if isinstance(src, tuple):
                src, map_set = src
            what = f"localization table {str(src)!r} (checkpoint {ck!r})" if not isinstance(src, pd.DataFrame) \
                else f"localization table of checkpoint {ck!r}"
            t = _read_loc(src, what)
            _check_loc_columns(t, what, score, group_col, class_col)
            sets = [str(s) for s in pd.unique(t["map_set"].astype(str))] if "map_set" in t.columns else []
            if map_set is not None:
                if str(map_set) not in sets:
                    raise InputError(f"{what}: map set {map_set!r} not found; its map sets: {sets} "
                                     f"(--loc {ck}=PATH@MAP_SET)")
                t = t[t["map_set"].astype(str) == str(map_set)]
            elif len(sets) > 1:
                raise InputError(f"{what} holds {len(sets)} map sets {sets}; take one per checkpoint with "
                                 f"--loc {ck}=PATH@{sets[0]} (or (path, map_set) in the library), or pass this "
                                 "table alone (--loc PATH) to use its map sets as the checkpoints")
            if not isinstance(src, pd.DataFrame):
                inputs[f"loc_{ck}"] = src
            parts.append(t.drop(columns=["checkpoint"], errors="ignore").assign(checkpoint=ck))
        return pd.concat(parts, ignore_index=True), [str(c) for c in localization], inputs
    what = f"localization table {str(localization)!r}" if not isinstance(localization, pd.DataFrame) \
        else "localization table"
    t = _read_loc(localization, what)
    _check_loc_columns(t, what, score, group_col, class_col)
    if not isinstance(localization, pd.DataFrame):
        inputs["loc"] = localization
    if "checkpoint" not in t.columns:
        if "map_set" not in t.columns:
            raise InputError(f"{what} has neither a 'map_set' nor a 'checkpoint' column, so its checkpoints are "
                             "unknown; pass one table per checkpoint (--loc NAME=PATH, in training order)")
        t = t.assign(checkpoint=t["map_set"].astype(str))
    cks = [str(c) for c in pd.unique(t["checkpoint"].astype(str))]
    return t, cks, inputs


def tradeoff(localization, out, *, score: str = "auc", task=None, predictions=None,
             pred_checkpoint_col: str = "checkpoint", pred_y_col: str = "y_true", pred_score_col: str = "y_score",
             order: Sequence[str] | None = None, class_col: str | None = None, cls=None,
             group_col: str | None = "patient_id", n_boot: int = 1000, seed: int = 0,
             task_label: str = "task AUC", figure: bool = True) -> Path:
    """Accuracy–interpretability trade-off from ``radlens localize`` outputs (``radlens tradeoff``).

    Writes the :func:`tradeoff_table` to ``out`` and, with ``figure``, the figure of
    :func:`radlens.viz.localization.plot_tradeoff` as ``<out stem>.png/.svg`` next to it.

    Parameters
    ----------
    localization : dict checkpoint -> table, or one table
        Per-sample localization tables (paths or DataFrames). A dict gives one table per checkpoint,
        in order (a value ``(table, map_set)`` takes one map set of a two-set run); a single table
        uses its map sets (``map_set`` column, from ``localize --maps-b``) as the checkpoints.
    out : path (.csv or .parquet)
    score : localization score column (``auc``, ``pointing_game``, ``iou_topk``, ...).
    task : path or DataFrame ``checkpoint, task_metric[, task_low, task_high, task_n]``
    predictions : path or DataFrame with ``pred_checkpoint_col``, ``pred_y_col`` (0/1) and
        ``pred_score_col``; the task AUC and its DeLong CI are computed (:func:`task_auc`).
        Exactly one of ``task`` / ``predictions``.
    order : checkpoint order (default: the dict's order, or the table's order of appearance).
    class_col, cls : score only samples whose ``class_col`` equals ``cls``.
    group_col : cluster column of the bootstrap (None: samples resampled one by one).
    task_label : x-axis label of the figure.

    Returns
    -------
    Path of the table written.
    """
    import pandas as pd

    from radlens.io.artifacts import provenance, read_table, write_table

    out = Path(out)
    if out.suffix not in (".csv", ".parquet"):
        raise InputError(f"output {str(out)!r}: suffix {out.suffix!r} not supported; use --out NAME.csv or "
                         "NAME.parquet")
    if (task is None) == (predictions is None):
        raise InputError("give the task performance either as a table (--task perf.csv, task=) or as "
                         "predictions (--predictions preds.parquet, predictions=), exactly one of them")
    if int(n_boot) < 1:
        raise InputError(f"--n-boot {n_boot} (n_boot=): give at least 1 bootstrap resample (e.g. 1000)")
    if (cls is None) != (class_col is None):
        raise InputError("--class-col and --class (class_col=, cls=) go together: name the label column and "
                         f"the class to keep (got class_col={class_col!r}, cls={cls!r})")

    loc, cks, inputs = _long_localization(localization, score, group_col, class_col)
    if cls is not None:
        vals = sorted(pd.unique(loc[class_col].astype(str)))
        if str(cls) not in vals:
            raise InputError(f"--class {cls!r} (cls=) does not occur in column {class_col!r}; its values: "
                             f"{vals[:20]}")
    if order is not None:
        order = [str(o) for o in order]
        bad = [o for o in order if o not in cks]
        if bad:
            raise InputError(f"--order names checkpoint(s) {bad} absent from the localization tables; "
                             f"checkpoints: {cks}")
        cks = order + [c for c in cks if c not in order]
    if len(cks) < 2:
        log.warning("only one checkpoint (%s): the trade-off figure shows a single point", cks)

    task_kw: dict = {}
    if predictions is not None:
        what = "predictions" if isinstance(predictions, pd.DataFrame) else f"predictions {str(predictions)!r}"
        if not isinstance(predictions, pd.DataFrame):
            inputs["predictions"] = predictions
            predictions = read_table(predictions)
        flags = {pred_checkpoint_col: "--pred-checkpoint-col", pred_y_col: "--pred-y-col",
                 pred_score_col: "--pred-score-col"}
        miss = [c for c in flags if c not in predictions.columns]
        if miss:
            raise InputError(f"{what} lacks column(s) {miss}; columns: {list(predictions.columns)}; name them with "
                             + ", ".join(f"{flags[c]} ({c!r} now)" for c in miss))
        predictions = predictions.rename(columns={pred_checkpoint_col: "checkpoint"}) \
            if pred_checkpoint_col != "checkpoint" else predictions
        if pred_checkpoint_col != "checkpoint" and list(predictions.columns).count("checkpoint") > 1:
            raise InputError(f"{what} has both 'checkpoint' and {pred_checkpoint_col!r}; drop one")
        task_kw = {"y_col": pred_y_col, "score_col": pred_score_col}
        have = set(predictions["checkpoint"].astype(str))
    else:
        what = "task table" if isinstance(task, pd.DataFrame) else f"task table {str(task)!r}"
        if not isinstance(task, pd.DataFrame):
            inputs["task"] = task
            task = read_table(task)
        miss = [c for c in ("checkpoint", "task_metric") if c not in task.columns]
        if miss:
            raise InputError(f"{what} lacks column(s) {miss}; columns: {list(task.columns)}; it needs "
                             "checkpoint, task_metric (optional task_low, task_high, task_n), one row per checkpoint")
        dup = task["checkpoint"].astype(str)
        if dup.duplicated().any():
            raise InputError(f"{what}: checkpoint(s) {sorted(set(dup[dup.duplicated()]))} appear more than once; "
                             "give one row per checkpoint")
        have = set(dup)
    if not have & set(cks):
        raise InputError(f"{what} has checkpoints {sorted(have)[:10]} but the localization checkpoints are {cks}; "
                         "the names must match (rename with --loc NAME=PATH, or fix the table's checkpoint column)")

    table = tradeoff_table(loc, score, task=task, predictions=predictions, checkpoint_col="checkpoint",
                           order=cks, class_col=class_col, cls=cls, group_col=group_col, n_boot=n_boot,
                           seed=seed, **task_kw)
    cfg = dict(score=score, order=cks, class_col=class_col, cls=cls, group_col=group_col, n_boot=n_boot,
               seed=seed, task_source="predictions" if predictions is not None else "task")
    write_table(table, out, provenance("tradeoff", cfg, inputs))
    log.info("trade-off of %s over %d checkpoint(s) %s -> %s", score, len(cks), cks, out)
    if figure:
        from radlens.viz.localization import plot_tradeoff

        figs = plot_tradeoff(table, _figure_stem(out), task_label=task_label)
        log.info("figure: %s", ", ".join(str(p) for p in figs))
    return out
