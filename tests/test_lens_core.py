"""Radiomic lens: closed-form pieces checked against independent references (sklearn Ridge, explicit
per-case Jacobians, explicit refits), estimator contract, save/load, errors."""
import numpy as np
import pandas as pd
import pytest

from radlens.errors import InputError
from radlens.lens.estimator import RadiomicLens, grouped_holdout
from radlens.lens.null import (bootstrap_weights, cluster_permutations, empirical_tail, gamma_tail,
                               replicate_scores)
from radlens.lens.planted import planted_change, planted_embeddings, planted_radiomics
from radlens.lens.scores import dsigma_moment, mean_norm_shift, sensitivity_sq, shares, shift_sq
from radlens.stats.ridge import batched_ridge_smoothers, group_kfold, ridge_cv, ridge_fit


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


FAST = dict(hidden=12, n_seeds=2, max_epochs=60, patience=10, batch_size=64)


@pytest.fixture(scope="module")
def small():
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    df = planted_radiomics(120, 12, seed=3)
    X = df.drop(columns="case_id").to_numpy()
    Z = planted_embeddings(X, 10, seed=3)
    with threadpool_limits(1):
        lens = RadiomicLens(**FAST).fit(df, Z, case_ids=df["case_id"])
    return df, X, Z, lens


# ----------------------------------------------------------------------------- ridge
def test_ridge_fit_matches_sklearn_weighted():
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(0)
    H, Y = rng.normal(size=(40, 5)), rng.normal(size=(40, 3))
    w = rng.integers(0, 3, 40).astype(float)
    coef, b = ridge_fit(H, Y, 0.2, w)
    ref = Ridge(alpha=0.2 * w.sum()).fit(H, Y, sample_weight=w)
    np.testing.assert_allclose(coef, ref.coef_.T, atol=1e-10)
    np.testing.assert_allclose(b, ref.intercept_, atol=1e-10)


def test_batched_smoothers_equal_individual_fits():
    rng = np.random.default_rng(1)
    H, Y = rng.normal(size=(30, 4)), rng.normal(size=(30, 6))
    W = np.vstack([np.ones(30), rng.integers(0, 3, 30)])
    S = batched_ridge_smoothers(H, 0.05, W)
    for b in range(2):
        np.testing.assert_allclose(S[b] @ Y, ridge_fit(H, Y, 0.05, W[b])[0], atol=1e-10)
    np.testing.assert_allclose(S[0] @ np.ones(30), 0, atol=1e-10)   # constants are annihilated


def test_ridge_cv_matches_brute_force_and_groups_never_split():
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(2)
    H, Y = rng.normal(size=(60, 4)), rng.normal(size=(60, 2))
    Y[:, 0] += H[:, 0]
    groups = np.repeat(np.arange(20), 3)
    alphas = np.array([1e-3, 1e-1, 10.0])
    out = ridge_cv(H, Y, groups, alphas, n_splits=4, seed=5)
    folds = group_kfold(groups, 4, seed=5)
    for tr, te in folds:
        assert not set(groups[tr]) & set(groups[te])
    for a_i, a in enumerate(alphas):
        sse = sst = 0.0
        for tr, te in folds:
            m = Ridge(alpha=a * tr.size).fit(H[tr], Y[tr])
            sse += ((Y[te] - m.predict(H[te])) ** 2).sum()
            sst += ((Y[te] - Y[tr].mean(0)) ** 2).sum()
        assert out["cv_r2"][a_i] == pytest.approx(1 - sse / sst, abs=1e-9)
    assert out["alpha"] == alphas[np.argmax(out["cv_r2"])]


# ----------------------------------------------------------------------------- scores
def _explicit(W1, b1, X, coef, act="tanh"):
    """Per-case Jacobians J_i = coef.T diag(σ'_i) W1 computed one by one."""
    u = X @ W1.T + b1
    dsig = 1 - np.tanh(u) ** 2
    return np.stack([coef.T @ np.diag(dsig[i]) @ W1 for i in range(X.shape[0])]), dsig


def test_closed_form_scores_equal_explicit_jacobians():
    rng = np.random.default_rng(4)
    n, p, m, d = 25, 6, 5, 7
    X, W1, b1 = rng.normal(size=(n, p)), rng.normal(size=(m, p)), rng.normal(size=m)
    c_pre, c_post = rng.normal(size=(m, d)), rng.normal(size=(m, d))
    J_pre, dsig = _explicit(W1, b1, X, c_pre)
    J_post, _ = _explicit(W1, b1, X, c_post)
    C = dsigma_moment(dsig)
    col_pre = np.linalg.norm(J_pre, axis=1)          # (n, p): ‖J_i[:, r]‖
    col_d = np.linalg.norm(J_post - J_pre, axis=1)
    np.testing.assert_allclose(sensitivity_sq(W1, c_pre, C), (col_pre ** 2).mean(0), rtol=1e-10)
    np.testing.assert_allclose(shift_sq(W1, c_post - c_pre, C), (col_d ** 2).mean(0), rtol=1e-10)
    np.testing.assert_allclose(mean_norm_shift(W1, c_post - c_pre, dsig, chunk=7), col_d.mean(0), rtol=1e-10)
    s = shares(sensitivity_sq(W1, c_pre, C))
    assert s.sum() == pytest.approx(1.0)
    # shares ignore a global rescaling of the head (= of the embeddings)
    np.testing.assert_allclose(shares(sensitivity_sq(W1, 3.7 * c_pre, C)), s, rtol=1e-12)


def test_replicates_equal_explicit_refits():
    rng = np.random.default_rng(6)
    n, p, m, d = 30, 4, 5, 6
    X, W1, b1 = rng.normal(size=(n, p)), rng.normal(size=(m, p)), rng.normal(size=m)
    H = np.tanh(X @ W1.T + b1)
    dsig = 1 - H ** 2
    Zpre, E = rng.normal(size=(n, d)), rng.normal(size=(n, d))
    alpha = 0.03
    c_pre = ridge_fit(H, Zpre, alpha)[0]
    perms = cluster_permutations(np.arange(n), 3, seed=1)
    W = bootstrap_weights(n, 2, seed=2)
    rep = replicate_scores(W1, H, dsig, alpha, c_pre, E, perms, W, batch=2, dtype=np.float64)
    C = dsigma_moment(dsig)
    for b in range(3):
        c_post = ridge_fit(H, Zpre + E[perms[b]], alpha)[0]
        np.testing.assert_allclose(rep["null_shift_sq"][b], shift_sq(W1, c_post - c_pre, C), rtol=1e-8)
        np.testing.assert_allclose(rep["null_sens_post_sq"][b], sensitivity_sq(W1, c_post, C), rtol=1e-8)
    for b in range(2):
        d_b = ridge_fit(H, Zpre + E, alpha, W[b])[0] - ridge_fit(H, Zpre, alpha, W[b])[0]
        np.testing.assert_allclose(rep["boot_shift_sq"][b], shift_sq(W1, d_b, dsigma_moment(dsig, W[b])), rtol=1e-8)


def test_cluster_permutations_move_whole_patients():
    g = np.array(["a", "a", "b", "c", "c", "d", "e", "e", "e", "f"])
    P = cluster_permutations(g, 50, seed=0)
    for perm in P:
        assert sorted(perm) == list(range(g.size))
        for k in np.unique(g):
            src = g[perm[g == k]]
            assert len(set(src)) == 1 and (g == src[0]).sum() == (g == k).sum()
    assert len({tuple(p) for p in P}) > 10


def test_tails_hand_computed():
    null = np.array([[1.0], [2.0], [3.0], [4.0]])
    assert empirical_tail(np.array([3.0]), null)[0] == pytest.approx(3 / 5)
    from scipy import stats as st

    rng = np.random.default_rng(0)
    draws = st.gamma.rvs(3.0, scale=2.0, size=(20000, 1), random_state=rng)
    assert gamma_tail(np.array([15.0]), draws)[0] == pytest.approx(st.gamma.sf(15.0, 3.0, scale=2.0), rel=0.05)


def test_grouped_holdout_keeps_patients_together():
    g = np.repeat([f"p{i}" for i in range(30)], 2)
    tr, va = grouped_holdout(g, 0.2, seed=1)
    assert not set(g[tr]) & set(g[va])
    assert 10 <= va.size <= 16 and tr.size + va.size == g.size


# ----------------------------------------------------------------------------- estimator
def test_not_fitted_and_bad_params():
    from sklearn.base import clone
    from sklearn.exceptions import NotFittedError

    lens = RadiomicLens(hidden=7)
    assert clone(lens).get_params()["hidden"] == 7
    with pytest.raises(NotFittedError, match="not fitted"):
        lens.refit_head(np.zeros((3, 2)))
    with pytest.raises(NotFittedError):
        lens.shift_scores(np.zeros((3, 2)))
    X, Z = np.random.default_rng(0).normal(size=(20, 3)), np.random.default_rng(1).normal(size=(20, 4))
    with pytest.raises(InputError, match=r"activation='swish'.*tanh"):
        RadiomicLens(activation="swish").fit(X, Z)
    with pytest.raises(InputError, match=r"val_fraction=0.7"):
        RadiomicLens(val_fraction=0.7).fit(X, Z)
    with pytest.raises(InputError, match=r"shape \(19, 4\)"):
        RadiomicLens().fit(X, Z[:19])


def test_fit_attributes_and_head_matches_direct_ridge(small):
    df, X, Z, lens = small
    assert lens.W1_.shape == (2, 12, 12) and lens.alpha_.shape == (2,)
    assert list(lens.feature_names_in_) == [c for c in df.columns if c != "case_id"]
    H = np.tanh(lens.X_ @ lens.W1_[0].T + lens.b1_[0])
    coef, _ = ridge_fit(H, lens.Z_pre_, lens.alpha_[0])
    np.testing.assert_allclose(lens.head_pre_.coef[0], coef, atol=1e-10)
    # frame: global scaling -> mean square of the centred frame coordinates is 1
    assert (lens.Z_pre_ ** 2).mean() == pytest.approx(1.0)
    assert 0.3 < lens.score(df, Z) <= 1.0


def test_same_seed_same_numbers(small):
    df, X, Z, lens = small
    again = RadiomicLens(**FAST).fit(df, Z)
    np.testing.assert_array_equal(again.W1_, lens.W1_)
    Zp = planted_change(X, Z, [0, 1], "signal", 0.5, seed=1)
    a, _ = lens.shift_scores(Zp, n_null=30, n_boot=20, seed=4)
    b, _ = again.shift_scores(Zp, n_null=30, n_boot=20, seed=4)
    pd.testing.assert_frame_equal(a, b)


def test_save_load_round_trip(small, tmp_path):
    df, X, Z, lens = small
    lens.save(tmp_path / "lens")
    back = RadiomicLens.load(tmp_path / "lens")
    for k in ("W1_", "b1_", "alpha_", "X_", "Z_pre_", "val_masks_"):
        np.testing.assert_array_equal(getattr(back, k), getattr(lens, k))
    np.testing.assert_array_equal(back.case_ids_, df["case_id"].to_numpy())
    assert back.get_params() == lens.get_params()
    Zp = planted_change(X, Z, [2], "signal", 0.5, seed=2)
    a, sa = lens.shift_scores(Zp, n_null=20, n_boot=10)
    b, sb = back.shift_scores(Zp, n_null=20, n_boot=10)
    pd.testing.assert_frame_equal(a, b)
    with np.load(tmp_path / "lens" / "lens.npz", allow_pickle=False) as z:   # never pickled
        assert all(z[k].dtype != object for k in z.files)
    with pytest.raises(InputError, match="lacks lens.json"):
        RadiomicLens.load(tmp_path / "nowhere")


def test_post_with_wrong_shape_is_explained(small):
    df, X, Z, lens = small
    with pytest.raises(InputError, match="dimension 10"):
        lens.shift_scores(Z[:, :5])
    with pytest.raises(InputError, match="fitted on 120 cases"):
        lens.refit_head(Z[:50])
    with pytest.raises(InputError, match=r"n_null=3 not allowed.*>= 10"):
        lens.shift_scores(Z, n_null=3)
    Zbad = Z.copy()
    Zbad[4, 0] = np.nan
    with pytest.raises(InputError, match=r"non-finite values for 1 case\(s\), e.g. \['c00004'\]"):
        lens.shift_scores(Zbad)


def test_specific_null_moments_match_residual_permutations():
    """Analytic Freedman–Lane moments vs. explicit residual permutations of the reduced-lens fit."""
    from radlens.lens.specific import specific_moments

    rng = np.random.default_rng(0)
    n, p, m, d, alpha = 120, 4, 6, 30, 0.01
    X, W1, b1 = rng.normal(size=(n, p)), rng.normal(size=(m, p)) / 2, rng.normal(size=m) * 0.3
    E = np.tanh(X[:, [0]] @ rng.normal(size=(1, 3))) @ rng.normal(size=(3, d)) + 0.5 * rng.normal(size=(n, d))
    H = np.tanh(X @ W1.T + b1)
    C = dsigma_moment(1 - H ** 2)
    S = batched_ridge_smoothers(H, alpha)[0]
    mean, var = specific_moments(W1, b1, X, E, S, C, alpha, "tanh", chunk=3)
    Ec = E - E.mean(0)
    for r in range(p):
        Hr = np.tanh(X @ W1.T + b1 - np.outer(X[:, r], W1[:, r]))
        Hc = Hr - Hr.mean(0)
        Ehat = Hc @ np.linalg.solve(Hc.T @ Hc + alpha * n * np.eye(m), Hc.T @ Ec)   # reduced ridge fit
        R = Ec - Ehat
        T = np.array([shift_sq(W1, S @ (Ehat + R[rng.permutation(n)]), C)[r] for _ in range(1500)])
        assert mean[r] == pytest.approx(T.mean(), rel=0.04)
        assert 0.8 * T.var() <= var[r] <= 1.35 * T.var()        # Gaussian approximation of the 4th moments
