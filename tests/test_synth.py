"""Phantom cohorts: manifest contract, determinism, planted attributes visible in the pixels, errors."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from radlens.errors import InputError
from radlens.synth import make_cohort, sample_attributes

ATTRS = ["has_lesion", "lesion_radius", "lesion_area_frac", "lesion_intensity", "texture_corr_len",
         "texture_amp", "elongation", "orientation", "center_x", "center_y"]
TASKS = ["task_texture", "task_intensity", "task_shape"]


def _read(root, rel):
    return sitk.GetArrayFromImage(sitk.ReadImage(str(root / rel)))


def _auc(score, y):
    """Mann-Whitney AUC written out (ties count 1/2)."""
    pos, neg = score[y == 1], score[y == 0]
    gt = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return gt / (len(pos) * len(neg))


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    out = tmp_path_factory.mktemp("cohort")
    path = make_cohort(out, n_cases=40, image_size=64, seed=3)
    return out, pd.read_csv(path)


def test_manifest_contract(cohort):
    root, df = cohort
    assert list(df.columns[:6]) == ["case_id", "patient_id", "split", "image", "mask", "label"]
    for c in ATTRS + TASKS:
        assert c in df.columns
    assert not any(c in df.columns for c in ("bbox_x", "bbox_y", "bbox_w", "bbox_h"))
    assert df["case_id"].is_unique and len(df) == 40
    # 20% lesion-free: exactly 8 of 40
    assert (df["has_lesion"] == 0).sum() == 8
    les = df[df.has_lesion == 1]
    for t in TASKS:  # balanced among lesion cases, empty for lesion-free
        assert les[t].sum() == 16 and les[t].notna().all()
        assert df.loc[df.has_lesion == 0, t].isna().all()
    for c in ("lesion_intensity", "texture_corr_len", "texture_amp"):
        assert df.loc[df.has_lesion == 0, c].isna().all() and les[c].notna().all()
    # two images per patient; one split per patient; both splits present
    assert (df.groupby("patient_id").size() == 2).all()
    assert (df.groupby("patient_id")["split"].nunique() == 1).all()
    assert set(df["split"]) == {"train", "test"}
    assert df.loc[df.split == "test", "patient_id"].nunique() == 6      # 30% of 20 patients
    # the three task labels are not copies of each other
    assert not (les.task_texture == les.task_intensity).all()
    assert not (les.task_shape == les.task_intensity).all()


def test_files_types_and_rois(cohort):
    root, df = cohort
    for r in df.itertuples():
        im = sitk.ReadImage(str(root / r.image))
        assert im.GetDimension() == 2 and im.GetSize() == (64, 64)
        assert im.GetPixelID() == sitk.sitkFloat32
        mk = sitk.ReadImage(str(root / r.mask))
        assert mk.GetPixelID() == sitk.sitkUInt8
        m = sitk.GetArrayFromImage(mk)
        assert set(np.unique(m)) <= {0, 1} and m.sum() >= 1      # every row has a valid ROI
        assert m.mean() == pytest.approx(r.lesion_area_frac, abs=1e-6)


def test_planted_attributes_are_in_the_pixels(cohort):
    root, df = cohort
    les = df[df.has_lesion == 1]
    means, cents, elong, angle, rough = [], [], [], [], []
    for r in les.itertuples():
        a = _read(root, r.image).astype(float)
        m = _read(root, r.mask).astype(bool)
        means.append(a[m].mean())
        rr, cc = np.nonzero(m)
        cents.append((cc.mean() + 0.5 - r.center_x, rr.mean() + 0.5 - r.center_y))
        # second moments -> axis ratio and orientation (x right, y up as displayed)
        x, y = cc - cc.mean(), -(rr - rr.mean())
        cov = np.cov(np.vstack([x, y])) + np.eye(2) / 12.0
        w, v = np.linalg.eigh(cov)
        elong.append(np.sqrt(w[1] / w[0]))
        angle.append(np.arctan2(v[1, 1], v[0, 1]) % np.pi)
        # roughness: mean |4-neighbour Laplacian| in the eroded ROI, per unit of texture amplitude
        lap = np.abs(4 * a[1:-1, 1:-1] - a[:-2, 1:-1] - a[2:, 1:-1] - a[1:-1, :-2] - a[1:-1, 2:])
        inner = m[1:-1, 1:-1] & m[:-2, 1:-1] & m[2:, 1:-1] & m[1:-1, :-2] & m[1:-1, 2:]
        rough.append(lap[inner].mean() / r.texture_amp if inner.sum() >= 3 else np.nan)
    means = np.array(means)
    # mean inside the mask tracks the planted intensity (edges blend with anatomy, noise adds)
    assert np.corrcoef(means, les.lesion_intensity)[0, 1] > 0.95
    assert np.median(np.abs(means - les.lesion_intensity)) < 0.04
    assert _auc(means, les.task_intensity.to_numpy()) > 0.95
    # the recorded centre is the ROI centroid (within a pixel)
    assert np.abs(np.array(cents)).max() < 1.0
    # shape: axis ratio of the mask separates the shape task; orientation matches for elongated ROIs
    elong = np.array(elong)
    assert _auc(elong, les.task_shape.to_numpy()) > 0.95
    big = (les.lesion_radius > 4).to_numpy()
    assert np.corrcoef(elong[big], les.elongation[big])[0, 1] > 0.9
    long_ = (les.task_shape == 1).to_numpy() & big
    d = np.abs(np.array(angle)[long_] - les.orientation.to_numpy()[long_]) % np.pi
    assert np.minimum(d, np.pi - d).max() < 0.25
    # texture: fine textures are rougher than coarse ones
    rough = np.array(rough)
    ok = np.isfinite(rough)
    assert _auc(-rough[ok], les.task_texture.to_numpy()[ok]) > 0.85


def test_lesion_sizes_include_small_and_large():
    att = sample_attributes(400, seed=0)
    r = att["lesion_radius"]
    assert r.min() >= 2.0 and r.max() <= 12.0
    assert (r < 4).mean() > 0.25 and (r > 8).mean() > 0.15
    # attributes drawn independently of each other: no strong correlation between them
    les = att[att.has_lesion == 1]
    c = les[["lesion_radius", "lesion_intensity", "texture_corr_len", "texture_amp", "elongation"]].corr()
    off = c.to_numpy()[~np.eye(5, dtype=bool)]
    assert np.abs(off).max() < 0.2


def test_deterministic_and_seed_dependent(tmp_path):
    a = pd.read_csv(make_cohort(tmp_path / "a", n_cases=6, image_size=48, seed=7))
    b = pd.read_csv(make_cohort(tmp_path / "b", n_cases=6, image_size=48, seed=7))
    c = pd.read_csv(make_cohort(tmp_path / "c", n_cases=6, image_size=48, seed=8))
    pd.testing.assert_frame_equal(a, b)
    for ra, rb in zip(a.itertuples(), b.itertuples()):
        np.testing.assert_array_equal(_read(tmp_path / "a", ra.image), _read(tmp_path / "b", rb.image))
        np.testing.assert_array_equal(_read(tmp_path / "a", ra.mask), _read(tmp_path / "b", rb.mask))
    assert not np.array_equal(_read(tmp_path / "a", a.image[0]), _read(tmp_path / "c", c.image[0]))


def test_bbox_mode_matches_mask_bounding_box(tmp_path):
    m = pd.read_csv(make_cohort(tmp_path / "m", n_cases=8, seed=1, roi="mask"))
    b = pd.read_csv(make_cohort(tmp_path / "b", n_cases=8, seed=1, roi="bbox"))
    assert "mask" not in b.columns and not (tmp_path / "b" / "masks").exists()
    for rm, rb in zip(m.itertuples(), b.itertuples()):
        mask = _read(tmp_path / "m", rm.mask)
        rows, cols = np.nonzero(mask)
        assert (rb.bbox_x, rb.bbox_y) == (cols.min(), rows.min())           # x = column, y = row
        assert (rb.bbox_w, rb.bbox_h) == (cols.max() - cols.min() + 1, rows.max() - rows.min() + 1)
        np.testing.assert_array_equal(_read(tmp_path / "m", rm.image), _read(tmp_path / "b", rb.image))


def test_png_format(tmp_path):
    from PIL import Image

    df = pd.read_csv(make_cohort(tmp_path, n_cases=4, seed=0, image_format="png", png_dtype="uint16"))
    im = np.asarray(Image.open(tmp_path / df.image[0]))
    assert im.dtype == np.uint16 and im.shape == (64, 64) and im.max() > 20000
    mk = np.asarray(Image.open(tmp_path / df["mask"][0]))
    assert mk.dtype == np.uint8 and set(np.unique(mk)) == {0, 1}
    df8 = pd.read_csv(make_cohort(tmp_path / "u8", n_cases=4, seed=0, image_format="png"))
    im8 = np.asarray(Image.open(tmp_path / "u8" / df8.image[0]))
    assert im8.dtype == np.uint8
    # same picture at two bit depths
    assert np.abs(im.astype(float) / 65535 - im8.astype(float) / 255).max() <= 0.5 / 255 + 1e-9


def test_volumes(tmp_path):
    df = pd.read_csv(make_cohort(tmp_path, n_cases=6, image_size=24, dim=3, seed=2))
    assert "center_z" in df.columns
    for r in df.itertuples():
        im = sitk.ReadImage(str(tmp_path / r.image))
        assert im.GetDimension() == 3 and im.GetSize() == (24, 24, 24)
        m = _read(tmp_path, r.mask).astype(bool)
        a = _read(tmp_path, r.image)
        assert m.sum() >= 1
        zz, rr, cc = np.nonzero(m)
        assert abs(zz.mean() + 0.5 - r.center_z) < 1.0 and abs(cc.mean() + 0.5 - r.center_x) < 1.0
        if r.has_lesion:
            assert abs(a[m].mean() - r.lesion_intensity) < 0.1  # small 3D ROIs: partial-volume edges


def test_read_by_manifest_layer(tmp_path):
    manifest = pytest.importorskip("radlens.io.manifest")
    images = pytest.importorskip("radlens.io.images")
    path = make_cohort(tmp_path, n_cases=4, seed=0, roi="bbox")
    m = manifest.read_manifest(path)
    case = images.load_case(m.df.iloc[0].to_dict())
    r = m.df.iloc[0]
    rows, cols = np.nonzero(case.roi)
    assert (cols.min(), rows.min()) == (r.bbox_x, r.bbox_y)
    assert case.array.shape == (64, 64)


@pytest.mark.parametrize("kwargs, words", [
    (dict(roi="box"), ["roi='box'", "mask", "bbox"]),
    (dict(dim=4), ["dim=4", "2", "3"]),
    (dict(n_cases=1), ["n_cases=1", ">= 2"]),
    (dict(image_size=16), ["image_size=16", "[32, 1024]"]),
    (dict(lesion_free_fraction=1.0), ["lesion_free_fraction=1.0", "[0, 1)"]),
    (dict(dim=3, roi="bbox", image_size=24), ["dim=3", "roi='mask'"]),
    (dict(image_format="jpg"), ["image_format='jpg'", "png"]),
    (dict(ranges={"size": (1, 2)}), ["'size'", "radius"]),
    (dict(ranges={"elongation": (1, 2)}), ["ranges['elongation']", "per class"]),
    (dict(placement="lung"), ["placement='lung'", "center", "inside"]),
])
def test_bad_arguments(tmp_path, kwargs, words):
    with pytest.raises(InputError) as ei:
        make_cohort(tmp_path, **{"n_cases": 4, **kwargs})
    for w in words:
        assert w in str(ei.value)


def test_ranges_override(tmp_path):
    att = sample_attributes(60, seed=0, ranges={"elongation": ((1.0, 1.1), (4.0, 5.0)), "radius": (5, 6)})
    les = att[att.has_lesion == 1]
    assert les.loc[les.task_shape == 1, "elongation"].between(4.0, 5.0).all()
    assert les.loc[les.task_shape == 0, "elongation"].between(1.0, 1.1).all()
    assert att.lesion_radius.between(5, 6).all()


def test_orientation_range_and_inside_placement():
    """``ranges['orientation']`` bounds the angle; ``placement='inside'`` puts the whole lesion in a lung
    field (where ``center`` lets a long lesion reach into the mediastinum)."""
    from radlens.synth import render_cohort
    from radlens.synth.cohort import chest_background, iter_cases

    rg = {"radius": (7, 10), "elongation": ((1.0, 1.15), (3.0, 4.5)), "orientation": (1.2, 1.9)}
    att = sample_attributes(40, seed=3, ranges=rg)
    assert att.orientation.between(1.2, 1.9).all()
    share = {}
    for placement in ("center", "inside"):
        im, roi, t = render_cohort(40, 64, 3, lesion_free_fraction=0.0, ranges=rg, placement=placement)
        # the lung weight under each ROI, recomputed from the same background draw (same rng stream)
        lung_share = []
        for (rec, _, m, _), i in zip(iter_cases(t, 64, 3, placement=placement), range(len(t))):
            from radlens.synth.cohort import patient_anatomy

            anat = patient_anatomy(np.random.default_rng([3, 0xA7A, int(rec["patient_id"][3:])]))
            _, lungs = chest_background(64, anat, np.random.default_rng([3, 0x1AA9E, i]))
            lung_share.append(float(lungs[m].mean()))
        share[placement] = np.asarray(lung_share)
    assert share["inside"].min() >= 0.6 and np.median(share["inside"]) >= 0.8, share["inside"]
    assert share["center"].min() < 0.6  # the long vertical lesions do not all fit with the centre rule


def test_cli(tmp_path, capsys):
    from radlens.cli import main

    assert main(["synth", "--out", str(tmp_path / "c"), "--n-cases", "6", "--size", "48", "--roi", "bbox"]) == 0
    df = pd.read_csv(tmp_path / "c" / "manifest.csv")
    assert len(df) == 6 and "bbox_w" in df.columns
    assert main(["synth", "--out", str(tmp_path / "d"), "--n-cases", "4", "--dim", "3", "--roi", "bbox"]) == 2
    assert "boxes and PNG are 2D only" in capsys.readouterr().err


def test_render_cohort_matches_written_files(tmp_path):
    from radlens.synth import render_cohort

    df = pd.read_csv(make_cohort(tmp_path, n_cases=6, image_size=48, seed=5))
    imgs, rois, tab = render_cohort(6, 48, seed=5)
    assert imgs.shape == (6, 48, 48) and rois.dtype == bool
    for i, r in enumerate(df.itertuples()):
        np.testing.assert_array_equal(imgs[i], _read(tmp_path, r.image))
        np.testing.assert_array_equal(rois[i], _read(tmp_path, r.mask).astype(bool))
    np.testing.assert_allclose(tab.center_x, df.center_x, atol=1e-3)


def test_cli_preview_figure(tmp_path):
    from PIL import Image

    from radlens.cli import main

    assert main(["synth", "--out", str(tmp_path), "--n-cases", "8", "--preview"]) == 0
    png = tmp_path / "phantom_examples.png"
    assert png.exists() and (tmp_path / "phantom_examples.svg").exists()
    w, h = Image.open(png).size
    assert w > 600 and h > 300   # a 2 x 4 grid of panels
