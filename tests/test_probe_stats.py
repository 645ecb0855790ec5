"""Probe statistics: bootstrap AUC summaries, size-stratified gaps, box jitter, linear probes, config."""
import math

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.metrics import roc_auc_score

from radlens.errors import ConfigError, InputError
from radlens.probe.config import load_probe_config
from radlens.probe.jitter import box_iou, jitter_boxes
from radlens.probe.linear import LinearProbe, grouped_folds, out_of_fold_scores
from radlens.probe.scoring import auc_summary, paired_auc_difference
from radlens.probe.sizes import matched_control_boxes, size_stratum, size_threshold, stratified_gap
from radlens.stats import bootstrap_ci


def test_auc_summary_equals_the_shared_bootstrap_ci():
    """Independent samples: the fast weighted bootstrap draws the same resamples as
    radlens.stats.bootstrap_ci (strata = classes)."""
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(40, int), np.ones(40, int)]
    g = np.r_[np.arange(40), np.arange(40)]
    s = rng.normal(size=80) + 0.5 * y
    r = auc_summary(y, s, n_boot=120, seed=4)
    ref = bootstrap_ci(lambda a, b: roc_auc_score(a, b) if np.unique(a).size == 2 else np.nan,
                       y, s, n_boot=120, seed=4, strata=y)
    assert r["estimate"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert r["ci_low"] == pytest.approx(ref[1], abs=1e-12)
    assert r["ci_high"] == pytest.approx(ref[2], abs=1e-12)
    assert r["ci_method"] == "bootstrap_percentile"
    d = paired_auc_difference(y, s, 2 * s + rng.normal(size=80), groups=g, n_boot=200)
    assert d["ci_low"] <= d["estimate"] <= d["ci_high"]
    assert d["n_groups"] == 40


def _gap_reference(y, s, stratum, matched):
    """Small/large AUCs from scikit-learn and the DeLong gap variance from pairwise kernels."""
    def comps(pos, neg):
        psi = np.where(s[pos][:, None] > s[neg][None, :], 1.0,
                       np.where(s[pos][:, None] == s[neg][None, :], 0.5, 0.0))
        return psi.mean(), psi.mean(1), psi.mean(0)

    out = {}
    for w in ("small", "large"):
        pos = np.flatnonzero((y == 1) & (stratum == w))
        neg = np.flatnonzero((y == 0) & ((stratum == w) if matched else True))
        out[w] = comps(pos, neg)
    (a_s, v10s, v01s), (a_l, v10l, v01l) = out["small"], out["large"]
    var = v10s.var(ddof=1) / v10s.size + v10l.var(ddof=1) / v10l.size
    if matched:
        var += v01s.var(ddof=1) / v01s.size + v01l.var(ddof=1) / v01l.size
    else:
        var += (v01l - v01s).var(ddof=1) / v01s.size
    return a_s, a_l, math.sqrt(var)


@pytest.mark.parametrize("matched", [False, True])
def test_stratified_gap_against_reference(matched):
    rng = np.random.default_rng(1)
    n = 400
    y = (rng.random(n) < 0.5).astype(int)
    stratum = np.where(rng.random(n) < 0.5, "small", "large").astype(object)
    shift = np.where(stratum == "large", 1.2, 0.3)
    s = np.round(rng.normal(size=n) + y * shift, 1)
    g = stratified_gap(y, s, stratum, match_negatives=matched, n_boot=400, seed=0)
    a_s, a_l, se = _gap_reference(y, s, stratum, matched)
    assert g["small"]["estimate"] == pytest.approx(a_s, abs=1e-12)
    assert g["large"]["estimate"] == pytest.approx(a_l, abs=1e-12)
    assert g["gap"]["estimate"] == pytest.approx(a_l - a_s, abs=1e-12)
    assert g["gap"]["se"] == pytest.approx(se, abs=1e-9)
    assert g["gap"]["ci_low"] < g["gap"]["estimate"] < g["gap"]["ci_high"]
    # planted gap: Φ(1.2/√2) − Φ(0.3/√2) ≈ 0.22
    assert 0.1 < g["gap"]["estimate"] < 0.35 and g["gap"]["p"] < 0.05
    # bootstrap and DeLong agree on the spread (CI width ≈ 2·1.96·se within 35%)
    width = g["gap"]["ci_high"] - g["gap"]["ci_low"]
    assert width == pytest.approx(2 * 1.96 * se, rel=0.35)


def test_size_threshold_and_strata():
    assert size_threshold([0.01, 0.02, 0.04], "median") == 0.02
    assert size_threshold([0.01], 0.03) == 0.03
    st = size_stratum([0.01, 0.02, np.nan], 0.02)
    assert st.tolist() == ["small", "large", ""]
    with pytest.raises(InputError, match="area fraction"):
        size_threshold([0.1], 2.0)
    with pytest.raises(InputError, match="'median'"):
        size_threshold([0.1], "mean")


def test_matched_control_boxes_keep_relative_place():
    idx, boxes = matched_control_boxes([[10, 20, 4, 8], [0, 0, 2, 2], [5, 5, 5, 5]],
                                       [(64, 64)] * 3, [(128, 128), (64, 32)], seed=0)
    assert sorted(idx[:2].tolist()) == [0, 1]  # every negative used before any is reused
    # negative 0 is 128 x 128 (coordinates double); negative 1 is 64 rows x 32 columns (x halves)
    want = {0: [20, 40, 8, 16], 1: [5, 20, 2, 8]}
    np.testing.assert_allclose(boxes[0], want[int(idx[0])])
    with pytest.raises(InputError, match="no negative image"):
        matched_control_boxes([[0, 0, 1, 1]], [(8, 8)], [])


def test_jitter_boxes():
    boxes = np.array([[10.0, 10, 8, 8], [30, 5, 4, 6]] * 50)
    shapes = [(64, 64)] * 100
    np.testing.assert_array_equal(jitter_boxes(boxes, 0.0, shapes), boxes)
    prev = 1.0
    for lv in (0.1, 0.5, 1.0):
        j = jitter_boxes(boxes, lv, shapes, seed=3)
        np.testing.assert_array_equal(j, jitter_boxes(boxes, lv, shapes, seed=3))
        assert np.all(j[:, 0] >= 0) and np.all(j[:, 1] >= 0)
        assert np.all(j[:, 0] + j[:, 2] <= 64 + 1e-9) and np.all(j[:, 1] + j[:, 3] <= 64 + 1e-9)
        assert np.all(j[:, 2] >= 1) and np.all(j[:, 3] >= 1)
        iou = box_iou(boxes, j).mean()
        assert iou < prev
        prev = iou
    # hand-computed IoU: two 2x2 boxes overlapping in a 1x2 strip -> 2 / 6
    assert box_iou([[0, 0, 2, 2]], [[1, 0, 2, 2]])[0] == pytest.approx(2 / 6)
    with pytest.raises(InputError, match="jitter level"):
        jitter_boxes(boxes, -1, shapes)


def test_linear_probe_estimator_contract_and_grouped_folds():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 5))
    y = (X[:, 0] + 0.3 * rng.normal(size=60) > 0).astype(int)
    p = LinearProbe(C=0.5)
    assert p.get_params()["C"] == 0.5 and not hasattr(p, "clf_")
    with pytest.raises(NotFittedError):
        p.decision_function(X)
    assert p.fit(X, y) is p
    assert roc_auc_score(y, p.decision_function(X)) > 0.9
    groups = np.repeat(np.arange(20), 3)
    for tr, te in grouped_folds(y, groups, 5, seed=0):
        assert not set(groups[tr]) & set(groups[te])
    s = out_of_fold_scores(X, y, groups, n_splits=5, seed=0)
    assert s.shape == (60,) and roc_auc_score(y, s) > 0.85
    # out of fold: a probe on pure noise is near chance, not inflated by in-sample fitting
    noise = rng.normal(size=(60, 40))
    assert abs(roc_auc_score(y, out_of_fold_scores(noise, y, groups)) - 0.5) < 0.25
    with pytest.raises(InputError, match="C=-1"):
        LinearProbe(C=-1).fit(X, y)
    with pytest.raises(InputError, match="at least 2 groups"):
        grouped_folds(y, np.zeros(60), 5)


def test_config_defaults_merge_and_errors(tmp_path):
    cfg = load_probe_config()
    assert set(cfg.panel.perturbations) == {"blur", "motion", "texture", "nodule"}
    assert cfg.n_boot == 1000 and cfg.size_threshold == 0.01
    cfg = load_probe_config({"panel": {"footprints": [0.1], "perturbations": {"nodule": {"strengths": [1]}}},
                             "probe": {"n_boot": 200}})
    assert list(cfg.panel.perturbations) == ["nodule"] and cfg.n_boot == 200 and cfg.n_splits == 5
    with pytest.raises(ConfigError, match="unknown key 'pannel'"):
        load_probe_config({"pannel": {}})
    with pytest.raises(ConfigError, match="probe.n_boot"):
        load_probe_config({"probe": {"n_boot": 3}})
    with pytest.raises(ConfigError, match="unknown key"):
        load_probe_config({"probe": {"boots": 3}})
    with pytest.raises(ConfigError, match="does not exist"):
        load_probe_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("panel: [1, 2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_probe_config(bad)
    with pytest.raises(ConfigError, match="jitter.footprints"):
        load_probe_config({"jitter": {"footprints": [0.99]}})
