"""Planted truth of the demo at the feature level.

For each task, its **radiomic signature** is measured on the cohort's own radiomics: the features
whose values best separate the task's labels among the lesion cases (univariate ROC AUC, ranked by
``|AUC - 0.5|``). Whether fine-tuning moved each encoder toward that signature is then read from the
study's lens v2 ``compare`` outputs (per layer for a layer-wise lens): the task **alignment** (does
the task-specific change point at the features that separate the task's labels: Pearson r over
features between |association| and the signed specific change, permutation p over patients;
docs/lens.md §9c) and the task-specific **contrast** (how many of its top-10 features are of the planted
class / in the signature). ``recovered`` = either check passes at ``p < 0.05 / (2 x number of
layers)`` (Bonferroni over the two checks and the layers): alignment > 0 with its permutation p, or
the top-10 holding more of the task's signature than chance (hypergeometric p).

The top-10 is ranked by the task's *signed* specific change of emphasis (``association.csv``'s
``specific_change``, the profile the alignment correlates), not by the unsigned ``contrast``: a
task's specific change is its change minus the mean of the other tasks', so it carries their
specific features with the opposite sign, and ranked by magnitude the intensity task's first-order
features top every task (quick demo, seed 0: texture and shape top-10s were 0-1/10 of their planted
class by ``contrast``, 5-10/10 and 0-6/10 by the signed profile). Each top-10 count comes with its
chance level and a one-sided hypergeometric p (10 draws from the lens's features).
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
    man = read_manifest(out / "cohort" / "manifest.csv", check_images=False).df   # the study checked them
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
        res["recovery_by_task"] = recovery_by_task(res["recovery"])
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
    nothing is fitted twice. A layer-wise lens gives one row per layer; ``recovered`` is read with a
    Bonferroni correction over the architecture's layers and the two checks (``p < 0.05 / (2 n_layers)``),
    so looking at several layers or two statistics does not buy a recovery.
    """
    from radlens.io.artifacts import read_table

    rows = []
    for arch_dir in sorted(p for p in (out / "lens").iterdir() if p.is_dir()):
        dirs = _compare_dirs(arch_dir)
        if not dirs:
            continue
        level = 0.05 / (2 * len(dirs))  # two checks per layer
        for layer, cdir in dirs:
            al = read_table(cdir / "alignment.csv")
            con = read_table(cdir / "contrast.csv") if (cdir / "contrast.csv").exists() else None
            for r in al.to_dict("records"):
                a, p = float(r["alignment"]), float(r["alignment_p"])
                task = str(r["task"])
                want = PLANTED_CLASSES.get(task, ())
                sig = {d["feature"] for d in signatures.get(task, [])}
                row = {"architecture": arch_dir.name, "layer": layer, "task": task,
                       "alignment": round(a, 4), "alignment_p": round(p, 4), "level": round(level, 4),
                       "recovered_alignment": bool(a > 0 and p < level), "recovered_contrast": False}
                prof = _specific_profile(cdir, con, task)
                if prof is not None and len(prof):
                    feats = [str(f) for f in prof["feature"]]
                    top = feats[:TOP_K]
                    planted = [any(f"_{k}_" in f for k in want) for f in feats]
                    n_pl, n_sig = int(sum(planted[:TOP_K])), int(sum(f in sig for f in top))
                    row.update({"profile": prof.attrs["profile"],
                                "top10_planted": n_pl, "top10_planted_chance": round(len(top) * np.mean(planted), 2),
                                "top10_planted_p": round(_hypergeom_p(n_pl, len(feats), int(sum(planted)), len(top)), 4),
                                "top10_in_signature": n_sig,
                                "top10_in_signature_chance": round(len(top) * len(sig & set(feats)) / len(feats), 2),
                                "top10_in_signature_p": round(_hypergeom_p(n_sig, len(feats), len(sig & set(feats)),
                                                                           len(top)), 4)})
                    row["recovered_contrast"] = bool(row["top10_in_signature_p"] < level)
                row["recovered"] = row["recovered_alignment"] or row["recovered_contrast"]
                rows.append(row)
    return rows


def _specific_profile(cdir: Path, con, task: str):
    """The task's features, most positive signed specific change first (``association.csv``); the
    unsigned ``contrast.csv`` ranking when no association table exists. ``attrs['profile']`` says which."""
    from radlens.io.artifacts import read_table

    path = cdir / "association.csv"
    if path.exists():
        t = read_table(path)
        t = t[t["task"] == task]
        if len(t) and "specific_change" in t.columns:
            t = t.assign(_v=t["specific_change"].astype(float)).sort_values(["_v", "feature"], ascending=[False, True])
            t.attrs["profile"] = "specific_change"
            return t
    if con is None:
        return None
    t = con[con["task"] == task].sort_values(["contrast_rank", "feature"])
    t.attrs["profile"] = "contrast"
    return t


def _hypergeom_p(k: int, n_total: int, n_good: int, n_draw: int) -> float:
    """P(X >= k) for X ~ Hypergeometric(n_total features, n_good planted, n_draw drawn)."""
    from scipy.stats import hypergeom

    return float(hypergeom.sf(k - 1, n_total, n_good, n_draw))


def recovery_by_task(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per architecture x task: recovered at any layer (each layer already at its Bonferroni
    level), and the numbers of the layer with the smallest alignment p."""
    out: dict[tuple, dict[str, Any]] = {}
    hit: dict[tuple, bool] = {}
    for r in rows:
        key = (r["architecture"], r["task"])
        hit[key] = hit.get(key, False) or bool(r["recovered"])
        best = out.get(key)
        if best is None or r["alignment_p"] < best["alignment_p"]:
            out[key] = {k: r.get(k) for k in ("architecture", "task", "layer", "alignment", "alignment_p", "level",
                                              "top10_planted", "top10_planted_chance", "top10_in_signature",
                                              "top10_in_signature_p")}
    return [{**out[k], "recovered": hit[k]} for k in sorted(out)]
