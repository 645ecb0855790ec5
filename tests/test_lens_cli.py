"""Radiomic lens end to end through the CLI: fit-pre -> refit-post (two tasks) -> compare, on tiny
planted data; id-mismatch and grouping errors name the cases and the fix."""
import json

import numpy as np
import pandas as pd
import pytest

from radlens.cli import main
from radlens.io.artifacts import Embeddings, read_table, read_table_meta, write_embeddings, write_table
from radlens.lens.planted import planted_change, planted_embeddings, planted_radiomics

FIT = ["--hidden", "12", "--seeds", "2", "--max-epochs", "60", "--patience", "10"]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    d = tmp_path_factory.mktemp("lens_cli")
    df = planted_radiomics(100, 14, seed=1)
    X = df.drop(columns="case_id").to_numpy()
    Z = planted_embeddings(X, 12, seed=1)
    write_table(df, d / "radiomics.parquet")
    cid = df["case_id"].to_numpy()
    # embeddings in another case order: the join must use case_id
    perm = np.random.default_rng(0).permutation(len(cid))
    write_embeddings(d / "pre.npz", Embeddings(cid[perm], {"roi": Z[perm].astype(np.float32)}, {}))
    for task, planted in (("texture", [5, 6]), ("shape", [10, 11])):
        Zp = planted_change(X, Z, planted, "signal", 0.5, seed=len(task))
        write_embeddings(d / f"{task}.npz", Embeddings(cid, {"roi": Zp.astype(np.float32)}, {}))
    pd.DataFrame({"case_id": cid, "patient_id": [f"p{i // 2}" for i in range(len(cid))]}).to_csv(d / "groups.csv",
                                                                                                   index=False)
    return d


def test_fit_refit_compare(study):
    d = study
    assert main(["fit-pre", "--radiomics", str(d / "radiomics.parquet"), "--embeddings", str(d / "pre.npz"),
                 "--groups", str(d / "groups.csv"), "--out", str(d / "lens"), *FIT]) == 0
    lens_meta = json.loads((d / "lens" / "lens.json").read_text(encoding="utf-8"))
    assert lens_meta["extra"]["n_patients"] == 50 and lens_meta["extra"]["pooling"] == "roi"
    assert len(read_table(d / "lens" / "fit_report.csv")) == 2
    for task in ("texture", "shape"):
        assert main(["refit-post", "--lens", str(d / "lens"), "--embeddings", str(d / f"{task}.npz"),
                     "--n-null", "40", "--n-boot", "20", "--out", str(d / f"shifts_{task}.parquet")]) == 0
    tab = read_table(d / "shifts_texture.parquet")
    for col in ("feature", "feature_class", "image_type", "emphasis", "emphasis_ci_low", "emphasis_ci_high", "z", "p",
                "q", "rank", "shift", "shift_ci_low", "shift_ci_high", "shift_z", "shift_p", "shift_q",
                "sensitivity_pre", "sensitivity_post", "share_change"):
        assert col in tab.columns, col
    assert len(tab) == 14 and sorted(tab["rank"]) == list(range(1, 15))
    assert abs(tab.loc[tab["rank"] == 1, "emphasis"].item()) == tab["emphasis"].abs().max()
    assert set(tab["feature_class"]) <= {"firstorder", "glcm", "glrlm"} and set(tab["image_type"]) == {"original"}
    summ = read_table_meta(d / "shifts_texture.parquet")["summary"]
    assert summ["task"] == "texture" and summ["n_cases"] == 100
    assert json.loads((d / "shifts_texture.json").read_text(encoding="utf-8"))["cka_pre_post"] == pytest.approx(summ["cka_pre_post"])
    # a planted texture feature (5 or 6, class glcm) leads the table (precision is tested elsewhere)
    assert tab.loc[tab["rank"] == 1, "feature"].item() in {"original_glcm_F005", "original_glcm_F006"}

    out = d / "cmp"
    assert main(["compare", str(d / "shifts_texture.parquet"), str(d / "shifts_shape.parquet"),
                 "--top-k", "5", "--out", str(out)]) == 0
    for stem in ("heatmap", "top_k_bars", "rank_correlation", "class_totals"):
        for ext in ("png", "svg"):
            assert (out / f"{stem}.{ext}").stat().st_size > 1000
    corr = pd.read_csv(out / "rank_correlation.csv", index_col="task")
    assert corr.loc["texture", "texture"] == 1.0 and -1 <= corr.loc["texture", "shape"] <= 1
    ct = pd.read_csv(out / "class_totals.csv")
    np.testing.assert_allclose(ct.groupby("task")["emphasis_share"].sum(), 1.0)
    # class totals equal the sum of squared emphasis changes of the table (hand computation)
    glcm = (tab.loc[tab["feature_class"] == "glcm", "emphasis"] ** 2).sum()
    got = ct.query("task == 'texture' and feature_class == 'glcm'")["emphasis_sq_total"].item()
    assert got == pytest.approx(glcm)
    assert len(pd.read_csv(out / "top_k.csv")) == 10


def test_id_mismatch_lists_the_cases(study, capsys):
    d = study
    df = read_table(d / "radiomics.parquet")
    write_table(df.iloc[3:], d / "radiomics_short.parquet")
    rc = main(["fit-pre", "--radiomics", str(d / "radiomics_short.parquet"), "--embeddings", str(d / "pre.npz"),
               "--out", str(d / "lens_bad"), *FIT])
    err = capsys.readouterr().err
    assert rc == 2 and "case_id mismatch" in err and "c00000" in err and "3 only in embeddings" in err


def test_missing_patient_is_named(study, capsys):
    d = study
    pd.DataFrame({"case_id": ["c00000"], "patient_id": ["p0"]}).to_csv(d / "groups_short.csv", index=False)
    rc = main(["fit-pre", "--radiomics", str(d / "radiomics.parquet"), "--embeddings", str(d / "pre.npz"),
               "--groups", str(d / "groups_short.csv"), "--out", str(d / "lens_bad2"), *FIT])
    err = capsys.readouterr().err
    assert rc == 2 and "99 case(s) have no patient_id" in err and "c00001" in err


def test_refit_with_other_cases_is_refused(study, capsys):
    d = study
    if not (d / "lens").exists():
        pytest.skip("needs the lens of test_fit_refit_compare")
    emb = Embeddings(np.array([f"x{i}" for i in range(100)]), {"roi": np.zeros((100, 12), np.float32)}, {})
    write_embeddings(d / "other.npz", emb)
    rc = main(["refit-post", "--lens", str(d / "lens"), "--embeddings", str(d / "other.npz"),
               "--out", str(d / "shifts_other.parquet")])
    err = capsys.readouterr().err
    assert rc == 2 and "case_id mismatch" in err and "x0" in err


def test_class_enrichment_hand_computed():
    from radlens.lens.compare import class_enrichment

    tab = pd.DataFrame({"feature": list("abcdef"), "feature_class": ["g", "g", "s", "s", "s", "s"],
                        "shift": [6, 5, 4, 3, 2, 1]})
    r = class_enrichment(tab, "g", k=2, n_perm=20000, seed=1, by="shift")
    # P(both of the 2 'g' among a random 2 of 6) = 1 / C(6, 2) = 1/15
    assert r["hits"] == 2 and r["fraction"] == 1.0 and r["expected"] == pytest.approx(1 / 3)
    assert r["p_hypergeom"] == pytest.approx(1 / 15)
    assert r["p_perm"] == pytest.approx(1 / 15, abs=0.01)
    from radlens.errors import InputError

    with pytest.raises(InputError, match="not in the table"):
        class_enrichment(tab, "ngtdm", k=2, by="shift")
    with pytest.raises(InputError, match="k=9"):
        class_enrichment(tab, "g", k=9, by="shift")


def test_nonfinite_pre_case_goes_to_failures(study):
    d = study
    df = read_table(d / "radiomics.parquet")
    X = df.drop(columns="case_id").to_numpy()
    Z = planted_embeddings(X, 12, seed=1).astype(np.float32)
    Z[7, 3] = np.nan
    cid = df["case_id"].to_numpy()
    write_embeddings(d / "pre_nan.npz", Embeddings(cid, {"roi": Z}, {}))
    assert main(["fit-pre", "--radiomics", str(d / "radiomics.parquet"), "--embeddings", str(d / "pre_nan.npz"),
                 "--out", str(d / "lens_nan"), *FIT]) == 0
    fail = pd.read_csv(d / "lens_nan" / "failures.csv")
    assert fail["case_id"].tolist() == ["c00007"] and fail["stage"].tolist() == ["fit-pre"]
    # refit-post accepts post embeddings of all cases and ignores the excluded one
    assert main(["refit-post", "--lens", str(d / "lens_nan"), "--embeddings", str(d / "texture.npz"),
                 "--n-null", "10", "--n-boot", "0", "--no-specific", "--out", str(d / "shifts_nan.parquet")]) == 0
    assert read_table_meta(d / "shifts_nan.parquet")["summary"]["n_cases"] == 99


def test_compare_with_lens_writes_decomposition_and_alignment(study):
    d = study
    if not (d / "lens" / "lens.json").exists():
        test_fit_refit_compare(study)
    cid = read_table(d / "radiomics.parquet")["case_id"].to_numpy()
    X = read_table(d / "radiomics.parquet").drop(columns="case_id").to_numpy()
    labels = pd.DataFrame({"case_id": cid, "patient_id": [f"p{i // 2}" for i in range(len(cid))],
                           "task_texture": (X[:, 5] + X[:, 6] > 0).astype(int)})
    labels.loc[:4, "task_texture"] = np.nan          # unlabelled cases are left out
    labels.to_csv(d / "labels.csv", index=False)
    out = d / "cmp2"
    assert main(["compare", str(d / "shifts_texture.parquet"), str(d / "shifts_shape.parquet"), "--lens", str(d / "lens"),
                 "--embeddings", f"texture={d / 'texture.npz'}", "--embeddings", f"shape={d / 'shape.npz'}",
                 "--labels", str(d / "labels.csv"), "--n-null", "30", "--n-boot", "20", "--n-perm", "99",
                 "--out", str(out)]) == 0
    common, contrast, al = (pd.read_csv(out / f) for f in ("common.csv", "contrast.csv", "alignment.csv"))
    assert list(common.columns) == ["feature", "feature_class", "common_shift", "common_z", "common_p", "common_q",
                                    "common_rank"]
    assert list(contrast.columns) == ["task", "feature", "feature_class", "contrast", "contrast_ci_low",
                                      "contrast_ci_high", "contrast_z", "contrast_p", "contrast_q", "contrast_rank"]
    assert list(al.columns) == ["task", "alignment", "alignment_p", "n_features"]
    # two tasks: the specific changes are mirror images, so the contrasts are identical
    w = contrast.pivot(index="feature", columns="task", values="contrast")
    np.testing.assert_allclose(w["texture"], w["shape"], rtol=1e-6)
    assert len(common) == 14 and len(contrast) == 28
    # the shape task has no label column: a NaN row, the texture task a real one
    assert al.set_index("task").loc["shape", "alignment"] != al.set_index("task").loc["shape", "alignment"]
    assert np.isfinite(al.set_index("task").loc["texture", "alignment"])
    for stem in ("common_heatmap", "contrast_heatmap", "alignment", "heatmap"):
        assert (out / f"{stem}.png").stat().st_size > 1000
    dec = json.loads((out / "decomposition.json").read_text(encoding="utf-8"))
    assert dec["mirror"] and dec["tasks"] == ["texture", "shape"]


def test_compare_lens_errors_name_the_fix(study, capsys):
    d = study
    assert main(["compare", "--embeddings", f"texture={d / 'texture.npz'}", "--out", str(d / "x")]) == 2
    assert "--lens" in capsys.readouterr().err
    assert main(["compare", str(d / "shifts_texture.parquet"), "--labels", str(d / "groups.csv"),
                 "--out", str(d / "x")]) == 2
    assert "needs --lens" in capsys.readouterr().err


def test_class_enrichment_signed_ranks_the_largest_positive_values():
    """signed=True: the top-k are the largest values, not the largest |values| (a task's signed
    specific change: what it emphasised more than the other tasks did)."""
    from radlens.lens.compare import class_enrichment

    tab = pd.DataFrame({"feature": list("abcdef"), "feature_class": ["s", "s", "g", "g", "s", "s"],
                        "specific_change": [-9.0, -8.0, 3.0, 2.0, 1.0, 0.5]})
    r = class_enrichment(tab, "g", k=2, n_perm=2000, seed=0, by="specific_change", signed=True)
    assert r["top_features"] == ["c", "d"] and r["hits"] == 2
    assert r["p_hypergeom"] == pytest.approx(1 / 15)          # both 'g' among 2 of 6: 1 / C(6, 2)
    r = class_enrichment(tab, "g", k=2, n_perm=2000, seed=0, by="specific_change")
    assert r["top_features"] == ["a", "b"] and r["hits"] == 0  # |value|: the negative ones lead


def test_enrichment_stage_ranks_by_the_task_specific_change(tmp_path):
    """With several tasks and compare's association.csv, the study's enrichment check ranks each task
    by its signed specific change; the shared emphasis ranking (same features on top for every task)
    is used only without it."""
    from radlens.io.artifacts import read_table, write_table
    from radlens.study.stages import enrichment

    feats = [f"f{i}" for i in range(8)]
    cls = ["firstorder"] * 4 + ["glcm"] * 4
    shared = [8.0, 7.0, 6.0, 5.0, 1.0, 0.5, 0.4, 0.3]   # every task's emphasis: first order on top
    paths = []
    for task in ("texture", "intensity"):
        p = tmp_path / f"shifts_{task}.parquet"
        write_table(pd.DataFrame({"task": task, "feature": feats, "feature_class": cls, "emphasis": shared}), p)
        paths.append(p)
    assoc = pd.DataFrame({"task": ["texture"] * 8 + ["intensity"] * 8, "feature": feats * 2,
                          "association": 0.0,
                          "specific_change": [-1, -1, -1, -1, 2, 3, 1, 0.5] + [2, 3, 1, 0.5, -1, -1, -1, -1]})
    write_table(assoc, tmp_path / "association.csv")
    exp = {"texture": ["glcm"], "intensity": "firstorder"}
    enrichment(paths, exp, tmp_path / "enr.csv", k=4, n_perm=500, seed=0, association=tmp_path / "association.csv")
    t = read_table(tmp_path / "enr.csv").set_index("task")
    assert set(t["ranked_by"]) == {"specific_change"}
    assert t.loc["texture", "hits"] == 4 and t.loc["intensity", "hits"] == 4
    assert t.loc["texture", "p_hypergeom"] == pytest.approx(1 / 70)   # 4 of 4 glcm among 4 of 8: 1 / C(8, 4)
    enrichment(paths, exp, tmp_path / "enr2.csv", k=4, n_perm=500, seed=0)   # no association: emphasis
    t2 = read_table(tmp_path / "enr2.csv").set_index("task")
    assert set(t2["ranked_by"]) == {"emphasis"} and t2.loc["texture", "hits"] == 0
