"""Embedding extraction: every pooling from one forward pass, in memory or streamed over a cohort.

* :func:`embed_arrays` — in-memory images + ROIs/boxes (what the pooling probe calls with its
  perturbed images and jittered boxes); returns ``{pooling: (n, D)}``.
* :func:`embed` — a manifest → ``embeddings.npz`` (:func:`radlens.io.artifacts.read_embeddings`).
  Cases are loaded and preprocessed by worker processes ahead of the model, in manifest order,
  in one pass over every pending chunk (several ROIs of one image decoded once); results go to
  per-chunk files under ``<out>.parts/`` that a re-run reuses (resume), and are merged at the end
  through memory-mapped arrays, so memory does not grow with the cohort. ``executor="dask"``
  runs the chunks on a Dask cluster instead (:mod:`radlens.encoders.chunks`), same file.
* ``layers=[...]``: several layers' poolings from the same forward pass, keys ``pooling@layer``.

Where the time of ``embed`` goes (``benchmarks/embed_bench.py --part stages``, 2-core CPU, ViT
h384x6 at 128 px from 32 px NIfTI phantoms): the forward pass dominates; decoding (two SimpleITK
reads per case) is the largest loading cost; preprocessing was dominated by a multi-threaded
channel-repeat kernel (now a numpy copy); ROI -> token mapping is negligible.
"""
from __future__ import annotations

import contextlib
import logging
import shutil
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from radlens.encoders.encoder import Encoder, load_encoder, resolve_device
from radlens.encoders.loader import CasePreparer, loader_workers, prepared_cases, resolve_loader
from radlens.encoders.pooling import pool_tokens, resolve_poolings, to_numpy
from radlens.encoders.spec import ROI_MODES
from radlens.encoders.tokens import box_to_mask, select_tokens
from radlens.errors import ConfigError, InputError

log = logging.getLogger(__name__)

PARTS_SUFFIX = ".parts"


def _autocast_ctx(device: str, enabled: bool):
    import torch

    if not enabled:
        return contextlib.nullcontext()
    dev = "cuda" if device.startswith("cuda") else "cpu"
    return torch.autocast(device_type=dev, dtype=torch.float16 if dev == "cuda" else torch.bfloat16)


def forward_pool(encoder: Encoder, x, names: Sequence[str], weights=None, autocast: bool = False) -> dict[str, np.ndarray]:
    """One forward pass of a batch and all requested poolings (of every feature layer).

    Parameters
    ----------
    encoder : Encoder
    x : Tensor, shape (B, C, *spatial_size)
    names : pooling names (:meth:`Encoder.pool_names`); on a multi-layer encoder they are resolved
        per layer (``cls`` → ``global`` on a layer without a class token)
    weights : ndarray or Tensor, shape (B, N), or a list of them (one per layer), optional
        ROI token weights (rows sum to 1) on each layer's grid; required for ``roi``. One array
        serves every layer when all layers share the grid.
    autocast : bool
        float16 (CUDA) / bfloat16 (CPU) autocast for the forward pass; pooling is float32.

    Returns
    -------
    dict key -> ndarray float32 (B, D_layer); keys are the pooling names for a single-layer
    encoder and ``"{pooling}@{layer}"`` for a multi-layer one (:meth:`Encoder.output_key`).
    """
    import torch

    with torch.inference_mode():
        with _autocast_ctx(encoder.device, autocast):
            x = x.to(encoder.device, non_blocking=True)
            toks = encoder.forward_layers(x) if encoder.multi_layer else [encoder.forward_features(x)]
        out: dict[str, Any] = {}
        for li, tok in enumerate(toks):
            lnames = resolve_poolings(names, tok.cls is not None) if encoder.multi_layer else names
            w = weights[li] if isinstance(weights, (list, tuple)) else weights
            w = None if w is None else torch.as_tensor(w, device=encoder.device)
            for k, v in pool_tokens(tok, lnames, w).items():
                out[encoder.output_key(k, li)] = v
        return to_numpy(out)


def _as_encoder(encoder: Any, device: str | None, roi: dict | None = None, layers=None) -> Encoder:
    if isinstance(encoder, Encoder):
        if device is not None and resolve_device(device) != encoder.device:
            raise InputError(f"device={device!r} but the encoder was loaded on {encoder.device!r}; load it with "
                             f"load_encoder(spec, device={device!r}) or leave device unset")
        if roi:
            raise InputError("roi options can only be overridden when embed() loads the encoder from a spec")
        if layers is not None:
            want = [str(v) for v in ([p.strip() for p in layers.split(",") if p.strip()]
                                     if isinstance(layers, str) else layers)]
            if want != encoder.layer_names:
                raise InputError(f"layers={want} but the encoder was loaded with layers {encoder.layer_names}; "
                                 "load it with load_encoder(spec, layers=...) or pass the spec to embed()")
        return encoder
    return load_encoder(encoder, device=device or "cpu", roi=roi, layers=layers)


def _layer_weights(encoder: Encoder, roi_cov: np.ndarray, case_id: str, rule=None, min_overlap=None):
    """[(weights (N_l,), n_tokens, fallback) per layer] for one image (once per distinct grid)."""
    r = encoder.spec["roi"]
    done: dict[tuple, tuple] = {}
    for g in encoder.grids:
        if g not in done:
            idx, fallback, _ = select_tokens(roi_cov, g, rule or r["rule"],
                                             r["min_overlap"] if min_overlap is None else min_overlap, case_id)
            w = np.zeros(int(np.prod(g)), dtype=np.float64)
            w[idx] = 1.0 / idx.size
            done[g] = (w, int(idx.size), bool(fallback))
    return [done[g] for g in encoder.grids]


def _warn_fallbacks(encoder: Encoder, ids: Sequence[str], fallback: np.ndarray, rule=None, min_overlap=None,
                    layer: int = 0) -> None:
    fb = [c for c, f in zip(ids, fallback) if f]
    if fb:
        r = encoder.spec["roi"]
        where = f" (layer {encoder.layer_names[layer]!r})" if encoder.multi_layer else ""
        log.warning("%d of %d ROIs cover no token of grid %s%s under rule=%r (min_overlap=%.2f); the nearest token "
                    "was pooled for them: %s%s", len(fb), len(ids), encoder.grids[layer], where, rule or r["rule"],
                    r["min_overlap"] if min_overlap is None else min_overlap, fb[:10],
                    " ..." if len(fb) > 10 else "")


# --------------------------------------------------------------------------- in memory
def embed_arrays(encoder: Encoder, images: Sequence[np.ndarray], rois: Sequence[np.ndarray] | None = None, *,
                 boxes: Sequence[Sequence[float]] | None = None, pooling: Sequence[str] | str = ("cls", "mean", "roi"),
                 batch_size: int = 16, autocast: bool = False, roi_mode: str | None = None,
                 rule: str | None = None, min_overlap: float | None = None,
                 case_ids: Sequence[str] | None = None, return_info: bool = False):
    """Embed in-memory images; all poolings from one forward pass per batch.

    Parameters
    ----------
    encoder : Encoder
    images : sequence of ndarray, each (H, W) or (D, H, W), stored-image pixels (sizes may differ)
    rois : sequence of ndarray bool/float, same shapes as ``images``, optional
    boxes : sequence of (x, y, w, h) / (x, y, z, w, h, d), optional
        Alternative to ``rois``; fractional boxes cover pixels partially (box jitter is exact).
    pooling : poolings wanted; ``cls`` gives ``global`` on models without a class token
    batch_size : int
    autocast : bool
    roi_mode : {"full", "crop"}, optional
        Overrides the encoder spec's ``roi.mode``.
    rule, min_overlap : optional overrides of the spec's ROI → token rule
    case_ids : names used in errors and warnings (default ``"#<index>"``)
    return_info : bool
        Also return ``{"roi_n_tokens": (n,) int, "roi_fallback": (n,) bool}`` (tokens pooled per
        ROI; whether the nearest token stood in for an ROI that covers none).

    Returns
    -------
    dict pooling -> ndarray float32 (n, D), rows in input order (and the info dict when
    ``return_info``)

    Raises
    ------
    InputError
        Naming the image index / case: empty ROI, wrong dimensionality, shape mismatch.
    """
    names = encoder.pool_names(pooling)
    n = len(images)
    if rois is not None and boxes is not None:
        raise InputError("give rois or boxes, not both")
    if roi_mode is not None and roi_mode not in ROI_MODES:
        raise ConfigError(f"roi_mode={roi_mode!r} not allowed; use one of {list(ROI_MODES)}")
    roi_src = rois if rois is not None else boxes
    if roi_src is not None and len(roi_src) != n:
        raise InputError(f"{len(roi_src)} ROIs/boxes for {n} images; give one per image")
    need_roi = "roi" in names or (roi_mode or encoder.spec["roi"]["mode"]) == "crop"
    if need_roi and roi_src is None:
        raise InputError(f"pooling {names} / roi_mode needs rois= or boxes= for every image")
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size} must be >= 1")
    ids = [f"#{i}" for i in range(n)] if case_ids is None else [str(c) for c in case_ids]
    n_layers = len(encoder.layer_names)
    keys = _output_columns(encoder, pooling)
    chunks: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    n_tok = np.zeros((n_layers, n), dtype=np.int64)
    fallback = np.zeros((n_layers, n), dtype=bool)
    for start in range(0, n, batch_size):
        xs, ws = [], []
        for i in range(start, min(n, start + batch_size)):
            img = np.asarray(images[i])
            roi = None
            box = boxes[i] if boxes is not None else None
            if rois is not None:
                roi = rois[i]
                if np.ndim(roi) == 1 and np.size(roi) == 2 * len(encoder.spatial_size):
                    box, roi = roi, None  # a box passed as rois
            if box is not None:
                roi = box_to_mask(box, img.shape if img.ndim == len(encoder.spatial_size)
                                  else img.shape[-len(encoder.spatial_size):])
            p = encoder.prepare(img, roi if need_roi else None, case_id=ids[i], roi_mode=roi_mode)
            xs.append(p.x)
            if "roi" in names:
                lw = _layer_weights(encoder, p.roi_cov, ids[i], rule, min_overlap)
                for li, (_, nt, fb) in enumerate(lw):
                    n_tok[li, i], fallback[li, i] = nt, fb
                ws.append([w for w, _, _ in lw])
        import torch

        w_layers = [np.stack([w[li] for w in ws]) for li in range(n_layers)] if ws else None
        out = forward_pool(encoder, torch.stack(xs), names, w_layers, autocast)
        for k in keys:
            chunks[k].append(out[k])
    pools = ({k: np.concatenate(v) for k, v in chunks.items()} if n
             else {k: np.zeros((0, keys[k]), np.float32) for k in keys})
    for li in range(n_layers):
        _warn_fallbacks(encoder, ids, fallback[li], rule, min_overlap, layer=li)
    if return_info:
        info = {}
        for li in range(n_layers):
            info[encoder.output_key("roi_n_tokens", li)] = n_tok[li]
            info[encoder.output_key("roi_fallback", li)] = fallback[li]
        return pools, info
    return pools


def _output_columns(encoder: Encoder, pooling) -> dict[str, int]:
    """Artifact key -> embedding dimension, every layer's poolings in layer order."""
    cols: dict[str, int] = {}
    for li, lnames in enumerate(encoder.layer_pool_names(pooling)):
        for k in lnames:
            cols[encoder.output_key(k, li)] = encoder.dims[li]
    return cols


# --------------------------------------------------------------------------- cohort
def _run_chunk(encoder: Encoder, items: Iterator, n_items: int, names: list[str], batch_size: int,
               autocast: bool, bar) -> tuple[list[str], dict[str, np.ndarray], list[dict]]:
    """Consume ``n_items`` prepared cases; forward them in batches of ``batch_size``.

    Returns the case ids, ``{artifact key: (n, D) array}`` (plus ``roi_n_tokens``/``roi_fallback``
    per layer when ``roi`` is pooled) and the failure records.
    """
    import torch

    want_w = "roi" in names
    n_layers = len(encoder.layer_names)
    cols = _output_columns(encoder, names)
    ids: list[str] = []
    pools: dict[str, list[np.ndarray]] = {k: [] for k in cols}
    failures: list[dict] = []
    batch: list[tuple] = []
    info: list[list] = [[] for _ in range(n_layers)]

    def flush():
        if not batch:
            return
        x = torch.stack([b[1] for b in batch])
        if encoder.device.startswith("cuda"):
            x = x.pin_memory()
        w = [np.stack([b[2][li][0] for b in batch]) for li in range(n_layers)] if want_w else None
        out = forward_pool(encoder, x, names, w, autocast)
        for k in cols:
            pools[k].append(out[k])
        ids.extend(b[0] for b in batch)
        if want_w:
            for li in range(n_layers):
                info[li].extend(b[2][li][1:] for b in batch)
        bar.update(len(batch))
        batch.clear()

    for _ in range(n_items):
        cid, x, w, err = next(items)
        if err is not None:
            log.warning("case %r (%s): %s", cid, err[0], err[1])
            failures.append({"case_id": cid, "stage": err[0], "error": err[1]})
            bar.update(1)
            continue
        batch.append((cid, x, w))
        if len(batch) == batch_size:
            flush()
    flush()
    arrays = {k: (np.concatenate(v) if v else np.zeros((0, cols[k]), np.float32)) for k, v in pools.items()}
    if want_w:
        for li in range(n_layers):
            nt = np.asarray([t[0] for t in info[li]], dtype=np.int64)
            fb = np.asarray([t[1] for t in info[li]], dtype=bool)
            arrays[encoder.output_key("roi_n_tokens", li)] = nt
            arrays[encoder.output_key("roi_fallback", li)] = fb
            _warn_fallbacks(encoder, ids, fb, layer=li)
    return ids, arrays, failures


def _chunk_path(parts: Path, i: int) -> Path:
    return parts / f"chunk_{i:06d}.npz"


def _load_chunk(path: Path, fingerprint: str):
    from radlens.io.artifacts import read_npz

    try:
        arrays, meta = read_npz(path)
    except Exception as exc:  # noqa: BLE001 - a broken part is recomputed
        log.warning("ignoring unreadable chunk %s (%s)", path.name, exc)
        return None
    if meta.get("fingerprint") != fingerprint:
        return None
    return arrays


def _write_chunk(path: Path, fingerprint: str, ids, arrays, failures) -> None:
    from radlens.io.artifacts import write_npz

    payload = {"case_id": np.asarray(ids, dtype=str).reshape(-1)}
    payload.update({f"pool_{k}": v for k, v in arrays.items()})
    payload["fail_case_id"] = np.asarray([f["case_id"] for f in failures], dtype=str).reshape(-1)
    payload["fail_stage"] = np.asarray([f["stage"] for f in failures], dtype=str).reshape(-1)
    payload["fail_error"] = np.asarray([f["error"] for f in failures], dtype=str).reshape(-1)
    write_npz(path, payload, {"fingerprint": fingerprint})


def _merge_chunks(out: Path, chunk_files: list[Path], columns: dict[str, tuple], meta: dict) -> tuple[int, list[dict]]:
    """Stream chunk files into one npz through memory-mapped ``.npy`` members (constant memory).

    ``columns`` maps an array name to ``(dtype, trailing shape)``; chunk files hold them as
    ``pool_<name>``.
    """
    import json
    import zipfile

    from radlens.io.artifacts import NPZ_META, atomic_path

    counts, failures, max_len = [], [], 1
    for f in chunk_files:
        with np.load(f, allow_pickle=False) as z:
            cid = z["case_id"]
            counts.append(cid.shape[0])
            if cid.size:
                max_len = max(max_len, int(cid.dtype.itemsize // 4))
            for c, s, e in zip(z["fail_case_id"], z["fail_stage"], z["fail_error"]):
                failures.append({"case_id": str(c), "stage": str(s), "error": str(e)})
    n = int(sum(counts))
    if n == 0:
        return 0, failures
    tmpdir = chunk_files[0].parent
    members = {"case_id": (f"<U{max_len}", ())}
    members.update(columns)
    paths = {k: tmpdir / f"merge_{k}.npy" for k in members}
    row = 0
    mms = {k: np.lib.format.open_memmap(paths[k], mode="w+", dtype=dt, shape=(n, *shp))
           for k, (dt, shp) in members.items()}
    for f, c in zip(chunk_files, counts):
        with np.load(f, allow_pickle=False) as z:
            for k in members:
                mms[k][row:row + c] = z["case_id" if k == "case_id" else f"pool_{k}"]
        row += c
    for m in mms.values():
        m.flush()
    del mms
    meta_path = tmpdir / "merge_meta.npy"
    np.save(meta_path, np.array(json.dumps(meta, default=str)))
    with atomic_path(out) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for k, p in paths.items():
                zf.write(p, f"{k}.npy")
            zf.write(meta_path, f"{NPZ_META}.npy")
    for p in list(paths.values()) + [meta_path]:
        p.unlink(missing_ok=True)
    return n, failures


def embed(manifest: Any, encoder: Any, out: str | Path, *, pooling: Sequence[str] | str = ("cls", "mean", "roi"),
          batch_size: int = 16, device: str | None = None, autocast: bool = False, roi_mode: str | None = None,
          roi_rule: str | None = None, min_overlap: float | None = None, chunk_size: int = 1024,
          resume: bool = True, workers: int = 2, loader: str = "auto", keep_parts: bool = False,
          show_progress: bool | None = None, layers: Sequence | str | None = None, executor: str = "local",
          scheduler: Any = None, jobs: int = 2, dask_threads: int | None = None) -> Path:
    """Embed every case of a manifest; write ``out`` (npz) and ``<out stem>.failures.csv``.

    Parameters
    ----------
    manifest : path or :class:`radlens.io.manifest.Manifest`
    encoder : Encoder, or a spec (YAML path, folder, inline string, dict) loaded on ``device``
    out : path of the ``.npz`` to write
    pooling : poolings (``cls``/``global``, ``mean``, ``roi``), all from one forward pass
    batch_size : images per forward pass
    device : ``cpu``, ``cuda``, ``cuda:N`` (default cpu, or the loaded encoder's)
    autocast : float16 (CUDA) / bfloat16 (CPU) autocast
    roi_mode, roi_rule, min_overlap : overrides of the spec's ``roi`` section
    chunk_size : cases per chunk file; memory holds one chunk's embeddings
    resume : reuse finished chunk files of an interrupted run with the same settings
    workers : threads / processes loading and preprocessing cases ahead of the model (0 = none)
    loader : {"auto", "thread", "process"}
        ``auto``: worker processes with one torch thread each (on CUDA, Python preprocessing must
        not starve the GPU; on the CPU, loader threads would run torch kernels multi-threaded next
        to the model's own threads); on the CPU only as many as there are cores the model's
        threads leave free, none when it uses them all (:func:`radlens.encoders.loader.loader_workers`).
    keep_parts : keep ``<out>.parts/`` after merging
    show_progress : progress bar (default: when stderr is a terminal)
    layers : list or comma-separated str, optional
        Several feature layers read from ONE forward pass (dotted module names; ViT blocks by
        index; ``hf``: ``hidden_states`` indices), replacing the spec's ``layer``. With more than one
        layer the arrays are named ``"{pooling}@{layer}"`` (e.g. ``roi@layer2``, ``cls@3``) and the
        meta holds ``layers`` (names, in the order given) and ``layer_info`` (per layer: ``grid``,
        ``dim``, ``has_cls``, ``poolings``); with one layer the file is the single-layer file.
    executor : {"local", "dask"}
        ``dask``: every pending chunk is a task on a Dask cluster (each worker loads the model once);
        results are written here as they arrive and merged in manifest order: the same file as a
        local run. The workers need radlens and the same image/checkpoint paths.
    scheduler : str, distributed.Client or None
        Dask scheduler address (``tcp://host:8786``) or client; None starts a temporary local
        cluster of ``jobs`` single-threaded workers.
    jobs : int
        Workers of that temporary local cluster.
    dask_threads : int, optional
        torch threads on each Dask worker (default: the worker's own setting).

    Returns
    -------
    Path to ``out``. Its meta holds ``encoder`` (the spec), ``checkpoint_sha256``, ``poolings``,
    ``grid``, ``dim`` (of the first layer), ``layers`` (when a layer is named), ``roi`` and
    ``provenance``.

    Raises
    ------
    InputError
        When every case fails (the failures are listed), or a parameter is not allowed.
    """
    from radlens.io.artifacts import obj_hash, provenance, write_failures
    from radlens.io.manifest import Manifest, read_manifest
    from radlens.progress import progress

    out = Path(out)
    if out.suffix != ".npz":
        raise InputError(f"out={str(out)!r}: embeddings are written as .npz; give a path ending in .npz")
    if executor not in ("local", "dask"):
        raise ConfigError(f"executor={executor!r} not allowed; use 'local' or 'dask'")
    if executor != "dask" and scheduler is not None:
        raise ConfigError(f"scheduler={scheduler!r} is only used with executor='dask'")
    for name, val in (("batch_size", batch_size), ("chunk_size", chunk_size)):
        if not isinstance(val, int) or val < 1:
            raise ConfigError(f"{name}={val!r} must be a positive integer")
    if roi_mode is not None and roi_mode not in ROI_MODES:
        raise ConfigError(f"roi_mode={roi_mode!r} not allowed; use one of {list(ROI_MODES)}")
    overrides = {"rule": roi_rule, "min_overlap": min_overlap, "mode": roi_mode}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    enc = _as_encoder(encoder, device, overrides if not isinstance(encoder, Encoder) else None, layers)
    if isinstance(encoder, Encoder) and (roi_rule is not None or min_overlap is not None):
        raise InputError("roi_rule/min_overlap overrides need a spec, not a loaded Encoder; set them in the spec")
    names = enc.pool_names(pooling)
    columns = _output_columns(enc, names)
    # per-case problems go to the failures table when each case loads; no up-front read of every image
    m = manifest if isinstance(manifest, Manifest) else read_manifest(manifest, check_images=False)
    n_rows = len(m.df)
    if n_rows == 0:
        raise InputError(f"manifest {str(m.path)!r} has no rows")
    mode = roi_mode or enc.spec["roi"]["mode"]
    run_cfg = {"spec": enc.spec, "checkpoint": enc.checkpoint_hash, "poolings": names, "roi_mode": mode,
               "batch_size": batch_size, "autocast": bool(autocast), "device_type": enc.device.split(":")[0]}
    run_fp = obj_hash(run_cfg)
    parts = out.with_name(out.name + PARTS_SUFFIX)
    if not resume and parts.exists():
        shutil.rmtree(parts)
    parts.mkdir(parents=True, exist_ok=True)
    starts = list(range(0, n_rows, chunk_size))
    cols = list(m.df.columns)
    need_roi = "roi" in names or mode == "crop"
    prepare = CasePreparer(enc.preprocessor, enc.grids, enc.spec["roi"], need_roi, "roi" in names, roi_mode)
    kind = resolve_loader(loader, enc.device, workers)
    workers = loader_workers(loader, enc.device, workers)
    chunk_files, reused, pending = [], 0, []

    def chunk_rows(s0: int) -> list[dict]:
        return [dict(zip(cols, v)) for v in m.df.iloc[s0:s0 + chunk_size].itertuples(index=False, name=None)]

    bar = progress(total=n_rows, desc=f"embed {enc.name}", disable=None if show_progress is None else not show_progress)
    try:
        for ci, s0 in enumerate(starts):
            # one chunk of rows at a time: memory does not grow with the cohort
            crow = chunk_rows(s0)
            fp = obj_hash([run_fp, [(str(r["case_id"]), str(r["image"]), str(r.get("mask")),
                                     [r.get(k) for k in ("label", "bbox_x", "bbox_y", "bbox_w", "bbox_h")])
                                    for r in crow]])
            path = _chunk_path(parts, ci)
            chunk_files.append(path)
            if resume and path.exists() and _load_chunk(path, fp) is not None:
                reused += 1
                bar.update(len(crow))
                continue
            pending.append((ci, s0, len(crow), fp, path))
        if executor == "dask":
            from radlens.encoders.chunks import run_chunks_dask

            by_chunk = {p[0]: p for p in pending}
            tasks = [{"chunk": ci, "rows": chunk_rows(s0), "spec": enc.spec, "device": enc.device, "names": names,
                      "batch_size": batch_size, "autocast": bool(autocast), "roi_mode": roi_mode,
                      "workers": 0, "threads": dask_threads} for ci, s0, _, _, _ in pending]

            def write(res):
                if res["checkpoint_sha256"] != enc.checkpoint_hash:
                    raise InputError(f"a Dask worker loaded different weights (sha256 {res['checkpoint_sha256']}) "
                                     f"than this machine ({enc.checkpoint_hash}); the workers must see the same "
                                     "checkpoint files under the same paths")
                _, _, _, fp_, path_ = by_chunk[res["chunk"]]
                _write_chunk(path_, fp_, res["ids"], res["arrays"], res["failures"])

            run_chunks_dask(tasks, write, bar, scheduler=scheduler, jobs=jobs)
        elif pending:
            # ONE loader pass over every pending chunk (rows built lazily, chunk by chunk): loading runs
            # ahead across chunk boundaries while a finished chunk is written
            rows = (r for p in pending for r in chunk_rows(p[1]))
            items = prepared_cases(prepare, rows, workers, kind, window=max(2 * batch_size, 4))
            try:
                for _, _, n_c, fp, path in pending:
                    ids, arrays, fails = _run_chunk(enc, items, n_c, names, batch_size, autocast, bar)
                    _write_chunk(path, fp, ids, arrays, fails)
            finally:
                items.close()
    finally:
        bar.close()
    if reused:
        log.info("resumed: reused %d of %d finished chunks from %s", reused, len(starts), parts)
    meta = {
        "encoder": enc.spec, "checkpoint_sha256": enc.checkpoint_hash, "poolings": names,
        "grid": list(enc.grid), "dim": enc.dim, "has_cls": enc.has_cls, "roi": dict(enc.spec["roi"], mode=mode),
        "provenance": provenance("embed", run_cfg, inputs={"manifest": m.path} if m.path else None,
                                 n_cases=n_rows),
    }
    if enc.spec.get("layers") or enc.spec["layer"] is not None:
        meta["layers"] = list(enc.layer_names)
    if enc.multi_layer:
        meta["layer_info"] = {
            name: {"grid": list(g), "dim": d, "has_cls": h, "poolings": p}
            for name, g, d, h, p in zip(enc.layer_names, enc.grids, enc.dims, enc.has_cls_by_layer,
                                        enc.layer_pool_names(names))}
    merge_cols = {k: (np.float32, (d,)) for k, d in columns.items()}
    if "roi" in names:
        for li in range(len(enc.layer_names)):
            merge_cols[enc.output_key("roi_n_tokens", li)] = (np.int64, ())
            merge_cols[enc.output_key("roi_fallback", li)] = (np.bool_, ())
    n_ok, failures = _merge_chunks(out, chunk_files, merge_cols, meta)
    fail_path = out.with_name(out.stem + ".failures.csv")
    write_failures(fail_path, failures)
    if n_ok == 0:
        out.unlink(missing_ok=True)
        listed = "; ".join(f"{f['case_id']} ({f['stage']}): {f['error']}" for f in failures[:5])
        raise InputError(f"embed: every one of the {n_rows} cases failed, e.g. {listed}; see {fail_path}")
    if not keep_parts:
        shutil.rmtree(parts, ignore_errors=True)
    log.info("embed: wrote %s (%d cases, poolings %s, layers %s, dims %s); %d failed -> %s",
             out, n_ok, names, enc.layer_names, enc.dims, len(failures), fail_path)
    return out
