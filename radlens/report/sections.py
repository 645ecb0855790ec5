"""Sections of the HTML report, each built from the artefacts of a run folder.

Every builder returns HTML; a builder that raises becomes a "failed" note in its section so one
broken artefact never costs the whole report.
"""
from __future__ import annotations

import json
import logging
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from radlens.report import html as H

log = logging.getLogger(__name__)


@dataclass
class Context:
    """What every section reads: the run folder, ``run.json`` and the stage records."""

    run_dir: Path
    run: dict
    stages: dict[str, dict]
    fig_dir: Path
    _manifest: Any = field(default=None, repr=False)

    @classmethod
    def load(cls, run_dir: Path) -> "Context":
        from radlens.io.artifacts import read_json

        stages = {}
        for p in sorted((run_dir / "stages").glob("*.json")):
            rec = read_json(p)
            stages[rec.get("name", p.stem)] = rec
        # keep stage order of run.json when present
        run = read_json(run_dir / "run.json")
        order = [s["name"] for s in run.get("stages", [])]
        stages = {k: stages[k] for k in order if k in stages} | {k: v for k, v in stages.items() if k not in order}
        fig_dir = run_dir / "figures"
        fig_dir.mkdir(exist_ok=True)
        return cls(run_dir, run, stages, fig_dir)

    @property
    def config(self) -> dict:
        return self.run.get("config", {})

    @property
    def archs(self) -> list[str]:
        return list(self.config.get("encoders", {}))

    def tasks(self, arch: str) -> list[str]:
        return list(self.config.get("encoders", {}).get(arch, {}).get("tasks", {}))

    def manifest_df(self):
        if self._manifest is None:
            from radlens.io.artifacts import read_table

            self._manifest = read_table(self.run["inputs"]["manifest"]["path"])
        return self._manifest

    def why_not(self, prefix: str, section_key: str | None = None) -> str:
        """Reason a stage (or family of stages) produced nothing."""
        recs = [r for n, r in self.stages.items() if n == prefix or n.startswith(prefix + "/")]
        if section_key and not self.config.get(section_key, {}).get("enabled", True):
            return f"disabled in the study config ({section_key}.enabled: false)"
        if not recs:
            return f"no {prefix} stage in this run (check the study config)"
        bad = [r for r in recs if r.get("status") in ("failed", "skipped")]
        if bad:
            return "; ".join(f"{r['name']} {r['status']}: {r.get('error') or ''}".strip() for r in bad)
        return "its artefacts are missing from the run folder"


def _safe(fn, ctx: Context) -> str:
    try:
        return fn(ctx)
    except Exception as exc:  # a broken artefact must not cost the whole report
        log.warning("report section %s failed: %s", fn.__name__, exc)
        log.debug("%s", traceback.format_exc())
        return H.failed(f"could not build this section ({type(exc).__name__}: {exc})")


def build_sections(ctx: Context) -> list[tuple[str, str, str]]:
    """(id, title, html) of every section, in page order."""
    from radlens.report import extra

    return [
        ("overview", "Overview", _safe(overview, ctx)),
        ("cohort", "Cohort", _safe(cohort, ctx)),
        ("training", "Encoders", _safe(extra.training, ctx)),
        ("lens", "Radiomic lens: what did fine-tuning make the encoder sensitive to?", _safe(lens, ctx)),
        ("planted", "Planted-truth / expected-class checks", _safe(extra.planted, ctx)),
        ("cam", "CAM drift: transfer learning vs fine-tuning", _safe(extra.cam, ctx)),
        ("probe", "Pooling probe: does small-lesion signal survive pooling?", _safe(extra.probe, ctx)),
        ("localization", "Localization scores and the accuracy–interpretability trade-off", _safe(extra.localization, ctx)),
        ("stages", "Stages: status and timing", _safe(stages, ctx)),
        ("provenance", "Config, versions and input hashes", _safe(provenance, ctx)),
    ]


# --------------------------------------------------------------------------- overview
def overview(ctx: Context) -> str:
    intro = ("<p>radlens asks <b>what fine-tuning changed inside an encoder</b>: the radiomic lens maps "
             "radiomic descriptors of each ROI to the pre-fine-tuning embedding and measures which "
             "descriptors the fine-tuned embeddings became more sensitive to; CAM drift compares where "
             "the transfer-learning and fine-tuned classifiers look; the pooling probe tests whether "
             "small-lesion signal survives CLS/global pooling; localization scores compare the maps "
             "with the ROIs. The findings above summarise each analysis; the per-stage status and "
             "timing table is in <a href=\"#stages\">Stages</a>.</p>")
    counts: dict[str, int] = {}
    for r in ctx.stages.values():
        counts[r.get("status", "?")] = counts.get(r.get("status", "?"), 0) + 1
    summary = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
    return intro + f"<p>Stages: {H.esc(summary)} · total {H.fmt(ctx.run.get('seconds', 0), 1)} s.</p>"


def stages(ctx: Context) -> str:
    import pandas as pd

    rows = [{"stage": r["name"], "status": r.get("status", "?"), "wall s": r.get("seconds", 0.0),
             "CPU s": r.get("cpu_seconds", float("nan")), "error": (r.get("error") or "")[:240]}
            for r in ctx.stages.values()]
    df = pd.DataFrame(rows)
    return ("<p class='muted'>wall s: elapsed time; CPU s: CPU time of the main process (workers not "
            "included); failed-stage tracebacks are in <code>logs/</code>.</p>"
            + H.table(df, max_rows=200, source=ctx.run_dir / "stages"))


# --------------------------------------------------------------------------- cohort
def cohort(ctx: Context) -> str:
    import numpy as np
    import pandas as pd

    df = ctx.manifest_df()
    n = len(df)
    items = {"cases (ROIs)": n, "manifest": ctx.run["inputs"]["manifest"]["path"]}
    if "patient_id" in df.columns:
        items["patients"] = df["patient_id"].nunique()
    if "split" in df.columns:
        items["split"] = ", ".join(f"{k}: {v}" for k, v in df["split"].astype(str).value_counts().items())
    if "has_lesion" in df.columns:
        items["lesion-free (control ROI)"] = int((pd.to_numeric(df["has_lesion"], errors="coerce") == 0).sum())
    body = H.kv_table(items)
    rows = []
    for arch in ctx.archs:
        for t, tc in ctx.config["encoders"][arch]["tasks"].items():
            col = tc.get("label") or t
            if col in df.columns and col not in [r["task"] for r in rows]:
                y = pd.to_numeric(df[col], errors="coerce")
                rows.append({"task": col, "positive": int((y == 1).sum()), "negative": int((y == 0).sum()),
                             "unlabelled": int(y.isna().sum())})
    if rows:
        body += "<h3>Task labels</h3>" + H.table(pd.DataFrame(rows), max_rows=500)
    attrs = [c for c in ("lesion_radius", "lesion_area_frac", "lesion_intensity", "texture_corr_len", "texture_amp",
                         "elongation") if c in df.columns]
    if attrs:
        d = df[attrs].apply(pd.to_numeric, errors="coerce")
        desc = pd.DataFrame({"attribute": attrs, "median": d.median().to_numpy(), "min": d.min().to_numpy(),
                             "max": d.max().to_numpy(), "n": d.notna().sum().to_numpy()})
        body += ("<h3>Planted lesion attributes</h3><p class='muted'>Each task is tied to one attribute "
                 "(texture: correlation length; intensity: mean lesion intensity; shape: elongation); the "
                 "others are drawn independently.</p>" + H.table(desc))
    try:
        fig = _cohort_figure(ctx)
    except Exception as exc:  # the tables above are still worth showing
        body += H.failed(f"example-case figure: {type(exc).__name__}: {exc}")
    else:
        if fig:
            body += H.figs(H.image(fig, "Example cases spread over the lesion sizes (smallest first, then a "
                                        "lesion-free control), ROI outlined", width=900))
    del np
    return body


def _cohort_figure(ctx: Context) -> Path | None:
    out = ctx.fig_dir / "cohort_examples"  # redrawn each time (8 images): never a stale figure
    mpath = Path(ctx.run["inputs"]["manifest"]["path"])
    try:
        from radlens.viz.synth import plot_phantom_examples

        if mpath.suffix == ".csv" and "lesion_radius" in ctx.manifest_df().columns:
            plot_phantom_examples(mpath, out)
            return out.with_suffix(".png")
    except Exception as exc:  # fall back to a plain grid
        log.info("phantom example figure unavailable (%s); drawing a plain grid", exc)
    from radlens.report.figures import case_grid

    return case_grid(ctx.run["inputs"]["manifest"]["path"], out)


# --------------------------------------------------------------------------- lens
#: below this held-out R² of the pre lens the report flags the lens section
LOW_LENS_R2 = 0.1


def lens(ctx: Context) -> str:
    from radlens.io.artifacts import read_table

    if not ctx.config.get("lens", {}).get("enabled", True):
        return H.not_run(ctx.why_not("compare", "lens"))
    body = ("<p>For each architecture a <b>radiomic lens</b> (two-layer MLP: radiomic features → pre "
            "embedding) is fitted on the pre checkpoint; its first layer is frozen and only the linear head is "
            "re-estimated on each fine-tuned checkpoint's embeddings. <b>emphasis</b> is how much more (or less) "
            "sensitive to each radiomic feature the fine-tuned embedding became, after a global rescale and an "
            "orthogonal re-coding of the embedding are taken out (they are reported per task below), with a "
            "permutation null (z, q) and a bootstrap CI. Across tasks the change splits into what <b>every</b> "
            "fine-tuning changed (common) and what <b>each task</b> changed beyond the others (task-specific), "
            "and <b>alignment</b> asks whether a task's specific change points at the radiomic features that "
            "separate that task's labels.</p>")
    for arch in ctx.archs:
        d = ctx.run_dir / "lens" / arch / "compare"
        body += f'<h3 id="lens-{H.esc(arch)}">{H.esc(arch)}</h3>'
        if not (d / "compare.json").exists():
            body += H.not_run(ctx.why_not(f"compare/{arch}") if f"compare/{arch}" in ctx.stages
                              else ctx.why_not(f"fit-pre/{arch}"))
            continue
        if (d / "global_summary.csv").exists():
            gs = read_table(d / "global_summary.csv")
            body += "<h4>Global summary per task</h4>" + H.table(gs, source=d / "global_summary.csv")
            r2 = gs["r2_pre_heldout"].dropna() if "r2_pre_heldout" in gs.columns else []
            if len(r2) and float(r2.max()) < LOW_LENS_R2:
                body += H.caution(
                    f"the lens explains only {100 * float(r2.max()):.0f}% of the {arch} pre embedding on held-out "
                    f"cases (r2_pre_heldout < {LOW_LENS_R2}); the shifts describe that small radiomic part of the "
                    "embedding only. An earlier, more local layer (encoders.<arch>.layer in the study config) or "
                    "ROI pooling usually raises it.")
        body += _lens_v2(ctx, arch, d)
        body += H.figs(H.image(d / "heatmap.png", f"{arch}: emphasis change (z) of every radiomic feature per task"),
                       H.image(d / "class_totals.png", f"{arch}: emphasis-change totals per feature class") +
                       H.image(d / "rank_correlation.png", f"{arch}: rank agreement of the emphasis changes between "
                               "tasks", width=420))
        body += H.image(d / "top_k_bars.png", f"{arch}: top features per task (emphasis change) with bootstrap CIs")
        if (d / "top_k.csv").exists():
            top = read_table(d / "top_k.csv")
            k = int(ctx.config.get("lens", {}).get("top_k", 10))
            body += f"<h4>Top {k} features per task (emphasis change with 95% CI)</h4>" + H.table(
                top.groupby("task").head(k), max_rows=10 * k)
    return body


def _lens_v2(ctx: Context, arch: str, d) -> str:
    """Global rescale / re-coding per task, common vs task-specific change, task alignment."""
    from radlens.io.artifacts import read_json, read_table

    body = ""
    if (d / "global_summary.csv").exists():
        gs = read_table(d / "global_summary.csv")
        if "global_change" in gs.columns:
            body += "<h4>What happened to each fine-tuned embedding as a whole</h4><ul>" + "".join(
                f"<li><b>{H.esc(r.task)}</b>: {H.esc(r.global_change)}</li>" for r in gs.itertuples()) + "</ul>"
    if not (d / "decomposition.json").exists():
        return body + H.not_run("no cross-task decomposition in this run (compare without --lens)")
    dec = read_json(d / "decomposition.json")
    mirror = (" With two tasks the two task-specific changes are mirror images (identical columns): they show "
              "where the tasks differ, not which one moved." if dec.get("mirror") else "")
    body += ("<h4>Common vs task-specific change</h4><p>Common: the mean change over the "
             f"{dec.get('n_tasks')} tasks ({dec.get('common', {}).get('n_significant')} features with q &lt; 0.05). "
             "Task-specific: each task's change minus the mean of the others'." + mirror + "</p>")
    if dec.get("caution"):
        body += H.caution(dec["caution"])
    body += H.figs(H.image(d / "common_heatmap.png", f"{arch}: what every fine-tuning changed (z; dots q < 0.05)",
                           width=360),
                   H.image(d / "contrast_heatmap.png", f"{arch}: what each task changed beyond the others "
                           "(z; dots q < 0.05)"))
    if (d / "alignment.csv").exists():
        al = read_table(d / "alignment.csv")
        body += ("<h4>Task alignment</h4><p>Spearman ρ over features between each feature's association with "
                 "the task's labels (|AUC − 0.5|) and the task's specific change; p: labels permuted over whole "
                 "patients. ρ &gt; 0 with small p: fine-tuning moved the encoder toward the task's radiomic "
                 "signature.</p>" + H.table(al))
        body += H.figs(H.image(d / "alignment.png", f"{arch}: task alignment"))
    return body


# --------------------------------------------------------------------------- provenance
def provenance(ctx: Context) -> str:
    import pandas as pd

    cfg_path = ctx.run_dir / "study.yaml"
    body = "<h3>Study config (as run, paths resolved)</h3>"
    body += f"<pre>{H.esc(cfg_path.read_text(encoding='utf-8') if cfg_path.exists() else json.dumps(ctx.config, indent=2))}</pre>"
    body += "<h3>Versions</h3>" + H.kv_table(ctx.run.get("versions", {}))
    inp = ctx.run.get("inputs", {})
    rows = [{"input": k, "path": v.get("path", ""), "sha256": v.get("sha256", "")[:16] + "…"} for k, v in inp.items()]
    body += ("<h3>Input hashes</h3><p class='muted'>sha256 of the file (manifest) or of the spec YAML and "
             "every checkpoint it references; stage keys in <code>stages/</code> also hash every image.</p>"
             + H.table(pd.DataFrame(rows), max_rows=100, source=ctx.run_dir / "run.json"))
    return body
