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
