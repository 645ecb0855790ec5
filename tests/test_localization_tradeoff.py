"""Accuracy–interpretability trade-off table and figure."""
import numpy as np
import pandas as pd
import pytest

from radlens.errors import InputError
from radlens.localization.tradeoff import task_auc, tradeoff_table


def _loc(ck_means, n=8, seed=0):
    rng = np.random.default_rng(seed)
    parts = []
    for ck, mu in ck_means.items():
        v = mu + rng.normal(0, 0.02, n)
        v = v - v.mean() + mu                      # exact mean mu
        parts.append(pd.DataFrame({"sample_id": [f"s{i}" for i in range(n)], "patient_id":
                                   [f"p{i // 2}" for i in range(n)], "checkpoint": ck, "auc": v,
                                   "label": ["a", "b"] * (n // 2)}))
    return pd.concat(parts, ignore_index=True)


def test_task_auc_by_hand():
    pred = pd.DataFrame({"checkpoint": ["c0"] * 4 + ["c1"] * 4, "y_true": [0, 0, 1, 1] * 2,
                         "y_score": [0.1, 0.4, 0.35, 0.8, 0.1, 0.2, 0.3, 0.4]})
    t = task_auc(pred).set_index("checkpoint")
    assert t.loc["c0", "task_metric"] == pytest.approx(3 / 4)    # 0.35 loses to 0.4 only
    assert t.loc["c1", "task_metric"] == pytest.approx(1.0)
    assert t.loc["c0", "task_low"] < 0.75 < t.loc["c0", "task_high"] and t.loc["c0", "task_n"] == 4
    with pytest.raises(InputError, match="lacks column"):
        task_auc(pred.rename(columns={"y_true": "label"}))
    bad = pred.assign(y_true=[0, 2, 1, 1] * 2)
    with pytest.raises(InputError, match="expected 0/1"):
        task_auc(bad)


def test_tradeoff_table_means_order_and_task(tmp_path):
    loc = _loc({"step0": 0.80, "step1": 0.70, "step2": 0.60})
    task = pd.DataFrame({"checkpoint": ["step0", "step1", "step2"], "task_metric": [0.70, 0.80, 0.90]})
    t = tradeoff_table(loc, "auc", task=task, order=["step2", "step1", "step0"], n_boot=100)
    assert list(t.checkpoint) == ["step2", "step1", "step0"] and list(t.order) == [0, 1, 2]
    np.testing.assert_allclose(t.loc_mean, [0.60, 0.70, 0.80])
    assert (t.loc_low <= t.loc_mean).all() and (t.loc_mean <= t.loc_high).all()
    np.testing.assert_allclose(t.task_metric, [0.90, 0.80, 0.70])
    assert t.task_low.isna().all()   # not given
    # per-class restriction: class 'a' rows only
    ta = tradeoff_table(loc, "auc", class_col="label", cls="a", n_boot=20)
    sub = loc[(loc.label == "a") & (loc.checkpoint == "step0")]["auc"].mean()
    assert ta.set_index("checkpoint").loc["step0", "loc_mean"] == pytest.approx(sub)
    # a dict of per-checkpoint tables works the same
    d = {ck: g.drop(columns="checkpoint") for ck, g in loc.groupby("checkpoint")}
    t2 = tradeoff_table(d, "auc", n_boot=20)
    assert set(t2.checkpoint) == {"step0", "step1", "step2"}
    with pytest.raises(InputError, match="absent from the localization table"):
        tradeoff_table(loc, "auc", order=["step9"])
    with pytest.raises(InputError, match="lacks column 'iou'"):
        tradeoff_table(loc, "iou")


def test_tradeoff_figure_renders(tmp_path):
    from radlens.viz.localization import plot_tradeoff

    loc = _loc({"pre": 0.85, "ft-1k": 0.74, "ft-5k": 0.66, "ft-20k": 0.61})
    rng = np.random.default_rng(1)
    preds = []
    for ck, sep in {"pre": 0.5, "ft-1k": 1.0, "ft-5k": 1.6, "ft-20k": 2.0}.items():
        y = np.repeat([0, 1], 30)
        preds.append(pd.DataFrame({"checkpoint": ck, "y_true": y, "y_score": y * sep + rng.normal(0, 1, 60)}))
    t = tradeoff_table(loc, "auc", predictions=pd.concat(preds), n_boot=50)
    assert t.task_metric.notna().all() and (t.task_low < t.task_metric).all()
    paths = plot_tradeoff(t, tmp_path / "tradeoff")
    assert [p.suffix for p in paths] == [".png", ".svg"] and paths[0].stat().st_size > 10_000


def test_tradeoff_panels_and_scores_figure(tmp_path):
    from radlens.localization.summary import summarize_scores
    from radlens.viz.localization import plot_localization_scores, plot_tradeoff_panels

    loc = _loc({"pre": 0.8, "ft": 0.6})
    loc["pointing_game"] = np.tile([1.0, 0.0, 1.0, 1.0], 4)
    task = pd.DataFrame({"checkpoint": ["pre", "ft"], "task_metric": [0.7, 0.9], "task_low": [0.6, 0.85],
                         "task_high": [0.8, 0.95]})
    tabs = {s: tradeoff_table(loc, s, task=task, n_boot=20) for s in ("auc", "pointing_game")}
    assert tabs["auc"]["task_ci_method"].iloc[0] == "given"
    p = plot_tradeoff_panels(tabs, tmp_path / "panels")
    assert p[0].exists()
    sm = summarize_scores(loc.rename(columns={"checkpoint": "map_set"}), ["auc", "pointing_game"],
                          class_col="label", n_boot=20)
    p = plot_localization_scores(sm, tmp_path / "scores", class_label="label")
    assert p[0].exists()
