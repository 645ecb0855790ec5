"""Feature tables: name parsing, cleaning with reasons, standardisation (hand-made tables)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from radlens.errors import InputError
from radlens.radiomics.features import (FeatureStandardizer, clean_features, feature_class, feature_family,
                                        feature_table_info, image_type, standardize)


@pytest.mark.parametrize("name, itype, cls", [
    ("original_glcm_Contrast", "original", "glcm"),
    ("original_shape2D_Elongation", "original", "shape2D"),
    ("original_shape_Sphericity", "original", "shape"),
    ("wavelet-LLH_glcm_JointEnergy", "wavelet-LLH", "glcm"),
    ("log-sigma-1-0-mm-3D_firstorder_Mean", "log-sigma-1-0-mm-3D", "firstorder"),
    ("lbp-2D_gldm_DependenceEntropy", "lbp-2D", "gldm"),
    ("squareroot_ngtdm_Busyness", "squareroot", "ngtdm"),
    ("gradient_glszm_ZoneEntropy", "gradient", "glszm"),
])
def test_name_parsing(name, itype, cls):
    assert image_type(name) == itype
    assert feature_class(name) == cls


def test_families():
    assert feature_family("original_shape2D_Elongation") == "shape"
    assert feature_family("wavelet-HHH_firstorder_Mean") == "intensity"
    assert feature_family("original_glrlm_RunEntropy") == "texture"


@pytest.mark.parametrize("bad", ["case_id", "diagnostics_Versions_PyRadiomics", "original_foo_Bar",
                                 "Contrast", "original_glcm", "a_b_c_d", 3])
def test_bad_names_raise(bad):
    with pytest.raises(InputError, match="pyradiomics feature name"):
        feature_class(bad)


def test_feature_table_info():
    cols = ["case_id", "original_shape2D_Elongation", "wavelet-LHL_glcm_Idm", "my_score"]
    with pytest.raises(InputError, match="'my_score'"):
        feature_table_info(cols)
    info = feature_table_info(cols, errors="skip")
    assert info.to_dict("records") == [
        {"feature": "original_shape2D_Elongation", "image_type": "original", "feature_class": "shape2D",
         "family": "shape", "feature_name": "Elongation"},
        {"feature": "wavelet-LHL_glcm_Idm", "image_type": "wavelet-LHL", "feature_class": "glcm",
         "family": "texture", "feature_name": "Idm"},
    ]
    other = feature_table_info(cols, errors="other")
    assert other.iloc[-1].tolist() == ["my_score", "other", "other", "other", "my_score"]
    with pytest.raises(InputError, match="errors='bogus'"):
        feature_table_info(cols, errors="bogus")


def _table():
    rng = np.random.default_rng(0)
    a = rng.normal(size=12)
    return pd.DataFrame({
        "case_id": [f"c{i}" for i in range(12)],
        "original_firstorder_Mean": a,
        "original_firstorder_Constant": np.full(12, 3.5),
        "original_glcm_AllNan": np.full(12, np.nan),
        "original_glcm_Monotone": np.exp(a),              # Spearman 1 with Mean, Pearson < 1
        "original_glcm_Scaled": 2 * a + 1,                # Pearson and Spearman 1 with Mean
        "original_glrlm_Other": rng.normal(size=12),
        "original_glszm_HalfNan": np.r_[rng.normal(size=6), np.full(6, np.nan)],
        "original_ngtdm_Neg": -a,                          # |r| = 1 with Mean
    })


def test_clean_constant_and_nan_only():
    df = _table()
    clean, rep = clean_features(df)
    assert list(clean.columns) == ["case_id", "original_firstorder_Mean", "original_glcm_Monotone",
                                   "original_glcm_Scaled", "original_glrlm_Other", "original_glszm_HalfNan",
                                   "original_ngtdm_Neg"]
    assert rep[["feature", "reason"]].values.tolist() == [
        ["original_firstorder_Constant", "constant"], ["original_glcm_AllNan", "all_nan"]]
    assert "3.5" in rep.detail[0]
    pd.testing.assert_series_equal(clean["original_firstorder_Mean"], df["original_firstorder_Mean"])


def test_clean_near_duplicates_spearman_keeps_first():
    clean, rep = clean_features(_table(), near_duplicate_threshold=0.99)
    dups = rep[rep.reason == "near_duplicate"]
    assert dups.feature.tolist() == ["original_glcm_Monotone", "original_glcm_Scaled", "original_ngtdm_Neg"]
    assert (dups.duplicate_of == "original_firstorder_Mean").all()
    assert np.allclose(dups.correlation, 1.0)
    assert list(clean.columns) == ["case_id", "original_firstorder_Mean", "original_glrlm_Other",
                                   "original_glszm_HalfNan"]


def test_clean_near_duplicates_pearson():
    df = _table()
    r = np.corrcoef(df.original_firstorder_Mean, np.exp(df.original_firstorder_Mean))[0, 1]
    assert r < 0.99  # the monotone transform is not linear
    clean, rep = clean_features(df, near_duplicate_threshold=0.99, method="pearson")
    assert "original_glcm_Monotone" in clean.columns
    assert rep[rep.reason == "near_duplicate"].feature.tolist() == ["original_glcm_Scaled", "original_ngtdm_Neg"]
    _, rep_e = clean_features(df, near_duplicate_threshold=0.99, method="either")
    assert "original_glcm_Monotone" in rep_e.feature.tolist()


def test_clean_near_duplicate_with_nans_uses_pairwise_rows():
    x = np.arange(10.0)
    df = pd.DataFrame({"original_firstorder_A": x, "original_firstorder_B": np.r_[x[:5] * 3, [np.nan] * 5],
                       "original_firstorder_C": np.r_[9, 1, 8, 2, 7, 3, 6, 4, 5, 0.0]})
    clean, rep = clean_features(df, near_duplicate_threshold=0.95)
    assert rep.feature.tolist() == ["original_firstorder_B"]
    assert list(clean.columns) == ["original_firstorder_A", "original_firstorder_C"]


def test_clean_options_and_errors():
    df = _table()
    _, rep = clean_features(df, max_nan_fraction=0.4)
    assert ("original_glszm_HalfNan", "too_many_nan") in list(zip(rep.feature, rep.reason))
    tiny = pd.DataFrame({"original_firstorder_A": [1.0, 1.0 + 1e-12, 1.0]})
    assert clean_features(tiny)[1].empty
    assert clean_features(tiny, constant_tol=1e-9)[1].reason.tolist() == ["constant"]
    with pytest.raises(InputError, match="near_duplicate_threshold=1.5"):
        clean_features(df, near_duplicate_threshold=1.5)
    with pytest.raises(InputError, match="method='kendall'"):
        clean_features(df, near_duplicate_threshold=0.9, method="kendall")
    bad = df.assign(site=["a"] * 12)   # a text column that is no feature: set aside, reported
    clean, rep = clean_features(bad)
    assert "site" not in clean.columns
    assert rep.loc[rep.feature == "site", "reason"].tolist() == ["not_a_feature"]
    textual = df.assign(original_firstorder_Mean=["1,5"] * 12)   # a feature that is text: refused, named
    with pytest.raises(InputError, match=r"feature column\(s\) \['original_firstorder_Mean'\] hold non-numeric"):
        clean_features(textual)
    clean, _ = clean_features(bad, id_columns=("case_id", "site"))
    assert list(clean.columns[:2]) == ["case_id", "site"]


def test_standardizer_values_and_zero_variance():
    X = np.array([[1.0, 5.0, 2.0], [3.0, 5.0, np.nan], [5.0, 5.0, 4.0]])
    s = FeatureStandardizer().fit(X)
    # hand-computed: column 0 mean 3, population std sqrt(8/3); column 1 constant -> scale 1
    np.testing.assert_allclose(s.mean_, [3.0, 5.0, 3.0])
    np.testing.assert_allclose(s.scale_, [np.sqrt(8 / 3), 1.0, 1.0])
    Z = s.transform(X)
    np.testing.assert_allclose(Z[:, 0], [-2 / np.sqrt(8 / 3), 0, 2 / np.sqrt(8 / 3)])
    np.testing.assert_array_equal(Z[:, 1], [0, 0, 0])
    assert np.isnan(Z[1, 2]) and Z[0, 2] == -1.0
    np.testing.assert_allclose(s.inverse_transform(Z), X)
    assert s.n_features_in_ == 3
    assert FeatureStandardizer(with_mean=False).fit(X).mean_.tolist() == [0, 0, 0]


def test_standardizer_contract():
    from sklearn.base import clone
    from sklearn.exceptions import NotFittedError

    s = FeatureStandardizer(with_std=False)
    assert clone(s).get_params() == {"with_mean": True, "with_std": False, "min_scale": 1e-12}
    assert not hasattr(s, "mean_")
    with pytest.raises(NotFittedError):
        s.transform(np.zeros((2, 2)))
    df = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 5.0]}, index=["x", "y"])
    out = FeatureStandardizer().fit(df).transform(df)
    assert list(out.index) == ["x", "y"] and list(out.columns) == ["a", "b"]
    assert list(FeatureStandardizer().fit(df).feature_names_in_) == ["a", "b"]
    with pytest.raises(InputError, match="columns differ"):
        FeatureStandardizer().fit(df).transform(df[["b", "a"]])
    with pytest.raises(InputError, match="3 features, fit saw 2"):
        FeatureStandardizer().fit(df).transform(np.zeros((1, 3)))
    with pytest.raises(InputError, match="no parameter 'scale'"):
        s.set_params(scale=2)


def test_standardize_with_reference_split():
    df = pd.DataFrame({"case_id": ["a", "b", "c", "d"], "original_firstorder_Mean": [0.0, 2.0, 4.0, 10.0]})
    out, sc = standardize(df, fit_on=df.iloc[:2])
    # train rows 0 and 2: mean 1, population std 1
    assert out["original_firstorder_Mean"].tolist() == [-1.0, 1.0, 3.0, 9.0]
    assert out["case_id"].tolist() == ["a", "b", "c", "d"]
    assert sc.mean_.tolist() == [1.0]
