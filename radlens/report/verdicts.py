"""One verdict per analysis, in words, read from the artefacts of a run folder.

A verdict is ``{"analysis", "section", "status", "text"}`` (``status``: ``ok`` / ``mixed`` / ``bad`` /
``info``); ``text`` holds the number, its CI with the method that made it, and what it means.
Like the checks in :mod:`radlens.report.findings`, each verdict function reads artefacts and
returns ``[]`` when its analysis did not run; :data:`VERDICTS` lists them in page order.
"""
from __future__ import annotations

import logging
from typing import Callable

from radlens.report.findings import (METHOD_NAMES, WEAK_LENS_R2, _ci, _f, _p, _read, _task, layer_label,
                                     lens_compare_dir, task_performance, warning)

log = logging.getLogger(__name__)


def verdict(analysis: str, text: str, section: str, status: str = "info") -> dict:
    return {"analysis": analysis, "section": section, "status": status, "text": text}


def _range(vals, digits: int = 2) -> str:
    vals = [float(v) for v in vals if v == v]
    if not vals:
        return "–"
    lo, hi = min(vals), max(vals)
    return _f(lo, digits) if _f(lo, digits) == _f(hi, digits) else f"{_f(lo, digits)}–{_f(hi, digits)}"


def v_training(ctx) -> list[dict]:
    perf = task_performance(ctx)
    if perf is None or not len(perf):
        return []
    ft = perf[perf["role"] == "finetuned"]
    if not len(ft):
        ft = perf
    has_ci = ft["low"].notna().all() and ft["high"].notna().all()
    if has_ci:
        learned = ft[ft["low"] > 0.5]
        meth = "DeLong" if (ft["ci_method"] == "delong").all() else "95%"
        text = (f"Fine-tuned classifiers: held-out task AUC {_range(ft['auc'])} over {len(ft)} architecture × task "
                f"checkpoints; {len(learned)} of {len(ft)} have a {meth} 95% CI above 0.5 (learned the task"
                f"{': ' + ', '.join(f'{r.architecture}/{_task(r.task)}' for r in learned.itertuples()) if len(learned) else ''}).")
        status = "ok" if len(learned) == len(ft) else ("bad" if not len(learned) else "mixed")
    else:
        text = (f"Fine-tuned classifiers: validation AUC {_range(ft['auc'])} over {len(ft)} architecture × task "
                "checkpoints (no CI available).")
        status = "info"
    return [verdict("Encoders", text, "training", status)]


def v_lens(ctx) -> list[dict]:
    out = []
    for arch in ctx.archs:
        d, layer, layers = lens_compare_dir(ctx, arch)
        gs = _read(d / "global_summary.csv")
        if gs is None or not len(gs):
            continue
        r2 = float(gs["r2_pre_heldout"].max()) if "r2_pre_heldout" in gs.columns else float("nan")
        sig = ""
        if "n_significant" in gs.columns:
            sig = ("; features with a significant change of emphasis (permutation null, BH q < 0.05) per task: "
                   + ", ".join(f"{_task(r.task)} {int(r.n_significant)}" for r in gs.itertuples()))
        where, depth = arch, ""
        if layer:
            where = f"{arch}, {layer_label(layer)} (main layer of {', '.join(layer_label(x) for x in layers)})"
            ls = _read(ctx.run_dir / "lens" / arch / "compare" / "layer_summary.csv")
            if ls is not None and {"layer", "r2_pre_heldout", "cka", "task"} <= set(ls.columns):
                r2s = ls.groupby("layer", sort=False)["r2_pre_heldout"].first()
                main = ls[ls["layer"].astype(str) == layer]
                depth = (f"; held-out R² over depth {' → '.join(f'{100 * float(r2s[lay]):.0f}%' for lay in r2s.index)}"
                         f"; linear CKA pre vs post at {layer_label(layer)} (patient-bootstrap 95% CI): "
                         + ", ".join(f"{_task(r.task)} {_f(r.cka)} {_ci(r.cka_ci_low, r.cka_ci_high)}"
                                     for r in main.itertuples()))
        text = (f"Radiomic lens, {where}: explains {100 * r2:.1f}% of the held-out pre embedding (R²){sig}{depth}.")
        out.append(verdict("Radiomic lens", text, f"lens-{arch}", "ok" if r2 >= WEAK_LENS_R2 else "mixed"))
    out += _lens_v2(ctx)
    import pandas as pd

    tabs = []
    for arch in ctx.archs:
        t = _read(ctx.run_dir / "lens" / arch / "enrichment.csv")
        if t is not None and len(t) and "p_perm" in t.columns:
            tabs.append(t.assign(architecture=arch))
    if tabs:
        t = pd.concat(tabs, ignore_index=True)
        yes = t[t["p_perm"] < 0.05]
        detail = "; ".join(f"{r.architecture}/{_task(r.task)} {int(r.hits)}/{int(r.k)} (chance "
                           f"{100 * float(r.expected_fraction):.0f}%, p = {_p(r.p_perm)})" for r in t.itertuples())
        text = (f"Expected feature classes on top: {len(yes)} of {len(t)} architecture × task combinations enriched "
                f"(permutation test over random top-k sets, p < 0.05): {detail}.")
        weak = t[t["expected_fraction"].astype(float) >= 0.5] if "expected_fraction" in t.columns else t.iloc[:0]
        if len(weak):
            tasks = ", ".join(sorted({_task(x) for x in weak["task"]}))
            text += (f" A class-level test has little power where the expected classes already hold most of the "
                     f"features (chance ≥ 50%: {tasks}): there, a task's own radiomic signature is the sharper check.")
        out.append(verdict("Planted truth", text, "planted",
                           "ok" if len(yes) == len(t) else ("bad" if not len(yes) else "mixed")))
    return out


def _lens_v2(ctx) -> list[dict]:
    """Common change (every task), task-specific contrast and task alignment, when ``compare`` wrote them."""
    out = []
    for arch in ctx.archs:
        d, layer, layers = lens_compare_dir(ctx, arch)
        parts = []
        common = _read(d / "common.csv")
        if common is not None and len(common) and "common_q" in common.columns:
            sig = common[common["common_q"] < 0.05]
            top = ", ".join(str(f).replace("original_", "") for f in sig.sort_values("common_q")["feature"].head(3))
            parts.append(f"{len(sig)} of {len(common)} features changed by every fine-tuning (common change, "
                         f"permutation null, BH q < 0.05{': ' + top if top else ''})")
        con = _read(d / "contrast.csv")
        if con is not None and len(con) and {"contrast_q", "task"} <= set(con.columns):
            per = con.groupby("task")["contrast_q"].apply(lambda q: int((q < 0.05).sum()))
            parts.append("task-specific changes (q < 0.05): " + ", ".join(f"{_task(t)} {n}" for t, n in per.items()))
        per = []
        for lay in (layers or [layer]):  # a layer-wise lens: the alignment of every layer, shallow to deep
            al = _read((d.parent / lay if layers else d) / "alignment.csv")
            if al is None or not len(al) or not {"task", "alignment"} <= set(al.columns):
                continue
            pc = "alignment_p" if "alignment_p" in al.columns else None
            per.append((f"{layer_label(lay)}: " if layers else "") + ", ".join(
                f"{_task(r.task)} {_f(r.alignment)}" + (f" (p = {_p(getattr(r, pc))})" if pc else "")
                for r in al.itertuples()))
        if per:
            parts.append("alignment of each task's change with the features that separate its labels"
                         + (" (per layer, shallow to deep; permutation p, not corrected across layers)" if layers
                            else "") + ": " + "; ".join(per))
        if parts:
            where = f"{arch}, {layer_label(layer)}" if layer else arch
            out.append(verdict("Radiomic lens", f"Radiomic lens, {where}, across tasks: " + "; ".join(parts) + ".",
                               f"lens-{arch}", "info"))
    return out


def v_cam(ctx) -> list[dict]:
    counts = _read(ctx.run_dir / "cam" / "drift.counts.parquet")
    summ = _read(ctx.run_dir / "cam" / "drift.summary.parquet")
    if counts is None or summ is None or not len(summ):
        return []
    parts = [f"{_range(counts['n_kept'], 0)} true-positive cases per architecture × task"]
    sp = summ[summ["metric"] == "spearman"] if "metric" in summ.columns else summ.iloc[:0]
    if len(sp):
        lo = sp.loc[sp["median"].idxmin()]
        hi = sp.loc[sp["median"].idxmax()]
        parts.append(f"median map agreement A vs B (Spearman ρ) from {_f(lo['median'])} "
                     f"{_ci(lo['median_ci_low'], lo['median_ci_high'])} ({lo['architecture']}/{_task(lo['task'])} "
                     f"{METHOD_NAMES.get(lo['method'], lo['method'])}) to {_f(hi['median'])} "
                     f"{_ci(hi['median_ci_low'], hi['median_ci_high'])} ({hi['architecture']}/{_task(hi['task'])} "
                     f"{METHOD_NAMES.get(hi['method'], hi['method'])}), patient-bootstrap 95% CIs")
    san = _read(ctx.run_dir / "cam" / "drift.sanity.parquet")
    status = "info"
    if san is not None and "passed" in san.columns and len(san):
        n_ok = int(san["passed"].astype(bool).sum())
        parts.append(f"model-randomisation sanity check passed {n_ok} of {len(san)}")
        status = "ok" if n_ok == len(san) else "mixed"
    return [verdict("CAM drift", "CAM drift: " + "; ".join(parts) + ".", "cam", status)]


def pooling_numbers(ctx) -> dict | None:
    """ROI vs global/CLS pooling at the smallest footprint, over every architecture and checkpoint."""
    sig_b = sig_w = n = 0
    for arch in ctx.archs:
        t = _read(ctx.run_dir / "probe" / arch / "probe.parquet")
        if t is None:
            continue
        sub = t[(t["analysis"] == "panel_pooling") & (t["metric"] == "auc_diff") & (t["pooling"] == "roi")
                & (t["pooling_ref"].isin(["cls", "global"]))]
        for _, s in sub.groupby("checkpoint"):
            ss = s[s["footprint_frac"] == s["footprint_frac"].min()]
            sig_b += int(((ss["estimate"] > 0) & (ss["q"] < 0.05)).sum())
            sig_w += int(((ss["estimate"] < 0) & (ss["q"] < 0.05)).sum())
            n += len(ss)
    return {"better": sig_b, "worse": sig_w, "tests": n} if n else None


def v_probe(ctx) -> list[dict]:
    pn = pooling_numbers(ctx)
    if pn is None:
        return []
    status = "ok" if pn["better"] and not pn["worse"] else ("bad" if pn["worse"] and not pn["better"] else "mixed")
    text = (f"Pooling probe: on the smallest perturbations ROI pooling beats global/CLS pooling in {pn['better']} of "
            f"{pn['tests']} tests and loses {pn['worse']} (paired DeLong test, BH q < 0.05).")
    return [verdict("Pooling probe", text, "probe", status)]


def v_localization(ctx) -> list[dict]:
    t = _read(ctx.run_dir / "localization" / "tradeoff.csv")
    if t is None or not len(t) or "loc_mean" not in t.columns:
        return []
    score = str(t["score"].iloc[0])
    ft = t[t["checkpoint"].astype(str).str.endswith("/finetuned")]
    ft = ft if len(ft) else t
    above = ft[ft["loc_low"] > 0.5] if score == "auc" else ft.iloc[:0]
    text = (f"Localization of the fine-tuned maps ({'pixel AUC' if score == 'auc' else score}, patient-bootstrap 95% "
            f"CI): {_range(ft['loc_mean'])} over {len(ft)} architecture × task checkpoints")
    if score == "auc":
        text += f"; {len(above)} of {len(ft)} above chance (CI > 0.5)"
        status = "ok" if len(above) == len(ft) else ("bad" if not len(above) else "mixed")
    else:
        status = "info"
    return [verdict("Localization", text + ".", "localization", status)]


VERDICTS: list[Callable] = [v_training, v_lens, v_cam, v_probe, v_localization]


def collect_verdicts(ctx, funcs=None) -> list[dict]:
    out = []
    for fn in (VERDICTS if funcs is None else funcs):
        try:
            out += fn(ctx)
        except Exception as exc:  # show the others
            log.warning("report verdict %s failed: %s", fn.__name__, exc)
            out.append(verdict("report", f"verdict {fn.__name__} could not be built ({type(exc).__name__}: {exc})",
                               "overview", "bad"))
    return out


def findings(ctx) -> dict:
    """Everything the page opens with, JSON-able: ``{"verdicts", "warnings", "stages"}``."""
    from radlens.report.findings import collect_warnings

    st: dict[str, int] = {}
    for r in ctx.stages.values():
        st[r.get("status", "?")] = st.get(r.get("status", "?"), 0) + 1
    return {"verdicts": collect_verdicts(ctx), "warnings": collect_warnings(ctx), "stages": st,
            "seconds": ctx.run.get("seconds")}


__all__ = ["findings", "collect_verdicts", "VERDICTS", "verdict", "warning"]
