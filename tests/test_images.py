"""Image + ROI loading: every format, MONOCHROME1, boxes, label values, geometry mismatch."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from radlens.errors import CaseError, InputError
from radlens.io import images
from radlens.io.images import box_to_mask, image_size, load_case, load_image, read_image_array
from _images import write_image

DATA = Path(__file__).resolve().parent / "data"
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"

RNG = np.random.default_rng(0)
IMG2D = RNG.integers(0, 4000, size=(24, 30)).astype(np.int16)          # (H, W)
VOL = RNG.integers(-1000, 1000, size=(5, 12, 14)).astype(np.int16)     # (D, H, W)


_write = write_image  # tests/_images.py


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha", ".nii"])
def test_3d_formats_roundtrip(tmp_path, suffix):
    p = _write(VOL, tmp_path / f"v{suffix}", spacing=(0.7, 0.8, 2.5))
    img = load_image(p)
    assert img.GetSize() == (14, 12, 5)
    np.testing.assert_allclose(img.GetSpacing(), (0.7, 0.8, 2.5), rtol=1e-6)
    np.testing.assert_array_equal(read_image_array(p), VOL.astype(np.float32))
    assert image_size(p) == (14, 12, 5)


@pytest.mark.parametrize("suffix", [".png", ".nii.gz", ".tif"])
def test_2d_formats_roundtrip(tmp_path, suffix):
    arr = (IMG2D % 256).astype(np.uint8)
    p = _write(arr, tmp_path / f"a{suffix}")
    a = read_image_array(p)
    assert a.dtype == np.float32 and a.shape == (24, 30)
    np.testing.assert_array_equal(a, arr)


def test_2d_stored_as_3d_nifti_is_squeezed(tmp_path):
    p = _write(IMG2D[None], tmp_path / "one_slice.nii.gz", spacing=(0.5, 0.6, 3.0))
    img = load_image(p)
    assert img.GetDimension() == 2 and img.GetSize() == (30, 24)
    np.testing.assert_allclose(img.GetSpacing(), (0.5, 0.6))
    assert image_size(p) == (30, 24)


def test_jpeg_and_rgb_png_become_grey(tmp_path):
    rgb = RNG.integers(0, 256, size=(16, 20, 3)).astype(np.uint8)
    sitk.WriteImage(sitk.GetImageFromArray(rgb, isVector=True), str(tmp_path / "c.png"))
    expected = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
    np.testing.assert_allclose(read_image_array(tmp_path / "c.png"), expected, rtol=1e-5)
    # an RGB PNG whose channels are equal keeps its integer grey values exactly
    g = np.repeat(rgb[..., :1], 3, axis=2)
    sitk.WriteImage(sitk.GetImageFromArray(g, isVector=True), str(tmp_path / "g.png"))
    img = load_image(tmp_path / "g.png")
    assert img.GetPixelID() == sitk.sitkUInt8
    np.testing.assert_array_equal(sitk.GetArrayFromImage(img), rgb[..., 0])
    # JPEG (lossy): smooth image, close to the original
    smooth = np.tile(np.linspace(20, 230, 32), (24, 1)).astype(np.uint8)
    _write(smooth, tmp_path / "s.jpg")
    np.testing.assert_allclose(read_image_array(tmp_path / "s.jpg"), smooth, atol=4)


def _dicom_series(folder: Path, vol: np.ndarray, spacing=(0.5, 0.5, 2.0)):
    folder.mkdir()
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    uid = "1.2.826.0.1.3680043.2.1125.1.1234"
    for k in range(vol.shape[0]):
        sl = sitk.GetImageFromArray(vol[k])
        sl.SetSpacing(spacing[:2])
        for tag, val in (("0008|0060", "MR"), ("0020|000e", uid), ("0020|000d", uid + ".0"),
                         ("0020|0032", f"0\\0\\{k * spacing[2]}"), ("0020|0013", str(k + 1)),
                         ("0020|0037", "1\\0\\0\\0\\1\\0"), ("0028|0030", f"{spacing[1]}\\{spacing[0]}"),
                         ("0018|0050", str(spacing[2]))):
            sl.SetMetaData(tag, val)
        writer.SetFileName(str(folder / f"slice{k:03d}.dcm"))
        writer.Execute(sl)


def test_dicom_series_folder_is_3d(tmp_path):
    _dicom_series(tmp_path / "series", VOL)
    img = load_image(tmp_path / "series")
    assert img.GetSize() == (14, 12, 5)
    np.testing.assert_allclose(img.GetSpacing(), (0.5, 0.5, 2.0), rtol=1e-5)
    np.testing.assert_array_equal(read_image_array(tmp_path / "series"), VOL)
    assert image_size(tmp_path / "series") == (14, 12, 5)


def test_dicom_single_file_2d(tmp_path):
    _dicom_series(tmp_path / "one", VOL[:1])
    (p,) = list((tmp_path / "one").iterdir())
    np.testing.assert_array_equal(read_image_array(p), VOL[0])


def test_monochrome1_real_cr_is_inverted():
    p = DATA / "cxr_monochrome1_small.dcm"
    ds = pydicom.dcmread(p)
    assert ds.PhotometricInterpretation == "MONOCHROME1" and ds.BitsStored == 15
    raw = ds.pixel_array.astype(np.float64)
    # MONOCHROME1: stored 0 is white; displayed = (2**15 - 1) - stored
    np.testing.assert_array_equal(read_image_array(p), 32767 - raw)


def test_monochrome1_inverted_when_reader_did_not(tmp_path):
    """Older SimpleITK returns the raw MONOCHROME1 values: radlens must invert them itself."""
    p = DATA / "cxr_monochrome1_small.dcm"
    raw = pydicom.dcmread(p).pixel_array
    not_inverted = sitk.GetImageFromArray(raw[None].astype(np.uint16))
    fixed = images._monochrome1_fix(not_inverted, p)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(fixed)[0], 32767 - raw.astype(np.int64))
    inverted = sitk.GetImageFromArray((32767 - raw.astype(np.int64))[None].astype(np.uint16))
    assert images._monochrome1_fix(inverted, p) is inverted  # already inverted: untouched


@pytest.mark.skipif(not (SHARED / "cxr" / "RG1_UNCI.dcm").exists(),
                    reason="../shared/data/cxr/RG1_UNCI.dcm not present (team data, not part of a clone)")
def test_monochrome1_full_size_cxr():
    p = SHARED / "cxr" / "RG1_UNCI.dcm"
    raw = pydicom.dcmread(p).pixel_array
    a = read_image_array(p)
    assert a.shape == (1955, 1841)
    assert a[0, 0] == 32767 - int(raw[0, 0]) and a.max() == 32767 - int(raw.min())


def test_box_to_mask_half_open_pixels():
    img = sitk.Image(10, 8, sitk.sitkUInt8)
    m = box_to_mask(img, (2, 3, 4, 2))
    expected = np.zeros((8, 10), np.uint8)
    expected[3:5, 2:6] = 1
    np.testing.assert_array_equal(m, expected)
    # fractional edges round inwards: x in [1.5, 4.5) -> pixels 2, 3, 4
    m = box_to_mask(img, (1.5, 0, 3, 1))
    assert np.flatnonzero(m[0]).tolist() == [2, 3, 4] and m.sum() == 3
    # a sub-pixel box keeps one pixel
    assert box_to_mask(img, (2.2, 2.2, 0.3, 0.3)).sum() == 1


def test_load_case_box(tmp_path):
    p = _write(IMG2D, tmp_path / "a.nii.gz", spacing=(0.5, 0.25))
    c = load_case({"case_id": "b1", "image": p, "bbox_x": 3, "bbox_y": 4, "bbox_w": 5, "bbox_h": 6})
    assert c.case_id == "b1" and c.bbox == (3.0, 4.0, 5.0, 6.0)
    assert c.array.dtype == np.float32 and c.array.shape == (24, 30)
    assert c.roi.dtype == np.bool_ and c.roi.sum() == 30 and c.roi[4:10, 3:8].all()
    assert c.mask.GetPixelID() == sitk.sitkUInt8 and c.spacing == (0.5, 0.25)
    assert c.image.GetPixelID() == sitk.sitkInt16  # stored type kept for pyradiomics


def test_load_case_mask_label_255_and_bbox(tmp_path):
    img = _write((IMG2D % 256).astype(np.uint8), tmp_path / "a.png")
    m = np.zeros((24, 30), np.uint8)
    m[2:7, 10:13] = 255
    m[15:18, 1:3] = 128
    mp = _write(m, tmp_path / "m.png")
    c = load_case({"case_id": "m1", "image": img, "mask": mp, "label": 255})
    np.testing.assert_array_equal(c.roi, m == 255)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(c.mask), (m == 255).astype(np.uint8))
    assert c.bbox == (10.0, 2.0, 3.0, 5.0)
    with pytest.raises(CaseError) as ei:
        load_case({"case_id": "m2", "image": img, "mask": mp, "label": 1})
    e = ei.value
    assert e.case_id == "m2" and e.stage == "load"
    assert "label 1 does not occur" in e.message and "[0, 128, 255]" in e.message


def test_3d_mask_bbox_is_in_plane_union(tmp_path):
    p = _write(VOL, tmp_path / "v.nrrd")
    m = np.zeros(VOL.shape, np.uint8)
    m[1, 2:4, 3:6] = 1
    m[3, 5:7, 4:9] = 1
    mp = _write(m, tmp_path / "vm.nrrd")
    c = load_case({"case_id": "v", "image": p, "mask": mp, "label": 1})
    assert c.array.shape == (5, 12, 14) and c.roi.sum() == 6 + 10
    assert c.bbox == (3.0, 2.0, 6.0, 5.0)


def test_geometry_mismatch_error_and_nearest_resampling(tmp_path):
    img = _write(np.zeros((10, 10), np.int16), tmp_path / "img.nii.gz")
    coarse = np.zeros((4, 4), np.uint8)
    coarse[1, 2] = 1
    coarse[3, 0] = 1
    mp = _write(coarse, tmp_path / "mask.nii.gz", spacing=(3.0, 3.0))
    row = {"case_id": "g", "image": img, "mask": mp, "label": 1}
    with pytest.raises(CaseError) as ei:
        load_case(row, resample_mask=False)   # a caller with --resample-mask (radiomics, localize)
    msg = ei.value.message
    assert "is not on the grid of image 'img.nii.gz'" in msg and "size 10×10 (image) vs 4×4 (mask)" in msg
    assert "spacing (1, 1) (image) vs (3, 3) (mask)" in msg and "--resample-mask" in msg
    assert "np.float64" not in msg
    with pytest.raises(CaseError) as ei:
        load_case(row)                         # a caller without that option: no advice naming it
    assert "re-export the mask" in ei.value.message and "resample" not in ei.value.message.split(";")[-1]
    c = load_case(row, resample_mask=True)
    # nearest neighbour: image pixel i (physical i) takes mask index round(i / 3)
    idx = np.floor(np.arange(10) / 3 + 0.5).astype(int)
    expected = coarse[idx][:, idx].astype(bool)
    np.testing.assert_array_equal(c.roi, expected)
    assert c.roi.sum() == 3 * 3 + 2 * 2  # rows/cols 2-4 x 5-7, and 8-9 x 0-1


def test_load_case_errors_name_the_case(tmp_path):
    img = _write(IMG2D, tmp_path / "a.nii.gz")
    vol = _write(VOL, tmp_path / "v.nii.gz")
    cases = [
        ({"case_id": "x1", "image": str(tmp_path / "gone.png"), "bbox_x": 0, "bbox_y": 0, "bbox_w": 2, "bbox_h": 2},
         "does not exist"),
        ({"case_id": "x2", "image": img, "bbox_x": 25, "bbox_y": 0, "bbox_w": 10, "bbox_h": 2},
         "outside the 30x24 image"),
        ({"case_id": "x3", "image": vol, "bbox_x": 0, "bbox_y": 0, "bbox_w": 2, "bbox_h": 2}, "boxes are 2D"),
        ({"case_id": "x4", "image": img}, "neither a mask nor a complete box"),
    ]
    for row, needle in cases:
        with pytest.raises(CaseError) as ei:
            load_case(row)
        assert ei.value.case_id == row["case_id"] and ei.value.stage == "load"
        assert needle in ei.value.message, ei.value.message
    (tmp_path / "junk.nrrd").write_text("garbage", encoding="utf-8")
    with pytest.raises(InputError, match="cannot be read"):
        load_image(tmp_path / "junk.nrrd")


def test_load_case_accepts_manifest_rows(tmp_path):
    import pandas as pd

    from radlens.io.manifest import read_manifest

    _write((IMG2D % 256).astype(np.uint8), tmp_path / "a.png")
    pd.DataFrame([{"case_id": "r1", "image": "a.png", "bbox_x": 1, "bbox_y": 2, "bbox_w": 3, "bbox_h": 4}]
                 ).to_csv(tmp_path / "m.csv", index=False)
    man = read_manifest(tmp_path / "m.csv")
    c1 = load_case(next(man.rows()))
    c2 = load_case(man.df.iloc[0])
    assert c1.roi.sum() == c2.roi.sum() == 12 and c1.bbox == c2.bbox == (1.0, 2.0, 3.0, 4.0)


def test_missing_label_means_1_or_the_single_nonzero_value(tmp_path):
    img = _write((IMG2D % 256).astype(np.uint8), tmp_path / "a.png")
    m = np.zeros((24, 30), np.uint8)
    m[2:7, 10:13] = 255
    mp = _write(m, tmp_path / "m.png")
    for lab in (None, float("nan")):
        c = load_case({"case_id": "m", "image": img, "mask": mp, "label": lab})
        np.testing.assert_array_equal(c.roi, m == 255)
    m2 = m.copy()
    m2[20:22, 0:2] = 1
    mp2 = _write(m2, tmp_path / "m2.png")
    c = load_case({"case_id": "m", "image": img, "mask": mp2})  # 1 present: it is the ROI
    assert c.roi.sum() == 4
    m3 = m.copy()
    m3[20:22, 0:2] = 7
    mp3 = _write(m3, tmp_path / "m3.png")
    with pytest.raises(CaseError, match=r"label 1 does not occur .*\[0, 7, 255\]"):
        load_case({"case_id": "m", "image": img, "mask": mp3})  # ambiguous: two non-zero values
