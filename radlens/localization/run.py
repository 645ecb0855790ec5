"""``radlens localize``: score imported maps against the manifest's boxes / masks.

A *sample* is one map scored against one ground truth. Manifest rows (one ROI each) that share
an image are one sample with several objects (group key: the ``image`` column by default, or
``group_col``; with a ``class_col`` the key also includes the class, so two findings of different
classes on one image stay two samples). The sample's id is its first row's ``case_id``; its map
is looked up under any of its rows' case ids (several rows may carry the same map; different maps
for one sample are an error that names the rows). Samples without a map in any map set are not
scored (logged: e.g. cam-drift keeps only the cases both checkpoints classify correctly); a sample
missing from one of two map sets is a failure.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from radlens.errors import CaseError, InputError
from radlens.localization.maps import FLIPS, MapSet, OrientationError, load_maps, prepare_map
from radlens.localization.scores import BINARIZATIONS, check_options, ground_truth, score_columns, score_map

log = logging.getLogger(__name__)


@dataclass
class LocalizeResult:
    """Tables produced by :func:`localize`.

    Attributes
    ----------
    per_sample : DataFrame, one row per (sample, map set): ``sample_id, case_ids, image,
        n_rows, patient_id, [class], map_set, map_source, orientation`` + score columns +
        ``gt_pixels, n_objects, reason``.
    summary : DataFrame, see :func:`radlens.localization.summary.summarize_scores`.
    paired : DataFrame or None, see :func:`radlens.localization.summary.paired_scores`.
    failures : DataFrame ``case_id, stage, error``.
    paths : dict name -> Path of what was written.
    """

    per_sample: Any
    summary: Any
    paired: Any
    failures: Any
    paths: dict


def side_paths(out) -> dict[str, Path]:
    """Paths written next to ``out`` (``loc.parquet`` -> ``loc.summary.parquet``, ...)."""
    out = Path(out)
    stem = out.with_suffix("")
    suf = out.suffix
    return {"per_sample": out, "summary": Path(f"{stem}.summary{suf}"), "paired": Path(f"{stem}.paired{suf}"),
            "failures": Path(f"{stem}.failures.csv"), "figure": Path(f"{stem}_scores")}


def group_samples(df, group_col: str | None = "image", class_col: str | None = None):
    """Group manifest rows into samples.

    Returns
    -------
    list of (sample_id, DataFrame of the group's rows), in manifest order.
    """
    if group_col in (None, "none", "case_id"):
        keys = [(c,) for c in df["case_id"]]
    else:
        if group_col not in df.columns:
            raise InputError(f"group column {group_col!r} not in the manifest; columns: {list(df.columns)}; "
                             "use --group-col none to score every row alone")
        keys = [(g,) for g in df[group_col].astype(str)]
    if class_col is not None:
        keys = [k + (str(c),) for k, c in zip(keys, df[class_col])]
    order: dict = {}
    for i, k in enumerate(keys):
        order.setdefault(k, []).append(i)
    return [(str(df["case_id"].iloc[idx[0]]), df.iloc[idx]) for idx in order.values()]


def _load_gt(rows, resample_mask: bool):
    from radlens.io.images import load_case

    masks, shape = [], None
    for _, row in rows.iterrows():
        case = load_case(row, resample_mask=resample_mask)
        roi = case.roi
        if shape is None:
            shape = roi.shape
        elif roi.shape != shape:
            raise CaseError(str(row["case_id"]), "load", f"rows grouped on one image have different image "
                            f"shapes {shape} vs {roi.shape}; check the grouping column")
        masks.append(roi)
    return ground_truth(shape, masks=masks)


def _pick_map(ms: MapSet, rows, sample_id: str):
    ids = [str(c) for c in rows["case_id"] if str(c) in ms.maps]
    if not ids:
        raise CaseError(sample_id, "maps", f"no map under case id(s) {rows['case_id'].astype(str).tolist()} "
                        f"in {ms.label}")
    first = ms.maps[ids[0]]
    for other in ids[1:]:
        o = ms.maps[other]
        if o.shape != first.shape or not np.array_equal(o, first):
            raise CaseError(sample_id, "maps", f"rows {ids[0]!r} and {other!r} share an image but have "
                            f"different maps in {ms.label}; score them separately (--group-col none, or a "
                            "--group-col / --class-col that separates them)")
    return first


def localize(manifest, maps, *, out=None, map_key: str | None = None, maps_b=None,
             map_key_b: str | None = None, case_ids=None, case_ids_b=None, names: tuple[str, str] = ("a", "b"),
             class_col: str | None = None, group_col: str | None = "image", positive_col: str | None = None,
             binarize: Sequence[str] = BINARIZATIONS, threshold: float = 0.5, topk: float | None = None,
             tolerance: float = 0.0, tie_rule: str = "fraction", box_from: str = "largest",
             absolute: bool = False, transpose: bool = False, flip: str | None = None,
             orientation: str = "error", n_boot: int = 1000, seed: int = 0, resample_mask: bool = False,
             figure: bool = True) -> LocalizeResult:
    """Score one or two map sets against the manifest's ground truth.

    Parameters
    ----------
    manifest : path or radlens.io.manifest.Manifest
    maps : path, MapSet, or dict case_id -> ndarray (*spatial)
        First map set (e.g. before fine-tuning); ``map_key`` picks an array in a multi-array file.
    maps_b : path, MapSet or dict, optional
        Second map set (e.g. after fine-tuning), scored on the same samples and compared pairwise
        (``b - a``). With ``map_key_b`` but no ``maps_b`` the second set comes from ``maps``'s file.
    case_ids, case_ids_b : companion case-id lists for ``.npy`` maps.
    names : labels of the two map sets in the tables.
    class_col : str, optional
        Label column: per-class summaries (also part of the grouping key).
    group_col : str or None
        Column whose equal values make one sample (default ``image``; ``None``/"none": every row alone).
    positive_col : str, optional
        Score only rows where this column is 1/true (e.g. ``has_lesion``: control ROIs of lesion-free
        phantom images are not localisation targets).
    binarize, threshold, topk, tolerance, tie_rule, box_from, absolute :
        Passed to :func:`radlens.localization.scores.score_map`.
    transpose, flip, orientation :
        Passed to :func:`radlens.localization.maps.prepare_map`.
    n_boot, seed : bootstrap settings of the summaries (patients resampled whole).
    resample_mask : passed to :func:`radlens.io.images.load_case`.
    out : path, optional
        ``.parquet`` or ``.csv``: writes the per-sample table there and ``<stem>.summary``,
        ``<stem>.paired``, ``<stem>.failures.csv`` (+ ``<stem>_scores.png/.svg`` when ``figure``).

    Returns
    -------
    LocalizeResult
    """
    import pandas as pd

    from radlens.io.artifacts import provenance, write_failures, write_table
    from radlens.io.manifest import Manifest, read_manifest
    from radlens.localization.summary import paired_scores, summarize_scores
    from radlens.progress import progress

    kw = dict(binarize=tuple(binarize), threshold=threshold, topk=topk, tolerance=tolerance,
              tie_rule=tie_rule, box_from=box_from, absolute=absolute)
    check_options(**kw)
    if flip not in FLIPS:
        raise InputError(f"flip={flip!r} not allowed; choose from {FLIPS}")
    if orientation not in ("error", "warn", "ignore"):
        raise InputError(f"orientation={orientation!r} not allowed; choose from ('error', 'warn', 'ignore')")
    man = manifest if isinstance(manifest, Manifest) else read_manifest(manifest, resample_mask=resample_mask)
    df = man.df
    for col, what in ((class_col, "class"), (positive_col, "positive")):
        if col is not None and col not in df.columns:
            raise InputError(f"{what} column {col!r} not in the manifest; columns: {list(df.columns)}")
    if positive_col is not None:
        keep = pd.to_numeric(df[positive_col], errors="coerce").fillna(0).astype(float) > 0
        log.info("scoring %d of %d rows with %s true", int(keep.sum()), len(df), positive_col)
        df = df[keep.to_numpy()]
        if df.empty:
            raise InputError(f"no manifest row has {positive_col!r} true; nothing to score")
    if len(set(names)) != 2:
        raise InputError(f"names={names!r}: give two different labels for the map sets")

    if isinstance(maps, dict):
        maps = MapSet({str(k): np.asarray(v, np.float32) for k, v in maps.items()}, "<in memory>")
    if isinstance(maps_b, dict):
        maps_b = MapSet({str(k): np.asarray(v, np.float32) for k, v in maps_b.items()}, "<in memory b>")
    sets = {names[0]: maps if isinstance(maps, MapSet) else load_maps(maps, map_key, case_ids)}
    if maps_b is not None or map_key_b is not None:
        src_b = maps_b if maps_b is not None else (maps.source if isinstance(maps, MapSet) else maps)
        sets[names[1]] = src_b if isinstance(src_b, MapSet) else load_maps(src_b, map_key_b, case_ids_b)
    all_ids = set(man.df["case_id"].astype(str))
    for nm, ms in sets.items():
        if str(ms.meta.get("geometry", "")) == "crop":
            raise InputError(f"maps {ms.label} were computed on ROI crops (encoder roi.mode: crop), so they do not "
                             "cover the image; recompute them with roi.mode: full to score them against the image")
        extra = set(ms.maps) - all_ids
        if extra:
            log.warning("map set %s (%s): %d map(s) have no manifest row and are ignored, e.g. %s",
                        nm, ms.label, len(extra), sorted(extra)[:5])

    cols = score_columns(binarize)
    samples = group_samples(df, group_col, class_col)
    have = set().union(*(ms.maps for ms in sets.values()))
    unmapped = [sid for sid, grp in samples if not any(str(c) in have for c in grp["case_id"])]
    if len(unmapped) == len(samples):
        raise InputError(f"no manifest case has a map: manifest case ids e.g. {[s for s, _ in samples[:5]]}, map "
                         f"keys e.g. {sorted(have)[:5]}; were the maps computed for this manifest?")
    if unmapped:
        log.warning("%d of %d samples have no map in any map set and are not scored (e.g. %s); cam-drift "
                    "stores maps only for the cases it compared", len(unmapped), len(samples), unmapped[:5])
        skip = set(unmapped)
        samples = [(sid, grp) for sid, grp in samples if sid not in skip]
    rows, failures = [], []
    for sid, grp in progress(samples, total=len(samples), desc="localize", unit="sample"):
        base = {"sample_id": sid, "case_ids": ";".join(grp["case_id"].astype(str)),
                "image": str(grp["image"].iloc[0]), "n_rows": len(grp),
                "patient_id": str(grp["patient_id"].iloc[0]) if "patient_id" in grp.columns else sid}
        if class_col is not None:
            base["class"] = grp[class_col].iloc[0]
        try:
            gt = _load_gt(grp, resample_mask)
            gt_err = None
        except CaseError as exc:
            gt, gt_err = None, exc
            failures.append({"case_id": exc.case_id, "stage": "localize:ground-truth", "error": exc.message})
        for nm, ms in sets.items():
            rec = {**base, "map_set": nm, "map_source": ms.label, "orientation": ""}
            try:
                if gt_err is not None:
                    raise gt_err
                m = _pick_map(ms, grp, sid)
                mr, chk = prepare_map(m, gt.shape, transpose=transpose, flip=flip, orientation=orientation,
                                      case_id=sid)
                rec["orientation"] = chk
                rec.update(score_map(mr, gt, **kw))
            except (CaseError, InputError) as exc:
                msg = exc.message if isinstance(exc, CaseError) else str(exc)
                if exc is not gt_err:
                    failures.append({"case_id": sid, "stage": f"localize:{nm}", "error": msg})
                if isinstance(exc, OrientationError):
                    raise
                rec.update({c: np.nan for c in cols}, gt_pixels=np.nan, n_objects=np.nan, reason=msg)
            rows.append(rec)
    per = pd.DataFrame(rows)
    lead = ["sample_id", "case_ids", "image", "n_rows", "patient_id"] + (["class"] if class_col else [])
    per = per[lead + ["map_set", "map_source", "orientation"] + cols + ["gt_pixels", "n_objects", "reason"]]
    if class_col is not None:
        per = per.rename(columns={"class": class_col})
    n_ok = per.groupby("map_set")[cols[0]].apply(lambda s: int(np.isfinite(s.to_numpy(float)).sum()))
    if int(n_ok.sum()) == 0:
        raise InputError("no sample could be scored; first problems: "
                         + "; ".join(f"{f['case_id']}: {f['error']}" for f in failures[:3]))
    n_asp = int((per["orientation"] == "aspect").sum())
    if n_asp:
        log.info("%d map(s) differ in aspect ratio from their image (square model input?) and were stretched "
                 "back onto the image", n_asp)
    summary = summarize_scores(per, cols, class_col=class_col, group_col="patient_id", n_boot=n_boot, seed=seed)
    paired = None
    if len(sets) == 2:
        paired = paired_scores(per, cols, names, class_col=class_col, key="sample_id",
                               group_col="patient_id", n_boot=n_boot, seed=seed)
    fail_df = pd.DataFrame(failures, columns=["case_id", "stage", "error"])
    paths: dict = {}
    if out is not None:
        sp = side_paths(out)
        cfg = dict(map_key=map_key, map_key_b=map_key_b, names=list(names), class_col=class_col,
                   group_col=group_col, positive_col=positive_col, transpose=transpose, flip=flip,
                   orientation=orientation, n_boot=n_boot, seed=seed, **{k: (list(v) if isinstance(v, tuple) else v)
                                                                          for k, v in kw.items()})
        inputs = {"manifest": man.path}
        for nm, ms in sets.items():
            inputs[f"maps_{nm}"] = ms.source
        meta = provenance("localize", cfg, inputs)
        paths["per_sample"] = write_table(per, sp["per_sample"], meta)
        paths["summary"] = write_table(summary, sp["summary"], meta)
        if paired is not None:
            paths["paired"] = write_table(paired, sp["paired"], meta)
        paths["failures"] = write_failures(sp["failures"], failures)
        if figure:
            from radlens.viz.localization import plot_localization_scores

            paths["figure"] = plot_localization_scores(summary, sp["figure"], paired=paired, class_label=class_col)
    return LocalizeResult(per, summary, paired, fail_df, paths)
