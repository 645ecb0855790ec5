"""Report sections: encoders/training, planted-truth checks, CAM drift, pooling probe, localization."""
from __future__ import annotations

import logging
from pathlib import Path

from radlens.report import html as H

log = logging.getLogger(__name__)

_TEXTURE = ("glcm", "glrlm", "glszm", "gldm", "ngtdm")


# --------------------------------------------------------------------------- training (demo encoders)
def training_json(ctx) -> Path | None:
    """``training.json`` of demo encoders (next to the encoder specs' folders), if any."""
    cands = [ctx.run_dir / "models" / "training.json"]
    for enc in ctx.config.get("encoders", {}).values():
        pre = Path(str(enc.get("pre", "")))
        cands += [pre.parent.parent / "training.json", pre.parent / "training.json"]
    return next((p for p in cands if p.exists()), None)


def training(ctx) -> str:
    import pandas as pd

    from radlens.io.artifacts import read_json

    rows = []
    for arch, enc in ctx.config.get("encoders", {}).items():
        for task, tc in enc.get("tasks", {}).items():
            rows.append({"architecture": arch, "task": task, "pre": Path(enc["pre"]).name,
                         "transfer": Path(tc["transfer"]).name if tc.get("transfer") else "–",
                         "finetuned": Path(tc["finetuned"]).name})
    body = "<h3>Checkpoints in this study</h3>" + H.table(pd.DataFrame(rows), max_rows=200)
    body += _heldout_auc(ctx)
    tj = training_json(ctx)
    if tj is None:
        return body + "<p class='muted'>No training log: these encoders were trained outside radlens.</p>"
    m = read_json(tj)
    from radlens.report.figures import training_figure
    from radlens.synth.train import summarise

    cfg = m.get("config", {})
    body += ("<h3>How the demo encoders were trained</h3><p>On the spot, on this cohort: a small MONAI ResNet "
             "(CNN, global-average head) and a tiny HF DINOv2 ViT (CLS head) were pre-trained with a "
             f"contrastive pretext task ({cfg.get('pretext_epochs')} epochs, no labels); then per task a "
             "<b>transfer-learning</b> checkpoint (frozen backbone + logistic head) and a <b>fine-tuned</b> "
             f"one (all weights, {cfg.get('finetune_epochs')} epochs, started from the transfer head). "
             f"Train / validation: {m.get('n_train')} / {m.get('n_val')} images, patient-grouped.</p>")
    summ = pd.DataFrame(summarise(m))
    if len(summ):
        body += ("<h4>Validation AUC during training (no CI; the held-out table above has DeLong CIs)</h4>"
                 + H.table(summ.rename(columns={"arch": "architecture", "val_auc_tl": "val AUC transfer",
                                                "val_auc_ft": "val AUC fine-tuned",
                                                "backbone_change": "relative weight change"}), source=tj))
        fig = training_figure(m, ctx.fig_dir / "training_summary")
        body += H.figs(H.image(fig, "Left: validation AUC of each task, transfer-learning (hatched) vs fine-tuned "
                                    "(solid) classifier; dashed line = chance. Right: how well a ridge regression "
                                    "recovers each planted lesion attribute from the pooled features (held-out R²) "
                                    "before and after fine-tuning", wide=True))
    return body


def _heldout_auc(ctx) -> str:
    from radlens.report.findings import task_performance

    perf = task_performance(ctx)
    if perf is None or not len(perf) or perf["low"].isna().all():
        return ""
    t = perf.rename(columns={"role": "checkpoint", "auc": "AUC", "low": "CI low", "high": "CI high",
                             "ci_method": "CI method"})
    return ("<h4>Held-out task AUC per checkpoint (the cases the localization stage scores; 95% CI by the "
            "method named)</h4>" + H.table(t, max_rows=200, source=ctx.run_dir / "localization" / "tradeoff.csv"))


# --------------------------------------------------------------------------- planted truth
def planted(ctx) -> str:
    body = _lens_enrichment(ctx)
    body += _pooling_check(ctx)
    return body


def _lens_enrichment(ctx) -> str:
    import pandas as pd

    from radlens.io.artifacts import read_table
    from radlens.report.figures import enrichment_figure

    exp = ctx.config.get("lens", {}).get("expected_classes") or {}
    body = "<h3>Does the lens put the expected feature classes on top?</h3>"
    if not exp:
        return body + H.not_run("no lens.expected_classes in the study config (set them to test an expectation)")
    body += ("<p>For each task, its top-k features are checked for enrichment of the feature classes the task "
             "was built on (texture task: GLCM/GLRLM/GLSZM/GLDM/NGTDM; intensity task: first order; shape task: "
             "shape). With several tasks the top-k are the features the task made the encoder emphasise "
             "<b>more than the other tasks did</b> (signed task-specific change of emphasis, "
             "<code>ranked_by = specific_change</code>); the task's own emphasis ranking is dominated by the "
             "change every fine-tuning shares and puts the same features on top for every task. With one task: "
             "largest |emphasis| (<code>ranked_by = emphasis</code>). <i>p</i>: share of random k-subsets of "
             "the features with at least as many hits (permutation), and the exact hypergeometric tail. When "
             "the expected classes are most of the features (texture: about three quarters), chance is already "
             "high and enrichment can hardly be significant.</p>")
    tables = []
    for arch in ctx.archs:
        p = ctx.run_dir / "lens" / arch / "enrichment.csv"
        if not p.exists():
            body += f"<h4>{H.esc(arch)}</h4>" + H.not_run(ctx.why_not(f"enrichment/{arch}"))
            continue
        t = read_table(p)
        if len(t):
            tables.append(t.assign(architecture=arch))
    if not tables:
        return body
    t = pd.concat(tables, ignore_index=True)
    t["verdict"] = [("enriched" if (r.p_perm < 0.05) else "not enriched") for r in t.itertuples()]
    n_yes = int((t["verdict"] == "enriched").sum())
    cls = "v-yes" if n_yes == len(t) else ("v-no" if n_yes == 0 else "v-mixed")
    body += (f'<div class="verdict {cls}"><b>{n_yes} of {len(t)}</b> architecture × task combinations show '
             "significant enrichment (permutation p &lt; 0.05) of the expected classes in their top-k.</div>")
    if "ranked_by" not in t.columns:  # enrichment tables written before the ranking was recorded
        t["ranked_by"] = "emphasis"
    body += H.table(t, columns=["architecture", "task", "ranked_by", "expected_classes", "k", "hits", "fraction",
                                "expected_fraction", "p_perm", "p_hypergeom", "verdict", "top_classes"], max_rows=200)
    fig = enrichment_figure(t, ctx.fig_dir / "planted_enrichment")
    body += H.figs(H.image(fig, "Share of each task's top-k shifted features that belong to the classes the task "
                                "was built on (bars; green = permutation p < 0.05) against the share expected by "
                                "chance (black tick)"))
    return body


def _pooling_check(ctx) -> str:
    import pandas as pd

    from radlens.io.artifacts import read_table

    body = "<h3>Does ROI pooling beat global pooling for small perturbations?</h3>"
    if not ctx.config.get("pooling_probe", {}).get("enabled", True):
        return body + H.not_run("pooling_probe disabled in the study config")
    rows = []
    for arch in ctx.archs:
        p = ctx.run_dir / "probe" / arch / "probe.parquet"
        if not p.exists():
            body += f"<h4>{H.esc(arch)}</h4>" + H.not_run(ctx.why_not(f"pooling-probe/{arch}"))
            continue
        t = read_table(p)
        sub = t[(t["analysis"] == "panel_pooling") & (t["metric"] == "auc_diff") & (t["pooling"] == "roi")
                & (t["pooling_ref"].isin(["cls", "global"]))]
        if not len(sub):
            continue
        for ck, s in sub.groupby("checkpoint"):
            smallest = s["footprint_frac"].min()
            ss = s[s["footprint_frac"] == smallest]
            largest = s[s["footprint_frac"] == s["footprint_frac"].max()]
            rows.append({"architecture": arch, "checkpoint": ck, "footprint (smallest)": smallest,
                         "ROI − global AUC, mean over perturbations": ss["estimate"].mean(),
                         "perturbations with ROI better (q<0.05)": f"{int(((ss['estimate'] > 0) & (ss['q'] < 0.05)).sum())}/{len(ss)}",
                         "perturbations with ROI worse (q<0.05)": f"{int(((ss['estimate'] < 0) & (ss['q'] < 0.05)).sum())}/{len(ss)}",
                         "ROI − global at largest footprint": largest["estimate"].mean()})
    if not rows:
        return body + H.not_run("the probe tables hold no ROI-vs-global panel comparison")
    df = pd.DataFrame(rows)
    n_pos = sum(r["ROI − global AUC, mean over perturbations"] > 0 for r in rows)
    sig_b = sum(int(r["perturbations with ROI better (q<0.05)"].split("/")[0]) for r in rows)
    sig_w = sum(int(r["perturbations with ROI worse (q<0.05)"].split("/")[0]) for r in rows)
    n_tests = sum(int(r["perturbations with ROI better (q<0.05)"].split("/")[1]) for r in rows)
    cls = "v-yes" if sig_b and not sig_w else ("v-no" if sig_w and not sig_b else "v-mixed")
    body += (f'<div class="verdict {cls}">On the smallest perturbations, ROI pooling is <b>significantly better</b> '
             f"than global/CLS pooling in <b>{sig_b} of {n_tests}</b> tests and significantly worse in "
             f"<b>{sig_w}</b> (DeLong, BH q &lt; 0.05); its mean AUC advantage is positive for {n_pos} of "
             f"{len(rows)} encoder checkpoints.</div>")
    return body + H.table(df, max_rows=500)


# --------------------------------------------------------------------------- CAM drift
def cam(ctx) -> str:
    from radlens.io.artifacts import read_table

    d = ctx.run_dir / "cam"
    if not (d / "drift.parquet").exists():
        return H.not_run(ctx.why_not("cam-drift", "cam_drift"))
    body = ("<p>LayerCAM and Grad-CAM++ maps of the transfer-learning (A) and fine-tuned (B) classifier of each "
            "architecture × task, on cases both classify correctly (true positives), compared without ground "
            "truth: centroid displacement, top-k overlap IoU, pattern correlation and concentration change.</p>")
    layers = _cam_target_layers(d)
    if layers:
        body += ("<p class='muted'>CAM target layer: " + "; ".join(
            f"{H.esc(a)} <code>{H.esc(v)}</code>" for a, v in layers.items()) + " (docs/cam.md).</p>")
    figs = sorted((d / "figures").glob("cam_overlays_*.png"))
    if figs:
        body += ("<h3>Overlays (A: transfer learning, B: fine-tuned)</h3><p class='muted'>Each row one case, picked "
                 "across the range of centroid displacement; the ROI is outlined in cyan; each map is divided by "
                 "its maximum.</p>")
        body += H.figs(*[H.image(p, overlay_caption(p.stem)) for p in figs[:6]])
        if len(figs) > 6:
            body += f"<p class='muted'>{len(figs) - 6} more overlay grids in <code>{H.esc(H.rel_name(d / 'figures'))}</code>.</p>"
    for stem, cap, anchor in (
            ("cam_drift_distributions", "How far the maps moved between A and B, per case: one box per method, per "
                                        "architecture and task", "cam-distributions"),
            ("cam_drift_rankings", "Which architecture's maps moved most, per drift measure and CAM method (rank 1 = "
                                   "most drift); crossing lines are ranking reversals between methods", "cam-rankings")):
        p = d / "figures" / f"{stem}.png"
        if p.exists():
            body += f'<div id="{anchor}"></div>' + H.figs(H.image(p, cap, wide=True))
    for name, title, cols, anchor in (
            ("counts", "Cases kept per pair (true-positive filter)", None, "cam-counts"),
            ("summary", "Drift summary (median with patient-bootstrap 95% CI)",
             ["architecture", "task", "method", "metric", "n", "median", "median_ci_low", "median_ci_high", "mean"],
             "cam-summary"),
            ("concentration", "Concentration change A → B (mean difference with bootstrap 95% CI; p: Wilcoxon "
                              "signed-rank, q: BH — a CI and a q from different procedures can disagree near the "
                              "threshold)", None, "cam-concentration"),
            ("reversals", "Ranking reversals between methods", None, "cam-reversals"),
            ("sanity", "Model-randomisation sanity check (passed: median Spearman between the trained and a "
                       "re-initialised model's maps below the threshold)", None, "cam-sanity")):
        p = d / f"drift.{name}.parquet"
        if p.exists():
            t = read_table(p)
            body += f'<h4 id="{anchor}">{H.esc(title)}</h4>' + H.table(
                t, columns=cols if cols and set(cols) <= set(t.columns) else None, max_rows=36, source=p)
    for p in sorted(d.glob("drift.sanity?*.parquet")):  # later sanity variants (e.g. cascading randomisation)
        if p.name != "drift.sanity.parquet":
            body += (f"<h4>Sanity check: {H.esc(p.name.split('.')[1].replace('_', ' '))}</h4>"
                     + H.table(read_table(p), max_rows=36, source=p))
    if not (d / "drift.sanity.parquet").exists():
        body += '<h4 id="cam-sanity">Model-randomisation sanity check</h4>' + H.not_run(
            "no drift.sanity.parquet (cam_drift.options.sanity_cases: 0?)")
    return body


def _cam_target_layers(d) -> dict:
    """``{architecture: target layer}`` from the saved maps' metadata (``maps*.npz`` in ``d``)."""
    import json

    import numpy as np

    from radlens.io.artifacts import NPZ_META

    out: dict = {}
    for p in sorted(d.glob("maps*.npz")):
        try:
            with np.load(p, allow_pickle=False) as z:
                meta = json.loads(str(z[NPZ_META])) if NPZ_META in z.files else {}
        except (OSError, ValueError):
            continue
        if meta.get("architecture") and meta.get("target_layer"):
            out.setdefault(str(meta["architecture"]), str(meta["target_layer"]))
    return out


def overlay_caption(stem: str) -> str:
    """``cam_overlays_maps_cnn_task_texture`` -> words."""
    parts = stem.replace("cam_overlays_", "").replace("maps_", "", 1).split("_", 1)
    arch = parts[0]
    task = parts[1].replace("task_", "") if len(parts) > 1 else ""
    return (f"CAM maps of the {arch} classifiers for the {task} task: input, then per method the transfer-learning "
            "(A) and fine-tuned (B) map over the image, ROI outlined")


# --------------------------------------------------------------------------- pooling probe
def probe(ctx) -> str:
    from radlens.io.artifacts import read_table

    if not ctx.config.get("pooling_probe", {}).get("enabled", True):
        return H.not_run("disabled in the study config (pooling_probe.enabled: false)")
    body = ("<p>CLS / global-average, patch-mean and ROI-restricted embeddings from one forward pass, scored by "
            "cross-validated linear probes on a panel of small synthetic perturbations (blur, motion, texture, "
            "nodule) of increasing footprint, and on the real lesions stratified by size, with 95% CIs "
            "(clustered DeLong for the paired panel, bootstrap for lesions) "
            "and DeLong tests; <i>pre</i> = before, <i>post</i> = after fine-tuning.</p>")
    for arch in ctx.archs:
        d = ctx.run_dir / "probe" / arch
        body += f"<h3>{H.esc(arch)}</h3>"
        if not (d / "probe.parquet").exists():
            body += H.not_run(ctx.why_not(f"pooling-probe/{arch}"))
            continue
        caps = {"panel": "perturbation panel: probe AUC per pooling vs footprint",
                "pre_post": "pre vs post fine-tuning, per panel cell",
                "jitter": "ROI-pooling AUC under box jitter (how exact must the box be?)",
                "size_gap": "real lesions: probe AUC by lesion size and the small-lesion gap"}
        known = [d / f"probe_{k}.png" for k in caps]
        others = sorted(p for p in d.glob("probe_*.png") if p not in known)
        # every probe figure on its own row: the panel's legend and the jitter panels stay readable
        for p in [q for q in known if q.exists()] + others:
            body += H.figs(H.image(p, f"{arch}: {caps.get(p.stem[6:], p.stem[6:].replace('_', ' '))}", wide=True,
                                   width=1100))
        t = read_table(d / "probe.parquet")
        sub = t[(t["analysis"].isin(["panel_pooling", "lesion_image_pooling", "lesion_box"]))]
        # every column that identifies a row (a cell = perturbation × footprint × strength, a stratum, a jitter)
        ident = [c for c in ("analysis", "checkpoint", "metric", "pooling", "pooling_ref", "perturbation",
                             "footprint_frac", "strength", "finding", "stratum", "jitter")
                 if c in sub.columns and sub[c].notna().any()]
        body += ("<h4>Pooling comparisons</h4><p class='muted'>estimate: AUC difference pooling − pooling_ref; "
                 "ci_low/ci_high: 95% CI made by <code>ci_method</code> (delong_clustered_wald: the clustered DeLong "
                 "variance that also gives p, so CI and p agree; bootstrap_percentile: cases resampled, a different "
                 "procedure from p that can disagree with it near the threshold); p: paired DeLong test; q: BH over "
                 "the table.</p>" + H.table(sub, columns=ident + ["estimate", "ci_low", "ci_high", "ci_method", "p",
                                                                  "q"], max_rows=30, source=d / "probe.parquet"))
    return body


# --------------------------------------------------------------------------- localization
def localization(ctx) -> str:
    import pandas as pd

    from radlens.io.artifacts import read_table

    if not ctx.config.get("localization", {}).get("enabled", True):
        return H.not_run("disabled in the study config (localization.enabled: false)")
    d = ctx.run_dir / "localization"
    tables = sorted(p for p in d.glob("*.summary.parquet")) if d.exists() else []
    if not tables:
        return H.not_run(ctx.why_not("localize", "localization"))
    score = ctx.config.get("localization", {}).get("score", "auc")
    body = ("<p>The first CAM method's maps scored against the ROIs (pointing game, pixel AUC-ROC, CNR, IoU, "
            "centroid distance, mass inside the ROI), transfer-learning vs fine-tuned checkpoint; the trade-off "
            f"plots task AUC (held-out cases) against localization ({H.esc(score)}).</p>")
    tr = d / "tradeoff.csv"
    if tr.exists():
        t = read_table(tr)
        from radlens.report.figures import tradeoff_figure

        fig = tradeoff_figure(t, ctx.fig_dir / "tradeoff")
        if fig:
            body += H.figs(H.image(fig, "Accuracy vs interpretability: each arrow goes from the transfer-learning "
                                        "to the fine-tuned checkpoint"))
        body += ("<h4>Trade-off table</h4><p class='muted'>loc_low/loc_high: patient-bootstrap 95% CI of the mean "
                 "localization score; task_low/task_high: held-out task AUC 95% CI by task_ci_method.</p>"
                 + H.table(t, columns=["architecture", "task", "checkpoint", "score", "loc_mean", "loc_low",
                                       "loc_high", "loc_n", "task_metric", "task_low", "task_high", "task_n",
                                       "task_ci_method"], max_rows=200, source=tr))
    else:
        body += H.not_run(ctx.why_not("tradeoff"))
    key = ["pointing_game", "auc", "mass_inside", "iou_otsu", "centroid_dist_norm_otsu"]
    parts = []
    for p in tables:
        pp = p.with_name(p.name.replace(".summary.parquet", ".paired.parquet"))
        if pp.exists():
            t = read_table(pp)
            t = t[t["score"].isin(key) & (t["class"].astype(str) == "(all)")] if "class" in t.columns else t
            parts.append(t.assign(pair=p.name.split(".")[0]))
    if parts:
        summ = pd.concat(parts, ignore_index=True)
        body += ("<h4 id=\"loc-paired\">Transfer → fine-tuned, key scores (paired over the same cases)</h4>"
                 "<p class='muted'>mean_diff = fine-tuned − transfer; ci_low/ci_high: patient-bootstrap 95% CI of "
                 "the mean difference; q_bh: Wilcoxon signed-rank test, BH over the scores of a pair. The CI and "
                 "q come from different procedures: a CI that excludes 0 next to q &gt; 0.05 (or the reverse) is "
                 "a borderline difference, not a contradiction. Every score (and per-class rows) is in "
                 "<code>localization/*.summary.parquet</code> and <code>*.paired.parquet</code>; definitions in "
                 "docs/localization.md.</p>"
                 + H.table(summ, columns=["pair", "score", "higher_is_better", "n", "mean_a", "mean_b", "mean_diff",
                                          "ci_low", "ci_high", "p_wilcoxon", "q_bh"], max_rows=60,
                           source=d / "<pair>.paired.parquet"))
    figs = sorted(p for p in d.glob("*.png") if p.stem != "tradeoff")
    if figs:
        body += "<h4>Localization scores per pair (y axes start at zero)</h4>" + H.figs(
            *[H.image(p, f"{p.stem.split('.')[0].replace('_', ' ', 1)}: mean localization score per map set with "
                         "patient-bootstrap 95% CI", wide=True) for p in figs])
    return body
