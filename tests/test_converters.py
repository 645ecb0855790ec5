"""Dataset converters: exact rows and box conversions from small fabricated inputs; clear errors."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from radlens.errors import InputError
from radlens.io.converters import chestxdet10, convert, nih_bbox, picai, task_column


def _touch(folder, *names):
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        (folder / n).write_bytes(b"")


# --------------------------------------------------------------------------- ChestX-Det10
DET10 = [
    {"file_name": "36199.png", "syms": ["Atelectasis", "Effusion"], "boxes": [[10, 20, 40, 60], [100, 5, 110, 9]]},
    {"file_name": "36200.png", "syms": [], "boxes": []},
    {"file_name": "36201.png", "syms": ["Nodule"], "boxes": [[0.5, 1.5, 3.0, 4.0]]},
]


def test_chestxdet10_rows(tmp_path):
    js = tmp_path / "train.json"
    js.write_text(json.dumps(DET10), encoding="utf-8")
    _touch(tmp_path / "imgs", "36199.png", "36200.png", "36201.png")
    out = tmp_path / "man" / "m.csv"
    convert("chestxdet10", [js, tmp_path / "imgs"], out)
    df = pd.read_csv(out, dtype={"patient_id": str})
    assert df.case_id.tolist() == ["36199_0", "36199_1", "36201_0"]
    assert df.image.tolist() == ["../imgs/36199.png", "../imgs/36199.png", "../imgs/36201.png"]
    # [x1, y1, x2, y2] -> x, y, w, h
    assert df[["bbox_x", "bbox_y", "bbox_w", "bbox_h"]].values.tolist() == [
        [10, 20, 30, 40], [100, 5, 10, 4], [0.5, 1.5, 2.5, 2.5]]
    assert df.patient_id.tolist() == ["36199", "36199", "36201"]
    assert df.finding.tolist() == ["Atelectasis", "Effusion", "Nodule"]
    assert df.task_atelectasis.tolist() == [1, 0, 0]
    assert df.task_effusion.tolist() == [0, 1, 0]
    assert df.task_nodule.tolist() == [0, 0, 1]
    assert "mask" not in df.columns
    assert (out.parent / "m.csv.meta.json").exists()


def test_chestxdet10_negatives_full(tmp_path):
    from PIL import Image

    js = tmp_path / "t.json"
    js.write_text(json.dumps(DET10), encoding="utf-8")
    (tmp_path / "i").mkdir()
    for n in ("36199.png", "36200.png", "36201.png"):
        Image.fromarray(np.zeros((30, 50), np.uint8)).save(tmp_path / "i" / n)
    df = chestxdet10(js, tmp_path / "i", negatives="full")
    row = df[df.case_id == "36200_full"].iloc[0]
    assert (row.bbox_x, row.bbox_y, row.bbox_w, row.bbox_h) == (0, 0, 50, 30)    # width x height
    assert row.finding == "No Finding" and row.task_no_finding == 1


@pytest.mark.parametrize("data, words", [
    ({"file_name": "a.png"}, ["top level is a dict", "list"]),
    ([{"file_name": "a.png", "syms": ["X"]}], ["entry 0", "'boxes'"]),
    ([{"file_name": "a.png", "syms": ["X", "Y"], "boxes": [[0, 0, 1, 1]]}], ["equal length", "2 syms, 1 boxes"]),
    ([{"file_name": "a.png", "syms": ["X"], "boxes": [[5, 0, 2, 1]]}], ["box 0", "x1 < x2"]),
    ([{"file_name": "a.png", "syms": ["X"], "boxes": [[0, 0, "w", 1]]}], ["not four numbers"]),
    ([{"file_name": "a.png", "syms": ["X"], "boxes": [[0, 0, 1, 1]]},
      {"file_name": "a.png", "syms": ["Y"], "boxes": [[0, 0, 1, 1]]}], ["entry 1", "appears twice"]),
    ([{"file_name": "a.png", "syms": [], "boxes": []}], ["no boxes found"]),
])
def test_chestxdet10_malformed(tmp_path, data, words):
    js = tmp_path / "t.json"
    js.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(InputError) as ei:
        chestxdet10(js, tmp_path, check_images=False)
    for w in words:
        assert w in str(ei.value)


def test_chestxdet10_lists_all_problems_and_missing_images(tmp_path):
    js = tmp_path / "t.json"
    js.write_text(json.dumps([{"file_name": "a.png", "syms": ["X"], "boxes": [[3, 0, 1, 1]]},
                              {"file_name": "b.png", "syms": ["X"], "boxes": [[0, 0, 1]]}]))
    with pytest.raises(InputError, match=r"2 problem\(s\)") as ei:
        chestxdet10(js, tmp_path)
    assert "entry 0 ('a.png')" in str(ei.value) and "entry 1 ('b.png')" in str(ei.value)
    js.write_text(json.dumps(DET10), encoding="utf-8")
    with pytest.raises(InputError, match="36199.png' does not exist") as ei:
        chestxdet10(js, tmp_path / "nowhere")
    assert "--no-check-images" in str(ei.value)
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(InputError, match="not valid JSON"):
        chestxdet10(tmp_path / "bad.json", tmp_path)


# --------------------------------------------------------------------------- NIH
NIH = """Image Index,Finding Label,Bbox [x,y,w,h],,,
00013118_008.png,Atelectasis,225.084745762712,547.019216763771,86.7796610169491,79.1864406779661,,,
00014716_007.png,Pleural Effusion,686.101694915254,131.543309659622,185.491525423729,313.491525423729,,,
00013118_008.png,Nodule,10,20,30.5,40,,,
"""


def test_nih_rows(tmp_path):
    (tmp_path / "bb.csv").write_text(NIH, encoding="utf-8")
    _touch(tmp_path / "images", "00013118_008.png", "00014716_007.png")
    out = tmp_path / "nih.parquet"
    convert("nih-bbox", [tmp_path / "bb.csv", tmp_path / "images"], out)
    df = pd.read_parquet(out)
    assert df.case_id.tolist() == ["00013118_008_0", "00014716_007_0", "00013118_008_1"]
    assert df.patient_id.tolist() == ["00013118", "00014716", "00013118"]
    assert df.image.tolist() == ["images/00013118_008.png", "images/00014716_007.png", "images/00013118_008.png"]
    np.testing.assert_allclose(df.loc[0, ["bbox_x", "bbox_y", "bbox_w", "bbox_h"]].to_numpy(float),
                               [225.084745762712, 547.019216763771, 86.7796610169491, 79.1864406779661])
    assert df.loc[2, ["bbox_x", "bbox_y", "bbox_w", "bbox_h"]].tolist() == [10, 20, 30.5, 40]
    assert df.task_pleural_effusion.tolist() == [0, 1, 0]
    assert df.task_atelectasis.tolist() == [1, 0, 0]
    assert df.box_index.tolist() == [0, 0, 1]


@pytest.mark.parametrize("text, words", [
    ("Image Index,Finding Label,x,y,w,h\n", ["'Bbox [x'", "'h]'", "missing"]),
    ("Image Index,Finding Label,Bbox [x,y,w,h]\na.png,Mass,1,2,-3,4\n", ["line 2 (a.png)", "w, h > 0"]),
    ("Image Index,Finding Label,Bbox [x,y,w,h]\na.png,Mass,1,2,three,4\n", ["line 2", "not four numbers"]),
    ("Image Index,Finding Label,Bbox [x,y,w,h]\na.png,,1,2,3,4\n", ["empty 'Finding Label'"]),
    ("Image Index,Finding Label,Bbox [x,y,w,h]\n", ["no boxes"]),
])
def test_nih_malformed(tmp_path, text, words):
    (tmp_path / "bb.csv").write_text(text, encoding="utf-8")
    with pytest.raises(InputError) as ei:
        nih_bbox(tmp_path / "bb.csv", tmp_path, check_images=False)
    for w in words:
        assert w in str(ei.value)


def test_nih_missing_file(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        nih_bbox(tmp_path / "nope.csv", tmp_path)


# --------------------------------------------------------------------------- PI-CAI
def _vol(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(arr), str(path))


def _picai_tree(root):
    img = np.zeros((4, 6, 6), np.float32)
    for pid, sid in (("10000", "1000000"), ("10001", "1000001"), ("10002", "1000002")):
        _vol(root / "images" / pid / f"{pid}_{sid}_t2w.mha", img)
        _vol(root / "images" / pid / f"{pid}_{sid}_adc.mha", img)
    lab = np.zeros((4, 6, 6), np.uint8)
    lab[1, 1:3, 1:3] = 1
    _vol(root / "labels" / "10000_1000000.nii.gz", lab)
    lab2 = np.zeros((4, 6, 6), np.uint8)
    lab2[0, 0, 0] = 2
    lab2[2, 2:5, 2:5] = 3
    _vol(root / "labels" / "10001_1000001.nii.gz", lab2)
    _vol(root / "labels" / "10002_1000002.nii.gz", np.zeros((4, 6, 6), np.uint8))   # negative study


def test_picai_rows(tmp_path):
    root = tmp_path / "picai"
    _picai_tree(root)
    (tmp_path / "marksheet.csv").write_text(
        "patient_id,study_id,case_csPCa,case_ISUP\n10000,1000000,YES,2\n10001,1000001,NO,1\n")
    out = root / "manifest.csv"
    convert("picai", [root], out, marksheet=tmp_path / "marksheet.csv")
    df = pd.read_csv(out, dtype={"patient_id": str, "study_id": str})
    assert df.case_id.tolist() == ["10000_1000000", "10001_1000001_L2", "10001_1000001_L3"]
    assert df.image.tolist() == ["images/10000/10000_1000000_t2w.mha"] + ["images/10001/10001_1000001_t2w.mha"] * 2
    assert df["mask"].tolist() == ["labels/10000_1000000.nii.gz"] + ["labels/10001_1000001.nii.gz"] * 2
    assert df.label.tolist() == [1, 2, 3]
    assert df.lesion_voxels.tolist() == [4, 1, 9]
    assert df.patient_id.tolist() == ["10000", "10001", "10001"]
    assert df.case_csPCa.tolist() == [1, 0, 0] and df.case_ISUP.tolist() == [2, 1, 1]
    adc = picai(root, sequence="adc")
    assert all(p.endswith("_adc.mha") for p in adc.image)
    with pytest.raises(InputError, match="10002_1000002: label 10002_1000002.nii.gz is empty"):
        picai(root, empty="error")


def test_picai_errors(tmp_path):
    with pytest.raises(InputError, match="is not a folder") as ei:
        picai(tmp_path)
    assert "images/<patient_id>/<patient_id>_<study_id>_t2w.mha" in str(ei.value)
    root = tmp_path / "p"
    _picai_tree(root)
    with pytest.raises(InputError, match="no '\\*_dwi' images"):
        picai(root, sequence="dwi")
    (root / "labels" / "10000_1000000.nii.gz").unlink()
    with pytest.raises(InputError, match="study 10000_1000000: no label file"):
        picai(root)


def test_task_column_and_cli_errors(tmp_path, capsys):
    from radlens.cli import main

    assert task_column("Pleural Effusion") == "task_pleural_effusion"
    assert task_column("Pleural_Thickening") == "task_pleural_thickening"
    with pytest.raises(InputError, match="no letters"):
        task_column("--")
    assert main(["convert", "nih-bbox", str(tmp_path / "x.csv"), "--out", str(tmp_path / "m.csv")]) == 2
    assert "expected 2 input path(s), got 1" in capsys.readouterr().err
    assert main(["convert", "picai", str(tmp_path), "--negatives", "full", "--out", str(tmp_path / "m.csv")]) == 2
    assert "--negatives do not apply" in capsys.readouterr().err
    assert main(["convert", "picai", str(tmp_path), "--out", str(tmp_path / "m.txt")]) == 2
    assert ".csv or .parquet" in capsys.readouterr().err
