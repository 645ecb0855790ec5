"""radlens radiomics: same numbers as plain pyradiomics, parallel == serial, cache, failures."""
from __future__ import annotations

import logging
import os

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from radlens.errors import ConfigError, InputError, ManifestError
from radlens.radiomics import extract as ex
from radlens.radiomics import pyrad, schedule
from radlens.radiomics.extract import DEFAULT_PARAMS, radiomics, side_paths

# a light params file: every class still runs, so every code path is exercised
LIGHT = {"imageType": {"Original": {}},
         "featureClass": {"shape": None, "shape2D": None, "firstorder": None, "glcm": ["Contrast", "Idm"],
                          "glrlm": ["RunEntropy"], "glszm": ["ZoneEntropy"], "gldm": ["DependenceEntropy"],
                          "ngtdm": ["Coarseness"]},
         "setting": {"binCount": 16, "minimumROISize": 5}}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    from radlens.synth import make_cohort

    return make_cohort(tmp_path_factory.mktemp("coh"), n_cases=10, image_size=40, seed=3)


def _plain(manifest_path, params):
    """The loop a user would write: RadiomicsFeatureExtractor(params).execute per case."""
    from radiomics.featureextractor import RadiomicsFeatureExtractor

    m = pd.read_csv(manifest_path)
    root = manifest_path.parent
    e = RadiomicsFeatureExtractor(str(params)) if not isinstance(params, dict) else RadiomicsFeatureExtractor(params)
    out = {}
    for r in m.itertuples():
        res = e.execute(str(root / r.image), str(root / r.mask))
        out[r.case_id] = {k: float(v) for k, v in res.items() if not k.startswith("diagnostics_")}
    return out


def _values(df):
    return df.drop(columns="case_id").to_numpy(np.float64)


@pytest.mark.parametrize("engine", ["pyradiomics", "radlens"])
def test_identical_to_plain_pyradiomics_default_params(cohort, tmp_path, engine):
    """engine='pyradiomics': bit for bit; 'radlens' (first order, GLCM by radlens): 1e-9 relative."""
    logging.getLogger("radiomics").setLevel(logging.ERROR)
    res = radiomics(cohort, out=tmp_path / "r.parquet", show_progress=False, engine=engine)
    plain = _plain(cohort, DEFAULT_PARAMS)
    f = res.features
    assert f["case_id"].tolist() == list(plain)
    names = list(f.columns[1:])
    # every pyradiomics feature, in pyradiomics' order (3D shape is skipped on 2D images, as
    # pyradiomics itself does with a warning)
    assert names == list(plain["case0000"])
    assert any(c.startswith("original_shape2D_") for c in names) and not any(c.startswith("original_shape_") for c in names)
    assert all(f[c].dtype == np.float64 for c in names) and len(names) > 90
    for _, row in f.iterrows():
        ref = plain[row["case_id"]]
        want = np.array([ref[k] for k in names])
        if engine == "pyradiomics":
            np.testing.assert_array_equal(row[names].to_numpy(float), want, err_msg=row["case_id"])
        else:
            np.testing.assert_allclose(row[names].to_numpy(float), want, rtol=1e-9, atol=0, err_msg=row["case_id"])
    # side files
    diag_path, fail_path = side_paths(tmp_path / "r.parquet")
    assert res.diagnostics_path == diag_path and diag_path.exists() and fail_path.exists()
    assert pd.read_csv(fail_path).empty and list(pd.read_csv(fail_path).columns) == ["case_id", "stage", "error"]
    assert not any(c.startswith("diagnostics_") for c in names)


def test_pyradiomics_state_restored_after_extraction(cohort, tmp_path):
    """radlens' speed-ups and log silencing inside pyradiomics are undone when it returns."""
    from radiomics import imageoperations
    from radiomics.base import RadiomicsFeaturesBase

    lg = logging.getLogger("radiomics")
    before = (RadiomicsFeaturesBase.__dict__["getFeatureNames"], imageoperations.cropToTumorMask, lg.level,
              lg.propagate, [h.level for h in lg.handlers if not isinstance(h, pyrad._WarningCollector)])
    radiomics(cohort, LIGHT, out=tmp_path / "r.parquet", show_progress=False)
    after = (RadiomicsFeaturesBase.__dict__["getFeatureNames"], imageoperations.cropToTumorMask, lg.level,
             lg.propagate, [h.level for h in lg.handlers if not isinstance(h, pyrad._WarningCollector)])
    assert after == before


def test_fast_diagnostics_equal_pyradiomics_own(cohort, tmp_path):
    fast = radiomics(cohort, LIGHT, out=tmp_path / "a.parquet", show_progress=False).diagnostics
    own = radiomics(cohort, LIGHT, out=tmp_path / "b.parquet", diagnostics="pyradiomics",
                    show_progress=False).diagnostics
    for col in ("Image-original_Mean", "Image-original_Minimum", "Image-original_Maximum", "Mask-original_VoxelNum",
                "Mask-original_VolumeNum"):
        c = f"diagnostics_{col}"
        np.testing.assert_allclose(fast[c].astype(float), own[c].astype(float), rtol=1e-6, err_msg=c)
    for col in ("Image-original_Spacing", "Image-original_Size", "Mask-original_BoundingBox"):
        c = f"diagnostics_{col}"
        assert fast[c].tolist() == own[c].tolist(), c
    com_f = np.array([eval(s) for s in fast["diagnostics_Mask-original_CenterOfMassIndex"]])
    com_o = np.array([eval(s) for s in own["diagnostics_Mask-original_CenterOfMassIndex"]])
    np.testing.assert_allclose(com_f, com_o, rtol=1e-9)
    assert "diagnostics_Versions_PyRadiomics" in own.columns  # pyradiomics' own, when asked for


def test_parallel_and_dask_equal_serial(cohort, tmp_path):
    from distributed import LocalCluster

    serial = radiomics(cohort, LIGHT, out=tmp_path / "s.parquet", use_cache=False, show_progress=False)
    par = radiomics(cohort, LIGHT, out=tmp_path / "p.parquet", jobs=2, batch_size=2, use_cache=False,
                    show_progress=False)
    assert par.n_computed == 10
    assert list(par.features.columns) == list(serial.features.columns)
    assert par.features["case_id"].tolist() == serial.features["case_id"].tolist()
    np.testing.assert_array_equal(_values(par.features), _values(serial.features))
    # a LocalCluster reached by its address, as a remote cluster would be (in-process workers: quick)
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster:
        dk = radiomics(cohort, LIGHT, out=tmp_path / "d.parquet", executor="dask",
                       scheduler=cluster.scheduler_address, batch_size=3, use_cache=False, show_progress=False)
    assert list(dk.features.columns) == list(serial.features.columns)
    np.testing.assert_array_equal(_values(dk.features), _values(serial.features))
    pd.testing.assert_frame_equal(dk.diagnostics, serial.diagnostics)


def test_second_run_extracts_nothing(cohort, tmp_path, monkeypatch):
    out = tmp_path / "r.parquet"
    first = radiomics(cohort, LIGHT, out=out, show_progress=False)
    assert (first.n_computed, first.n_cached) == (10, 0)

    def boom(unit):
        raise AssertionError("extraction must not run on a cached re-run")

    monkeypatch.setattr(schedule, "run_unit", boom)
    again = radiomics(cohort, LIGHT, out=out, show_progress=False)  # outputs up to date
    assert (again.n_computed, again.n_cached) == (0, 10)
    np.testing.assert_array_equal(_values(again.features), _values(first.features))
    # a different output file is assembled from the per-case cache, still without extracting
    other = radiomics(cohort, LIGHT, out=tmp_path / "other.parquet", cache_dir=tmp_path / "r.cache",
                      show_progress=False)
    assert (other.n_computed, other.n_cached) == (0, 10)
    assert list(other.features.columns) == list(first.features.columns)
    np.testing.assert_array_equal(_values(other.features), _values(first.features))


def test_cache_invalidated_by_content_and_params(cohort, tmp_path):
    out = tmp_path / "r.parquet"
    radiomics(cohort, LIGHT, out=out, show_progress=False)
    # params change: everything is recomputed
    p2 = {**LIGHT, "setting": {"binCount": 8, "minimumROISize": 5}}
    assert radiomics(cohort, p2, out=out, show_progress=False).n_computed == 10
    # one image's content changes: only that case is recomputed
    m = pd.read_csv(cohort)
    img_path = cohort.parent / m.loc[0, "image"]
    img = sitk.ReadImage(str(img_path))
    arr = sitk.GetArrayFromImage(img)
    saved = img_path.read_bytes()
    try:
        new = sitk.GetImageFromArray(arr * 1.5)
        new.CopyInformation(img)
        sitk.WriteImage(new, str(img_path))
        res = radiomics(cohort, p2, out=out, show_progress=False)
        assert (res.n_computed, res.n_cached) == (1, 9)
    finally:
        img_path.write_bytes(saved)


def test_bad_cases_land_in_failures_others_complete(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.normal(100, 20, (32, 32)).astype(np.float32)
    sitk.WriteImage(sitk.GetImageFromArray(img), str(tmp_path / "img.nii.gz"))
    good = np.zeros((32, 32), np.uint8)
    good[8:20, 6:18] = 1
    tiny = np.zeros((32, 32), np.uint8)
    tiny[3:5, 3:5] = 1  # 4 pixels < minimumROISize 5
    two = np.zeros((32, 32), np.uint8)
    two[10:20, 10:20] = 2
    for name, m in (("good", good), ("tiny", tiny), ("two", two)):
        sitk.WriteImage(sitk.GetImageFromArray(m), str(tmp_path / f"{name}.nii.gz"))
    pd.DataFrame([
        {"case_id": "ok1", "image": "img.nii.gz", "mask": "good.nii.gz", "label": 1},
        {"case_id": "small", "image": "img.nii.gz", "mask": "tiny.nii.gz", "label": 1},
        {"case_id": "nolabel", "image": "img.nii.gz", "mask": "two.nii.gz", "label": 1},
        {"case_id": "ok2", "image": "img.nii.gz", "mask": "two.nii.gz", "label": 2},
    ]).to_csv(tmp_path / "m.csv", index=False)
    # up-front check: the absent label is a manifest problem, reported before any extraction
    with pytest.raises(ManifestError, match=r"row 3 \(case_id 'nolabel'\): label 1 does not occur in mask 'two.nii.gz'"):
        radiomics(tmp_path / "m.csv", LIGHT, out=tmp_path / "r.parquet", check_images=True, show_progress=False)
    res = radiomics(tmp_path / "m.csv", LIGHT, out=tmp_path / "r.parquet", show_progress=False)
    assert res.features["case_id"].tolist() == ["ok1", "ok2"]
    assert not res.features.drop(columns="case_id").isna().all(axis=1).any()  # never an all-NaN row
    fails = pd.read_csv(res.failures_path)
    assert fails["case_id"].tolist() == ["small", "nolabel"]
    assert fails["stage"].tolist() == ["extract", "load"]
    assert "too small" in fails.loc[0, "error"] and "pyradiomics" in fails.loc[0, "error"]
    assert "label 1 does not occur" in fails.loc[1, "error"] and "[0, 2]" in fails.loc[1, "error"]
    # failures are cached too (deterministic); retry_failed recomputes them only
    assert radiomics(tmp_path / "m.csv", LIGHT, out=tmp_path / "r2.parquet", cache_dir=tmp_path / "r.cache",
                     check_images=False, show_progress=False).n_computed == 0
    retry = radiomics(tmp_path / "m.csv", LIGHT, out=tmp_path / "r.parquet", check_images=False,
                      retry_failed=True, show_progress=False)
    assert retry.n_computed == 2 and len(retry.failures) == 2


def test_empty_label_inferred_from_0_255_masks(tmp_path):
    rng = np.random.default_rng(2)
    img = (rng.random((30, 30)) * 200).astype(np.uint8)
    sitk.WriteImage(sitk.GetImageFromArray(img), str(tmp_path / "a.png"))
    m = np.zeros((30, 30), np.uint8)
    m[5:15, 8:20] = 255
    sitk.WriteImage(sitk.GetImageFromArray(m), str(tmp_path / "m.png"))
    pd.DataFrame([{"case_id": "a", "image": "a.png", "mask": "m.png"}]).to_csv(tmp_path / "m.csv", index=False)
    for check in (False, True):
        res = radiomics(tmp_path / "m.csv", LIGHT, out=tmp_path / f"r{check}.parquet", check_images=check,
                        show_progress=False)
        assert res.failures.empty and res.features["original_shape2D_PixelSurface"].tolist() == [120.0]


def test_boxes_and_3d_volumes(tmp_path):
    from radiomics.featureextractor import RadiomicsFeatureExtractor

    rng = np.random.default_rng(1)
    img2 = (rng.random((30, 36)) * 255).astype(np.uint8)
    sitk.WriteImage(sitk.GetImageFromArray(img2), str(tmp_path / "a.png"))
    vol = rng.normal(0, 1, (8, 20, 20)).astype(np.float32)
    v = sitk.GetImageFromArray(vol)
    v.SetSpacing((0.8, 0.8, 2.0))
    sitk.WriteImage(v, str(tmp_path / "v.nrrd"))
    vm = np.zeros(vol.shape, np.uint8)
    vm[2:6, 5:14, 4:12] = 1
    mv = sitk.GetImageFromArray(vm)
    mv.CopyInformation(v)
    sitk.WriteImage(mv, str(tmp_path / "vm.nrrd"))
    pd.DataFrame([
        {"case_id": "box", "image": "a.png", "bbox_x": 5, "bbox_y": 4, "bbox_w": 12, "bbox_h": 9},
        {"case_id": "vol", "image": "v.nrrd", "mask": "vm.nrrd"},
    ]).to_csv(tmp_path / "m.csv", index=False)
    res = radiomics(tmp_path / "m.csv", LIGHT, out=tmp_path / "r.csv", show_progress=False)
    f = res.features.set_index("case_id")
    assert res.out.suffix == ".csv" and (tmp_path / "r.diagnostics.csv").exists()
    # box: same as pyradiomics on a hand-rasterised mask (rows 4..12, columns 5..16)
    m2 = np.zeros((30, 36), np.uint8)
    m2[4:13, 5:17] = 1
    ref = RadiomicsFeatureExtractor(LIGHT).execute(sitk.ReadImage(str(tmp_path / "a.png")), sitk.GetImageFromArray(m2))
    assert ref["original_shape2D_PixelSurface"] == 108 == f.loc["box", "original_shape2D_PixelSurface"]
    for k, val in ref.items():  # radlens' engine: pyradiomics' values to 1e-9 relative
        if not k.startswith("diagnostics_"):
            assert f.loc["box", k] == pytest.approx(float(val), rel=1e-9, abs=0), k
    # 3D: 3D shape (volume of 4 x 9 x 8 voxels of 0.8 x 0.8 x 2.0 mm), no shape2D
    assert f.loc["vol", "original_shape_VoxelVolume"] == pytest.approx(4 * 9 * 8 * 0.8 * 0.8 * 2.0)
    assert np.isnan(f.loc["vol", "original_shape2D_PixelSurface"]) and np.isnan(f.loc["box", "original_shape_VoxelVolume"])
    assert res.diagnostics.set_index("case_id").loc["vol", "diagnostics_Mask-original_VoxelNum"] == 4 * 9 * 8


def test_bad_arguments(cohort, tmp_path):
    with pytest.raises(ConfigError, match="params file 'nope.yaml' does not exist"):
        radiomics(cohort, "nope.yaml", out=tmp_path / "r.parquet")
    (tmp_path / "bad.yaml").write_text("setting:\n  binWidht: 25\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid pyradiomics parameters"):
        radiomics(cohort, tmp_path / "bad.yaml", out=tmp_path / "r.parquet")
    with pytest.raises(ConfigError, match=r"executor='spark' is not allowed; use one of \['process', 'dask'\]"):
        radiomics(cohort, LIGHT, out=tmp_path / "r.parquet", executor="spark")
    with pytest.raises(ConfigError, match="diagnostics='all' is not allowed"):
        radiomics(cohort, LIGHT, out=tmp_path / "r.parquet", diagnostics="all")
    with pytest.raises(InputError, match="use a .parquet or .csv"):
        radiomics(cohort, LIGHT, out=tmp_path / "r.xlsx")


def test_shipped_params_files_are_valid_pyradiomics_params():
    from pathlib import Path

    from radlens.radiomics.extract import load_params

    repo = Path(__file__).resolve().parents[1]
    files = sorted((repo / "configs").glob("radiomics_*.yaml")) + sorted(DEFAULT_PARAMS.parent.glob("radiomics_*.yaml"))
    assert len(files) >= 5
    for f in files:
        spec = load_params(f).spec
        assert spec["imageType"] == {"Original": {}} and spec["featureClass"], f.name
    assert load_params(None).spec["setting"]["binCount"] == 32


def test_params_travel_to_workers_without_the_file(tmp_path):
    """A remote (Dask) worker may not see the params file: its bytes travel and are re-read."""
    from radlens.radiomics.pyrad import Params, load_params

    f = tmp_path / "p.yaml"
    f.write_text("setting:\n  binCount: 7\nfeatureClass:\n  firstorder:\n", encoding="utf-8")
    prm = load_params(f, validate=False)
    elsewhere = Params(str(tmp_path / "gone" / "p.yaml"), prm.hash, None, prm.text)
    copy = elsewhere.local_source()
    assert copy != elsewhere.source and open(copy, "rb").read() == f.read_bytes()
    assert load_params(copy).spec == load_params(f).spec


def test_params_validated_once_per_file_content(tmp_path, monkeypatch):
    """A params file pyradiomics validated is remembered (by content, pyradiomics version and
    schema): the next extractor is built without pykwalify and equals pyradiomics' own; invalid
    files are never remembered; edited files are validated again."""
    import pykwalify.core
    from radiomics.featureextractor import RadiomicsFeatureExtractor

    memo = tmp_path / "memo"
    monkeypatch.setenv("RADLENS_PARAMS_MEMO", str(memo))
    f = tmp_path / "p.yaml"
    f.write_text("setting:\n  binWidth: 5\n  distances: [1, 2]\n  geometryTolerance: 1.0e-4\nimageType:\n"
                 "  Original: {}\nfeatureClass:\n  glcm: [Contrast, Idmn]\n  firstorder:\n", encoding="utf-8")
    first = pyrad._new_extractor(f)
    assert len(list(memo.glob("*.json"))) == 1
    calls = []
    real = pykwalify.core.Core.validate
    monkeypatch.setattr(pykwalify.core.Core, "validate", lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    again = pyrad._new_extractor(f)
    assert calls == []  # not validated again
    ref = RadiomicsFeatureExtractor(str(f))  # pyradiomics alone (validates)
    assert calls == [1]
    for ex_ in (first, again):
        assert ex_.settings == ref.settings and ex_.enabledImagetypes == ref.enabledImagetypes
        assert list(ex_.enabledFeatures.items()) == list(ref.enabledFeatures.items())
    assert again.settings["distances"] == [1, 2] and again.settings["geometryTolerance"] == 1e-4
    # edited file: validated (and remembered) anew
    f.write_text("setting:\n  binWidth: 7\n", encoding="utf-8")
    assert pyrad._new_extractor(f).settings["binWidth"] == 7 and calls == [1, 1]
    assert len(list(memo.glob("*.json"))) == 2
    # an invalid file fails with pyradiomics' message every time and leaves no memo
    bad = tmp_path / "bad.yaml"
    bad.write_text("setting:\n  binWidht: 25\n", encoding="utf-8")
    for _ in range(2):
        with pytest.raises(ConfigError, match="(?s)not valid pyradiomics parameters.*binWidht"):
            pyrad.validate_params(pyrad.load_params(bad, validate=False))
    assert len(list(memo.glob("*.json"))) == 2
    # an unreadable memo is ignored (validated again, rewritten)
    for p in memo.glob("*.json"):
        p.write_text("{not json", encoding="utf-8")
    assert pyrad._new_extractor(f).settings["binWidth"] == 7
    # RADLENS_PARAMS_MEMO=0: nothing remembered
    monkeypatch.setenv("RADLENS_PARAMS_MEMO", "0")
    f.write_text("setting:\n  binWidth: 9\n", encoding="utf-8")
    assert pyrad._new_extractor(f).settings["binWidth"] == 9
    assert len(list(memo.glob("*.json"))) == 2


def test_lazy_pykwalify_loads_on_first_use_only(tmp_path):
    """With the params validation remembered, a run never loads pykwalify.core (its date parser
    stays unimported); code that uses pykwalify.core after the stand-in gets the real module."""
    import subprocess
    import sys

    from radlens.synth import make_cohort

    man = make_cohort(tmp_path / "c", n_cases=2, image_size=40, seed=0, show_progress=False)
    code = (
        "import sys\n"
        "from radlens.radiomics.extract import radiomics\n"
        f"radiomics({str(man)!r}, out={str(tmp_path / 'r.parquet')!r}, use_cache=False, show_progress=False)\n"
        "print('dateutil.parser' in sys.modules, sys.modules['pykwalify.core'].__dict__.get('Core') is None)\n"
        "import pykwalify.core\n"
        "from pykwalify.core import Core\n"
        "print(pykwalify.core.Core is Core, sys.modules['pykwalify.core'].__dict__.get('Core') is Core)\n")
    env = {**os.environ, "RADLENS_PARAMS_MEMO": str(tmp_path / "memo"), "RADLENS_PROGRESS": "0"}
    first = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert first.stdout.split() == ["True", "False", "True", "True"]  # nothing remembered yet: validated
    again = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert again.stdout.split() == ["False", "True", "True", "True"]  # remembered: never loaded
