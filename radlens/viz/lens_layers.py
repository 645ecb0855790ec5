"""Figures of the layer-wise radiomic lens (read ``layer_features.csv`` / ``layer_summary.csv`` from
``compare --layers``, never recompute): layer × feature-class heatmaps per task (and for the
task-specific contrast and the common change), CKA and held-out R² against depth with CIs."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from radlens.viz.style import save_figure, use_agg

_CLASS_ORDER = ("shape", "firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm")
_KIND_TITLE = {"task": "change after fine-tuning for {task}", "contrast": "task-specific change: {task}",
               "common": "common change (mean over tasks)"}


def _panels(feats) -> list[tuple[str, str]]:
    tasks = list(dict.fromkeys(feats.loc[feats["kind"] == "task", "task"]))
    panels = [("task", t) for t in tasks]
    ctasks = list(dict.fromkeys(feats.loc[feats["kind"] == "contrast", "task"]))
    panels += [("contrast", t) for t in ctasks]
    if (feats["kind"] == "common").any():
        panels.append(("common", ""))
    return panels


def layer_class_heatmap(feats, out_stem, sig_level: float = 0.05) -> list[Path]:
    """Layer (rows, shallow on top) × radiomic feature class (columns), one panel per task (then the
    task-specific contrasts and the common change when present). Colour: mean z of the class's
    features (headline change in null SDs); number in a cell: features of the class with q < sig_level.

    Parameters
    ----------
    feats : DataFrame   ``layer_features.csv`` (layer, layer_index, kind, task, feature_class, z, q).
    out_stem : path   PNG + SVG stem.
    """
    plt = use_agg()
    from matplotlib.colors import TwoSlopeNorm

    layers = list(feats.sort_values("layer_index", kind="stable")["layer"].drop_duplicates())
    present = set(feats["feature_class"])
    classes = [c for c in _CLASS_ORDER if c in present] + sorted(present - set(_CLASS_ORDER))
    nfeat = feats[feats["kind"] == "task"].drop_duplicates("feature").groupby("feature_class").size()
    panels = _panels(feats)
    mats = []
    for kind, task in panels:
        d = feats[(feats["kind"] == kind) & (feats["task"].fillna("").astype(str) == task)]
        z = d.pivot_table(index="layer", columns="feature_class", values="z", aggfunc="mean")
        k = d.assign(sig=d["q"] < sig_level).pivot_table(index="layer", columns="feature_class", values="sig",
                                                         aggfunc="sum")
        mats.append((z.reindex(index=layers, columns=classes).to_numpy(float),
                     k.reindex(index=layers, columns=classes).to_numpy(float)))
    allz = np.concatenate([m[0].ravel() for m in mats])
    allz = allz[np.isfinite(allz)]
    vmax = float(np.quantile(np.abs(allz), 0.98)) if allz.size else 1.0
    vmax = vmax if vmax > 0 else 1.0
    ncol = min(3, len(panels))
    nrow = int(np.ceil(len(panels) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(0.55 * len(classes) * ncol + 2.2 * ncol,
                                                  0.42 * len(layers) * nrow + 1.3 * nrow + 0.6),
                             squeeze=False)
    im = None
    for n_ax, (ax, (kind, task), (Z, K)) in enumerate(zip(axes.ravel(), panels, mats)):
        im = ax.imshow(Z, aspect="auto", cmap="RdBu_r", norm=TwoSlopeNorm(0.0, -vmax, vmax), interpolation="none")
        for i in range(Z.shape[0]):
            for j in range(Z.shape[1]):
                if np.isfinite(K[i, j]) and K[i, j] > 0:
                    ax.text(j, i, f"{int(K[i, j])}", ha="center", va="center", fontsize=7,
                            color="white" if abs(Z[i, j]) > 0.6 * vmax else "black")
        ax.set_xticks(range(len(classes)))
        ax.set_xticklabels([f"{c} ({int(nfeat.get(c, 0))})" for c in classes], rotation=40, ha="right", fontsize=7)
        ax.set_yticks(range(len(layers)))
        ax.set_yticklabels(layers, fontsize=7)
        if n_ax % ncol == 0:
            ax.set_ylabel("encoder layer (shallow → deep)")
        ax.set_xlabel("radiomic feature class (number of features)")
        ax.set_title(_KIND_TITLE[kind].format(task=task), fontsize=8)
    for ax in axes.ravel()[len(panels):]:
        ax.axis("off")
    title = f"Where in the encoder the radiomic sensitivity moved (numbers: features with q < {sig_level:g})"
    if sum(k == "contrast" for k, _ in panels) == 2:
        title += "\nwith two tasks the two task-specific changes are mirror images (identical scores)"
    top = 1 - (0.8 + 0.18 * title.count("\n")) / fig.get_figheight()
    fig.subplots_adjust(left=0.08, right=0.9, wspace=0.45, hspace=0.9, top=top)
    cax = fig.add_axes([0.92, 0.2, 0.012, 0.6])
    cb = fig.colorbar(im, cax=cax)
    cb.set_label("mean z of the class's features (null SDs)\nchange panels: > 0 more, < 0 less emphasis", fontsize=7)
    fig.suptitle(title, fontsize=9)
    return save_figure(fig, out_stem)


def depth_curves(summ, out_stem) -> list[Path]:
    """Left: linear CKA between pre and post embeddings per layer with its bootstrap CI, one line per
    task (1 = unchanged up to a rotation and a global scale). Right: held-out R² of the lens per
    layer, pre (black, dashed) and post per task, with bootstrap CIs over evaluation cases.

    Parameters
    ----------
    summ : DataFrame   ``layer_summary.csv`` (layer, layer_index, task, cka, cka_ci_low, ...).
    """
    plt = use_agg()
    s = summ.sort_values(["task", "layer_index"], kind="stable")
    layers = list(summ.sort_values("layer_index", kind="stable")["layer"].drop_duplicates())
    x = np.arange(len(layers))
    tasks = list(dict.fromkeys(s["task"]))
    cmap = plt.get_cmap("tab10")
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(4.0 + 0.45 * len(layers) * 2, 3.4))
    off = (np.arange(len(tasks)) - (len(tasks) - 1) / 2) * 0.06

    def band(ax, xs, d, col, color, **kw):
        y = d[col].to_numpy(float)
        lo = d.get(f"{col}_ci_low", d[col]).to_numpy(float)
        hi = d.get(f"{col}_ci_high", d[col]).to_numpy(float)
        err = np.vstack([y - lo, hi - y]).clip(0)
        ax.errorbar(xs, y, yerr=np.where(np.isfinite(err), err, 0), color=color, capsize=3, marker="o", ms=4, **kw)

    for k, t in enumerate(tasks):
        d = s[s["task"] == t].set_index("layer").reindex(layers)
        band(a1, x + off[k], d, "cka", cmap(k % 10), label=t)
        band(a2, x + off[k], d, "r2_post_heldout", cmap(k % 10), label=f"post: {t}")
    d0 = s[s["task"] == tasks[0]].set_index("layer").reindex(layers)
    band(a2, x, d0, "r2_pre_heldout", "black", linestyle="--", label="pre")
    for ax in (a1, a2):
        ax.set_xticks(x)
        ax.set_xticklabels(layers, rotation=30, ha="right", fontsize=7)
        ax.set_xlabel("encoder layer (shallow → deep)")
    a1.set_ylabel("linear CKA, pre vs post (1 = unchanged)")
    a1.set_ylim(min(0.0, float(np.nanmin(s["cka_ci_low"].fillna(s["cka"])) - 0.05)), 1.05)
    a1.set_title("How much each layer's representation changed\n(bars: 95% patient-bootstrap CI)", fontsize=8)
    a2.set_ylabel("held-out R² of the radiomic lens")
    a2.set_title("How much of each layer the radiomics explain\n(bars: 95% bootstrap CI over held-out cases)",
                 fontsize=8)
    for ax in (a1, a2):
        ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return save_figure(fig, out_stem)
