"""Cross-task decomposition of the lens change and task alignment.

For tasks t = 1..T fine-tuned from one pre encoder, all embedded on the lens's cases, the per-case
change of task t in the lens frame is ``E_t`` (n × k), by default after removing the task's global
rescale of the embedding (``aligned="scale"``; ``"procrustes"`` also removes an orthogonal
re-coding, ``"none"`` keeps the raw change; :mod:`radlens.lens.emphasis`). Why scale and not
Procrustes by default is argued with planted numbers in docs/lens.md.

* common change:      ``E_common = mean_t E_t``            (what every fine-tuning changed)
* specific change:    ``E_spec,t = E_t − mean_{s≠t} E_s``   (what task t changed beyond the others)

Each is scored per radiomic feature through the frozen first layer (RMS Jacobian change of
``D = S E``), with the cluster-permutation null (z, gamma p, BH q over features) and the
bias-corrected cluster-bootstrap CI of ``refit-post`` (:func:`radlens.lens.changes.score_changes`).
With two tasks the two specific changes are mirror images (``E_spec,1 = −E_spec,2``): their scores
are identical, and they say where the tasks differ, not which task moved. With one task the
specific change is the task's own change.

Task alignment: per task, the correlation over features (Pearson by default, Spearman as an option)
between each feature's |association| with the task's label (:mod:`radlens.stats.association`) and
the task's specific change, with a patient-grouped label-permutation p-value.

Every function takes arrays (and a fitted :class:`~radlens.lens.estimator.RadiomicLens`), never
paths; :func:`compare_tasks` is the file-level wrapper behind ``radlens compare --lens``.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from radlens.errors import InputError

log = logging.getLogger(__name__)

COMMON_COLUMNS = ("feature", "feature_class", "common_shift", "common_z", "common_p", "common_q", "common_rank")
CONTRAST_COLUMNS = ("task", "feature", "feature_class", "contrast", "contrast_ci_low", "contrast_ci_high",
                    "contrast_z", "contrast_p", "contrast_q", "contrast_rank")
ALIGNMENTS = ("procrustes", "scale", "none")
#: share of a task's change that is orthogonal re-coding above which the summary warns (``aligned="scale"``)
RECODING_CAUTION = 0.5
ALIGNMENT_COLUMNS = ("task", "alignment", "alignment_p", "n_features")


def task_changes(lens, Z_posts: dict, *, aligned="scale", frame: bool = True) -> tuple[dict, dict]:
    """Per-case change of every task in the lens frame.

    Parameters
    ----------
    lens : fitted RadiomicLens
    Z_posts : dict task -> ndarray, shape (n, d)
        Post embeddings of the lens's training cases (same rows), one per task.
    aligned : {"procrustes", "scale", "none"} (True = "procrustes", False = "none")
        How post is aligned onto pre before the change is taken
        (:func:`radlens.lens.emphasis.align_post`): orthogonal Procrustes + global scale (the
        emphasis change of ``refit-post``), global scale only, or not at all (raw change
        ``Y_post − Y_pre``).
    frame : bool, default True
        ``Z_posts`` are raw embeddings (mapped through the lens frame); False: already frame
        coordinates.

    Returns
    -------
    changes : dict task -> ndarray (n, k)
    alignment : dict task -> dict (``rescale_factor``, ``rotation_size``, ``recoding_share``,
        ``rescale_share``, ``emphasis_share``, ``global_change`` sentence)
    """
    from radlens.lens.emphasis import align_post, describe_alignment

    if not Z_posts:
        raise InputError("cross-task decomposition: no post embeddings given (one per task)")
    mode = {True: "procrustes", False: "none"}.get(aligned, aligned)
    if mode not in ALIGNMENTS:
        raise InputError(f"aligned={aligned!r} not allowed; use one of {ALIGNMENTS}")
    changes, info = {}, {}
    for t, Z in Z_posts.items():
        Y = lens.transform_embeddings(Z) if frame else np.asarray(Z, float)
        if Y.shape != lens.Z_pre_.shape:
            raise InputError(f"task {t!r}: post embeddings map to shape {Y.shape}; the lens frame of its "
                             f"{lens.Z_pre_.shape[0]} cases is {lens.Z_pre_.shape}; embed the same cases with "
                             "the same architecture and pooling")
        if not np.isfinite(Y).all():
            raise InputError(f"task {t!r}: post embeddings have non-finite values for "
                             f"{int((~np.isfinite(Y).all(1)).sum())} case(s); re-run embed for them")
        al = align_post(lens.Z_pre_, Y)                      # the full decomposition, reported in any mode
        if mode == "scale":
            changes[t] = align_post(lens.Z_pre_, Y, rotate=False)["E"]
        else:
            changes[t] = Y - lens.Z_pre_ if mode == "none" else al["E"]
        info[t] = {"rescale_factor": al["rescale"], "rotation_size": al["rotation_size"],
                   "recoding_share": al["recoding_share"], "rescale_share": al["rescale_share"],
                   "emphasis_share": al["emphasis_share"], "global_change": describe_alignment(al)}
    return changes, info


def decompose(changes: dict) -> tuple[np.ndarray, dict]:
    """Common change (mean over tasks) and specific change per task (its change minus the mean of
    the other tasks'; with one task, its own change).

    Parameters
    ----------
    changes : dict task -> ndarray, shape (n, k)

    Returns
    -------
    common : ndarray (n, k);  specific : dict task -> ndarray (n, k)
    """
    tasks = list(changes)
    Es = np.stack([np.asarray(changes[t], float) for t in tasks])
    T = len(tasks)
    common = Es.mean(0)
    if T == 1:
        return common, {tasks[0]: Es[0]}
    tot = Es.sum(0)
    return common, {t: Es[i] - (tot - Es[i]) / (T - 1) for i, t in enumerate(tasks)}


def _feature_classes(lens):
    from radlens.lens.shift import feature_meta

    return feature_meta(list(lens.feature_names_in_))[0]


def cross_task(lens, Z_posts: dict, *, n_null: int = 200, n_boot: int = 200, seed: int = 0, aligned="scale",
               frame: bool = True, alpha_level: float = 0.05, batch: int = 25):
    """Common and task-specific radiomic change of several fine-tunings of one pre encoder.

    Parameters
    ----------
    lens : fitted RadiomicLens
    Z_posts : dict task -> ndarray, shape (n, d)   post embeddings of the lens's cases, one per task.
    n_null : int, default 200   cluster-permutation null replicates (0: no z/p/q).
    n_boot : int, default 200   cluster-bootstrap resamples for the contrast CIs (0: none).
    seed : int
    aligned, frame : see :func:`task_changes`.
    alpha_level : float   CI level (1 − alpha_level) and the q threshold counted in the summary.

    Returns
    -------
    common : DataFrame, columns ``COMMON_COLUMNS`` (one row per feature, sorted by ``common_rank``;
        ``common_shift`` is the RMS Jacobian change of the common change, frame units per feature SD)
    contrast : DataFrame, columns ``CONTRAST_COLUMNS`` + ``specific_emphasis`` (one row per task ×
        feature, sorted by task and ``contrast_rank``; rank 1 = largest task-specific change;
        ``specific_emphasis`` = the task's emphasis change (:mod:`radlens.lens.emphasis`) minus the
        mean of the other tasks', averaged over lens seeds: signed, > 0 where the task made the
        encoder relatively *more* sensitive to the feature than the other tasks did; the alignment
        profile)
    summary : dict (JSON-able): ``tasks``, ``n_cases``, ``n_features``, ``aligned``, ``mirror``
        (two tasks: contrasts are mirror images), ``common`` (``n_significant``, ``total``),
        ``per_task`` (alignment of each task's embedding and ``n_significant_contrast``).
    """
    import pandas as pd
    from scipy import stats as st

    from radlens.lens.changes import score_changes
    from radlens.lens.shift import bias_corrected_ci
    from radlens.stats.permutation import squared_norm_null_summary

    for name, v in (("n_null", n_null), ("n_boot", n_boot)):
        if not (isinstance(v, (int, np.integer)) and (v == 0 or v >= 10)):
            raise InputError(f"{name}={v!r} not allowed: use 0 (skip) or an integer >= 10 (200 recommended)")
    changes, info = task_changes(lens, Z_posts, aligned=aligned, frame=frame)
    tasks = list(changes)
    common, specific = decompose(changes)
    named = {"__common__": common, **{f"spec:{t}": specific[t] for t in tasks}}
    res = score_changes(lens, named, n_null=n_null, n_boot=n_boot, seed=seed,
                        boot_for=[f"spec:{t}" for t in tasks], batch=batch)
    names = list(lens.feature_names_in_)
    fcls = _feature_classes(lens)
    p = len(names)

    def tested(r):
        if r["null"] is None:
            nan = np.full(p, np.nan)
            return {"z": nan, "p": nan, "q": nan}
        return squared_norm_null_summary(r["T"], r["null"], degenerate=r["degenerate"])

    # each task's specific change of emphasis per feature: its emphasis change minus the mean of the
    # other tasks' (after the same alignment), averaged over lens seeds (the alignment profile)
    from radlens.lens.scores import dsigma_moment, sensitivity_sq
    from radlens.stats.ridge import ridge_smoother

    # (sensitivities median-rescaled as the emphasis headline, so the sign is one of relative emphasis,
    # not of a task's overall sensitivity level)
    from radlens.lens.emphasis import emphasis_scores

    sens = {t: [] for t in tasks}
    for s in range(lens.W1_.shape[0]):
        H, dsig = lens.hidden_activations(s)
        C = dsigma_moment(dsig)
        Smat = ridge_smoother(H, float(lens.alpha_[s]))
        s_pre = np.sqrt(sensitivity_sq(lens.W1_[s], lens.head_pre_.coef[s], C))
        for t in tasks:
            s_post = np.sqrt(sensitivity_sq(lens.W1_[s], lens.head_pre_.coef[s] + Smat @ changes[t], C))
            sens[t].append(emphasis_scores(s_pre, s_post)[0])
    sens = {t: np.asarray(v) for t, v in sens.items()}
    direction = {}
    for t in tasks:
        others = [sens[u] for u in tasks if u != t]
        direction[t] = (sens[t] - np.mean(others, axis=0)).mean(0) if others else sens[t].mean(0)
    rc = res["__common__"]
    tc = tested(rc)
    cs = np.sqrt(rc["T"])
    common_df = pd.DataFrame({"feature": names, "feature_class": fcls, "common_shift": cs, "common_z": tc["z"],
                              "common_p": tc["p"], "common_q": tc["q"],
                              "common_rank": st.rankdata(-cs, method="min").astype(int)})
    common_df = common_df.sort_values(["common_rank", "feature"]).reset_index(drop=True)
    frames = []
    per_task = {}
    for t in tasks:
        r = res[f"spec:{t}"]
        tt = tested(r)
        c = np.sqrt(r["T"])
        lo = hi = np.full(p, np.nan)
        if r["boot"] is not None:
            lo, hi = bias_corrected_ci(r["T"], r["boot"], alpha_level)
        frames.append(pd.DataFrame({"task": t, "feature": names, "feature_class": fcls, "contrast": c,
                                    "contrast_ci_low": lo, "contrast_ci_high": hi, "contrast_z": tt["z"],
                                    "contrast_p": tt["p"], "contrast_q": tt["q"],
                                    "contrast_rank": st.rankdata(-c, method="min").astype(int),
                                    "specific_emphasis": direction[t]})
                      .sort_values(["contrast_rank", "feature"]))
        per_task[t] = {**info[t], "n_significant_contrast": int(np.sum(tt["q"] < alpha_level)),
                       "total_contrast": float(np.sqrt(r["T"].sum()))}
    contrast_df = pd.concat(frames, ignore_index=True)
    summary = {"tasks": tasks, "n_tasks": len(tasks), "n_cases": int(lens.X_.shape[0]), "n_features": p,
               "aligned": str(aligned), "n_null": int(n_null), "n_boot": int(n_boot), "seed": int(seed),
               "mirror": len(tasks) == 2,
               "common": {"n_significant": int(np.sum(tc["q"] < alpha_level)), "total": float(np.sqrt(rc["T"].sum()))},
               "per_task": per_task}
    recoded = [t for t in tasks if info[t]["recoding_share"] > RECODING_CAUTION]
    if recoded and summary["aligned"] != "procrustes":
        shares_txt = ", ".join("{:.0f}%".format(100 * info[t]["recoding_share"]) for t in recoded)
        summary["caution"] = (f"orthogonal re-coding is {shares_txt} "
                              f"of the change of {', '.join(recoded)}; with --align {summary['aligned']} that rotation stays in "
                              "the task-specific changes and shows as the pre sensitivity pattern (similar contrast "
                              "rankings across tasks); compare with --align procrustes")
        log.warning("cross-task decomposition: %s", summary["caution"])
    if len(tasks) == 2:
        log.info("two tasks: their specific changes are mirror images (identical contrast scores)")
    return common_df, contrast_df, summary


def task_alignment(X, contrast, labels: dict, *, feature_names=None, groups=None, n_perm: int = 999,
                   seed: int = 0, statistic: str = "pearson"):
    """Did fine-tuning for each task move the encoder toward the task's radiomic signature?

    Parameters
    ----------
    X : DataFrame (feature columns) or ndarray, shape (n, p)   radiomics of the cases (e.g. the lens's
        standardised ``lens.X_``).
    contrast : DataFrame (``task, feature, specific_emphasis`` or ``contrast``, e.g. from
        :func:`cross_task`) or dict task -> ndarray (p,) in the column order of ``X``. The signed
        ``specific_emphasis`` is preferred: a task's specific change also carries the *other* tasks'
        specific features (its change minus theirs), in the opposite direction; unsigned (``contrast``),
        they rank next to its own features and dilute the alignment.
    labels : dict task -> array-like, shape (n,)   label of each case (NaN/None: unlabelled, left out).
    feature_names : sequence of str, optional   names of ``X``'s columns when ``X`` is an array.
    groups : array-like, shape (n,), optional   patient of each case (whole patients are permuted).
    n_perm : int, default 999;  seed : int
    statistic : {"pearson", "spearman"}, default "pearson"
        Correlation over features (:func:`radlens.stats.association.alignment_test`): Pearson weighs
        each feature by its |association|, Spearman weighs every feature's rank alike (weaker for a
        sparse signature: docs/lens.md §9c).

    Returns
    -------
    alignment : DataFrame ``task, alignment, alignment_p, n_features`` (+ ``n_cases``, ``label_kind``,
        ``null_mean``, ``null_sd``, ``statistic``): correlation between |association| and the
        specific change, one-sided permutation p.
    association : DataFrame ``task, feature, association, specific_change`` (association: AUC − 0.5
        for a binary label, Spearman ρ for a numeric one, mean |AUC_ovr − 0.5| for a categorical one;
        specific_change: the profile correlated, signed when available).
    """
    import pandas as pd

    from radlens.stats.association import ALIGNMENT_STATISTICS, alignment_test

    if statistic not in ALIGNMENT_STATISTICS:
        raise InputError(f"task_alignment: statistic={statistic!r} not allowed; use one of {ALIGNMENT_STATISTICS}")
    if isinstance(X, pd.DataFrame):
        feats = [c for c in X.columns if c != "case_id"]
        Xa = X[feats].to_numpy(float)
    else:
        Xa = np.asarray(X, float)
        feats = list(feature_names) if feature_names is not None else [f"x{j}" for j in range(Xa.shape[1])]
    if len(feats) != Xa.shape[1]:
        raise InputError(f"task_alignment: {len(feats)} feature names for {Xa.shape[1]} columns")
    rows, assoc_rows = [], []
    for t, y in labels.items():
        if isinstance(contrast, pd.DataFrame):
            sub = contrast[contrast["task"] == t].set_index("feature")
            if sub.empty:
                raise InputError(f"task_alignment: no contrast rows for task {t!r}; tasks present: "
                                 f"{sorted(set(contrast['task']))}")
            col = "specific_emphasis" if "specific_emphasis" in sub.columns else "contrast"
            prof = sub[col].reindex(feats).to_numpy(float)
        else:
            prof = np.asarray(contrast[t], float)
        y = np.asarray(y, dtype=object)
        if y.shape[0] != Xa.shape[0]:
            raise InputError(f"task_alignment: labels of task {t!r} have {y.shape[0]} rows, X has {Xa.shape[0]}")
        try:
            r = alignment_test(prof, Xa, y, groups, n_perm=n_perm, seed=seed, statistic=statistic)
        except ValueError as exc:   # e.g. a single label value among the labelled cases
            log.warning("task %s: no alignment (%s)", t, exc)
            rows.append({"task": t, "alignment": np.nan, "alignment_p": np.nan, "n_features": len(feats),
                         "n_cases": int(pd.notna(pd.Series(y)).sum()), "label_kind": f"unusable: {exc}",
                         "null_mean": np.nan, "null_sd": np.nan, "statistic": statistic})
            continue
        rows.append({"task": t, "alignment": r["alignment"], "alignment_p": r["alignment_p"],
                     "n_features": r["n_features"], "n_cases": r["n_cases"], "label_kind": r["label_kind"],
                     "null_mean": r["null_mean"], "null_sd": r["null_sd"], "statistic": statistic})
        assoc_rows.append(pd.DataFrame({"task": t, "feature": feats, "association": r["association"],
                                        "specific_change": prof}))
    assoc = (pd.concat(assoc_rows, ignore_index=True) if assoc_rows
             else pd.DataFrame(columns=["task", "feature", "association", "specific_change"]))
    return pd.DataFrame(rows), assoc


def _label_column(df, task: str, label_columns: dict | None):
    first = [label_columns[task]] if label_columns and task in label_columns else []
    for c in first + [task, f"task_{task}"]:
        if c in df.columns:
            return c
    return None


def compare_tasks(lens_dir, embeddings: dict, out, *, labels=None, label_columns: dict | None = None,
                  pooling: str | None = None, n_null: int = 200, n_boot: int = 200, n_perm: int = 999,
                  seed: int = 0, aligned="scale", layer: str | None = None, figures: bool = True,
                  alignment_statistic: str = "pearson") -> dict:
    """File-level cross-task decomposition and task alignment (``radlens compare --lens``).

    Parameters
    ----------
    lens_dir : path   lens folder from ``fit-pre``.
    embeddings : dict task -> path   post embeddings of each task (same cases as the lens).
    out : path   output folder: ``common.csv``, ``contrast.csv``, ``alignment.csv`` (with labels),
        ``association.csv``, ``decomposition.json`` and the figures ``common_heatmap``,
        ``contrast_heatmap``, ``alignment`` (PNG + SVG).
    labels : path, optional   manifest or any table with ``case_id``, optional ``patient_id`` and the
        label columns (``TASK`` or ``task_TASK``, or ``label_columns[TASK]``).
    pooling : str, optional   default: the pooling the lens was fitted on.
    n_null, n_boot, seed, aligned : see :func:`cross_task`;  n_perm : alignment permutations.
    layer : str, optional   layer of multi-layer embeddings files (:mod:`radlens.lens.layers`).
    figures : bool   False: tables only (no PNG/SVG).
    alignment_statistic : {"pearson", "spearman"}   see :func:`task_alignment` (``statistic``).

    Returns
    -------
    dict name -> list of written paths.
    """
    import pandas as pd

    from radlens.io.artifacts import align_case_ids, provenance, read_table, write_json, write_table
    from radlens.lens.pipeline import _load_embeddings, load_paired_lens
    from radlens.viz import lens as vz

    lens, excluded = load_paired_lens(lens_dir)
    pool = pooling or lens.extra_.get("pooling")
    Z_posts = {}
    for t, path in embeddings.items():
        cid, Z, _, _ = _load_embeddings(path, pool, layer)
        if excluded:
            keep = ~np.isin(cid, list(excluded))
            cid, Z = cid[keep], Z[keep]
        _, ei = align_case_ids(lens.case_ids_, cid, f"lens {lens_dir}", f"embeddings {path} (task {t})")
        Z_posts[t] = Z[ei]
    common, contrast, summary = cross_task(lens, Z_posts, n_null=n_null, n_boot=n_boot, seed=seed, aligned=aligned)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    prov = provenance("compare", {"pooling": pool, "n_null": n_null, "n_boot": n_boot, "n_perm": n_perm, "seed": seed,
                                  "aligned": str(aligned), "alignment_statistic": alignment_statistic},
                      {"lens": lens_dir, **{f"embeddings:{t}": p for t, p in embeddings.items()}, "labels": labels})
    written = {"common": [write_table(common[list(COMMON_COLUMNS)], out / "common.csv", prov)],
               "contrast": [write_table(contrast[list(CONTRAST_COLUMNS)], out / "contrast.csv", prov)]}
    mirror = " (two tasks: the specific changes are mirror images, so both columns are identical)" if summary["mirror"] else ""
    if figures:
        written["common_heatmap"] = vz.shift_heatmap(
            common.assign(task="common"), out / "common_heatmap", value="common_z", sig_col="common_q",
            title="What every fine-tuning changed: common change per radiomic feature",
            xlabel=f"mean change of {summary['n_tasks']} tasks")
        written["contrast_heatmap"] = vz.shift_heatmap(
            contrast, out / "contrast_heatmap", value="contrast_z", sig_col="contrast_q",
            title="What each task changed beyond the others: task-specific change" + mirror)
    summary["alignment"] = []
    if labels is not None:
        lab = read_table(labels)
        if "case_id" not in lab.columns:
            raise InputError(f"labels table {str(labels)!r} has no 'case_id' column; give the manifest or a "
                             "table with case_id, optional patient_id and one label column per task")
        lab = lab.assign(case_id=lab["case_id"].astype(str)).drop_duplicates("case_id").set_index("case_id")
        lab = lab.reindex(lens.case_ids_)
        groups = (lab["patient_id"].astype(str).where(lab["patient_id"].notna(), pd.Series(lens.groups_, index=lab.index))
                  .to_numpy() if "patient_id" in lab.columns else lens.groups_)
        ylab, missing = {}, []
        for t in summary["tasks"]:
            c = _label_column(lab, t, label_columns)
            if c is None:
                missing.append(t)
                continue
            ylab[t] = lab[c].to_numpy(dtype=object)
        if missing:
            log.warning("labels table %s has no label column for task(s) %s (looked for TASK or task_TASK); "
                        "their alignment is not computed", labels, missing)
        al, assoc = task_alignment(lens.X_, contrast, ylab, feature_names=list(lens.feature_names_in_), groups=groups,
                                   n_perm=n_perm, seed=seed, statistic=alignment_statistic)
        for t in missing:
            al = pd.concat([al, pd.DataFrame([{"task": t, "alignment": np.nan, "alignment_p": np.nan,
                                               "n_features": len(lens.feature_names_in_), "n_cases": 0,
                                               "label_kind": "no label column",
                                               "statistic": alignment_statistic}])], ignore_index=True)
        written["alignment"] = [write_table(al[list(ALIGNMENT_COLUMNS)], out / "alignment.csv", prov)]
        if len(assoc):
            fcls = dict(zip(lens.feature_names_in_, _feature_classes(lens)))
            assoc.insert(2, "feature_class", assoc["feature"].map(fcls))
            written["association"] = [write_table(assoc, out / "association.csv", prov)]
            if figures:
                written["alignment_fig"] = vz.alignment_scatter(assoc, al, out / "alignment")
        summary["alignment"] = al.to_dict("records")
    write_json(out / "decomposition.json", {**summary, "provenance": prov,
                                           "files": {k: [str(p) for p in v] for k, v in written.items()}})
    log.info("compare: %d tasks -> %s (common: %d features q<0.05)", summary["n_tasks"], out,
             summary["common"]["n_significant"])
    return written
