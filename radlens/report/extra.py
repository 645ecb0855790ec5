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
    body = "<h3>Checkpoints in this study</h3>" + H.table(pd.DataFrame(rows))
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
        body += H.table(summ.rename(columns={"val_auc_tl": "val AUC transfer", "val_auc_ft": "val AUC fine-tuned",
                                             "backbone_change": "relative weight change"}))
        fig = training_figure(m, ctx.fig_dir / "training_summary")
        body += H.figs(H.image(fig, "Validation AUC and planted-attribute decodability (ridge R², held-out) of "
                                    "the pooled features before and after fine-tuning"))
    return body


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
    body += ("<p>For each task, the top-k features by shift are checked for enrichment of the feature "
             "classes the task was built on (texture task: GLCM/GLRLM/GLSZM/GLDM/NGTDM; intensity task: "
             "first order; shape task: shape). <i>p</i>: share of random k-subsets of the features with at "
             "least as many hits (permutation), and the exact hypergeometric tail.</p>")
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
    body += H.table(t, columns=["architecture", "task", "expected_classes", "k", "hits", "fraction",
                                "expected_fraction", "p_perm", "p_hypergeom", "verdict", "top_classes"])
    fig = enrichment_figure(t, ctx.fig_dir / "planted_enrichment")
    body += H.figs(H.image(fig, "Share of the top-k features in the expected classes vs the share expected "
                                "by chance"))
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
    return body + H.table(df)


# --------------------------------------------------------------------------- CAM drift
def cam(ctx) -> str:
    from radlens.io.artifacts import read_table

    d = ctx.run_dir / "cam"
    if not (d / "drift.parquet").exists():
        return H.not_run(ctx.why_not("cam-drift", "cam_drift"))
    body = ("<p>LayerCAM and Grad-CAM++ maps of the transfer-learning (A) and fine-tuned (B) classifier of each "
            "architecture × task, on cases both classify correctly (true positives), compared without ground "
            "truth: centroid displacement, top-k overlap IoU, pattern correlation and concentration change.</p>")
    figs = sorted((d / "figures").glob("cam_overlays_*.png"))
    if figs:
        body += "<h3>Overlays (A: transfer learning, B: fine-tuned)</h3>"
        body += H.figs(*[H.image(p, p.stem.replace("cam_overlays_", "").replace("_", " ")) for p in figs[:6]])
        if len(figs) > 6:
            body += f"<p class='muted'>{len(figs) - 6} more overlay grids in {H.esc(d / 'figures')}.</p>"
    for stem, cap in (("cam_drift_distributions", "Drift metric distributions"),
                      ("cam_drift_rankings", "Architecture rankings per metric and method")):
        p = d / "figures" / f"{stem}.png"
        if p.exists():
            body += H.figs(H.image(p, cap))
    for name, title, cols in (
            ("counts", "Cases kept per pair (true-positive filter)", None),
            ("summary", "Drift summary (median with bootstrap CI)", ["architecture", "task", "method", "metric", "n",
                                                                    "median", "median_ci_low", "median_ci_high", "mean"]),
            ("concentration", "Concentration change A → B (paired tests)", None),
            ("reversals", "Ranking reversals between methods", None),
            ("sanity", "Model-randomisation sanity check", None)):
        p = d / f"drift.{name}.parquet"
        if p.exists():
            t = read_table(p)
            body += f"<h4>{title}</h4>" + H.table(t, columns=cols if cols and set(cols) <= set(t.columns) else None,
                                                   max_rows=36)
    return body


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
        # the panel and pre/post side by side; the wide two-panel jitter figure (and others) full width
        body += H.figs(*[H.image(p, f"{arch}: {caps[p.stem[6:]]}") for p in known[:2] if p.exists()])
        for p in [q for q in known[2:] if q.exists()] + others:
            body += H.figs(H.image(p, f"{arch}: {caps.get(p.stem[6:], p.stem[6:].replace('_', ' '))}", width=1000))
        t = read_table(d / "probe.parquet")
        sub = t[(t["analysis"].isin(["panel_pooling", "lesion_image_pooling", "lesion_box"]))]
        body += "<h4>Pooling comparisons</h4>" + H.table(
            sub, columns=["analysis", "checkpoint", "metric", "pooling", "pooling_ref", "perturbation",
                          "footprint_frac", "stratum", "estimate", "ci_low", "ci_high", "q"], max_rows=30)
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
        body += "<h4>Trade-off table</h4>" + H.table(t, columns=["architecture", "task", "checkpoint", "score",
                                                                 "loc_mean", "loc_low", "loc_high", "task_metric",
                                                                 "task_low", "task_high", "task_n"])
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
        body += ("<h4>Transfer → fine-tuned, key scores (paired over the same cases)</h4>"
                 "<p class='muted'>mean_diff = fine-tuned − transfer with bootstrap 95% CI; Wilcoxon signed-rank, "
                 "BH q over the scores of a pair. Every score (and per-class rows) is in "
                 "<code>localization/*.summary.parquet</code> and <code>*.paired.parquet</code>; definitions in "
                 "docs/localization.md.</p>"
                 + H.table(summ, columns=["pair", "score", "higher_is_better", "n", "mean_a", "mean_b", "mean_diff",
                                          "ci_low", "ci_high", "q_bh"], max_rows=60))
    return body
