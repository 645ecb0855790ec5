"""Issue #12, the statistical and table kinds: AUC exact at its bounds and inside its CI, figures
robust to zero-width intervals, undefined statistics that name their cause, probe-panel CIs that
contain their estimate (with coverage), radiomics tables as users have them, and the new-user items
(README paths, HF folder messages, advice naming options the command has)."""
from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from radlens.cli import build_parser, main
from radlens.errors import ConfigError, InputError
from radlens.stats.delong import auc, auc_weighted, delong_auc_test, delong_components, undefined_auc_reason

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- kind 4: AUC at its bounds
def test_bug06_auc_is_exact_at_one_and_zero_for_every_class_size():
    """Perfect separation is exactly 1.0 (and perfect inversion exactly 0.0) for 1..79 x 1..79
    positives x negatives; the old form gave 1.0000000000000002 for 210 of these."""
    assert auc([0] * 3 + [1] * 7, list(range(10))) == 1.0
    for m in range(1, 80):
        for n in range(1, 80, 3):
            y = np.r_[np.zeros(n, int), np.ones(m, int)]
            s = np.arange(m + n, dtype=float)
            assert auc(y, s) == 1.0 and auc(y, -s) == 0.0, (m, n)
    y = np.r_[np.zeros(20, int), np.ones(30, int)]
    s = np.arange(50.0)
    a, _, _ = delong_components(y, np.vstack([s, -s]))
    assert a.tolist() == [1.0, 0.0]
    assert auc_weighted(y, s, np.ones((3, 50))).tolist() == [1.0, 1.0, 1.0]


def test_auc_matches_sklearn_and_estimate_stays_inside_its_ci():
    rng = np.random.default_rng(5)
    for k in range(200):
        n = int(rng.integers(4, 60))
        y = rng.integers(0, 2, n)
        if np.unique(y).size < 2:
            continue
        s = np.round(rng.normal(size=n) + rng.uniform(0, 4) * y, 1)  # ties too
        r = delong_auc_test(y, s)
        assert r["auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
        assert 0.0 <= r["ci_low"] <= r["auc"] <= r["ci_high"] <= 1.0
    r = delong_auc_test([0, 0, 0, 1, 1, 1, 1, 1, 1, 1], np.arange(10.0))
    assert r["auc"] == 1.0 and r["ci_low"] == 1.0 and r["ci_high"] == 1.0  # zero-width interval


def _tradeoff_inputs(d: Path, preds: pd.DataFrame):
    from PIL import Image

    rng = np.random.default_rng(8)
    Image.fromarray(rng.integers(60, 120, (120, 90)).astype(np.uint8)).save(d / "cxr.png")
    yy, xx = np.mgrid[:40, :30]
    m = np.exp(-(((yy + 0.5) * 3 - 22.5) ** 2 + ((xx + 0.5) * 3 - 67.5) ** 2) / 72.0).astype(np.float32)
    np.savez(d / "maps.npz", case_id=np.array(["c1"]), cam=m[None])
    (d / "manifest.csv").write_text("case_id,image,bbox_x,bbox_y,bbox_w,bbox_h\nc1,cxr.png,60,15,15,15\n")
    preds.to_csv(d / "preds.csv", index=False)
    assert main(["-q", "localize", "--manifest", str(d / "manifest.csv"), "--maps", str(d / "maps.npz"),
                 "--out", str(d / "loc.parquet"), "--n-boot", "20", "--no-figure"]) == 0


def test_bug06_tradeoff_with_a_perfect_checkpoint_writes_table_and_figure(tmp_path):
    rng = np.random.default_rng(9)
    _tradeoff_inputs(tmp_path, pd.DataFrame({"checkpoint": "pre", "y_true": np.r_[np.zeros(3, int), np.ones(7, int)],
                                             "y_score": np.r_[rng.uniform(0, .4, 3), rng.uniform(.6, 1, 7)]}))
    out = tmp_path / "tradeoff.csv"
    rc = main(["-q", "tradeoff", "--loc", f"pre={tmp_path / 'loc.parquet'}", "--predictions",
               str(tmp_path / "preds.csv"), "--score", "pointing_game", "--out", str(out), "--n-boot", "20"])
    assert rc == 0
    t = pd.read_csv(out)
    assert t["task_metric"].tolist() == [1.0] and t["task_low"].tolist() == [1.0] and t["task_high"].tolist() == [1.0]
    assert (tmp_path / "tradeoff.png").stat().st_size > 1000 and (tmp_path / "tradeoff.svg").exists()


def test_given_task_ci_that_excludes_its_estimate_is_warned_and_still_drawn(tmp_path, caplog):
    from radlens.localization.tradeoff import tradeoff

    loc = pd.DataFrame({"sample_id": ["s0", "s1", "s2", "s3"], "patient_id": ["p0", "p0", "p1", "p1"],
                        "map_set": "a", "auc": [0.7, 0.8, 0.6, 0.9]})
    task = pd.DataFrame({"checkpoint": ["pre", "ft"], "task_metric": [0.9, 0.8], "task_low": [0.92, 0.7],
                         "task_high": [0.95, 0.8]})  # pre: CI above its estimate; ft: zero-width upper side
    with caplog.at_level(logging.WARNING):
        tradeoff({"pre": loc, "ft": loc}, tmp_path / "t.csv", task=task, n_boot=20)
    assert "checkpoint(s) ['pre'] excludes its own task_metric" in caplog.text
    assert (tmp_path / "t.png").stat().st_size > 1000


# --------------------------------------------------------------------------- kind 5: undefined statistics
def test_bug07_single_class_checkpoint_names_the_cause(tmp_path, caplog):
    rng = np.random.default_rng(9)
    pre = pd.DataFrame({"checkpoint": "pre", "y_true": np.r_[np.zeros(20, int), np.ones(30, int)],
                        "y_score": np.r_[rng.uniform(0, .7, 20), rng.uniform(.3, 1, 30)]})
    ft = pd.DataFrame({"checkpoint": "ft", "y_true": np.ones(15, int), "y_score": rng.uniform(0, 1, 15)})
    _tradeoff_inputs(tmp_path, pd.concat([pre, ft]))
    out = tmp_path / "tradeoff.csv"
    with caplog.at_level(logging.WARNING):
        rc = main(["tradeoff", "--loc", f"pre={tmp_path / 'loc.parquet'}", "--loc", f"ft={tmp_path / 'loc.parquet'}",
                   "--predictions", str(tmp_path / "preds.csv"), "--score", "pointing_game", "--out", str(out),
                   "--n-boot", "20"])
    assert rc == 0
    t = pd.read_csv(out).set_index("checkpoint")
    assert np.isnan(t.loc["ft", "task_metric"]) and t.loc["ft", "task_n"] == 15
    note = "y_true holds one class only (15 positives, 0 negatives); task AUC undefined"
    assert t.loc["ft", "task_note"] == note
    assert f"checkpoint 'ft': {note}" in caplog.text
    assert "no task performance" not in caplog.text
    svg = (tmp_path / "tradeoff.svg").read_text()
    assert "Not drawn" in svg and "15 positives" in svg


def test_undefined_auc_reasons_everywhere():
    from radlens.probe.scoring import auc_summary, paired_auc_difference

    assert undefined_auc_reason([1, 1, 1]) == "one class only (3 positives, 0 negatives)"
    assert undefined_auc_reason([0, 0]) == "one class only (0 positives, 2 negatives)"
    assert undefined_auc_reason([]) .startswith("no samples") and undefined_auc_reason([0, 1]) is None
    with pytest.raises(InputError, match=r"one class only \(0 positives, 4 negatives\)"):
        auc([0, 0, 0, 0], [1.0, 2.0, 3.0, 4.0])
    r = delong_auc_test(np.ones(5, int), np.arange(5.0), on_single_class="nan")
    assert np.isnan(r["auc"]) and r["note"] == "AUC undefined: labels hold one class only (5 positives, 0 negatives)"
    s = auc_summary(np.zeros(6, int), np.arange(6.0), groups=np.arange(6) // 2)
    assert np.isnan(s["estimate"]) and "0 positives, 6 negatives" in s["note"]
    d = paired_auc_difference(np.ones(4, int), np.arange(4.0), np.arange(4.0), n_boot=10)
    assert np.isnan(d["estimate"]) and "4 positives, 0 negatives" in d["note"]


# --------------------------------------------------------------------------- kind 6: probe CIs
def _paired(n, delta, tau, rng):
    clean = rng.normal(size=n)
    pert = clean + delta + (rng.normal(scale=tau, size=n) if tau > 0 else 0.0)
    return (np.r_[np.zeros(n), np.ones(n)].astype(int), np.r_[clean, pert], np.r_[np.arange(n), np.arange(n)])


@pytest.mark.parametrize("n", [24, 40, 200])
def test_probe_panel_ci_contains_its_estimate_with_concordant_pairs(n):
    """The case's repro: every perturbed copy = its clean score + 0.05; the percentile cluster
    bootstrap lay entirely above the estimate in all of these."""
    from radlens.probe.scoring import auc_summary

    y, s, g = _paired(n, 0.05, 0.0, np.random.default_rng(0))
    r = auc_summary(y, s, groups=g, n_boot=200, seed=0)
    assert r["ci_method"] == "delong_clustered_wald"
    assert r["ci_low"] < r["estimate"] < r["ci_high"]
    assert r["estimate"] == pytest.approx({24: 0.5347, 40: 0.5288, 200: 0.5169}[n], abs=5e-5)
    half = norm.ppf(0.975) * r["se"]
    assert r["ci_high"] - r["estimate"] == pytest.approx(half, rel=1e-9)


@pytest.mark.parametrize("n, tau", [(40, 0.3), (24, 0.05)])
def test_probe_panel_ci_coverage_in_the_paired_design(n, tau):
    """Coverage of E[AUC] = ((n−1)·θ + ψ_within)/n, θ = Φ(δ/√(2+τ²)), ψ_within = Φ(δ/τ), over 400
    simulated panels (binomial SD of the coverage ≈ 0.011)."""
    from radlens.probe.scoring import auc_summary, paired_auc_difference

    delta = 0.3
    target = ((n - 1) * norm.cdf(delta / np.sqrt(2 + tau ** 2)) + norm.cdf(delta / tau)) / n
    rng = np.random.default_rng(1)
    hit = inside = hit_diff = 0
    reps = 400
    for _ in range(reps):
        y, s, g = _paired(n, delta, tau, rng)
        r = auc_summary(y, s, groups=g, n_boot=1)
        hit += r["ci_low"] <= target <= r["ci_high"]
        inside += r["ci_low"] <= r["estimate"] <= r["ci_high"]
        # a difference of two poolings, the second uninformative noise added: true diff = target_b − target
        d = paired_auc_difference(y, s, s + rng.normal(scale=0.01, size=s.size), groups=g, n_boot=1)
        hit_diff += d["ci_low"] <= d["estimate"] <= d["ci_high"]
    assert 0.91 <= hit / reps <= 0.985, hit / reps
    assert inside == reps and hit_diff == reps


# --------------------------------------------------------------------------- kind 7: radiomics tables
def _features(n, rng):
    return {f"original_firstorder_F{k}": rng.normal(size=n) for k in range(4)}


def test_radiomics_table_with_string_patient_id_and_pyradiomics_batch_columns():
    from radlens.lens.frame import RadiomicsFrame
    from radlens.radiomics.features import clean_features, split_feature_columns, standardize

    rng = np.random.default_rng(2)
    n = 12
    ours = pd.DataFrame({"case_id": [f"c{i}" for i in range(n)], "patient_id": [f"P{i // 2:03d}" for i in range(n)],
                         **_features(n, rng)})
    batch = pd.DataFrame({"case_id": ours["case_id"], "Image": [f"/data/img{i}.nrrd" for i in range(n)],
                          "Mask": [f"/data/seg{i}.nrrd" for i in range(n)],
                          "diagnostics_Versions_PyRadiomics": "v3.1.0",
                          "diagnostics_Mask-original_VoxelNum": rng.integers(100, 200, n),
                          "diagnostics_Image-original_Spacing": "(1.0, 1.0, 1.0)", **_features(n, rng)})
    for df in (ours, batch):
        feats, aside = split_feature_columns(df)
        assert feats == [c for c in df.columns if c.startswith("original_")]
        clean, rep = clean_features(df)
        assert list(clean.columns) == ["case_id"] + feats
        set_aside = rep.loc[rep.reason == "not_a_feature", "feature"].tolist()
        assert set_aside == [c for c in df.columns if c != "case_id" and c not in feats]
        assert RadiomicsFrame().fit(df).features_ == feats
        out, _ = standardize(df)
        assert out.shape == df.shape and out.columns.tolist() == df.columns.tolist()
        assert (out["patient_id" if "patient_id" in df else "Image"] == df["patient_id" if "patient_id" in df
                                                                        else "Image"]).all()


def test_fit_pre_groups_by_the_tables_patient_id(tmp_path, monkeypatch):
    """fit-pre on a table with a string patient_id: accepted, grouped by it (no --manifest needed)."""
    from radlens.lens import pipeline

    rng = np.random.default_rng(3)
    n = 12
    rad = pd.DataFrame({"case_id": [f"c{i}" for i in range(n)], "patient_id": [f"P{i // 3}" for i in range(n)],
                        "Image": "x.nrrd", "diagnostics_Versions_PyRadiomics": "v3", **_features(n, rng)})
    rad.to_csv(tmp_path / "rad.csv", index=False)
    seen = {}

    class Stop(Exception):
        pass

    def fake_fit(self, X, Z, groups=None, case_ids=None):
        seen["groups"] = list(groups)
        raise Stop

    monkeypatch.setattr(pipeline, "_load_embeddings",
                        lambda path, pooling: (rad["case_id"].to_numpy(), rng.normal(size=(n, 3)), "roi", {}))
    from radlens.lens.estimator import RadiomicLens

    monkeypatch.setattr(RadiomicLens, "fit", fake_fit)
    with pytest.raises(Stop):
        pipeline.fit_pre(tmp_path / "rad.csv", "emb.npz", tmp_path / "lens")
    assert seen["groups"] == [f"P{i // 3}" for i in range(n)]


def test_text_in_a_feature_column_is_refused_naming_it():
    from radlens.radiomics.features import clean_features

    df = pd.DataFrame({"case_id": ["a", "b", "c"], "original_glcm_Contrast": ["1,2", "3,4", "5,6"],
                       "original_firstorder_Mean": [1.0, 2.0, 3.0]})
    with pytest.raises(InputError) as ei:
        clean_features(df)
    msg = str(ei.value)
    assert "['original_glcm_Contrast'] hold non-numeric values" in msg and "'1,2'" in msg
    assert "id_columns" not in msg  # no library-only option offered to CLI users


# --------------------------------------------------------------------------- kind 8: new-user items
def test_readme_config_paths_exist():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    paths = set(re.findall(r"(?<![\w/])((?:radlens/)?configs/[\w./-]+\.ya?ml)", text))
    assert "configs/radiomics_xray.yaml" in paths
    assert [p for p in sorted(paths) if not (ROOT / p).exists()] == []


def test_hf_folder_that_does_not_exist(tmp_path):
    from radlens.encoders.spec import normalize_spec

    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "pre.yaml").write_text("kind: hf\npath: models/rad-dino\n", encoding="utf-8")
    with pytest.raises(ConfigError) as ei:
        normalize_spec(tmp_path / "specs" / "pre.yaml")
    msg = str(ei.value)
    assert "path='models/rad-dino'" in msg and "no such folder" in msg
    assert f"relative paths resolve against the YAML's folder {str((tmp_path / 'specs').resolve())!r}" in msg
    (tmp_path / "specs" / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        normalize_spec({"kind": "hf", "path": str(tmp_path / "specs" / "file")})


def _options(command: str) -> set[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return {o for a in sub.choices[command]._actions for o in a.option_strings}


@pytest.mark.parametrize("module, command", [("radlens/localization/tradeoff.py", "tradeoff"),
                                             ("radlens/io/converters.py", "convert")])
def test_advice_names_options_the_command_has(module, command):
    """Every --option a module's messages name exists in the command that prints them (options of
    another command are named with that command, e.g. `radlens localize --binarize`)."""
    src = (ROOT / module).read_text(encoding="utf-8")
    have = _options(command)
    if command == "convert":
        parser = build_parser()
        sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
        conv = sub.choices["convert"]
        inner = next((a for a in conv._actions if a.__class__.__name__ == "_SubParsersAction"), None)
        if inner is not None:
            for p in inner.choices.values():
                have |= {o for a in p._actions for o in a.option_strings}
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    others = [c for c in sub.choices if c != command]
    named = set()
    for m in re.finditer(r"(?<![\w-])(--[a-z][a-z-]+)", src):
        before = src[max(0, m.start() - 50):m.start()]
        if any(re.search(rf"\b{re.escape(o)}\b", before) for o in others):
            continue  # e.g. "re-run `radlens localize` with the --binarize": another command's option, named so
        named.add(m.group(1))
    assert named, "the module names no option at all: the test would prove nothing"
    assert named - have == set(), f"{module} names options `radlens {command}` lacks: {sorted(named - have)}"


@pytest.mark.parametrize("command", ["radiomics", "localize"])
def test_resample_mask_advice_only_where_the_option_exists(command):
    assert "--resample-mask" in _options(command)
    for other in ("embed", "cam-drift", "pooling-probe"):
        assert "--resample-mask" not in _options(other)


def test_localization_summary_figure_survives_a_zero_width_ci_off_by_rounding(tmp_path):
    """mean 0.1 + 0.2 = 0.30000000000000004 with CI [0.3, 0.3] (all samples equal): the error-bar
    length -5.6e-17 made matplotlib raise before."""
    from radlens.viz.localization import plot_localization_scores

    m = 0.1 + 0.2
    assert m - 0.3 > 0
    s = pd.DataFrame({"map_set": ["a", "a"], "class": ["x", "y"], "score": ["auc", "auc"], "mean": [m, 0.5],
                      "ci_low": [0.3, 0.4], "ci_high": [0.3, 0.6], "n": [5, 5], "higher_is_better": [True, True],
                      "n_undefined": [0, 0], "median": [m, 0.5]})
    paths = plot_localization_scores(s, tmp_path / "zw")
    assert all(Path(p).stat().st_size > 1000 for p in paths)


def test_bootstrap_ci_says_why_it_is_undefined(caplog):
    from radlens.stats import bootstrap_ci

    y = np.ones(8, int)
    calls = []

    def stat(a):  # defined on the sample itself, undefined (one class) on every resample
        calls.append(1)
        return 1.0 if len(calls) == 1 else auc(a, np.arange(a.size))

    with caplog.at_level(logging.WARNING, logger="radlens.stats.bootstrap"):
        est, lo, hi, reps = bootstrap_ci(stat, y, n_boot=20)
    assert np.isnan(lo) and np.isnan(hi) and np.isnan(reps).all()
    assert "undefined on 20 of 20 resamples (e.g. labels y: one class only (8 positives, 0 negatives)" in caplog.text
