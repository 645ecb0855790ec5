"""Localization scores against values computed by hand (see docs/localization.md)."""
import math

import numpy as np
import pytest

from radlens.errors import InputError
from radlens.localization.scores import (
    binarize_map, ground_truth, otsu_threshold_bin, pixel_auc, rasterize_box, score_map, score_maps,
)


def _ramp():
    # 4x4 map 0..15, GT box x=2,y=2,w=2,h=2 -> values 10, 11, 14, 15
    return np.arange(16, dtype=float).reshape(4, 4), ground_truth((4, 4), boxes=[(2, 2, 2, 2)])


def test_ramp_map_every_score_by_hand():
    m, g = _ramp()
    r = score_map(m, g, gcnr_bins=4, binarize=("topk", "fixed"))
    assert r["reason"] == ""
    assert r["pointing_game"] == 1.0  # max 15 at (3, 3), inside
    # AUC: inside 10, 11, 14, 15 vs outside 0..9, 12, 13 -> wins 10 + 10 + 12 + 12 = 44 of 48 pairs
    assert r["auc"] == pytest.approx(44 / 48)
    mu_out = 70 / 12
    var_out = 598 / 12 - mu_out ** 2          # sum of squares 0..9 = 285, + 144 + 169
    var_in = (2.5 ** 2 + 1.5 ** 2 + 1.5 ** 2 + 2.5 ** 2) / 4
    assert r["cnr"] == pytest.approx((12.5 - mu_out) / math.sqrt(var_in + var_out))
    # 4 bins over [0, 15] (edges 0, 3.75, 7.5, 11.25, 15): in = [0, 0, 2, 2]/4, out = [4, 4, 2, 2]/12
    assert r["gcnr"] == pytest.approx(1 - (1 / 6 + 1 / 6))
    assert r["mass_inside"] == pytest.approx(50 / 120)
    # top-4 = bottom row (12..15): IoU 2/6; background IoU 10/14; box rows[3,4) x cols[0,4) vs GT 2x2
    assert r["iou_topk"] == pytest.approx(1 / 3)
    assert r["miou_topk"] == pytest.approx((1 / 3 + 10 / 14) / 2)
    assert r["box_iou_topk"] == pytest.approx(2 / 6)
    assert r["centroid_dist_topk"] == pytest.approx(math.sqrt(0.5 ** 2 + 1.0 ** 2))
    assert r["centroid_dist_norm_topk"] == pytest.approx(math.sqrt(1.25) / math.sqrt(32))
    # fixed 0.5 on m/15 -> m >= 7.5 -> rows 2-3: IoU 4/8, bg IoU 8/12, box IoU 4/8, centroid (2.5, 1.5)
    assert r["iou_fixed"] == pytest.approx(0.5)
    assert r["miou_fixed"] == pytest.approx((0.5 + 8 / 12) / 2)
    assert r["box_iou_fixed"] == pytest.approx(0.5)
    assert r["centroid_dist_fixed"] == pytest.approx(1.0)


def test_pointing_game_tie_rules_and_tolerance():
    m = np.zeros((5, 5))
    m[2, 2] = 1.0   # inside the GT pixel
    m[0, 4] = 1.0   # tied maximum outside, first in raster order
    g = ground_truth((5, 5), boxes=[(2, 2, 1, 1)])
    assert score_map(m, g, tie_rule="fraction")["pointing_game"] == 0.5
    assert score_map(m, g, tie_rule="any")["pointing_game"] == 1.0
    assert score_map(m, g, tie_rule="all")["pointing_game"] == 0.0
    assert score_map(m, g, tie_rule="first")["pointing_game"] == 0.0   # (0, 4) comes before (2, 2)
    # tolerance: single max at (2, 4), distance 2 from the GT pixel (2, 2)
    m2 = np.zeros((5, 5))
    m2[2, 4] = 1.0
    assert score_map(m2, g, tolerance=1.9)["pointing_game"] == 0.0
    assert score_map(m2, g, tolerance=2.0)["pointing_game"] == 1.0
    # diagonal neighbour at distance sqrt(2)
    m3 = np.zeros((5, 5))
    m3[3, 3] = 1.0
    assert score_map(m3, g, tolerance=1.4)["pointing_game"] == 0.0
    assert score_map(m3, g, tolerance=1.5)["pointing_game"] == 1.0


def test_two_boxes_union_best_box_nearest_centroid():
    m = np.zeros((6, 6))
    m[4:6, 4:6] = 1.0     # exactly box B
    m[0, 0] = 0.5         # one pixel of box A
    g = ground_truth((6, 6), boxes=[(0, 0, 2, 2), (4, 4, 2, 2)])
    assert g.n_objects == 2 and g.mask.sum() == 8
    r = score_map(m, g, gcnr_bins=2, binarize=("topk", "fixed"))
    assert r["pointing_game"] == 1.0
    # AUC: B's 4 ones beat 28 zeros (112), 0.5 beats 28 (28), 3 inside zeros tie 28 zeros (42) -> 182/224
    assert r["auc"] == pytest.approx(182 / 224)
    assert r["mass_inside"] == pytest.approx(1.0)
    mu, var = 4.5 / 8, (0.25 + 4) / 8 - (4.5 / 8) ** 2
    assert r["cnr"] == pytest.approx(mu / math.sqrt(var))
    # bins [0, .5), [.5, 1]: in = [3/8, 5/8], out = [1, 0] -> overlap 3/8
    assert r["gcnr"] == pytest.approx(5 / 8)
    # top-8: the 8th largest value is 0, ties at the cut are all kept -> whole image
    assert r["iou_topk"] == pytest.approx(8 / 36)
    # fixed 0.5 -> B + (0, 0): 5 px all inside the union
    assert r["iou_fixed"] == pytest.approx(5 / 8)
    assert r["box_iou_fixed"] == pytest.approx(1.0)            # largest component = box B
    assert r["centroid_dist_fixed"] == pytest.approx(0.0)      # nearest object centroid (B)
    ra = score_map(m, g, binarize=("fixed",), box_from="all")
    assert ra["box_iou_fixed"] == pytest.approx(4 / 36)        # whole-image box vs the best 2x2 box
    # centroid of the 5 px: (3.6, 3.6); nearest object centroid B (4.5, 4.5)
    assert ra["centroid_dist_fixed"] == pytest.approx(0.9 * math.sqrt(2))


@pytest.mark.parametrize("value", [3.0, 0.0, -2.0])
def test_constant_map_scores_at_chance(value):
    m = np.full((4, 4), value)
    g = ground_truth((4, 4), boxes=[(0, 0, 2, 2)])
    r = score_map(m, g)
    assert r["reason"] == ""
    assert r["pointing_game"] == pytest.approx(4 / 16)     # fraction rule: every pixel is a maximum
    assert r["auc"] == 0.5 and r["cnr"] == 0.0 and r["gcnr"] == 0.0
    assert r["mass_inside"] == pytest.approx(4 / 16)       # uniform attention
    for b in ("otsu", "topk", "fixed"):                    # constant map binarises to the whole image
        assert r[f"iou_{b}"] == pytest.approx(4 / 16)
        assert r[f"miou_{b}"] == pytest.approx((4 / 16 + 0) / 2)
        assert r[f"box_iou_{b}"] == pytest.approx(4 / 16)
        assert r[f"centroid_dist_{b}"] == pytest.approx(math.sqrt(2))   # (1.5, 1.5) vs (0.5, 0.5)
        assert r[f"centroid_dist_norm_{b}"] == pytest.approx(0.25)
    assert score_map(m, g, tie_rule="any")["pointing_game"] == 1.0
    assert score_map(m, g, tie_rule="first")["pointing_game"] == 1.0   # (0, 0) is inside
    assert score_map(m, g, tie_rule="all")["pointing_game"] == 0.0


def test_empty_gt_and_bad_maps_give_nan_with_reason():
    r = score_map(np.random.default_rng(0).random((5, 5)), np.zeros((5, 5), bool))
    assert np.isnan(r["auc"]) and np.isnan(r["pointing_game"]) and np.isnan(r["iou_topk"])
    assert "empty ground truth" in r["reason"]
    m = np.ones((5, 5))
    m[1, 1] = np.nan
    r = score_map(m, ground_truth((5, 5), boxes=[(0, 0, 2, 2)]))
    assert np.isnan(r["auc"]) and "non-finite" in r["reason"]
    # box entirely outside the image: dropped, noted, empty GT
    g = ground_truth((5, 5), boxes=[(10, 10, 2, 2)])
    assert g.n_objects == 0 and "covers no pixel" in score_map(np.ones((5, 5)), g)["reason"]


def test_gt_covering_image_and_no_positive_mass():
    m = np.arange(9.0).reshape(3, 3)
    r = score_map(m, np.ones((3, 3), bool))
    assert np.isnan(r["auc"]) and np.isnan(r["cnr"]) and "whole image" in r["reason"]
    assert r["pointing_game"] == 1.0 and r["mass_inside"] == pytest.approx(1.0)
    neg = -np.arange(9.0).reshape(3, 3) - 1
    r = score_map(neg, ground_truth((3, 3), boxes=[(0, 0, 1, 1)]))
    assert np.isnan(r["mass_inside"]) and "no positive attribution" in r["reason"]
    assert r["pointing_game"] == 1.0   # max -1 at (0, 0)
    assert r["auc"] == pytest.approx(1.0)


def test_cnr_infinite_for_piecewise_constant_map():
    g = ground_truth((4, 4), boxes=[(1, 1, 2, 2)])
    r = score_map(g.mask.astype(float), g)
    assert r["cnr"] == math.inf and "cnr infinite" in r["reason"]
    assert r["gcnr"] == pytest.approx(1.0) and r["auc"] == pytest.approx(1.0)
    r = score_map(1.0 - g.mask, g)
    assert r["cnr"] == -math.inf and r["auc"] == pytest.approx(0.0)


def test_pixel_auc_matches_sklearn_with_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(3)
    v = rng.integers(0, 4, 200).astype(float)   # heavy ties
    y = rng.random(200) < 0.3
    assert pixel_auc(v, y) == pytest.approx(roc_auc_score(y, v))
    assert np.isnan(pixel_auc(v, np.zeros(200, bool)))


def test_otsu_split_differs_from_fixed_threshold():
    # 8 x 0, 4 x 5, 1 x 10: between-class variance 8/13*5/13*6^2 (split 0|5) beats 12/169*(10-5/3)^2
    v = np.array([[0] * 8 + [5] * 4 + [10]], float)
    fg = binarize_map(v, "otsu")
    np.testing.assert_array_equal(fg, v >= 5)
    np.testing.assert_array_equal(binarize_map(v, "fixed", threshold=0.6), v >= 10)
    idx, k = otsu_threshold_bin(np.array([0.0, 0.0, 1.0, 3.0]), nbins=3)  # bins [0,1), [1,2), [2,3]
    np.testing.assert_array_equal(idx, [0, 0, 1, 2])
    # counts [2, 1, 1], centres [.5, 1.5, 2.5]; w0*w1*(mu0-mu1)^2 with counts:
    # k=1: 2*2*(0.5-2)^2 = 9;  k=2: 3*1*((1+1.5)/3-2.5)^2 = 8.33  -> k = 1 (values 1 and 3 are foreground)
    assert k == 1


def test_rasterize_box_convention():
    m = rasterize_box((6, 8), 1.5, 2.0, 2.0, 3.0)   # columns 2, 3 (1.5 <= i < 3.5), rows 2, 3, 4
    assert m.sum() == 6 and m[2:5, 2:4].all()
    assert rasterize_box((6, 8), 2.2, 1.0, 0.3, 1.0).sum() == 1   # thinner than a pixel: one kept
    with pytest.raises(InputError, match="negative size"):
        rasterize_box((6, 8), 0, 0, -1, 2)


def test_bad_parameters_name_the_parameter():
    m, g = _ramp()
    with pytest.raises(InputError, match="tie_rule='max'"):
        score_map(m, g, tie_rule="max")
    with pytest.raises(InputError, match="binarize='mean'"):
        score_map(m, g, binarize=("mean",))
    with pytest.raises(InputError, match="threshold=1.5"):
        score_map(m, g, threshold=1.5, binarize=("fixed",))
    with pytest.raises(InputError, match="tolerance"):
        score_map(m, g, tolerance=-1)
    with pytest.raises(InputError, match="ground truth shape"):
        score_map(np.zeros((5, 5)), g)


def test_planted_inside_beats_outside_on_every_score():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:48, :48]
    inside, outside, gts = [], [], []
    for _ in range(12):
        w, h = rng.integers(6, 12, 2)
        x, y = rng.integers(2, 20, 2)
        g = ground_truth((48, 48), boxes=[(x, y, w, h)])
        cy, cx = g.centroids[0]
        oy, ox = 47 - cy, 47 - cx   # a blob as far away as the box is from the other corner
        blob = lambda a, b: np.exp(-((yy - a) ** 2 + (xx - b) ** 2) / (2 * 3.0 ** 2))  # noqa: E731
        noise = 0.2 * rng.random((48, 48))
        inside.append(blob(cy, cx) + noise)
        outside.append(blob(oy, ox) + noise)
        gts.append(g)
    a = score_maps(inside, gts)
    b = score_maps(outside, gts)
    from radlens.localization.scores import higher_is_better, score_columns

    for col in score_columns():
        if higher_is_better(col):
            assert (a[col] > b[col]).all(), col
        else:
            assert (a[col] < b[col]).all(), col


def test_score_maps_table_and_3d():
    m = np.zeros((3, 4, 4))
    m[1, 1, 1] = 1
    gt = np.zeros((3, 4, 4), bool)
    gt[1, 1:3, 1:3] = True
    df = score_maps(m[None], gt[None], case_ids=["vol"])
    assert list(df["case_id"]) == ["vol"] and df.loc[0, "pointing_game"] == 1.0
    # 3-D box IoU: largest component is the single voxel -> 1 / 4
    assert df.loc[0, "box_iou_fixed"] == pytest.approx(1 / 4)
    with pytest.raises(InputError, match="2 maps but 1"):
        score_maps([m[0], m[0]], [gt[0]])
