"""The probe's analyses on in-memory images: embed, fit grouped-CV probes, collect scores.

Everything here works on numpy images and *embedders*: callables
``embed(images, boxes) -> {pooling: ndarray (n, d)}`` returning every pooling of ONE forward
pass per image (``boxes``: ``(n, 4)`` contract boxes ``(x, y, w, h)`` for 2-D images, or a list of
boolean ROI masks). Scores are collected as :class:`ScoreSet` objects (one per panel cell, jitter
level, finding …); :mod:`radlens.probe.summary` turns them into the result table.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from radlens.errors import InputError
from radlens.probe.jitter import box_iou, jitter_boxes
from radlens.probe.linear import grouped_folds, out_of_fold_scores
from radlens.probe.panel import (choose_centers, footprint_boxes, footprint_masks, perturb_cell)
from radlens.probe.sizes import matched_control_boxes, size_stratum, size_threshold
from radlens.progress import progress

log = logging.getLogger(__name__)

Embedder = Callable[[Sequence[np.ndarray], Any], Mapping[str, np.ndarray]]


@dataclass
class ScoreSet:
    """Out-of-fold probe scores of one probe problem under one or more checkpoints.

    Attributes
    ----------
    analysis : ``panel`` | ``jitter`` | ``lesion_image`` | ``lesion_box`` | ``lesion_box_jitter``
    key : dict of descriptors (perturbation, footprint_frac, strength, finding, jitter, mean_iou)
    y : ndarray int, shape (n,)
    groups : ndarray str, shape (n,)   CV / bootstrap groups (source image, patient)
    sample_id : ndarray str, shape (n,)
    stratum : ndarray object, shape (n,) or None   size stratum ("small"/"large")
    paired : bool   True: resample whole groups; False: resample within classes (strata)
    match_negatives : bool   negatives carry their own size stratum (box-level controls)
    scores : dict checkpoint -> pooling -> ndarray (n,)
    """

    analysis: str
    key: dict[str, Any]
    y: np.ndarray
    groups: np.ndarray
    sample_id: np.ndarray
    stratum: np.ndarray | None = None
    paired: bool = True
    match_negatives: bool = False
    scores: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)


def _fit(ss: ScoreSet, ckpt: str, pools: Mapping[str, np.ndarray], poolings: Sequence[str],
         folds, cfg) -> None:
    out = ss.scores.setdefault(ckpt, {})
    for p in poolings:
        if p not in pools:
            continue
        out[p] = out_of_fold_scores(pools[p], ss.y, ss.groups, C=cfg.C, seed=cfg.seed, folds=folds)


def _stack(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.vstack([a[k], b[k]]) for k in a if k in b}


def _rois(images, centers, frac):
    if all(im.ndim == 2 for im in images):
        return footprint_boxes(images, centers, frac)
    return footprint_masks(images, centers, frac)


def run_panel(images: Sequence[np.ndarray], image_ids: Sequence[str], embedders: Mapping[str, Embedder],
              cfg, poolings: Sequence[str]) -> list[ScoreSet]:
    """Perturbation panel (+ box jitter) for every checkpoint.

    Each clean image and its perturbed copy share the footprint's ROI box and one CV group, so
    they never straddle folds; the same folds serve every pooling and every checkpoint, so their
    AUCs are paired on identical samples.
    """
    spec = cfg.panel
    n = len(images)
    if n < 4:
        raise InputError(f"perturbation panel: {n} source image(s); need at least 4 (2 per fold)")
    ids = np.asarray(image_ids).astype(str)
    centers = choose_centers([im.shape for im in images], spec, seed=cfg.seed)
    shapes = [im.shape for im in images]
    y = np.r_[np.zeros(n, int), np.ones(n, int)]
    groups = np.r_[ids, ids]
    sample_id = np.r_[[f"{i}|clean" for i in ids], [f"{i}|perturbed" for i in ids]]
    folds = grouped_folds(y, groups, cfg.n_splits, cfg.seed)
    cells = spec.cells()
    jit_cells = _jitter_cells(spec, cfg) if all(im.ndim == 2 for im in images) else set()
    if not jit_cells and any(im.ndim != 2 for im in images):
        log.warning("box jitter: skipped for 3-D volumes (boxes are 2-D in the manifest contract)")
    sets: dict[tuple, ScoreSet] = {}
    for ckpt, embed in embedders.items():
        clean = {f: embed(images, _rois(images, centers, f)) for f in spec.footprints}
        jit_clean: dict[tuple, dict] = {}
        for cell in progress(cells, total=len(cells), desc=f"panel [{ckpt}]", unit="cell"):
            rois = _rois(images, centers, cell.footprint_frac)
            pert, _ = perturb_cell(images, centers, cell, spec, seed=cfg.seed)
            emb = embed(pert, rois)
            key = {"perturbation": cell.perturbation, "footprint_frac": cell.footprint_frac,
                   "strength": cell.strength}
            ss = sets.setdefault(("panel", cell.cell_id), ScoreSet(
                "panel", key, y, groups, sample_id, paired=True))
            _fit(ss, ckpt, _stack(clean[cell.footprint_frac], emb), poolings, folds, cfg)
            if cell in jit_cells and "roi" in poolings:
                for li, level in enumerate(cfg.jitter_levels):
                    jb = jitter_boxes(rois, level, shapes, seed=cfg.seed * 1000 + li)
                    iou = float(box_iou(rois, jb).mean())
                    jkey = (cell.footprint_frac, li)
                    if jkey not in jit_clean:
                        jit_clean[jkey] = clean[cell.footprint_frac] if level == 0 else embed(images, jb)
                    pj = emb if level == 0 else embed(pert, jb)
                    js = sets.setdefault(("jitter", cell.cell_id, li), ScoreSet(
                        "jitter", {**key, "jitter": float(level), "mean_iou": iou}, y, groups,
                        sample_id, paired=True))
                    _fit(js, ckpt, {"roi": np.vstack([jit_clean[jkey]["roi"], pj["roi"]])},
                         ["roi"], folds, cfg)
    return list(sets.values())


def _jitter_cells(spec, cfg) -> set:
    if len(cfg.jitter_levels) == 0 or cfg.jitter_levels == (0.0,):
        return set()
    fps = spec.footprints
    chosen_fp = ({min(fps)} if cfg.jitter_footprints == "smallest" else
                 set(fps) if cfg.jitter_footprints == "all" else set(cfg.jitter_footprints))
    out = set()
    for cell in spec.cells():
        strengths = spec.perturbations[cell.perturbation]["strengths"]
        target = max(strengths) if cfg.jitter_strength == "max" else float(cfg.jitter_strength)
        if cell.footprint_frac in chosen_fp and cell.strength == target:
            out.add(cell)
    if not out:
        log.warning("box jitter: no panel cell matches jitter.strength=%r; no jitter curve",
                    cfg.jitter_strength)
    return out


# --------------------------------------------------------------------------- lesions
class Take(Sequence):
    """Lazy view ``seq[idx[0]], seq[idx[1]], …`` (images are only read when indexed)."""

    def __init__(self, seq, idx):
        self.seq = seq
        self.idx = np.asarray(idx, dtype=int)

    def __len__(self) -> int:
        return self.idx.size

    def __getitem__(self, i):
        return self.seq[int(self.idx[i])]


@dataclass
class LesionCohort:
    """Images of the size-stratified lesion probe.

    Attributes
    ----------
    images : sequence of ndarray (H, W); may be lazy (read from disk when indexed)
    image_id : ndarray str, shape (m,)
    patient_id : ndarray str, shape (m,)
    labels : dict finding -> ndarray float (m,)  (1 positive, 0 negative, NaN unknown)
    boxes : dict finding -> ndarray (m, 4)  lesion box of positives (largest of the image), NaN else
    any_box : ndarray (m, 4)   some valid box per image (only for calling the embedder)
    shapes : list of image shapes (default: read from ``images``)
    """

    images: Sequence
    image_id: np.ndarray
    patient_id: np.ndarray
    labels: dict[str, np.ndarray]
    boxes: dict[str, np.ndarray]
    any_box: np.ndarray
    shapes: list | None = None

    def __post_init__(self):
        if self.shapes is None:
            self.shapes = [tuple(np.shape(im)) for im in self.images]


def run_lesions(cohort: LesionCohort, embedders: Mapping[str, Embedder], cfg,
                poolings: Sequence[str]) -> list[ScoreSet]:
    """Image-level and box-level size-stratified lesion probes for every finding and checkpoint."""
    if any(len(shp) != 2 for shp in cohort.shapes):
        log.warning("lesion probe: skipped, it needs 2-D images (boxes are 2-D)")
        return []
    img_pools = [p for p in poolings if p in cfg.image_poolings]
    out: list[ScoreSet] = []
    whole = {ck: embed(cohort.images, cohort.any_box) for ck, embed in embedders.items()}
    for finding in cfg.findings:
        lab = cohort.labels[finding]
        known = np.isfinite(lab)
        y = lab[known].astype(int)
        idx = np.flatnonzero(known)
        if np.unique(y).size < 2:
            log.warning("lesion probe %r: needs positive and negative images; skipped", finding)
            continue
        shapes = [cohort.shapes[i] for i in idx]
        area = np.array([b[2] * b[3] / (s[-1] * s[-2]) if yy == 1 else np.nan
                         for b, s, yy in zip(cohort.boxes[finding][idx], shapes, y)])
        if np.any((y == 1) & ~np.isfinite(area)):
            raise InputError(f"lesion probe {finding!r}: a positive image has no lesion box")
        thr = size_threshold(area[y == 1], cfg.size_threshold)
        stratum = size_stratum(area, thr)
        key = {"finding": finding, "size_threshold": thr}
        ss = ScoreSet("lesion_image", key, y, cohort.patient_id[idx], cohort.image_id[idx],
                      stratum=stratum, paired=False)
        try:
            folds = grouped_folds(y, ss.groups, cfg.n_splits, cfg.seed)
        except InputError as exc:
            log.warning("lesion probe %r: %s; skipped", finding, exc)
            continue
        for ck in embedders:
            _fit(ss, ck, {p: v[idx] for p, v in whole[ck].items()}, img_pools, folds, cfg)
        out.append(ss)
        if cfg.box_level and "roi" in poolings:
            out.extend(_box_level(cohort, embedders, cfg, finding, idx, y, area, thr, stratum, whole))
    return out


def _box_level(cohort, embedders, cfg, finding, idx, y, area, thr, stratum, whole) -> list[ScoreSet]:
    pos = idx[y == 1]
    neg = idx[y == 0]
    pos_boxes = cohort.boxes[finding][pos]
    shapes = cohort.shapes
    nidx, cboxes = matched_control_boxes(pos_boxes, [shapes[i] for i in pos],
                                         [shapes[i] for i in neg], seed=cfg.seed)
    ctrl = neg[nidx]
    m = pos.size
    yb = np.r_[np.ones(m, int), np.zeros(m, int)]
    groups = np.r_[cohort.patient_id[pos], cohort.patient_id[ctrl]]
    sid = np.r_[[f"{cohort.image_id[i]}|lesion" for i in pos],
                [f"{cohort.image_id[j]}|control_for_{cohort.image_id[i]}" for i, j in zip(pos, ctrl)]]
    st_pos = stratum[y == 1]
    strat = np.r_[st_pos, st_pos]
    try:
        folds = grouped_folds(yb, groups, cfg.n_splits, cfg.seed)
    except InputError as exc:
        log.warning("box-level lesion probe %r: %s; skipped", finding, exc)
        return []
    pos_imgs = Take(cohort.images, pos)
    ctrl_imgs = Take(cohort.images, ctrl)
    base = {"finding": finding, "size_threshold": thr}
    ss = ScoreSet("lesion_box", dict(base), yb, groups, sid, stratum=strat, paired=False,
                  match_negatives=True)
    sets = [ss]
    levels = cfg.jitter_levels if cfg.jitter_lesion else (0.0,)
    jsets = {}
    same_box = np.allclose(cohort.any_box[pos], pos_boxes)  # the lesion box was embedded already
    for ck, embed in embedders.items():
        ep = {"roi": whole[ck]["roi"][pos]} if same_box and "roi" in whole[ck] else embed(pos_imgs, pos_boxes)
        ec = embed(ctrl_imgs, cboxes)
        _fit(ss, ck, {"roi": np.vstack([ep["roi"], ec["roi"]])}, ["roi"], folds, cfg)
        for li, level in enumerate(levels):
            if level == 0 or len(levels) < 2:
                continue
            # identical draws for a lesion box and its control (same relative jitter)
            jp = jitter_boxes(pos_boxes, level, [shapes[i] for i in pos], seed=cfg.seed * 1000 + li)
            jc = jitter_boxes(cboxes, level, [shapes[j] for j in ctrl], seed=cfg.seed * 1000 + li)
            iou = float(box_iou(pos_boxes, jp).mean())
            js = jsets.setdefault(li, ScoreSet(
                "lesion_box_jitter", {**base, "jitter": float(level), "mean_iou": iou}, yb, groups,
                sid, stratum=strat, paired=False, match_negatives=True))
            _fit(js, ck, {"roi": np.vstack([embed(pos_imgs, jp)["roi"], embed(ctrl_imgs, jc)["roi"]])},
                 ["roi"], folds, cfg)
        if len(levels) >= 2 and 0.0 in levels:
            li0 = levels.index(0.0)
            js = jsets.setdefault(li0, ScoreSet(
                "lesion_box_jitter", {**base, "jitter": 0.0, "mean_iou": 1.0}, yb, groups, sid,
                stratum=strat, paired=False, match_negatives=True))
            js.scores.setdefault(ck, {})["roi"] = ss.scores[ck]["roi"]
    sets.extend(jsets[k] for k in sorted(jsets))
    return sets
