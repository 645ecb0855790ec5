"""Library functions behind ``radlens fit-pre`` and ``radlens refit-post`` (artifacts in, artifacts out)."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from radlens.errors import InputError

log = logging.getLogger(__name__)


def read_groups(case_ids, manifest=None, groups=None) -> np.ndarray:
    """Patient label per case (aligned with ``case_ids``) from a manifest (``case_id`` +
    ``patient_id``) or a groups table (``case_id, patient_id``); default: each case its own group.

    Raises
    ------
    InputError
        Both sources given, a missing column, or cases without a patient (listed).
    """
    from radlens.io.artifacts import read_table

    case_ids = np.asarray(case_ids).astype(str)
    if manifest is not None and groups is not None:
        raise InputError("give --manifest or --groups, not both")
    src = manifest if manifest is not None else groups
    if src is None:
        return case_ids.copy()
    df = read_table(src)
    if "case_id" not in df.columns:
        raise InputError(f"{str(src)!r} has no 'case_id' column; columns: {list(df.columns)[:10]}")
    if "patient_id" not in df.columns:
        if groups is not None:
            raise InputError(f"groups table {str(src)!r} needs columns case_id, patient_id; "
                             f"found {list(df.columns)[:10]}")
        log.info("manifest %s has no patient_id: each case is its own group", src)
        return case_ids.copy()
    lut = dict(zip(df["case_id"].astype(str), df["patient_id"].astype(str)))
    missing = [c for c in case_ids if c not in lut]
    if missing:
        raise InputError(f"{len(missing)} case(s) have no patient_id in {str(src)!r}, e.g. {missing[:10]}; "
                         "add them or pass the manifest the radiomics were computed from")
    return np.array([lut[c] for c in case_ids])


def load_paired_lens(path):
    """The lens at ``path`` and the case ids it excluded; a lens without stored case ids (it cannot be
    paired with post embeddings) is an :class:`InputError` naming the fix."""
    from radlens.lens.io import load_lens

    lens = load_lens(path)
    if lens.case_ids_ is None:
        raise InputError(f"lens {str(path)!r} stores no case ids; refit it with `radlens fit-pre`")
    return lens, set(lens.extra_.get("excluded_case_ids", []))


def _load_embeddings(path, pooling, layer=None):
    from radlens.io.artifacts import read_embeddings

    emb = read_embeddings(path)
    from radlens.lens.layers import embedding_layers, select_layer   # multi-layer files

    if layer is not None:
        emb = select_layer(emb, layer)
    elif embedding_layers(emb):
        raise InputError(f"embeddings {str(path)!r} hold layers {embedding_layers(emb)}: fit a layer-wise lens "
                         "with `radlens fit-pre --layers all` (or --layers L for one layer)")
    pool = pooling or emb.default_pooling()
    return emb.case_id, emb.get(pool).astype(float), pool, emb.meta


def fit_pre(radiomics, embeddings, out, *, pooling: str | None = None, manifest=None, groups=None,
            layer: str | None = None, **lens_params) -> Path:
    """Fit a :class:`RadiomicLens` on the pre embeddings and write it to folder ``out``.

    Parameters
    ----------
    radiomics : path   radiomics table (``case_id`` + feature columns), parquet or CSV.
    embeddings : path  pre embeddings (.npz from ``radlens embed``, or a parquet/CSV table).
    out : path         lens folder (``lens.json``, ``lens.npz``, ``fit_report.csv``,
                       ``radiomics_cleaning.csv``, ``failures.csv`` — cases left out, e.g. with
                       non-finite embeddings).
    pooling : str, optional   pooling mode to read (default: the embeddings' default).
    manifest, groups : path, optional   source of ``patient_id`` for grouped splits.
    layer : str, optional   layer of a multi-layer embeddings file (see :mod:`radlens.lens.layers`).
    **lens_params : RadiomicLens parameters.

    Returns
    -------
    Path of the lens folder.
    """
    import pandas as pd

    from radlens.io.artifacts import align_case_ids, provenance, read_table, write_table
    from radlens.lens.estimator import RadiomicLens
    from radlens.lens.io import save_lens

    rad = read_table(radiomics)
    if "case_id" not in rad.columns:
        raise InputError(f"radiomics table {str(radiomics)!r} has no 'case_id' column (a pyradiomics batch "
                         "CSV keeps its input CSV's columns: add case_id there)")
    cid, Z, pool, emeta = _load_embeddings(embeddings, pooling, layer)
    ri, ei = align_case_ids(rad["case_id"].astype(str).to_numpy(), cid, f"radiomics {radiomics}",
                            f"embeddings {embeddings}")
    rad = rad.iloc[ri].reset_index(drop=True)
    Z = Z[ei]
    case_ids = rad["case_id"].astype(str).to_numpy()
    # cases whose embedding is not finite cannot enter the lens: failures table, the rest proceed
    bad = ~np.isfinite(Z).all(1)
    failures = [{"case_id": c, "stage": "fit-pre", "error": "non-finite embedding values"} for c in case_ids[bad]]
    if bad.any():
        log.warning("fit-pre: %d case(s) with non-finite embeddings left out (see failures.csv)", int(bad.sum()))
        rad, Z, case_ids = rad[~bad].reset_index(drop=True), Z[~bad], case_ids[~bad]
    if manifest is None and groups is None and "patient_id" in rad.columns:  # the table's own patient ids
        g = rad["patient_id"].astype(str).to_numpy()
    else:
        g = read_groups(case_ids, manifest, groups)
    lens = RadiomicLens(**lens_params).fit(rad, Z, groups=g, case_ids=case_ids)
    lens.extra_ = {"pooling": pool, **({"layer": str(layer)} if layer is not None else {}), "encoder": emeta.get("encoder"), "checkpoint_sha256": emeta.get("checkpoint_sha256"),
                   "n_patients": int(np.unique(g).size), "excluded_case_ids": [f["case_id"] for f in failures]}
    out = Path(out)
    prov = provenance("fit-pre", {"pooling": pool, "layer": layer, **{k: v for k, v in lens.get_params().items()}},
                      {"radiomics": radiomics, "embeddings": embeddings, "manifest": manifest, "groups": groups})
    save_lens(lens, out, prov)
    write_table(pd.DataFrame(lens.fit_report_), out / "fit_report.csv")
    from radlens.io.artifacts import write_failures

    write_failures(out / "failures.csv", failures)
    report = lens.radiomics_frame_.report_
    write_table(report if isinstance(report, pd.DataFrame) else pd.DataFrame(report), out / "radiomics_cleaning.csv")
    log.info("lens written to %s (%d cases, %d features, %d seeds)", out, len(case_ids), lens.n_features_in_,
             lens.W1_.shape[0])
    return out


def refit_post(lens, embeddings, out, *, task: str | None = None, pooling: str | None = None, n_null: int = 200,
               n_boot: int = 200, seed: int = 0, specific: bool = True, layer: str | None = None) -> Path:
    """Re-estimate the lens head on post embeddings and write the per-feature shift table.

    Parameters
    ----------
    lens : path   lens folder from :func:`fit_pre`.
    embeddings : path   post (fine-tuned) embeddings of the same cases.
    out : path   ``shifts_<task>.parquet``; global summaries go in its metadata (key ``radlens``,
        field ``summary``) and in ``<out>.json`` next to it.
    task : str, optional   task name (default: the file stem after ``shifts_``).
    n_null, n_boot, seed, specific : see :func:`radlens.lens.shift.shift_table`.
    layer : str, optional   layer of a multi-layer embeddings file (see :mod:`radlens.lens.layers`).

    Returns
    -------
    Path of the table.
    """
    out = Path(out)
    if task is None:
        task = out.stem[len("shifts_"):] if out.stem.startswith("shifts_") else out.stem
    return refit_post_tasks(lens, {task: embeddings}, {task: out}, pooling=pooling, n_null=n_null, n_boot=n_boot,
                            seed=seed, specific=specific, layer=layer)[task]


def refit_post_tasks(lens, embeddings: dict, outs: dict, *, pooling: str | None = None, n_null: int = 200,
                     n_boot: int = 200, seed: int = 0, specific: bool = True, layer: str | None = None,
                     layer_stats: bool = False) -> dict:
    """:func:`refit_post` for several tasks of one lens in one pass (the lens is read once and the
    permutations, resamples, smoothers and reduced lenses serve every task:
    :func:`radlens.lens.shift.shift_tables`); each task's table equals its own ``refit_post``.

    Parameters
    ----------
    lens : path   lens folder from :func:`fit_pre`.
    embeddings : dict task -> path   post embeddings of the same cases, one file per task.
    outs : dict task -> path   shift table of each task (same keys).
    pooling, n_null, n_boot, seed, specific, layer : as :func:`refit_post`.
    layer_stats : bool
        Also put :func:`radlens.lens.layers.layer_statistics` (CKA and held-out R² pre/post with
        bootstrap CIs, ``n_boot`` resamples) and ``layer`` in each summary.

    Returns
    -------
    dict task -> Path of the table.
    """
    from radlens.io.artifacts import align_case_ids, provenance, write_json, write_table
    from radlens.lens.shift import shift_tables

    lens_obj, excluded = load_paired_lens(lens)
    Zs, pools, metas = {}, {}, {}
    for task, path in embeddings.items():
        cid, Z, pools[task], metas[task] = _load_embeddings(path, pooling or lens_obj.extra_.get("pooling"), layer)
        if excluded:   # cases fit-pre left out (failures.csv) are ignored here too
            keep = ~np.isin(cid, list(excluded))
            cid, Z = cid[keep], Z[keep]
        _, ei = align_case_ids(lens_obj.case_ids_, cid, f"lens {lens}", f"embeddings {path}")
        Zs[task] = Z[ei]
    results = shift_tables(lens_obj, Zs, n_null=n_null, n_boot=n_boot, seed=seed, specific=specific)
    written = {}
    for task, (table, summary) in results.items():
        out = Path(outs[task])
        summary.update(pooling=pools[task], post_checkpoint_sha256=metas[task].get("checkpoint_sha256"),
                       pre_checkpoint_sha256=lens_obj.extra_.get("checkpoint_sha256"))
        if layer_stats:
            from radlens.lens.layers import layer_statistics

            summary.update(layer_statistics(lens_obj, Zs[task], n_boot=n_boot, seed=seed))
        prov = provenance("refit-post", {"task": task, "pooling": pools[task], "n_null": n_null, "n_boot": n_boot,
                                         "seed": seed, "specific": specific},
                          {"lens": lens, "embeddings": embeddings[task]}, summary=summary)
        write_table(table, out, meta=prov)
        write_json(out.with_suffix(".json"), summary)
        log.info("%s: %d features, %s with q<0.05 -> %s", task, len(table), summary.get("n_significant"), out)
        written[task] = out
    return written
