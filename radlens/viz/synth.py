"""Figures of phantom cohorts: a grid of example cases with their ROI outlines and planted attributes."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _pick_examples(df, n):
    """Lesion cases spread over the lesion sizes (quantiles of the radius, small to large), each size
    slot preferring a task combination not shown yet; then a lesion-free one."""
    picks = []
    les = df[df["has_lesion"] == 1].sort_values("lesion_radius", kind="stable").reset_index(drop=True)
    seen = set()
    n_les = min(n - 1, len(les))
    if n_les > 0:
        bounds = np.linspace(0, len(les), n_les + 1).round().astype(int)
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            slot = les.iloc[lo:max(hi, lo + 1)]
            keys = [(r.get("task_texture"), r.get("task_intensity"), r.get("task_shape")) for _, r in slot.iterrows()]
            j = next((i for i, k in enumerate(keys) if k not in seen), len(keys) // 2)
            seen.add(keys[j])
            picks.append(slot["case_id"].iloc[j])
    free = df[df["has_lesion"] == 0]
    if len(free):
        picks.append(free["case_id"].iloc[0])
    for cid in df["case_id"]:
        if len(picks) >= n:
            break
        if cid not in picks:
            picks.append(cid)
    return picks[:n]


def plot_phantom_examples(manifest, out_stem, n: int = 8, ncols: int = 4):
    """Grid of phantom cases (middle slice for volumes) with the ROI outline and planted attributes.

    Parameters
    ----------
    manifest : path
        A ``manifest.csv`` written by :func:`radlens.synth.make_cohort`.
    out_stem : path
        Output path without suffix; ``.png`` and ``.svg`` are written.
    n, ncols : int
        Number of panels and columns.

    Returns
    -------
    list of pathlib.Path
        The written files.
    """
    import pandas as pd
    import SimpleITK as sitk

    from radlens.viz.style import save_figure, use_agg

    plt = use_agg()
    manifest = Path(manifest)
    df = pd.read_csv(manifest)
    ids = _pick_examples(df, n)
    nrows = int(np.ceil(len(ids) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.4 * ncols, 3.2 * nrows), squeeze=False)
    # which texture class is the fine one: read from the data (a cohort may swap what class 1 means)
    les = df[df["has_lesion"] == 1]
    cl = les.groupby("task_texture")["texture_corr_len"].mean() if len(les) else pd.Series(dtype=float)
    fine_class = int(cl.idxmin()) if len(cl) == 2 else 0
    for ax in axes.ravel():
        ax.axis("off")
    for ax, cid in zip(axes.ravel(), ids):
        r = df.set_index("case_id").loc[cid]
        img = sitk.GetArrayFromImage(sitk.ReadImage(str(manifest.parent / r["image"]))).astype(float)
        if "mask" in df.columns and isinstance(r.get("mask"), str):
            roi = sitk.GetArrayFromImage(sitk.ReadImage(str(manifest.parent / r["mask"]))) > 0
        else:
            roi = np.zeros(img.shape, bool)
            x, y, w, h = (int(r[k]) for k in ("bbox_x", "bbox_y", "bbox_w", "bbox_h"))
            roi[y:y + h, x:x + w] = True
        if img.ndim == 3:
            z = int(round(r.get("center_z", img.shape[0] / 2)))
            img, roi = img[z], roi[z]
        if img.max() > 1.5:  # PNG stored as integers
            img = img / (255.0 if img.max() <= 255 else 65535.0)
        ax.imshow(img, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.contour(roi.astype(float), levels=[0.5], colors=["#ff7f0e"], linewidths=0.9)
        if int(r["has_lesion"]):
            title = (f"{cid}  r={r['lesion_radius']:.1f}px\n"
                     f"I={r['lesion_intensity']:.2f} ({'hi' if r['task_intensity'] else 'lo'})  "
                     f"corr={r['texture_corr_len']:.1f}px ({'fine' if int(r['task_texture']) == fine_class else 'coarse'})\n"
                     f"elong={r['elongation']:.1f} ({'long' if r['task_shape'] else 'round'})")
        else:
            title = f"{cid}  lesion-free\ncontrol ROI r={r['lesion_radius']:.1f}px\n "
        ax.set_title(title, fontsize=7, loc="left")
    fig.suptitle("Phantom cohort: planted lesions from the smallest to the largest, then a lesion-free control\n"
                 "(orange = ROI outline; intensity scale [0, 1])", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, out_stem)
