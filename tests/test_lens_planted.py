"""Planted-truth checks of the radiomic lens with exact ground truth (several data seeds):

* post = pre + a nonlinear signal driven by a planted subset -> the planted features rank on top;
* post = pre + fresh noise -> at most 5% of features reach q < 0.05 (headline and raw shift);
* post = pre under an orthogonal rotation -> the headline does not move, no discovery, and the
  summary names the rotation;
* the same orthogonal change of basis applied to pre and post -> every score is unchanged.
"""
import numpy as np
import pytest

from radlens.lens.compare import class_enrichment, precision_at_k
from radlens.lens.estimator import RadiomicLens
from radlens.lens.planted import planted_change, planted_lenses

N, P, D = 200, 20, 16
PLANTED = [2, 9, 15]
PARAMS = dict(hidden=16, n_seeds=2, max_epochs=150, patience=15)
SEEDS = (0, 1, 2, 3, 4)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def lenses():
    return planted_lenses(SEEDS, N, P, D, **PARAMS)


def test_planted_features_rank_on_top(lenses):
    precisions, precisions_z, leaks = [], [], []
    for s, (df, X, Z, lens) in lenses.items():
        Zp = planted_change(X, Z, PLANTED, "signal", strength=0.4, seed=10 + s)
        tab, summ = lens.shift_scores(Zp, n_null=100, n_boot=50, seed=s)
        truth = [df.columns[1 + j] for j in PLANTED]
        planted = tab["feature"].isin(truth)
        assert (tab.loc[planted, "shift_q_specific"] < 0.05).all()     # the feature-specific test finds them
        leaks.append(float((tab.loc[~planted, "shift_q_specific"] < 0.05).mean()))
        precisions.append(precision_at_k(tab, truth, by="shift"))     # raw Jacobian shift
        precisions_z.append(precision_at_k(tab, truth, by="shift_z"))
        top = tab.nsmallest(len(PLANTED), "shift_rank")
        assert (top["shift_q"] < 0.05).all()                     # the planted ones are significant
        assert summ["shift_global_p"] < 1e-3 and summ["global_p"] < 0.05
        assert (tab["shift_ci_low"] <= tab["shift"] + 1e-12).all() and (tab["shift"] <= tab["shift_ci_high"] + 1e-12).all()
        assert (tab["emphasis_ci_low"] <= tab["emphasis_ci_high"]).all()
    assert np.mean(precisions) >= 0.9, precisions
    assert np.mean(precisions_z) >= 0.9, precisions_z
    # the global null flags leakage into non-planted features; the specific one mostly does not
    assert np.mean(leaks) <= 0.1, leaks


def test_fresh_noise_gives_few_discoveries(lenses):
    fractions, fractions_raw, fractions_specific = [], [], []
    for s, (df, X, Z, lens) in lenses.items():
        Zp = planted_change(X, Z, [], "noise", strength=0.3, seed=20 + s)
        tab, summ = lens.shift_scores(Zp, n_null=100, n_boot=0, seed=s)
        fractions.append(float((tab["q"] < 0.05).mean()))
        fractions_raw.append(float((tab["shift_q"] < 0.05).mean()))
        fractions_specific.append(float((tab["shift_q_specific"] < 0.05).mean()))
        assert summ["global_p"] > 0.001 and summ["shift_global_p"] > 0.001
        # p-values under the null are not piled up near 0
        assert (tab["p"] < 0.05).mean() <= 0.25 and (tab["shift_p"] < 0.05).mean() <= 0.25
    assert np.mean(fractions) <= 0.05, fractions
    assert np.mean(fractions_raw) <= 0.05, fractions_raw
    assert np.mean(fractions_specific) <= 0.05, fractions_specific


def test_rotation_leaves_invariant_scores_at_zero(lenses):
    df, X, Z, lens = lenses[0]
    Zp = planted_change(X, Z, [], "rotate", seed=3)
    tab, summ = lens.shift_scores(Zp, n_null=50, n_boot=0)
    # invariant: sensitivity per feature, share change, emphasis, held-out R², CKA
    np.testing.assert_allclose(tab["sensitivity_post"], tab["sensitivity_pre"], rtol=1e-8)
    assert np.abs(tab["share_change"]).max() < 1e-10
    assert np.abs(tab["emphasis"]).max() < 1e-8 * tab["sensitivity_pre"].max()
    assert summ["r2_post_heldout"] == pytest.approx(summ["r2_pre_heldout"], abs=1e-8)
    assert summ["cka_pre_post"] == pytest.approx(1.0, abs=1e-8)
    # the headline makes no discovery; the summary names the rotation
    assert (tab["q"] < 0.05).mean() <= 0.05 and summ["n_significant"] == 0
    assert summ["recoding_share"] > 0.99 and summ["rotation_size"] > 0.5 and summ["no_emphasis_change"]
    assert "rotated" in summ["global_change"] and "100% is orthogonal re-coding" in summ["global_change"]
    # not invariant (by design): the head really changed coordinates, so the raw shift is large and "significant"
    assert tab["shift"].min() > 0.1 * tab["sensitivity_pre"].min()
    assert (tab["shift_q"] < 0.05).all()


def test_common_change_of_basis_changes_nothing(lenses):
    df, X, Z, lens = lenses[1]
    Zp = planted_change(X, Z, PLANTED, "signal", strength=0.4, seed=5)
    Q, _ = np.linalg.qr(np.random.default_rng(9).normal(size=(D, D)))
    lens_q = RadiomicLens(random_state=1, **PARAMS).fit(df, Z @ Q)
    a, sa = lens.shift_scores(Zp, n_null=40, n_boot=20)
    b, sb = lens_q.shift_scores(Zp @ Q, n_null=40, n_boot=20)
    for col in ("emphasis", "emphasis_ci_low", "z", "p", "shift", "shift_ci_low", "sensitivity_pre", "sensitivity_post",
                "share_change", "shift_z", "shift_p"):
        # the emphasis CI comes from float32 bootstrap Grams of both heads: a difference of sensitivities
        # (null / bootstrap Grams are float32 products: agreement to ~1e-6 relative)
        atol = 1e-6 if col == "emphasis_ci_low" else 1e-9
        np.testing.assert_allclose(b[col], a[col], rtol=1e-5, atol=atol, err_msg=col)
    assert list(a["feature"]) == list(b["feature"])


def test_class_enrichment_of_planted_class(lenses):
    df, X, Z, lens = lenses[2]
    # planted_radiomics names features by blocks of 5: columns 5..9 are glcm
    planted = [5, 6, 7, 8]
    Zp = planted_change(X, Z, planted, "signal", strength=0.5, seed=7)
    tab, _ = lens.shift_scores(Zp, n_null=50, n_boot=0)
    res = class_enrichment(tab, "glcm", k=4, n_perm=2000, seed=0)
    assert res["hits"] >= 3 and res["expected"] == pytest.approx(5 / 20)
    assert res["p_perm"] < 0.05 and res["p_hypergeom"] < 0.05


def test_global_rescaling_leaves_shares_unchanged(lenses):
    df, X, Z, lens = lenses[3]
    tab, summ = lens.shift_scores(2.5 * Z, n_null=20, n_boot=0)
    np.testing.assert_allclose(tab["sensitivity_post"], 2.5 * tab["sensitivity_pre"], rtol=1e-8)
    assert np.abs(tab["share_change"]).max() < 1e-10
    np.testing.assert_allclose(tab["shift"], 1.5 * tab["sensitivity_pre"], rtol=1e-8)   # D = 1.5 coef_pre
    assert np.abs(tab["emphasis"]).max() < 1e-8 * tab["sensitivity_pre"].max()
    assert summ["rescale_factor"] == pytest.approx(2.5) and summ["sensitivity_rescale"] == pytest.approx(2.5)
    assert summ["rescale_share"] > 0.99 and "rescaled ×2.50" in summ["global_change"]
    assert summ["n_significant"] == 0
