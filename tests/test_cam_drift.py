"""Drift metrics and the true-positive filter against hand-computed values."""
import numpy as np
import pytest

from radlens.cam.drift import centroid, concentration, drift_metrics, top_mask, true_positive_filter
from radlens.errors import InputError


def _blob(shape, start, size=3):
    m = np.zeros(shape)
    sl = tuple(slice(s, s + size) for s in start)
    m[sl] = 1.0
    return m


def test_identical_maps_give_perfect_agreement():
    rng = np.random.default_rng(0)
    a = rng.random((4, 16, 12))
    d = drift_metrics(a, a * 3.0, top_k=(5, 10), thresholds=(0.5,))  # scale-invariant too
    np.testing.assert_allclose(d["centroid_disp"], 0, atol=1e-12)
    for c in ("iou_top5", "iou_top10", "iou_thr0.5", "pearson", "spearman"):
        np.testing.assert_allclose(d[c], 1.0, atol=1e-12)
    for c in ("topmass10_delta", "entropy_delta", "gini_delta"):
        np.testing.assert_allclose(d[c], 0.0, atol=1e-12)
    assert not d["degenerate"].any()


def test_shifted_blob_known_displacement_and_iou():
    a = _blob((20, 20), (2, 3))          # centroid (3, 4)
    far = _blob((20, 20), (8, 11))       # centroid (9, 12): shift (6, 8) -> 10 px
    near = _blob((20, 20), (2, 4))       # shift one column: overlap 6 of union 12
    np.testing.assert_allclose(centroid(a[None])[0], [3, 4])
    # 9 px of 400 = 2.25 % -> the top-k masks are exactly the blobs
    d = drift_metrics(np.stack([a, a]), np.stack([far, near]), top_k=(2.25,))
    np.testing.assert_allclose(d["centroid_disp"], [10 / np.sqrt(800), 1 / np.sqrt(800)])
    np.testing.assert_allclose(d["iou_top2.25"], [0.0, 0.5])
    np.testing.assert_allclose(d["topmass2.25_a"], [1.0, 1.0])


def test_shifted_blob_3d():
    a = _blob((8, 10, 12), (1, 2, 3), size=2)
    b = _blob((8, 10, 12), (3, 2, 3), size=2)
    d = drift_metrics(a[None], b[None], top_k=(100 * 8 / 960,))
    np.testing.assert_allclose(d["centroid_disp"], [2 / np.sqrt(64 + 100 + 144)])
    np.testing.assert_allclose(d.iloc[0, 1], 0.0)  # masks = disjoint cubes


def test_correlations_hand_computed():
    a = np.array([[[1.0, 2.0], [3.0, 4.0]]])
    b = np.array([[[1.0, 3.0], [2.0, 4.0]]])
    d = drift_metrics(a, b, top_k=(25,))
    np.testing.assert_allclose(d["pearson"], [0.8])  # dot 4 / (sqrt 5 * sqrt 5)
    np.testing.assert_allclose(d["spearman"], [0.8])
    # equal-area masks: top 1 pixel = the 4 in both maps
    np.testing.assert_allclose(d["iou_top25"], [1.0])


def test_concentration_hand_computed():
    m = np.array([
        [[4.0, 3.0], [2.0, 1.0]],
        [[1.0, 1.0], [1.0, 1.0]],
        [[0.0, 0.0], [0.0, 5.0]],
        [[1.0, 0.0], [1.0, 0.0]],
    ])
    c = concentration(m, top_k=(25, 50))
    np.testing.assert_allclose(c["topmass25"], [0.4, 0.25, 1.0, 0.5])
    np.testing.assert_allclose(c["topmass50"], [0.7, 0.5, 1.0, 1.0])
    np.testing.assert_allclose(c["entropy"][1:], [1.0, 0.0, 0.5])
    # Gini: uniform 0, one-hot (n-1)/n, [0,0,1,1] -> 0.5; [1,2,3,4]: 2*30/(4*10) - 5/4 = 0.25
    np.testing.assert_allclose(c["gini"], [0.25, 0.0, 0.75, 0.5])


def test_fixed_threshold_iou():
    a = np.array([[[1.0, 0.6], [0.2, 0.0]]])
    b = np.array([[[0.5, 1.0], [0.4, 0.0]]])
    d = drift_metrics(a, b, thresholds=(0.5, 0.55))
    np.testing.assert_allclose(d["iou_thr0.5"], [1.0])
    np.testing.assert_allclose(d["iou_thr0.55"], [0.5])


def test_top_mask_equal_area_and_ties():
    m = np.array([[[0.0, 0.0], [0.0, 0.0]]])
    mask = top_mask(m, 50)
    assert mask.sum() == 2 and mask[0, 0].tolist() == [True, True]  # ties: lowest flat index first


def test_degenerate_maps_are_nan_and_flagged():
    a = np.zeros((2, 4, 4))
    a[1, 1, 1] = 1
    b = np.ones((2, 4, 4))
    d = drift_metrics(a, b)
    assert d["degenerate"].tolist() == [True, False]
    assert np.isnan(d.loc[0, "pearson"]) and np.isnan(d.loc[0, "centroid_disp"])
    assert np.isfinite(d.loc[1, "centroid_disp"])


def test_bad_inputs():
    with pytest.raises(InputError, match="same shape"):
        drift_metrics(np.ones((2, 4, 4)), np.ones((2, 4, 5)))
    with pytest.raises(InputError, match="non-negative"):
        drift_metrics(-np.ones((1, 4, 4)), np.ones((1, 4, 4)))
    with pytest.raises(InputError, match=r"top_k=150"):
        drift_metrics(np.ones((1, 4, 4)), np.ones((1, 4, 4)), top_k=(150,))
    with pytest.raises(InputError, match="thresholds"):
        drift_metrics(np.ones((1, 4, 4)), np.ones((1, 4, 4)), thresholds=(0,))
    with pytest.raises(InputError, match=r"\(n, H, W\)"):
        drift_metrics(np.ones((4, 4)), np.ones((4, 4)))


def test_true_positive_filter_counts():
    labels = [1, 1, 1, 0, 0, np.nan, 1.0]
    pa = [1, 1, 0, 0, 1, 1, 1]
    pb = [1, 0, 0, 0, 0, 1, 1]
    keep, c = true_positive_filter(labels, pa, pb, positive=1)
    assert keep.tolist() == [True, False, False, False, False, False, True]
    assert c == {"n_total": 7, "n_missing_label": 1, "n_positive": 4, "n_correct_a": 4, "n_correct_b": 4,
                 "n_tp_a": 3, "n_tp_b": 2, "n_kept": 2, "mode": "tp"}
    keep, c = true_positive_filter(labels, pa, pb, positive=1, mode="correct")
    assert keep.tolist() == [True, False, False, True, False, False, True]
    with pytest.raises(InputError, match="'tp' or 'correct'"):
        true_positive_filter(labels, pa, pb, mode="all")
