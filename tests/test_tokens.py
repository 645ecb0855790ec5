"""ROI → token geometry on hand-worked examples (no model needed)."""
import logging

import numpy as np
import pytest

from radlens.encoders.preprocess import Preprocessor, crop_region
from radlens.encoders.tokens import (box_to_mask, center_sample_matrix, interval_overlap_matrix,
                                     roi_to_tokens, roi_token_weights, split_tokens, stored_to_model_coverage,
                                     token_coverage, tokens_to_grid)
from radlens.errors import InputError


def _pre(size, mode="full", margin=0.25, interpolation="auto"):
    pre = {"spatial_size": list(size), "intensity": "none", "channels": 1, "clip": None,
           "interpolation": interpolation}
    roi = {"rule": "overlap", "min_overlap": 0.5, "mode": mode, "crop_margin": margin}
    return Preprocessor(pre, roi, 1)


def test_interval_overlap_matrix_by_hand():
    # 2 cells over 3 pixels: cell 0 = [0, 1.5), cell 1 = [1.5, 3)
    a = interval_overlap_matrix(2, 3)
    np.testing.assert_allclose(a, [[1 / 1.5, 0.5 / 1.5, 0], [0, 0.5 / 1.5, 1 / 1.5]])
    # a span [2, 6) of 8 pixels in 2 cells
    b = interval_overlap_matrix(2, 8, 2.0, 6.0)
    np.testing.assert_allclose(b[0], [0, 0, .5, .5, 0, 0, 0, 0])
    np.testing.assert_allclose(b[1], [0, 0, 0, 0, .5, .5, 0, 0])


def test_center_sample_on_pixel_boundary_takes_mean():
    # 2 cells over 4 pixels: centres at 1.0 and 3.0 — pixel boundaries
    np.testing.assert_allclose(center_sample_matrix(2, 4), [[.5, .5, 0, 0], [0, 0, .5, .5]])
    # 2 cells over 3 pixels: centres 0.75 (pixel 0) and 2.25 (pixel 2)
    np.testing.assert_allclose(center_sample_matrix(2, 3), [[1, 0, 0], [0, 0, 1]])


def test_box_to_mask_integer_and_fractional():
    m = box_to_mask((1, 2, 3, 1), (4, 5))  # x=1, y=2, w=3, h=1
    exp = np.zeros((4, 5))
    exp[2, 1:4] = 1
    np.testing.assert_array_equal(m, exp)
    f = box_to_mask((0.5, 0, 1, 1), (2, 3))
    np.testing.assert_allclose(f, [[.5, .5, 0], [0, 0, 0]])
    with pytest.raises(InputError, match="width/height"):
        box_to_mask((0, 0, 0, 3), (4, 4))
    with pytest.raises(InputError, match=r"\(x, y, z, w, h, d\)"):
        box_to_mask((0, 0, 1, 1), (4, 4, 4))


def test_box_to_tokens_nonsquare_with_resize():
    """Stored 20 x 40 (H x W) resized to 32 x 64, 16-px patches → grid (2, 4).

    Token (a, b) covers model [16a, 16a+16) x [16b, 16b+16) = stored rows [10a, 10a+10),
    cols [10b, 10b+10). Box x=12, y=3, w=10, h=8 → stored rows [3, 11), cols [12, 22).
    Row overlaps: row-cell 0: 7/10, row-cell 1: 1/10; col-cell 1: 8/10, col-cell 2: 2/10.
    Token (0,1): 0.56; (0,2): 0.14; (1,1): 0.08; (1,2): 0.02.
    """
    roi = box_to_mask((12, 3, 10, 8), (20, 40))
    cov = stored_to_model_coverage(roi, [(0, 20), (0, 40)], (32, 64))
    score = token_coverage(cov, (2, 4), "overlap")
    exp = np.zeros((2, 4))
    exp[0, 1], exp[0, 2], exp[1, 1], exp[1, 2] = .56, .14, .08, .02
    np.testing.assert_allclose(score, exp, atol=1e-12)
    assert roi_to_tokens(cov, (2, 4), "overlap", 0.5).tolist() == [1]
    assert roi_to_tokens(cov, (2, 4), "overlap", 0.1).tolist() == [1, 2]
    # centre rule: centres in stored coords (5, 5+10b), (15, ...); only (0,1) at (5, 15) is inside
    assert roi_to_tokens(cov, (2, 4), "center").tolist() == [1]
    w = roi_token_weights(cov, (2, 4), "overlap", 0.1)
    np.testing.assert_allclose(w, [0, .5, .5, 0, 0, 0, 0, 0])


def test_crop_region_and_tokens_by_hand():
    """Stored 50 x 80; ROI rows [10, 20), cols [30, 50); margin 0.25 → wanted 15 x 30;
    model 32 x 32 → square crop of 30 px centred at (15, 40): rows [0, 30), cols [25, 55).
    Grid 4 x 4: cells of 7.5 stored px. Row overlaps 0, 2/3, 2/3, 0; col overlaps 1/3, 1, 1, 1/3.
    Selected (>= 0.5): (1,1), (1,2), (2,1), (2,2) → indices 5, 6, 9, 10.
    """
    roi = np.zeros((50, 80), bool)
    roi[10:20, 30:50] = True
    assert crop_region(roi, 0.25, (32, 32)) == [(0, 30), (25, 55)]
    img = np.arange(50 * 80, dtype=np.float32).reshape(50, 80)
    p = _pre((32, 32), mode="crop")(img, roi, case_id="c")
    assert p.region == [(0, 30), (25, 55)]
    assert tuple(p.x.shape) == (1, 32, 32)
    np.testing.assert_allclose(token_coverage(p.roi_cov, (4, 4)),
                               np.outer([0, 2 / 3, 2 / 3, 0], [1 / 3, 1, 1, 1 / 3]), atol=1e-12)
    assert roi_to_tokens(p.roi_cov, (4, 4)).tolist() == [5, 6, 9, 10]
    # the crop content is the stored image's [0:30, 25:55] resized (linear ramp: area resize of 30→32
    # is an upsample, so bilinear; the ramp's mean is preserved exactly)
    assert abs(float(p.x.mean()) - float(img[0:30, 25:55].mean())) < 1e-2


def test_crop_region_shifted_inside_image_and_3d():
    roi = np.zeros((50, 80), bool)
    roi[0:4, 0:4] = True  # corner ROI: wanted 6 px, centred at 2 → [-1, 5) → shifted to [0, 6)
    assert crop_region(roi, 0.25, (32, 32)) == [(0, 6), (0, 6)]
    vol = np.zeros((10, 20, 20), bool)
    vol[4:6, 8:12, 8:12] = True  # extents 2, 4, 4 → wanted 3, 6, 6 → isotropic 6 (model 8^3)
    assert crop_region(vol, 0.25, (8, 8, 8)) == [(2, 8), (7, 13), (7, 13)]


def test_3d_token_coverage_by_hand():
    """Model 8 x 8 x 8, grid 2 x 2 x 2; ROI voxels [0:4, 4:8, 0:2] fill 1/2 of cell (0, 1, 0)."""
    m = np.zeros((8, 8, 8), bool)
    m[0:4, 4:8, 0:2] = True
    cov = token_coverage(m, (2, 2, 2))
    assert cov[0, 1, 0] == pytest.approx(0.5)
    assert cov.sum() == pytest.approx(0.5)
    assert roi_to_tokens(m, (2, 2, 2)).tolist() == [2]  # (0, 1, 0) row-major in (2, 2, 2)


def test_fallback_to_nearest_token_warns(caplog):
    m = np.zeros((16, 16), bool)
    m[6:8, 6:9] = True  # overlap cell (0,0): 4/64, cell (0,1): 2/64
    with caplog.at_level(logging.WARNING, logger="radlens.encoders.tokens"):
        idx = roi_to_tokens(m, (2, 2), case_id="tiny")
    assert idx.tolist() == [0]
    assert "tiny" in caplog.text and "nearest token" in caplog.text
    # exact tie between two cells → the one whose centre is nearest the ROI centroid
    t = np.zeros((16, 16), bool)
    t[7, 3:5] = True    # 2 px in cell (0, 0)
    t[8:10, 3] = True   # 2 px in cell (1, 0): equal overlap
    # centroid row = mean(7.5, 7.5, 8.5, 9.5) = 8.25: nearer the centre of row-cell 1 (12) than 0 (4)
    assert roi_to_tokens(t, (2, 2)).tolist() == [2]


def test_empty_roi_is_an_error_naming_case():
    with pytest.raises(InputError, match="case 'c7'.*empty"):
        roi_to_tokens(np.zeros((8, 8), bool), (2, 2), case_id="c7")
    with pytest.raises(InputError, match="case 'c8'.*ROI is empty"):
        _pre((8, 8))(np.ones((8, 8), np.float32), np.zeros((8, 8), bool), case_id="c8")


def test_full_mode_resize_coverage_nonsquare_downsample():
    """Stored 6 x 9 → model 2 x 3 (area): each model pixel is a 3 x 3 block."""
    roi = np.zeros((6, 9), bool)
    roi[0:3, 0:4] = True
    cov = _pre((2, 3))(np.ones((6, 9), np.float32), roi).roi_cov
    np.testing.assert_allclose(cov, [[1, 1 / 3, 0], [0, 0, 0]])


def test_split_tokens_registers_and_grid():
    import torch

    b, d, grid, r = 2, 3, (2, 3), 4
    seq = torch.arange(b * (1 + r + 6) * d, dtype=torch.float32).reshape(b, 1 + r + 6, d)
    cls, regs, patch = split_tokens(seq, grid, n_prefix=1 + r)
    assert torch.equal(cls, seq[:, 0]) and torch.equal(regs, seq[:, 1:5]) and torch.equal(patch, seq[:, 5:])
    fmap = tokens_to_grid(seq, grid)
    assert fmap.shape == (b, d, 2, 3)
    # patch token k = (row k // 3, col k % 3)
    assert torch.equal(fmap[:, :, 1, 2], seq[:, 5 + 5])
    nocls, _, p2 = split_tokens(seq[:, 5:], grid, n_prefix=0, has_cls=False)
    assert nocls is None and torch.equal(p2, patch)
    with pytest.raises(InputError, match="tokens.patch_size"):
        split_tokens(seq, (3, 3), n_prefix=1)


def test_intensity_mean_std_rescale_none_is_a_fixed_affine_map():
    from radlens.encoders.spec import normalize_spec
    from radlens.errors import ConfigError

    img = np.array([[-0.5, 0.0], [0.5, 2.0]], np.float32)  # min-max would map to 0, 0.2, 0.4, 1
    base = {"spatial_size": [2, 2], "interpolation": "auto", "clip": [0.0, 1.0]}
    roi = {"rule": "overlap", "min_overlap": 0.5, "mode": "full", "crop_margin": 0.25}
    fixed = Preprocessor({**base, "intensity": {"mean": [0.4], "std": [0.2], "rescale": "none"}}, roi, 1)(img).x
    # clip to [0, 0, 0.5, 1], then (v - 0.4) / 0.2 with no per-image statistics
    np.testing.assert_allclose(fixed[0].numpy(), [[-2.0, -2.0], [0.5, 3.0]], atol=1e-6)
    old = Preprocessor({**base, "intensity": {"mean": [0.4], "std": [0.2]}}, roi, 1)(img).x
    np.testing.assert_allclose(old[0].numpy(), [[-2.0, -2.0], [0.5, 3.0]], atol=1e-6)  # clipped image spans 0..1
    dim = np.array([[0.0, 0.1], [0.2, 0.5]], np.float32)  # rescale: minmax stretches a dim image, none does not
    assert Preprocessor({**base, "intensity": {"mean": [0.4], "std": [0.2]}}, roi, 1)(dim).x.max() == pytest.approx(3.0)
    assert Preprocessor({**base, "intensity": {"mean": [0.4], "std": [0.2], "rescale": "none"}}, roi,
                        1)(dim).x.max() == pytest.approx(0.5)
    # the default rescale is not written into the normalised spec: earlier specs keep their JSON (and hash)
    assert normalize_spec({"kind": "hf", "path": ".", "preprocess": {"intensity": {"mean": 0.4, "std": 0.2}}})[
        "preprocess"]["intensity"] == {"mean": [0.4], "std": [0.2]}
    assert normalize_spec({"kind": "hf", "path": ".", "preprocess": {"intensity": {
        "mean": 0.4, "std": 0.2, "rescale": "none"}}})["preprocess"]["intensity"]["rescale"] == "none"
    spec = {"kind": "hf", "path": ".", "preprocess": {"intensity": {"mean": 0.4, "std": 0.2, "rescale": "zscore"}}}
    with pytest.raises(ConfigError, match="rescale='zscore' not allowed"):
        normalize_spec(spec)
