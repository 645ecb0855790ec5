"""The HTML report: self-contained, degrades to "not run: <reason>" sections, embeds figures."""
import base64
import re

import numpy as np
import pandas as pd
import pytest

from radlens.errors import InputError
from radlens.io.artifacts import write_json, write_table
from radlens.report import report
from radlens.report import html as H


def _run_folder(tmp_path, stages):
    run = tmp_path / "run"
    (run / "stages").mkdir(parents=True)
    man = tmp_path / "manifest.csv"
    pd.DataFrame({"case_id": ["a", "b", "c"], "image": ["a.nii.gz"] * 3, "patient_id": ["p1", "p1", "p2"],
                  "split": ["train", "train", "test"], "task_x": [0, 1, np.nan]}).to_csv(man, index=False)
    cfg = {"encoders": {"cnn": {"pre": str(tmp_path / "pre.yaml"),
                                "tasks": {"task_x": {"finetuned": str(tmp_path / "ft.yaml"), "label": "task_x"}}}},
           "lens": {"enabled": True, "expected_classes": {"task_x": ["glcm"]}},
           "cam_drift": {"enabled": False}, "pooling_probe": {"enabled": True}, "localization": {"enabled": True}}
    for s in stages:
        write_json(run / "stages" / f"{s['name'].replace('/', '__')}.json", s)
    write_json(run / "run.json", {"study": "unit <study>", "config": cfg, "versions": {"radlens": "0.1.0"},
                                  "inputs": {"manifest": {"path": str(man), "sha256": "ab" * 32}},
                                  "seconds": 1.5, "stages": stages})
    return run


def test_report_degrades_gracefully(tmp_path):
    stages = [{"name": "radiomics", "kind": "radiomics", "status": "failed", "seconds": 0.1,
               "error": "ConfigError: radiomics params <bad>"},
              {"name": "fit-pre/cnn", "kind": "fit-pre", "status": "skipped", "seconds": 0,
               "error": "not run: upstream radiomics failed"},
              {"name": "pooling-probe/cnn", "kind": "pooling-probe", "status": "failed", "seconds": 0,
               "error": "ImportError: no module named radlens.probe"}]
    run = _run_folder(tmp_path, stages)
    out = report(run)
    assert out == run / "report.html"
    page = out.read_text(encoding="utf-8")
    # every section is there
    for sid in ("overview", "cohort", "training", "lens", "planted", "cam", "probe", "localization", "provenance"):
        assert f'id="{sid}"' in page
    # reasons are specific
    assert "not run:</b> fit-pre/cnn skipped: not run: upstream radiomics failed" in page
    assert "disabled in the study config" in page  # cam_drift.enabled: false
    assert "ImportError: no module named radlens.probe" in page
    # HTML-escaped user text, and nothing fetched from elsewhere
    assert "unit &lt;study&gt;" in page and "<study>" not in page
    assert "&lt;bad&gt;" in page
    assert not re.search(r"(src|href)=\"(https?:)?//", page)
    # cohort summary numbers: 3 cases, 2 patients, 1 positive / 1 negative / 1 unlabelled
    assert re.search(r"<th>patients</th><td class=\"t\">2</td>", page)
    assert "<td class=\"t\">task_x</td><td>1</td><td>1</td><td>1</td>" in page


def test_report_embeds_figures_as_base64(tmp_path):
    stages = [{"name": "compare/cnn", "kind": "compare", "status": "ok", "seconds": 1.0, "error": None}]
    run = _run_folder(tmp_path, stages)
    d = run / "lens" / "cnn" / "compare"
    d.mkdir(parents=True)
    write_json(d / "compare.json", {"tasks": ["task_x"]})
    from radlens.viz.style import save_figure, use_agg

    plt = use_agg()
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    png = save_figure(fig, d / "heatmap")[0]
    write_table(pd.DataFrame({"task": ["task_x"], "rank": [1], "feature": ["original_glcm_Contrast"],
                              "feature_class": ["glcm"], "shift": [0.5], "shift_ci_low": [0.1],
                              "shift_ci_high": [0.9], "z": [3.0], "q": [0.01]}), d / "top_k.csv")
    page = report(run, out=tmp_path / "r.html").read_text(encoding="utf-8")
    b64 = base64.b64encode(png.read_bytes()).decode()
    assert f"data:image/png;base64,{b64}" in page
    assert "original_glcm_Contrast" in page
    # the missing companion figure is reported, not fatal
    assert "figure class_totals.png missing" in page
    assert "read with care" not in page  # no global summary, no caution
    # a lens that explains little of the pre embedding is flagged with its number
    write_table(pd.DataFrame({"task": ["task_x", "task_y"], "r2_pre_heldout": [0.031, 0.031],
                              "r2_post_heldout": [0.05, 0.2]}), d / "global_summary.csv")
    page = report(run, out=tmp_path / "r.html").read_text(encoding="utf-8")
    assert "read with care:</b> the lens explains only 3% of the cnn pre embedding" in page
    write_table(pd.DataFrame({"task": ["task_x"], "r2_pre_heldout": [0.55], "r2_post_heldout": [0.5]}),
                d / "global_summary.csv")
    assert "read with care" not in report(run, out=tmp_path / "r.html").read_text(encoding="utf-8")


def test_report_of_non_run_folder_errors(tmp_path):
    with pytest.raises(InputError, match="not a radlens run folder"):
        report(tmp_path)


def test_html_helpers():
    assert H.fmt(0.00001234) == "1.23e-05"
    assert H.fmt(float("nan")) == "–"
    assert H.fmt(np.int64(7)) == "7"
    assert H.fmt(0.5) == "0.500"
    t = H.table(pd.DataFrame({"a": ["x<y"], "b": [1.23456]}))
    assert "x&lt;y" in t and "<td>1.235</td>" in t
    long = H.table(pd.DataFrame({"a": range(50)}), max_rows=10)
    assert "40 more rows" in long


def test_save_figure_appends_extensions_to_dotted_stems(tmp_path):
    from radlens.viz.style import save_figure, use_agg

    plt = use_agg()
    fig, _ = plt.subplots()
    got = save_figure(fig, tmp_path / "loc.v2_scores")
    assert [p.name for p in got] == ["loc.v2_scores.png", "loc.v2_scores.svg"] and all(p.exists() for p in got)
    fig, _ = plt.subplots()
    assert [p.name for p in save_figure(fig, tmp_path / "fig.png")] == ["fig.png", "fig.svg"]


def _sanity_table():
    return pd.DataFrame({"architecture": ["vit", "vit", "cnn", "cnn"], "task": ["task_x"] * 4,
                         "method": ["layercam", "layercam", "gradcam++", "layercam"], "model": ["a", "b", "a", "b"],
                         "n": [8, 8, 8, 8], "spearman_median": [0.31, 0.72, 0.10, -0.20], "threshold": [0.5] * 4,
                         "passed": [True, False, True, True]})


def test_failed_sanity_check_reaches_the_warnings_box(tmp_path):
    stages = [{"name": "cam-drift", "kind": "cam-drift", "status": "ok", "seconds": 1.0, "error": None}]
    run = _run_folder(tmp_path, stages)
    (run / "cam").mkdir()
    write_table(_sanity_table(), run / "cam" / "drift.sanity.parquet")
    page = report(run).read_text(encoding="utf-8")
    box = page[page.index('id="warnings"'):]
    box = box[:box.index("</div>")]
    # the failing row (vit layercam, model B, 0.72) is listed, with its number, and links to the sanity table
    assert "CAM sanity check FAILED: vit/task_x LayerCAM" in box
    assert "B (fine-tuned) 0.72 ≥ 0.50" in box
    assert '<a href="#cam-sanity">' in box
    # passing rows are not warnings
    assert "cnn/task_x" not in box and "A (transfer) 0.31" not in box
    # the header says so although no stage failed
    head = page[:page.index('id="findings"')]
    assert "none failed" in head and "needs attention" in head and "1 warning" in head
    # the same warning is in findings.json (what the README generator reads)
    import json

    found = json.loads((run / "findings.json").read_text())
    assert [w["section"] for w in found["warnings"]] == ["cam-sanity"]


def test_anti_correlated_sanity_pass_is_flagged(tmp_path):
    from radlens.report.findings import check_cam_sanity
    from radlens.report.sections import Context

    run = _run_folder(tmp_path, [])
    (run / "cam").mkdir()
    t = _sanity_table()
    t.loc[0, "spearman_median"] = -0.72  # "passed" (< 0.5) but the maps are the randomised model's, inverted
    write_table(t, run / "cam" / "drift.sanity.parquet")
    msgs = [w["message"] for w in check_cam_sanity(Context.load(run))]
    assert len(msgs) == 2 and "ANTI-correlated" in msgs[1] and "vit/x LayerCAM A (transfer) -0.72" in msgs[1]
    assert "cnn" not in msgs[1]  # -0.20 is not strong


def test_no_warnings_says_so_and_header_is_green(tmp_path):
    stages = [{"name": "cam-drift", "kind": "cam-drift", "status": "ok", "seconds": 1.0, "error": None}]
    run = _run_folder(tmp_path, stages)
    (run / "cam").mkdir()
    t = _sanity_table()
    t["passed"] = True
    write_table(t, run / "cam" / "drift.sanity.parquet")
    page = report(run).read_text(encoding="utf-8")
    assert "all checks passed" in page and "<b>Warnings:</b> none" in page


def test_checks_unlearned_tasks_chance_localization_and_small_rankings(tmp_path):
    from radlens.report.findings import collect_warnings
    from radlens.report.sections import Context

    run = _run_folder(tmp_path, [])
    (run / "localization").mkdir()
    (run / "cam").mkdir()
    write_table(pd.DataFrame({
        "checkpoint": ["cnn/task_x/transfer", "cnn/task_x/finetuned"], "score": ["auc", "auc"],
        "loc_mean": [0.40, 0.70], "loc_low": [0.30, 0.45], "loc_high": [0.48, 0.90], "loc_n": [20, 20],
        "task_metric": [0.20, 0.90], "task_low": [0.05, 0.80], "task_high": [0.45, 0.99], "task_n": [30, 30],
        "task_ci_method": ["delong", "delong"], "architecture": ["cnn", "cnn"], "task": ["task_x", "task_x"]}),
        run / "localization" / "tradeoff.csv")
    write_table(pd.DataFrame({"task": ["task_x"] * 2, "method": ["layercam"] * 2, "metric": ["pearson"] * 2,
                              "architecture": ["cnn", "vit"], "value": [0.1, 0.2], "drift_score": [0.1, 0.2],
                              "rank": [2.0, 1.0]}), run / "cam" / "drift.rankings.parquet")
    write_table(pd.DataFrame({"architecture": ["vit", "cnn"], "task": ["task_x"] * 2, "method": ["layercam"] * 2,
                              "metric": ["spearman"] * 2, "median": [-0.80, 0.40], "median_ci_low": [-0.83, 0.30],
                              "median_ci_high": [-0.78, 0.45]}), run / "cam" / "drift.summary.parquet")
    ws = collect_warnings(Context.load(run))
    msgs = {w["section"]: w["message"] for w in ws}
    # B is the negative image of A for vit (rho -0.80, CI below 0); cnn's 0.40 is ordinary drift
    assert "inverted maps" in msgs["cam-summary"] and "vit/x LayerCAM -0.80 [-0.83, -0.78]" in msgs["cam-summary"]
    assert "cnn/x" not in msgs["cam-summary"]
    # transfer AUC 0.20 [0.05, 0.45]: CI under 0.5 -> below chance; fine-tuned [0.80, 0.99]: learned, not listed
    assert "below chance" in msgs["training"] and "cnn/x transfer 0.20 [0.05, 0.45]" in msgs["training"]
    assert "finetuned" not in msgs["training"]
    loc = [w["message"] for w in ws if w["section"] == "localization"]
    assert any("point away" in m and "cnn/task_x/transfer 0.40 [0.30, 0.48]" in m for m in loc)
    assert any("includes 0.5" in m and "cnn/task_x/finetuned 0.70 [0.45, 0.90]" in m for m in loc)
    assert "from 2 architectures (cnn, vit)" in msgs["cam-rankings"]


def test_a_broken_check_is_an_error_not_silence(tmp_path):
    from radlens.report.findings import collect_warnings
    from radlens.report.sections import Context

    def check_boom(ctx):
        raise ValueError("bad column")

    ws = collect_warnings(Context.load(_run_folder(tmp_path, [])), checks=[check_boom])
    assert ws == [{"analysis": "report", "severity": "error", "section": "overview",
                   "message": "check check_boom could not run (ValueError: bad column)"}]


def test_truncated_table_names_its_file_and_figures_link_png_svg(tmp_path):
    t = H.table(pd.DataFrame({"a": range(50)}), max_rows=10, source=tmp_path / "x.parquet")
    assert "40 more rows in <code>" in t and "x.parquet</code>" in t
    from radlens.viz.style import save_figure, use_agg

    plt = use_agg()
    fig, _ = plt.subplots()
    png = save_figure(fig, tmp_path / "figs" / "f")[0]
    tok = H.LINK_BASE.set(tmp_path)
    try:
        html = H.image(png, "a caption")
    finally:
        H.LINK_BASE.reset(tok)
    assert '<a href="figs/f.png">PNG</a>' in html and '<a href="figs/f.svg">SVG</a>' in html


def test_lens_v2_tables_feed_verdict_and_alignment_warning(tmp_path):
    from radlens.report.findings import collect_warnings
    from radlens.report.sections import Context
    from radlens.report.verdicts import collect_verdicts

    run = _run_folder(tmp_path, [])
    d = run / "lens" / "cnn" / "compare"
    d.mkdir(parents=True)
    write_table(pd.DataFrame({"feature": ["original_glcm_Contrast", "original_firstorder_Mean", "original_shape2D_X"],
                              "feature_class": ["glcm", "firstorder", "shape2D"], "common_shift": [1.0, 0.5, 0.1],
                              "common_z": [4.0, 3.0, 0.2], "common_p": [0.001, 0.004, 0.8],
                              "common_q": [0.003, 0.01, 0.8], "common_rank": [1, 2, 3]}), d / "common.csv")
    write_table(pd.DataFrame({"task": ["task_x", "task_y"], "alignment": [0.61, 0.05],
                              "alignment_p": [0.002, 0.41], "n_features": [3, 3]}), d / "alignment.csv")
    ctx = Context.load(run)
    text = " ".join(v["text"] for v in collect_verdicts(ctx))
    assert "2 of 3 features changed by every fine-tuning" in text and "glcm_Contrast" in text
    assert "x 0.61 (p = 0.002), y 0.05 (p = 0.410)" in text
    ws = [w for w in collect_warnings(ctx) if w["section"] == "lens-cnn"]
    assert len(ws) == 1 and "in 1 of 2 tasks" in ws[0]["message"] and "y 0.05 (p = 0.410)" in ws[0]["message"]


def test_layerwise_lens_feeds_verdicts_and_checks_at_its_main_layer(tmp_path):
    """A layer-wise compare folder: verdict and weak-fit check read the main (deepest) layer, the R² over
    depth and CKA come from layer_summary.csv, and the alignment of every layer is stated."""
    from radlens.report.findings import collect_warnings
    from radlens.report.sections import Context
    from radlens.report.verdicts import collect_verdicts

    run = _run_folder(tmp_path, [])
    d = run / "lens" / "cnn" / "compare"
    (d / "2").mkdir(parents=True)
    (d / "5").mkdir(parents=True)
    write_json(d / "layers.json", {"layers": ["2", "5"]})
    write_table(pd.DataFrame({"layer": ["2", "5"], "task": ["task_x", "task_x"], "cka": [0.99, 0.4],
                              "cka_ci_low": [0.98, 0.3], "cka_ci_high": [1.0, 0.5],
                              "r2_pre_heldout": [0.8, 0.2]}), d / "layer_summary.csv")
    write_table(pd.DataFrame({"task": ["task_x"], "r2_pre_heldout": [0.2], "n_significant": [7]}),
                d / "5" / "global_summary.csv")
    for lay, a, p in (("2", 0.1, 0.6), ("5", 0.7, 0.001)):
        write_table(pd.DataFrame({"task": ["task_x"], "alignment": [a], "alignment_p": [p], "n_features": [9]}),
                    d / lay / "alignment.csv")
    ctx = Context.load(run)
    text = " ".join(v["text"] for v in collect_verdicts(ctx))
    assert "cnn, block 5 (main layer of block 2, block 5): explains 20.0%" in text
    assert "held-out R² over depth 80% → 20%" in text and "x 0.40 [0.30, 0.50]" in text
    assert "block 2: x 0.10 (p = 0.600); block 5: x 0.70 (p = 0.001)" in text
    assert any("weak lens fit for cnn (block 5)" in w["message"] for w in collect_warnings(ctx))
