"""The demo's planted-truth signature: features ranked by how well they separate a task's labels."""
import numpy as np
import pandas as pd

from radlens.demo_planted import radiomic_signature


def test_signature_ranks_by_separation_either_direction():
    y = np.array([0, 0, 0, 1, 1, 1])
    X = pd.DataFrame({"original_firstorder_Mean": [1, 2, 3, 4, 5, 6],        # AUC 1
                      "original_glcm_Contrast": [6, 5, 4, 3, 2, 1],          # AUC 0 -> separation 0.5 too
                      "original_shape2D_Elongation": [1, 4, 2, 3, 5, 0],     # AUC 5/9 (pairs pos > neg: 2 + 3 + 0)
                      "constant": [1.0] * 6})
    sig = radiomic_signature(X, y, k=3)
    # ties at separation 0.5 are broken by name; the constant column is skipped
    assert sig["feature"].tolist() == ["original_firstorder_Mean", "original_glcm_Contrast",
                                       "original_shape2D_Elongation"]
    np.testing.assert_allclose(sig["auc"], [1.0, 0.0, 5 / 9])
    np.testing.assert_allclose(sig["separation"], [0.5, 0.5, 5 / 9 - 0.5])


def _write_alignment(folder, rows):
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=["task", "alignment", "alignment_p", "n_features"]).to_csv(
        folder / "alignment.csv", index=False)


def test_recovery_reads_the_study_compare_outputs_with_bonferroni_over_layers(tmp_path):
    """Single-layer and layer-wise compare folders: two checks per layer, so the alignment level is
    0.05 / 2 for one layer and 0.05 / 6 among three; p = 0.02 recovers alone but not among 3 layers."""
    import json

    from radlens.demo_planted import _alignment

    single = tmp_path / "lens" / "cnn" / "compare"
    _write_alignment(single, [("task_shape", 0.4, 0.02, 102), ("task_texture", -0.2, 0.001, 102)])
    layered = tmp_path / "lens" / "vit" / "compare"
    layered.mkdir(parents=True)
    (layered / "layers.json").write_text(json.dumps({"layers": ["2", "3", "4"]}), encoding="utf-8")
    for layer, p in (("2", 0.02), ("3", 0.2), ("4", 0.008)):
        _write_alignment(layered / layer, [("task_shape", 0.5, p, 102)])
    rows = _alignment(tmp_path, None, {})
    got = {(r["architecture"], r["layer"], r["task"]): r["recovered"] for r in rows}
    assert got == {("cnn", None, "task_shape"): True,          # 0.02 < 0.05 / 2
                   ("cnn", None, "task_texture"): False,       # significant, but the change points away
                   ("vit", "2", "task_shape"): False,          # 0.02 > 0.05 / 6
                   ("vit", "3", "task_shape"): False,
                   ("vit", "4", "task_shape"): True}           # 0.008 < 0.05 / 6
    assert {r["level"] for r in rows if r["architecture"] == "vit"} == {round(0.05 / 6, 4)}


def test_top10_is_ranked_by_the_signed_specific_change_with_hypergeometric_chance(tmp_path):
    """The unsigned contrast puts the other tasks' features (carried with the opposite sign) on top;
    the signed specific change of ``association.csv`` ranks the task's own features first."""
    from math import comb

    from radlens.demo_planted import _alignment

    cdir = tmp_path / "lens" / "cnn" / "compare"
    _write_alignment(cdir, [("task_intensity", 0.3, 0.2, 20)])
    feats = [f"original_firstorder_F{i}" for i in range(4)] + [f"original_glcm_G{i}" for i in range(16)]
    # signed: the four first-order features most positive; unsigned contrast: GLCM features largest
    spec = [1.0, 0.9, 0.8, 0.7] + [-2.0 + 0.01 * i for i in range(16)]
    pd.DataFrame({"task": "task_intensity", "feature": feats, "feature_class": "x", "association": 0.0,
                  "specific_change": spec}).to_csv(cdir / "association.csv", index=False)
    pd.DataFrame({"task": "task_intensity", "feature": feats, "contrast": np.abs(spec),
                  "contrast_rank": pd.Series(-np.abs(spec)).rank(method="min").astype(int)}).to_csv(
        cdir / "contrast.csv", index=False)
    sig = {"task_intensity": [{"feature": f, "auc": 1.0} for f in feats[:2]]}
    (r,) = _alignment(tmp_path, None, sig)
    assert r["profile"] == "specific_change"
    assert r["top10_planted"] == 4 and r["top10_in_signature"] == 2
    assert r["top10_planted_chance"] == 2.0                      # 10 draws x 4/20
    # P(X >= 4), X ~ Hypergeom(20 features, 4 planted, 10 drawn) = C(4,4) C(16,6) / C(20,10)
    assert abs(r["top10_planted_p"] - round(comb(16, 6) / comb(20, 10), 4)) < 1e-9
    # P(Y >= 2), Y ~ Hypergeom(20, 2 signature features, 10) = C(2,2) C(18,8) / C(20,10)
    assert abs(r["top10_in_signature_p"] - round(comb(18, 8) / comb(20, 10), 4)) < 1e-9
    # 0.2368 > 0.05 / 2: neither check recovers (alignment p 0.2)
    assert not r["recovered_contrast"] and not r["recovered_alignment"] and not r["recovered"]


def test_recovery_by_task_keeps_a_recovery_at_any_layer():
    from radlens.demo_planted import recovery_by_task

    rows = [{"architecture": "cnn", "layer": "l2", "task": "t", "alignment": 0.5, "alignment_p": 0.004,
             "level": 0.0167, "recovered": True},
            {"architecture": "cnn", "layer": "l3", "task": "t", "alignment": 0.1, "alignment_p": 0.4,
             "level": 0.0167, "recovered": False},
            {"architecture": "vit", "layer": "2", "task": "t", "alignment": 0.2, "alignment_p": 0.03,
             "level": 0.0167, "recovered": False}]
    got = {(r["architecture"], r["task"]): (r["layer"], r["recovered"]) for r in recovery_by_task(rows)}
    assert got == {("cnn", "t"): ("l2", True), ("vit", "t"): ("2", False)}
