"""Figures of the radiomic lens (read shift tables, never recompute): feature × task heatmap,
top-k bars with CIs, task × task rank correlations, feature-class totals."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from radlens.viz.style import save_figure, use_agg

_CLASS_ORDER = ("shape", "firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm")
_VALUE_LABEL = {
    "z": "emphasis change z (null SDs above the permutation-null mean)",
    "emphasis": "emphasis change (RMS Jacobian change after rescale/rotation removed, frame units per feature SD)",
    "emphasis_excess": "emphasis change above the noise floor (frame units per feature SD)",
    "shift": "raw shift (RMS Jacobian change, embedding-frame units per feature SD)",
    "shift_z": "raw shift z (null SDs above the permutation-null mean)",
    "share_change": "change of share of total squared sensitivity",
    "common_z": "common change z (null SDs above the permutation-null mean)",
    "contrast_z": "task-specific change z (null SDs above the permutation-null mean)",
}


def class_palette(classes) -> dict:
    """Stable colour per feature class (pyradiomics classes first, then others alphabetically)."""
    import matplotlib

    known = [c for c in _CLASS_ORDER if c in set(classes)]
    other = sorted(set(classes) - set(known))
    cmap = matplotlib.colormaps["tab10"]
    return {c: cmap(i % 10) for i, c in enumerate(known + other)}


def short_name(feature: str) -> str:
    """``original_glcm_Contrast`` → ``glcm_Contrast``; other image types keep their prefix."""
    return feature[len("original_"):] if feature.startswith("original_") else feature


def _order_features(wide, classes):
    """Features grouped by class (classes by descending mean |value|), hierarchically clustered
    (average linkage, correlation-free Euclidean on the task profile) within each class."""
    from scipy.cluster.hierarchy import leaves_list, linkage

    blocks = []
    cls_order = sorted(set(classes.values), key=lambda c: -np.nanmean(np.abs(wide.loc[classes.index[classes == c]].to_numpy())))
    for c in cls_order:
        feats = list(classes.index[classes == c])
        sub = np.nan_to_num(wide.loc[feats].to_numpy(float))
        if len(feats) > 2 and sub.shape[1] >= 2:
            order = leaves_list(linkage(sub, method="average"))
            feats = [feats[i] for i in order]
        else:
            feats = [feats[i] for i in np.argsort(-sub.mean(1), kind="stable")]
        blocks.append((c, feats))
    return blocks


def sig_column(long) -> str:
    """``q_specific`` (feature-specific null) when the tables have it, else ``q`` (global null)."""
    return "q_specific" if "q_specific" in long.columns and long["q_specific"].notna().any() else "q"


def shift_heatmap(long, out_stem, value: str = "z", sig_level: float = 0.05, sig_col: str | None = None,
                  title: str | None = None, xlabel: str = "downstream task (fine-tuned encoder)") -> list[Path]:
    """Heatmap radiomic feature (rows, grouped by class) × task (columns) of column ``value``; dots
    mark ``sig_col`` < sig_level (default: q_specific, else q)."""
    plt = use_agg()
    from matplotlib.colors import TwoSlopeNorm

    wide = long.pivot(index="feature", columns="task", values=value)
    qcol = sig_col or sig_column(long)
    qs = long.pivot(index="feature", columns="task", values=qcol).reindex(columns=wide.columns)
    classes = long.drop_duplicates("feature").set_index("feature")["feature_class"].reindex(wide.index)
    blocks = _order_features(wide, classes)
    feats = [f for _, fs in blocks for f in fs]
    M = wide.loc[feats].to_numpy(float)
    n, t = M.shape
    fig_h = max(3.0, 0.125 * n + 1.6)
    fig_w = 4.2 + 0.55 * t if t > 1 else 3.9
    fig, ax = plt.subplots(figsize=(fig_w, fig_h))
    finite = M[np.isfinite(M)]
    diverging = value in ("z", "share_change", "shift_z", "common_z", "contrast_z")
    if diverging:
        vmax = float(np.quantile(np.abs(finite), 0.98)) if finite.size else 1.0
        vmax = vmax if vmax > 0 else 1.0
        im = ax.imshow(M, aspect="auto", cmap="RdBu_r", norm=TwoSlopeNorm(0.0, -vmax, vmax), interpolation="none")
    else:
        im = ax.imshow(M, aspect="auto", cmap="viridis", interpolation="none",
                       vmin=0, vmax=float(np.quantile(finite, 0.98)) if finite.size else 1.0)
    Q = qs.loc[feats].to_numpy(float)
    yy, xx = np.nonzero(Q < sig_level)
    ax.scatter(xx, yy, s=10, c="black", marker="o", edgecolors="white", linewidths=0.5)
    ax.set_xticks(range(t))
    ax.set_xticklabels(list(wide.columns), rotation=35, ha="right", fontsize=8)
    ax.set_yticks(range(n))
    ax.set_yticklabels([short_name(f) for f in feats], fontsize=6 if n > 40 else 7)
    ax.set_xlabel(xlabel)
    pal = class_palette(classes.values)
    labels = ax.get_yticklabels()   # once: each call re-lays out every tick (quadratic in the features)
    start = 0
    for c, fs in blocks:
        end = start + len(fs)
        if start > 0:
            ax.axhline(start - 0.5, color="white", lw=1.5)
        ax.annotate(c, xy=(1.01, (start + end - 1) / 2), xycoords=("axes fraction", "data"), va="center",
                    ha="left", fontsize=7, color=pal[c], fontweight="bold", annotation_clip=False)
        for f_i in range(start, end):
            labels[f_i].set_color(pal[c])
        start = end
    cb = fig.colorbar(im, ax=ax, fraction=0.05, pad=0.16, shrink=min(1.0, 12 / max(fig_h, 1)))
    cb.set_label(_VALUE_LABEL.get(value, value), fontsize=7)
    head = title or f"Radiomic change per feature and task ({value})"
    import textwrap

    # y given: the title sits at the top of the axes (nothing is drawn above it), so matplotlib need not
    # measure every y tick label to place it at each draw
    ax.set_title("\n".join(textwrap.wrap(head, 48)) + f"\nfeatures grouped by class; dots: {qcol} < {sig_level:g}",
                 fontsize=8, y=1.0)
    return save_figure(fig, out_stem)


def top_k_bars(long, out_stem, k: int = 15, sig_level: float = 0.05, value: str = "emphasis") -> list[Path]:
    """Per task: the k largest ``value`` (default the emphasis headline) with bootstrap CIs
    (``<value>_ci_low/high``), coloured by class; * marks q_specific (else q) < sig_level; the grey
    tick is the permutation-null mean (noise floor) when available."""
    plt = use_agg()
    from matplotlib.patches import Patch

    tasks = list(dict.fromkeys(long["task"]))
    qcol = sig_column(long)
    ncol = min(3, len(tasks))
    nrow = int(np.ceil(len(tasks) / ncol))
    pal = class_palette(long["feature_class"].unique())
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.3 * ncol, 0.22 * k * nrow + 1.4), squeeze=False)
    v, lo, hi = value, f"{value}_ci_low", f"{value}_ci_high"
    # signed scores (the emphasis change) are ranked by magnitude and drawn both ways from 0
    top_all = long.assign(_key=long[v].abs()).sort_values("_key", ascending=False).groupby("task").head(k)
    xmax = float(np.nanmax(top_all[[v, hi]].to_numpy(float))) * 1.15
    xmin = min(0.0, float(np.nanmin(top_all[[v, lo]].to_numpy(float))) * 1.15)
    xmax = xmax if np.isfinite(xmax) and xmax > 0 else 1.0
    xmin = xmin if np.isfinite(xmin) else 0.0
    for ax, task in zip(axes.ravel(), tasks):
        d = top_all[top_all["task"] == task][::-1]
        y = np.arange(len(d))
        err = np.vstack([d[v] - d[lo], d[hi] - d[v]]).clip(0)
        ax.barh(y, d[v], color=[pal[c] for c in d["feature_class"]], height=0.7)
        if np.isfinite(err).all():
            ax.errorbar(d[v], y, xerr=err, fmt="none", ecolor="black", elinewidth=0.8, capsize=2)
        if value == "emphasis" and "null_mean" in d and d["null_mean"].notna().all():
            ax.scatter(d["null_mean"], y, marker="|", s=60, color="0.45", zorder=3)
        ax.set_yticks(y)
        ax.set_yticklabels([short_name(f) + (" *" if q < sig_level else "") for f, q in zip(d["feature"], d[qcol])],
                           fontsize=7)
        ax.set_xlim(xmin, xmax)
        if xmin < 0:
            ax.axvline(0, color="0.3", lw=0.8)
        ax.set_title(task, fontsize=9)
        ax.set_xlabel(("emphasis change" if value == "emphasis" else value) + " (frame units per feature SD)")
    for ax in axes.ravel()[len(tasks):]:
        ax.axis("off")
    from matplotlib.lines import Line2D

    handles = [Patch(color=v, label=c) for c, v in pal.items()]
    handles.append(Line2D([], [], color="0.45", marker="|", linestyle="none", markersize=10,
                          label="null mean (noise floor)"))
    fig.legend(handles=handles, loc="lower center", ncol=min(8, len(handles)), fontsize=7, frameon=False,
               bbox_to_anchor=(0.5, -0.02))
    fig.suptitle(f"Top-{k} radiomic {'emphasis changes (largest |change|; < 0: less emphasis)' if value == 'emphasis' else value} "
                 f"per task (bars: 95% bootstrap CI; * {qcol} < {sig_level:g})", fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 0.97))
    return save_figure(fig, out_stem)


def rank_correlation_matrix(corr, out_stem, kendall_w: float | None = None) -> list[Path]:
    """Task × task Spearman correlation of per-feature emphasis changes (annotated)."""
    plt = use_agg()
    t = corr.shape[0]
    fig, ax = plt.subplots(figsize=(1.2 + 0.75 * t, 0.9 + 0.7 * t))
    im = ax.imshow(corr.to_numpy(float), cmap="RdBu_r", vmin=-1, vmax=1)
    for i in range(t):
        for j in range(t):
            v = corr.iat[i, j]
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if abs(v) > 0.6 else "black")
    ax.set_xticks(range(t))
    ax.set_xticklabels(corr.columns, rotation=35, ha="right")
    ax.set_yticks(range(t))
    ax.set_yticklabels(corr.index)
    cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    cb.set_label("Spearman ρ of per-feature emphasis changes")
    title = "Rank agreement of emphasis changes between tasks"
    if kendall_w is not None and np.isfinite(kendall_w):
        title += f"\n(Kendall's W over tasks = {kendall_w:.2f})"
    ax.set_title(title, fontsize=9)
    return save_figure(fig, out_stem)


def class_totals_bars(ct, out_stem) -> list[Path]:
    """Share of each task's total squared emphasis change per feature class; black ticks: the share
    expected if every feature changed equally (class size / number of features)."""
    plt = use_agg()
    tasks = list(dict.fromkeys(ct["task"]))
    classes = [c for c in _CLASS_ORDER if c in set(ct["feature_class"])]
    classes += sorted(set(ct["feature_class"]) - set(classes))
    wide = ct.pivot(index="feature_class", columns="task", values="emphasis_share").reindex(index=classes, columns=tasks)
    nf = ct.drop_duplicates("feature_class").set_index("feature_class")["n_features"].reindex(classes)
    expected = nf / nf.sum()
    fig, ax = plt.subplots(figsize=(1.5 + 0.55 * len(classes) * max(1, len(tasks)) ** 0.5, 3.2))
    width = 0.8 / len(tasks)
    x = np.arange(len(classes))
    cmap = plt.get_cmap("Set2")
    for i, task in enumerate(tasks):
        ax.bar(x - 0.4 + width * (i + 0.5), wide[task].to_numpy(float), width, label=task, color=cmap(i % 8))
    ax.scatter(x, expected.to_numpy(float), marker="_", s=400, color="black", zorder=3, label="equal-change expectation")
    ax.set_xticks(x)
    ax.set_xticklabels(classes, rotation=30, ha="right")
    ax.set_ylabel("share of total squared emphasis change")
    ax.set_xlabel("radiomic feature class")
    ax.set_title("Where the emphasis change went, per feature class", fontsize=9)
    ax.legend(fontsize=7, frameon=False, ncol=2)
    return save_figure(fig, out_stem)


def _alignment_legend(al) -> str:
    stats = set(al["statistic"].dropna().astype(str)) if "statistic" in al.columns else {"pearson"}
    return "; ".join("ρ: Spearman" if s == "spearman" else "r: Pearson" for s in sorted(stats)) or "r: Pearson"


def alignment_scatter(assoc, alignment, out_stem) -> list[Path]:
    """Per task: each radiomic feature's |association| with the task's label (x) against the task's
    specific change (y), coloured by class; the title gives the alignment (Pearson r, or Spearman ρ
    when ``alignment['statistic']`` says so) and its permutation p."""
    plt = use_agg()
    from matplotlib.patches import Patch

    tasks = list(dict.fromkeys(assoc["task"]))
    ncol = min(3, len(tasks))
    nrow = int(np.ceil(len(tasks) / ncol))
    pal = class_palette(assoc["feature_class"].dropna().unique() if "feature_class" in assoc else ["feature"])
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.6 * ncol, 3.2 * nrow + 0.6), squeeze=False)
    al = alignment.set_index("task")
    for ax, task in zip(axes.ravel(), tasks):
        d = assoc[assoc["task"] == task]
        cls = d["feature_class"] if "feature_class" in d else ["feature"] * len(d)
        ax.axhline(0, color="0.7", lw=0.8, zorder=0)
        ax.scatter(np.abs(d["association"]), d["specific_change"], s=14, c=[pal.get(c, "0.5") for c in cls], alpha=0.85,
                   edgecolors="none")
        r = al.loc[task] if task in al.index else None
        kind = str(r["label_kind"]) if r is not None and "label_kind" in al.columns else ""
        sym = "ρ" if r is not None and str(r.get("statistic", "pearson")) == "spearman" else "r"
        t = f"{task}: {sym} = {r['alignment']:.2f}, p = {r['alignment_p']:.3g}" if r is not None else task
        ax.set_title(t, fontsize=9)
        ax.set_xlabel("|association with label| (" + ("|Spearman ρ|" if kind == "numeric" else "|AUC − 0.5|") + ")",
                      fontsize=8)
        ax.set_ylabel("task-specific emphasis change\n(frame units per feature SD; < 0: others moved more)",
                      fontsize=7)
    for ax in axes.ravel()[len(tasks):]:
        ax.axis("off")
    fig.legend(handles=[Patch(color=v, label=c) for c, v in pal.items()], loc="lower center",
               ncol=min(8, len(pal)), fontsize=7, frameon=False)
    fig.suptitle("Task alignment: did fine-tuning move the encoder toward the task's radiomic signature?\n"
                 f"({_alignment_legend(al)} over features; p: labels permuted over whole patients)", fontsize=9)
    fig.tight_layout(rect=(0, 0.06, 1, 0.93))
    return save_figure(fig, out_stem)
