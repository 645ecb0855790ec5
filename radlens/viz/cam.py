"""CAM-drift figures (read artifacts, never recompute): overlay grid of maps A vs B, metric
distributions per architecture x method, drift along a checkpoint series, architecture rankings."""
from __future__ import annotations

import logging

import numpy as np

from radlens.errors import InputError

log = logging.getLogger(__name__)

LABELS = {
    "centroid_disp": "centroid displacement\n(fraction of image diagonal)",
    "pearson": "Pearson r\n(map A vs B)",
    "spearman": "Spearman ρ\n(map A vs B)",
    "entropy_delta": "Δ normalised entropy (B − A)",
    "gini_delta": "Δ Gini (B − A)",
}
METHOD_NAMES = {"layercam": "LayerCAM", "gradcam++": "Grad-CAM++", "gradcam": "Grad-CAM", "ig": "Integ. Gradients"}


def metric_label(m: str) -> str:
    """Axis label with units for a drift metric column."""
    if m in LABELS:
        return LABELS[m]
    if m.startswith("iou_top"):
        return f"IoU of top-{m[7:]}% masks"
    if m.startswith("iou_thr"):
        return f"IoU at threshold {m[7:]} × max"
    if m.startswith("topmass") and m.endswith("_delta"):
        return f"Δ top-{m[7:-6]}% mass share (B − A)"
    return m


def _slice(m, ref=None):
    """2-D view: the map itself, or for 3-D the axial slice through the reference map's peak."""
    if m.ndim == 2:
        return m
    r = m if ref is None else ref
    z = int(np.unravel_index(np.argmax(r), r.shape)[0])
    return m[z]


def roi_on_grid(roi, shape) -> np.ndarray:
    """Nearest-neighbour resampling of a boolean ROI onto a grid of ``shape`` (half-pixel centres):
    the ROI of a stored image on the model-input grid of maps made with geometry ``resize``.

    Parameters
    ----------
    roi : ndarray of bool, shape (H, W) or (D, H, W)
    shape : tuple of int, same length as ``roi.ndim``

    Returns
    -------
    ndarray of bool, shape ``shape``
    """
    roi = np.asarray(roi, bool)
    if roi.ndim != len(shape):
        raise InputError(f"roi_on_grid: ROI has {roi.ndim} dimensions, target grid {tuple(shape)}")
    idx = [np.minimum(((np.arange(o) + 0.5) * i / o).astype(int), i - 1) for i, o in zip(roi.shape, shape)]
    return roi[np.ix_(*idx)]


def _rois(manifest, ids, shape, geometry):
    """``{case_id: ROI on the map grid}`` for the cases that load; empty for crop geometry."""
    if manifest is None or geometry != "resize":
        return {}
    from radlens.io.images import load_case

    df = manifest
    if not hasattr(df, "set_index"):
        from radlens.io.manifest import read_manifest

        df = read_manifest(manifest, check_images=False).df
    rows = df.assign(case_id=df["case_id"].astype(str)).set_index("case_id", drop=False)
    out = {}
    for cid in ids:
        if cid not in rows.index:
            continue
        try:
            case = load_case(rows.loc[cid].to_dict())
            out[cid] = roi_on_grid(case.roi, shape)
        except Exception as exc:  # an outline is a help, not a requirement
            log.debug("overlay ROI of %s: %s", cid, exc)
    return out


def drift_annotation(drift, method: str, case_id: str) -> str:
    """The B panel's note for ``case_id`` and ``method``: its centroid displacement and top-k IoU
    from ``drift`` (the per-sample table, already restricted to the maps' architecture and task:
    a case id recurs across tasks), or "" when the table has no such row."""
    dm = drift[(drift["method"] == method) & (drift["case_id"] == case_id)]
    if not len(dm):
        return ""
    row = dm.iloc[0]
    iou = next((row[c] for c in dm.columns if c.startswith("iou_top")), np.nan)
    return f"disp {row['centroid_disp']:.2f}\nIoU {iou:.2f}"


def plot_overlay_grid(maps_npz, out_stem, *, methods=None, n: int = 6, drift=None, alpha: float = 0.5,
                      manifest=None):
    """Image, map A and map B of each method for ``n`` cases (rows), from a saved-maps ``.npz``.

    With ``drift`` (the per-sample table), cases are picked across the range of centroid
    displacement of the first method (least to most drift) and each B panel is annotated with
    the displacement and top-10 % IoU. With ``manifest`` (path or the manifest's DataFrame), the
    ROI is outlined (cyan) on every panel when the maps cover the whole resized image (geometry
    ``resize``; for ``crop`` maps the outline is left out and the title says so).

    Returns
    -------
    list of Path (PNG, SVG)
    """
    from radlens.io.artifacts import read_npz
    from radlens.viz.style import save_figure, use_agg

    arrays, meta = read_npz(maps_npz)
    if "case_id" not in arrays or "input_image" not in arrays:
        raise InputError(f"maps {str(maps_npz)!r} lack 'case_id'/'input_image'; written by radlens cam-drift?")
    ids = arrays["case_id"].astype(str)
    methods = methods or meta.get("methods") or sorted({k.split("__")[0] for k in arrays if k.endswith("__a")})
    idx = np.arange(ids.size)
    d = None
    if drift is not None and len(drift):
        sel = drift
        for col in ("architecture", "task"):
            if col in sel.columns and col in meta:
                sel = sel[sel[col] == meta[col]]
        d = sel[sel["method"] == methods[0]].set_index("case_id")
        d = d.loc[[c for c in ids if c in d.index]]
        if len(d):
            order = np.argsort(d["centroid_disp"].fillna(-1).to_numpy(), kind="stable")
            pick = order[np.unique(np.linspace(0, order.size - 1, min(n, order.size)).round().astype(int))]
            pos = {c: i for i, c in enumerate(ids)}
            idx = np.array([pos[c] for c in d.index[pick]])
    idx = idx[:n]
    plt = use_agg()
    ncol = 1 + 2 * len(methods)
    rois = _rois(manifest, [ids[i] for i in idx], arrays[f"{methods[0]}__a"].shape[1:],
                 str(meta.get("geometry", "resize")))
    roi_note = ("; cyan: ROI outline" if rois else
                "; ROI not outlined (maps of a crop)" if manifest is not None and meta.get("geometry") == "crop" else "")
    title = (f"CAM maps, checkpoint A vs B — {meta.get('architecture', '')} {meta.get('task', '')}".strip()
             + ("\n(cases ordered by centroid displacement" + roi_note + ")" if d is not None and len(d)
                else ("\n(" + roi_note[2:] + ")" if roi_note else ""))
             + ("\n3-D: axial slice through the peak of the first method's map A" if arrays["input_image"].ndim == 4
                else ""))
    # fixed header height in inches (title lines + two-line column titles) so a one-row grid keeps them apart
    header = 0.2 * (title.count("\n") + 1) + 0.5
    height = 1.45 * len(idx) + header + 0.1
    fig, axes = plt.subplots(len(idx), ncol, figsize=(1.45 * ncol + 0.9, height), squeeze=False,
                             gridspec_kw={"wspace": 0.04, "hspace": 0.06})
    fig.subplots_adjust(top=1 - header / height, bottom=0.1 / height)
    import matplotlib as mpl

    inferno, gray = mpl.colormaps["inferno"], mpl.colormaps["gray"]
    for r, i in enumerate(idx):
        img = arrays["input_image"][i]
        ref = arrays[f"{methods[0]}__a"][i]
        base = _slice(img, ref).astype(np.float64)
        lo, hi = float(base.min()), float(base.max())
        base_rgb = gray((base - lo) / (hi - lo) if hi > lo else np.zeros_like(base))[..., :3]
        axes[r, 0].imshow(base_rgb, interpolation="nearest")
        axes[r, 0].set_ylabel(ids[i], fontsize=7)
        roi = rois.get(ids[i])
        roi2 = None if roi is None else _slice(roi.astype(float), ref)
        if roi2 is not None and roi2.any():
            axes[r, 0].contour(roi2, levels=[0.5], colors="cyan", linewidths=0.8)
        for j, meth in enumerate(methods):
            for k, side in enumerate(("a", "b")):
                ax = axes[r, 1 + 2 * j + k]
                # the overlay is blended here (map over the grey image, opacity ``alpha``) and drawn as ONE
                # RGB image: matplotlib's per-axes compositing of two images made these grids the slowest
                # part of a CAM-drift run
                m = np.clip(_slice(arrays[f"{meth}__{side}"][i], ref), 0.0, 1.0)
                ax.imshow((1 - alpha) * base_rgb + alpha * inferno(m)[..., :3], interpolation="nearest")
                if roi2 is not None and roi2.any():
                    ax.contour(roi2, levels=[0.5], colors="cyan", linewidths=0.8)
                if side == "b" and d is not None and ids[i] in d.index:
                    note = drift_annotation(sel, meth, ids[i])
                    if note:
                        ax.text(0.02, 0.02, note, color="w", fontsize=6, transform=ax.transAxes, va="bottom")
                if r == 0:
                    ax.set_title(f"{METHOD_NAMES.get(meth, meth)}\n{'A (transfer)' if side == 'a' else 'B (fine-tuned)'}",
                                 fontsize=8)
        if r == 0:
            axes[r, 0].set_title("input", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(mpl.cm.ScalarMappable(norm=mpl.colors.Normalize(0, 1), cmap=inferno), ax=axes, shrink=0.5,
                 fraction=0.03, pad=0.02, label=f"map / map max (over the grey image at opacity {alpha:g})")
    fig.suptitle(title, fontsize=10, y=1 - 0.05 / height, va="top")
    return save_figure(fig, out_stem)


def plot_metric_distributions(drift, out_stem, metrics=None):
    """Box plots (with points) of drift metrics per architecture, one box per method; one row per task.

    Returns
    -------
    list of Path
    """
    from radlens.viz.style import save_figure, use_agg

    if metrics is None:
        cand = ["centroid_disp", "iou_top10", "pearson", "spearman", "topmass10_delta"]
        metrics = [m for m in cand if m in drift.columns]
        if "iou_top10" not in drift.columns:
            metrics += [c for c in drift.columns if c.startswith("iou_top")][:1]
    if not metrics:
        raise InputError("plot_metric_distributions: no metric columns found in the drift table")
    plt = use_agg()
    tasks = sorted(drift["task"].unique()) if "task" in drift.columns else [None]
    archs = sorted(drift["architecture"].unique()) if "architecture" in drift.columns else [None]
    meths = list(dict.fromkeys(drift["method"]))
    colors = plt.get_cmap("tab10")
    fig, axes = plt.subplots(len(tasks), len(metrics), figsize=(2.6 * len(metrics), 2.6 * len(tasks)),
                             squeeze=False)
    rng = np.random.default_rng(0)
    width = 0.8 / max(1, len(meths))
    for r, task in enumerate(tasks):
        dt = drift if task is None else drift[drift["task"] == task]
        for c, m in enumerate(metrics):
            ax = axes[r, c]
            for ai, arch in enumerate(archs):
                da = dt if arch is None else dt[dt["architecture"] == arch]
                for mi, meth in enumerate(meths):
                    v = da.loc[da["method"] == meth, m].to_numpy(float)
                    v = v[np.isfinite(v)]
                    if v.size == 0:
                        continue
                    x = ai + (mi - (len(meths) - 1) / 2) * width
                    bp = ax.boxplot(v, positions=[x], widths=width * 0.85, patch_artist=True, showfliers=False)
                    for patch in bp["boxes"]:
                        patch.set_facecolor(colors(mi))
                        patch.set_alpha(0.45)
                    ax.scatter(x + rng.uniform(-width / 4, width / 4, v.size), v, s=5, color=colors(mi), alpha=0.7,
                               zorder=3, label=METHOD_NAMES.get(meth, meth) if (ai == 0) else None)
            ax.set_xticks(range(len(archs)))
            ax.set_xticklabels([str(a) for a in archs])
            ax.set_ylabel(metric_label(m))
            if r == len(tasks) - 1:
                ax.set_xlabel("architecture")
            if task is not None and c == 0:
                ax.set_title(f"task: {task}", loc="left")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.suptitle("CAM drift between checkpoint A (transfer) and B (fine-tuned), per case", fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.9, 0.95))
    if handles:
        fig.legend(handles, labels, loc="center left", bbox_to_anchor=(0.9, 0.5), title="method", markerscale=2)
    return save_figure(fig, out_stem)


def plot_checkpoint_series(series, out_stem, metrics=("centroid_disp", "spearman")):
    """Median (IQR band) drift along the checkpoint series: vs the first checkpoint (solid) and vs
    the previous one (dashed), one line per architecture x method.

    Returns
    -------
    list of Path
    """
    from radlens.viz.style import save_figure, use_agg

    metrics = [m for m in metrics if m in series.columns]
    if not metrics:
        raise InputError("plot_checkpoint_series: none of the metrics are in the series table")
    plt = use_agg()
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.4 * len(metrics), 2.8), squeeze=False)
    colors = plt.get_cmap("tab10")
    groups = list(series.groupby(["architecture", "task", "method"]).groups)
    for c, m in enumerate(metrics):
        ax = axes[0, c]
        for gi, (arch, task, meth) in enumerate(groups):
            g = series[(series["architecture"] == arch) & (series["task"] == task) & (series["method"] == meth)]
            for ref, ls in (("first", "-"), ("previous", "--")):
                q = g[g["ref"] == ref].groupby("step")[m].quantile([0.25, 0.5, 0.75]).unstack()
                if q.empty:
                    continue
                lab = f"{arch} {METHOD_NAMES.get(meth, meth)}" + (f" ({task})" if series["task"].nunique() > 1 else "")
                ax.plot(q.index, q[0.5], ls, marker="o", ms=3, color=colors(gi), label=f"{lab}, vs {ref}")
                if ref == "first":
                    ax.fill_between(q.index, q[0.25], q[0.75], color=colors(gi), alpha=0.15)
        ax.set_xlabel("checkpoint step (0 = A)")
        ax.set_ylabel(metric_label(m).replace("map A vs B", "step vs reference"))
        ax.xaxis.get_major_locator().set_params(integer=True)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.suptitle("CAM drift along the checkpoint series\n(median; band: IQR vs first)", fontsize=10)
    fig.tight_layout(rect=(0, 0.12 + 0.03 * (len(labels) // 2), 1, 1))
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=7, frameon=False,
               title="solid: vs first checkpoint (A) · dashed: vs previous step", title_fontsize=7)
    return save_figure(fig, out_stem)


def plot_rankings(rankings, out_stem, metrics=None):
    """Architecture drift rank per method (rank 1 = most drift), one panel per metric and one row
    per task: crossing lines are ranking reversals between methods.

    Returns
    -------
    list of Path
    """
    from radlens.viz.style import save_figure, use_agg

    metrics = metrics or list(dict.fromkeys(rankings["metric"]))
    tasks = list(dict.fromkeys(rankings["task"]))
    plt = use_agg()
    fig, axes = plt.subplots(len(tasks), len(metrics), figsize=(2.5 * len(metrics), 2.7 * len(tasks)), squeeze=False)
    colors = plt.get_cmap("tab10")
    archs = sorted(rankings["architecture"].unique())
    meths = list(dict.fromkeys(rankings["method"]))
    for r, task in enumerate(tasks):
        for c, m in enumerate(metrics):
            ax = axes[r, c]
            g = rankings[(rankings["metric"] == m) & (rankings["task"] == task)]
            for ai, arch in enumerate(archs):
                ga = g[g["architecture"] == arch].set_index("method")["rank"].reindex(meths)
                ax.plot(range(len(meths)), ga.to_numpy(), marker="o", color=colors(ai), label=str(arch))
            ax.set_xticks(range(len(meths)))
            ax.set_xticklabels([METHOD_NAMES.get(x, x) for x in meths], rotation=30, ha="right")
            ax.set_yticks(range(1, len(archs) + 1))
            ax.set_ylim(len(archs) + 0.4, 0.6)
            ax.set_ylabel("drift rank (1 = most)" if c == 0 else "")
            ax.set_title(metric_label(m).replace("\n", " ").replace(" (fraction of image diagonal)", ""), fontsize=8)
            if c == 0 and len(tasks) > 1:
                ax.text(-0.45, 0.5, f"task: {task}", transform=ax.transAxes, rotation=90, va="center", fontsize=8)
    axes[0, -1].legend(title="architecture", fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle("Architecture drift rankings per method (crossings = ranking reversals)", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, out_stem)
