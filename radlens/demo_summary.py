"""``demo.json``: the key numbers of a ``radlens demo`` run, read back from its artefacts.

Schema (``schema: 1``; described for readers in ``docs/synth.md``)::

    quick, seed, seconds{cohort, training, study, total}, cpu_seconds_main_process, cpu_seconds_all_processes,
    cpus, peak_rss_mb (largest single process), peak_memory_mb (summed PSS of all the demo's processes, sampled)
    thresholds{ft_auc, tl_gap, pointing_game, pixel_auc, sanity_max_spearman}
    cohort{n_cases, n_lesion, image_size, ranges, lesion_free_fraction}
    training{n_cases, n_train, n_val, image_shape, archs}   (what scripts/readme.py reads)
    auc[arch][task] = {tl, ft, learned, tl_lower}             validation AUCs of both checkpoints
    localization = [{architecture, task, method, checkpoint, n, pointing_game, pixel_auc, mass_inside,
                     chance_pointing_game, passed}]             lesion cases both checkpoints call positive
    sanity = [{architecture, task, method, model, spearman_median, passed, excluded_from_rankings}]
    ranking_exclusions = [{architecture, task, method, models_failed, spearman_median_max, reason}]
    planted_truth = [{architecture, task, ...}] or {"status": "...why not computed..."}
    checks{name: bool}, warnings[str]

Every number comes from a file the study wrote (``models/training.json``, ``cam/maps*.npz``,
``cam/drift.sanity.parquet``, ``cam/drift.ranking_exclusions.parquet``, ``lens/``); the
localization scores are :func:`radlens.localization.scores.score_map` on the saved maps.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

SCHEMA = 1
#: the issue's acceptance thresholds, recorded with the numbers
THRESHOLDS = {"ft_auc": 0.85, "tl_gap": 0.02, "pointing_game": 0.6, "pixel_auc": 0.75, "sanity_max_spearman": 0.5}


def _training(out: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    from radlens.io.artifacts import read_json

    p = out / "models" / "training.json"
    if not p.exists():
        return {}, {}
    m = read_json(p)
    info = {k: m.get(k) for k in ("n_cases", "n_train", "n_val", "image_shape")}
    info["archs"] = sorted(m.get("archs", {}))
    res: dict[str, Any] = {}
    for arch, am in m.get("archs", {}).items():
        res[arch] = {}
        for task, tm in am.get("tasks", {}).items():
            tl, ft = float(tm["val_auc"]["tl"]), float(tm["val_auc"]["ft"])
            res[arch][task] = {"tl": round(tl, 4), "ft": round(ft, 4), "learned": bool(ft >= THRESHOLDS["ft_auc"]),
                               "tl_lower": bool(ft - tl >= THRESHOLDS["tl_gap"])}
    return info, res


def _localization(out: Path) -> list[dict[str, Any]]:
    """Pointing game, pixel AUC and mass inside the lesion of every saved map (lesion cases only)."""
    from radlens.io.artifacts import read_npz
    from radlens.io.images import load_case
    from radlens.io.manifest import read_manifest
    from radlens.localization.scores import ground_truth, score_map

    man = read_manifest(out / "cohort" / "manifest.csv", check_images=False)   # the study checked them
    rows = man.df.set_index("case_id", drop=False)
    masks: dict[str, Any] = {}   # case -> GroundTruth: its components and boxes found once, not per map
    res = []
    for f in sorted((out / "cam").glob("maps*.npz")):
        arrays, meta = read_npz(f)
        ids = [str(c) for c in arrays["case_id"]]
        keep = [i for i, c in enumerate(ids) if c in rows.index and int(rows.loc[c, "has_lesion"]) == 1]
        if not keep:
            continue
        for c in (ids[i] for i in keep):
            if c not in masks:
                case = load_case(rows.loc[c].to_dict())
                from radlens.io.images import _sitk

                mask = _sitk().GetArrayFromImage(case.mask) > 0
                masks[c] = ground_truth(mask.shape, masks=[mask])
        for key in [k for k in arrays if k.endswith(("__a", "__b"))]:
            method, which = key.rsplit("__", 1)
            maps = arrays[key]
            scores = []
            for i in keep:
                gt = masks[ids[i]]
                if gt.shape != tuple(maps[i].shape):  # resized geometry: scores need the mask on the map grid
                    continue
                scores.append(score_map(maps[i], gt, binarize=("topk",)))
            if not scores:
                continue
            pg = float(np.nanmean([s["pointing_game"] for s in scores]))
            auc = float(np.nanmean([s["auc"] for s in scores]))
            chance = float(np.mean([masks[ids[i]].mask.mean() for i in keep]))
            res.append({"architecture": meta.get("architecture"), "task": meta.get("task"), "method": method,
                        "checkpoint": {"a": "tl", "b": "ft"}[which], "n": len(scores),
                        "pointing_game": round(pg, 4), "pixel_auc": round(auc, 4),
                        "mass_inside": round(float(np.nanmean([s["mass_inside"] for s in scores])), 4),
                        "chance_pointing_game": round(chance, 4),
                        "passed": bool(pg >= THRESHOLDS["pointing_game"] and auc >= THRESHOLDS["pixel_auc"])})
    return res


def _table(path: Path, cols: list[str]) -> list[dict[str, Any]]:
    from radlens.io.artifacts import read_table

    if not path.exists():
        return []
    t = read_table(path)
    t = t[[c for c in cols if c in t.columns]]
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()} for r in t.to_dict("records")]


def demo_summary(out, *, quick: bool, seed: int, seconds: dict, cpu_seconds: float,
                 cohort: dict | None = None, cpu_seconds_all: float | None = None,
                 peak_tree_mb: float | None = None) -> dict[str, Any]:
    """The ``demo.json`` dictionary of a demo folder (see the module docstring for the schema)."""
    out = Path(out)
    info, training = _training(out)
    try:
        loc = _localization(out)
    except Exception as exc:  # noqa: BLE001 - the other numbers stay valid
        log.warning("demo summary: localization scores not computed: %s", exc)
        loc = []
    sanity = _table(out / "cam" / "drift.sanity.parquet",
                    ["architecture", "task", "method", "model", "n", "spearman_median", "threshold", "passed",
                     "excluded_from_rankings"])
    excl = _table(out / "cam" / "drift.ranking_exclusions.parquet",
                  ["architecture", "task", "method", "models_failed", "spearman_median_max", "threshold", "reason"])
    from radlens.demo_planted import planted_truth

    try:
        planted = planted_truth(out)
    except Exception as exc:  # noqa: BLE001
        log.warning("demo summary: planted truth not computed: %s", exc)
        planted = {"status": f"not computed: {type(exc).__name__}: {exc}"}
    warnings = []
    for arch, tasks in training.items():
        for task, t in tasks.items():
            if not t["learned"]:
                warnings.append(f"{arch}/{task}: fine-tuned validation AUC {t['ft']:.3f} < {THRESHOLDS['ft_auc']}")
    for arch, tasks in training.items():
        if tasks and not any(t["tl_lower"] for t in tasks.values()):
            warnings.append(f"{arch}: the transfer checkpoint is not measurably lower than the fine-tuned one on any "
                            f"task (gap < {THRESHOLDS['tl_gap']}): fine-tuning had little to change")
    for r in loc:
        if r["checkpoint"] == "ft" and r["method"] == "gradcam" and not r["passed"]:
            warnings.append(f"{r['architecture']}/{r['task']}: the fine-tuned Grad-CAM does not meet the localisation "
                            f"targets: pointing game {r['pointing_game']:.2f} (target >= {THRESHOLDS['pointing_game']}), "
                            f"pixel AUC {r['pixel_auc']:.2f} (target >= {THRESHOLDS['pixel_auc']}), n = {r['n']}")
    for r in (planted.get("recovery_by_task") or []) if isinstance(planted, dict) else []:
        if not r.get("recovered"):
            warnings.append(f"{r['architecture']}/{r['task']}: planted radiomic signature not recovered at any layer "
                            f"(best alignment {r.get('alignment', float('nan')):.2f}, p = {r.get('alignment_p', float('nan'))})")
    for r in excl:
        warnings.append(f"{r['architecture']}/{r['task']} {r['method']}: excluded from the CAM rankings ({r['reason']})")
    ft_loc = [r for r in loc if r["checkpoint"] == "ft" and r["method"] == "gradcam"]
    checks = {
        "every_ft_learned": bool(training) and all(t["learned"] for a in training.values() for t in a.values()),
        "tl_lower_somewhere": bool(training) and all(any(t["tl_lower"] for t in a.values()) for a in training.values()),
        "gradcam_ft_localizes": bool(ft_loc) and all(r["passed"] for r in ft_loc),
        "ranked_maps_pass_sanity": all(bool(r["passed"]) or bool(r.get("excluded_from_rankings")) for r in sanity),
    }
    import os
    import resource

    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count()
    rss = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    return {"schema": SCHEMA, "quick": bool(quick), "seed": int(seed), "seconds": seconds,
            "cpu_seconds_main_process": cpu_seconds, "cpu_seconds_all_processes": cpu_seconds_all,
            "cpus": cpus, "peak_rss_mb": round(rss / 1024.0, 1),
            "peak_memory_mb": None if peak_tree_mb is None else round(float(peak_tree_mb), 1),
            "thresholds": THRESHOLDS, "cohort": cohort or {},
            "training": info, "auc": training, "localization": loc, "sanity": sanity, "ranking_exclusions": excl,
            "planted_truth": planted, "checks": checks, "warnings": warnings}
