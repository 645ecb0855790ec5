"""Size-stratified lesion probe wiring on hand-made images and a transparent embedder."""
import numpy as np
import pytest

from radlens.probe.analyses import LesionCohort, run_lesions
from radlens.probe.config import load_probe_config
from radlens.probe.summary import summarize


def _cohort(n=120, seed=0):
    rng = np.random.default_rng(seed)
    images, boxes, labels = [], [], []
    for i in range(n):
        img = rng.normal(0, 1.0, (48, 48)).astype(np.float32)
        if i % 2 == 0:  # positive: a bright square lesion, small (3 px) or large (12 px)
            side = 3 if i % 4 == 0 else 12
            x, y = rng.integers(2, 48 - side - 2, 2)
            img[y:y + side, x:x + side] += 1.5
            boxes.append([x, y, side, side])
            labels.append(1.0)
        else:
            boxes.append([np.nan] * 4)
            labels.append(0.0)
        images.append(img)
    return LesionCohort(images, np.array([f"c{i}" for i in range(n)]),
                        np.array([f"p{i // 2}" for i in range(n)]), {"finding": np.array(labels)},
                        {"finding": np.array(boxes, float)}, np.tile([10.0, 10, 8, 8], (n, 1)))


def _embed(images, boxes):
    """global: whole-image mean (a 3-px lesion barely moves it); roi: mean inside the box."""
    g, r = [], []
    for img, (x, y, w, h) in zip(images, np.asarray(boxes)):
        g.append([img.mean(), img.std()])
        patch = img[int(y):int(y + h), int(x):int(x + w)]
        r.append([patch.mean(), patch.max()])
    return {"global": np.array(g), "roi": np.array(r)}


def test_small_lesions_lose_signal_under_global_pooling_not_under_roi():
    cfg = load_probe_config({"lesion": {"findings": ["finding"], "size_threshold": 0.02},
                             "probe": {"n_boot": 200, "n_splits": 4}, "jitter": {"levels": [0.0, 1.0]}})
    cohort = _cohort()
    sets = run_lesions(cohort, {"pre": _embed}, cfg, ["global", "roi"])
    assert [s.analysis for s in sets] == ["lesion_image", "lesion_box", "lesion_box_jitter",
                                          "lesion_box_jitter"]
    img = sets[0]
    # 3x3 box = 9/2304 < 0.02 -> small; 12x12 = 0.0625 -> large
    assert set(img.stratum[img.y == 1]) == {"small", "large"}
    assert (img.stratum[img.y == 1] == "small").sum() == 30
    box = sets[1]
    # matched controls: same box in a negative image, paired by stratum
    assert (box.y == 1).sum() == (box.y == 0).sum() == 60
    assert all("|control_for_" in s for s in box.sample_id[box.y == 0])
    t = summarize(sets, n_boot=200)

    def row(**kw):
        m = np.ones(len(t), bool)
        for k, v in kw.items():
            m &= (t[k] == v).to_numpy()
        assert m.sum() == 1, kw
        return t[m].iloc[0]

    small = row(analysis="lesion_image", pooling="global", stratum="small")
    large = row(analysis="lesion_image", pooling="global", stratum="large")
    gap = row(analysis="lesion_image_gap", pooling="global")
    assert large.estimate > 0.9 and small.estimate < 0.75
    assert gap.estimate == pytest.approx(large.estimate - small.estimate)
    assert gap.ci_low > 0 and gap.p < 0.01
    bs = row(analysis="lesion_box", pooling="roi", stratum="small")
    assert bs.estimate > 0.9  # the box sees the small lesion
    j0 = row(analysis="lesion_box_jitter", jitter=0.0)
    j1 = row(analysis="lesion_box_jitter", jitter=1.0)
    assert j0.estimate == row(analysis="lesion_box", pooling="roi", stratum="all").estimate
    assert j1.estimate < j0.estimate and j1.mean_iou < 0.5
