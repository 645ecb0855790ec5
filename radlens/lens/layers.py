"""Layer-wise radiomic lens: where in the encoder did fine-tuning move the radiomic sensitivity?

The single-layer lens (``fit_pre`` → ``refit_post`` → ``compare``) is run once per layer of a
multi-layer embeddings file (``radlens embed --layers``: arrays ``"{pooling}@{layer}"``, meta
``layers``), each layer in its own sub-folder with exactly the single-layer layout, and the
per-layer results are gathered into layer × feature tables and depth curves:

* ``fit_pre_layers``     ``LENS_DIR/layers.json`` + ``LENS_DIR/<layer>/`` (one lens per layer)
* ``refit_post_layers``  ``OUT`` (long table, column ``layer``) + ``OUT.parent/<layer>/OUT.name``
  (the single-layer table of each layer) + ``OUT.json`` (per-layer summaries, with the linear CKA
  pre↔post and the held-out R² pre/post, each with a patient-clustered bootstrap CI)
* ``compare_layers``     ``OUT/<layer>/`` (the single-layer ``compare`` of each layer) +
  ``OUT/layer_features.csv`` (layer × feature: headline change, z, q per task, and the common /
  task-specific decomposition when ``compare`` writes it) + ``OUT/layer_summary.csv`` + figures.

The headline column read from the shift tables is :data:`HEADLINE` (one place to change).
"""
from __future__ import annotations

import contextlib
import logging
import re
from pathlib import Path

import numpy as np

from radlens.errors import InputError

log = logging.getLogger(__name__)

#: headline (emphasis) change per feature in a refit-post table, its z and its q (BH)
HEADLINE, HEADLINE_Z, HEADLINE_Q = "emphasis", "z", "q"
#: cross-task decomposition written by ``compare`` (lens v2): file, value, z, q columns
DECOMPOSITION = {"common": ("common.csv", "common_shift", "common_z", "common_q"),
                 "contrast": ("contrast.csv", "contrast", "contrast_z", "contrast_q")}
LAYERS_FORMAT = "radlens-lens-layers/1"


# --------------------------------------------------------------------------- embeddings by layer
def parse_layers(text: str | None) -> list[str] | None:
    """``--layers`` value: ``None`` or ``"all"`` → None (every layer), else the comma-separated names."""
    if text is None or str(text).strip().lower() == "all":
        return None
    out = [t.strip() for t in str(text).split(",") if t.strip()]
    if not out:
        raise InputError(f"--layers {text!r}: give 'all' or comma-separated layer names")
    return out


def embedding_layers(emb) -> list[str]:
    """Layers of a multi-layer :class:`~radlens.io.artifacts.Embeddings` in depth order
    (``[]`` for a single-layer file)."""
    return list(emb.layers) if emb.multi_layer else []


def select_layer(emb, layer: str):
    """Embeddings of one layer with plain pooling keys (``roi``, ``cls``, ...)."""
    return emb.select(layer)


def resolve_layers(available, requested=None, source: str = "embeddings") -> list[str]:
    """``requested`` (in depth order of ``available``) or all of ``available``; unknown layers raise."""
    available = [str(a) for a in available]
    if requested is None:
        return available
    req = [str(r) for r in requested]
    unknown = [r for r in req if r not in available]
    if unknown:
        raise InputError(f"layer(s) {unknown} not in {source}; available: {available}; "
                         "pick --layers among them or embed them with `radlens embed --layers`")
    return [a for a in available if a in req]


def layer_dirname(layer: str) -> str:
    """Sub-folder name of a layer (characters other than letters, digits, ``._-`` become ``_``)."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", str(layer))
    return name if name not in ("", ".", "..") else f"layer_{name.strip('.') or 'x'}"


def is_layered_lens(path) -> bool:
    """True for a lens folder written by :func:`fit_pre_layers`."""
    return (Path(path) / "layers.json").exists()


def read_layered_lens(path) -> dict:
    """``layers.json`` of a layer-wise lens folder (``layers``, ``dirs``)."""
    from radlens.io.artifacts import read_json

    meta = read_json(Path(path) / "layers.json")
    if meta.get("format") != LAYERS_FORMAT:
        raise InputError(f"{str(Path(path) / 'layers.json')!r} has format {meta.get('format')!r}; "
                         f"this radlens reads {LAYERS_FORMAT!r}; re-run fit-pre --layers")
    return meta


# --------------------------------------------------------------------------- fit-pre / refit-post
@contextlib.contextmanager
def one_thread():
    """One torch and one BLAS thread. Every layer of :func:`fit_pre_layers`, :func:`refit_post_layers_tasks`
    and :func:`compare_layers` runs inside it, with ``jobs=1`` as in a worker process: two OpenBLAS
    threads sum a float32 GEMM in another order than one (up to 1e-5 absolute in the quick demo's shift
    tables), and on a busy 2-core machine they made the lens's small LAPACK calls up to 25x slower."""
    import torch

    from radlens.lens.null import single_thread

    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with single_thread():
            yield
    finally:
        torch.set_num_threads(prev)


def _fit_layer(item) -> dict:
    """Worker of :func:`fit_pre_layers`: one layer's lens (module level: pickled), on one thread
    whatever ``jobs`` is (:func:`one_thread`: the same numbers in a worker and in this process)."""
    from radlens.lens.pipeline import fit_pre

    L, radiomics, embeddings, out, kw = item
    try:
        with one_thread():
            fit_pre(radiomics, embeddings, out, layer=L, **kw)
    except InputError as exc:   # this layer cannot be fitted: the others proceed
        return {"layer": L, "stage": "fit-pre", "error": str(exc)}
    return {}


def _run_layers(fn, items: list, layers: list[str], width: dict, jobs: int, stage: str) -> list[dict]:
    """Run ``fn`` on one item per layer (``jobs`` worker processes, widest layers first so the
    workers finish together). A layer whose input is bad returns ``{"layer", "stage", "error"}``
    (logged, returned sorted by layer order); a crash is re-raised with the worker's traceback."""
    from radlens.parallel import WorkerError, run_cases

    order = sorted(range(len(items)), key=lambda i: -width[layers[i]]) if jobs > 1 else list(range(len(items)))
    failed = []
    for i, r in zip(order, run_cases(fn, [items[i] for i in order], jobs=jobs)):
        if isinstance(r, WorkerError):
            raise RuntimeError(f"{stage} layer {layers[i]} failed: {r}\n{r.traceback}")
        if r:
            failed.append(r)
            log.error("%s layer %s failed: %s", stage, r["layer"], r["error"])
    return sorted(failed, key=lambda f: layers.index(f["layer"]))


def fit_pre_layers(radiomics, embeddings, out, *, layers=None, pooling: str | None = None, manifest=None,
                   groups=None, jobs: int = 1, **lens_params) -> Path:
    """Fit one :class:`~radlens.lens.estimator.RadiomicLens` per layer of a multi-layer
    embeddings file; ``out/<layer>/`` has the single-layer lens layout, ``out/layers.json`` the layers.

    Parameters
    ----------
    radiomics, manifest, groups, pooling, **lens_params : as :func:`radlens.lens.pipeline.fit_pre`.
    embeddings : path   multi-layer pre embeddings (``radlens embed --layers``).
    out : path   lens folder.
    layers : sequence of str, optional   layers to fit (default: every layer in the file).
    jobs : int   worker processes over layers (1: in this process). Every layer's lens is trained
        on its own seeds and one thread whatever ``jobs`` is (:func:`one_thread`), so the lenses are
        the same bit for bit.

    Returns
    -------
    Path of the lens folder.
    """
    from radlens.io.artifacts import read_embeddings, write_json

    emb = read_embeddings(embeddings)
    avail = embedding_layers(emb)
    if not avail:
        raise InputError(f"embeddings {str(embeddings)!r} hold a single layer; fit them without --layers, or "
                         "embed several with `radlens embed --layers L1,L2,...`")
    layers = resolve_layers(avail, layers, f"embeddings {embeddings}")
    out = Path(out)
    dirs = {L: layer_dirname(L) for L in layers}
    if len(set(dirs.values())) < len(dirs):
        raise InputError(f"layers {layers} map to clashing folder names {dirs}; rename the layers")
    jobs = max(1, min(int(jobs), len(layers)))
    kw = dict(pooling=pooling, manifest=manifest, groups=groups, **lens_params)
    items = [(L, radiomics, embeddings, out / dirs[L], kw) for L in layers]
    width = {L: int(np.prod(select_layer(emb, L).get(select_layer(emb, L).default_pooling()).shape[1:]))
             for L in layers}
    log.info("fit-pre: %d layers (%d worker process%s)", len(layers), jobs, "es" if jobs > 1 else "")
    failed = _run_layers(_fit_layer, items, layers, width, jobs, "fit-pre")
    out.mkdir(parents=True, exist_ok=True)
    layers = _check_failures(out / "layer_failures.csv", layers, failed, "fit-pre")
    dirs = {L: dirs[L] for L in layers}
    _remove_stale(out, ("lens.json", "lens.npz", "fit_report.csv", "radiomics_cleaning.csv", "failures.csv"))
    write_json(out / "layers.json", {"format": LAYERS_FORMAT, "layers": layers, "dirs": dirs,
                                     "embeddings": str(embeddings), "pooling": pooling})
    return out


def _check_failures(path: Path, layers: list[str], failed: list[dict], stage: str) -> list[str]:
    """Write the failures table ``path`` (``layer, stage, error``; empty when none) and return the
    layers that succeeded; raise when none did."""
    import pandas as pd

    from radlens.io.artifacts import write_table

    write_table(pd.DataFrame(failed, columns=["layer", "stage", "error"]), path)
    bad = {f["layer"] for f in failed}
    ok = [L for L in layers if L not in bad]
    if not ok:
        raise InputError(f"{stage}: every layer failed ({'; '.join(f['layer'] + ': ' + f['error'] for f in failed)})")
    if bad:
        log.warning("%s: layer(s) %s failed and are left out (see %s)", stage, sorted(bad), path)
    return ok


def _remove_stale(folder: Path, names) -> None:
    """Remove a single-layer run's files from a folder that now holds a layer-wise one (so no reader
    mistakes the folder for a single-layer lens / comparison)."""
    for name in names:
        f = Path(folder) / name
        if f.is_file():
            log.info("removing stale single-layer file %s", f)
            f.unlink()


def remove_layer_index(folder) -> None:
    """Remove ``layers.json`` of an earlier layer-wise run from a folder a single-layer run now writes."""
    f = Path(folder) / "layers.json"
    if f.is_file():
        log.info("removing stale layer-wise index %s", f)
        f.unlink()


def heldout_r2_replicates(lens, Y, weights=None) -> np.ndarray:
    """Held-out R² of the closed-form head (mean over lens seeds) under case weights.

    Per seed the head is fitted (lens penalty) on the seed's training split and scored on its
    validation split; a bootstrap resample re-weights the validation cases (the heads stay those of
    the observed data, so the interval covers the sampling of the evaluation cases).

    Parameters
    ----------
    lens : fitted RadiomicLens;  Y : ndarray, shape (n, k) frame coordinates of the training cases.
    weights : ndarray, shape (B, n), optional (default: one replicate with unit weights).

    Returns
    -------
    ndarray, shape (B,)
    """
    from radlens.stats.ridge import ridge_fit

    W = np.ones((1, Y.shape[0])) if weights is None else np.atleast_2d(np.asarray(weights, float))
    out = np.zeros(W.shape[0])
    S = lens.W1_.shape[0]
    for s in range(S):
        H = lens.hidden_activations(s)[0]
        va = lens.val_masks_[s]
        c, b = ridge_fit(H[~va], Y[~va], float(lens.alpha_[s]))
        res = ((Y[va] - H[va] @ c - b) ** 2).sum(1)
        tot = ((Y[va] - Y[~va].mean(0)) ** 2).sum(1)
        num, den = W[:, va] @ res, W[:, va] @ tot
        with np.errstate(divide="ignore", invalid="ignore"):
            out += np.where(den > 0, 1 - num / den, np.nan)
    return out / S


def layer_statistics(lens, Z_post, *, n_boot: int = 200, seed: int = 0, alpha_level: float = 0.05) -> dict:
    """Linear CKA between pre and post embeddings (in the lens frame: the raw embeddings up to a
    translation and one global scale, unless the lens projects on principal axes) and held-out R²
    pre / post, each with a patient-clustered bootstrap CI (the same resamples for all three).

    Returns
    -------
    dict: ``cka``, ``cka_ci_low``, ``cka_ci_high``, ``r2_pre_heldout`` (+ ``_ci_low``/``_ci_high``),
    ``r2_post_heldout`` (+ CIs), ``n_boot_layer``.
    """
    from radlens.lens.null import bootstrap_weights
    from radlens.stats.cka import linear_cka, weighted_linear_cka

    Yp = lens.Z_pre_
    Yq = lens.transform_embeddings(Z_post)
    rec = {"cka": linear_cka(Yp, Yq), "r2_pre_heldout": float(heldout_r2_replicates(lens, Yp)[0]),
           "r2_post_heldout": float(heldout_r2_replicates(lens, Yq)[0]), "n_boot_layer": int(n_boot)}
    for k in ("cka", "r2_pre_heldout", "r2_post_heldout"):
        rec[f"{k}_ci_low"] = rec[f"{k}_ci_high"] = float("nan")
    if n_boot:
        Wt = bootstrap_weights(Yp.shape[0], n_boot, seed + 2, lens.groups_)
        reps = {"cka": np.concatenate([weighted_linear_cka(Yp, Yq, Wt[s:s + 50]) for s in range(0, n_boot, 50)])
                if Yp.shape[0] <= 4000 else None,
                "r2_pre_heldout": heldout_r2_replicates(lens, Yp, Wt),
                "r2_post_heldout": heldout_r2_replicates(lens, Yq, Wt)}
        if reps["cka"] is None:   # many cases: feature-space form, same resamples
            from radlens.stats.cka import _feature_cka

            reps["cka"] = np.array([_feature_cka(Yp, Yq, w) for w in Wt])
        for k, r in reps.items():
            ok = r[np.isfinite(r)]
            if ok.size:
                rec[f"{k}_ci_low"], rec[f"{k}_ci_high"] = (float(v) for v in
                                                           np.quantile(ok, [alpha_level / 2, 1 - alpha_level / 2]))
    return rec


def refit_post_layers(lens, embeddings, out, *, task: str | None = None, layers=None, pooling: str | None = None,
                      n_null: int = 200, n_boot: int = 200, seed: int = 0, specific: bool = True,
                      jobs: int = 1) -> Path:
    """``refit_post`` for every layer of a layer-wise lens folder, plus per-layer CKA and R² with CIs.

    Parameters
    ----------
    lens : path   folder from :func:`fit_pre_layers`.
    embeddings : path   multi-layer post embeddings of the same cases.
    out : path   ``shifts_<task>.parquet``: the long table of every layer (columns ``layer``,
        ``layer_index`` + the single-layer columns); each layer's single-layer table goes to
        ``out.parent/<layer>/out.name``; per-layer summaries to ``out`` with suffix ``.json``
        (``{"task", "layers", "by_layer": {layer: summary}}``) and the table's metadata.
    layers : sequence of str, optional   subset of the lens's layers (default: all).
    task, pooling, n_null, n_boot, seed, specific : as :func:`radlens.lens.pipeline.refit_post`.
    jobs : int   worker processes over layers (see :func:`refit_post_layers_tasks`).

    Returns
    -------
    Path of the long table.
    """
    out = Path(out)
    if task is None:
        task = out.stem[len("shifts_"):] if out.stem.startswith("shifts_") else out.stem
    return refit_post_layers_tasks(lens, {task: embeddings}, {task: out}, layers=layers, pooling=pooling,
                                   n_null=n_null, n_boot=n_boot, seed=seed, specific=specific, jobs=jobs)[task]


def _refit_layer(item) -> dict:
    """Worker of :func:`refit_post_layers_tasks`: every task at one layer (module level: pickled), on
    one thread whatever ``jobs`` is (:func:`one_thread`)."""
    from radlens.lens.pipeline import refit_post_tasks

    L, lens_dir, embeddings, outs, kw = item
    try:
        with one_thread():
            refit_post_tasks(lens_dir, embeddings, outs, layer=L, layer_stats=True, **kw)
    except InputError as exc:   # this layer cannot be refitted: the others proceed
        return {"layer": L, "stage": "refit-post", "error": str(exc)}
    return {}


def refit_post_layers_tasks(lens, embeddings: dict, outs: dict, *, layers=None, pooling: str | None = None,
                            n_null: int = 200, n_boot: int = 200, seed: int = 0, specific: bool = True,
                            jobs: int = 1) -> dict:
    """:func:`refit_post_layers` for several tasks of one layer-wise lens: per layer the tasks share
    the permutations, resamples, smoothers and reduced lenses
    (:func:`radlens.lens.pipeline.refit_post_tasks`), and the layers run in ``jobs`` worker processes.
    Every layer runs on one BLAS and one torch thread, in a worker as in this process
    (:func:`one_thread`), so the files of ``jobs=N`` equal those of ``jobs=1`` bit for bit. Each
    task's files equal those of its own :func:`refit_post_layers` call up to float32 rounding (the
    replicate products of one task alone are GEMMs of another shape).

    Parameters
    ----------
    lens : path   folder from :func:`fit_pre_layers`.
    embeddings : dict task -> path   multi-layer post embeddings, one file per task.
    outs : dict task -> path   long shift table of each task (layout as :func:`refit_post_layers`).
    layers, pooling, n_null, n_boot, seed, specific : as :func:`refit_post_layers`.
    jobs : int   worker processes over layers (1: in this process).

    Returns
    -------
    dict task -> Path of the long table.
    """
    import pandas as pd

    from radlens.io.artifacts import provenance, read_embeddings, read_json, read_table, write_json, write_table

    lens = Path(lens)
    meta = read_layered_lens(lens)
    layers = resolve_layers(meta["layers"], layers, f"lens {lens}")
    width = {}
    for task, path in embeddings.items():
        emb = read_embeddings(path)
        missing = [L for L in layers if L not in embedding_layers(emb)]
        if missing:
            raise InputError(f"post embeddings {str(path)!r} lack layer(s) {missing} of lens {str(lens)!r}; "
                             f"embed the fine-tuned checkpoint with `radlens embed --layers {','.join(layers)}`")
        for L in layers:
            sub = select_layer(emb, L)
            width[L] = max(width.get(L, 0), int(np.prod(sub.get(sub.default_pooling()).shape[1:])))
    outs = {t: Path(o) for t, o in outs.items()}
    kw = dict(pooling=pooling, n_null=n_null, n_boot=n_boot, seed=seed, specific=specific)
    jobs = max(1, min(int(jobs), len(layers)))
    items = [(L, lens / meta["dirs"][L], dict(embeddings), {t: o.parent / meta["dirs"][L] / o.name for t, o in outs.items()},
              kw) for L in layers]
    failed = _run_layers(_refit_layer, items, layers, width, jobs, "refit-post")
    written = {}
    for task, out in outs.items():
        frames, by_layer = [], {}
        ok = [L for L in layers if L not in {f["layer"] for f in failed}]
        for L in ok:
            lout = out.parent / meta["dirs"][L] / out.name
            summ = read_json(lout.with_suffix(".json"))
            summ.update(layer=L, layer_index=layers.index(L))
            write_json(lout.with_suffix(".json"), summ)
            by_layer[L] = summ
            t = read_table(lout)
            t.insert(0, "layer_index", layers.index(L))
            t.insert(0, "layer", L)
            frames.append(t)
        kept = _check_failures(out.with_name(f"{out.stem}.layer_failures.csv"), layers,
                               failed, f"refit-post {task}")
        summary = {"task": task, "layers": kept, "dirs": {L: meta["dirs"][L] for L in kept}, "by_layer": by_layer}
        prov = provenance("refit-post --layers", {"task": task, "layers": kept, "pooling": pooling, "n_null": n_null,
                                                  "n_boot": n_boot, "seed": seed, "specific": specific},
                          {"embeddings": embeddings[task]}, summary=summary)
        write_table(pd.concat(frames, ignore_index=True), out, meta=prov)
        write_json(out.with_suffix(".json"), summary)
        log.info("%s: %d layers -> %s", task, len(kept), out)
        written[task] = out
    return written


# --------------------------------------------------------------------------- compare
def is_layered_table(path) -> bool:
    """True for a long shift table written by :func:`refit_post_layers`."""
    from radlens.io.artifacts import read_table_meta

    return "by_layer" in read_table_meta(path).get("summary", {})


def _layer_summaries(tables) -> tuple[list[str], dict, dict]:
    """(layers in depth order, {task: {layer: summary}}, {task: {layer: per-layer table path}})."""
    from radlens.io.artifacts import read_table_meta

    layers, summ, paths = None, {}, {}
    for p in tables:
        s = read_table_meta(p).get("summary", {})
        if "by_layer" not in s:
            raise InputError(f"shift table {str(p)!r} is a single-layer table; give only tables from "
                             "`radlens refit-post --layers` (or compare single-layer tables without --layers)")
        task = str(s.get("task") or Path(p).stem.replace("shifts_", ""))
        if task in summ:
            raise InputError(f"task {task!r} appears twice ({str(p)!r}); give each shift table a distinct --task")
        if layers is not None and list(s["layers"]) != layers:
            raise InputError(f"shift table {str(p)!r} covers layers {s['layers']}, the first table {layers}; "
                             "refit every task with the same --layers")
        layers = list(s["layers"])
        summ[task] = s["by_layer"]
        paths[task] = {L: Path(p).parent / s["dirs"][L] / Path(p).name for L in layers}
    if layers is None:
        raise InputError("compare --layers: no shift tables given")
    return layers, summ, paths


def layer_feature_table(layer_tables: dict, compare_dirs: dict, summaries: dict):
    """Layer × feature long table of the headline change (per task) and of the cross-task
    decomposition (``common``, task-specific ``contrast``) when ``compare`` wrote it.

    Parameters
    ----------
    layer_tables : {layer: {task: DataFrame}}   single-layer refit-post tables.
    compare_dirs : {layer: Path}   each layer's compare folder.
    summaries : {task: {layer: summary}}

    Returns
    -------
    DataFrame: ``layer, layer_index, kind`` (``task`` / ``common`` / ``contrast``), ``task``
    (empty for ``common``), ``feature, feature_class, value, z, q`` and ``q_specific`` (tasks, when the
    tables have it), ``no_change`` (True where the post embedding of the layer equals the pre one:
    z = 0, q = 1), ``no_emphasis_change`` (refit-post's summary: nothing is left after the rescale /
    re-coding alignment).
    """
    import pandas as pd

    from radlens.io.artifacts import read_table

    rows = []
    for i, (L, by_task) in enumerate(layer_tables.items()):
        zero_all = True
        for task, t in by_task.items():
            zero = float(summaries[task][L].get("change_norm_ratio", np.nan)) == 0.0
            zero_all &= zero
            d = pd.DataFrame({"layer": L, "layer_index": i, "kind": "task", "task": task, "feature": t["feature"],
                              "feature_class": t["feature_class"], "value": t[HEADLINE], "z": t[HEADLINE_Z],
                              "q": t[HEADLINE_Q],
                              "q_specific": t["q_specific"] if "q_specific" in t.columns else np.nan,
                              "no_change": zero,
                              "no_emphasis_change": bool(summaries[task][L].get("no_emphasis_change", zero))})
            if zero:   # no change at all: a null of zero changes gives no p; nothing moved
                d[["z", "q", "q_specific"]] = [0.0, 1.0, 1.0]
            rows.append(d)
        for kind, (fname, vcol, zcol, qcol) in DECOMPOSITION.items():
            f = Path(compare_dirs[L]) / fname
            if not f.exists():
                continue
            c = read_table(f)
            if not {vcol, zcol, qcol} <= set(c.columns):
                log.warning("%s lacks %s; left out of the layer table", f, [vcol, zcol, qcol])
                continue
            d = pd.DataFrame({"layer": L, "layer_index": i, "kind": kind,
                              "task": c["task"].astype(str) if "task" in c.columns else "",
                              "feature": c["feature"], "feature_class": c["feature_class"], "value": c[vcol],
                              "z": c[zcol], "q": c[qcol], "q_specific": np.nan, "no_change": zero_all,
                              "no_emphasis_change": zero_all})
            if zero_all:
                d[["z", "q"]] = [0.0, 1.0]
            rows.append(d)
    return pd.concat(rows, ignore_index=True)


def layer_summary_table(summaries: dict, layers: list[str]):
    """One row per (layer, task): R² pre/post held-out and CKA with CIs, counts of discoveries and
    every other scalar of the per-layer refit-post summary."""
    import pandas as pd

    first = ["layer", "layer_index", "task", "cka", "cka_ci_low", "cka_ci_high", "r2_pre_heldout",
             "r2_pre_heldout_ci_low", "r2_pre_heldout_ci_high", "r2_post_heldout", "r2_post_heldout_ci_low",
             "r2_post_heldout_ci_high", "n_significant", "n_significant_specific"]
    rows = []
    for task, by in summaries.items():
        for i, L in enumerate(layers):
            s = by[L]
            rec = {"layer": L, "layer_index": i, "task": task}
            rec.update({k: v for k, v in s.items()
                        if k not in rec and (v is None or isinstance(v, (int, float, str, bool)))})
            rows.append(rec)
    df = pd.DataFrame(rows)
    cols = [c for c in first if c in df.columns] + [c for c in df.columns if c not in first]
    return df[cols]


def _compare_layer(item) -> None:
    """Worker of :func:`compare_layers`: one layer's single-layer ``compare`` (module level: pickled),
    on one thread whatever ``jobs`` is (:func:`one_thread`)."""
    from radlens.lens.compare import compare

    per, out, kw = item
    with one_thread():
        compare(per, out, **kw)


def compare_layers(tables, out, *, layers=None, value: str = "z", top_k: int = 15, jobs: int = 1,
                   figure_layers=None,
                   **compare_kw) -> dict:
    """Layer-wise ``compare``: the single-layer comparison of every layer in ``out/<layer>/``, then
    the layer × feature table, the per-layer summary and the layer figures.

    Parameters
    ----------
    tables : sequence of paths   long shift tables from :func:`refit_post_layers`, one per task.
    out : path   output folder.
    layers : sequence of str, optional   subset of the tables' layers (default: all).
    value, top_k, **compare_kw : passed to :func:`radlens.lens.compare.compare` for each layer; a
        layer-wise ``lens`` folder is passed as that layer's sub-folder, with ``layer=<layer>`` so that
        the multi-layer ``embeddings`` files are read at that layer.
    figure_layers : sequence of str, optional   layers whose single-layer figures are drawn (default:
        all); the others get their tables only. The layer-wise figures are always drawn.
    jobs : int   worker processes over layers (1: in this process); the outputs do not depend on it.

    Returns
    -------
    dict name -> list of written paths.
    """
    from radlens.io.artifacts import read_table, write_json, write_table
    from radlens.parallel import WorkerError, run_cases
    from radlens.viz import lens_layers as vz

    all_layers, summaries, paths = _layer_summaries(tables)
    layers = resolve_layers(all_layers, layers, "the shift tables")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, list] = {}
    tabs, cdirs = {}, {}
    lens = compare_kw.pop("lens", None)
    if lens is not None:
        lmeta = read_layered_lens(lens)
    jobs = max(1, min(int(jobs), len(layers)))
    items = []
    for L in layers:
        cdirs[L] = out / layer_dirname(L)
        per = [paths[t][L] for t in summaries]
        kw = dict(compare_kw, value=value, top_k=top_k)
        if lens is not None:   # cross-task decomposition: this layer's lens and this layer of each file
            kw.update(lens=Path(lens) / lmeta["dirs"][L], layer=L)
        if figure_layers is not None:
            kw["figures"] = L in set(map(str, figure_layers))
        items.append(([str(p) for p in per], cdirs[L], kw))
    for L, r in zip(layers, run_cases(_compare_layer, items, jobs=jobs)):
        if isinstance(r, WorkerError):
            if r.type == "InputError":
                raise InputError(r.message)
            raise RuntimeError(f"compare layer {L} failed: {r}\n{r.traceback}")
        tabs[L] = {t: read_table(paths[t][L]) for t in summaries}
    _remove_stale(out, ("compare.json",))
    feats = layer_feature_table(tabs, cdirs, summaries)
    summ = layer_summary_table(summaries, layers)
    written["layer_features"] = [write_table(feats, out / "layer_features.csv")]
    written["layer_summary"] = [write_table(summ, out / "layer_summary.csv")]
    written["layer_heatmap"] = vz.layer_class_heatmap(feats, out / "layer_heatmap")
    written["layer_depth"] = vz.depth_curves(summ, out / "layer_depth")
    write_json(out / "layers.json", {"format": LAYERS_FORMAT, "layers": layers, "tasks": list(summaries),
                                     "headline": [HEADLINE, HEADLINE_Z, HEADLINE_Q],
                                     "dirs": {L: cdirs[L].name for L in layers},
                                     "files": {k: [str(p) for p in v] for k, v in written.items()}})
    log.info("compare --layers: %d layers x %d tasks -> %s", len(layers), len(summaries), out)
    return written
