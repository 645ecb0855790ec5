"""`radlens localize` end to end on tiny hand-made manifests (multi-box grouping, import, pairing)."""
import numpy as np
import pandas as pd
import pytest

from radlens.localization.run import group_samples, localize
from radlens.localization.summary import paired_scores, summarize_scores


def _img(path, shape):
    import SimpleITK as sitk

    sitk.WriteImage(sitk.GetImageFromArray(np.zeros(shape, np.float32)), str(path))
    return path.name


@pytest.fixture()
def cohort(tmp_path):
    """Image big.nii.gz 256x256 (one box = the 16x16 cell (5, 9)); img1 32x32 with two boxes;
    img2..img5 32x32 with one box each; maps at 16x16 ('a' on the box, 'b' away from it)."""
    rows = [dict(case_id="big", image=_img(tmp_path / "big.nii.gz", (256, 256)), bbox_x=144, bbox_y=80,
                 bbox_w=16, bbox_h=16, patient_id="p0", cls="x")]
    _img(tmp_path / "img1.nii.gz", (32, 32))
    rows += [dict(case_id="r1", image="img1.nii.gz", bbox_x=4, bbox_y=4, bbox_w=8, bbox_h=8, patient_id="p1",
                  cls="x"),
             dict(case_id="r2", image="img1.nii.gz", bbox_x=20, bbox_y=20, bbox_w=8, bbox_h=8, patient_id="p1",
                  cls="x")]
    for k in range(2, 6):
        rows.append(dict(case_id=f"r{k + 1}", image=_img(tmp_path / f"img{k}.nii.gz", (32, 32)),
                         bbox_x=2 * k, bbox_y=4, bbox_w=8, bbox_h=8, patient_id=f"p{k}", cls="yz"[k % 2]))
    man = tmp_path / "manifest.csv"
    pd.DataFrame(rows).to_csv(man, index=False)
    ids, a, b = [], [], []
    for r in rows:
        ma, mb = np.zeros((16, 16), np.float32), np.zeros((16, 16), np.float32)
        if r["case_id"] == "big":
            ma[5, 9] = 1.0
            mb[12, 1] = 1.0
        else:
            s = 2  # 32 -> 16 maps: box (x, y, 8, 8) is the 4x4 cell block (y/2.., x/2..)
            ma[r["bbox_y"] // s:(r["bbox_y"] + 8) // s, r["bbox_x"] // s:(r["bbox_x"] + 8) // s] = 1.0
            mb[12:16, 12:16] = 1.0 if r["case_id"] != "r1" else 0.0
            if r["case_id"] == "r1":
                mb[0, 15] = 1.0
        if r["case_id"] == "r2":  # same image as r1: give it r1's map so the group is consistent
            ma = a[ids.index("r1")]
            mb = b[ids.index("r1")]
        ids.append(r["case_id"])
        a.append(ma)
        b.append(mb)
    np.savez(tmp_path / "maps.npz", case_id=np.array(ids), cam__a=np.stack(a), cam__b=np.stack(b))
    return tmp_path, man


def test_localize_groups_imports_and_pairs(cohort):
    tmp, man = cohort
    res = localize(man, tmp / "maps.npz", map_key="cam__a", map_key_b="cam__b", class_col="cls",
                   out=tmp / "loc.parquet", n_boot=50, figure=False)
    per = res.per_sample
    a = per[per.map_set == "a"].set_index("sample_id")
    assert sorted(a.index) == ["big", "r1", "r3", "r4", "r5", "r6"]     # r1 + r2 share img1
    assert a.loc["r1", "case_ids"] == "r1;r2" and a.loc["r1", "n_objects"] == 2
    # the 16x16 -> 256x256 round trip: documented mass (12/16)^2 and a hit
    assert a.loc["big", "mass_inside"] == pytest.approx(0.5625)
    assert a.loc["big", "pointing_game"] == 1.0
    b = per[per.map_set == "b"].set_index("sample_id")
    assert b.loc["big", "pointing_game"] == 0.0
    # map 'a' of img1 covers only box 1 of 2 -> box IoU (best box) 1 for the largest component
    assert a.loc["r1", "box_iou_fixed"] == pytest.approx(1.0)
    # paired table: differences are the per-sample differences
    pr = res.paired.set_index(["class", "score"])
    d = (b["auc"] - a["auc"]).mean()
    assert pr.loc[("(all)", "auc"), "mean_diff"] == pytest.approx(d)
    assert pr.loc[("(all)", "auc"), "n"] == 6 and not pr.loc[("(all)", "auc"), "improved"]
    assert pr.loc[("(all)", "centroid_dist_topk"), "mean_diff"] > 0
    assert not pr.loc[("(all)", "centroid_dist_topk"), "improved"]        # lower is better
    # summary per class = plain means of the per-sample rows
    sm = res.summary.set_index(["map_set", "class", "score"])
    assert sm.loc[("a", "y", "iou_topk"), "mean"] == pytest.approx(a[a.cls == "y"]["iou_topk"].mean())
    assert sm.loc[("a", "(all)", "auc"), "n"] == 6
    for key in ("per_sample", "summary", "paired", "failures"):
        assert res.paths[key].exists()
    back = pd.read_parquet(tmp / "loc.parquet")
    assert len(back) == 12 and set(back.map_set) == {"a", "b"}


def test_missing_and_conflicting_maps_are_failures_not_crashes(cohort):
    tmp, man = cohort
    z = dict(np.load(tmp / "maps.npz"))
    keep = z["case_id"] != "r4"
    a = z["cam__a"][keep].copy()
    ids = z["case_id"][keep]
    a[list(ids).index("r2")] += 0.5          # r1 and r2 (same image) now disagree
    np.savez(tmp / "m2.npz", case_id=ids, cam__a=a)
    res = localize(man, tmp / "m2.npz", n_boot=20, figure=False)
    per = res.per_sample.set_index("sample_id")
    assert "r4" not in per.index                       # no map at all: not scored, not a failure
    assert "different maps" in per.loc["r1", "reason"] and "--group-col none" in per.loc["r1", "reason"]
    assert set(res.failures.case_id) == {"r1"}
    # a map in set a but not in set b is a failure of set b
    z_b = {"case_id": ids, "cam__a": z["cam__a"][keep], "cam__b": z["cam__b"][keep]}
    np.savez(tmp / "m3.npz", **z_b)
    res = localize(man, tmp / "maps.npz", map_key="cam__a", maps_b=tmp / "m3.npz", map_key_b="cam__b",
                   n_boot=20, figure=False)
    per = res.per_sample.set_index(["sample_id", "map_set"])
    assert np.isfinite(per.loc[("r4", "a"), "auc"]) and np.isnan(per.loc[("r4", "b"), "auc"])
    assert "no map under case id" in per.loc[("r4", "b"), "reason"]
    assert list(res.failures.stage) == ["localize:b"]
    assert res.paired.set_index(["class", "score"]).loc[("(all)", "auc"), "n_dropped"] == 1
    # scoring each row alone resolves the conflict
    res2 = localize(man, tmp / "m2.npz", group_col=None, n_boot=20, figure=False)
    assert np.isfinite(res2.per_sample.set_index("sample_id").loc["r2", "auc"])


def test_group_samples_by_class():
    df = pd.DataFrame({"case_id": ["a", "b", "c"], "image": ["i", "i", "j"], "k": [0, 1, 0]})
    assert [s for s, _ in group_samples(df)] == ["a", "c"]
    assert [s for s, _ in group_samples(df, class_col="k")] == ["a", "b", "c"]
    assert [len(g) for _, g in group_samples(df, group_col=None)] == [1, 1, 1]


def test_summary_and_paired_by_hand():
    per = pd.DataFrame({"sample_id": ["s1", "s2", "s3"] * 2, "map_set": ["a"] * 3 + ["b"] * 3,
                        "patient_id": ["p1", "p2", "p3"] * 2, "auc": [0.5, 0.7, 0.9, 0.6, 0.9, np.nan],
                        "centroid_dist_topk": [3.0, 2.0, 1.0, 1.0, 1.0, 1.0]})
    s = summarize_scores(per, ["auc"], n_boot=20).set_index(["map_set", "score"])
    assert s.loc[("a", "auc"), "mean"] == pytest.approx(0.7)
    assert s.loc[("b", "auc"), "n"] == 2 and s.loc[("b", "auc"), "n_undefined"] == 1
    p = paired_scores(per, ["auc", "centroid_dist_topk"], n_boot=20).set_index("score")
    assert p.loc["auc", "mean_diff"] == pytest.approx(((0.6 - 0.5) + (0.9 - 0.7)) / 2)
    assert p.loc["auc", "n"] == 2 and p.loc["auc", "n_dropped"] == 1
    assert p.loc["centroid_dist_topk", "mean_diff"] == pytest.approx(-1.0)
    assert p.loc["centroid_dist_topk", "improved"]
    # same inputs + seed -> same numbers
    pd.testing.assert_frame_equal(summarize_scores(per, ["auc"], n_boot=20), summarize_scores(per, ["auc"], n_boot=20))
    assert not summarize_scores(per, ["auc"], n_boot=20, seed=1).equals(summarize_scores(per, ["auc"], n_boot=20))


def test_localize_bad_inputs_and_orientation(cohort, tmp_path):
    from radlens.errors import InputError
    from radlens.localization.maps import OrientationError

    tmp, man = cohort
    with pytest.raises(InputError, match="class column 'nope' not in the manifest"):
        localize(man, tmp / "maps.npz", map_key="cam__a", class_col="nope", figure=False)
    with pytest.raises(InputError, match="tie_rule='max' not allowed"):   # checked before any work
        localize(man, tmp / "maps.npz", map_key="cam__a", tie_rule="max", figure=False)
    with pytest.raises(InputError, match="no manifest row has 'cls' true"):
        localize(man, tmp / "maps.npz", map_key="cam__a", positive_col="cls", figure=False)
    # maps of a non-square image stored transposed: the run stops with the fix
    import SimpleITK as sitk

    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((20, 40), np.float32)), str(tmp_path / "wide.nii.gz"))
    pd.DataFrame([dict(case_id="w", image="wide.nii.gz", bbox_x=30, bbox_y=5, bbox_w=6, bbox_h=6)]).to_csv(
        tmp_path / "m.csv", index=False)
    m = np.zeros((40, 20), np.float32)
    m[32, 7] = 1.0                     # transposed position of pixel (row 7, col 32) inside the box
    np.savez(tmp_path / "t.npz", w=m)
    with pytest.raises(OrientationError, match="--transpose"):
        localize(tmp_path / "m.csv", tmp_path / "t.npz", figure=False)
    res = localize(tmp_path / "m.csv", tmp_path / "t.npz", transpose=True, figure=False, n_boot=10)
    assert res.per_sample["pointing_game"].iloc[0] == 1.0
    assert res.per_sample["orientation"].iloc[0] == "ok"


def test_map_examples_figure(tmp_path):
    from radlens.localization.scores import ground_truth
    from radlens.viz.localization import plot_map_examples

    yy, xx = np.mgrid[:32, :32]
    maps = [np.exp(-((yy - c) ** 2 + (xx - c) ** 2) / 20.0) for c in (8, 16, 24)]
    gts = [ground_truth((32, 32), boxes=[(c - 4, c - 4, 8, 8)]).mask for c in (8, 16, 24)]
    paths = plot_map_examples([np.full((32, 32), 0.5)] * 3, maps, gts, tmp_path / "ex", titles=["a", "b", "c"])
    assert paths[0].exists() and paths[0].stat().st_size > 5_000


def test_reads_cam_drift_npz_layout(cohort):
    """cam-drift --save-maps layout: case_id, <method>__a/b, input_image, image_shape + __meta__ geometry."""
    from radlens.errors import InputError
    from radlens.io.artifacts import write_npz

    tmp, man = cohort
    z = dict(np.load(tmp / "maps.npz"))
    n = z["case_id"].size
    arrays = {"case_id": z["case_id"], "layercam__a": z["cam__a"], "layercam__b": z["cam__b"],
              "input_image": np.zeros((n, 16, 16), np.float32), "image_shape": np.full((n, 2), 32)}
    write_npz(tmp / "cam.npz", arrays, {"geometry": "resize", "methods": ["layercam"]})
    with pytest.raises(InputError, match=r"\['input_image', 'layercam__a', 'layercam__b'\]"):
        localize(man, tmp / "cam.npz", figure=False)
    res = localize(man, tmp / "cam.npz", map_key="layercam__a", map_key_b="layercam__b", n_boot=10, figure=False)
    assert res.paired is not None and res.per_sample["auc"].notna().all()
    write_npz(tmp / "crop.npz", arrays, {"geometry": "crop"})
    with pytest.raises(InputError, match="ROI crops"):
        localize(man, tmp / "crop.npz", map_key="layercam__a", figure=False)
