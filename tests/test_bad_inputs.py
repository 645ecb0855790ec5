"""The bad-input matrix: malformed inputs of every kind radlens has met in public bug reports
(issue #12), each either refused with a message naming the case and the cause, or loaded with the
right value and a recorded warning.

Kinds: mask label inference; mask geometry repair; DICOM series integrity; DICOM spacing; manifest
up-front checks. (AUC bounds, undefined statistics, probe CIs and radiomics tables are in
``test_input_faults_stats.py``.) ``MATRIX`` lists the malformed inputs; the count is asserted at the
end so the issue's closing note stays true.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from radlens.errors import CaseError, ManifestError
from radlens.io.images import load_case
from radlens.io.manifest import read_manifest
from _images import write_image

MR = "1.2.840.10008.5.1.4.1.1.4"
CT = "1.2.840.10008.5.1.4.1.1.2"


# --------------------------------------------------------------------------- writers
_sitk_write = write_image  # tests/_images.py


def _dcm(path, px, *, spacing=(1.0, 1.0), z=0.0, pixel_spacing=None, series=None, sop=MR, number=1):
    """One DICOM slice written with pydicom (PixelSpacing, ImagePositionPatient z)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = sop, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = sop, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    ds.SeriesInstanceUID = series or generate_uid()
    ds.FrameOfReferenceUID = "1.2.826.0.1.3680043.8.498.2"
    ds.Modality, ds.PatientName, ds.PatientID, ds.InstanceNumber = "MR", "Phantom^Test", "PH", number
    ds.Rows, ds.Columns = px.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelSpacing = pixel_spacing if pixel_spacing is not None else [spacing[1], spacing[0]]
    ds.SliceThickness = 2.0
    ds.ImagePositionPatient, ds.ImageOrientationPatient = [0.0, 0.0, float(z)], [1, 0, 0, 0, 1, 0]
    ds.PixelData = px.astype(np.uint16).tobytes()
    ds.save_as(str(path), enforce_file_format=True)
    return str(path)


def _series(folder: Path, zs, shape=(16, 16)):
    folder.mkdir()
    uid = generate_uid()
    rng = np.random.default_rng(3)
    for k, z in enumerate(zs):
        px = rng.normal(1000, 10, shape)
        px[4:12, 4:12] += 200
        _dcm(folder / f"slice_{k}.dcm", px, z=z, series=uid, sop=CT, number=k + 1)
    return str(folder)


@pytest.fixture()
def files(tmp_path):
    """Images and masks of every kind used by the matrix (all on 64x64 or their own grids)."""
    d = tmp_path
    rng = np.random.default_rng(0)
    img = rng.integers(80, 120, (64, 64)).astype(np.uint8)
    img[20:40, 20:40] = 150
    Image.fromarray(img).save(d / "img.png")
    _sitk_write(img.astype(np.int16), d / "img.nii.gz")
    roi = np.zeros((64, 64), np.uint8)
    roi[20:40, 20:40] = 1
    f = dict(root=d)
    # float mask: an 8-bit 0/1 mask rescaled to [0, 1] -> ROI 1/255 (bug_01)
    _sitk_write((roi / 255.0).astype(np.float32), d / "float255.nii.gz")
    # a probability-like map 0 / 0.5 / 1
    pm = roi.astype(np.float32)
    pm[18:20, 20:40] = 0.5
    _sitk_write(pm, d / "prob.nii.gz")
    nanm = roi.astype(np.float32)
    nanm[0, 0] = np.nan
    _sitk_write(nanm, d / "nan.mha")
    # an integer-valued float mask is a label map
    _sitk_write(roi.astype(np.float32), d / "float01.nii.gz")
    # lossy JPEG of a 0/255 disc (bug_02)
    yy, xx = np.mgrid[:64, :64]
    disc = (((yy - 32) ** 2 + (xx - 32) ** 2) <= 14 ** 2).astype(np.uint8) * 255
    Image.fromarray(disc).save(d / "disc.jpg", quality=75)
    Image.fromarray(disc).save(d / "disc.png")
    # an anti-aliased drawing: a smooth ramp at the edge (many grey levels)
    aa = np.clip((14.5 - np.sqrt((yy - 32.0) ** 2 + (xx - 32.0) ** 2)) * 40, 0, 255).astype(np.uint8)
    aa[30:34, 30:34] = np.arange(16, dtype=np.uint8).reshape(4, 4) + 100  # more distinct values
    Image.fromarray(aa).save(d / "antialiased.png")
    # a multi-label segmentation (40 labels) in a format with geometry
    multi = np.zeros((64, 64), np.uint8)
    for k in range(40):
        multi[k, 10:20] = k + 1
    _sitk_write(multi, d / "multi.nii.gz")
    # colour masks: a red ROI on black (channels differ) and a grey 0/255 mask stored as RGB
    red = np.zeros((64, 64, 3), np.uint8)
    red[20:40, 20:40, 0] = 255
    Image.fromarray(red).save(d / "red.png")
    Image.fromarray(np.repeat((roi * 255)[..., None], 3, axis=2)).save(d / "grey_rgb.png")
    # a NIfTI mask of the image's size whose header was lost (spacing 1 -> 0.5 image)
    _sitk_write(img.astype(np.int16), d / "img05.nii.gz", spacing=(0.5, 0.5))
    _sitk_write(roi, d / "roi_noheader.nii.gz")
    # label maps with problems
    two = roi * 7
    two[50:55, 50:55] = 255
    Image.fromarray(two.astype(np.uint8)).save(d / "seven255.png")
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(d / "empty.png")
    Image.fromarray(roi * 255).save(d / "m255.png")
    # a PNG mask of another size (no geometry: cannot be placed)
    Image.fromarray(np.pad(roi, ((0, 16), (0, 16))) * 255).save(d / "bigger.png")
    # NIfTI mask on a coarser grid (geometry on both: resampling applies)
    coarse = np.zeros((32, 32), np.uint8)
    coarse[10:20, 10:20] = 1
    _sitk_write(coarse, d / "coarse.nii.gz", spacing=(2.0, 2.0))
    # 3D volume and a 2D mask of one slice (bug_04)
    vol = rng.integers(0, 100, (6, 64, 64)).astype(np.int16)
    _sitk_write(vol, d / "vol.nrrd", spacing=(0.7, 0.7, 3.0))
    _sitk_write(roi, d / "slice_mask.nrrd", spacing=(0.7, 0.7))
    # MR DICOM with 0.8 mm pixels and a PNG mask on its pixel grid (bug_03)
    px = rng.normal(1000, 20, (64, 64))
    px[20:40, 20:40] += 800
    _dcm(d / "mr.dcm", px, spacing=(0.8, 0.8))
    _dcm(d / "zero_spacing.dcm", px, pixel_spacing=[0, 0])
    # DICOM series: uniform, missing slice (bug_05), duplicate, uneven
    _series(d / "ok_series", [0, 2, 4, 6, 8, 10])
    _series(d / "gap_series", [0, 2, 4, 8, 10, 12])
    _series(d / "dup_series", [0, 2, 4, 4, 6, 8])
    _series(d / "uneven_series", [0, 2, 4, 7, 9, 11])
    for name, n in (("ok", 6), ("gap", 6), ("dup", 6), ("uneven", 6)):
        m = np.zeros((n, 16, 16), np.uint8)
        m[:, 4:12, 4:12] = 1
        np.save(d / f"{name}_mask.npy", m)
    return f


def _series_mask(f, name):
    """A mask on the grid SimpleITK reads for the series (uniform spacing), as the user would have."""
    from radlens.io.images import load_image

    img = load_image(f["root"] / f"{name}_series", slice_gaps="warn")
    m = sitk.GetImageFromArray(np.load(f["root"] / f"{name}_mask.npy"))
    m.CopyInformation(img)
    p = f["root"] / f"{name}_mask.nrrd"
    sitk.WriteImage(m, str(p))
    return str(p)


# --------------------------------------------------------------------------- the matrix
# (id, image, mask, label, load_case kwargs, words the load error and the manifest problem must hold)
MATRIX = [
    ("float_1_over_255", "img.png", "float255.nii.gz", None, {},
     ["not a label map", "non-integer values", "0.00392157"]),
    ("float_probability", "img.png", "prob.nii.gz", None, {}, ["not a label map", "non-integer", "0.5"]),
    ("float_nan", "img.png", "nan.mha", 1, {}, ["not a label map", "NaN"]),
    ("jpeg_mask", "img.png", "disc.jpg", None, {}, ["lossy JPEG", "distinct values", "losslessly"]),
    ("jpeg_mask_label_given", "img.png", "disc.jpg", 255, {}, ["lossy JPEG"]),
    ("antialiased_png", "img.png", "antialiased.png", None, {}, ["distinct values", "more than a label map's 32"]),
    ("many_labels_no_label", "img.nii.gz", "multi.nii.gz", None, {}, ["holds 41 distinct values",
                                                                      "multi-label segmentation"]),
    ("colour_mask", "img.png", "red.png", None, {}, ["colour image whose channels differ", "single-channel"]),
    ("nifti_header_lost", "img05.nii.gz", "roi_noheader.nii.gz", 1, {"resample_mask": False},
     ["spacing (0.5, 0.5) (image) vs (1, 1) (mask)", "mask.CopyInformation(image)", "--resample-mask"]),
    ("label_zero", "img.png", "m255.png", 0, {}, ["0 is the background", "cannot be the ROI"]),
    ("label_absent", "img.png", "m255.png", 3, {}, ["label 3 does not occur", "[0, 255]"]),
    ("mask_empty", "img.png", "empty.png", None, {}, ["is empty", "no ROI"]),
    ("two_values_no_label", "img.png", "seven255.png", None, {}, ["label 1 does not occur", "[0, 7, 255]",
                                                                   "ambiguous"]),
    ("mask_2d_on_3d", "vol.nrrd", "slice_mask.nrrd", 1, {}, ["3D image (64×64×6) vs 2D mask (64×64)",
                                                             "resampling does not apply", "3D mask"]),
    ("mask_2d_on_3d_resample", "vol.nrrd", "slice_mask.nrrd", 1, {"resample_mask": True},
     ["resampling does not apply"]),
    ("png_size_mismatch", "img.png", "bigger.png", 255, {},
     ["size 64×64 (image) vs 80×80 (mask)", "no spacing or origin", "re-export the mask at the image's size"]),
    ("png_size_mismatch_resample", "img.png", "bigger.png", 255, {"resample_mask": True},
     ["resampling does not apply to formats without geometry"]),
    ("nifti_grid_mismatch", "img.nii.gz", "coarse.nii.gz", 1, {"resample_mask": False},
     ["spacing (1, 1) (image) vs (2, 2) (mask)", "--resample-mask"]),
    ("series_missing_slice", "gap_series", "gap_mask", 1, {}, ["non-uniform slice positions", "4 mm between",
                                                                 "slice_2.dcm (z = 4)", "slice_3.dcm (z = 8)",
                                                                 "1 missing slice", "'slice_gaps'"]),
    ("series_duplicate_slice", "dup_series", "dup_mask", 1, {}, ["duplicate slice position", "at 4 mm"]),
    ("series_uneven_steps", "uneven_series", "uneven_mask", 1, {}, ["non-uniform slice positions", "3 mm between"]),
]
N_MALFORMED = len(MATRIX) + 2  # + slice_gaps value and label 0 given as text, below


def _row(f, case_id, image, mask, label):
    mp = _series_mask(f, mask.split("_")[0]) if mask.endswith("_mask") else str(f["root"] / mask)
    return {"case_id": case_id, "image": str(f["root"] / image), "mask": mp, "label": label}


@pytest.mark.parametrize("case_id, image, mask, label, kw, words", MATRIX, ids=[m[0] for m in MATRIX])
def test_malformed_input_fails_naming_case_and_cause(files, case_id, image, mask, label, kw, words):
    row = _row(files, case_id, image, mask, label)
    with pytest.raises(CaseError) as ei:
        load_case(row, **kw)
    e = ei.value
    assert e.case_id == case_id and e.stage == "load" and f"case {case_id!r}" in str(e)
    for w in words:
        assert w in e.message, f"{w!r} not in: {e.message}"
    assert "np.float64" not in e.message and "sitk::ERROR" not in e.message and "Exception thrown" not in e.message
    if kw.get("resample_mask") is None:  # callers without --resample-mask are never told to pass it
        assert "--resample-mask" not in e.message and "resample_mask=True" not in e.message


@pytest.mark.parametrize("case_id, image, mask, label, kw, words",
                         [m for m in MATRIX if not m[4]], ids=[m[0] for m in MATRIX if not m[4]])
def test_manifest_check_finds_the_same_problem_up_front(files, case_id, image, mask, label, kw, words):
    row = _row(files, case_id, image, mask, label)
    row = {**row, "label": "" if label is None else label}
    pd.DataFrame([row]).to_csv(files["root"] / "m.csv", index=False)
    with pytest.raises(ManifestError) as ei:
        read_manifest(files["root"] / "m.csv")
    text = str(ei.value)
    assert f"row 1 (case_id {case_id!r})" in text
    for w in words[:2]:
        assert w in text, f"{w!r} not in: {text}"
    # without image checks only the structural rules run (the documented split)
    if label != 0:
        read_manifest(files["root"] / "m.csv", check_images=False)


def test_bad_slice_gaps_value_and_text_label_zero(files):
    d = files["root"]
    pd.DataFrame([{"case_id": "a", "image": "img.png", "mask": "m255.png", "slice_gaps": "ignore"},
                  {"case_id": "b", "image": "img.png", "mask": "m255.png", "label": "0"}]
                 ).to_csv(d / "m.csv", index=False)
    with pytest.raises(ManifestError) as ei:
        read_manifest(d / "m.csv", check_images=False)
    text = str(ei.value)
    assert "row 1 (case_id 'a'): slice_gaps = 'ignore' is not allowed" in text
    assert "row 2 (case_id 'b'): label = 0 is the background" in text


def test_matrix_size():
    """The closing note of issue #12 quotes this number."""
    assert N_MALFORMED == 23


# --------------------------------------------------------------------------- right values
def test_bug01_and_bug02_right_rois_for_label_maps(files):
    """An integer-valued float mask and a 0/255 PNG are label maps: label 1 / 255 inferred."""
    d = files["root"]
    c = load_case({"case_id": "f", "image": str(d / "img.png"), "mask": str(d / "float01.nii.gz")})
    assert c.roi.sum() == 400 and c.roi[20:40, 20:40].all()
    c = load_case({"case_id": "p", "image": str(d / "img.png"), "mask": str(d / "disc.png")})
    disc = np.asarray(Image.open(d / "disc.png")) == 255
    np.testing.assert_array_equal(c.roi, disc)
    assert c.roi.sum() == disc.sum() and c.warnings == []


def test_grey_mask_stored_as_rgb_is_read_from_one_channel(files):
    d = files["root"]
    c = load_case({"case_id": "g", "image": str(d / "img.png"), "mask": str(d / "grey_rgb.png")})
    assert c.roi.sum() == 400 and c.roi[20:40, 20:40].all()


def test_multi_label_segmentation_with_its_label_given(files):
    d = files["root"]
    c = load_case({"case_id": "organ17", "image": str(d / "img.nii.gz"), "mask": str(d / "multi.nii.gz"),
                   "label": 17})
    assert c.roi.sum() == 10 and c.roi[16, 10:20].all()
    pd.DataFrame([{"case_id": "organ17", "image": "img.nii.gz", "mask": "multi.nii.gz", "label": 17}]).to_csv(
        d / "m.csv", index=False)
    assert read_manifest(d / "m.csv").df["label"].tolist() == [17]


def test_bug03_png_mask_on_dicom_grid_is_placed_by_pixels(files):
    """A PNG mask on a 0.8 mm DICOM's 64x64 grid: the same pixels, not a physically resampled ROI."""
    d = files["root"]
    row = {"case_id": "mr1", "image": str(d / "mr.dcm"), "mask": str(d / "m255.png"), "label": 255}
    for kw in ({}, {"resample_mask": True}, {"resample_mask": False}):
        c = load_case(row, **kw)
        assert c.spacing == pytest.approx((0.8, 0.8))
        assert c.roi.sum() == 400 and c.bbox == (20.0, 20.0, 20.0, 20.0)
        assert c.array[c.roi].mean() > 1700  # the lesion, not background (~1000)
        assert len(c.warnings) == 1 and "placed on that grid" in c.warnings[0]
        assert "'m255.png' stores no spacing" in c.warnings[0] and "(0.8, 0.8)" in c.warnings[0]


def test_nifti_mask_resampled_only_on_request_and_noted(files):
    d = files["root"]
    row = {"case_id": "n", "image": str(d / "img.nii.gz"), "mask": str(d / "coarse.nii.gz"), "label": 1}
    with pytest.raises(CaseError, match="re-export the mask on the image grid"):
        load_case(row)
    c = load_case(row, resample_mask=True)
    # coarse pixels 10..19 at 2 mm cover physical 20..38 (+/- 1): image pixels 19..38 (nearest)
    assert c.roi.sum() == 20 * 20 and c.bbox == (19.0, 19.0, 20.0, 20.0)
    assert "resampled onto the image grid" in c.warnings[0]


def test_bug05_uniform_series_reads_and_gap_series_warns_on_opt_in(files):
    d = files["root"]
    ok = load_case({"case_id": "ok", "image": str(d / "ok_series"), "mask": _series_mask(files, "ok"), "label": 1})
    assert ok.spacing == pytest.approx((1.0, 1.0, 2.0)) and ok.warnings == []
    row = {"case_id": "ct_gap", "image": str(d / "gap_series"), "mask": _series_mask(files, "gap"), "label": 1}
    c = load_case({**row, "slice_gaps": "warn"})  # the manifest column: explicit, per case
    assert c.spacing[2] == pytest.approx(2.4)  # what a uniform read gives (12 mm / 5): hence the warning
    assert len(c.warnings) == 1 and "slice_3.dcm (z = 8)" in c.warnings[0] and "slice_gaps = warn" in c.warnings[0]
    assert load_case(row, slice_gaps="warn").warnings == c.warnings
    with pytest.raises(CaseError, match="slice_gaps = 'sometimes' is not allowed"):
        load_case({**row, "slice_gaps": "sometimes"})


def test_dicom_pixel_spacing_zero_is_warned(files, caplog):
    d = files["root"]
    c = load_case({"case_id": "z", "image": str(d / "zero_spacing.dcm"), "mask": str(d / "m255.png")})
    assert c.spacing == (1.0, 1.0)
    assert len(c.warnings) == 1
    w = c.warnings[0]
    assert "DICOM PixelSpacing is '0" in w and "not a valid spacing" in w and "read as (1, 1) mm" in w
    assert "in pixels" in w and "zero_spacing.dcm" in w
    assert any("PixelSpacing" in r.getMessage() for r in caplog.records)


def test_radiomics_records_the_assumption_in_the_case_row(files):
    """bug_03 end to end: `radlens radiomics` extracts the pixel-grid ROI and says so in radlens_warnings."""
    from radlens.radiomics.extract import radiomics

    d = files["root"]
    pd.DataFrame([{"case_id": "mr1", "image": "mr.dcm", "mask": "m255.png", "label": 255},
                  {"case_id": "jpg", "image": "img.png", "mask": "disc.jpg", "label": ""}]).to_csv(d / "m.csv",
                                                                                                    index=False)
    res = radiomics(d / "m.csv", out=d / "rad.parquet", use_cache=False)
    assert res.n_failed == 1
    fails = pd.read_csv(res.failures_path)
    assert fails["case_id"].tolist() == ["jpg"] and "lossy JPEG" in fails["error"].iloc[0]
    diag = pd.read_parquet(res.diagnostics_path).set_index("case_id")
    assert diag.loc["mr1", "diagnostics_Mask-original_VoxelNum"] == 400
    assert "placed on that grid" in diag.loc["mr1", "radlens_warnings"]
    feats = pd.read_parquet(res.out).set_index("case_id")
    assert feats.loc["mr1", "original_firstorder_Mean"] > 1700


def test_radiomics_slice_gap_fails_then_the_opt_in_reextracts_with_a_warning(files):
    """bug_05 end to end: a `load` failure naming case and slices; `slice_gaps = warn` in the row is
    a different cache key, so the re-run extracts the case and records the warning in its row."""
    from radlens.radiomics.extract import radiomics

    d = files["root"]
    mask = Path(_series_mask(files, "gap")).name
    rows = [{"case_id": "ct_gap", "image": "gap_series", "mask": mask, "label": 1}]
    pd.DataFrame(rows).to_csv(d / "m.csv", index=False)
    res = radiomics(d / "m.csv", out=d / "rad.parquet")
    fails = pd.read_csv(res.failures_path)
    assert fails["case_id"].tolist() == ["ct_gap"] and fails["stage"].tolist() == ["load"]
    assert "slice_2.dcm (z = 4) and slice_3.dcm (z = 8)" in fails["error"].iloc[0]
    pd.DataFrame([{**rows[0], "slice_gaps": "warn"}]).to_csv(d / "m.csv", index=False)
    res = radiomics(d / "m.csv", out=d / "rad.parquet")
    assert res.n_failed == 0 and res.n_computed == 1
    diag = pd.read_parquet(res.diagnostics_path)
    assert "non-uniform slice positions" in diag["radlens_warnings"].iloc[0]
