"""Scheduling: largest cases first; large cases split across workers (by feature class after one
shared load and crop, or by image type) and merged into exactly the record of an unsplit run."""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from radlens.radiomics import pyrad, schedule
from radlens.radiomics.extract import radiomics

CLASSES = {"shape": None, "firstorder": None, "glcm": None, "glrlm": ["RunEntropy"], "glszm": None,
           "gldm": ["DependenceEntropy"], "ngtdm": None}
ORIGINAL = {"imageType": {"Original": {}}, "featureClass": CLASSES, "setting": {"binWidth": 0.25}}
FILTERED = {"imageType": {"Original": {}, "Square": {}, "LoG": {"sigma": [1.0]}},
            "featureClass": {"shape": None, "firstorder": None, "glcm": ["Contrast"]}, "setting": {"binWidth": 0.25}}


@pytest.fixture(scope="module")
def volumes(tmp_path_factory):
    """Three 3D cases of different sizes (case 'big' has the largest files)."""
    root = tmp_path_factory.mktemp("vols")
    rng = np.random.default_rng(7)
    rows = []
    for cid, shape in (("small", (6, 16, 16)), ("big", (14, 40, 40)), ("mid", (10, 24, 24))):
        vol = rng.normal(0, 1, shape).astype(np.float32)
        zz, yy, xx = np.indices(shape)
        c = np.array(shape) / 2
        m = (((zz - c[0]) / (shape[0] / 3)) ** 2 + ((yy - c[1]) / (shape[1] / 3)) ** 2
             + ((xx - c[2]) / (shape[2] / 4)) ** 2 <= 1).astype(np.uint8)
        rows.append(_write_case(root, cid, vol, m, spacing=(0.7, 0.7, 2.5)))
    pd.DataFrame(rows).to_csv(root / "m.csv", index=False)
    return root / "m.csv"


@pytest.fixture(params=["caller", "zygote"])
def forker(request):
    """How ``jobs=2`` gets its worker: forked by the calling process, or by a zygote (what
    ``radlens radiomics --jobs N`` starts). Call the returned function after any monkeypatch: a
    zygote's workers inherit the zygote's state as of its start."""
    from radlens.zygote import start_zygote, stop_zygote

    def start():
        if request.param == "zygote":
            z = start_zygote("radlens.radiomics.schedule:preload")
            assert z is not None and z.wait_ready(60)
        return request.param

    yield start
    stop_zygote()


def _not_our_children(pids) -> bool:
    import os

    for pid in pids:
        try:
            os.waitpid(pid, os.WNOHANG)
            return False
        except ChildProcessError:
            pass
    return True


def _write_case(root, cid, vol, mask, spacing=None) -> dict:
    """Write ``cid``'s image and mask (same geometry) as NRRD; the manifest row."""
    img = sitk.GetImageFromArray(vol)
    if spacing is not None:
        img.SetSpacing(spacing)
    msk = sitk.GetImageFromArray(mask)
    msk.CopyInformation(img)
    sitk.WriteImage(img, str(root / f"{cid}.nrrd"))
    sitk.WriteImage(msk, str(root / f"{cid}_m.nrrd"))
    return {"case_id": cid, "image": str(root / f"{cid}.nrrd"), "mask": str(root / f"{cid}_m.nrrd")}


def test_plan_largest_first_and_split():
    rows = [{"case_id": "a", "image": None}, {"case_id": "b", "image": None}]
    prm = pyrad.load_params(ORIGINAL)
    # no files: equal costs, manifest order kept, one case per unit, no split with one worker
    assert [u for _, u in schedule.plan(rows, [0, 1], prm, workers=1, batch_size=1)] == [("batch", (0,)), ("batch", (1,))]


def test_plan_orders_by_cost_and_splits_big_cases(volumes):
    rows = pd.read_csv(volumes).to_dict("records")
    prm = pyrad.load_params(ORIGINAL)
    units = [u for _, u in schedule.plan(rows, [0, 1, 2], prm, workers=1, batch_size=1)]
    assert units == [("batch", (1,)), ("batch", (2,)), ("batch", (0,))]  # big, mid, small
    units = [u for _, u in schedule.plan(rows, [0, 1, 2], prm, workers=2, batch_size=1)]
    assert units[0] == ("prep", 1)  # the big case is split (crop-safe params: by class)
    assert ("batch", (0,)) in units  # the small one is not
    assert ("shape", 1) not in units
    units = [u for _, u in schedule.plan(rows, [0, 1, 2], prm, workers=2, batch_size=1, mask_shape=True)]
    assert units[:2] == [("prep", 1), ("shape", 1)]  # shape from the mask alone, while the image is read
    units = [u for _, u in schedule.plan(rows, [0, 1, 2], pyrad.load_params(FILTERED), workers=2, batch_size=1)]
    assert [u for u in units if u[1] == 1] == [("types", 1, ("LoG",), False), ("types", 1, ("Original",), True),
                                               ("types", 1, ("Square",), False)]  # LoG weighs most
    assert schedule.plan(rows, [0, 1, 2], prm, workers=2, diagnostics="pyradiomics")[0][1][0] == "batch"


def test_group_classes_balances_and_keeps_params_order():
    groups = schedule.group_classes(list(CLASSES), 3, 2)
    assert groups[0] == ("shape",) or "shape" in groups[0]
    assert sorted(c for g in groups for c in g) == sorted(CLASSES) and len(groups) == 2
    for g in groups:
        assert list(g) == [c for c in CLASSES if c in g]
    assert schedule.group_classes(["glcm"], 3, 4) == [("glcm",)]


@pytest.mark.parametrize("params", [ORIGINAL, FILTERED], ids=["by-class", "by-image-type"])
def test_split_cases_identical_to_serial(volumes, tmp_path, params, forker):
    import os

    logging.getLogger("radiomics").setLevel(logging.ERROR)
    serial = radiomics(volumes, params, out=tmp_path / "s.parquet", use_cache=False, show_progress=False)
    how = forker()
    split = radiomics(volumes, params, out=tmp_path / "p.parquet", jobs=2, use_cache=False, show_progress=False)
    workers = set(schedule.WORKER_CPU) - {os.getpid()}
    assert len(workers) == 1 and _not_our_children(workers) == (how == "zygote")
    assert len(serial.features) == 3 and serial.n_failed == 0
    assert list(split.features.columns) == list(serial.features.columns)  # pyradiomics' order
    pd.testing.assert_frame_equal(split.features, serial.features, check_exact=True)
    pd.testing.assert_frame_equal(split.diagnostics, serial.diagnostics, check_exact=True)
    # and the serial run is plain pyradiomics (values and feature order)
    from radiomics.featureextractor import RadiomicsFeatureExtractor

    r = pd.read_csv(volumes).iloc[1]
    ref = RadiomicsFeatureExtractor(dict(params)).execute(r["image"], r["mask"])
    ref = {k: float(v) for k, v in ref.items() if not k.startswith("diagnostics_")}
    got = split.features.set_index("case_id").loc["big"]
    assert list(ref) == list(got.index)
    np.testing.assert_allclose(got.to_numpy(float), np.array(list(ref.values())), rtol=1e-9, atol=0)
    eng = split.diagnostics.set_index("case_id").loc["big"]
    if params is ORIGINAL:  # radlens' engine took first order and GLCM; pyradiomics the rest
        assert eng["radlens_engine"] == "shape,firstorder,glcm,glrlm,glszm,gldm,ngtdm"
        assert pd.isna(eng["radlens_pyradiomics"])
    else:  # filters: every class by pyradiomics
        assert pd.isna(eng["radlens_engine"]) and eng["radlens_pyradiomics"] == "shape,firstorder,glcm"


def _failing_roi_cohort(tmp_path):
    """``tmp_path/m.csv``: a large case ("big", 3 ROI voxels: pyradiomics refuses it) and a small valid
    one; returns the params (minimumROISize 5)."""
    rng = np.random.default_rng(2)
    rows = []
    for cid, shape, n_roi in (("big", (16, 48, 48), 3), ("small", (4, 10, 10), 30)):
        vol = rng.normal(0, 1, shape).astype(np.float32)
        m = np.zeros(shape, np.uint8)
        m.reshape(-1)[np.linspace(shape[1] * shape[2] + 5, m.size - 5, n_roi).astype(int)] = 1
        rows.append(_write_case(tmp_path, cid, vol, m))
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    return {**ORIGINAL, "setting": {"binWidth": 0.25, "minimumROISize": 5, "minimumROIDimensions": 1}}


def test_split_case_failing_roi_check_fails_like_serial(tmp_path):
    """A split case whose ROI pyradiomics would refuse fails with the same message."""
    params = _failing_roi_cohort(tmp_path)
    r1 = radiomics(tmp_path / "m.csv", params, out=tmp_path / "a.parquet", use_cache=False, show_progress=False)
    r2 = radiomics(tmp_path / "m.csv", params, out=tmp_path / "b.parquet", jobs=2, use_cache=False,
                   show_progress=False)
    assert r1.failures["case_id"].tolist() == ["big"]
    assert "Size of the ROI is too small" in r1.failures["error"].iloc[0]
    pd.testing.assert_frame_equal(r1.failures, r2.failures)
    pd.testing.assert_frame_equal(r1.features, r2.features, check_exact=True)


def test_order_features_matches_execute():
    feats = {"original_glcm_A": 1.0, "original_shape_B": 2.0, "original_firstorder_C": 3.0, "original_glcm_D": 4.0}
    enabled = {"firstorder": None, "glcm": None, "shape": None}
    assert list(pyrad.order_features(feats, enabled)) == ["original_shape_B", "original_firstorder_C",
                                                          "original_glcm_A", "original_glcm_D"]


def test_auto_jobs_pool_only_when_it_can_win(tmp_path):
    """jobs='auto': no pool for a couple of small cases, one worker per CPU (at most one per case)
    for enough work; the estimate reads only file sizes."""
    small = tmp_path / "s.nrrd"
    small.write_bytes(b"x" * 2_000)
    big = tmp_path / "b.nrrd"
    big.write_bytes(b"x" * 4_000_000)  # ~4 MB: a CT volume's worth (~0.06 s by the cost model)
    rows = [{"case_id": f"c{i}", "image": str(small), "mask": str(small)} for i in range(60)]
    # 2 small cases: 2 x (2.5 ms + 18 KB x 14 ns) ~ 5.5 ms << 0.1 s
    assert schedule.auto_jobs(rows, [0, 1], 2) == 1
    # 60 small cases: ~0.17 s: a pool wins, one worker per CPU
    assert schedule.auto_jobs(rows, list(range(60)), 2) == 2
    assert schedule.auto_jobs(rows, list(range(60)), 1) == 1
    rows_big = [{"case_id": f"b{i}", "image": str(big), "mask": str(small)} for i in range(3)]
    assert schedule.auto_jobs(rows_big, [0, 1, 2], 8) == 3  # ~0.18 s; never more workers than cases
    assert schedule.auto_jobs(rows_big, [0], 8) == 1


def test_split_small_roi_finishes_in_preparing_worker(volumes, tmp_path, monkeypatch):
    """Both ways a split case can go (classes computed where the case was prepared, or spread
    over the workers) give the serial run's record, bit for bit."""
    logging.getLogger("radiomics").setLevel(logging.ERROR)
    serial = radiomics(volumes, ORIGINAL, out=tmp_path / "s.parquet", use_cache=False, show_progress=False)
    for voxels in (0, 10**9):  # 0: always spread; 10**9: always finish in the preparing worker
        monkeypatch.setattr(schedule, "SPLIT_VOXELS", voxels)
        split = radiomics(volumes, ORIGINAL, out=tmp_path / f"p{voxels}.parquet", jobs=2, use_cache=False,
                          show_progress=False)
        pd.testing.assert_frame_equal(split.features, serial.features, check_exact=True)
        pd.testing.assert_frame_equal(split.diagnostics, serial.diagnostics, check_exact=True)


def test_caller_computes_the_largest_unit_and_workers_the_rest(volumes, tmp_path, monkeypatch):
    """jobs=2: the calling process and one forked worker; the caller takes the most expensive unit
    (the big case, not split at 1.15 shares here), the worker the others; same tables as serial.
    A unit that raises in the caller is that case's failure record; the others proceed."""
    import os

    logging.getLogger("radiomics").setLevel(logging.ERROR)
    monkeypatch.setattr(schedule, "SPLIT_SHARE", 10.0)  # no split: whole cases only
    serial = radiomics(volumes, ORIGINAL, out=tmp_path / "s.parquet", use_cache=False, show_progress=False)
    me, seen = os.getpid(), []
    real = schedule.run_unit

    def spy(unit):
        if os.getpid() == me:
            seen.append([r["case_id"] for r in unit[1][0]])
        return real(unit)

    monkeypatch.setattr(schedule, "run_unit", spy)
    par = radiomics(volumes, ORIGINAL, out=tmp_path / "p.parquet", jobs=2, batch_size=1, use_cache=False,
                    show_progress=False)
    pd.testing.assert_frame_equal(par.features, serial.features, check_exact=True)
    assert seen[0] == ["big"] and ["mid"] not in seen and ["small"] not in seen
    assert me in schedule.WORKER_CPU and len(schedule.WORKER_CPU) == 2

    def boom(unit):
        if os.getpid() == me:
            raise RuntimeError("boom")
        return real(unit)

    monkeypatch.setattr(schedule, "run_unit", boom)
    bad = radiomics(volumes, ORIGINAL, out=tmp_path / "b.parquet", jobs=2, batch_size=1, use_cache=False,
                    show_progress=False)
    assert bad.failures["case_id"].tolist() == ["big"]
    assert bad.failures["error"].iloc[0] == "worker error: RuntimeError: boom"
    pd.testing.assert_frame_equal(bad.features.reset_index(drop=True),
                                  serial.features[serial.features["case_id"] != "big"].reset_index(drop=True),
                                  check_exact=True)


def _rest_split(monkeypatch):
    """Plan the largest case as ``rest`` + ``shape`` (below SPLIT_SHARE, above SHAPE_SPLIT_SHARE)."""
    monkeypatch.setattr(schedule, "SPLIT_SHARE", 10.0)
    monkeypatch.setattr(schedule, "SHAPE_SPLIT_SHARE", 0.0)


def test_plan_rest_and_shape_just_above_a_share(volumes, monkeypatch):
    rows = pd.read_csv(volumes).to_dict("records")
    prm = pyrad.load_params(ORIGINAL)
    _rest_split(monkeypatch)
    units = [u for _, u in schedule.plan(rows, [0, 1, 2], prm, workers=2, batch_size=1, mask_shape=True)]
    assert units[0] == ("rest", 1) and ("shape", 1) in units  # only the largest case (jobs - 1 of them)
    assert ("batch", (2,)) in units and ("batch", (0,)) in units
    # workers forked by a zygote: the caller pays no fork, it takes a case whole up to
    # ZYGOTE_SHAPE_SPLIT_SHARE shares
    monkeypatch.setattr(schedule, "ZYGOTE_SHAPE_SPLIT_SHARE", 10.0)
    units = [u for _, u in schedule.plan(rows, [0, 1, 2], prm, workers=2, batch_size=1, mask_shape=True,
                                         zygote=True)]
    assert all(u[0] == "batch" for u in units)
    monkeypatch.setattr(schedule, "ZYGOTE_SHAPE_SPLIT_SHARE", 0.0)
    units = [u for _, u in schedule.plan(rows, [0, 1, 2], prm, workers=2, batch_size=1, mask_shape=True,
                                         zygote=True)]
    assert units[0] == ("rest", 1)
    # without radlens' shape (mask_shape False) nothing is split below SPLIT_SHARE
    units = [u for _, u in schedule.plan(rows, [0, 1, 2], prm, workers=2, batch_size=1)]
    assert all(u[0] == "batch" for u in units)


def test_rest_and_shape_split_identical_to_serial(volumes, tmp_path, monkeypatch):
    logging.getLogger("radiomics").setLevel(logging.ERROR)
    serial = radiomics(volumes, ORIGINAL, out=tmp_path / "s.parquet", use_cache=False, show_progress=False)
    _rest_split(monkeypatch)
    seen = []
    real = schedule.run_unit
    monkeypatch.setattr(schedule, "run_unit", lambda u: (seen.append(u), real(u))[1])
    split = radiomics(volumes, ORIGINAL, out=tmp_path / "p.parquet", jobs=2, use_cache=False, show_progress=False)
    # the caller took the largest unit: the big case as one extraction without its shape classes
    assert [u[1][4] for u in seen if u[0] == "batch" and u[1][4]] == [(("Original",), False, True)]
    assert "shape" not in [u[0] for u in seen]  # the forked worker computed it (no trace here)
    assert list(split.features.columns) == list(serial.features.columns)
    pd.testing.assert_frame_equal(split.features, serial.features, check_exact=True)
    pd.testing.assert_frame_equal(split.diagnostics, serial.diagnostics, check_exact=True)
    assert serial.diagnostics.set_index("case_id").loc["big", "radlens_engine"] == \
        "shape,firstorder,glcm,glrlm,glszm,gldm,ngtdm"


def test_rest_and_shape_split_failing_roi_like_serial(tmp_path, monkeypatch):
    params = _failing_roi_cohort(tmp_path)
    r1 = radiomics(tmp_path / "m.csv", params, out=tmp_path / "a.parquet", use_cache=False, show_progress=False)
    _rest_split(monkeypatch)
    r2 = radiomics(tmp_path / "m.csv", params, out=tmp_path / "b.parquet", jobs=2, use_cache=False,
                   show_progress=False)
    assert r1.failures["case_id"].tolist() == ["big"]
    pd.testing.assert_frame_equal(r1.failures, r2.failures)
    pd.testing.assert_frame_equal(r1.features, r2.features, check_exact=True)


def test_a_worker_that_dies_fails_its_cases_only(volumes, tmp_path, monkeypatch, forker):
    """jobs=2: the forked worker dies (a hard crash, as a segfault in a C library) on the case it
    holds: that case is a failure record naming the crash, not cached (a re-run computes it); the
    caller computes what was not handed out yet; the other cases equal the serial run's."""
    import os

    logging.getLogger("radiomics").setLevel(logging.ERROR)
    serial = radiomics(volumes, ORIGINAL, out=tmp_path / "s.parquet", use_cache=False, show_progress=False)
    monkeypatch.setattr(schedule, "SPLIT_SHARE", 10.0)  # whole cases only
    monkeypatch.setattr(schedule, "SHAPE_SPLIT_SHARE", 10.0)
    monkeypatch.setattr(schedule, "ZYGOTE_SHAPE_SPLIT_SHARE", 10.0)
    monkeypatch.setattr(schedule, "IN_FLIGHT", 1)  # the worker holds one case at a time
    monkeypatch.setattr(schedule, "STOCK_MARGIN", 0.0)
    monkeypatch.setattr(schedule, "ZYGOTE_STOCK_MARGIN", 0.0)
    me, real = os.getpid(), schedule.run_unit

    def crash_on_mid(unit):
        if os.getpid() != me and [r["case_id"] for r in unit[1][0]] == ["mid"]:
            os._exit(5)
        return real(unit)

    monkeypatch.setattr(schedule, "run_unit", crash_on_mid)
    forker()
    out = tmp_path / "p.parquet"
    res = radiomics(volumes, ORIGINAL, out=out, jobs=2, batch_size=1, show_progress=False)
    assert res.failures["case_id"].tolist() == ["mid"]
    assert "worker process failed: exit code 5" in res.failures["error"].iloc[0]
    keep = serial.features["case_id"] != "mid"
    pd.testing.assert_frame_equal(res.features.reset_index(drop=True),
                                  serial.features[keep].reset_index(drop=True), check_exact=True)
    monkeypatch.setattr(schedule, "run_unit", real)
    again = radiomics(volumes, ORIGINAL, out=tmp_path / "q.parquet", cache_dir=tmp_path / "p.cache", jobs=1,
                      show_progress=False)  # the same cache, new tables
    assert again.n_failed == 0 and again.n_computed == 1
    pd.testing.assert_frame_equal(again.features, serial.features, check_exact=True)


def test_without_fork_a_plain_pool_gives_the_same_tables(volumes, tmp_path, monkeypatch):
    """Where workers are not forked (RADLENS_MP_START=spawn/forkserver, macOS), the units run in a
    plain process pool: no two-stage split (it needs the caller between the stages), same tables."""
    logging.getLogger("radiomics").setLevel(logging.ERROR)
    serial = radiomics(volumes, ORIGINAL, out=tmp_path / "s.parquet", use_cache=False, show_progress=False)
    monkeypatch.setattr(schedule, "SPLIT_SHARE", 0.5)  # 'big' would be split in two stages if forked
    monkeypatch.setattr(schedule, "_forks", lambda: False)
    seen = []
    monkeypatch.setattr(schedule, "_pool", lambda *a, **k: seen.append("pool") or iter(()))
    par = radiomics(volumes, ORIGINAL, out=tmp_path / "p.parquet", jobs=2, use_cache=False, show_progress=False)
    assert seen == []
    pd.testing.assert_frame_equal(par.features, serial.features, check_exact=True)
    pd.testing.assert_frame_equal(par.diagnostics, serial.diagnostics, check_exact=True)
    rows = pd.read_csv(volumes).to_dict("records")
    units = [u for _, u in schedule.plan(rows, [0, 1, 2], pyrad.load_params(ORIGINAL), workers=2, two_stage=False)]
    assert "prep" not in [u[0] for u in units]
