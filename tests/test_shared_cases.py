"""The failing situations of issue #12 on their original files (team data in ../shared/cases, not
part of a clone: skipped where absent). Each is also rebuilt from scratch in test_bad_inputs.py /
test_input_faults_stats.py, which always run."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from radlens.errors import CaseError, ManifestError
from radlens.io.images import load_case
from radlens.io.manifest import read_manifest

CASES = Path(__file__).resolve().parents[1].parent / "shared" / "cases"


def _rows(name):
    folder = CASES / name
    if not (folder / "manifest.csv").exists():
        pytest.skip(f"{folder} not present (team data, not part of a clone)")
    man = read_manifest(folder / "manifest.csv", check_images=False)
    return {r["case_id"]: {**r, "label": r["label"] if man.label_given[i] else None}
            for i, r in enumerate(man.rows())}, folder


def test_bug01_float_mask_is_refused_naming_case_and_values():
    rows, folder = _rows("bug_01_float_mask_roi_becomes_background")
    with pytest.raises(CaseError) as ei:
        load_case(rows["c1"])
    assert ei.value.case_id == "c1" and "non-integer values (e.g. 0.00392157" in ei.value.message
    with pytest.raises(ManifestError, match=r"row 1 \(case_id 'c1'\): mask 'mask.nii.gz' is not a label map"):
        read_manifest(folder / "manifest.csv")


def test_bug02_png_mask_works_and_jpeg_mask_is_refused():
    rows, _ = _rows("bug_02_jpeg_mask_silent_artifact_roi")
    assert load_case(rows["png_mask"]).roi.sum() == 1245
    with pytest.raises(CaseError, match="lossy JPEG holding 52 distinct values"):
        load_case(rows["jpg_mask"])


def test_bug03_png_mask_on_dicom_keeps_its_pixels():
    rows, _ = _rows("bug_03_png_mask_on_dicom_resample_shifts_roi")
    for kw in ({}, {"resample_mask": True}):
        c = load_case(rows["mr1"], **kw)
        assert c.roi.sum() == 1600 and c.bbox == (60.0, 60.0, 40.0, 40.0)
        assert c.spacing == pytest.approx((0.8, 0.8)) and c.array[c.roi].mean() > 1700


def test_bug04_2d_mask_on_3d_mri_gives_advice_that_applies():
    rows, _ = _rows("bug_04_2d_mask_on_3d_image_resample_crash")
    for kw in ({}, {"resample_mask": False}, {"resample_mask": True}):
        with pytest.raises(CaseError) as ei:
            load_case(rows["breast1_oneslice"], **kw)
        msg = ei.value.message
        assert "3D image (45×120×21) vs 2D mask (45×120)" in msg and "resampling does not apply" in msg
        assert "--resample-mask" not in msg and "sitk::ERROR" not in msg


def test_bug05_series_with_a_missing_slice():
    rows, _ = _rows("bug_05_dicom_series_missing_slice_silent")
    with pytest.raises(CaseError) as ei:
        load_case(rows["ct_gap"])
    assert ei.value.case_id == "ct_gap"
    assert "slice_2.dcm (z = 4) and slice_3.dcm (z = 8)" in ei.value.message
    c = load_case({**rows["ct_gap"], "slice_gaps": "warn"})
    assert np.prod(c.spacing) * c.roi.sum() == pytest.approx(1440)  # the uniform read the warning is about
    assert "missing slice" in c.warnings[0]
