"""Figures of the pooling probe; each reads the result table (``probe.parquet``), never recomputes.

* :func:`plot_panel`     AUC by pooling × footprint size with CIs, one panel per perturbation type
* :func:`plot_size_gap`  small- vs large-lesion AUC and the gap, per finding and pooling
* :func:`plot_jitter`    ROI-pooling AUC vs box jitter, whole-image poolings as reference
* :func:`plot_pre_post`  per-cell AUC difference post − pre with CIs
* :func:`probe_figures`  all that the table supports, saved as PNG + SVG
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from radlens.viz.style import save_figure, use_agg

POOL_COLORS = {"cls": "#1f77b4", "global": "#1f77b4", "mean": "#ff7f0e", "roi": "#2ca02c"}
POOL_LABEL = {"cls": "CLS", "global": "global avg", "mean": "patch mean", "roi": "ROI (patch-local)"}
_MARKERS = ["o", "s", "^", "D", "v"]


def _err(d):
    e = np.vstack([d["estimate"] - d["ci_low"], d["ci_high"] - d["estimate"]])
    return np.clip(np.nan_to_num(e), 0, None)


def plot_panel(table, title: str | None = None):
    """AUC vs footprint size per perturbation type (columns) and checkpoint (rows)."""
    plt = use_agg()
    t = table[(table["analysis"] == "panel") & (table["metric"] == "auc")]
    if t.empty:
        return None
    kinds = list(dict.fromkeys(t["perturbation"]))
    ckpts = list(dict.fromkeys(t["checkpoint"]))
    fig, axes = plt.subplots(len(ckpts), len(kinds), figsize=(3.1 * len(kinds), 2.8 * len(ckpts)),
                             squeeze=False, sharey=True)
    for r, ck in enumerate(ckpts):
        for c, kind in enumerate(kinds):
            ax = axes[r, c]
            d0 = t[(t["checkpoint"] == ck) & (t["perturbation"] == kind)]
            strengths = sorted(d0["strength"].unique())
            for si, s in enumerate(strengths):
                for pool in [p for p in ("cls", "global", "mean", "roi") if p in set(d0["pooling"])]:
                    d = d0[(d0["strength"] == s) & (d0["pooling"] == pool)].sort_values("footprint_frac")
                    x = d["footprint_frac"].to_numpy() * (1 + 0.02 * (si - (len(strengths) - 1) / 2))
                    lab = POOL_LABEL.get(pool, pool) + (f", s={s:g}" if len(strengths) > 1 else "")
                    ax.errorbar(x, d["estimate"], yerr=_err(d), color=POOL_COLORS.get(pool),
                                marker=_MARKERS[si % len(_MARKERS)], ms=4, capsize=2, lw=1.2,
                                alpha=1.0 if si == len(strengths) - 1 else 0.55, label=lab)
            ax.axhline(0.5, color="grey", lw=0.8, ls=":")
            ax.set_xscale("log")
            fps = sorted(d0["footprint_frac"].unique())
            ax.set_xticks(fps)
            ax.set_xticklabels([f"{f:g}" for f in fps])
            ax.minorticks_off()
            ax.set_ylim(0.4, 1.02)
            ax.set_title(f"{kind}" + (f" [{ck}]" if len(ckpts) > 1 else ""))
            if r == len(ckpts) - 1:
                ax.set_xlabel("footprint diameter (fraction of image side)")
            if c == 0:
                ax.set_ylabel("probe AUC (95% CI)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.suptitle(title or "Perturbation panel: does the signal survive pooling?", y=1.0)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.legend(handles, labels, loc="lower center", ncol=min(6, len(labels)), fontsize=7,
               frameon=False)
    return fig


def plot_size_gap(table, title: str | None = None):
    """Left: AUC of small vs large lesions per (finding, pooling); right: the gap with CI."""
    plt = use_agg()
    t = table[table["analysis"].isin(["lesion_image", "lesion_box"]) & (table["metric"] == "auc")
              & table["stratum"].isin(["small", "large"])]
    g = table[table["analysis"].isin(["lesion_image_gap", "lesion_box_gap"])]
    if t.empty:
        return None
    ckpts = list(dict.fromkeys(t["checkpoint"]))
    fig, axes = plt.subplots(len(ckpts), 2, figsize=(9.5, 3.0 * len(ckpts)), squeeze=False,
                             gridspec_kw={"width_ratios": [1.4, 1]})
    for r, ck in enumerate(ckpts):
        tc = t[t["checkpoint"] == ck]
        keys = list(dict.fromkeys(zip(tc["finding"], tc["analysis"], tc["pooling"])))
        labels = [f"{f}\n{'box' if a == 'lesion_box' else 'image'}·{POOL_LABEL.get(p, p)}"
                  for f, a, p in keys]
        x = np.arange(len(keys))
        ax = axes[r, 0]
        for off, stratum, color in ((-0.18, "small", "#d62728"), (0.18, "large", "#7f7f7f")):
            d = [tc[(tc["finding"] == f) & (tc["analysis"] == a) & (tc["pooling"] == p)
                    & (tc["stratum"] == stratum)] for f, a, p in keys]
            est = np.array([v["estimate"].iloc[0] if len(v) else np.nan for v in d])
            lo = np.array([v["ci_low"].iloc[0] if len(v) else np.nan for v in d])
            hi = np.array([v["ci_high"].iloc[0] if len(v) else np.nan for v in d])
            ax.bar(x + off, est - 0.5, bottom=0.5, width=0.34, color=color, label=f"{stratum} lesions")
            ax.errorbar(x + off, est, yerr=np.clip(np.nan_to_num(np.vstack([est - lo, hi - est])), 0, None),
                        fmt="none", ecolor="black", capsize=2, lw=0.9)
        ax.axhline(0.5, color="grey", lw=0.8, ls=":")
        ax.set_xticks(x)
        ax.set_xticklabels(labels, fontsize=7)
        ax.set_ylim(0.3, 1.02)
        ax.set_ylabel("probe AUC (95% CI)")
        ax.set_title("AUC by lesion size" + (f" [{ck}]" if len(ckpts) > 1 else ""))
        ax.legend(fontsize=7, frameon=False, loc="lower right")
        ax = axes[r, 1]
        gc = g[g["checkpoint"] == ck]
        d = [gc[(gc["finding"] == f) & (gc["analysis"] == a + "_gap") & (gc["pooling"] == p)]
             for f, a, p in keys]
        est = np.array([v["estimate"].iloc[0] if len(v) else np.nan for v in d])
        lo = np.array([v["ci_low"].iloc[0] if len(v) else np.nan for v in d])
        hi = np.array([v["ci_high"].iloc[0] if len(v) else np.nan for v in d])
        ax.bar(x, est, color=[POOL_COLORS.get(p, "#999") for _, _, p in keys], width=0.6)
        ax.errorbar(x, est, yerr=np.clip(np.nan_to_num(np.vstack([est - lo, hi - est])), 0, None),
                    fmt="none", ecolor="black", capsize=3, lw=0.9)
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xticks(x)
        ax.set_xticklabels(labels, fontsize=7)
        ax.set_ylabel("AUC gap, large − small (95% CI)")
        ax.set_title("small-lesion gap")
    fig.suptitle(title or "Size-stratified lesion probe", y=1.0)
    fig.tight_layout()
    return fig


def plot_jitter(table, title: str | None = None):
    """ROI-pooling AUC vs box jitter level (CI band) per perturbation / finding and checkpoint;
    dashed: the whole-image poolings' AUC of the same cell (independent of the box)."""
    plt = use_agg()
    t = table[table["analysis"].isin(["jitter", "lesion_box_jitter"]) & (table["metric"] == "auc")]
    if t.empty:
        return None
    ckpts = list(dict.fromkeys(t["checkpoint"]))
    fig, axes = plt.subplots(1, len(ckpts), figsize=(5.2 * len(ckpts), 3.4), squeeze=False, sharey=True)
    cmap = plt.get_cmap("tab10")
    for c, ck in enumerate(ckpts):
        ax = axes[0, c]
        tc = t[t["checkpoint"] == ck]
        curves = list(dict.fromkeys(zip(tc["analysis"], tc["perturbation"].fillna(""),
                                        tc["footprint_frac"].fillna(-1), tc["finding"].fillna(""))))
        for i, (a, kind, fp, finding) in enumerate(curves):
            d = tc[(tc["analysis"] == a) & (tc["perturbation"].fillna("") == kind)
                   & (tc["footprint_frac"].fillna(-1) == fp) & (tc["finding"].fillna("") == finding)]
            d = d.sort_values("jitter")
            lab = f"{kind} d={fp:g}" if a == "jitter" else f"lesion box: {finding}"
            col = cmap(i % 10)
            ax.plot(d["jitter"], d["estimate"], marker="o", ms=3.5, color=col, label=lab)
            ax.fill_between(d["jitter"], d["ci_low"], d["ci_high"], color=col, alpha=0.15, lw=0)
            if a == "jitter":
                ref = table[(table["analysis"] == "panel") & (table["metric"] == "auc")
                            & (table["checkpoint"] == ck) & (table["perturbation"] == kind)
                            & (table["footprint_frac"] == fp) & (table["pooling"] != "roi")
                            & (table["strength"] == d["strength"].iloc[0])]
                for _, rr in ref.iterrows():
                    ax.axhline(rr["estimate"], color=col, lw=0.9,
                               ls="--" if rr["pooling"] in ("cls", "global") else ":")
        levels = sorted(tc["jitter"].unique())
        ious = [tc[tc["jitter"] == lv]["mean_iou"].mean() for lv in levels]
        ax.set_xticks(levels)
        ax.set_xticklabels([f"{lv:g}\nIoU {iou:.2f}" for lv, iou in zip(levels, ious)], fontsize=7)
        ax.axhline(0.5, color="grey", lw=0.8, ls=":")
        ax.set_ylim(min(0.4, np.floor(np.nanmin(t["ci_low"].to_numpy(float)) * 10) / 10), 1.02)
        ax.set_xlabel("box jitter level (shift ≤ level × box size; scale ≤ ×(1+level))")
        if c == 0:
            ax.set_ylabel("ROI-pooling AUC (95% CI band)")
        ax.set_title(f"Box-jitter sensitivity [{ck}]")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.suptitle(title or "", y=1.0)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.legend(handles, labels, loc="lower center", ncol=min(5, len(labels)), fontsize=7,
               frameon=False, bbox_to_anchor=(0.45, 0.0))
    fig.text(0.99, 0.01, "dashed: CLS/global of the same cell\ndotted: patch mean", ha="right",
             fontsize=7, color="dimgrey")
    return fig


def plot_pre_post(table, title: str | None = None):
    """Per-cell AUC difference (post − pre) with CIs by pooling; ★ marks BH q < 0.05."""
    plt = use_agg()
    t = table[(table["analysis"] == "panel_pre_post")]
    if t.empty:
        return None
    cells = list(dict.fromkeys(zip(t["perturbation"], t["footprint_frac"], t["strength"])))
    pools = [p for p in ("cls", "global", "mean", "roi") if p in set(t["pooling"])]
    fig, ax = plt.subplots(figsize=(6.0, 0.32 * len(cells) + 1.4))
    y = np.arange(len(cells))
    for k, pool in enumerate(pools):
        off = (k - (len(pools) - 1) / 2) * 0.22
        d = [t[(t["perturbation"] == a) & (t["footprint_frac"] == b) & (t["strength"] == c)
               & (t["pooling"] == pool)] for a, b, c in cells]
        est = np.array([v["estimate"].iloc[0] if len(v) else np.nan for v in d])
        lo = np.array([v["ci_low"].iloc[0] if len(v) else np.nan for v in d])
        hi = np.array([v["ci_high"].iloc[0] if len(v) else np.nan for v in d])
        q = np.array([v["q"].iloc[0] if len(v) else np.nan for v in d])
        ax.errorbar(est, y + off, xerr=np.clip(np.nan_to_num(np.vstack([est - lo, hi - est])), 0, None),
                    fmt="o", ms=3.5, color=POOL_COLORS.get(pool), capsize=2, lw=1,
                    label=POOL_LABEL.get(pool, pool))
        for yy, e, qq in zip(y + off, est, q):
            if np.isfinite(qq) and qq < 0.05:
                ax.annotate("★", (e, yy), xytext=(4, -3), textcoords="offset points", fontsize=7)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(y)
    ax.set_yticklabels([f"{a} d={b:g} s={c:g}" for a, b, c in cells], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("AUC difference, post − pre (95% CI)")
    ax.set_title(title or "Pre vs post fine-tuning, per panel cell (★ BH q < 0.05)")
    ax.set_ylabel("panel cell (perturbation, footprint d, strength s)")
    # right of the axes: never covers a point
    ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="pooling",
              title_fontsize=7)
    fig.tight_layout()
    return fig


def probe_figures(table, out_dir, prefix: str = "probe") -> dict[str, Path]:
    """Render every figure the table supports to ``<out_dir>/<prefix>_<name>.png`` (+ ``.svg``)."""
    out_dir = Path(out_dir)
    paths = {}
    for name, fn in (("panel", plot_panel), ("size_gap", plot_size_gap), ("jitter", plot_jitter),
                     ("pre_post", plot_pre_post)):
        fig = fn(table)
        if fig is not None:
            paths[name] = save_figure(fig, out_dir / f"{prefix}_{name}")[0]
    return paths
