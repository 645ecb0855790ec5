"""Fast DeLong (Sun & Xu) against an O(n²) reference written here from the definition."""
import math

import numpy as np
import pytest
from scipy import stats as st

from radlens.errors import InputError
from radlens.stats import bootstrap_ci
from radlens.stats.delong import (auc, delong_auc_test, delong_components, delong_covariance,
                                  delong_test, midrank)


def _psi(x, y):
    return np.where(x > y, 1.0, np.where(x == y, 0.5, 0.0))


def reference_delong(y, scores):
    """DeLong et al. (1988) directly from the pairwise kernel: O(m·n) per score vector."""
    y = np.asarray(y).astype(bool)
    scores = np.atleast_2d(np.asarray(scores, float))
    k = scores.shape[0]
    m, n = int(y.sum()), int((~y).sum())
    v10 = np.zeros((k, m))
    v01 = np.zeros((k, n))
    aucs = np.zeros(k)
    for r in range(k):
        x, yy = scores[r, y], scores[r, ~y]
        psi = _psi(x[:, None], yy[None, :])  # (m, n)
        aucs[r] = psi.mean()
        v10[r] = psi.mean(axis=1)
        v01[r] = psi.mean(axis=0)
    s10 = np.zeros((k, k))
    s01 = np.zeros((k, k))
    for a in range(k):
        for b in range(k):
            s10[a, b] = ((v10[a] - aucs[a]) * (v10[b] - aucs[b])).sum() / (m - 1)
            s01[a, b] = ((v01[a] - aucs[a]) * (v01[b] - aucs[b])).sum() / (n - 1)
    return aucs, v10, v01, s10 / m + s01 / n


@pytest.mark.parametrize("seed,ties", [(0, False), (1, True), (2, True), (3, False)])
def test_fast_delong_matches_quadratic_reference(seed, ties):
    rng = np.random.default_rng(seed)
    n = 300
    y = rng.random(n) < 0.35
    s1 = rng.normal(size=n) + 0.8 * y
    s2 = 0.6 * s1 + rng.normal(size=n) + 0.3 * y
    s3 = rng.normal(size=n)
    if ties:  # heavy ties, including ties across classes
        s1, s2, s3 = np.round(s1, 0), np.round(s2 * 2) / 2, np.round(s3, 1)
    S = np.vstack([s1, s2, s3])
    a_ref, v10_ref, v01_ref, cov_ref = reference_delong(y, S)
    a, v10, v01 = delong_components(y, S)
    np.testing.assert_allclose(a, a_ref, atol=1e-12, rtol=0)
    np.testing.assert_allclose(v10, v10_ref, atol=1e-12, rtol=0)
    np.testing.assert_allclose(v01, v01_ref, atol=1e-12, rtol=0)
    a2, cov = delong_covariance(y, S)
    np.testing.assert_allclose(cov, cov_ref, atol=1e-9, rtol=0)
    # the paired test built from the reference covariance
    t = delong_test(y, s1, s2)
    var = cov_ref[0, 0] + cov_ref[1, 1] - 2 * cov_ref[0, 1]
    z = (a_ref[1] - a_ref[0]) / math.sqrt(var)
    assert t["diff"] == pytest.approx(a_ref[1] - a_ref[0], abs=1e-12)
    assert t["se"] == pytest.approx(math.sqrt(var), abs=1e-9)
    assert t["p"] == pytest.approx(2 * st.norm.sf(abs(z)), abs=1e-9)
    # AUC equals scikit-learn's (independent implementation)
    from sklearn.metrics import roc_auc_score
    assert auc(y, s1) == pytest.approx(roc_auc_score(y, s1), abs=1e-12)


def test_midrank_equals_scipy_rankdata():
    rng = np.random.default_rng(4)
    x = rng.integers(0, 20, 500).astype(float)
    np.testing.assert_array_equal(midrank(x), st.rankdata(x, method="average"))


def test_hand_computed_example():
    # positives 3, 2 ; negatives 1, 2 : pairs (3>1, 3>2, 2>1, 2=2) -> (1 + 1 + 1 + .5)/4
    y = [1, 1, 0, 0]
    s = [3.0, 2.0, 1.0, 2.0]
    assert auc(y, s) == pytest.approx(0.875)
    r = delong_auc_test(y, s)
    # V10 = (1, .75), V01 = (1, .75); S10 = S01 = var([1, .75]) = 0.03125
    assert r["se"] == pytest.approx(math.sqrt(0.03125 / 2 + 0.03125 / 2))


def test_single_class_raises_or_nans():
    y = np.ones(10, int)
    with pytest.raises(InputError, match=r"one class only \(10 positives, 0 negatives\)"):
        auc(y, np.arange(10))
    r = delong_test(y, np.arange(10.0), np.arange(10.0)[::-1], on_single_class="nan")
    assert math.isnan(r["p"]) and r["n_pos"] == 10 and r["n_neg"] == 0
    r = delong_auc_test(y, np.arange(10.0), on_single_class="nan")
    assert math.isnan(r["auc"])
    # inside a bootstrap single-class resamples become NaN and are dropped, not crashes
    yy = np.array([1, 0, 0, 0, 0, 0])
    est, lo, hi, reps = bootstrap_ci(auc, yy, np.arange(6.0), n_boot=200, seed=0)
    assert np.isnan(reps).any() and np.isfinite(lo)


def test_bad_inputs_name_the_problem():
    with pytest.raises(InputError, match="not binary"):
        auc([0, 1, 2], [1.0, 2.0, 3.0])
    with pytest.raises(InputError, match="does not match"):
        auc([0, 1], [1.0, 2.0, 3.0])
    with pytest.raises(InputError, match="non-finite"):
        auc([0, 1, 1], [1.0, np.nan, 3.0])
    with pytest.raises(InputError, match="score_a shape"):
        delong_test([0, 1], [1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(InputError, match="on_single_class"):
        delong_test([0, 1], [1.0, 2.0], [1.0, 2.0], on_single_class="skip")


def test_identical_scores_give_p_one():
    rng = np.random.default_rng(0)
    y = rng.random(50) < 0.5
    s = rng.normal(size=50)
    r = delong_test(y, s, 3 * s + 1)  # same ranking
    assert r["diff"] == 0 and r["p"] == 1.0


def test_delong_size_under_null():
    """Under H0 (two equally good, correlated scores) p < 0.05 about 5% of the time."""
    rng = np.random.default_rng(11)
    rej = 0
    reps = 400
    for _ in range(reps):
        y = rng.random(120) < 0.5
        latent = rng.normal(size=120) + 1.0 * y
        a = latent + rng.normal(size=120)
        b = latent + rng.normal(size=120)
        rej += delong_test(y, a, b)["p"] < 0.05
    assert 0.02 <= rej / reps <= 0.09


def test_bootstrap_auc_ci_coverage_near_nominal():
    """The probe's percentile bootstrap CI of the AUC covers the true AUC ~95% of the time.

    Independent design (binormal: positives N(d, 1), negatives N(0, 1), true AUC = Φ(d/√2)),
    resampling within classes; and the paired panel design (X_i = Z_i + d + e, Y_i = Z_i + e',
    Z ~ N(0, 1), e ~ N(0, s²); true AUC = Φ(d / √(2(1 + s²)))), resampling whole pairs."""
    from radlens.probe.scoring import auc_summary

    rng = np.random.default_rng(5)
    d, n_sim = 1.0, 250
    hits_ind = hits_pair = 0
    true_ind = st.norm.cdf(d / math.sqrt(2))
    sd = 0.5
    d2 = 0.5
    true_pair = st.norm.cdf(d2 / math.sqrt(2 * (1 + sd ** 2)))
    y = np.r_[np.ones(60, int), np.zeros(60, int)]
    g = np.r_[np.arange(60), np.arange(60)]
    for i in range(n_sim):
        s = np.r_[rng.normal(d, 1, 60), rng.normal(0, 1, 60)]
        r = auc_summary(y, s, n_boot=300, seed=i)
        hits_ind += r["ci_low"] <= true_ind <= r["ci_high"]
        z = rng.normal(size=60)
        s = np.r_[z + d2 + sd * rng.normal(size=60), z + sd * rng.normal(size=60)]
        r = auc_summary(y, s, groups=g, n_boot=300, seed=i)
        hits_pair += r["ci_low"] <= true_pair <= r["ci_high"]
    # 250 simulations: binomial s.e. ≈ 1.4%; percentile bootstrap runs slightly liberal
    assert 0.89 <= hits_ind / n_sim <= 0.99, hits_ind / n_sim
    assert 0.89 <= hits_pair / n_sim <= 0.99, hits_pair / n_sim


def reference_clustered(y, scores, groups):
    """Obuchowski (1997) clustered covariance written from the pairwise kernel, O(m·n)."""
    y = np.asarray(y).astype(bool)
    scores = np.atleast_2d(np.asarray(scores, float))
    aucs, v10, v01, _ = reference_delong(y, scores)
    m, n = int(y.sum()), int((~y).sum())
    g = np.asarray(groups)
    clusters = sorted(set(g.tolist()))
    K = len(clusters)
    gp, gn = g[y], g[~y]
    cov = np.zeros((scores.shape[0],) * 2)
    for c in clusters:
        a = np.array([(v10[r][gp == c] - aucs[r]).sum() / m + (v01[r][gn == c] - aucs[r]).sum() / n
                      for r in range(scores.shape[0])])
        cov += np.outer(a, a)
    return aucs, cov * K / (K - 1)


def test_clustered_delong_matches_reference_and_keeps_size_in_paired_designs():
    rng = np.random.default_rng(8)
    n = 80  # pairs: a clean sample and its perturbed copy share a group
    base = rng.normal(size=n)
    y = np.r_[np.zeros(n, int), np.ones(n, int)]
    g = np.r_[np.arange(n), np.arange(n)]
    s1 = np.r_[base, base + 0.3 + 0.2 * rng.normal(size=n)]
    s2 = np.round(np.r_[base, base + 0.1 * rng.normal(size=n)], 1)
    a_ref, cov_ref = reference_clustered(y, np.vstack([s1, s2]), g)
    a, cov = delong_covariance(y, np.vstack([s1, s2]), groups=g)
    np.testing.assert_allclose(a, a_ref, atol=1e-12)
    np.testing.assert_allclose(cov, cov_ref, atol=1e-9, rtol=0)
    # null size: perturbed = clean + noise with no shift -> p < .05 about 5% of the time
    rej, reps = 0, 300
    for _ in range(reps):
        base = rng.normal(size=60)
        s = np.r_[base + 0.3 * rng.normal(size=60), base + 0.3 * rng.normal(size=60)]
        yy = np.r_[np.zeros(60, int), np.ones(60, int)]
        rej += delong_auc_test(yy, s, groups=np.r_[np.arange(60), np.arange(60)])["p"] < 0.05
    assert 0.02 <= rej / reps <= 0.09, rej / reps
    with pytest.raises(InputError, match="one cluster"):
        delong_covariance([0, 1, 0, 1], [1.0, 2, 3, 4], groups=[1, 1, 1, 1])


def test_weighted_auc_equals_auc_on_resampled_arrays():
    from radlens.stats import bootstrap_indices
    from radlens.stats.delong import auc_weighted

    rng = np.random.default_rng(2)
    y = rng.random(70) < 0.4
    s = np.round(rng.normal(size=70) + y, 1)  # ties
    idx = bootstrap_indices(70, 50, seed=3, strata=y)
    w = np.stack([np.bincount(i, minlength=70) for i in idx])
    got = auc_weighted(y, s, w)
    want = [auc(y[i], s[i]) for i in idx]
    np.testing.assert_allclose(got, want, atol=1e-12)
    # zero weight on every positive -> NaN, not an error
    assert np.isnan(auc_weighted(y, s, (~y).astype(float))[0])
