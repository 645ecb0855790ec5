"""Planted truth of the demo at the feature level.

For each task, its **radiomic signature** is measured on the cohort's own radiomics: the features
whose values best separate the task's labels among the lesion cases (univariate ROC AUC, ranked by
``|AUC - 0.5|``). Whether fine-tuning moved each encoder toward that signature is then read from the
study's lens v2 ``compare`` outputs (per layer for a layer-wise lens): the task **alignment** (does
the task-specific change point at the features that separate the task's labels; permutation p over
patients) and the task-specific **contrast** (how many of its top-10 features are of the planted
class / in the signature). ``recovered`` = alignment > 0 with p < 0.05 / (number of layers).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

TASKS = ("task_texture", "task_intensity", "task_shape")
TOP_K = 10
#: feature classes of each task's planted attribute
PLANTED_CLASSES = {"task_texture": ("glcm", "glrlm", "glszm", "gldm", "ngtdm"), "task_intensity": ("firstorder",),
                   "task_shape": ("shape2D", "shape")}


def radiomic_signature(radiomics, labels, k: int = TOP_K):
    """Features that best separate binary ``labels`` (univariate ROC AUC, ties by name).

    Parameters
    ----------
    radiomics : DataFrame, shape (n, p)
        Numeric feature columns only, rows aligned with ``labels``.
    labels : array of {0, 1}, shape (n,)
    k : int
        Signature size.

    Returns
    -------
    DataFrame: ``feature, auc, separation`` (``|auc - 0.5|``), the ``k`` best first.
    """
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    y = np.asarray(labels).astype(int)
    rows = []
    for c in radiomics.columns:
        v = radiomics[c].to_numpy(dtype=float)
        ok = np.isfinite(v)
        if ok.sum() < 4 or np.unique(y[ok]).size < 2 or np.nanstd(v) == 0:
            continue
        auc = float(roc_auc_score(y[ok], v[ok]))
        rows.append({"feature": c, "auc": auc, "separation": abs(auc - 0.5)})
    t = pd.DataFrame(rows, columns=["feature", "auc", "separation"])
    return t.sort_values(["separation", "feature"], ascending=[False, True]).head(k).reset_index(drop=True)


def planted_truth(out) -> dict[str, Any]:
    """Signature per task and, per architecture x task, whether the lens recovered it.

    Returns
    -------
    dict: ``signatures{task: [{feature, auc}]}``, ``recovery`` (list of rows, or empty) and
    ``status`` (``"ok"`` or why the lens part was not computed).
    """
    import pandas as pd

    from radlens.io.artifacts import read_table
    from radlens.io.manifest import read_manifest

    out = Path(out)
    rad_path = out / "radiomics" / "radiomics.parquet"
    if not rad_path.exists():
        return {"status": "no radiomics table", "signatures": {}, "recovery": []}
    rad = read_table(rad_path)
    man = read_manifest(out / "cohort" / "manifest.csv").df
    df = man.merge(rad, on="case_id", how="inner")
    feats = [c for c in rad.columns if c != "case_id" and pd.api.types.is_numeric_dtype(rad[c])]
    sig = {}
    for task in TASKS:
        sub = df[df[task].notna()]
        s = radiomic_signature(sub[feats], sub[task].to_numpy(dtype=float))
        sig[task] = [{"feature": r.feature, "auc": round(float(r.auc), 4)} for r in s.itertuples()]
    res: dict[str, Any] = {"signatures": sig, "recovery": [], "status": "ok"}
    try:
        from radlens.lens import crosstask  # noqa: F401  (lens v2, issue 11)
    except ImportError:
        res["status"] = "lens v2 task alignment (radlens.lens.crosstask) is not available in this radlens"
        return res
    try:
        res["recovery"] = _alignment(out, man, sig)
    except Exception as exc:  # noqa: BLE001 - the signatures stay valid
        log.warning("planted truth: lens alignment failed: %s", exc)
        res["status"] = f"lens alignment failed: {type(exc).__name__}: {exc}"
    return res


def _compare_dirs(arch_dir: Path) -> list[tuple[str | None, Path]]:
    """The study's lens-v2 compare folders of one architecture: ``[(None, compare/)]`` for a
    single-layer lens, ``[(layer, compare/<layer>/), ...]`` (in depth order) for a layer-wise one."""
    import json

    cmp = arch_dir / "compare"
    index = cmp / "layers.json"
    if index.exists():
        layers = [str(x) for x in json.loads(index.read_text(encoding="utf-8")).get("layers", [])]
        return [(layer, cmp / layer) for layer in layers if (cmp / layer / "alignment.csv").exists()]
    return [(None, cmp)] if (cmp / "alignment.csv").exists() else []


def _alignment(out: Path, man, signatures: dict) -> list[dict[str, Any]]:
    """Lens v2 task alignment and task-specific contrast of every architecture x task (x layer).

    Reads what the study's ``compare`` stage wrote (``lens/<arch>/compare[/<layer>]/alignment.csv``
    and ``contrast.csv``: the lens, the fine-tuned embeddings and the manifest's task labels), so
    nothing is fitted twice. A layer-wise lens gives one row per layer; ``recovered`` is then read
    with a Bonferroni correction over the architecture's layers (alignment > 0 and
    ``p < 0.05 / n_layers``), so looking at several layers does not buy a recovery.
    """
    from radlens.io.artifacts import read_table

    rows = []
    for arch_dir in sorted(p for p in (out / "lens").iterdir() if p.is_dir()):
        dirs = _compare_dirs(arch_dir)
        if not dirs:
            continue
        level = 0.05 / len(dirs)
        for layer, cdir in dirs:
            al = read_table(cdir / "alignment.csv")
            con = read_table(cdir / "contrast.csv") if (cdir / "contrast.csv").exists() else None
            for r in al.to_dict("records"):
                a, p = float(r["alignment"]), float(r["alignment_p"])
                task = str(r["task"])
                top = (con[con["task"] == task].sort_values("contrast_rank").head(TOP_K)
                       if con is not None else None)
                want = PLANTED_CLASSES.get(task, ())
                kind = (float(np.mean([any(f"_{k}_" in str(f) for k in want) for f in top["feature"]]))
                        if top is not None and len(top) else float("nan"))
                sig = {d["feature"] for d in signatures.get(task, [])}
                rows.append({"architecture": arch_dir.name, "layer": layer, "task": task,
                             "alignment": round(a, 4), "alignment_p": round(p, 4), "level": round(level, 4),
                             "contrast_top10_planted_share": round(kind, 3),
                             "contrast_top10_in_signature": (int(sum(f in sig for f in top["feature"]))
                                                             if top is not None else 0),
                             "recovered": bool(a > 0 and p < level)})
    return rows
