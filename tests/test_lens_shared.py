"""Shared-work paths of the lens (issue #15 speed): several posts of one lens in one pass, the raw
bootstrap from the pre/post replicate heads, the feature-specific moments in (m, m) blocks, and the
layer-wise lens in worker processes — each against the direct computation."""
import numpy as np
import pandas as pd
import pytest

from radlens.lens.estimator import RadiomicLens
from radlens.lens.planted import planted_change, planted_embeddings, planted_radiomics


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def lens3():
    df = planted_radiomics(160, 12, seed=5)
    X = df.drop(columns="case_id").to_numpy()
    Z = planted_embeddings(X, 20, seed=5)
    g = np.array([f"p{i // 2}" for i in range(len(df))])
    lens = RadiomicLens(hidden=10, n_seeds=2, max_epochs=40, patience=8).fit(df, Z, groups=g)
    posts = {f"t{t}": planted_change(X, (1 + 0.4 * t) * Z, [t, t + 4], "signal", 0.5, seed=t) for t in range(3)}
    return lens, Z, posts


def _assert_tables_close(a, b, rtol):
    a = a.sort_values("feature").reset_index(drop=True)
    b = b.sort_values("feature").reset_index(drop=True)
    assert list(a.columns) == list(b.columns)
    for c in a.columns:
        if pd.api.types.is_numeric_dtype(a[c]) and a[c].dtype != bool:
            x, y = a[c].to_numpy(float), b[c].to_numpy(float)
            np.testing.assert_array_equal(np.isnan(x), np.isnan(y), err_msg=c)
            ok = ~np.isnan(x)
            scale = max(np.abs(x[ok]).max(), 1e-12) if ok.any() else 1.0
            assert np.abs(x[ok] - y[ok]).max() <= rtol * scale, c
        else:
            assert a[c].tolist() == b[c].tolist(), c


def test_several_posts_in_one_pass_equal_one_at_a_time(lens3):
    from radlens.lens.shift import shift_tables

    lens, _, posts = lens3
    many = shift_tables(lens, posts, n_null=40, n_boot=30, seed=3)
    assert list(many) == list(posts)
    for t, Zq in posts.items():
        one, summ = lens.shift_scores(Zq, n_null=40, n_boot=30, seed=3, task=t)
        _assert_tables_close(one, many[t][0], 1e-5)     # float32 replicate products, other GEMM shapes
        assert many[t][1]["global_change"] == summ["global_change"]
        assert many[t][1]["n_significant"] == summ["n_significant"]


def test_raw_bootstrap_from_pre_and_post_heads_equals_its_own_factor(lens3):
    from radlens.lens.changes import score_changes

    lens, Z, posts = lens3
    Yp = lens.Z_pre_
    Yq = lens.transform_embeddings(posts["t1"])
    tiny = Yp + 1e-5 * (Yq - Yp)          # a change far below DIFF_MIN: must keep its own factor
    kw = dict(n_null=0, n_boot=25, seed=1)
    for Y in (Yq, tiny):
        E = Y - Yp
        ref = score_changes(lens, {"raw": E}, **kw)["raw"]["boot"]
        got = score_changes(lens, {"raw": E}, sens_boot={"pre": Yp, "post": Y}, boot_diff={"raw": ("post", "pre")},
                            **kw)["raw"]["boot"]
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-12 * np.abs(ref).max())


def test_block_moments_equal_the_two_by_two_block_algebra():
    """specific_moments_many (m × m blocks) against a transcription of the (2m × 2m) formulas."""
    from radlens.lens.scores import dsigma_moment
    from radlens.lens.specific import change_basis, specific_moments_many
    from radlens.stats.ridge import ridge_smoother

    rng = np.random.default_rng(1)
    n, p, m, d, alpha = 90, 5, 6, 12, 0.02
    X, W1, b1 = rng.normal(size=(n, p)), rng.normal(size=(m, p)) / 2, rng.normal(size=m) * 0.3
    Es = [rng.normal(size=(n, d)), np.tanh(X[:, :2]) @ rng.normal(size=(2, d)) + 0.3 * rng.normal(size=(n, d))]
    H = np.tanh(X @ W1.T + b1)
    C = dsigma_moment(1 - H ** 2)
    S = ridge_smoother(H, alpha)
    got = specific_moments_many(W1, b1, X, [change_basis(E) for E in Es], S, C, alpha, "tanh", chunk=2)
    SS, I = S @ S.T, np.eye(m)
    for (mean, var), E in zip(got, Es):
        F, lam = change_basis(E)
        for r in range(p):
            Hc = np.tanh(X @ W1.T + b1 - np.outer(X[:, r], W1[:, r]))
            Hc = Hc - Hc.mean(0)
            G = Hc.T @ Hc
            Ai = np.linalg.inv(G + alpha * n * I)
            P = Hc.T @ F
            NA = S @ Hc @ Ai
            Mw = C * np.outer(W1[:, r], W1[:, r])
            L = np.vstack([I, Ai])
            Mid = np.block([[np.zeros((m, m)), -I], [-I, G]])
            Q1, QL = P @ P.T, (P * lam) @ P.T
            r2 = lam.sum() - 2 * np.trace(Ai @ Q1) + np.trace(G @ Ai @ Q1 @ Ai)
            mu = np.trace(Mw @ NA @ Q1 @ NA.T) + r2 / (n - 1) * np.trace(Mw @ SS)
            AB = NA @ Q1 @ L.T
            ARRA = NA @ QL @ NA.T + AB @ Mid @ AB.T
            t1 = 4 * np.trace(SS @ Mw @ ARRA @ Mw) / (n - 1)
            MB = Mid @ L @ Q1 @ L.T
            trS2 = ((lam ** 2).sum() + 2 * np.trace(Mid @ L @ QL @ L.T) + np.trace(MB @ MB)) / (n - 1) ** 2
            v = t1 + 2 * trS2 * np.trace(Mw @ SS @ Mw @ SS)
            assert mean[r] == pytest.approx(mu, rel=1e-6)     # P is a float32 product
            assert var[r] == pytest.approx(v, rel=1e-5)


def test_layers_in_worker_processes_and_tasks_in_one_pass_equal_the_plain_runs(tmp_path):
    from radlens.io.artifacts import Embeddings, read_table, write_embeddings, write_table
    from radlens.lens.layers import compare_layers, fit_pre_layers, refit_post_layers, refit_post_layers_tasks

    df = planted_radiomics(100, 10, seed=7)
    X = df.drop(columns="case_id").to_numpy()
    cid = df["case_id"].to_numpy()
    layers = ["a", "b", "c"]
    pre = {L: planted_embeddings(X, 6 + 4 * i, seed=20 + i) for i, L in enumerate(layers)}

    def write(path, arrays):
        write_embeddings(path, Embeddings(cid, {f"roi@{L}": a.astype(np.float32) for L, a in arrays.items()},
                                          {"layers": list(arrays)}))

    write(tmp_path / "pre.npz", pre)
    for k in range(2):
        write(tmp_path / f"t{k}.npz", {L: planted_change(X, pre[L], [k, k + 3], "signal", 0.3 * i, seed=k)
                                       for i, L in enumerate(layers)})
    write_table(df, tmp_path / "rad.parquet")
    fit = dict(hidden=8, n_seeds=2, max_epochs=30, patience=6)
    fit_pre_layers(tmp_path / "rad.parquet", tmp_path / "pre.npz", tmp_path / "lens1", jobs=1, **fit)
    fit_pre_layers(tmp_path / "rad.parquet", tmp_path / "pre.npz", tmp_path / "lens2", jobs=2, **fit)
    for L in layers:   # the same lens whatever the number of worker processes
        a = np.load(tmp_path / "lens1" / L / "lens.npz")
        b = np.load(tmp_path / "lens2" / L / "lens.npz")
        assert sorted(a.files) == sorted(b.files)
        for f in a.files:
            np.testing.assert_array_equal(a[f], b[f])
    kw = dict(n_null=20, n_boot=20, seed=2)
    outs = {f"t{k}": tmp_path / "many" / f"shifts_t{k}.parquet" for k in range(2)}
    refit_post_layers_tasks(tmp_path / "lens1", {t: tmp_path / f"{t}.npz" for t in outs}, outs, jobs=2, **kw)
    for t, o in outs.items():
        one = refit_post_layers(tmp_path / "lens1", tmp_path / f"{t}.npz", tmp_path / "one" / o.name, task=t, **kw)
        a, b = read_table(one), read_table(o)
        for L in layers:
            _assert_tables_close(a[a["layer"] == L].drop(columns=["layer"]),
                                 b[b["layer"] == L].drop(columns=["layer"]), 1e-5)
    w = compare_layers(list(outs.values()), tmp_path / "cmp", jobs=2)
    assert all(p.exists() for v in w.values() for p in v)
    assert all((tmp_path / "cmp" / L / "rank_correlation.csv").exists() for L in layers)


def test_jobs_1_and_jobs_2_write_identical_files_whatever_the_thread_count(tmp_path):
    """The layer-wise lens runs every layer on one BLAS / torch thread in this process as in a worker
    (radlens.lens.layers.one_thread). Before, the ``jobs=1`` path kept the caller's BLAS threads: two
    OpenBLAS threads sum a float32 GEMM in another order than one, and the shift tables differed by up
    to 1e-5 (quick demo). Here the caller runs two BLAS and two torch threads; the files must still be
    equal bit for bit (n = 150 cases, d = 48: replicate GEMMs large enough for OpenBLAS to split)."""
    import torch
    from threadpoolctl import threadpool_limits

    from radlens.io.artifacts import Embeddings, read_table, write_embeddings, write_table
    from radlens.lens.layers import compare_layers, fit_pre_layers, refit_post_layers_tasks

    df = planted_radiomics(150, 10, seed=11)
    X = df.drop(columns="case_id").to_numpy()
    cid = df["case_id"].to_numpy()
    layers = ["a", "b"]
    pre = {L: planted_embeddings(X, 48, seed=30 + i) for i, L in enumerate(layers)}

    def write(path, arrays):
        write_embeddings(path, Embeddings(cid, {f"roi@{L}": a.astype(np.float32) for L, a in arrays.items()},
                                          {"layers": list(arrays)}))

    write(tmp_path / "pre.npz", pre)
    tasks = ["t0", "t1"]
    for k, t in enumerate(tasks):
        write(tmp_path / f"{t}.npz", {L: planted_change(X, pre[L], [k, k + 3], "signal", 0.4, seed=k) for L in layers})
    write_table(df, tmp_path / "rad.parquet")
    prev = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with threadpool_limits(2):
            for jobs in (1, 2):
                d = tmp_path / f"jobs{jobs}"
                fit_pre_layers(tmp_path / "rad.parquet", tmp_path / "pre.npz", d / "lens", jobs=jobs,
                               hidden=8, n_seeds=2, max_epochs=30, patience=6)
                outs = {t: d / f"shifts_{t}.parquet" for t in tasks}
                refit_post_layers_tasks(d / "lens", {t: tmp_path / f"{t}.npz" for t in tasks}, outs,
                                        n_null=30, n_boot=30, seed=4, jobs=jobs)
                compare_layers(list(outs.values()), d / "cmp", jobs=jobs, lens=d / "lens",
                               embeddings={t: str(tmp_path / f"{t}.npz") for t in tasks}, n_null=30, n_boot=30,
                               figure_layers=[])
    finally:
        torch.set_num_threads(prev)
    one, two = tmp_path / "jobs1", tmp_path / "jobs2"
    for L in layers:
        a, b = np.load(one / "lens" / L / "lens.npz"), np.load(two / "lens" / L / "lens.npz")
        for f in a.files:
            np.testing.assert_array_equal(a[f], b[f], err_msg=f"lens {L} {f}")
    for t in tasks:
        a, b = read_table(one / f"shifts_{t}.parquet"), read_table(two / f"shifts_{t}.parquet")
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    csvs = sorted(p.relative_to(one / "cmp") for p in (one / "cmp").rglob("*.csv"))
    assert len(csvs) >= 8 and any(p.name == "contrast.csv" for p in csvs), csvs
    for p in csvs:
        pd.testing.assert_frame_equal(pd.read_csv(one / "cmp" / p), pd.read_csv(two / "cmp" / p),
                                      check_exact=True, obj=str(p))
