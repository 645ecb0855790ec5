"""Aggregation: summaries, paired tests, rankings and ranking reversals on hand-made tables."""
import numpy as np
import pandas as pd
import pytest

from radlens.cam.aggregate import (architecture_rankings, concentration_tests, paired_tests, ranking_reversals,
                                   summarize)
from radlens.errors import InputError


def _table():
    rng = np.random.default_rng(0)
    rows = []
    # displacement medians: layercam ranks A > B > C, gradcam++ ranks C > B > A (full reversal)
    med = {("A", "layercam"): 0.30, ("B", "layercam"): 0.20, ("C", "layercam"): 0.10,
           ("A", "gradcam++"): 0.05, ("B", "gradcam++"): 0.15, ("C", "gradcam++"): 0.25}
    for (arch, meth), m in med.items():
        for i in range(9):
            rows.append(dict(architecture=arch, task="t", method=meth, case_id=f"c{i}", patient_id=f"p{i // 3}",
                             centroid_disp=m + (i - 4) * 0.01, spearman=1 - m + rng.normal(0, 1e-3),
                             topmass10_a=0.2, topmass10_b=0.2 + (0.05 if meth == "layercam" else 0.0) + i * 1e-3))
    return pd.DataFrame(rows)


def test_summarize_matches_numpy():
    df = _table()
    s = summarize(df, ["centroid_disp"], n_boot=200)
    row = s[(s.architecture == "A") & (s.method == "layercam")].iloc[0]
    v = 0.30 + (np.arange(9) - 4) * 0.01
    assert row["n"] == 9
    assert row["mean"] == pytest.approx(v.mean()) and row["median"] == pytest.approx(np.median(v))
    q25, q75 = np.quantile(v, [0.25, 0.75])
    assert row["iqr"] == pytest.approx(q75 - q25)
    assert row["mean_ci_low"] <= row["mean"] <= row["mean_ci_high"]
    assert row["mean_ci_high"] - row["mean_ci_low"] > 0


def test_rankings_and_full_reversal():
    s = summarize(_table(), ["centroid_disp", "spearman"], n_boot=50)
    r = architecture_rankings(s, ["centroid_disp", "spearman"])
    lc = r[(r.method == "layercam") & (r.metric == "centroid_disp")].set_index("architecture")["rank"]
    assert lc.to_dict() == {"A": 1.0, "B": 2.0, "C": 3.0}
    # spearman: lower correlation = more drift -> same order as displacement
    ls = r[(r.method == "layercam") & (r.metric == "spearman")].set_index("architecture")["rank"]
    assert ls.to_dict() == {"A": 1.0, "B": 2.0, "C": 3.0}
    rev = ranking_reversals(r)
    row = rev[rev.metric == "centroid_disp"].iloc[0]
    assert row["kendall_tau"] == pytest.approx(-1.0)
    assert row["n_flipped"] == 3 and row["reversal"] and row["top_changed"]
    assert set(row["flipped_pairs"].split(";")) == {"A|B", "A|C", "B|C"}
    assert row["kendall_w"] == pytest.approx(0.0)  # two raters in exact opposition


def test_no_reversal_when_methods_agree():
    df = _table()
    df = df[df.method == "layercam"]
    df2 = df.assign(method="gradcam", centroid_disp=df.centroid_disp * 2)
    r = architecture_rankings(summarize(pd.concat([df, df2]), ["centroid_disp"], n_boot=20))
    rev = ranking_reversals(r).iloc[0]
    assert rev["kendall_tau"] == pytest.approx(1.0) and not rev["reversal"] and rev["kendall_w"] == pytest.approx(1.0)


def test_paired_tests_align_cases():
    df = _table()
    p = paired_tests(df, ["centroid_disp"], n_boot=100)
    row = p[p.architecture == "A"].iloc[0]
    assert (row["level_1"], row["level_2"]) == ("gradcam++", "layercam")
    assert row["n"] == 9
    assert row["mean_diff"] == pytest.approx(0.25)  # layercam - gradcam++ per case, constant
    assert row["p_wilcoxon"] < 0.01
    assert "q_bh" in p.columns
    with pytest.raises(InputError, match="not in the drift table"):
        paired_tests(df, ["nope"])


def test_concentration_tests():
    c = concentration_tests(_table(), n_boot=100)
    row = c[(c.architecture == "A") & (c.method == "layercam") & (c.measure == "topmass10")].iloc[0]
    assert row["mean_diff"] == pytest.approx(0.05 + 0.004)
    assert row["mean_a"] == pytest.approx(0.2)


def test_bad_stat():
    with pytest.raises(InputError, match="stat='max'"):
        architecture_rankings(summarize(_table(), ["centroid_disp"], n_boot=10), stat="max")


def test_bootstrap_reversal_rate_robust_vs_noise():
    df = _table()
    s = summarize(df, ["centroid_disp"], n_boot=20)
    rev = ranking_reversals(architecture_rankings(s), df, n_boot=200).iloc[0]
    assert rev["boot_reversal_rate"] == pytest.approx(1.0)  # medians far apart: every resample reverses
    # methods with identical per-case values: no resample can reverse
    same = pd.concat([df[df.method == "layercam"], df[df.method == "layercam"].assign(method="gradcam")])
    rev = ranking_reversals(architecture_rankings(summarize(same, ["centroid_disp"], n_boot=20)), same, n_boot=200)
    assert rev["boot_reversal_rate"].iloc[0] == pytest.approx(0.0)


def test_sanity_exclusions_and_drop_combinations():
    """A combination that fails the randomisation check for either checkpoint is listed once and
    dropped from what the rankings read; the others stay."""
    import pandas as pd

    from radlens.cam.aggregate import architecture_rankings, drop_combinations, sanity_exclusions

    san = pd.DataFrame({"architecture": ["cnn", "cnn", "vit", "vit", "vit", "vit"],
                        "task": ["t"] * 6,
                        "method": ["gradcam", "gradcam", "gradcam", "gradcam", "layercam", "layercam"],
                        "model": ["a", "b", "a", "b", "a", "b"],
                        "spearman_median": [0.1, 0.2, 0.3, 0.8, 0.7, 0.9],
                        "threshold": [0.5] * 6,
                        "passed": [True, True, True, False, False, False]})
    exc = sanity_exclusions(san)
    assert list(map(tuple, exc[["architecture", "method", "models_failed"]].to_numpy())) == \
        [("vit", "gradcam", "b"), ("vit", "layercam", "a,b")]
    assert exc["spearman_median_max"].tolist() == [0.8, 0.9]
    assert all("sanity check failed" in r for r in exc["reason"])
    summary = pd.DataFrame({"architecture": ["cnn", "vit", "cnn", "vit"], "task": ["t"] * 4,
                            "method": ["gradcam", "gradcam", "layercam", "layercam"],
                            "metric": ["pearson"] * 4, "median": [0.9, 0.1, 0.8, 0.2]})
    kept = drop_combinations(summary, exc)
    assert list(map(tuple, kept[["architecture", "method"]].to_numpy())) == [("cnn", "gradcam"), ("cnn", "layercam")]
    rk = architecture_rankings(kept)
    assert set(rk["architecture"]) == {"cnn"}
    assert len(sanity_exclusions(san.assign(passed=True))) == 0
    assert len(sanity_exclusions(pd.DataFrame())) == 0
