"""Manifest reading and validation: every problem is reported, all at once, with row numbers."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from radlens.errors import InputError, ManifestError
from radlens.io.manifest import RESERVED, manifest_from_frame, read_manifest


@pytest.fixture()
def folder(tmp_path):
    """A 40x32 PNG image, a 0/255 mask and a 3D NIfTI volume with a label-2 mask."""
    img = (np.arange(32 * 40).reshape(32, 40) % 200).astype(np.uint8)
    sitk.WriteImage(sitk.GetImageFromArray(img), str(tmp_path / "a.png"))
    m = np.zeros((32, 40), np.uint8)
    m[5:10, 6:12] = 255
    sitk.WriteImage(sitk.GetImageFromArray(m), str(tmp_path / "m255.png"))
    vol = np.zeros((4, 16, 16), np.int16)
    sitk.WriteImage(sitk.GetImageFromArray(vol), str(tmp_path / "v.nii.gz"))
    vm = np.zeros((4, 16, 16), np.uint8)
    vm[1:3, 4:8, 4:8] = 2
    sitk.WriteImage(sitk.GetImageFromArray(vm), str(tmp_path / "vm.nii.gz"))
    return tmp_path


def _write(folder, rows, name="manifest.csv"):
    df = pd.DataFrame(rows)
    p = folder / name
    if name.endswith(".parquet"):
        df.to_parquet(p)
    else:
        df.to_csv(p, index=False, sep="\t" if name.endswith(".tsv") else ",")
    return p


def _problems(exc: ManifestError) -> list[str]:
    return [ln[4:] for ln in str(exc).splitlines() if ln.startswith("  - ")]


GOOD = [
    {"case_id": "c1", "image": "a.png", "mask": "m255.png", "label": 255, "grade": 1, "patient_id": "p1"},
    {"case_id": "c2", "image": "a.png", "bbox_x": 2, "bbox_y": 3, "bbox_w": 10, "bbox_h": 5, "grade": 0,
     "patient_id": "p1", "split": "test"},
    {"case_id": "c3", "image": "v.nii.gz", "mask": "vm.nii.gz", "label": 2, "grade": 1},
]


@pytest.mark.parametrize("name", ["manifest.csv", "manifest.tsv", "manifest.parquet"])
def test_valid_manifest_resolves_paths_and_defaults(folder, name):
    p = _write(folder, GOOD, name)
    m = read_manifest(p)
    df = m.df
    assert list(df.columns[:len(RESERVED)]) == list(RESERVED)
    assert df["case_id"].tolist() == ["c1", "c2", "c3"]
    assert df["image"].tolist() == [str(folder / "a.png"), str(folder / "a.png"), str(folder / "v.nii.gz")]
    assert df["mask"].tolist() == [str(folder / "m255.png"), None, str(folder / "vm.nii.gz")]
    assert df["label"].tolist() == [255, 1, 2]
    assert np.isnan(df.loc[0, "bbox_x"]) and df.loc[1, ["bbox_x", "bbox_y", "bbox_w", "bbox_h"]].tolist() == [2, 3, 10, 5]
    assert df["patient_id"].tolist() == ["p1", "p1", "c3"]  # defaults to case_id
    assert df["split"].tolist() == [None, "test", None]
    assert m.task_columns == ["grade"]
    assert m.root == folder.resolve() and m.path == p.resolve()
    assert len(m) == 3 and m.subset(["c3", "c1"]).case_ids == ["c1", "c3"]


def test_label_inferred_from_single_valued_mask_when_empty(folder):
    p = _write(folder, [{"case_id": "c1", "image": "a.png", "mask": "m255.png"}])
    assert read_manifest(p).df["label"].tolist() == [255]
    # without image checks nothing is opened: the documented default 1 stays
    assert read_manifest(p, check_images=False).df["label"].tolist() == [1]


def test_all_row_problems_reported_at_once_with_row_numbers(folder):
    rows = [
        {"case_id": "c1", "image": "a.png", "mask": "m255.png", "label": 255},                # fine
        {"case_id": "c1", "image": "a.png", "mask": "m255.png", "label": 255},                # dup id
        {"case_id": "c3", "image": "missing.png", "bbox_x": 1, "bbox_y": 1, "bbox_w": 2, "bbox_h": 2},
        {"case_id": "c4", "image": "a.png"},                                                  # no ROI
        {"case_id": "c5", "image": "a.png", "mask": "m255.png", "bbox_x": 1, "bbox_y": 1, "bbox_w": 2, "bbox_h": 2},
        {"case_id": "c6", "image": "a.png", "bbox_x": 30, "bbox_y": 1, "bbox_w": 20, "bbox_h": 3},  # outside
        {"case_id": "c7", "image": "a.png", "mask": "m255.png", "label": 3},                  # label absent
        {"case_id": "c8", "image": "a.png", "mask": "nomask.png"},                            # mask missing
        {"case_id": "c9", "image": "a.png", "bbox_x": -1, "bbox_y": 0, "bbox_w": 5, "bbox_h": 5},  # negative
        {"case_id": "c10", "image": "a.png", "bbox_x": 1, "bbox_y": 0, "bbox_w": 5},          # incomplete
        {"case_id": "c11", "image": "v.nii.gz", "bbox_x": 1, "bbox_y": 1, "bbox_w": 2, "bbox_h": 2},  # 3D box
        {"case_id": "c12", "image": "a.png", "mask": "m255.png", "label": 1.5},               # non-integer
        {"case_id": None, "image": "a.png", "bbox_x": 1, "bbox_y": 1, "bbox_w": 2, "bbox_h": 2},
        {"case_id": "c14", "image": "a.png", "bbox_x": 1, "bbox_y": 1, "bbox_w": 0, "bbox_h": 2},   # empty box
    ]
    with pytest.raises(ManifestError) as ei:
        read_manifest(_write(folder, rows))
    probs = _problems(ei.value)
    text = "\n".join(probs)
    expected = [
        r"rows 1, 2: duplicate case_id 'c1'",
        r"row 3 \(case_id 'c3'\): image file 'missing.png' not found",
        r"row 4 \(case_id 'c4'\): neither a mask nor a box",
        r"row 5 \(case_id 'c5'\): both a mask and a box",
        r"row 6 \(case_id 'c6'\): box \(x=30, y=1, w=20, h=3\) is outside the 40x32",
        r"row 7 \(case_id 'c7'\): label 3 does not occur in mask 'm255.png' \(values present: \[0, 255\]\)",
        r"row 8 \(case_id 'c8'\): mask file 'nomask.png' not found",
        r"row 9 \(case_id 'c9'\): box .* outside the image \(negative coordinate\)",
        r"row 10 \(case_id 'c10'\): box incomplete: \['bbox_h'\] empty",
        r"row 11 \(case_id 'c11'\): a box is given but the image is 3D",
        r"row 12 \(case_id 'c12'\): label = '1.5' is not an integer",
        r"row 13: case_id is empty",
        r"row 14 \(case_id 'c14'\): box has non-positive size",
    ]
    for pat in expected:
        assert re.search(pat, text), f"missing problem {pat!r} in:\n{text}"
    assert len(probs) == len(expected), text
    assert f"{len(expected)} problem(s)" in str(ei.value)


def test_typo_columns_and_missing_required_columns(folder):
    rows = [{"case_id": "c1", "imgae": "a.png", "mask": "m255.png", "Label": 255, "tumour_grade": 1}]
    with pytest.raises(ManifestError) as ei:
        read_manifest(_write(folder, rows))
    text = str(ei.value)
    assert "column 'imgae' is not a known column but looks like a typo of 'image'" in text
    assert "column 'Label' is not a known column but looks like a typo of 'label'" in text
    assert "required column 'image' is missing" in text
    assert "tumour_grade" not in text.split("columns present")[0]  # a real task column is not a typo


def test_typo_reported_together_with_row_problems(folder):
    rows = [{"case_id": "c1", "image": "a.png", "mask": "m255.png", "label": 255, "splt": "train"},
            {"case_id": "c1", "image": "a.png", "mask": "m255.png", "label": 255, "splt": "test"}]
    with pytest.raises(ManifestError) as ei:
        read_manifest(_write(folder, rows))
    probs = _problems(ei.value)
    assert probs[0].startswith("column 'splt'") and "'split'" in probs[0]
    assert probs[1].startswith("rows 1, 2: duplicate case_id 'c1'")


def test_no_roi_columns_and_incomplete_box_columns(folder):
    with pytest.raises(ManifestError, match="no ROI columns"):
        read_manifest(_write(folder, [{"case_id": "c1", "image": "a.png"}]))
    with pytest.raises(ManifestError, match=r"box columns incomplete: have \['bbox_x', 'bbox_y'\]"):
        read_manifest(_write(folder, [{"case_id": "c1", "image": "a.png", "mask": "m255.png",
                                       "bbox_x": 1, "bbox_y": 1}]))


def test_check_images_false_skips_content_checks(folder):
    rows = [{"case_id": "c6", "image": "a.png", "bbox_x": 30, "bbox_y": 1, "bbox_w": 20, "bbox_h": 3}]
    m = read_manifest(_write(folder, rows), check_images=False)
    assert m.df["bbox_w"].tolist() == [20.0]
    with pytest.raises(ManifestError, match="outside the 40x32"):
        read_manifest(_write(folder, rows))


def test_unreadable_image_is_a_problem(folder):
    (folder / "junk.png").write_bytes(b"not a png at all")
    rows = [{"case_id": "c1", "image": "junk.png", "bbox_x": 1, "bbox_y": 1, "bbox_w": 2, "bbox_h": 2}]
    with pytest.raises(ManifestError, match=r"row 1 \(case_id 'c1'\): image cannot be read"):
        read_manifest(_write(folder, rows))


def test_bad_files(folder):
    with pytest.raises(InputError, match="does not exist"):
        read_manifest(folder / "nope.csv")
    (folder / "m.json").write_text("{}", encoding="utf-8")
    with pytest.raises(InputError, match="suffix '.json' not supported"):
        read_manifest(folder / "m.json")
    (folder / "empty.csv").write_text("case_id,image,mask\n", encoding="utf-8")
    with pytest.raises(ManifestError, match="no rows"):
        read_manifest(folder / "empty.csv")


def test_from_frame_and_absolute_paths(folder):
    df = pd.DataFrame([{"case_id": 7, "image": str(folder / "a.png"), "bbox_x": 0, "bbox_y": 0,
                        "bbox_w": 40, "bbox_h": 32}])
    m = manifest_from_frame(df, root="/nonexistent")
    assert m.df["case_id"].tolist() == ["7"] and m.df["image"].tolist() == [str(folder / "a.png")]
    assert m.path is None


def test_validate_images_subset_and_parallel(folder):
    from radlens.io.manifest import validate_images

    rows = [{"case_id": f"c{i}", "image": "a.png", "mask": "m255.png"} for i in range(6)]
    rows[4] = {"case_id": "c4", "image": "a.png", "bbox_x": 30, "bbox_y": 1, "bbox_w": 20, "bbox_h": 3}
    m = read_manifest(_write(folder, rows), check_images=False)
    assert m.df["label"].tolist() == [1] * 6 and not m.label_given.any()
    ok = validate_images(m, rows=[0, 1, 2])
    assert ok.df["label"].tolist()[:3] == [255, 255, 255] and ok.df["label"].tolist()[3] == 1
    for jobs in (1, 2):
        with pytest.raises(ManifestError) as ei:
            validate_images(m, jobs=jobs)
        probs = _problems(ei.value)
        assert len(probs) == 1 and probs[0].startswith("row 5 (case_id 'c4'): box (x=30")
    full = validate_images(m.subset(["c0", "c1", "c2", "c3", "c5"]), jobs=2)
    assert full.df["label"].tolist() == [255] * 5


FAST_CASES = {
    "good": "case_id,image,mask,label,bbox_x,bbox_y,bbox_w,bbox_h,grade,patient_id,split\n"
            "c1,a.png,m255.png,255,,,,,1,p1,\nc2,a.png,,,2,3,10,5,0,p1,test\nc3,v.nii.gz,vm.nii.gz,,,,,,1,NA,\n",
    "na_texts_and_blank_lines": "case_id,image,mask,label,slice_gaps\n\nc1,a.png,m255.png,255,WARN\n"
                                "NA,a.png,m255.png,null,\nc3, a.png ,m255.png,1.0,n/a\n",
    "problems": "case_id,image,mask,label,bbox_x,bbox_y,bbox_w,bbox_h,slice_gap\n"
                "c1,a.png,m255.png,0,,,,,\nc1,nothere.png,,,a,1,-2,3,\n,a.png,m255.png,x,1,1,1,1,\n",
    "missing_columns": "id,img\nc1,a.png\n",
    "box_incomplete": "case_id,image,bbox_x,bbox_y\nc1,a.png,1,2\n",
    "ragged_falls_back": "case_id,image,mask\nc1,a.png,m255.png,extra\nc2,a.png\n",
    "quoted_falls_back": 'case_id,image,mask\n"c,1",a.png,m255.png\n',
}


@pytest.mark.parametrize("name", sorted(FAST_CASES))
@pytest.mark.parametrize("suffix", [".csv", ".tsv"])
def test_read_without_pandas_same_manifest_and_messages(folder, name, suffix):
    """frame=False (radlens radiomics: no pandas import) validates exactly as the pandas reader."""
    text = FAST_CASES[name]
    if suffix == ".tsv":
        text = text.replace(",", "\t")
    p = folder / f"m{suffix}"
    p.write_text(text)
    outcomes = []
    for frame in (True, False):
        try:
            m = read_manifest(p, check_images=False, frame=frame)
        except ManifestError as exc:
            outcomes.append(("error", str(exc)))
            continue
        rows = [{k: v for k, v in r.items() if k in RESERVED} for r in m.rows()]
        outcomes.append(("ok", rows, list(np.asarray(m.label_given)), m.case_ids, len(m), m.task_columns,
                         m.df.to_dict("list")))
    a, b = outcomes
    assert a[0] == b[0]
    if a[0] == "error":
        assert a[1] == b[1]
        return
    assert repr(a[1]) == repr(b[1])  # same values and types (NaN boxes, int labels, None masks)
    assert a[2:] == b[2:] or (a[2:6] == b[2:6] and pd.DataFrame(a[6]).equals(pd.DataFrame(b[6])))
    if name == "good":
        assert a[1][2]["patient_id"] == "c3" and a[1][1]["mask"] is None and np.isnan(a[1][0]["bbox_x"])
