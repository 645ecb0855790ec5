import numpy as np
import pytest

from radlens.stats import bh_qvalues, bootstrap_ci, kendall_w, linear_cka, paired_summary


def test_bh_matches_hand_computed():
    p = [0.01, 0.04, 0.03, 0.20]
    # sorted: .01,.03,.04,.20 -> p*m/rank = .04,.06,.0533,.20 -> monotone from the top: .04,.0533,.0533,.20
    q = bh_qvalues(p)
    np.testing.assert_allclose(q, [0.04, 0.16 / 3, 0.16 / 3, 0.20])


def test_bh_nan_not_counted():
    q = bh_qvalues([0.01, np.nan, 0.02])
    assert np.isnan(q[1])
    np.testing.assert_allclose(q[[0, 2]], [0.02, 0.02])


def test_kendall_w_perfect_and_reversed():
    s = np.array([[1, 2, 3, 4], [10, 20, 30, 40]])
    assert kendall_w(s) == pytest.approx(1.0)
    # two raters in exact reverse order: rank sums all equal -> W = 0
    assert kendall_w(np.array([[1, 2, 3], [3, 2, 1]])) == pytest.approx(0.0)


def test_linear_cka_invariances():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 6))
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    assert linear_cka(x, 3.0 * x @ q + 1.0) == pytest.approx(1.0)
    assert linear_cka(x, rng.normal(size=(50, 6))) < 0.5


def test_bootstrap_ci_covers_mean():
    rng = np.random.default_rng(1)
    x = rng.normal(2.0, 1.0, size=400)
    est, lo, hi, reps = bootstrap_ci(np.mean, x, n_boot=500, seed=0)
    assert lo < 2.0 < hi and lo < est < hi and reps.shape == (500,)


def test_paired_summary_detects_shift():
    rng = np.random.default_rng(2)
    a = rng.normal(size=60)
    out = paired_summary(a, a + 0.5 + 0.1 * rng.normal(size=60), n_boot=300)
    assert out["mean_diff"] == pytest.approx(0.5, abs=0.05)
    assert out["p_wilcoxon"] < 1e-6 and out["ci_low"] > 0.4


def test_paired_summary_ties_use_normal_approximation_by_hand():
    # differences with ties: ranks of |d| = [1,1,2,2,3,3,4,-1] -> tied groups of sizes 3,2,2,1
    a = np.zeros(8)
    d = np.array([1, 1, 2, 2, 3, 3, 4, -1], float)
    out = paired_summary(a, d, n_boot=50)
    from scipy.stats import norm, rankdata

    r = rankdata(np.abs(d))
    w_plus = r[d > 0].sum()
    n = 8
    var = n * (n + 1) * (2 * n + 1) / 24 - sum(t ** 3 - t for t in (3, 2, 2, 1)) / 48
    # scipy reports min(W+, W-) two-sided
    w = min(w_plus, n * (n + 1) / 2 - w_plus)
    p = 2 * norm.cdf((w - n * (n + 1) / 4) / np.sqrt(var))
    assert out["p_wilcoxon"] == pytest.approx(p, rel=1e-9)
