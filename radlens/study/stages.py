"""The stage graph of ``radlens run``: one :class:`~radlens.study.Stage` per library call.

Every stage function imports its analysis package lazily, so a study whose config disables an
analysis (or whose analysis package is broken) still runs every other stage.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from radlens.config import StudyConfig

log = logging.getLogger(__name__)


def _paths_of(manifest) -> list[Path]:
    from radlens.study import manifest_files

    return manifest_files(manifest)


def build(cfg: StudyConfig, run_dir: Path, manifest) -> list:
    """Stages of a study in execution order (see :mod:`radlens.study`)."""
    from radlens.study import Stage, encoder_spec_of, is_classifier_spec, spec_files

    stages: list[Stage] = []
    mpath = Path(manifest.path)
    mfiles = _paths_of(manifest)
    tasks_all = cfg.tasks
    seed = cfg.seed

    # ---------------------------------------------------------------- radiomics
    rad_out = run_dir / "radiomics" / "radiomics.parquet"
    rad_params = cfg.resolve(cfg.radiomics.params)
    need_rad = cfg.radiomics.enabled and cfg.lens.enabled

    def do_radiomics():
        from radlens.radiomics.extract import radiomics

        radiomics(manifest, params=str(rad_params) if rad_params else None, out=rad_out, jobs=cfg.radiomics.jobs)

    if need_rad:
        stages.append(Stage("radiomics", "radiomics", do_radiomics, [rad_out],
                            {"manifest": mfiles, "params": rad_params},
                            {"params": str(rad_params) if rad_params else None}))

    # ---------------------------------------------------------------- embeddings (lens only)
    emb: dict[tuple[str, str], Path] = {}
    if cfg.lens.enabled:
        for arch, enc in cfg.encoders.items():
            ckpts = {"pre": cfg.resolve(enc.pre)}
            ckpts.update({t: cfg.resolve(tc.finetuned) for t, tc in enc.tasks.items()})
            for ck, spec_path in ckpts.items():
                out = run_dir / "embeddings" / arch / f"{ck}.npz"
                emb[(arch, ck)] = out

                layers = enc.embed_layers
                layer = None if layers else enc.layer

                def do_embed(spec_path=spec_path, out=out, layer=layer, layers=layers):
                    from radlens.encoders import embed

                    kw = {}
                    if cfg.embed.executor == "dask":  # the same file as a local run: not part of the stage hash
                        kw = {"executor": "dask", "scheduler": cfg.embed.scheduler, "jobs": cfg.embed.jobs}
                    elif cfg.embed.workers is not None:   # likewise
                        kw = {"workers": cfg.embed.workers}
                    embed(manifest, encoder_spec_of(spec_path, layer), out, pooling=("cls", "mean", "roi"),
                          batch_size=cfg.embed.batch_size, device=cfg.embed.device, layers=layers, **kw)

                params = {"batch_size": cfg.embed.batch_size, "layer": enc.layer}
                if layers:
                    params["layers"] = [str(v) for v in layers]
                stages.append(Stage(f"embed/{arch}/{ck}", "embed", do_embed, [out],
                                    {"manifest": mfiles, "spec": spec_files(spec_path)}, params))

    # ---------------------------------------------------------------- lens
    if cfg.lens.enabled:
        for arch, enc in cfg.encoders.items():
            lens_dir = run_dir / "lens" / arch / "lens"
            pooling = None if cfg.lens.pooling == "auto" else cfg.lens.pooling

            layers = _lens_layers(enc)   # several layers: the layer-wise lens (radlens.lens.layers)

            def do_fit(arch=arch, lens_dir=lens_dir, layers=layers):
                from radlens.lens.layers import fit_pre_layers, remove_layer_index
                from radlens.lens.pipeline import fit_pre

                fit, kw = (fit_pre_layers, {"layers": layers, "jobs": cfg.lens.jobs}) if layers else (fit_pre, {})
                if not layers:   # a folder of an earlier layer-wise run
                    remove_layer_index(lens_dir)
                fit(rad_out, emb[(arch, "pre")], lens_dir, pooling=pooling, manifest=manifest.path, **kw,
                    **dict(cfg.lens.options, **({"random_state": seed} if "random_state" not in cfg.lens.options
                                                and _accepts_random_state() else {})))

            stages.append(Stage(f"fit-pre/{arch}", "fit-pre", do_fit,
                                [lens_dir / ("layers.json" if layers else "lens.json")],
                                {"radiomics": rad_out, "embeddings": emb[(arch, "pre")], "manifest": mpath},
                                {"pooling": cfg.lens.pooling, "options": cfg.lens.options, "seed": seed,
                                 **({"layers": layers} if layers else {})},
                                ["radiomics", f"embed/{arch}/pre"]))
            # refit-post: every task of one architecture in one stage, so the tasks share the lens's
            # permutations, resamples and smoothers (radlens.lens.shift.shift_tables) and, for a
            # layer-wise lens, the layers run in `lens.jobs` worker processes. Each task's table equals
            # its own `radlens refit-post` output.
            shift_of = {task: run_dir / "lens" / arch / f"shifts_{task}.parquet" for task in enc.tasks}
            shift_paths = list(shift_of.values())

            def do_refit(arch=arch, shift_of=dict(shift_of), lens_dir=lens_dir, layers=layers):
                from radlens.lens.layers import refit_post_layers_tasks
                from radlens.lens.pipeline import refit_post_tasks

                post = {t: emb[(arch, t)] for t in shift_of}
                kw = {"layers": layers, "jobs": cfg.lens.jobs} if layers else {}
                (refit_post_layers_tasks if layers else refit_post_tasks)(
                    lens_dir, post, shift_of, pooling=pooling, n_null=cfg.lens.n_null, n_boot=cfg.lens.n_boot,
                    seed=seed, **kw)

            lens_in = {"lens": lens_dir} if layers else {"lens": lens_dir / "lens.json",
                                                         "lens_npz": lens_dir / "lens.npz"}
            stages.append(Stage(f"refit-post/{arch}", "refit-post", do_refit, shift_paths,
                                {**lens_in, "embeddings": [emb[(arch, t)] for t in enc.tasks]},
                                {"n_null": cfg.lens.n_null, "n_boot": cfg.lens.n_boot, "seed": seed,
                                 "pooling": cfg.lens.pooling, "tasks": list(enc.tasks)},
                                [f"fit-pre/{arch}"] + [f"embed/{arch}/{t}" for t in enc.tasks]))
            cmp_dir = run_dir / "lens" / arch / "compare"
            needs = [f"refit-post/{arch}"]

            task_emb = {t: emb[(arch, t)] for t in enc.tasks}
            label_cols = {t: (tc.label or t) for t, tc in enc.tasks.items()}

            def do_compare(shift_paths=list(shift_paths), cmp_dir=cmp_dir, lens_dir=lens_dir, task_emb=task_emb,
                           label_cols=label_cols, layers=layers, enc=enc):
                from radlens.lens.compare import compare
                from radlens.lens.layers import compare_layers, remove_layer_index

                if not layers:
                    remove_layer_index(cmp_dir)
                # shift tables + cross-task decomposition (common / contrast) + task alignment on the
                # manifest's label columns (layer-wise: per layer, with that layer's lens)
                kw = {}
                if layers and cfg.lens.layer_figures == "main":   # the layer the report shows
                    kw["figure_layers"] = [enc.layer if enc.layer in layers else layers[-1]]
                (compare_layers if layers else compare)(
                    [str(p) for p in shift_paths], cmp_dir, top_k=cfg.lens.top_k, lens=lens_dir,
                    embeddings={t: str(p) for t, p in task_emb.items()}, labels=manifest.path,
                    label_columns=label_cols, pooling=pooling, n_null=cfg.lens.n_null, n_boot=cfg.lens.n_boot,
                    seed=seed, **kw, **({"jobs": cfg.lens.jobs} if layers else {}))

            stages.append(Stage(f"compare/{arch}", "compare", do_compare,
                                [cmp_dir / "layers.json"] if layers else
                                [cmp_dir / "compare.json", cmp_dir / "decomposition.json"],
                                {"shifts": list(shift_paths),
                                 **({"lens": lens_dir} if layers else
                                    {"lens": lens_dir / "lens.json", "lens_npz": lens_dir / "lens.npz"}),
                                 "embeddings": list(task_emb.values()), "manifest": mpath},
                                {"top_k": cfg.lens.top_k, "n_null": cfg.lens.n_null, "n_boot": cfg.lens.n_boot,
                                 "seed": seed, "labels": label_cols, "pooling": cfg.lens.pooling,
                                 "layer_figures": cfg.lens.layer_figures}, needs))
            if cfg.lens.expected_classes:
                enr_out = run_dir / "lens" / arch / "enrichment.csv"

                def do_enrich(shift_paths=list(shift_paths), enr_out=enr_out, layers=layers, enc=enc,
                              cmp_dir=cmp_dir):
                    if layers:   # the layer the study names (encoders.<arch>.layer), else the deepest
                        from radlens.lens.layers import layer_dirname

                        main = enc.layer if enc.layer in layers else layers[-1]
                        shift_paths = [p.parent / layer_dirname(main) / p.name for p in shift_paths]
                        cmp_dir = cmp_dir / layer_dirname(main)
                    enrichment(shift_paths, cfg.lens.expected_classes, enr_out, k=cfg.lens.top_k,
                               n_perm=cfg.lens.n_permutations, seed=seed, association=cmp_dir / "association.csv")

                stages.append(Stage(f"enrichment/{arch}", "enrichment", do_enrich, [enr_out],
                                    {"shifts": list(shift_paths), "compare": cmp_dir},
                                    {"expected": cfg.lens.expected_classes, "k": cfg.lens.top_k,
                                     "n_perm": cfg.lens.n_permutations, "seed": seed, "ranking": "specific"},
                                    needs + [f"compare/{arch}"]))

    # ---------------------------------------------------------------- classifier pairs
    pairs = []
    for arch, enc in cfg.encoders.items():
        for task, tc in enc.tasks.items():
            ft = cfg.resolve(tc.finetuned)
            tl = cfg.resolve(tc.transfer) if tc.transfer else None
            if tl is not None and is_classifier_spec(ft) and is_classifier_spec(tl):
                pairs.append({"architecture": arch, "task": task, "model_a": str(tl), "model_b": str(ft),
                              "label_col": tc.label})
    pair_files = {f"{p['architecture']}/{p['task']}": spec_files(p["model_a"]) + spec_files(p["model_b"])
                  for p in pairs}
    pred_out = run_dir / "predictions.parquet"
    if pairs and (cfg.cam_drift.enabled or cfg.localization.enabled):
        def do_pred():
            predictions(manifest, pairs, pred_out)

        stages.append(Stage("predictions", "predictions", do_pred, [pred_out],
                            {"manifest": mfiles, "models": [f for v in pair_files.values() for f in v]}, {}))

    cam_out = run_dir / "cam" / "drift.parquet"
    maps_out = run_dir / "cam" / "maps.npz"
    if cfg.cam_drift.enabled and pairs:
        map_files = [maps_out] if len(pairs) == 1 else [
            maps_out.with_name(f"maps.{p['architecture']}.{p['task']}.npz") for p in pairs]

        def do_cam():
            from radlens.cam.run import cam_drift_study

            # maps of an earlier run whose pair now keeps no case must not be scored again by localize
            for f in {maps_out, *map_files}:
                Path(f).unlink(missing_ok=True)

            kw = dict(methods=list(cfg.cam_drift.methods), n_boot=cfg.cam_drift.n_boot, seed=seed,
                      max_cases=cfg.cam_drift.max_cases)
            kw.update(cfg.cam_drift.options)
            cam_drift_study(manifest, pairs, out=cam_out, save_maps=maps_out, figures=run_dir / "cam" / "figures", **kw)

        stages.append(Stage("cam-drift", "cam-drift", do_cam, [cam_out],
                            {"manifest": mfiles, "models": [f for v in pair_files.values() for f in v]},
                            {"methods": list(cfg.cam_drift.methods), "max_cases": cfg.cam_drift.max_cases,
                             "n_boot": cfg.cam_drift.n_boot, "options": cfg.cam_drift.options, "seed": seed}))

        # ------------------------------------------------------------ localization of the CAMs
        if cfg.localization.enabled:
            method = _canonical(cfg.cam_drift.methods[0])
            loc_tables = {}
            for p, mf in zip(pairs, map_files):
                key = f"{p['architecture']}/{p['task']}"
                out = run_dir / "localization" / f"{p['architecture']}_{p['task']}.parquet"
                loc_tables[key] = out

                def do_loc(mf=mf, out=out, key=key, pair=p):
                    from radlens.errors import NothingToDo
                    from radlens.localization import localize

                    mf = _maps_file_of(mf, maps_out, pair)
                    if mf is None:
                        raise NothingToDo(f"no CAM maps for {key}: no case was classified correctly by both "
                                         "checkpoints (see cam/drift.counts.parquet), so there is nothing to score")

                    kw = dict(map_key=f"{method}__a", map_key_b=f"{method}__b", names=("transfer", "finetuned"),
                              positive_col=cfg.localization.positive_col, n_boot=cfg.localization.n_boot, seed=seed)
                    kw.update(cfg.localization.options)
                    localize(manifest, mf, out=out, **kw)

                stages.append(Stage(f"localize/{key}", "localize", do_loc, [out], {"maps": [mf, maps_out], "manifest": mpath},
                                    {"method": method, "positive_col": cfg.localization.positive_col,
                                     "n_boot": cfg.localization.n_boot, "options": cfg.localization.options,
                                     "seed": seed}, ["cam-drift"]))
            trade_out = run_dir / "localization" / "tradeoff.csv"

            def do_trade():
                tradeoff(loc_tables, pred_out, trade_out, score=cfg.localization.score,
                         n_boot=cfg.localization.n_boot, seed=seed)

            stages.append(Stage("tradeoff", "tradeoff", do_trade, [trade_out],
                                {"localization": list(loc_tables.values()), "predictions": pred_out},
                                {"score": cfg.localization.score, "n_boot": cfg.localization.n_boot, "seed": seed},
                                ["cam-drift", "predictions"],  # pairs whose localize failed are left out
                                after=[f"localize/{k}" for k in loc_tables]))

    # ---------------------------------------------------------------- pooling probe
    if cfg.pooling_probe.enabled:
        for arch, enc in cfg.encoders.items():
            task = cfg.pooling_probe.post_task or next(iter(enc.tasks))
            post = enc.tasks[task].finetuned if task in enc.tasks else None
            pre_path = cfg.resolve(enc.pre)
            post_path = cfg.resolve(post) if post else None
            out = run_dir / "probe" / arch / "probe.parquet"

            def do_probe(pre_path=pre_path, post_path=post_path, out=out, layer=enc.main_layer):
                from radlens.probe.run import pooling_probe

                pooling_probe(manifest, encoder_spec_of(pre_path, layer),
                              encoder_post=encoder_spec_of(post_path, layer) if post_path else None,
                              panel=dict(cfg.pooling_probe.panel, seed=seed), out=out, device=cfg.embed.device)

            stages.append(Stage(f"pooling-probe/{arch}", "pooling-probe", do_probe, [out],
                                {"manifest": mfiles, "pre": spec_files(pre_path),
                                 "post": spec_files(post_path) if post_path else None},
                                {"panel": cfg.pooling_probe.panel, "post_task": task, "seed": seed,
                                 "layer": enc.main_layer}))
    del tasks_all
    return stages


def _lens_layers(enc) -> list[str] | None:
    """The layers of a layer-wise lens (``encoders.<arch>.layers`` with two or more entries), else None."""
    layers = [str(x) for x in (getattr(enc, "layers", None) or [])]
    return layers if len(layers) >= 2 else None


def _maps_file_of(expected: Path, single: Path, pair: dict) -> Path | None:
    """The saved-maps file of one (architecture, task) pair, or None when cam-drift wrote none.

    cam-drift names the file after the pairs that kept cases: ``maps.npz`` when exactly one did
    (even if several were configured), ``maps.<arch>.<task>.npz`` otherwise.
    """
    if Path(expected).exists():
        return Path(expected)
    if Path(single).exists() and Path(single) != Path(expected):
        from radlens.io.artifacts import read_npz

        meta = read_npz(single)[1]
        if (meta.get("architecture"), meta.get("task")) == (pair["architecture"], pair["task"]):
            return Path(single)
    return None


def _canonical(method: str) -> str:
    try:
        from radlens.cam.methods import canonical_method

        return canonical_method(method)
    except Exception:  # cam package unavailable: the cam-drift stage reports why
        return method


def _accepts_random_state() -> bool:
    try:
        import inspect

        from radlens.lens.estimator import RadiomicLens

        return "random_state" in inspect.signature(RadiomicLens.__init__).parameters
    except Exception:
        return False


# --------------------------------------------------------------------------- small stages of our own
def enrichment(shift_paths, expected: dict[str, Any], out: Path, *, k: int, n_perm: int, seed: int,
               association: Path | None = None):
    """Class enrichment of each task's top-``k`` features (one row per task with expectations).

    With two or more tasks and ``compare``'s ``association`` table, the top-``k`` are the features
    with the largest *signed specific change of emphasis* (``specific_change``: what the task made
    the encoder emphasise more than the other tasks did; the profile the task alignment tests).
    Otherwise (one task, no table) the largest |emphasis| of the task's own shift table: with
    several tasks that ranking is dominated by the change every fine-tuning shares, so every task
    shows the same features on top (docs/lens.md §9b).

    Writes ``out`` (CSV): ``task, ranked_by, expected_classes, k, hits, fraction, expected_fraction,
    p_perm, p_hypergeom, top_features, top_classes``.
    """
    import numpy as np
    import pandas as pd

    from radlens.io.artifacts import read_table, write_table
    from radlens.lens.compare import class_enrichment

    assoc = None
    if association is not None and len(shift_paths) >= 2 and Path(association).exists():
        assoc = read_table(association)
        if "specific_change" not in assoc.columns:
            assoc = None
    rows = []
    for p in shift_paths:
        t = read_table(p)
        task = str(t["task"].iloc[0]) if "task" in t.columns and len(t) else Path(p).stem.removeprefix("shifts_")
        if task not in expected:
            continue
        classes = expected[task]
        classes = [classes] if isinstance(classes, str) else list(classes)
        by, signed = "emphasis", False
        if assoc is not None and (assoc["task"] == task).any():
            spec = assoc.loc[assoc["task"] == task, ["feature", "specific_change"]]
            t = t[["feature", "feature_class"]].merge(spec, on="feature", how="inner")
            by, signed = "specific_change", True
        kk = min(k, len(t))
        r = class_enrichment(t, classes, k=kk, by=by, n_perm=n_perm, seed=seed, signed=signed)
        v = t[by].to_numpy(float)
        top = t.iloc[np.argsort(-(v if signed else np.abs(v)), kind="stable")].head(kk)
        rows.append({"task": task, "ranked_by": by, "expected_classes": ",".join(classes), "k": r["k"],
                     "hits": r["hits"],
                     "fraction": r["fraction"], "expected_fraction": r["expected"], "p_perm": r["p_perm"],
                     "p_hypergeom": r["p_hypergeom"], "top_features": ";".join(map(str, r["top_features"])),
                     "top_classes": ";".join(map(str, top["feature_class"]))})
    write_table(pd.DataFrame(rows), out, {"command": "enrichment", "k": k, "n_perm": n_perm, "seed": seed})


def predictions(manifest, pairs: list[dict], out: Path, batch_size: int = 64):
    """Task scores of every classifier of the study on every labelled case.

    Writes ``out``: ``case_id, patient_id, split, architecture, task, checkpoint
    (<arch>/<task>/transfer|finetuned), y_true, y_score`` (logit difference positive - negative).
    """
    import numpy as np
    import pandas as pd
    import torch

    from radlens.cam.model import load_classifier
    from radlens.io.artifacts import write_table
    from radlens.io.images import load_case

    df = manifest.df
    cases, failed = {}, []
    for row in df.to_dict("records"):
        try:
            cases[str(row["case_id"])] = load_case(row)
        except Exception as exc:  # a case that does not load is reported, the others proceed
            failed.append({"case_id": str(row["case_id"]), "stage": "predictions", "error": str(exc)})
    rows = []
    for p in pairs:
        lab = pd.to_numeric(df[p["label_col"]], errors="coerce")
        sub = df[lab.notna().to_numpy() & df["case_id"].astype(str).isin(cases).to_numpy()]
        for role, spec in (("transfer", p["model_a"]), ("finetuned", p["model_b"])):
            clf = load_classifier(spec)
            ids = sub["case_id"].astype(str).tolist()
            scores = []
            with torch.no_grad():
                for i in range(0, len(ids), batch_size):
                    x = torch.stack([torch.as_tensor(clf.preprocess(cases[c])[0]) for c in ids[i:i + batch_size]])
                    logit = clf.module(x.float())
                    scores.append((logit[:, -1] - logit[:, 0]).numpy() if logit.shape[1] > 1 else logit[:, 0].numpy())
            s = np.concatenate(scores) if scores else np.zeros(0)
            rows.append(pd.DataFrame({
                "case_id": ids, "patient_id": sub["patient_id"].astype(str).to_numpy() if "patient_id" in sub else ids,
                "split": sub["split"].astype(str).to_numpy() if "split" in sub else "",
                "architecture": p["architecture"], "task": p["task"],
                "checkpoint": f"{p['architecture']}/{p['task']}/{role}",
                "y_true": lab[sub.index].astype(int).to_numpy(), "y_score": s}))
    table = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
    write_table(table, out, {"command": "predictions", "failures": failed})


def tradeoff(loc_tables: dict[str, Path], pred_path: Path, out: Path, *, score: str, n_boot: int, seed: int):
    """Accuracy vs localization per checkpoint (transfer / fine-tuned of every architecture x task).

    Task AUC uses held-out cases (manifest ``split`` not ``train``) when there are any."""
    import pandas as pd

    from radlens.io.artifacts import read_table, write_table
    from radlens.localization import tradeoff_table

    pred = read_table(pred_path)
    held = pred[~pred["split"].astype(str).str.lower().isin(["train", "training"])]
    pred = held if len(held) else pred
    parts = []
    for key, path in loc_tables.items():
        if not Path(path).exists():
            log.warning("tradeoff: no localization table for %s; left out", key)
            continue
        t = read_table(path)
        col = "map_set" if "map_set" in t.columns else None
        if col is None:
            continue
        t = t.assign(checkpoint=key + "/" + t[col].astype(str))
        arch, task = key.split("/", 1)
        p = pred[(pred["architecture"] == arch) & (pred["task"] == task)]
        tt = tradeoff_table(t, score, predictions=p, n_boot=n_boot, seed=seed,
                            group_col="patient_id" if "patient_id" in t.columns else None)
        parts.append(tt.assign(architecture=arch, task=task))
    write_table(pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(), out,
                {"command": "tradeoff", "score": score})
