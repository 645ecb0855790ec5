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
    """Single-layer and layer-wise compare folders; p = 0.03 recovers alone but not among 3 layers."""
    import json

    from radlens.demo_planted import _alignment

    single = tmp_path / "lens" / "cnn" / "compare"
    _write_alignment(single, [("task_shape", 0.4, 0.03, 102), ("task_texture", -0.2, 0.001, 102)])
    layered = tmp_path / "lens" / "vit" / "compare"
    layered.mkdir(parents=True)
    (layered / "layers.json").write_text(json.dumps({"layers": ["2", "3", "4"]}), encoding="utf-8")
    for layer, p in (("2", 0.03), ("3", 0.2), ("4", 0.004)):
        _write_alignment(layered / layer, [("task_shape", 0.5, p, 102)])
    rows = _alignment(tmp_path, None, {})
    got = {(r["architecture"], r["layer"], r["task"]): r["recovered"] for r in rows}
    assert got == {("cnn", None, "task_shape"): True,          # 0.03 < 0.05
                   ("cnn", None, "task_texture"): False,       # significant, but the change points away
                   ("vit", "2", "task_shape"): False,          # 0.03 > 0.05 / 3
                   ("vit", "3", "task_shape"): False,
                   ("vit", "4", "task_shape"): True}           # 0.004 < 0.05 / 3
    assert {r["level"] for r in rows if r["architecture"] == "vit"} == {round(0.05 / 3, 4)}
