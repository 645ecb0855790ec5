"""Linear CKA and its case-bootstrap CI (radlens.stats.cka): invariances and hand-computed values."""
import numpy as np
import pytest

from radlens.stats.cka import cka_bootstrap, linear_cka, weighted_linear_cka


def test_cka_invariant_to_rotation_scale_translation():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 6))
    Q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    Y = -3.7 * X @ Q + 5.0
    assert linear_cka(X, Y) == pytest.approx(1.0, abs=1e-12)
    r = cka_bootstrap(X, Y, n_boot=30, seed=1)
    assert np.allclose(r["replicates"], 1.0, atol=1e-9)
    assert r["ci_low"] == pytest.approx(1.0, abs=1e-9) and r["ci_high"] == pytest.approx(1.0, abs=1e-9)


def test_cka_hand_computed_examples():
    # X centred (-1, 0, 1), Y centred (-1, 1, 0): Y'X = 1, X'X = Y'Y = 2 -> 1 / (2 * 2)
    x = np.array([[1.0], [2.0], [3.0]])
    y = np.array([[1.0], [3.0], [2.0]])
    assert linear_cka(x, y) == pytest.approx(0.25, abs=1e-12)
    # 2-D X: Xc'Xc = [[2/3, -1/3], [-1/3, 2/3]] (squared norm 10/9), Y'Xc = (-1, 0) -> 1 / (sqrt(10/9) * 2)
    X2 = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    assert linear_cka(X2, x) == pytest.approx(3 / (2 * np.sqrt(10)), abs=1e-12)
    # weights (2, 1, 1) = rows (1, 1, 2, 3) and (1, 1, 3, 2): Xc'Yc = 7/4, Xc'Xc = Yc'Yc = 11/4 -> 49/121
    assert weighted_linear_cka(x, y, np.array([2.0, 1.0, 1.0])) == pytest.approx(49 / 121, abs=1e-12)


def test_weighted_form_equals_explicit_resample_and_feature_form():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(40, 5))
    Y = X @ rng.normal(size=(5, 7)) + rng.normal(size=(40, 7))
    groups = np.repeat(np.arange(20), 2)
    r_gram = cka_bootstrap(X, Y, n_boot=25, seed=4, groups=groups)
    r_feat = cka_bootstrap(X, Y, n_boot=25, seed=4, groups=groups, gram_max_n=0)
    from radlens.stats.bootstrap import bootstrap_indices

    explicit = [linear_cka(X[i], Y[i]) for i in bootstrap_indices(40, 25, seed=4, groups=groups)]
    assert np.allclose(r_gram["replicates"], explicit, atol=1e-10)
    assert np.allclose(r_feat["replicates"], explicit, atol=1e-10)
    assert r_gram["ci_low"] <= r_gram["cka"] <= r_gram["ci_high"]


def test_cka_independent_is_small_and_errors_are_clear():
    rng = np.random.default_rng(5)
    X, Y = rng.normal(size=(400, 3)), rng.normal(size=(400, 3))
    assert linear_cka(X, Y) < 0.05
    with pytest.raises(ValueError, match="same cases"):
        cka_bootstrap(X, Y[:10])
    with pytest.raises(ValueError, match="n_boot"):
        cka_bootstrap(X, Y, n_boot=-1)
