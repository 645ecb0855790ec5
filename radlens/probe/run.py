"""``pooling_probe``: the whole probe from a manifest and encoder specs, and ``probe_arrays`` for
in-memory images and loaded encoders (what the demo calls).

Outputs of :func:`pooling_probe` (next to ``out``):

* ``probe.parquet`` — the result table (:mod:`radlens.probe.summary`), provenance in its metadata;
* ``probe.scores.parquet`` — per-sample out-of-fold probe scores (re-analysis, audits);
* ``probe.failures.csv`` — cases that could not be loaded (``case_id, stage, error``);
* figures ``probe_panel.png/.svg``, ``probe_size_gap``, ``probe_jitter``, ``probe_pre_post``.
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from radlens.errors import CaseError, ConfigError, InputError
from radlens.probe.analyses import Embedder, LesionCohort, run_lesions, run_panel
from radlens.probe.config import ProbeConfig, load_probe_config
from radlens.probe.summary import scores_table, summarize

log = logging.getLogger(__name__)


class _TokenFallbackFilter(logging.Filter):
    """Counts and drops the encoders' "ROI covers no token" warnings: footprints smaller than a
    token are part of the design here; one summary line is logged instead."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if "cover no token" in record.getMessage():
            self.count += 1
            return False
        return True


@contextlib.contextmanager
def _quiet_token_fallback():
    lg = logging.getLogger("radlens.encoders.embed")
    f = _TokenFallbackFilter()
    lg.addFilter(f)
    try:
        yield f
    finally:
        lg.removeFilter(f)
        if f.count:
            log.info("pooling probe: in %d embedding batches some boxes were smaller than the share "
                     "of a token the ROI rule needs; the nearest token was pooled (expected for "
                     "small footprints)", f.count)


@dataclass
class ProbeResult:
    """Result of the pooling probe.

    Attributes
    ----------
    table : pandas.DataFrame   one row per estimate (columns :data:`radlens.probe.summary.COLUMNS`)
    scores : pandas.DataFrame  per-sample out-of-fold scores
    failures : list of dict    ``case_id, stage, error``
    meta : dict                config, encoders, counts
    paths : dict name -> Path  written files (empty for :func:`probe_arrays`)
    """

    table: Any
    scores: Any
    failures: list = field(default_factory=list)
    meta: dict = field(default_factory=dict)
    paths: dict = field(default_factory=dict)


def encoder_embedder(encoder, *, batch_size: int = 32, roi_mode: str = "full") -> Embedder:
    """Wrap a loaded :class:`radlens.encoders.Encoder` as an embedder (all poolings, one pass)."""
    from radlens.encoders.embed import embed_arrays

    def embed(images, rois):
        if isinstance(rois, np.ndarray) and rois.ndim == 2 and rois.shape[1] == 4:
            return embed_arrays(encoder, images, boxes=rois, pooling=("cls", "mean", "roi"),
                                batch_size=batch_size, roi_mode=roi_mode)
        return embed_arrays(encoder, images, rois=list(rois), pooling=("cls", "mean", "roi"),
                            batch_size=batch_size, roi_mode=roi_mode)

    return embed


def _as_embedder(obj, cfg: ProbeConfig) -> Embedder:
    if callable(obj) and not hasattr(obj, "forward_features"):
        return obj
    if hasattr(obj, "forward_features"):
        return encoder_embedder(obj, batch_size=cfg.batch_size)
    from radlens.encoders import load_encoder

    return encoder_embedder(load_encoder(obj), batch_size=cfg.batch_size)


def _resolve_poolings(embedder: Embedder, image: np.ndarray, cfg: ProbeConfig) -> list[str]:
    box = _probe_roi(image)
    emb = embedder([image], box)
    got = list(emb)
    if (cfg.poolings == "auto" and "global" in emb and "mean" in emb
            and np.allclose(emb["global"], emb["mean"], rtol=1e-5, atol=1e-6)):
        # a CNN's global average pool *is* the patch mean: probing it twice adds nothing
        log.info("pooling probe: 'global' equals 'mean' for this encoder (global average pool); "
                 "probing 'global' only")
        got.remove("mean")
    if cfg.poolings == "auto":
        return got
    want = [("cls" if "cls" in got else "global") if p in ("cls", "global") else p for p in cfg.poolings]
    missing = [p for p in want if p not in got]
    if missing:
        raise ConfigError(f"poolings={list(cfg.poolings)}: the encoder gives {got}, not {missing}")
    return list(dict.fromkeys(want))


def _probe_roi(image):
    if image.ndim == 2:
        h, w = image.shape
        return np.array([[w / 4, h / 4, w / 2, h / 2]])
    m = np.zeros(image.shape, bool)
    m[tuple(slice(s // 4, s // 4 + max(1, s // 2)) for s in image.shape)] = True
    return [m]


def probe_arrays(images: Sequence[np.ndarray], encoders: Mapping[str, Any], *,
                 image_ids: Sequence[str] | None = None, lesions: LesionCohort | None = None,
                 config: ProbeConfig | Mapping | str | Path | None = None) -> ProbeResult:
    """Run the pooling probe on in-memory images.

    Parameters
    ----------
    images : sequence of ndarray (H, W) or (D, H, W)
        Clean source images of the perturbation panel.
    encoders : mapping checkpoint name -> encoder
        Loaded :class:`radlens.encoders.Encoder`, an encoder spec (dict / YAML path), or an
        embedder callable ``f(images, boxes (n, 4) | masks) -> {pooling: (n, d)}``. Name them
        ``"pre"`` and ``"post"`` to get the pre-vs-post differences.
    image_ids : ids of ``images`` (CV/bootstrap groups; default ``img0000``…)
    lesions : :class:`LesionCohort`, optional — images with findings for the size-stratified probe
    config : :class:`ProbeConfig`, a mapping or YAML path merged over the packaged default

    Returns
    -------
    ProbeResult (``paths`` empty)
    """
    cfg = config if isinstance(config, ProbeConfig) else load_probe_config(config)
    if not encoders:
        raise InputError("probe_arrays: encoders is empty; give at least {'pre': encoder}")
    images = [np.asarray(im, dtype=np.float32) for im in images]
    ids = [f"img{i:04d}" for i in range(len(images))] if image_ids is None else [str(i) for i in image_ids]
    if len(ids) != len(images) or len(set(ids)) != len(ids):
        raise InputError(f"probe_arrays: image_ids must be {len(images)} unique ids, got {len(ids)} "
                         f"({len(set(ids))} unique)")
    embedders = {str(k): _as_embedder(v, cfg) for k, v in encoders.items()}
    first = next(iter(embedders.values()))
    poolings = _resolve_poolings(first, images[0], cfg)
    log.info("pooling probe: %d source images, %d panel cells, poolings %s, checkpoints %s",
             len(images), len(cfg.panel.cells()), poolings, list(embedders))
    if lesions is not None and cfg.findings:
        missing = [f for f in cfg.findings if f not in lesions.labels]
        if missing:
            raise ConfigError(f"lesion.findings {missing} are not among the lesion labels "
                              f"{sorted(lesions.labels)}")
    with _quiet_token_fallback():
        sets = run_panel(images, ids, embedders, cfg, poolings)
        if lesions is not None and cfg.findings:
            sets += run_lesions(lesions, embedders, cfg, poolings)
    names = list(embedders)
    pre, post = (names[0], names[1]) if len(names) >= 2 else ("pre", "post")
    table = summarize(sets, n_boot=cfg.n_boot, alpha=cfg.alpha, seed=cfg.seed, pre=pre, post=post)
    meta = {"config": cfg.raw, "poolings": poolings, "checkpoints": names, "n_images": len(images),
            "n_lesion_images": 0 if lesions is None else len(lesions.images)}
    return ProbeResult(table, scores_table(sets), [], meta)


# --------------------------------------------------------------------------- manifest
def _load_images(rows: Sequence[Mapping], failures: list, stage: str) -> tuple[list, list]:
    from radlens.io.images import load_case
    from radlens.progress import progress

    ok_rows, arrays = [], []
    for row in progress(rows, total=len(rows), desc=f"load ({stage})"):
        try:
            case = load_case(row)
            arrays.append(case.array)
            ok_rows.append((row, case))
        except CaseError as exc:
            failures.append({"case_id": exc.case_id, "stage": stage, "error": exc.message})
    return ok_rows, arrays


def _query(df, q: str | None, what: str):
    if not q:
        return df
    try:
        return df.query(q)
    except Exception as exc:
        raise ConfigError(f"{what}={q!r} is not a valid pandas query on the manifest columns "
                          f"{list(df.columns)[:20]}: {exc}") from exc


def _panel_rows(df, cfg: ProbeConfig):
    d = _query(df, cfg.query, "images.query").drop_duplicates("image")
    if len(d) == 0:
        raise InputError(f"images.query={cfg.query!r} selects no image of the manifest")
    if cfg.max_images is not None and len(d) > cfg.max_images:
        d = d.sample(n=cfg.max_images, random_state=cfg.seed).sort_index()
    return d.to_dict("records")


class _LazyCases(Sequence):
    """Image arrays of manifest rows: kept in memory up to a byte budget (filled while the ROIs
    are scanned), re-read from disk when indexed beyond it (lesion cohorts can be large)."""

    def __init__(self, rows: list, cache: dict[int, np.ndarray]):
        self.rows = rows
        self.cache = cache

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i):
        if i in self.cache:
            return self.cache[i]
        from radlens.io.images import load_case

        return load_case(self.rows[i]).array


_LESION_CACHE_BYTES = 2 << 30


def _lesion_cohort(df, cfg: ProbeConfig, failures: list) -> LesionCohort | None:
    from radlens.io.images import load_case
    from radlens.progress import progress

    if not cfg.findings:
        return None
    missing = [f for f in cfg.findings if f not in df.columns]
    if missing:
        raise ConfigError(f"lesion.findings {missing} are not manifest columns; available: "
                          f"{[c for c in df.columns if c not in ('image', 'mask')][:30]}")
    d = _query(df, cfg.lesion_query, "lesion.query")
    for f in cfg.findings:
        vals = set(d[f].dropna().unique().tolist())
        if not vals <= {0, 1, 0.0, 1.0, True, False}:
            raise ConfigError(f"lesion finding column {f!r} must be binary 0/1; found {sorted(map(str, vals))[:6]}")
    by_image: dict[str, int] = {}
    rows, iid, pid, shapes, any_box = [], [], [], [], []
    cache: dict[int, np.ndarray] = {}
    cached_bytes = 0
    labels = {f: [] for f in cfg.findings}
    boxes = {f: [] for f in cfg.findings}
    records = d.to_dict("records")
    for row in progress(records, total=len(records), desc="lesion ROIs"):
        try:
            case = load_case(row)  # ROI box, image shape and (within the budget) pixels
            shape = tuple(case.array.shape)
        except CaseError as exc:
            failures.append({"case_id": exc.case_id, "stage": "lesion-load", "error": exc.message})
            continue
        key = row["image"]
        if key not in by_image:
            by_image[key] = len(rows)
            if cached_bytes + case.array.nbytes <= _LESION_CACHE_BYTES:
                cache[len(rows)] = case.array
                cached_bytes += case.array.nbytes
            rows.append(row)
            iid.append(str(row["case_id"]))
            pid.append(str(row.get("patient_id", row["case_id"])))
            shapes.append(shape)
            any_box.append(case.bbox)
            for f in cfg.findings:
                labels[f].append(np.nan)
                boxes[f].append([np.nan] * 4)
        k = by_image[key]
        for f in cfg.findings:
            v = row.get(f)
            if v is None or (isinstance(v, float) and np.isnan(v)):
                continue
            v = int(v)
            cur = labels[f][k]
            labels[f][k] = v if np.isnan(cur) else max(cur, v)
            if v == 1:
                b = list(case.bbox)
                old = boxes[f][k]
                if np.isnan(old[0]) or b[2] * b[3] > old[2] * old[3]:
                    boxes[f][k] = b
    if not rows:
        return None
    if len(cache) < len(rows):
        log.info("lesion probe: %d of %d images kept in memory, the rest re-read when embedded",
                 len(cache), len(rows))
    return LesionCohort(_LazyCases(rows, cache), np.asarray(iid), np.asarray(pid),
                        {f: np.asarray(v, float) for f, v in labels.items()},
                        {f: np.asarray(v, float) for f, v in boxes.items()},
                        np.asarray(any_box, float), shapes=shapes)


def pooling_probe(manifest, encoder, *, encoder_post=None, panel=None, out="probe.parquet",
                  findings: Sequence[str] | None = None, device: str = "cpu",
                  figures: bool = True) -> ProbeResult:
    """Pooling probe of one encoder (and optionally its fine-tuned checkpoint) on a manifest.

    Parameters
    ----------
    manifest : path or :class:`radlens.io.manifest.Manifest`
    encoder, encoder_post : encoder spec (YAML path / dict) of the pre and (optional) post checkpoint
    panel : panel YAML path or mapping merged over ``radlens/configs/panel_default.yaml``
    out : result table path (``.parquet`` or ``.csv``); scores, failures and figures go next to it
    findings : override ``lesion.findings`` (binary label columns with lesion boxes)
    device : torch device for the encoders
    figures : also render the figures

    Returns
    -------
    ProbeResult with ``paths`` of every written file.
    """
    from radlens.encoders import load_encoder
    from radlens.io.artifacts import provenance, write_failures, write_table
    from radlens.io.manifest import read_manifest

    cfg = load_probe_config(panel)
    if findings is not None:
        cfg.findings = tuple(findings)
        cfg.raw.setdefault("lesion", {})["findings"] = list(findings)
    m = manifest if hasattr(manifest, "df") else read_manifest(manifest)
    out = Path(out)
    encs = {"pre": load_encoder(encoder, device=device)}
    if encoder_post is not None:
        encs["post"] = load_encoder(encoder_post, device=device)
    failures: list[dict] = []
    loaded, arrays = _load_images(_panel_rows(m.df, cfg), failures, "panel-load")
    if len(arrays) < 4:
        raise InputError(f"manifest {str(getattr(m, 'path', manifest))!r}: only {len(arrays)} panel "
                         "image(s) could be loaded; need at least 4 (see the failures table)")
    ids = [str(r["case_id"]) for r, _ in loaded]
    lesions = _lesion_cohort(m.df, cfg, failures)
    res = probe_arrays(arrays, encs, image_ids=ids, lesions=lesions, config=cfg)
    res.failures = failures
    spec_meta = {k: {"spec": v.spec, "checkpoint_sha256": v.checkpoint_hash} for k, v in encs.items()}
    inputs = {"manifest": getattr(m, "path", None)}
    meta = provenance("pooling-probe", cfg.raw, inputs, encoders=spec_meta, **{
        k: v for k, v in res.meta.items() if k != "config"})
    res.meta = meta
    stem = out.with_suffix("")
    paths = {"table": write_table(res.table, out, meta),
             "scores": write_table(res.scores, Path(f"{stem}.scores{out.suffix}"), meta),
             "failures": write_failures(Path(f"{stem}.failures.csv"), failures)}
    if failures:
        log.warning("pooling probe: %d case(s) failed to load; see %s", len(failures), paths["failures"])
    if figures:
        from radlens.viz.probe import probe_figures

        for name, p in probe_figures(res.table, out.parent, prefix=stem.name).items():
            paths[f"figure_{name}"] = p
    res.paths = paths
    log.info("pooling probe: wrote %s", ", ".join(str(p) for p in paths.values()))
    return res
