"""CAM drift between checkpoints: the library behind ``radlens cam-drift``.

:func:`cam_drift_study` runs any number of (architecture, task, TL checkpoint, FT checkpoint)
pairs over one manifest and returns one tidy per-sample table plus the aggregates;
:func:`cam_drift` is the command's entry point (one pair, or several architectures at once).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from radlens.cam.drift import _label_key, drift_metrics, true_positive_filter
from radlens.cam.methods import attribute_methods, canonical_method
from radlens.errors import ConfigError, InputError

log = logging.getLogger(__name__)


@dataclass
class ModelPair:
    """One comparison: checkpoint A (transfer learning) vs B (fine-tuned) of one architecture on one task.

    ``series``: optional intermediate checkpoints in training order; drift is then also computed
    along ``[model_a, *series, model_b]`` (consecutive steps and each step vs the first).
    """

    architecture: str
    task: str
    model_a: Any
    model_b: Any
    label_col: str
    positive: Any = 1
    series: tuple = ()


@dataclass
class CamDriftResult:
    """Tables of a CAM-drift run (all pandas DataFrames).

    drift : one row per architecture x task x method x case (metrics as columns)
    summary : per architecture x task x method x metric (mean, median, IQR, bootstrap CIs)
    paired : paired tests between methods on the same cases
    paired_architectures : paired tests between architectures on their common cases (per task x method)
    concentration : paired A-vs-B tests of each concentration measure
    rankings, reversals : architecture rankings per metric and method; their agreement (only
        architecture x task x method combinations whose maps passed the sanity check)
    counts : per pair, the true-positive filter counts
    sanity : model-randomisation check per pair x method x model (``excluded_from_rankings``: this
        combination's maps were left out of ``rankings`` / ``reversals``)
    ranking_exclusions : one row per excluded architecture x task x method, with the reason
    series : drift along the checkpoint series (empty without series)
    failures : ``case_id, stage, error``
    """

    drift: Any
    summary: Any
    paired: Any
    paired_architectures: Any
    concentration: Any
    rankings: Any
    reversals: Any
    counts: Any
    sanity: Any
    series: Any
    failures: Any
    ranking_exclusions: Any = None
    outputs: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- helpers
def label_index(value, classes: Sequence[str]) -> int:
    """Head output index of a label value: a class name listed in ``classes``, else an integer
    label in ``0..K-1``; -1 when missing or not mappable."""
    import pandas as pd

    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return -1
    key = _label_key(value)
    names = [_label_key(c) for c in classes]
    if key in names:
        return names.index(key)
    try:
        f = float(value)
    except (TypeError, ValueError):
        return -1
    return int(f) if f.is_integer() and 0 <= f < len(classes) else -1


def _prepare(clf, rows, cases, failures, stage_tag):
    """Preprocess cases for ``clf``; returns (case ids, x (n, C, *sp), image shapes, ROI coverages).

    The coverages are the ROI's covered fraction of every model-input pixel, ``(n, *sp)`` float32
    (None when the encoder returned none)."""
    import torch

    from radlens.io.images import load_case

    import json

    spec = clf.encoder.spec
    pkey = json.dumps([spec.get("preprocess"), spec.get("roi")], sort_keys=True, default=str)
    ids, xs, shapes, covs = [], [], [], []
    for row in rows:
        cid = str(row["case_id"])
        try:
            if cid not in cases:
                cases[cid] = load_case(row)
            key = ("x", pkey, cid)  # encoders with the same preprocessing share the prepared input
            if key not in cases:
                cases[key] = clf.preprocess(cases[cid])
            x, cov = cases[key]
        except Exception as exc:  # noqa: BLE001 - recorded in the failures table, the rest proceed
            failures.append({"case_id": cid, "stage": f"cam-drift:{stage_tag}", "error": f"{type(exc).__name__}: {exc}"})
            log.warning("case %s skipped (%s): %s", cid, stage_tag, exc)
            continue
        ids.append(cid)
        xs.append(torch.as_tensor(x, dtype=torch.float32))
        shapes.append(tuple(cases[cid].array.shape))
        covs.append(None if cov is None else np.asarray(cov, dtype=np.float32).reshape(x.shape[1:]))
    if not xs:
        return ids, None, shapes, None
    roi = np.stack(covs) if all(c is not None for c in covs) else None
    return ids, torch.stack(xs), shapes, roi


def _logits(module, x, batch_size):
    import torch

    out = []
    param = next(iter(module.parameters()), None)
    with torch.no_grad():
        for s in range(0, x.shape[0], batch_size):
            xb = x[s:s + batch_size]
            out.append(module(xb if param is None else xb.to(param.device)).float().cpu())
    return torch.cat(out).numpy()


def _maps(clf, methods, x, targets, cfg):
    """``{method: CAMResult}``; the layer-gradient methods share one forward+backward pass per batch."""
    return attribute_methods(methods, clf.module, clf.target_layer, x, targets, token_layout=clf.token_layout,
                             batch_size=cfg["batch_size"], n_steps=cfg["ig_steps"], use_input=clf.use_input,
                             channels_last=cfg["channels_last"])


def _load_pair_models(pair, device, target_layer=None):
    from radlens.cam.model import load_classifier

    a = load_classifier(pair.model_a, device=device, target_layer=target_layer)
    b = load_classifier(pair.model_b, device=device, target_layer=target_layer)
    if a.spatial_size != b.spatial_size:
        raise ConfigError(f"{pair.architecture}/{pair.task}: model A input {a.spatial_size} and model B input "
                          f"{b.spatial_size} differ; CAM drift compares maps on one grid")
    if a.classes != b.classes:
        raise ConfigError(f"{pair.architecture}/{pair.task}: classes differ between A {a.classes} and B {b.classes}")
    return a, b


# --------------------------------------------------------------------------- one pair
def _run_pair(pair: ModelPair, df, cases, cfg, failures):
    import pandas as pd

    from radlens.progress import progress

    tag = f"{pair.architecture}/{pair.task}"
    if pair.label_col not in df.columns:
        raise InputError(f"label column {pair.label_col!r} is not in the manifest; task columns: "
                         f"{[c for c in df.columns if c not in ('case_id', 'image', 'mask')][:20]}")
    clf_a, clf_b = _load_pair_models(pair, cfg["device"], (cfg["target_layers"] or {}).get(pair.architecture))
    rows = df.to_dict("records")
    ids, x_a, shapes, roi_a = _prepare(clf_a, rows, cases, failures, f"{tag}:a")
    if x_a is None:
        raise InputError(f"{tag}: no case could be loaded and preprocessed; see the failures table")
    same_pre = all(clf_a.encoder.spec.get(k) == clf_b.encoder.spec.get(k) for k in ("preprocess", "roi"))
    if same_pre:
        x_b = x_a
    else:
        ids_b, x_b, _, _ = _prepare(clf_b, rows, cases, failures, f"{tag}:b")
        keep_ids = [c for c in ids if c in set(ids_b)]
        ia = [ids.index(c) for c in keep_ids]
        ib = [ids_b.index(c) for c in keep_ids]
        x_a, x_b, shapes, ids = x_a[ia], x_b[ib], [shapes[i] for i in ia], keep_ids
        roi_a = roi_a[ia] if roi_a is not None else None
    bs = cfg["batch_size"]
    la, lb = _logits(clf_a.module, x_a, bs), _logits(clf_b.module, x_b, bs)
    sub = df.set_index("case_id").loc[ids]
    lab_idx = np.array([label_index(v, clf_a.classes) for v in sub[pair.label_col]])
    pos_idx = label_index(pair.positive, clf_a.classes)
    if pos_idx < 0:
        raise InputError(f"positive={pair.positive!r} is neither a class name {clf_a.classes} nor an index "
                         f"0..{len(clf_a.classes) - 1}; give --positive as a value of column {pair.label_col!r}")
    lab_for_filter = np.where(lab_idx >= 0, lab_idx.astype(float), np.nan)
    keep, counts = true_positive_filter(lab_for_filter, la.argmax(1), lb.argmax(1), pos_idx, mode=cfg["samples"])
    counts = {"architecture": pair.architecture, "task": pair.task, "label_col": pair.label_col,
              "positive": str(pair.positive), **counts}
    log.info("%s: %d of %d cases kept (%s filter: %d positives, TP A %d, TP B %d)", tag, counts["n_kept"],
             counts["n_total"], cfg["samples"], counts["n_positive"], counts["n_tp_a"], counts["n_tp_b"])
    kid = np.flatnonzero(keep)
    if kid.size == 0:
        log.warning("%s: no case passes the %s filter; nothing to compare", tag, cfg["samples"])
        return [], counts, [], [], None
    targets = np.full(kid.size, pos_idx) if cfg["samples"] == "tp" else lab_idx[kid]
    xa, xb = x_a[kid], x_b[kid]
    kept_ids = [ids[i] for i in kid]
    pid = sub["patient_id"].to_numpy()[kid] if "patient_id" in sub.columns else np.array(kept_ids)
    drift_rows, maps_out = [], {}
    res = {}
    for which in progress(("a", "b"), desc=f"CAMs {tag} ({kid.size} cases, all methods in one pass)", unit="model"):
        clf, x = (clf_a, xa) if which == "a" else (clf_b, xb)
        res[which] = _maps(clf, cfg["methods"], x, targets, cfg)
    res_a, res_b = res["a"], res["b"]
    for method in cfg["methods"]:
        ra, rb = res_a[method], res_b[method]
        d = drift_metrics(ra.upsampled, rb.upsampled, top_k=cfg["top_k"], thresholds=cfg["thresholds"])
        d.insert(0, "case_id", kept_ids)
        d.insert(1, "patient_id", pid.astype(str))
        d.insert(2, "target", targets.astype(int))
        d.insert(3, "score_a", ra.logits[np.arange(kid.size), targets])
        d.insert(4, "score_b", rb.logits[np.arange(kid.size), targets])
        for col, val in (("method", method), ("task", pair.task), ("architecture", pair.architecture)):
            d.insert(0, col, val)
        drift_rows.append(d)
        maps_out[f"{method}__a"], maps_out[f"{method}__b"] = ra.maps, rb.maps
    sanity_rows = _sanity(pair, {"a": (clf_a, xa, res_a), "b": (clf_b, xb, res_b)}, targets, cfg) if cfg["sanity"] else []
    series_rows = _series(pair, clf_a, clf_b, xa, targets, kept_ids, cfg) if pair.series else []
    maps_out["case_id"] = np.asarray(kept_ids, dtype=str)
    maps_out["input_image"] = xa[:, 0].numpy().astype(np.float32)
    if roi_a is not None:  # the ROI on the map grid (covered fraction of each model-input pixel)
        maps_out["roi"] = roi_a[kid].astype(np.float32)
    maps_out["image_shape"] = np.asarray([shapes[i] for i in kid], dtype=np.int64)
    maps_meta = {"architecture": pair.architecture, "task": pair.task, "methods": list(cfg["methods"]),
                 "models": {"a": str(clf_a.source), "b": str(clf_b.source)}, "target": targets.tolist(),
                 "spatial_size": list(clf_a.spatial_size),
                 "target_layer": clf_a.target_name, "target_input": bool(clf_a.use_input),
                 "geometry": "resize" if (clf_a.encoder.spec.get("roi") or {}).get("mode", "full") == "full" else "crop",
                 "geometry_note": "maps are at the model input resolution; with geometry 'resize' the whole stored "
                                  "image was resized to spatial_size, so map pixel centres map to stored pixels by "
                                  "the factor image_shape / spatial_size (half-pixel centres)",
                 "normalisation": "each map divided by its maximum (zero maps stay zero)",
                 "samples": cfg["samples"]}
    return pd.concat(drift_rows, ignore_index=True), counts, sanity_rows, series_rows, (maps_out, maps_meta)


def _sanity(pair, runs, targets, cfg):
    """Model-randomisation check: maps of a re-initialised copy vs the trained model's maps.

    ``runs``: ``{model: (classifier, x, {method: CAMResult})}``; one re-initialised copy per model,
    all methods from one pass. Rows are ordered method by method, then model.
    """
    n = min(cfg["sanity_cases"], targets.size)
    rnd_maps = {which: _maps(clf.randomized(seed=cfg["seed"]), cfg["methods"], x[:n], targets[:n], cfg)
                for which, (clf, x, _) in runs.items()}
    out = []
    for method, which in ((m, w) for m in cfg["methods"] for w in runs):
        res, rr = runs[which][2][method], rnd_maps[which][method]
        d = drift_metrics(res.upsampled[:n], rr.upsampled, top_k=(10.0,))
        rho = d["spearman"].to_numpy(float)
        med = float(np.nanmedian(rho)) if np.isfinite(rho).any() else np.nan
        passed = bool(not np.isfinite(med) or med < cfg["sanity_max_spearman"])
        out.append({"architecture": pair.architecture, "task": pair.task, "method": method, "model": which,
                    "n": int(n), "n_random_zero": int(d["degenerate"].sum()), "spearman_median": med,
                    "pearson_median": float(np.nanmedian(d["pearson"])) if np.isfinite(d["pearson"]).any() else np.nan,
                    "iou_top10_median": float(np.nanmedian(d["iou_top10"])) if np.isfinite(d["iou_top10"]).any() else np.nan,
                    "threshold": cfg["sanity_max_spearman"], "passed": passed})
        if not passed:
            log.warning("sanity check FAILED for %s/%s %s model %s: maps of the randomised model correlate with the "
                        "trained model's (median Spearman %.2f >= %.2f); the maps may reflect the input more than "
                        "the learned weights", pair.architecture, pair.task, method, which, med,
                        cfg["sanity_max_spearman"])
    return out


def _series(pair, clf_a, clf_b, x, targets, kept_ids, cfg):
    """Drift along ``[A, *series, B]``: each step vs the previous one and vs the first."""
    import pandas as pd

    from radlens.cam.model import load_classifier

    specs = [pair.model_a, *pair.series]
    if str(specs[-1]) != str(pair.model_b):
        specs.append(pair.model_b)
    rows = []
    first: dict = {}
    prev: dict = {}
    for step, spec in enumerate(specs):
        clf = clf_a if step == 0 else (clf_b if spec is pair.model_b else load_classifier(
            spec, device=cfg["device"], target_layer=(cfg["target_layers"] or {}).get(pair.architecture)))
        logits = _logits(clf.module, x, cfg["batch_size"])
        still = float(np.mean(logits.argmax(1) == targets))
        step_maps = _maps(clf, cfg["methods"], x, targets, cfg)
        for method in cfg["methods"]:
            m = step_maps[method].upsampled
            if step == 0:
                first[method] = prev[method] = m
                continue
            for ref, base in (("previous", prev[method]), ("first", first[method])):
                d = drift_metrics(base, m, top_k=cfg["top_k"], thresholds=cfg["thresholds"])
                d.insert(0, "case_id", kept_ids)
                for col, val in (("checkpoint", Path(str(spec)).stem), ("target_rate", still), ("ref", ref),
                                 ("step", step), ("method", method), ("task", pair.task),
                                 ("architecture", pair.architecture)):
                    d.insert(0, col, val)
                rows.append(d)
            prev[method] = m
    return [pd.concat(rows, ignore_index=True)] if rows else []


# --------------------------------------------------------------------------- study
def cam_drift_study(manifest, pairs: Sequence[ModelPair | dict], *, methods: Sequence[str] = ("layercam", "gradcam++"),
                    samples: str = "tp", top_k: Sequence[float] = (10.0,), thresholds: Sequence[float] = (),
                    batch_size: int = 16, sanity: bool = True, sanity_cases: int = 16,
                    sanity_max_spearman: float = 0.5, ig_steps: int = 32, n_boot: int = 1000, seed: int = 0,
                    out=None, save_maps=None, figures=None, max_cases: int | None = None,
                    device: str = "cpu", channels_last: bool = False,
                    target_layers: dict | None = None) -> CamDriftResult:
    """CAM drift for several architectures and tasks over one cohort.

    Parameters
    ----------
    manifest : path or radlens.io.manifest.Manifest
    pairs : list of ModelPair or dict with the same keys
    methods : method names (``layercam``, ``gradcam++``, ``gradcam``, ``ig``)
    samples : {"tp", "correct"}
        ``tp``: cases labelled positive that both checkpoints predict positive; the positive class
        is explained. ``correct``: cases both checkpoints classify correctly; the label is explained.
    top_k, thresholds : see :func:`radlens.cam.drift.drift_metrics`
    batch_size : samples per forward/backward pass
    sanity : run the model-randomisation check on the first ``sanity_cases`` kept cases
    n_boot, seed : bootstrap of the summaries and paired tests
    out : path, optional
        Per-sample table (``.parquet``/``.csv``); aggregates next to it as ``<stem>.<table>.parquet``.
    save_maps : path, optional
        ``.npz`` of the maps, one file per pair that kept at least one case: exactly this path when
        only one pair produced maps, else ``<stem>.<arch>.<task>.npz`` for each.
    figures : path, optional
        Folder for the overlay grid, metric distributions (and series) figures.
    max_cases : int, optional
        Use only the first ``max_cases`` manifest rows (quick looks).
    device : str
        ``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (models and batches go there; maps come back as numpy).
    channels_last : bool
        Store the loaded classifiers' convolution weights channels-last (values unchanged): CNN
        CAM batches run much faster on CPU. Off by default because a model that calls ``.view`` on
        a spatial feature map fails with channels-last tensors.
    target_layers : dict, optional
        ``{architecture: layer}``: the CAM target layer of that architecture's checkpoints (A, B and
        any series), instead of the ``target_layer`` in their classifier specs. Architectures not
        named keep their specs' layer. For CNNs whose last stage is coarse (8x8 for a 64 px input)
        an earlier stage gives finer maps; check them with the randomisation sanity check
        (docs/cam.md "Which CNN layer").

    Notes
    -----
    Grad-CAM, Grad-CAM++ and LayerCAM of one model share one forward and one backward pass per
    batch (:class:`~radlens.cam.methods.MultiCAM`); their maps equal separate single-method runs.

    Returns
    -------
    CamDriftResult
    """
    import pandas as pd

    from radlens.cam.aggregate import (architecture_rankings, concentration_tests, drop_combinations,
                                       paired_tests, ranking_reversals, sanity_exclusions, summarize)
    from radlens.io.manifest import Manifest, read_manifest

    if samples not in ("tp", "correct"):
        raise InputError(f"samples={samples!r} not allowed; use 'tp' or 'correct'")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size={batch_size!r} must be a positive int")
    methods = [canonical_method(m) for m in methods]
    if len(set(methods)) != len(methods) or not methods:
        raise InputError(f"methods={list(methods)!r}: give at least one method, each once")
    pairs = [p if isinstance(p, ModelPair) else ModelPair(**p) for p in pairs]
    if target_layers is not None:
        if not isinstance(target_layers, dict) or not all(isinstance(k, str) and isinstance(v, str) and v
                                                         for k, v in target_layers.items()):
            raise InputError(f"target_layers={target_layers!r}: give a mapping architecture -> layer name, "
                             "e.g. {'cnn': 'layer3'}")
        unknown = sorted(set(target_layers) - {p.architecture for p in pairs})
        if unknown:
            raise InputError(f"target_layers names architecture(s) {unknown} that no pair has; pairs' "
                             f"architectures: {sorted({p.architecture for p in pairs})}")
    keys = [(p.architecture, p.task) for p in pairs]
    if len(set(keys)) != len(keys):
        raise InputError(f"pairs: duplicate (architecture, task) in {keys}; name architectures uniquely")
    m = manifest if isinstance(manifest, Manifest) else read_manifest(manifest)
    df = m.df if max_cases is None else m.df.iloc[:max_cases]
    cfg = dict(methods=methods, samples=samples, top_k=tuple(float(k) for k in top_k),
               thresholds=tuple(float(t) for t in thresholds), batch_size=batch_size, sanity=sanity,
               sanity_cases=sanity_cases, sanity_max_spearman=sanity_max_spearman, ig_steps=ig_steps, seed=seed,
               device=device, channels_last=bool(channels_last),
               target_layers=dict(target_layers) if target_layers else None)
    import torch

    torch.manual_seed(seed)
    cases: dict = {}
    failures: list = []
    drift, counts, sanity_rows, series_rows, maps = [], [], [], [], []
    for pair in pairs:
        d, c, s, ser, mp = _run_pair(pair, df, cases, cfg, failures)
        if len(d):
            drift.append(d)
        counts.append(c)
        sanity_rows += s
        series_rows += ser
        if mp is not None:
            maps.append((pair, mp))
    drift_df = pd.concat(drift, ignore_index=True) if drift else pd.DataFrame(columns=["architecture", "task", "method", "case_id"])
    metrics = [c for c in drift_df.columns if drift_df[c].dtype.kind == "f" and c not in ("score_a", "score_b")]
    summary = summarize(drift_df, metrics, n_boot=n_boot, seed=seed) if len(drift_df) else pd.DataFrame()
    paired = (paired_tests(drift_df, metrics=[c for c in metrics if not c.endswith(("_a", "_b"))], n_boot=n_boot,
                           seed=seed) if len(drift_df) and len(methods) > 1 else pd.DataFrame())
    paired_arch = (paired_tests(drift_df, metrics=[c for c in metrics if not c.endswith(("_a", "_b"))],
                                compare="architecture", by=("task", "method"), n_boot=n_boot, seed=seed)
                   if len(drift_df) and drift_df["architecture"].nunique() > 1 else pd.DataFrame())
    conc = concentration_tests(drift_df, n_boot=n_boot, seed=seed) if len(drift_df) else pd.DataFrame()
    sanity_df = pd.DataFrame(sanity_rows)
    excluded = sanity_exclusions(sanity_df)
    if len(sanity_df):
        bad = set(map(tuple, excluded[["architecture", "task", "method"]].astype(str).to_numpy()))
        sanity_df["excluded_from_rankings"] = [tuple(r) in bad for r in
                                               sanity_df[["architecture", "task", "method"]].astype(str).to_numpy()]
    for r in excluded.to_dict("records"):
        log.warning("%s/%s %s EXCLUDED from the architecture rankings and reversals: %s", r["architecture"],
                    r["task"], r["method"], r["reason"])
    rank_summary = drop_combinations(summary, excluded) if len(summary) else summary
    rankings = architecture_rankings(rank_summary) if len(rank_summary) else pd.DataFrame()
    reversals = (ranking_reversals(rankings, drop_combinations(drift_df, excluded), n_boot=n_boot, seed=seed)
                 if len(rankings) else pd.DataFrame())
    res = CamDriftResult(drift=drift_df, summary=summary, paired=paired, paired_architectures=paired_arch,
                         concentration=conc, rankings=rankings,
                         reversals=reversals, counts=pd.DataFrame(counts), sanity=sanity_df,
                         ranking_exclusions=excluded,
                         series=pd.concat(series_rows, ignore_index=True) if series_rows else pd.DataFrame(),
                         failures=pd.DataFrame(failures, columns=["case_id", "stage", "error"]))
    prov_cfg = {**cfg, "pairs": [{k: (str(v) if k in ("model_a", "model_b") else v) for k, v in vars(p).items()}
                                 for p in pairs], "n_boot": n_boot, "max_cases": max_cases}
    _write_outputs(res, maps, prov_cfg, m, out, save_maps, figures)
    return res


def _write_outputs(res, maps, cfg, manifest, out, save_maps, figures):
    from radlens.io.artifacts import provenance, write_npz, write_table

    meta = provenance("cam-drift", cfg, inputs={"manifest": manifest.path} if manifest.path else None,
                      counts=res.counts.to_dict("records"))
    if out is not None:
        out = Path(out)
        if out.suffix not in (".parquet", ".csv"):
            raise InputError(f"out={str(out)!r}: use a .parquet or .csv file name")
        write_table(res.drift, out, meta)
        res.outputs["drift"] = str(out)
        for name in ("summary", "paired", "paired_architectures", "concentration", "rankings", "reversals", "counts",
                     "sanity", "series", "ranking_exclusions"):
            t = getattr(res, name)
            if t is not None and (len(t) or name == "ranking_exclusions"):
                p = out.with_name(f"{out.stem}.{name}{out.suffix}")
                write_table(t, p, meta)
                res.outputs[name] = str(p)
        p = out.with_name(f"{out.stem}.failures.csv")
        write_table(res.failures, p)
        res.outputs["failures"] = str(p)
    map_paths = []
    if save_maps is None and figures is not None:  # the overlay figure reads the maps from disk
        save_maps = Path(figures) / "cam_maps.npz"
    if save_maps is not None:
        save_maps = Path(save_maps)
        for pair, (arrays, mmeta) in maps:
            p = save_maps if len(maps) == 1 else save_maps.with_name(
                f"{save_maps.stem}.{pair.architecture}.{pair.task}{save_maps.suffix or '.npz'}")
            write_npz(p, arrays, {**meta, **mmeta})
            map_paths.append(str(p))
        res.outputs["maps"] = map_paths
    if figures is not None and len(res.drift):
        from radlens.viz.cam import (plot_checkpoint_series, plot_metric_distributions, plot_overlay_grid,
                                     plot_rankings)

        fig_dir = Path(figures)
        fig_dir.mkdir(parents=True, exist_ok=True)
        made = plot_metric_distributions(res.drift, fig_dir / "cam_drift_distributions")
        for p in map_paths:
            made += plot_overlay_grid(p, fig_dir / f"cam_overlays_{Path(p).stem.replace('.', '_')}", drift=res.drift,
                                      manifest=getattr(manifest, "df", None))
        if len(res.series):
            made += plot_checkpoint_series(res.series, fig_dir / "cam_drift_series")
        if len(res.rankings) and res.rankings["architecture"].nunique() > 1:
            made += plot_rankings(res.rankings, fig_dir / "cam_drift_rankings")
        res.outputs["figures"] = [str(p) for p in made]


def cam_drift(manifest, model_a, model_b, *, label_col: str, positive=1, architecture=None, task=None,
              series: Sequence = (), target_layer=None, **kwargs) -> CamDriftResult:
    """``radlens cam-drift``: maps of checkpoint A vs B on the cases both classify correctly.

    Parameters
    ----------
    manifest : path
    model_a, model_b : classifier spec path(s); lists of equal length compare several
        architectures on the same task in one call.
    label_col : manifest column with the labels; ``positive``: its positive value.
    architecture : name(s) of the architecture(s) (default: the encoder name or the spec's folder).
    task : task name (default: ``label_col``).
    series : intermediate checkpoints (one pair only).
    target_layer : str or list of str, optional
        CAM target layer instead of the specs' ``target_layer``: one name for every pair, or one
        per pair (same order as ``model_a``).
    **kwargs : passed to :func:`cam_drift_study`.
    """
    a = [model_a] if isinstance(model_a, (str, Path, dict)) else list(model_a)
    b = [model_b] if isinstance(model_b, (str, Path, dict)) else list(model_b)
    if len(a) != len(b):
        raise InputError(f"--model-a has {len(a)} spec(s) but --model-b has {len(b)}; give one B per A, in the same order")
    if series and len(a) != 1:
        raise InputError("--series needs exactly one --model-a/--model-b pair")
    archs = [architecture] if isinstance(architecture, str) else list(architecture or [])
    if archs and len(archs) != len(a):
        raise InputError(f"--arch has {len(archs)} name(s) for {len(a)} model pair(s)")
    if not archs:
        archs = [_default_arch(p) for p in a]
        if len(set(archs)) != len(archs):
            archs = [f"{n}{i + 1}" for i, n in enumerate(archs)]
    pairs = [ModelPair(arch, task or label_col, pa, pb, label_col, positive, tuple(series))
             for arch, pa, pb in zip(archs, a, b)]
    if target_layer is not None:
        layers = [target_layer] if isinstance(target_layer, str) else list(target_layer)
        if len(layers) == 1:
            layers = layers * len(archs)
        if len(layers) != len(archs):
            raise InputError(f"--target-layer has {len(layers)} name(s) for {len(archs)} model pair(s); give one "
                             "for all pairs or one per pair, in --model-a order")
        kwargs["target_layers"] = dict(zip(archs, layers))
    return cam_drift_study(manifest, pairs, **kwargs)


def _default_arch(spec) -> str:
    from radlens.cam.model import read_classifier_spec

    s, _, source = read_classifier_spec(spec)
    enc = s.get("encoder")
    if isinstance(enc, dict) and enc.get("name"):
        return str(enc["name"])
    return Path(source).resolve().parent.name if source != "(inline)" else "model"
