"""Perturbation panel on hand-made images: footprint where recorded, nothing outside it."""
import numpy as np
import pytest
from scipy import ndimage as ndi

from radlens.errors import ConfigError, InputError
from radlens.probe.panel import (KINDS, PanelSpec, apply_perturbation, choose_centers,
                                 footprint_box, footprint_boxes, footprint_weights, perturb_cell)


def _checker(n=48, period=4):
    yy, xx = np.mgrid[:n, :n]
    return (((yy // period) + (xx // period)) % 2).astype(np.float32) * 10.0 + 5.0


def _outside(shape, center, diameter):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return (yy - center[0]) ** 2 + (xx - center[1]) ** 2 >= (diameter / 2) ** 2


@pytest.mark.parametrize("kind,strength", [("blur", 1.5), ("motion", 7.0), ("texture", 1.0),
                                           ("nodule", 1.0)])
def test_changes_only_inside_the_recorded_footprint(kind, strength):
    img = _checker()
    center, d = (20.3, 27.6), 12.0
    out, rec = apply_perturbation(img, kind, center, d, strength, rng=np.random.default_rng(0))
    assert out.shape == img.shape and out.dtype == np.float32
    outside = _outside(img.shape, center, d)
    np.testing.assert_array_equal(out[outside], img[outside])  # bit-identical outside
    diff = np.abs(out - img)
    # the change is inside and substantial at the footprint's centre region
    core = ~_outside(img.shape, center, 0.7 * d)
    assert diff[core].max() > 0.5
    # the centre of mass of the change is where it was recorded
    cy, cx = ndi.center_of_mass(diff)
    assert abs(cy - center[0]) < 2.0 and abs(cx - center[1]) < 2.0
    assert rec["perturbation"] == kind and rec["center"] == [20.3, 27.6] and rec["diameter_px"] == d


def test_blur_of_a_constant_image_changes_nothing_and_blur_smooths_edges():
    flat = np.full((32, 32), 3.0, np.float32)
    out, _ = apply_perturbation(flat, "blur", (16, 16), 10, 2.0)
    np.testing.assert_allclose(out, flat, atol=1e-5)
    img = _checker(32, 2)
    out, _ = apply_perturbation(img, "blur", (16, 16), 12, 2.0)
    # checkerboard of period 2 blurred with sigma 2 -> nearly its mean (10) at the centre
    assert abs(out[16, 16] - 10.0) < 0.5
    assert abs(img[16, 16] - 10.0) == 5.0


def test_motion_blur_is_directional():
    # horizontal stripes: blurring along x (0°) leaves them; along y (90°) averages them out
    img = np.zeros((40, 40), np.float32)
    img[::2] = 10.0
    along, rec = apply_perturbation(img, "motion", (20, 20), 16, 6.0, angle_deg=0.0)
    across, _ = apply_perturbation(img, "motion", (20, 20), 16, 6.0, angle_deg=90.0)
    assert rec["angle_deg"] == 0.0
    np.testing.assert_allclose(along[18:23, 18:23], img[18:23, 18:23], atol=1e-4)
    assert np.abs(across[18:23, 18:23] - 5.0).max() < 1.0
    _, rec = apply_perturbation(img, "motion", (20, 20), 16, 6.0, angle_deg="random",
                                rng=np.random.default_rng(3))
    assert 0 <= rec["angle_deg"] < 180


def test_nodule_peak_contrast_in_image_std_units():
    rng = np.random.default_rng(0)
    img = rng.normal(0, 2.0, (64, 64)).astype(np.float32)
    sd = float(np.std(img))
    out, rec = apply_perturbation(img, "nodule", (30, 30), 16, 0.5)
    assert out[30, 30] - img[30, 30] == pytest.approx(0.5 * sd, rel=1e-5)
    assert rec["amplitude"] == pytest.approx(0.5 * sd, rel=1e-6)
    dark, _ = apply_perturbation(img, "nodule", (30, 30), 16, 0.5, polarity=-1)
    assert dark[30, 30] < img[30, 30]


def test_texture_is_fine_and_zero_mean_inside():
    img = np.zeros((64, 64), np.float32)
    out, rec = apply_perturbation(img, "texture", (32, 32), 30, 1.0, period_px=3.0, scale=1.0,
                                  rng=np.random.default_rng(1))
    w = footprint_weights(img.shape, (32, 32), 30)
    assert abs((out * 1.0).sum() / w.sum()) < 0.05  # weighted mean ~ 0 inside
    patch = out[24:40, 24:40]
    # fine: most spectral energy at high spatial frequency (period ~3 px)
    f = np.abs(np.fft.fftshift(np.fft.fft2(patch - patch.mean()))) ** 2
    fy, fx = np.meshgrid(np.fft.fftshift(np.fft.fftfreq(16)), np.fft.fftshift(np.fft.fftfreq(16)),
                         indexing="ij")
    high = np.hypot(fy, fx) > 0.2
    assert f[high].sum() / f.sum() > 0.6
    assert rec["period_px"] == 3.0


def test_3d_footprint_is_a_ball():
    rng = np.random.default_rng(0)
    vol = rng.normal(size=(20, 24, 24)).astype(np.float32)
    out, _ = apply_perturbation(vol, "nodule", (10, 12, 12), 10, 1.0)
    zz, yy, xx = np.mgrid[:20, :24, :24]
    outside = (zz - 10) ** 2 + (yy - 12) ** 2 + (xx - 12) ** 2 >= 25
    np.testing.assert_array_equal(out[outside], vol[outside])
    assert out[10, 12, 12] > vol[10, 12, 12]


def test_footprint_weights_profile():
    w = footprint_weights((21, 21), (10, 10), 10)
    assert w[10, 10] == 1.0 and w[10, 13] == 1.0  # r=3 <= 0.7*5
    assert 0 < w[10, 14] < 1  # taper
    assert w[10, 15] == 0.0 and w[0, 0] == 0.0


def test_footprint_box_and_paired_cells():
    assert footprint_box((20.0, 30.0), 8.0) == (26.0, 16.0, 8.0, 8.0)
    spec = PanelSpec.from_dict({"perturbations": {"nodule": {"strengths": [0.5, 1.0]},
                                                  "blur": {"strengths": [2.0]}},
                                "footprints": [0.1, 0.25]})
    cells = spec.cells()
    assert len(cells) == 6 and {c.perturbation for c in cells} == {"nodule", "blur"}
    imgs = [np.random.default_rng(i).normal(size=(40, 40)).astype(np.float32) for i in range(3)]
    centers = choose_centers([im.shape for im in imgs], spec, seed=7)
    assert all(np.allclose(a, b) for a, b in zip(centers, choose_centers([im.shape for im in imgs], spec, seed=7)))
    for c in centers:  # the largest footprint fits with the margin
        assert np.all(c >= 0.25 * 40 / 2) and np.all(c <= 39 - 0.25 * 40 / 2)
    pert, recs = perturb_cell(imgs, centers, cells[0], spec, seed=1)
    boxes = footprint_boxes(imgs, centers, cells[0].footprint_frac)
    for im, p, c, b in zip(imgs, pert, centers, boxes):
        x, y, w, h = b
        changed = np.argwhere(p != im)
        assert changed.size > 0
        assert changed[:, 1].min() >= x and changed[:, 1].max() <= x + w
        assert changed[:, 0].min() >= y and changed[:, 0].max() <= y + h
    # reproducible per cell
    again, _ = perturb_cell(imgs, centers, cells[0], spec, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(pert, again))


def test_bad_inputs_and_configs_name_the_problem():
    img = np.zeros((16, 16), np.float32)
    with pytest.raises(InputError, match="kind='sharpen'"):
        apply_perturbation(img, "sharpen", (8, 8), 4, 1.0)
    with pytest.raises(InputError, match="strength"):
        apply_perturbation(img, "blur", (8, 8), 4, -1.0)
    with pytest.raises(InputError, match="outside the image"):
        apply_perturbation(img, "nodule", (8, 20), 4, 1.0)
    with pytest.raises(InputError, match="3 coordinates"):
        footprint_weights((16, 16), (8, 8, 8), 4)
    with pytest.raises(ConfigError, match="footprints"):
        PanelSpec.from_dict({"perturbations": {"blur": {"strengths": [1]}}, "footprints": [1.5]})
    with pytest.raises(ConfigError, match="strengths"):
        PanelSpec.from_dict({"perturbations": {"blur": {"strengths": []}}, "footprints": [0.1]})
    with pytest.raises(ConfigError, match="kind 'warp'"):
        PanelSpec.from_dict({"perturbations": {"warp": {"strengths": [1]}}, "footprints": [0.1]})
    with pytest.raises(ConfigError, match="unknown key"):
        PanelSpec.from_dict({"perturbations": {"blur": {"strengths": [1], "angle_deg": 3}},
                             "footprints": [0.1]})
    assert set(KINDS) == {"blur", "motion", "texture", "nodule"}
