"""Generate the README's demo section and benchmark table: no number in them is typed by hand.

    python scripts/readme.py DEMO_DIR     # collect DEMO_DIR into figures/, then render README.md
    python scripts/readme.py collect DEMO_DIR
    python scripts/readme.py render       # README.md from figures/demo.json + benchmarks/results/*.json
    python scripts/readme.py check        # exit 1 when README.md or figures/ disagree with figures/demo.json

``collect`` copies the demo's figures (PNG + SVG) into ``figures/`` and writes ``figures/demo.json``:
the run's ``demo.json`` plus ``findings`` (the report's ``findings.json``: verdicts and warnings),
``training`` (cohort and validation summary from ``models/training.json``) and ``figures`` (each
copied figure with its caption and sha256). ``render`` rewrites only the text between the marker
comments ``<!-- BEGIN GENERATED: demo -->`` / ``<!-- END GENERATED: demo -->`` and
``<!-- BEGIN GENERATED: benchmarks -->`` / ``<!-- END GENERATED: benchmarks -->`` in README.md.

Keys read from ``figures/demo.json`` (everything else is ignored):
``quick``, ``seed``, ``seconds.{total,cohort,training,study}``, optional ``cpu_seconds_main_process``,
``cpu_seconds_all_processes``, ``peak_memory_mb``,
``cpus``, ``peak_rss_mb``;
``findings.verdicts[].{analysis,status,text}``, ``findings.warnings[].{analysis,severity,message}``;
``training.{n_cases,n_train,n_val,image_shape}`` and ``training.archs`` (names only);
``figures[].{file,caption,inline,sha256}``.

Only the standard library is used, so the README test is cheap and runs without radlens installed.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIG = ROOT / "figures"
RESULTS = ROOT / "benchmarks" / "results"
NOT_MEASURED = "not measured in this commit"


# --------------------------------------------------------------------------- collect
def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _first_task(tasks: list[str]) -> str | None:
    return next((t for t in tasks if "texture" in t), tasks[0] if tasks else None)


def figure_plan(demo: Path) -> list[dict]:
    """Which run files become which README figures, driven by the architectures and tasks present."""
    plan = [("figures/training_summary.png", "demo_training", True,
             "Task performance (validation AUC, transfer vs fine-tuned) and planted-attribute decodability"),
            ("figures/planted_enrichment.png", "planted_enrichment", True,
             "Planted truth: share of each task's top-10 shifted features in the expected feature classes vs chance"),
            ("figures/cohort_examples.png", "phantom_examples", False,
             "Phantom cohort: example lesions across sizes, ROI outlined, with their planted attributes")]
    archs = sorted(p.name for p in (demo / "lens").glob("*") if (p / "compare").is_dir()) if (demo / "lens").is_dir() else []
    archs += sorted(p.name for p in (demo / "probe").glob("*") if p.is_dir() and p.name not in archs) \
        if (demo / "probe").is_dir() else []
    for i, arch in enumerate(archs):
        first = i == 0
        cmp, lay = f"lens/{arch}/compare", ""
        index = demo / cmp / "layers.json"
        if index.exists():  # layer-wise lens: the deepest layer's tables, plus the across-layer figures
            layers = [str(x) for x in json.loads(index.read_text(encoding="utf-8")).get("layers", [])]
            run = demo / "run.json"
            want = ((json.loads(run.read_text(encoding="utf-8")).get("config") or {}).get("encoders", {})
                    .get(arch, {}).get("layer")) if run.exists() else None
            if layers:  # the main layer, as the report shows it: encoders.<arch>.layer, else the deepest
                name = str(want) if want is not None and str(want) in layers else layers[-1]
                cmp, lay = f"{cmp}/{name}", f", {'block ' + name if name.isdigit() else name}"
            plan += [(f"lens/{arch}/compare/layer_heatmap.png", f"lens_layers_{arch}", first,
                      f"Layer-wise lens, {arch}: emphasis change per layer and feature class (mean z; numbers: "
                      "features with q < 0.05), per task and task-specific"),
                     (f"lens/{arch}/compare/layer_depth.png", f"lens_depth_{arch}", False,
                      f"Layer-wise lens, {arch}: linear CKA pre vs post and held-out lens R² against depth "
                      "(patient-bootstrap 95% CIs)")]
        plan += [(f"{cmp}/heatmap.png", f"lens_heatmap_{arch}", first,
                  f"Radiomic lens, {arch}{lay}: emphasis change (z against the permutation null) of every "
                  "radiomic feature per task"),
                 (f"{cmp}/contrast_heatmap.png", f"lens_contrast_{arch}", first,
                  f"Radiomic lens, {arch}{lay}: task-specific change (each task minus the mean of the others)"),
                 (f"{cmp}/alignment.png", f"lens_alignment_{arch}", False,
                  f"Radiomic lens, {arch}{lay}: task alignment (does each task's specific change point at its "
                  "own radiomic signature; patient-permutation p)"),
                 (f"{cmp}/top_k_bars.png", f"lens_top_features_{arch}", False,
                  f"Radiomic lens, {arch}{lay}: the most changed features per task with bootstrap 95% CIs"),
                 (f"{cmp}/class_totals.png", f"lens_class_totals_{arch}", False,
                  f"Radiomic lens, {arch}{lay}: emphasis change per feature class and task"),
                 (f"probe/{arch}/probe_panel.png", f"probe_panel_{arch}", first,
                  f"Pooling probe, {arch}: probe AUC per pooling vs perturbation footprint (95% CIs)"),
                 (f"probe/{arch}/probe_pre_post.png", f"probe_pre_post_{arch}", False,
                  f"Pooling probe, {arch}: AUC change after fine-tuning per panel cell")]
        overlays = sorted((demo / "cam" / "figures").glob(f"cam_overlays_maps_{arch}_*.png")) \
            if (demo / "cam" / "figures").is_dir() else []
        tasks = [p.stem.replace(f"cam_overlays_maps_{arch}_", "") for p in overlays]
        t = _first_task(tasks)
        if t:
            plan.append((f"cam/figures/cam_overlays_maps_{arch}_{t}.png", f"cam_overlays_{arch}_{t}", first,
                         f"CAM overlays, {arch}, {t.replace('task_', '')} task: transfer-learning (A) vs fine-tuned "
                         "(B) maps, ROI outlined"))
    plan += [("cam/figures/cam_drift_distributions.png", "cam_drift_distributions", False,
              "CAM drift per case between the transfer-learning and fine-tuned maps, per method"),
             ("cam/figures/cam_drift_rankings.png", "cam_drift_rankings", False,
              "Architecture drift rankings per CAM method (crossings = reversals)"),
             ("figures/tradeoff.png", "tradeoff", True,
              "Accuracy vs localization: each arrow goes from the transfer-learning to the fine-tuned checkpoint")]
    return [{"src": s, "file": f"figures/{d}.png", "inline": inline, "caption": c} for s, d, inline, c in plan]


def collect(demo: str | Path, fig_dir: Path = FIG) -> Path:
    """Copy the demo's figures into ``fig_dir`` and write ``fig_dir/demo.json`` (see the module doc)."""
    demo = Path(demo)
    if not (demo / "demo.json").exists():
        raise SystemExit(f"{demo}: no demo.json; run `radlens demo --out {demo}` first")
    if not (demo / "findings.json").exists():
        raise SystemExit(f"{demo}: no findings.json; run `radlens report {demo}` first")
    data = json.loads((demo / "demo.json").read_text(encoding="utf-8"))
    data.setdefault("findings", json.loads((demo / "findings.json").read_text(encoding="utf-8")))
    tj = demo / "models" / "training.json"
    if tj.exists() and "training" not in data:
        m = json.loads(tj.read_text(encoding="utf-8"))
        data["training"] = {k: m.get(k) for k in ("n_cases", "n_train", "n_val", "image_shape")}
        data["training"]["archs"] = sorted(m.get("archs", {}))
    fig_dir.mkdir(parents=True, exist_ok=True)
    for old in list(fig_dir.glob("*.png")) + list(fig_dir.glob("*.svg")):
        old.unlink()  # figures of an older demo must not linger next to the new demo.json
    figs = []
    for f in figure_plan(demo):
        src = demo / f["src"]
        if not src.exists():
            print(f"missing: {src} (that stage did not run; see {demo}/report.html)", file=sys.stderr)
            continue
        dst = fig_dir / Path(f["file"]).name
        shutil.copyfile(src, dst)
        if src.with_suffix(".svg").exists():
            shutil.copyfile(src.with_suffix(".svg"), dst.with_suffix(".svg"))
        figs.append({"file": f["file"], "caption": f["caption"], "inline": f["inline"], "sha256": _sha(dst)})
    shot = demo / "report_screenshot.png"
    if shot.exists():
        shutil.copyfile(shot, fig_dir / "report_screenshot.png")
        figs.append({"file": "figures/report_screenshot.png", "caption": "The report at 1,400 px (top of the page)",
                     "inline": False, "sha256": _sha(fig_dir / "report_screenshot.png")})
    data["figures"] = figs
    out = fig_dir / "demo.json"
    out.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return out


# --------------------------------------------------------------------------- render
def _dur(s) -> str:
    s = float(s)
    return f"{int(s // 60)} min {int(round(s % 60))} s" if s >= 60 else f"{s:.0f} s"


def demo_section(d: dict) -> str:
    """Markdown of the demo's numbers, verdicts, warnings and figures."""
    sec = d.get("seconds", {})
    tr = d.get("training", {})
    flavour = "`radlens demo --quick`" if d.get("quick") else "`radlens demo`"
    lines = []
    shape = tr.get("image_shape")
    size = f", {shape[-1]} px" if isinstance(shape, list) and shape else ""
    archs = ", ".join(tr.get("archs", [])) or "?"
    lines.append(f"Numbers below come from {flavour} (seed {d.get('seed', '?')}; {tr.get('n_cases', '?')} images"
                 f"{size}; encoders: {archs}; train / validation {tr.get('n_train', '?')} / {tr.get('n_val', '?')} "
                 "images), copied from its `demo.json` and report into `figures/demo.json` by "
                 "`python scripts/readme.py DEMO_DIR`.")
    if sec:
        hw = f" on {d['cpus']} CPU cores" if d.get("cpus") else ""
        if d.get("peak_memory_mb"):
            mem = (f"; peak memory {d['peak_memory_mb'] / 1024:.1f} GB (summed over the demo's processes, "
                   "proportional set size)")
        else:
            mem = f"; peak memory {d['peak_rss_mb'] / 1024:.1f} GB" if d.get("peak_rss_mb") else ""
        if d.get("cpu_seconds_all_processes"):
            mem += (f"; CPU time of all its processes {_dur(d['cpu_seconds_all_processes'])} (wall time grows "
                    "when other jobs share the cores)")
        elif d.get("cpu_seconds_main_process"):
            mem += (f"; CPU time of the main process {_dur(d['cpu_seconds_main_process'])} (wall time grows when "
                    "other jobs share the cores)")
        lines.append("")
        lines.append(f"Run time{hw}: **{_dur(sec.get('total', 0))}** (cohort {_dur(sec.get('cohort', 0))}, "
                     f"training {_dur(sec.get('training', 0))}, study {_dur(sec.get('study', 0))}){mem}.")
    f = d.get("findings", {})
    lines += ["", "What came out, one line per analysis, as the report states it:", ""]
    for v in f.get("verdicts", []):
        lines.append(f"- {v.get('text', '')}")
    ws = f.get("warnings", [])
    lines += ["", f"The report's Warnings box lists **{len(ws)}** item{'s' if len(ws) != 1 else ''} for this run"
              + (":" if ws else " (every check passed)."), ""]
    for w in ws:
        sev = "**error** " if w.get("severity") == "error" else ""
        lines.append(f"- {sev}[{w.get('analysis', '')}] {w.get('message', '')}")
    checks = d.get("checks", {})
    if checks:
        names = {"every_ft_learned": "every fine-tuned checkpoint learned its task (validation AUC >= "
                                     f"{d.get('thresholds', {}).get('ft_auc', '?')})",
                 "tl_lower_somewhere": "each architecture's transfer checkpoint is lower on at least one task",
                 "gradcam_ft_localizes": "every fine-tuned Grad-CAM finds the lesion (pointing game >= "
                                         f"{d.get('thresholds', {}).get('pointing_game', '?')}, pixel AUC >= "
                                         f"{d.get('thresholds', {}).get('pixel_auc', '?')})",
                 "ranked_maps_pass_sanity": "every map in a ranking passes the randomisation check"}
        dw = d.get("warnings", [])
        lines += ["", "The demo's own checks against its targets (`demo.json` `checks`; its warnings follow):", ""]
        for k, ok in checks.items():
            lines.append(f"- {'met' if ok else '**NOT MET**'}: {names.get(k, k)}")
        for w in dw:
            lines.append(f"- warning: {w}")
    figs = d.get("figures", [])
    if figs:
        lines += [""]
        for fg in figs:
            if fg.get("inline"):
                lines += [f"![{fg['caption']}]({fg['file']})", f"*{fg['caption']}.*", ""]
        rest = [fg for fg in figs if not fg.get("inline")]
        if rest:
            lines.append("More figures from the same run (PNG; an SVG of the same name sits next to each):")
            lines.append("")
            lines += [f"- [{fg['caption']}]({fg['file']})" for fg in rest]
    return "\n".join(lines).rstrip() + "\n"


def _g(d: dict, path: str):
    for k in path.split("."):
        if not isinstance(d, dict) or k not in d:
            raise KeyError(path)
        d = d[k]
    return d


def _mmm(vals) -> str:
    v = sorted(float(x) for x in vals)
    med = v[len(v) // 2] if len(v) % 2 else 0.5 * (v[len(v) // 2 - 1] + v[len(v) // 2])
    return f"{v[0]:.2f}–{v[-1]:.2f}× (median {med:.2f}×, {len(v)} repeats)" if len(v) > 1 else f"{v[0]:.2f}×"


_NAMES = {"plain": "plain loop", "careful_pool2": "2-process pool, additionalInfo off", "radlens_j1": "radlens --jobs 1",
          "radlens_j2": "radlens --jobs 2"}


def _ratio_name(key: str) -> str:
    a, _, b = key.partition("_over_")
    return f"{_NAMES.get(a, a)} / {_NAMES.get(b, b)}"


def _radiomics_cohorts(r: dict) -> str:
    """The per-cohort schema (``cohorts.<name>.speedup_wall``): every wall-time ratio of medians, named."""
    parts = []
    for name, c in _g(r, "cohorts").items():
        sp = c.get("speedup_wall") or {}
        ratios = ", ".join(f"{_ratio_name(k)} {float(v):.2f}×" for k, v in sp.items())
        cpu = c.get("speedup_cpu") or {}
        if cpu:
            ratios += "; per core (CPU): " + ", ".join(f"{_ratio_name(k)} {float(v):.2f}×" for k, v in cpu.items())
        pf = c.get("peer_fastrad")
        if isinstance(pf, dict) and "fastrad_cpu_over_radlens_j1_cpu" in pf:
            v = pf.get("values", {})
            ratios += (f"; fastrad {pf.get('fastrad_version', '?')} (own venv, 1 thread) / radlens --jobs 1 per core "
                       f"{float(pf['fastrad_cpu_over_radlens_j1_cpu']['median']):.2f}× ({v.get('agree_within_1e-6', '?')}/"
                       f"{v.get('pyradiomics_features', '?')} of fastrad's values within 1e-6 of pyradiomics')")
        pp = c.get("peer_pictologics")
        if isinstance(pp, dict) and "pictologics_cpu_over_radlens_j1_cpu" in pp:
            v = pp.get("values", {})
            ratios += (f"; pictologics {pp.get('pictologics_version', '?')} (own venv, 1 thread) / radlens --jobs 1 "
                       f"per core {float(pp['pictologics_cpu_over_radlens_j1_cpu']['median']):.2f}× "
                       f"({v.get('agree_within_1e-6', '?')}/{v.get('pyradiomics_features', '?')} pyradiomics features "
                       f"equal within 1e-6 to a pictologics feature)")
        same = f"; values equal to {float(c['worst_rel_diff']):.0e} relative" if "worst_rel_diff" in c else ""
        parts.append(f"{name.replace('_', ' ')} ({c.get('n_cases', '?')} cases): {ratios}{same}")
    m = r.get("machine", {})
    when = f" ({str(r.get('date', ''))[:10]}, {m.get('cpus', '?')} CPUs, medians of {r.get('repeats', '?')} repeats)"
    return "; ".join(parts) + when


def _radiomics(r: dict) -> str:
    if "cohorts" in r:
        return _radiomics_cohorts(r)
    per = r.get("ratio_cold_per_repeat") or [_g(r, "ratio_cold_median")]
    return (f"{_mmm(per)} on {r.get('cpus', '?')} CPUs, `--jobs {r.get('jobs', '?')}`, {r.get('n_rois', '?')} ROIs, "
            f"{r.get('identical_values', '?')} values identical; cached re-run {float(_g(r, 'ratio_cached')):.0f}×")


def _radiomics_jobs(r: dict) -> str:
    """``radiomics_bench.py --jobs-only``: --jobs 2 vs --jobs 1 per cohort, start-up vs pyradiomics' CLI."""
    parts = []
    for name, j in _g(r, "jobs").items():
        w, p = _g(j, "jobs1_over_jobs2_wall"), _g(j, "jobs1_over_jobs2_projected")
        load = j.get("load_avg_1min") or []
        parts.append(f"{name.replace('_', ' ')}: --jobs 1 / --jobs 2 wall {float(w['median']):.2f}× (median per round, "
                     f"{float(w['min']):.2f}–{float(w['max']):.2f}×), projected on idle cores "
                     f"{float(p['median']):.2f}×" + (f" (load {float(load[0]):.1f})" if load else ""))
    su = r.get("startup_2_cases") or {}
    if "radlens_over_pyradiomics_cli" in su:
        x = su["radlens_over_pyradiomics_cli"]
        parts.append(f"start-up (whole command, 2 cases): radlens / pyradiomics CLI {float(x['wall_of_mins']):.2f}× wall "
                     f"(of the mins; per round median {float(x['wall_per_round']['median']):.2f}×)")
    m = r.get("machine", {})
    return "; ".join(parts) + f" ({str(r.get('date', ''))[:10]}, {m.get('cpus', '?')} CPUs)"


def _embed(r: dict) -> str:
    parts = []
    if "throughput" in r:
        t = r["throughput"]
        parts.append(f"{float(_g(t, 'ratio_same_batches')):.3f}× same batches, {float(_g(t, 'ratio')):.3f}× from disk "
                     f"({t.get('model', '?')}, {t.get('device', '?')})")
    if "memory" in r:
        parts.append(f"peak memory 10k / 1k images {float(_g(r, 'memory.rss_ratio')):.3f}×")
    if not parts:
        raise KeyError("throughput|memory")
    return "; ".join(parts)


def _lens_layers(r: dict) -> str:
    m = r.get("machine", {})
    cka = _g(r, "cka_bootstrap")
    return (f"fit-pre {float(_g(r, 'fit_pre_s')):.0f} s, refit-post (all layers and tasks) "
            f"{float(_g(r, 'refit_post_all_s')):.0f} s, compare {float(_g(r, 'compare_s')):.0f} s; "
            f"CKA bootstrap ({cka.get('n_boot', '?')} resamples) Gram form vs explicit resamples "
            f"{float(_g(cka, 'speedup_median')):.0f}× (median) ({str(r.get('date', ''))[:10]}, "
            f"{m.get('cpu_count', '?')} CPUs, {m.get('threads', '?')} threads)")


#: one row per benchmark: results file, script, what it measures, target, formatter of the JSON
BENCHMARKS = [
    ("radiomics_bench.json", "radiomics_bench.py", "radlens vs a plain pyradiomics loop on the same ROIs "
     "(values to 1e-9 of pyradiomics')", "≥2×", _radiomics),
    ("radiomics_jobs.json", "radiomics_bench.py --jobs-only", "radlens radiomics --jobs 2 vs --jobs 1 (wall, and "
     "projected on idle cores); start-up of the whole command vs pyradiomics' CLI", "≥1.7× (3D)", _radiomics_jobs),
    ("embed_bench.json", "embed_bench.py", "all three poolings vs bare `model(x)` (same batches / from disk); "
     "peak memory 10k vs 1k images", "≥0.9×; ≤1.2×", _embed),
    ("lens_bench.json", "lens_bench.py", "compare --lens (common / task-specific / alignment) and refit-post, "
     "200-replicate null + 200 bootstrap, 1k×100×768", "seconds", None),
    ("lens_layers_bench.json", "lens_layers_bench.py", "layer-wise lens: 4 layers × 3 tasks × 1k cases × 100 "
     "features, 5 seeds, 200 null + 200 bootstrap", "seconds", _lens_layers),
    ("cam_bench.json", "cam_bench.py", "batched vs per-sample CAMs, batch 16", "≥3×", None),
    ("delong_bench.json", "delong_bench.py", "fast DeLong vs O(n²), 100k samples", "≥100×", None),
]


def bench_row(results: Path, fname: str, script: str, what: str, target: str, fmt) -> str:
    p = results / fname
    if not p.exists():
        res = NOT_MEASURED
    else:
        try:
            r = json.loads(p.read_text(encoding="utf-8"))
            if isinstance(r, dict) and isinstance(r.get("readme"), dict) and "result" in r["readme"]:
                res = str(r["readme"]["result"])
            elif fmt is None:
                res = f"results in `benchmarks/results/{fname}` (no README formatter yet: add one to scripts/readme.py)"
            else:
                res = fmt(r)
        except KeyError as exc:
            res = f"`benchmarks/results/{fname}` lacks key {exc}; update scripts/readme.py"
        except ValueError as exc:
            res = f"`benchmarks/results/{fname}` is not valid JSON ({exc})"
    return f"| `{script}`: {what} | {res} | {target} |"


def bench_section(results: Path = RESULTS) -> str:
    rows = ["| benchmark | result | target |", "|---|---|---|"]
    known = set()
    for fname, script, what, target, fmt in BENCHMARKS:
        rows.append(bench_row(results, fname, script, what, target, fmt))
        known.add(fname)
    for p in sorted(results.glob("*.json")) if results.exists() else []:
        if p.name not in known:
            rows.append(bench_row(results, p.name, p.stem + ".py", "(unregistered)", "–", None))
    return ("Ratios measured in the same process; each row is read from `benchmarks/results/<name>.json` "
            "(written by `python benchmarks/<name>.py --json benchmarks/results/<name>.json`).\n\n"
            + "\n".join(rows) + "\n")


def replace_block(text: str, name: str, body: str) -> str:
    begin = f"<!-- BEGIN GENERATED: {name} (scripts/readme.py; do not edit by hand) -->"
    end = f"<!-- END GENERATED: {name} -->"
    if begin not in text or end not in text:
        raise SystemExit(f"README.md lacks the markers of the {name!r} block:\n{begin}\n{end}")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{begin}\n{body}{end}{tail}"


def render(readme_text: str, demo: dict, results: Path = RESULTS) -> str:
    text = replace_block(readme_text, "demo", demo_section(demo))
    return replace_block(text, "benchmarks", bench_section(results))


def check(root: Path = ROOT) -> list[str]:
    """Disagreements between README.md, figures/ and figures/demo.json (empty list: all agree)."""
    problems = []
    demo = json.loads((root / "figures" / "demo.json").read_text(encoding="utf-8"))
    readme = (root / "README.md").read_text(encoding="utf-8")
    if render(readme, demo, root / "benchmarks" / "results") != readme:
        problems.append("README.md differs from what figures/demo.json and benchmarks/results/ generate; run "
                        "`python scripts/readme.py render`")
    for fg in demo.get("figures", []):
        p = root / fg["file"]
        if not p.exists():
            problems.append(f"{fg['file']} listed in figures/demo.json is missing")
        elif fg.get("sha256") and _sha(p) != fg["sha256"]:
            problems.append(f"{fg['file']} is not the file collected into figures/demo.json (sha256 differs)")
    listed = {Path(fg["file"]).name for fg in demo.get("figures", [])}
    for p in sorted((root / "figures").glob("*.png")):
        if p.name not in listed:
            problems.append(f"figures/{p.name} is not from the demo run in figures/demo.json")
    return problems


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    cmd = argv[0]
    if cmd == "collect":
        print(collect(argv[1]))
        return 0
    if cmd == "check":
        probs = check()
        for p in probs:
            print(p, file=sys.stderr)
        return 1 if probs else 0
    if cmd != "render":  # a demo folder: collect, then render
        print(collect(cmd))
    demo = json.loads((FIG / "demo.json").read_text(encoding="utf-8"))
    readme = ROOT / "README.md"
    readme.write_text(render(readme.read_text(encoding="utf-8"), demo), encoding="utf-8")
    print(readme)
    return 0


if __name__ == "__main__":
    sys.exit(main())
