"""`radlens tradeoff` through the command line: hand-made localize tables, known means, files, errors."""
import numpy as np
import pandas as pd
import pytest

from radlens.cli import main


def _loc_table(values, map_set="a"):
    """A per-sample table shaped like `radlens localize` output (two samples per patient)."""
    n = len(values)
    return pd.DataFrame({"sample_id": [f"s{i}" for i in range(n)], "case_ids": [f"c{i}" for i in range(n)],
                         "patient_id": [f"p{i // 2}" for i in range(n)], "map_set": map_set,
                         "label": ["x", "y"] * (n // 2), "auc": values,
                         "pointing_game": [1.0, 0.0] * (n // 2)})


PRE = [0.9, 0.8, 0.85, 0.95, 0.7, 0.8]          # mean 0.833...
FT = [0.6, 0.5, 0.65, 0.55, 0.7, 0.6]           # mean 0.6


@pytest.fixture
def files(tmp_path):
    _loc_table(PRE).to_parquet(tmp_path / "loc_pre.parquet")
    _loc_table(FT).to_parquet(tmp_path / "loc_ft.parquet")
    pd.DataFrame({"checkpoint": ["pre", "ft"], "task_metric": [0.71, 0.88], "task_low": [0.6, 0.8],
                  "task_high": [0.8, 0.95]}).to_csv(tmp_path / "perf.csv", index=False)
    return tmp_path


def test_cli_tradeoff_means_order_and_figure(files):
    out = files / "res" / "tradeoff.csv"
    out.parent.mkdir()
    rc = main(["-q", "tradeoff", "--loc", f"pre={files / 'loc_pre.parquet'}", "--loc",
               f"ft={files / 'loc_ft.parquet'}", "--task", str(files / "perf.csv"), "--n-boot", "50",
               "--out", str(out)])
    assert rc == 0
    t = pd.read_csv(out)
    assert list(t["checkpoint"]) == ["pre", "ft"] and list(t["order"]) == [0, 1]
    np.testing.assert_allclose(t["loc_mean"], [np.mean(PRE), np.mean(FT)])
    assert (t["loc_low"] <= t["loc_mean"]).all() and (t["loc_mean"] <= t["loc_high"]).all()
    assert (t["loc_low"] < t["loc_high"]).all()
    np.testing.assert_allclose(t["task_metric"], [0.71, 0.88])
    np.testing.assert_allclose(t["task_low"], [0.6, 0.8])
    assert list(t["loc_n"]) == [6, 6] and set(t["score"]) == {"auc"} and set(t["task_ci_method"]) == {"given"}
    for suf in (".png", ".svg"):
        assert (out.parent / f"tradeoff{suf}").stat().st_size > 1000
    svg = (out.parent / "tradeoff.svg").read_text()
    assert "task AUC" in svg

    # reversed --loc order reverses the table; a different score gives different means
    out2 = files / "rev.parquet"
    rc = main(["-q", "tradeoff", "--loc", f"ft={files / 'loc_ft.parquet'}", "--loc",
               f"pre={files / 'loc_pre.parquet'}", "--task", str(files / "perf.csv"), "--score", "pointing_game",
               "--n-boot", "20", "--out", str(out2), "--no-figure"])
    assert rc == 0
    t2 = pd.read_parquet(out2)
    assert list(t2["checkpoint"]) == ["ft", "pre"]
    np.testing.assert_allclose(t2["loc_mean"], [0.5, 0.5])
    assert not (files / "rev.png").exists()


def test_cli_tradeoff_one_table_two_map_sets_with_predictions(files):
    both = pd.concat([_loc_table(PRE, "transfer"), _loc_table(FT, "finetuned")], ignore_index=True)
    both.to_parquet(files / "loc_both.parquet")
    y = np.repeat([0, 1], 4)
    preds = pd.DataFrame({"model": ["transfer"] * 8 + ["finetuned"] * 8, "label": np.tile(y, 2),
                          "p": [0.1, 0.6, 0.3, 0.4, 0.5, 0.2, 0.7, 0.8] + [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]})
    preds.to_csv(files / "preds.csv", index=False)
    out = files / "both.csv"
    rc = main(["-q", "tradeoff", "--loc", str(files / "loc_both.parquet"), "--predictions", str(files / "preds.csv"),
               "--pred-checkpoint-col", "model", "--pred-y-col", "label", "--pred-score-col", "p",
               "--class-col", "label", "--class", "x", "--n-boot", "20", "--out", str(out)])
    assert rc == 0
    t = pd.read_csv(out)
    assert list(t["checkpoint"]) == ["transfer", "finetuned"]
    np.testing.assert_allclose(t["loc_mean"], [np.mean(PRE[::2]), np.mean(FT[::2])])   # class x: even rows
    # transfer: positives 0.5, 0.2, 0.7, 0.8 vs negatives 0.1, 0.6, 0.3, 0.4 -> 12/16; finetuned separable
    np.testing.assert_allclose(t["task_metric"], [12 / 16, 1.0])
    assert set(t["task_ci_method"]) == {"delong"} and (files / "both.png").exists()
    # a map set picked per checkpoint with NAME=PATH@SET
    rc = main(["-q", "tradeoff", "--loc", f"ft={files / 'loc_both.parquet'}@finetuned", "--loc",
               f"tl={files / 'loc_both.parquet'}@transfer", "--task", str(files / "perf.csv"), "--n-boot", "20",
               "--out", str(files / "pick.csv"), "--no-figure"])
    # perf.csv names pre/ft: tl has no task performance (warned), ft matches
    assert rc == 0
    t = pd.read_csv(files / "pick.csv")
    np.testing.assert_allclose(t["loc_mean"], [np.mean(FT), np.mean(PRE)])
    assert t["task_metric"].iloc[0] == pytest.approx(0.88) and np.isnan(t["task_metric"].iloc[1])


def _err(argv, capsys):
    rc = main(["-q", "tradeoff", *argv, "--n-boot", "10", "--no-figure"])
    return rc, capsys.readouterr().err


def test_cli_tradeoff_errors_name_the_problem(files, capsys):
    pre, ft, perf = files / "loc_pre.parquet", files / "loc_ft.parquet", files / "perf.csv"
    base = ["--loc", f"pre={pre}", "--loc", f"ft={ft}", "--out", str(files / "e.csv")]
    # missing localization score column: named, with the file and the flag to fix it
    rc, err = _err(base + ["--task", str(perf), "--score", "iou_topk"], capsys)
    assert rc == 2 and "'iou_topk'" in err and "loc_pre.parquet" in err and "--score" in err
    # task table without task_metric
    pd.DataFrame({"checkpoint": ["pre", "ft"], "auc": [0.7, 0.8]}).to_csv(files / "bad.csv", index=False)
    rc, err = _err(base + ["--task", str(files / "bad.csv")], capsys)
    assert rc == 2 and "task_metric" in err and "bad.csv" in err
    # predictions without the label column
    pd.DataFrame({"checkpoint": ["pre"] * 4, "y_score": [0.1, 0.2, 0.3, 0.4]}).to_csv(files / "p.csv", index=False)
    rc, err = _err(base + ["--predictions", str(files / "p.csv")], capsys)
    assert rc == 2 and "'y_true'" in err and "--pred-y-col" in err
    # group column absent
    rc, err = _err(base + ["--task", str(perf), "--group-col", "site"], capsys)
    assert rc == 2 and "'site'" in err and "--group-col" in err
    # checkpoint names that match nothing in the task table
    rc, err = _err(["--loc", f"a={pre}", "--loc", f"b={ft}", "--out", str(files / "e.csv"), "--task", str(perf)],
                   capsys)
    assert rc == 2 and "must match" in err and "['a', 'b']" in err
    # a missing file, a --class value that does not occur
    rc, err = _err(["--loc", f"pre={files / 'nope.parquet'}", "--loc", f"ft={ft}", "--task", str(perf),
                    "--out", str(files / "e.csv")], capsys)
    assert rc == 2 and "nope.parquet" in err and "does not exist" in err
    rc, err = _err(base + ["--task", str(perf), "--class-col", "label", "--class", "z"], capsys)
    assert rc == 2 and "'z'" in err and "'label'" in err
    # a two-set table passed under one name without @SET
    pd.concat([_loc_table(PRE, "a"), _loc_table(FT, "b")]).to_parquet(files / "two.parquet")
    rc, err = _err(["--loc", f"pre={files / 'two.parquet'}", "--loc", f"ft={ft}", "--task", str(perf),
                    "--out", str(files / "e.csv")], capsys)
    assert rc == 2 and "2 map sets" in err and "@a" in err
    assert not (files / "e.csv").exists()
