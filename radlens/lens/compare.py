"""Cross-task comparison of shift tables (``radlens compare``; with ``lens=`` also the common /
task-specific decomposition and task alignment of :mod:`radlens.lens.crosstask`) and planted-truth
checks (class enrichment of the top-k, precision@k)."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from radlens.errors import InputError

log = logging.getLogger(__name__)

REQUIRED = ("feature", "feature_class", "emphasis", "z", "q", "rank")


def read_shift_tables(paths) -> "tuple[object, dict]":
    """Read ``refit-post`` tables into one long DataFrame (column ``task``) plus summaries by task.

    Raises InputError for missing columns, duplicate task names or tables over different features.
    """
    import pandas as pd

    from radlens.io.artifacts import read_table, read_table_meta

    frames, summaries = [], {}
    feats = None
    for p in paths:
        df = read_table(p)
        missing = [c for c in REQUIRED if c not in df.columns]
        if missing:
            raise InputError(f"shift table {str(p)!r} lacks columns {missing}; produce it with this version's "
                             "radlens refit-post (tables from before the emphasis headline lack 'emphasis')")
        meta = read_table_meta(p)
        summ = meta.get("summary", {})
        task = df["task"].iloc[0] if "task" in df.columns else None
        task = str(task or summ.get("task") or Path(p).stem.replace("shifts_", ""))
        if task in summaries:
            raise InputError(f"task {task!r} appears twice ({str(p)!r}); give each shift table a distinct --task")
        df = df.assign(task=task)
        f = set(df["feature"])
        if feats is not None and f != feats:
            raise InputError(f"shift table {str(p)!r} covers other features than the first table "
                             f"({len(f ^ feats)} differ); compare tables from the same lens")
        feats = f
        frames.append(df)
        summaries[task] = summ
    if not frames:
        raise InputError("compare: no shift tables given")
    return pd.concat(frames, ignore_index=True), summaries


def rank_correlations(long, value: str = "emphasis"):
    """Task × task Spearman correlation of ``value`` over features (DataFrame), and Kendall's W."""
    import pandas as pd

    from radlens.stats import kendall_w, rank_agreement

    wide = long.pivot(index="feature", columns="task", values=value)
    tasks = list(wide.columns)
    M = np.eye(len(tasks))
    for a in range(len(tasks)):
        for b in range(a + 1, len(tasks)):
            M[a, b] = M[b, a] = rank_agreement(wide[tasks[a]], wide[tasks[b]])["spearman"]
    w = kendall_w(wide.to_numpy().T) if len(tasks) >= 2 else np.nan
    return pd.DataFrame(M, index=tasks, columns=tasks), float(w)


def class_totals(long):
    """Per task and feature class: number of features, sum of squared emphasis changes, share of the
    task's total, mean per feature, number with q < 0.05 (global null) and with q_specific < 0.05
    (feature-specific null)."""
    d = long.assign(emphasis_sq=long["emphasis"] ** 2, sig=long["q"] < 0.05,
                    sig_specific=(long["q_specific"] < 0.05) if "q_specific" in long.columns else np.nan)
    g = d.groupby(["task", "feature_class"], sort=True).agg(n_features=("feature", "size"),
                                                              emphasis_sq_total=("emphasis_sq", "sum"),
                                                              n_significant=("sig", "sum"),
                                                              n_significant_specific=("sig_specific", "sum")).reset_index()
    tot = g.groupby("task")["emphasis_sq_total"].transform("sum")
    g["emphasis_share"] = g["emphasis_sq_total"] / tot
    g["emphasis_sq_mean"] = g["emphasis_sq_total"] / g["n_features"]
    return g


def class_enrichment(table, feature_class, k: int = 10, by: str = "emphasis", n_perm: int = 10000,
                     seed: int = 0, class_column: str = "feature_class", signed: bool = False) -> dict:
    """Is the top-k of a shift table enriched for a feature class (planted-truth check)?

    Parameters
    ----------
    table : DataFrame   one shift table (one task): columns ``feature``, ``class_column``, ``by``.
    feature_class : str or sequence of str   the class(es) counted as hits (e.g. ``"glcm"`` or
        ``["glcm", "glrlm", "glszm"]`` for texture).
    k : int   size of the top set (largest ``by``).
    by : str  column to rank by (larger absolute value = stronger; the emphasis score is signed).
    n_perm : int   random k-subsets for the permutation p-value.
    signed : bool  rank by ``by`` itself, largest first (e.g. a task's signed specific change: the
        features it emphasised more than the other tasks did), instead of by its absolute value.

    Returns
    -------
    dict: ``k``, ``hits``, ``fraction`` (hits/k), ``expected`` (class fraction among all features),
    ``p_perm`` ((1 + #{random ≥ hits}) / (n_perm + 1)), ``p_hypergeom`` (exact one-sided),
    ``top_features`` (list).
    """
    from scipy import stats as st

    classes = {feature_class} if isinstance(feature_class, str) else set(feature_class)
    for c in (class_column, by, "feature"):
        if c not in table.columns:
            raise InputError(f"class_enrichment: table has no column {c!r}")
    n = len(table)
    if not 1 <= k <= n:
        raise InputError(f"class_enrichment: k={k} must be in [1, number of features={n}]")
    unknown = classes - set(table[class_column])
    if unknown == classes:
        raise InputError(f"class_enrichment: feature_class {sorted(classes)} not in the table; "
                         f"classes present: {sorted(set(table[class_column]))}")
    hit = table[class_column].isin(classes).to_numpy()
    v = table[by].to_numpy(float)
    order = np.argsort(-(v if signed else np.abs(v)), kind="stable")
    top = order[:k]
    hits = int(hit[top].sum())
    rng = np.random.default_rng(seed)
    rand = np.argsort(rng.random((n_perm, n)), axis=1)[:, :k]
    null = hit[rand].sum(1)
    K = int(hit.sum())
    return {"k": int(k), "hits": hits, "fraction": hits / k, "expected": K / n,
            "p_perm": float((1 + (null >= hits).sum()) / (n_perm + 1)),
            "p_hypergeom": float(st.hypergeom.sf(hits - 1, n, K, k)),
            "top_features": table["feature"].to_numpy()[top].tolist()}


def precision_at_k(table, truth, k: int | None = None, by: str = "emphasis") -> float:
    """Fraction of the top-k features (largest absolute ``by``) that are in ``truth`` (default
    k = len(truth))."""
    truth = set(truth)
    k = len(truth) if k is None else int(k)
    key = np.abs(table[by].to_numpy(float))
    top = table["feature"].to_numpy()[np.argsort(-key, kind="stable")][:k]
    return float(np.mean([f in truth for f in top]))


def compare(tables, out, *, value: str = "z", top_k: int = 15, lens=None, embeddings: dict | None = None,
            labels=None, label_columns: dict | None = None, pooling: str | None = None, n_null: int = 200,
            n_boot: int = 200, n_perm: int = 999, seed: int = 0, aligned="scale", layer: str | None = None,
            figures: bool = True) -> dict:
    """Compare shift tables across tasks and write figures (PNG+SVG) and CSV tables to ``out``;
    with ``lens`` and ``embeddings`` also the cross-task decomposition (``common.csv``,
    ``contrast.csv``) and, with ``labels``, task alignment (``alignment.csv``)
    (:func:`radlens.lens.crosstask.compare_tasks`).

    Parameters
    ----------
    tables : list of paths   ``refit-post`` tables (may be empty when ``lens`` is given).
    out : path   output folder.
    value : str   heatmap value of the shift-table figures.
    top_k : int   features per task in the top-k bars / table.
    lens : path, optional   lens folder;  embeddings : dict task -> path of post embeddings.
    labels, label_columns, pooling, n_null, n_boot, n_perm, seed, aligned, layer : see ``compare_tasks``.
    figures : bool   False: tables only (no PNG/SVG).

    Returns
    -------
    dict name -> list of written paths.
    """
    written: dict[str, list] = {}
    if lens is not None or embeddings:
        if lens is None or not embeddings:
            raise InputError("compare: the cross-task decomposition needs both --lens LENS_DIR and at least one "
                             "--embeddings TASK=PATH")
        from radlens.lens.crosstask import compare_tasks

        written.update(compare_tasks(lens, embeddings, out, labels=labels, label_columns=label_columns,
                                     pooling=pooling, n_null=n_null, n_boot=n_boot, n_perm=n_perm, seed=seed,
                                     aligned=aligned, layer=layer, figures=figures))
    elif labels is not None:
        raise InputError("compare: --labels is used by task alignment, which needs --lens and --embeddings")
    if not tables:
        if not written:
            raise InputError("compare: no shift tables given (and no --lens/--embeddings)")
        return written
    written.update(_compare_tables(tables, out, value=value, top_k=top_k, figures=figures))
    return written


def _compare_tables(tables, out, *, value: str = "z", top_k: int = 15, figures: bool = True) -> dict:
    """Shift-table-only comparison (heatmap, top-k bars, rank correlations, class totals)."""
    from radlens.io.artifacts import write_json, write_table
    from radlens.viz import lens as vz

    long, summaries = read_shift_tables(tables)
    if value not in long.columns:
        raise InputError(f"compare: value={value!r} is not a column of the shift tables")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, list] = {}
    wide = long.pivot(index="feature", columns="task", values=value)
    wide.insert(0, "feature_class", long.drop_duplicates("feature").set_index("feature")["feature_class"])
    written["matrix"] = [write_table(wide.reset_index(), out / f"shift_matrix_{value}.csv")]
    corr, w = rank_correlations(long, "emphasis")
    written["rank_correlation"] = [write_table(corr.reset_index(names="task"), out / "rank_correlation.csv")]
    ct = class_totals(long)
    written["class_totals"] = [write_table(ct, out / "class_totals.csv")]
    top = (long.sort_values(["task", "rank"]).groupby("task").head(top_k)
           [[c for c in ("task", "rank", "feature", "feature_class", "emphasis", "emphasis_ci_low", "emphasis_ci_high",
                         "z", "q", "z_specific", "q_specific", "shift", "shift_z", "shift_q") if c in long.columns]])
    written["top_k"] = [write_table(top, out / "top_k.csv")]
    keys = ("r2_pre_heldout", "r2_post_heldout", "cka_pre_post", "rescale_factor", "sensitivity_rescale",
            "rotation_size", "recoding_share",
            "rescale_share", "emphasis_share", "n_significant", "n_significant_shift", "n_significant_shift_specific",
            "total_emphasis", "global_p", "global_change")
    gsum = [{"task": t, **{k: s.get(k) for k in keys}} for t, s in summaries.items()]
    import pandas as pd

    written["global"] = [write_table(pd.DataFrame(gsum), out / "global_summary.csv")]
    if not figures:
        write_json(out / "compare.json", {"tasks": list(summaries), "kendall_w_tasks": w, "value": value,
                                         "files": {k: [str(p) for p in v] for k, v in written.items()}})
        return written
    written["heatmap"] = vz.shift_heatmap(long, out / "heatmap", value=value,
                                          title=f"Change of radiomic emphasis per feature and task ({value})")
    written["top_bars"] = vz.top_k_bars(long, out / "top_k_bars", k=top_k)
    written["rank_corr_fig"] = vz.rank_correlation_matrix(corr, out / "rank_correlation", kendall_w=w)
    written["class_fig"] = vz.class_totals_bars(ct, out / "class_totals")
    write_json(out / "compare.json", {"tasks": list(summaries), "kendall_w_tasks": w, "value": value,
                                     "files": {k: [str(p) for p in v] for k, v in written.items()}})
    log.info("compare: %d tasks, %d features -> %s", len(summaries), long["feature"].nunique(), out)
    return written
