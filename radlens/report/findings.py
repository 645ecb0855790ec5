"""Findings of a run folder: one verdict per analysis and every warning, read from the artefacts.

Both are plain dicts so the HTML report, ``findings.json`` and the README generator share them:

* a **verdict** ``{"analysis", "section", "status", "text"}``: the number, its CI (and the method that
  made it) and what it means, in one sentence; ``status`` is ``ok`` / ``mixed`` / ``bad`` / ``info``;
* a **warning** ``{"analysis", "severity", "message", "section"}``: a failed sanity check, a weak fit,
  an unlearned task, a near-chance score, a small-count ranking, a failed stage, lost cases.
  ``severity`` is ``error`` (a stage failed: results are missing) or ``warning`` (a result that
  must be read with care).

Checks are data-driven: :data:`CHECKS` is a list of functions ``check(ctx) -> list[dict]``, each
reading artefacts of the run folder and returning nothing when its artefact is absent. To add a
check, write one such function and append it to :data:`CHECKS`. A check that raises becomes an
``error`` warning naming the check, so a broken artefact is never silently dropped.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Callable

log = logging.getLogger(__name__)

#: below this held-out R² of the pre lens, the lens describes a small part of the embedding only
WEAK_LENS_R2 = 0.5
#: a validation AUC below this (when no CI is available) is called "barely learned"
WEAK_TASK_AUC = 0.6
#: pointing-game hit rates at or below this are called near zero
LOW_POINTING = 0.1
#: median Spearman between map A and map B at or below this is called an inverted map
INVERTED_RHO = -0.5
#: architectures below this count make a "ranking" a single paired comparison
MIN_RANKED_ARCHS = 3

#: which report section shows the artefacts of each stage kind
STAGE_SECTION = {"radiomics": "lens", "embed": "lens", "fit-pre": "lens", "refit-post": "lens",
                 "compare": "lens", "enrichment": "planted", "cam-drift": "cam", "localize": "localization",
                 "tradeoff": "localization", "pooling-probe": "probe", "report": "overview"}

ROLE = {"a": "A (transfer)", "b": "B (fine-tuned)"}
METHOD_NAMES = {"layercam": "LayerCAM", "gradcam++": "Grad-CAM++", "gradcam": "Grad-CAM", "ig": "Integrated Gradients"}


def warning(analysis: str, message: str, section: str, severity: str = "warning") -> dict:
    """One warning record (see the module docstring)."""
    return {"analysis": analysis, "severity": severity, "message": message, "section": section}


def _read(path: Path):
    from radlens.io.artifacts import read_table

    return read_table(path) if Path(path).exists() else None


def lens_compare_dir(ctx, arch: str) -> tuple[Path, str | None, list[str]]:
    """Where an architecture's lens ``compare`` tables are: ``(folder, layer, layers)``. For a
    layer-wise lens the folder of its main layer (``encoders.<arch>.layer`` when it is one of the
    layers, else the deepest; the one the report's lens section shows) and every layer in depth
    order; otherwise ``compare/`` itself, ``None`` and ``[]``."""
    import json

    d = Path(ctx.run_dir) / "lens" / arch / "compare"
    index = d / "layers.json"
    if index.exists():
        layers = [str(x) for x in json.loads(index.read_text(encoding="utf-8")).get("layers", [])]
        if layers:
            want = (((getattr(ctx, "config", None) or {}).get("encoders") or {}).get(arch) or {}).get("layer")
            main = str(want) if want is not None and str(want) in layers else layers[-1]
            return d / main, main, layers
    return d, None, []


def layer_label(layer) -> str:
    """``layer4`` stays ``layer4``; a bare index (a ViT's ``hidden_states`` index) reads ``block 4``."""
    layer = str(layer)
    return f"block {layer}" if layer.isdigit() else layer


def _f(v, digits: int = 2) -> str:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return str(v)
    if math.isnan(x):
        return "–"
    return f"{x:.{digits}f}"


def _p(v) -> str:
    """A p-value: three decimals, or two significant digits below 0.01 (0.0005, not 0.000)."""
    x = float(v)
    return f"{x:.2g}" if 0 < x < 0.01 else f"{x:.3f}"


def _ci(lo, hi, digits: int = 2) -> str:
    return f"[{_f(lo, digits)}, {_f(hi, digits)}]"


def _task(t) -> str:
    return str(t).replace("task_", "")


# --------------------------------------------------------------------------- checks
def check_stages(ctx) -> list[dict]:
    """Failed and skipped stages (their results are missing from the report)."""
    out = []
    for name, rec in ctx.stages.items():
        st = rec.get("status")
        if st not in ("failed", "skipped"):
            continue
        kind = rec.get("kind") or name.split("/")[0]
        err = (rec.get("error") or "").strip()
        out.append(warning(kind, f"stage {name} {st}: {err[:300]}", STAGE_SECTION.get(kind, "stages"),
                           "error" if st == "failed" else "warning"))
    return out


def check_failures_tables(ctx) -> list[dict]:
    """Cases that a stage could not process (``*.failures.csv`` with rows)."""
    out = []
    for p in sorted(ctx.run_dir.rglob("*failures.csv")):
        if "cohort" in p.parts or ".cache" in p.parts:
            continue
        t = _read(p)
        if t is None or not len(t):
            continue
        rel = p.relative_to(ctx.run_dir).as_posix()
        kind = rel.split("/")[0]
        sec = {"embeddings": "lens", "radiomics": "lens", "lens": "lens", "cam": "cam", "probe": "probe",
               "localization": "localization"}.get(kind, "stages")
        ex = ", ".join(str(c) for c in t["case_id"].astype(str).head(3)) if "case_id" in t.columns else ""
        why = ""
        for col in ("error", "reason"):
            if col in t.columns and len(t[col].dropna()):
                why = f"; first reason: {str(t[col].dropna().iloc[0])[:160]}"
                break
        out.append(warning(kind, f"{len(t)} case(s) not processed, listed in {rel} (e.g. {ex}){why}", sec))
    return out


def check_cam_sanity(ctx) -> list[dict]:
    """Sanity checks that failed: every ``cam/drift.sanity*.parquet`` / ``.csv`` (model randomisation and
    any later variant) with a boolean ``passed`` column."""
    out = []
    d = ctx.run_dir / "cam"
    for p in sorted(d.glob("drift.sanity*.parquet")) + sorted(d.glob("drift.sanity*.csv")) if d.exists() else []:
        t = _read(p)
        if t is None or "passed" not in t.columns or not len(t):
            continue
        kind = p.name.split(".")[1].replace("sanity", "").strip("_")
        ok = t["passed"].fillna(False).astype(bool)
        out += _sanity_warnings(t[~ok], kind)
        if {"spearman_median", "threshold"} <= set(t.columns):
            anti = t[ok & (t["spearman_median"] <= -t["threshold"])]
            if len(anti):
                items = "; ".join(f"{r.architecture}/{_task(r.task)} {METHOD_NAMES.get(r.method, r.method)} "
                                  f"{ROLE.get(str(r.model), r.model)} {_f(r.spearman_median)}" for r in anti.itertuples())
                out.append(warning("cam-drift", f"CAM sanity check passed only one-sidedly: the randomised model's maps "
                                   f"are strongly ANTI-correlated with the trained model's (median Spearman ≤ "
                                   f"−{_f(anti['threshold'].iloc[0])}), which also ties the maps to the input rather "
                                   f"than the weights: {items}", "cam-sanity"))
    return out


def _sanity_warnings(bad, kind: str = "") -> list[dict]:
    out = []
    if not len(bad):
        return out
    keys = [c for c in ("architecture", "task", "method") if c in bad.columns]
    for key, g in (bad.groupby(keys, sort=False) if keys else [((), bad)]):
        key = key if isinstance(key, tuple) else (key,)
        d = dict(zip(keys, key))
        stat = "spearman_median" if "spearman_median" in g.columns else None
        parts = []
        for r in g.itertuples():
            who = ROLE.get(str(getattr(r, "model", "")), str(getattr(r, "model", "model")))
            parts.append(f"{who} {_f(getattr(r, stat))}" if stat else who)
        thr = _f(g["threshold"].iloc[0]) if "threshold" in g.columns else "the threshold"
        what = (f"median Spearman between trained and randomised-model maps {', '.join(parts)} ≥ {thr}"
                if stat else f"failed for {', '.join(parts)}")
        out.append(warning(
            "cam-drift",
            f"CAM sanity check{' (' + kind + ')' if kind else ''} FAILED: {d.get('architecture', '')}/{d.get('task', '')} "
            f"{METHOD_NAMES.get(d.get('method'), d.get('method', ''))}: {what}; these maps may reflect the input "
            "more than the learned weights", "cam-sanity"))
    return out


def check_inverted_maps(ctx) -> list[dict]:
    """Fine-tuned maps that are the negative image of the transfer maps (median Spearman A vs B ≤
    :data:`INVERTED_RHO`, CI entirely below 0): a sign or target-class problem to rule out before
    reading the drift as learning."""
    t = _read(ctx.run_dir / "cam" / "drift.summary.parquet")
    if t is None or not {"metric", "median", "median_ci_high"} <= set(t.columns):
        return []
    sp = t[(t["metric"] == "spearman") & (t["median"] <= INVERTED_RHO) & (t["median_ci_high"] < 0)]
    if not len(sp):
        return []
    items = "; ".join(f"{r.architecture}/{_task(r.task)} {METHOD_NAMES.get(r.method, r.method)} "
                      f"{_f(r.median)} {_ci(r.median_ci_low, r.median_ci_high)}" for r in sp.itertuples())
    return [warning("cam-drift", f"inverted maps: the fine-tuned (B) map is close to the negative of the transfer (A) "
                    f"map (median Spearman A vs B ≤ {INVERTED_RHO}, patient-bootstrap 95% CI below 0): {items}. Rule "
                    "out a sign or target-class mismatch before reading this as learned drift", "cam-summary")]


def check_lens_fit(ctx) -> list[dict]:
    """A lens that explains little of the pre embedding on held-out cases."""
    out = []
    for arch in ctx.archs:
        d, layer, _ = lens_compare_dir(ctx, arch)
        gs = _read(d / "global_summary.csv")
        if gs is None or "r2_pre_heldout" not in gs.columns:
            continue
        r2 = gs["r2_pre_heldout"].dropna()
        where = f"{arch} ({layer_label(layer)})" if layer else arch
        if len(r2) and float(r2.max()) < WEAK_LENS_R2:
            out.append(warning(
                "lens", f"weak lens fit for {where}: it explains {100 * float(r2.max()):.1f}% of the held-out pre "
                f"embedding (R² < {WEAK_LENS_R2}); the shifts describe only that radiomic part of the embedding",
                f"lens-{arch}"))
    return out


def check_enrichment(ctx) -> list[dict]:
    """Planted-truth / expected-class checks that were not met."""
    items, n = [], 0
    for arch in ctx.archs:
        t = _read(ctx.run_dir / "lens" / arch / "enrichment.csv")
        if t is None or not {"p_perm", "hits", "k"} <= set(t.columns):
            continue
        n += len(t)
        for r in t.itertuples():
            if float(r.p_perm) >= 0.05:
                items.append(f"{arch}/{_task(r.task)} {int(r.hits)}/{int(r.k)} in "
                             f"{str(r.expected_classes).replace(',', '/')} (chance "
                             f"{100 * float(r.expected_fraction):.0f}%, p = {_p(r.p_perm)})")
    if not items:
        return []
    return [warning("lens", f"expected-class (planted-truth) check not met in {len(items)} of {n} architecture × task "
                    "combinations, top-k features in the expected classes, permutation p: " + "; ".join(items),
                    "planted")]


def task_performance(ctx):
    """Held-out task AUC per checkpoint with its CI: ``localization/tradeoff.csv`` (DeLong) when present,
    else the demo's ``training.json`` validation AUCs (no CI). Columns: architecture, task, role, auc,
    low, high, n, ci_method."""
    import pandas as pd

    t = _read(ctx.run_dir / "localization" / "tradeoff.csv")
    rows = []
    if t is not None and len(t) and "task_metric" in t.columns:
        for r in t.itertuples():
            role = str(r.checkpoint).rsplit("/", 1)[-1]
            rows.append({"architecture": r.architecture, "task": r.task, "role": role, "auc": r.task_metric,
                         "low": getattr(r, "task_low", float("nan")), "high": getattr(r, "task_high", float("nan")),
                         "n": getattr(r, "task_n", float("nan")),
                         "ci_method": str(getattr(r, "task_ci_method", "") or "")})
    if rows:
        return pd.DataFrame(rows).drop_duplicates(["architecture", "task", "role"])
    from radlens.report.extra import training_json
    from radlens.io.artifacts import read_json

    tj = training_json(ctx)
    if tj is None:
        return None
    m = read_json(tj)
    for arch, am in m.get("archs", {}).items():
        for task, tm in am.get("tasks", {}).items():
            for k, role in (("tl", "transfer"), ("ft", "finetuned")):
                v = tm.get("val_auc", {}).get(k)
                if v is not None:
                    rows.append({"architecture": arch, "task": task, "role": role, "auc": v, "low": float("nan"),
                                 "high": float("nan"), "n": m.get("n_val", float("nan")), "ci_method": ""})
    return pd.DataFrame(rows) if rows else None


def check_tasks_learned(ctx) -> list[dict]:
    """Checkpoints whose held-out task AUC is not distinguishable from 0.5 (or is below it)."""
    perf = task_performance(ctx)
    if perf is None:
        return []
    below, chance, weak = [], [], []
    meth = ""
    for r in perf.itertuples():
        lo, hi, auc = float(r.low), float(r.high), float(r.auc)
        who = f"{r.architecture}/{_task(r.task)} {r.role} {_f(auc)}"
        if math.isfinite(lo) and math.isfinite(hi):
            meth = "DeLong" if r.ci_method == "delong" else (r.ci_method or "")
            n = f", n = {int(r.n)}" if math.isfinite(float(r.n)) else ""
            if hi < 0.5:
                below.append(f"{who} {_ci(lo, hi)}{n}")
            elif lo <= 0.5:
                chance.append(f"{who} {_ci(lo, hi)}{n}")
        elif auc < WEAK_TASK_AUC:
            weak.append(who)
    out = []
    ci = f"held-out AUC with {meth} 95% CI".replace("  ", " ")
    if below:
        out.append(warning("training", f"classifier below chance (the CI lies under 0.5: it ranks the classes the "
                           f"wrong way round), {len(below)} of {len(perf)} checkpoints, {ci}: " + "; ".join(below),
                           "training"))
    if chance:
        out.append(warning("training", f"task not distinguishable from chance (CI includes 0.5), {len(chance)} of "
                           f"{len(perf)} checkpoints, {ci}: " + "; ".join(chance) + ". CAMs, drift and localization "
                           "of these checkpoints describe models that did not (demonstrably) learn the task",
                           "training"))
    if weak:
        out.append(warning("training", f"validation AUC below {WEAK_TASK_AUC} (no CI available), task barely "
                           f"learned: " + "; ".join(weak), "training"))
    return out


def check_localization(ctx) -> list[dict]:
    """Near-chance or inverted localization: pixel AUC CI covering / below 0.5, near-zero pointing game."""
    out = []
    t = _read(ctx.run_dir / "localization" / "tradeoff.csv")
    if t is not None and len(t) and "score" in t.columns:
        below, chance = [], []
        t = t[t["score"].astype(str) == "auc"]
        for r in t.itertuples():
            item = f"{r.checkpoint} {_f(r.loc_mean)} {_ci(r.loc_low, r.loc_high)}, n = {int(r.loc_n)}"
            if float(r.loc_high) < 0.5:
                below.append(item)
            elif float(r.loc_low) <= 0.5:
                chance.append(item)
        if below:
            out.append(warning("localization", f"maps point away from the ROI (pixel AUC CI below 0.5), {len(below)} "
                               f"of {len(t)} checkpoints, patient-bootstrap 95% CI: " + "; ".join(below),
                               "localization"))
        if chance:
            out.append(warning("localization", f"near-chance localization (pixel AUC CI includes 0.5), {len(chance)} "
                               f"of {len(t)} checkpoints, patient-bootstrap 95% CI: " + "; ".join(chance),
                               "localization"))
    d = ctx.run_dir / "localization"
    low_pg = []
    for p in sorted(d.glob("*.paired.parquet")) if d.exists() else []:
        pt = _read(p)
        if pt is None or "score" not in pt.columns:
            continue
        if "class" in pt.columns:
            pt = pt[pt["class"].astype(str) == "(all)"]
        pg = pt[pt["score"] == "pointing_game"]
        for r in pg.itertuples():
            vals = {getattr(r, "map_set_a", "a"): r.mean_a, getattr(r, "map_set_b", "b"): r.mean_b}
            low = {k: v for k, v in vals.items() if float(v) <= LOW_POINTING}
            if low:
                pair = p.name.split(".")[0]
                low_pg.append(f"{pair} " + ", ".join(f"{k} {_f(v, 3)}" for k, v in low.items()) + f" (n = {int(r.n)})")
    if low_pg:
        out.append(warning("localization", f"pointing game near zero (≤ {LOW_POINTING}: the map's maximum almost "
                           "never falls inside the ROI): " + "; ".join(low_pg), "loc-paired"))
    return out


def check_rankings(ctx) -> list[dict]:
    """Architecture rankings built from fewer than :data:`MIN_RANKED_ARCHS` architectures."""
    t = _read(ctx.run_dir / "cam" / "drift.rankings.parquet")
    if t is None or "architecture" not in t.columns or not len(t):
        return []
    n = t["architecture"].nunique()
    if n >= MIN_RANKED_ARCHS:
        return []
    return [warning("cam-drift", f"architecture rankings and their reversals come from {n} architecture"
                    f"{'s' if n != 1 else ''} ({', '.join(sorted(map(str, t['architecture'].unique())))}): a "
                    "'ranking' is one paired comparison and a reversal is that pair flipping; read the paired "
                    "differences, not the ranks", "cam-rankings")]


def check_lens_v2(ctx) -> list[dict]:
    """Lens v2 outputs of ``compare`` (``common.csv``, ``contrast.csv``, ``alignment.csv``): a table that
    is present but empty; tasks whose specific change does not align with the features that separate
    their labels (``alignment_p`` ≥ 0.05)."""
    out = []
    for arch in ctx.archs:
        d, _, _ = lens_compare_dir(ctx, arch)
        for name in ("common", "contrast", "alignment"):
            t = _read(d / f"{name}.csv")
            if t is None:
                continue
            if not len(t):
                out.append(warning("lens", f"{arch}: {name}.csv is empty", f"lens-{arch}"))
                continue
            if name != "alignment":
                continue
            pcol = next((c for c in ("alignment_q", "alignment_p", "q", "p") if c in t.columns), None)
            if pcol is None or "task" not in t.columns:
                continue
            bad = t[t[pcol].astype(float) >= 0.05]
            if len(bad):
                items = "; ".join(f"{_task(r.task)} {_f(getattr(r, 'alignment', float('nan')))} ({pcol.replace('alignment_', '')} "
                                  f"= {_p(getattr(r, pcol))})" for r in bad.itertuples())
                out.append(warning("lens", f"{arch}: task-specific change not aligned with the features that "
                                   f"separate the task's labels in {len(bad)} of {len(t)} tasks (alignment, "
                                   f"permutation {pcol.replace('alignment_', '')} ≥ 0.05): {items}", f"lens-{arch}"))
    return out


#: every check, in the order the Warnings box lists them
CHECKS: list[Callable] = [check_stages, check_cam_sanity, check_inverted_maps, check_tasks_learned, check_lens_fit, check_enrichment,
                          check_lens_v2, check_localization, check_rankings, check_failures_tables]


def collect_warnings(ctx, checks=None) -> list[dict]:
    """Run every check over the run folder; a check that raises becomes an ``error`` warning."""
    out = []
    for chk in (CHECKS if checks is None else checks):
        try:
            out += chk(ctx)
        except Exception as exc:  # a broken artefact must be visible, not silently skipped
            log.warning("report check %s failed: %s", chk.__name__, exc)
            out.append(warning("report", f"check {chk.__name__} could not run ({type(exc).__name__}: {exc})",
                               "overview", "error"))
    return out
