"""Figures of the localization analysis (read the tables of ``radlens localize``; never rescore).

* :func:`plot_localization_scores`  mean score per map set and class with CIs (+ paired deltas)
* :func:`plot_tradeoff`             task performance vs localization score per checkpoint
* :func:`plot_map_examples`         maps over their images with the ground-truth outline
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from radlens.viz.style import save_figure, use_agg

DEFAULT_SCORES = ("pointing_game", "auc", "mass_inside", "cnr", "gcnr", "iou_topk", "miou_topk",
                  "box_iou_topk", "centroid_dist_norm_topk")
PRETTY = {"pointing_game": "pointing game (hit rate)", "auc": "pixel AUC-ROC", "cnr": "CNR",
          "gcnr": "gCNR", "mass_inside": "attribution mass inside GT", "iou": "IoU", "miou": "mIoU",
          "box_iou": "box IoU", "centroid_dist": "centroid distance (px)",
          "centroid_dist_norm": "centroid distance / image diagonal"}


def pretty_score(col: str) -> str:
    """Readable axis label of a score column, with its better direction."""
    from radlens.localization.scores import BINARIZATIONS, higher_is_better

    base, suffix = col, ""
    for b in BINARIZATIONS:
        if col.endswith("_" + b):
            base, suffix = col[: -len(b) - 1], f" ({b})"
    arrow = "higher is better" if higher_is_better(col) else "lower is better"
    return f"{PRETTY.get(base, base)}{suffix}\n[{arrow}]"


def plot_localization_scores(summary, out_stem, *, paired=None, scores: Sequence[str] | None = None,
                             ncols: int = 3, class_label: str | None = None) -> list[Path]:
    """Small multiples: one panel per score, mean and CI per class (x) and map set (colour).

    Parameters
    ----------
    summary : DataFrame from :func:`radlens.localization.summary.summarize_scores`.
    out_stem : path without suffix; PNG and SVG are written.
    paired : DataFrame from :func:`radlens.localization.summary.paired_scores`, optional
        Adds the all-sample mean difference (b - a), its CI and BH q-value to each panel title.
    scores : score columns to show (default: the top-k binarisation set, when present).
    class_label : x-axis label (the class column's name).
    """
    plt = use_agg()
    avail = list(dict.fromkeys(summary["score"]))
    scores = [s for s in (scores or DEFAULT_SCORES) if s in avail] or avail[:9]
    ncols = max(1, min(ncols, len(scores)))
    nrows = int(np.ceil(len(scores) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.3 * ncols + 0.6, 2.7 * nrows + 0.4), squeeze=False)
    sets = list(dict.fromkeys(summary["map_set"]))
    classes = list(dict.fromkeys(summary["class"]))
    colors = plt.get_cmap("tab10")
    width = 0.7 / max(1, len(sets))
    for ax, sc in zip(axes.ravel(), scores):
        part = summary[summary["score"] == sc]
        for j, ms in enumerate(sets):
            p = part[part["map_set"] == ms].set_index("class").reindex(classes)
            x = np.arange(len(classes)) + (j - (len(sets) - 1) / 2) * width
            y = p["mean"].to_numpy(float)
            err = np.vstack([y - p["ci_low"].to_numpy(float), p["ci_high"].to_numpy(float) - y])
            # zero-width CIs (all samples equal) can give -1e-17 lengths by rounding: clip at 0
            ax.errorbar(x, y, yerr=np.where(np.isfinite(err), np.maximum(err, 0.0), 0), fmt="o", ms=4, capsize=2,
                        color=colors(j), label=str(ms))
        ax.set_xticks(np.arange(len(classes)))
        ax.set_xticklabels([str(c) for c in classes], rotation=30 if len(classes) > 3 else 0, ha="right"
                           if len(classes) > 3 else "center")
        ax.set_ylabel(pretty_score(sc), fontsize=7)
        # honest axes: zero is always on the y axis, so a 0.0305 -> 0.0308 change is drawn as the small
        # change it is (scores that can be negative, e.g. CNR, keep their negative range)
        vals = part[["mean", "ci_low", "ci_high"]].to_numpy(float)
        vals = vals[np.isfinite(vals)]
        if vals.size:
            lo, hi = min(0.0, float(vals.min())), max(0.0, float(vals.max()))
            pad = 0.06 * (hi - lo) if hi > lo else 1.0
            ax.set_ylim(lo - (pad if lo < 0 else 0), hi + pad)
        if len(classes) > 1:
            ax.axvline(0.5, color="0.7", lw=0.8, ls="--")
            ax.set_xlabel(class_label or "class", fontsize=7)
        title = sc
        if paired is not None:
            r = paired[(paired["score"] == sc) & (paired["class"] == classes[0])]
            if len(r):
                r = r.iloc[0]
                title += (f"\nΔ={r['mean_diff']:+.3g} [{r['ci_low']:+.3g}, {r['ci_high']:+.3g}], "
                          f"q={r['q_bh']:.2g}")
        ax.set_title(title, fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    for ax in axes.ravel()[len(scores):]:
        ax.axis("off")
    handles, labels = axes.ravel()[0].get_legend_handles_labels()
    h_in = fig.get_size_inches()[1]
    # suptitle on top, legend in its own strip at the bottom: neither covers the other or a panel
    fig.tight_layout(rect=(0, 0.45 / h_in, 1, 1 - (0.8 if paired is not None else 0.5) / h_in))
    fig.legend(handles, [f"map set: {lab}" for lab in labels], loc="lower center", ncol=len(sets), frameon=False,
               bbox_to_anchor=(0.5, 0.0))
    if paired is not None and "map_set_a" in paired.columns and len(paired):
        diff = f"{paired['map_set_b'].iloc[0]} − {paired['map_set_a'].iloc[0]}"
    else:
        diff = "b − a"
    fig.suptitle("Localization scores: mean, 95% patient-bootstrap CI"
                 + (f"\nΔ = mean paired difference {diff} [patient-bootstrap 95% CI]; q: Wilcoxon "
                    "signed-rank test, BH-corrected (a different procedure from the CI)" if paired is not None else ""),
                 x=0.02, ha="left", y=0.99, fontsize=9)
    return save_figure(fig, out_stem)


def plot_tradeoff(table, out_stem, *, task_label: str = "task AUC", title: str | None = None,
                  ax=None, caption: bool = True) -> list[Path] | None:
    """Task performance (x) vs localization score (y) per checkpoint, CIs in both directions.

    Parameters
    ----------
    table : DataFrame from :func:`radlens.localization.tradeoff.tradeoff_table` (one score).
    out_stem : path without suffix (ignored when ``ax`` is given).
    task_label : x-axis label. Without task performance the x axis is the checkpoint order.
    ax : matplotlib Axes, optional (draw into it; nothing is saved).
    """
    plt = use_agg()
    t = table.sort_values("order")
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(5.2, 4.2))
    y = t["loc_mean"].to_numpy(float)
    yerr = np.vstack([y - t["loc_low"].to_numpy(float), t["loc_high"].to_numpy(float) - y])
    has_task = t["task_metric"].notna().any()
    if has_task:
        x = t["task_metric"].to_numpy(float)
        xerr = np.vstack([x - t["task_low"].to_numpy(float), t["task_high"].to_numpy(float) - x])
        xlabel = task_label + " [higher is better]"
    else:
        x = t["order"].to_numpy(float)
        xerr = None
        xlabel = "checkpoint (order)"
    # error-bar lengths: NaN (no CI) and negative lengths (a given CI that excludes its estimate, or
    # rounding at a zero-width interval such as AUC = 1, CI [1, 1]) are drawn as 0, never passed on
    fix = lambda e: None if e is None else np.where(np.isfinite(e), np.maximum(e, 0.0), 0.0)  # noqa: E731
    cmap = plt.get_cmap("viridis")
    cols = [cmap(v) for v in np.linspace(0.1, 0.85, len(t))]
    ax.plot(x, y, "-", color="0.6", lw=1, zorder=1)
    for i in range(len(t) - 1):
        if np.all(np.isfinite([x[i], y[i], x[i + 1], y[i + 1]])):
            ax.annotate("", xy=((x[i] + x[i + 1]) / 2, (y[i] + y[i + 1]) / 2), xytext=(x[i], y[i]),
                        arrowprops=dict(arrowstyle="->", color="0.5", lw=1))
    for i in range(len(t)):
        ax.errorbar(x[i], y[i], yerr=fix(yerr[:, i:i + 1]), xerr=None if xerr is None else fix(xerr[:, i:i + 1]),
                    fmt="o", ms=6, capsize=3, color=cols[i], zorder=3)
        ax.annotate(str(t["checkpoint"].iloc[i]), (x[i], y[i]), textcoords="offset points", xytext=(6, 6),
                    fontsize=8)
    score = str(t["score"].iloc[0])
    ax.set_xlabel(xlabel)
    ax.set_ylabel("localization: " + pretty_score(score).replace("\n", " "))
    ax.grid(alpha=0.3)
    if title is None:
        title = "Accuracy vs interpretability across checkpoints"
        if has_task and len(t) >= 3:
            from radlens.stats import rank_agreement

            ra = rank_agreement(x, y)
            rho = (f"{ra['spearman']:+.2f}" if np.isfinite(ra["spearman"]) else
                   "undefined (fewer than 3 finite points, or one axis constant)")
            title += f"\nSpearman ρ(task, localization) = {rho} over {ra['n']} checkpoints"
    ax.set_title(title)
    if own:
        if caption:
            fig.text(0.01, -0.02, _tradeoff_caption(t), fontsize=7, color="0.35", va="top")
        fig.tight_layout()
        return save_figure(fig, out_stem)
    return None


def _tradeoff_caption(t) -> str:
    meth = str(t["task_ci_method"].iloc[0]) if "task_ci_method" in t.columns else ""
    task = {"delong": "task AUC: DeLong 95% CI", "given": "task: CI as given"}.get(meth, "task: no CI")
    lo, hi = int(t["loc_n"].min()), int(t["loc_n"].max())
    n = f"{lo}" if lo == hi else f"{lo}–{hi}"
    text = (f"Error bars: {task}; localization: mean over samples, 95% patient-cluster bootstrap CI "
            f"(n = {n} samples per checkpoint).")
    if "task_note" in t.columns and t["task_metric"].notna().any():
        left = [f"{ck} ({note})" for ck, note, x in zip(t["checkpoint"], t["task_note"].fillna(""), t["task_metric"])
                if not np.isfinite(float(x)) and str(note)]
        if left:
            text += "\nNot drawn (no task value): " + "; ".join(left) + "."
    return text


def plot_tradeoff_panels(tables, out_stem, *, task_label: str = "task AUC", ncols: int = 3) -> list[Path]:
    """Several localization scores against the same task performance, one panel each.

    Parameters
    ----------
    tables : dict score -> DataFrame from :func:`radlens.localization.tradeoff.tradeoff_table`
    out_stem : path without suffix
    """
    plt = use_agg()
    items = list(tables.items())
    ncols = min(ncols, len(items))
    nrows = int(np.ceil(len(items) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.9 * nrows), squeeze=False)
    for ax, (sc, t) in zip(axes.ravel(), items):
        plot_tradeoff(t, None, task_label=task_label, title=pretty_score(sc).split("\n")[0], ax=ax)
        ax.set_ylabel("localization score " + pretty_score(sc).split("\n")[1])
    for ax in axes.ravel()[len(items):]:
        ax.axis("off")
    fig.suptitle("Accuracy vs interpretability across checkpoints")
    fig.text(0.01, -0.01, _tradeoff_caption(items[0][1]), fontsize=7, color="0.35", va="top")
    fig.tight_layout()
    return save_figure(fig, out_stem)


def plot_map_examples(images, maps, gt_masks, out_stem, *, titles: Sequence[str] | None = None,
                      ncols: int = 4, alpha: float = 0.5) -> list[Path]:
    """Maps over their images with the ground-truth outline (cyan), a visual check of orientation.
    Each map is min-max normalised for display.

    Parameters
    ----------
    images : sequence of ndarray (H, W) or None (grey background)
    maps : sequence of ndarray (H, W), already on the image grid
    gt_masks : sequence of bool ndarray (H, W)
    titles : one per panel, optional
    """
    plt = use_agg()
    n = len(maps)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, min(ncols, n), figsize=(2.4 * min(ncols, n), 2.5 * nrows), squeeze=False)
    for i, ax in enumerate(axes.ravel()):
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= n:
            ax.axis("off")
            continue
        m = np.asarray(maps[i], float)
        rng = float(np.nanmax(m) - np.nanmin(m))
        m = (m - np.nanmin(m)) / rng if rng > 0 else np.zeros_like(m)
        img = None if images is None else images[i]
        if img is not None:
            ax.imshow(img, cmap="gray")
        im = ax.imshow(m, cmap="inferno", vmin=0, vmax=1, alpha=alpha if img is not None else 1.0)
        ax.contour(np.asarray(gt_masks[i], float), levels=[0.5], colors="cyan", linewidths=1)
        if titles is not None:
            ax.set_title(str(titles[i]), fontsize=8)
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.6, label="map (min-max normalised per panel)")
    return save_figure(fig, out_stem)
