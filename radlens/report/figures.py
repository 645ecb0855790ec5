"""Figures of the report itself (each written as PNG + SVG; the PNG path is returned)."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

_ARCH_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]


def case_grid(manifest_path, out_stem, n: int = 8) -> Path | None:
    """A grid of ``n`` cases (2-D, or the middle slice of 3-D) with their ROI outlined."""
    from radlens.io.images import load_case
    from radlens.io.manifest import read_manifest
    from radlens.viz.style import save_figure, use_agg

    plt = use_agg()
    df = read_manifest(manifest_path, check_images=False).df
    idx = np.linspace(0, len(df) - 1, min(n, len(df))).astype(int)
    fig, axes = plt.subplots(2, (len(idx) + 1) // 2, figsize=(2.2 * ((len(idx) + 1) // 2), 4.6), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, i in zip(axes.ravel(), idx):
        try:
            case = load_case(df.iloc[i].to_dict())
        except Exception as exc:  # show the others
            ax.set_title(f"{df.iloc[i]['case_id']}: not loadable", fontsize=7)
            log.debug("case grid: %s", exc)
            continue
        a, r = case.array, case.roi
        if a.ndim == 3:
            z = int(np.argmax(r.sum((1, 2)))) if r.any() else a.shape[0] // 2
            a, r = a[z], r[z]
        ax.imshow(a, cmap="gray")
        if r.any():
            ax.contour(r.astype(float), levels=[0.5], colors="#ffcc00", linewidths=0.8)
        ax.set_title(str(case.case_id), fontsize=8)
    fig.suptitle("Example cases (ROI outlined)")
    return save_figure(fig, out_stem)[0]


def training_figure(metrics: dict, out_stem) -> Path:
    """Left: validation AUC transfer vs fine-tuned per arch x task. Right: attribute decodability pre vs ft."""
    from radlens.viz.style import save_figure, use_agg

    plt = use_agg()
    archs = list(metrics.get("archs", {}))
    tasks = list(metrics.get("config", {}).get("tasks", []))
    fig, axes = plt.subplots(1, 1 + len(archs), figsize=(4.6 + 4.2 * len(archs), 3.6))
    ax = axes[0]
    w = 0.8 / max(1, 2 * len(archs))
    x = np.arange(len(tasks))
    for ai, arch in enumerate(archs):
        tm = metrics["archs"][arch]["tasks"]
        for ki, (kind, hatch) in enumerate((("tl", "//"), ("ft", ""))):
            vals = [tm.get(t, {}).get("val_auc", {}).get(kind, np.nan) for t in tasks]
            ax.bar(x + (2 * ai + ki - len(archs) + 0.5) * w, vals, w, color=_ARCH_COLORS[ai % 6],
                   alpha=0.55 if kind == "tl" else 0.95, hatch=hatch, edgecolor="white",
                   label=f"{arch} {'transfer' if kind == 'tl' else 'fine-tuned'}")
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_xticks(x, [t.replace("task_", "") for t in tasks])
    ax.set_ylim(0.0, 1.0)  # bars start at zero: their length is the AUC (an AUC under 0.3 stays visible)
    ax.set_ylabel("validation AUC")
    ax.set_title("Task performance (dashed: chance)")
    # below the axes: never covers a bar
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, frameon=False)
    for ai, arch in enumerate(archs):
        ax = axes[1 + ai]
        dec = metrics["archs"][arch].get("decodability", {})
        attrs = sorted({a for v in dec.values() for a in v})
        ckpts = list(dec)
        if not attrs:
            ax.axis("off")
            continue
        mat = np.array([[dec[c].get(a, np.nan) for a in attrs] for c in ckpts])
        im = ax.imshow(mat, cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
        ax.set_xticks(range(len(attrs)), [a.replace("_", "\n") for a in attrs], fontsize=7)
        ax.set_yticks(range(len(ckpts)), [c.replace("ft_task_", "fine-tuned ").replace("task_", "") for c in ckpts],
                      fontsize=8)
        for i in range(mat.shape[0]):
            for j in range(mat.shape[1]):
                ax.text(j, i, f"{mat[i, j]:.2f}", ha="center", va="center", fontsize=7)
        ax.set_title(f"{arch}: planted attribute decodability (R²)")
        fig.colorbar(im, ax=ax, fraction=0.04, label="held-out R²")
    fig.tight_layout()
    return save_figure(fig, out_stem)[0]


def enrichment_figure(table, out_stem) -> Path:
    """Observed vs chance fraction of expected-class features in each task's top-k."""
    from radlens.viz.style import save_figure, use_agg

    plt = use_agg()
    labels = [f"{r.architecture}\n{str(r.task).replace('task_', '')}" for r in table.itertuples()]
    x = np.arange(len(table))
    fig, ax = plt.subplots(figsize=(max(4.5, 0.9 * len(table) + 1.5), 3.4))
    from matplotlib.patches import Patch

    ax.bar(x, table["fraction"], color=["#2e7d32" if p < 0.05 else "#9e9e9e" for p in table["p_perm"]])
    ax.scatter(x, table["expected_fraction"], marker="_", s=600, color="black", zorder=3)
    for xi, r in zip(x, table.itertuples()):
        ax.text(xi, max(r.fraction, r.expected_fraction) + 0.03, f"p={r.p_perm:.3g}", ha="center", fontsize=7)
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylim(0, 1.12)
    ax.set_ylabel("share of top-k features in expected classes")
    ax.set_title("Planted truth: expected feature classes among the top-k shifts", pad=24)
    handles = [Patch(color="#2e7d32", label="observed, permutation p < 0.05"),
               Patch(color="#9e9e9e", label="observed, p ≥ 0.05"),
               ax.scatter([], [], marker="_", s=200, color="black", label="expected by chance")]
    # above the axes, under the title: never covers a bar or a tick
    ax.legend(handles=handles, fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, frameon=False)
    fig.tight_layout()
    return save_figure(fig, out_stem)[0]


def tradeoff_figure(table, out_stem) -> Path | None:
    """Task AUC (x) vs localization score (y): transfer -> fine-tuned arrows per architecture x task."""
    from radlens.viz.style import save_figure, use_agg

    if table is None or not len(table) or table["task_metric"].isna().all():
        return None
    plt = use_agg()
    fig, ax = plt.subplots(figsize=(7.6, 4.4))
    archs = list(dict.fromkeys(table["architecture"]))
    markers = ["o", "s", "^", "D", "v", "P"]
    tasks = list(dict.fromkeys(table["task"]))
    for (arch, task), sub in table.groupby(["architecture", "task"], sort=False):
        sub = sub.assign(role=sub["checkpoint"].str.rsplit("/", n=1).str[-1]).set_index("role")
        if not {"transfer", "finetuned"} <= set(sub.index):
            continue
        a, b = sub.loc["transfer"], sub.loc["finetuned"]
        c = _ARCH_COLORS[archs.index(arch) % 6]
        mk = markers[tasks.index(task) % 6]
        ax.errorbar([a.task_metric], [a.loc_mean], xerr=[[a.task_metric - a.task_low], [a.task_high - a.task_metric]],
                    yerr=[[a.loc_mean - a.loc_low], [a.loc_high - a.loc_mean]], fmt=mk, color=c, mfc="white",
                    ms=6, lw=0.8, alpha=0.8)
        ax.errorbar([b.task_metric], [b.loc_mean], xerr=[[b.task_metric - b.task_low], [b.task_high - b.task_metric]],
                    yerr=[[b.loc_mean - b.loc_low], [b.loc_high - b.loc_mean]], fmt=mk, color=c, ms=6, lw=0.8,
                    label=f"{arch} · {str(task).replace('task_', '')}")
        ax.annotate("", xy=(b.task_metric, b.loc_mean), xytext=(a.task_metric, a.loc_mean),
                    arrowprops={"arrowstyle": "->", "color": c, "lw": 1.2})
    score = str(table["score"].iloc[0]) if "score" in table.columns else "localization"
    meth = str(table["task_ci_method"].dropna().iloc[0]) if "task_ci_method" in table.columns and \
        table["task_ci_method"].notna().any() else ""
    ax.axvline(0.5, color="grey", lw=0.8, ls="--", zorder=0)
    if score == "auc":
        ax.axhline(0.5, color="grey", lw=0.8, ls="--", zorder=0)
    ax.set_xlabel("task AUC, held-out cases" + (" (DeLong 95% CI)" if meth == "delong" else " (95% CI)")
                  + "; open = transfer, filled = fine-tuned; dashed = chance")
    ax.set_ylabel(f"localization: {'pixel AUC' if score == 'auc' else score}\n(mean, patient-bootstrap 95% CI)")
    ax.set_title("Accuracy vs interpretability")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, title="arch · task",
              title_fontsize=7)  # outside the axes: never hides a point
    fig.tight_layout()
    return save_figure(fig, out_stem)[0]
