"""radlens' feature engine against pyradiomics itself, feature by feature (1e-9 relative).

On pyradiomics' own real test cases (``../shared/data/pyradiomics``: brain MRI, breast MRI, lung
CT; skipped with the reason when absent), on generated 2D phantoms and 3D volumes, with the
settings the engine accepts (bin width / count, distances, shift, asymmetric GLCM, force2D), and
the fallback rules for what it does not cover.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from radlens.radiomics import engine, pyrad

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "pyradiomics"
REAL = ("brain1", "brain2", "breast1", "lung1", "lung2")
BASELINE = Path(pyrad.DEFAULT_PARAMS).with_name("radiomics_baseline.yaml")
RTOL = 1e-9


def _pyradiomics(image, mask, settings, classes):
    """pyradiomics' own values: RadiomicsFeatureExtractor with only these classes enabled."""
    from radiomics.featureextractor import RadiomicsFeatureExtractor

    logging.getLogger("radiomics").setLevel(logging.ERROR)
    ex = RadiomicsFeatureExtractor({"setting": {**settings, "additionalInfo": False},
                                    "imageType": {"Original": {}}, "featureClass": classes})
    return {k: float(v) for k, v in ex.execute(image, mask).items() if not k.startswith("diagnostics_")}


def _settings(params_file):
    from radiomics.featureextractor import RadiomicsFeatureExtractor

    return {k: v for k, v in RadiomicsFeatureExtractor(str(params_file)).settings.items() if k != "additionalInfo"}


def _check(ref: dict, got: dict, where: str) -> int:
    assert list(got) == list(ref), f"{where}: names/order differ: {set(got) ^ set(ref)}"
    for k, want in ref.items():
        val = got[k]
        if np.isnan(want):
            assert np.isnan(val), f"{where} {k}: {val} (pyradiomics: nan)"
        else:
            assert abs(val - want) <= RTOL * abs(want), f"{where} {k}: {val!r} vs pyradiomics {want!r}"
    return len(ref)


def _engine(image, mask, settings, classes):
    img, msk = pyrad._crop_to_roi(_Case(image, mask))
    return engine.compute(img, msk, settings, classes)


class _Case:  # what pyrad._crop_to_roi reads from a radlens Case
    def __init__(self, image, mask):
        self.image, self.mask = image, mask
        self.roi = sitk.GetArrayFromImage(mask) == 1


ALL = {c: None for c in engine.CLASSES if c != "shape2D"}  # 3D
ALL2D = {c: None for c in engine.CLASSES if c != "shape"}


def _all(image):
    return ALL if image.GetDimension() == 3 else ALL2D


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"pyradiomics' real test cases not found at {SHARED} (team data "
                                                "in ../shared, not part of a clone)")
@pytest.mark.parametrize("case", REAL)
def test_parity_real_cases(case):
    """Every first-order and GLCM feature of the real MRI/CT cases, with pyradiomics' baseline
    settings (bin width 25, shift 2000) on the full files, and with other settings on the ROI box."""
    image = sitk.ReadImage(str(SHARED / f"{case}_image.nrrd"))
    mask = sitk.ReadImage(str(SHARED / f"{case}_label.nrrd"))
    base = _settings(BASELINE)
    n = _check(_pyradiomics(image, mask, base, ALL), _engine(image, mask, base, ALL), f"{case} baseline")
    assert n == 14 + 18 + 24 + 16 + 16 + 14 + 5
    img, msk = pyrad._crop_to_roi(_Case(image, mask))
    for variant in ({"binCount": 32}, {"binWidth": 10, "distances": [1, 2], "voxelArrayShift": 0},
                    {"binWidth": 40, "symmetricalGLCM": False}):
        s = {**base, **variant}
        n += _check(_pyradiomics(img, msk, s, ALL), engine.compute(img, msk, s, ALL), f"{case} {variant}")
    assert n == 4 * (14 + 18 + 24 + 16 + 16 + 14 + 5)


def _phantoms():
    """2D phantoms (radlens' synthetic cohort) and 3D noise volumes with ellipsoid ROIs, plus
    degenerate ROIs: flat (one grey level), a line, two separate blobs."""
    from radlens.synth import make_cohort  # noqa: F401  (2D phantoms are made in the fixture)

    rng = np.random.default_rng(11)
    out = []
    for k, shape in enumerate([(7, 30, 26), (12, 20, 40)]):
        vol = rng.gamma(2.0, 50.0, shape).astype(np.float32 if k else np.int16)
        zz, yy, xx = np.indices(shape)
        c = np.array(shape) / 2
        m = ((zz - c[0]) / (shape[0] / 2.5)) ** 2 + ((yy - c[1]) / 7) ** 2 + ((xx - c[2]) / 9) ** 2 <= 1
        out.append((f"vol{k}", vol, m.astype(np.uint8), (0.8, 0.7, 3.0)))
    flat = np.full((20, 20), 100, np.int16)
    fm = np.zeros((20, 20), np.uint8)
    fm[5:12, 4:15] = 1
    out.append(("flat", flat, fm, (1.0, 1.0)))
    line = rng.integers(0, 500, (16, 16)).astype(np.int16)
    lm = np.zeros((16, 16), np.uint8)
    lm[8, 2:14] = 1
    out.append(("line", line, lm, (0.5, 0.5)))
    two = rng.normal(0, 1, (24, 24)).astype(np.float64)
    tm = np.zeros((24, 24), np.uint8)
    tm[2:6, 2:7] = 1
    tm[15:22, 14:20] = 1
    out.append(("two", two, tm, (1.0, 2.0)))
    return out


@pytest.mark.parametrize("name,arr,m,spacing", _phantoms(), ids=lambda v: v if isinstance(v, str) else "")
@pytest.mark.parametrize("settings", [{"binCount": 32}, {"binWidth": 25, "voxelArrayShift": 300},
                                      {"binCount": 8, "distances": [1, 3], "force2D": True}],
                         ids=["count32", "width25", "force2D"])
def test_parity_generated(name, arr, m, spacing, settings):
    image = sitk.GetImageFromArray(arr)
    image.SetSpacing(spacing)
    mask = sitk.GetImageFromArray(m)
    mask.CopyInformation(image)
    s = {"minimumROIDimensions": 1, **settings}
    if settings.get("force2D") and arr.ndim == 2:
        s.pop("force2D")
    classes = dict(_all(image))
    if s.get("force2D"):
        classes.pop("shape", None)  # (3D shape does not depend on force2D; shape2D then stays pyradiomics')
    _check(_pyradiomics(image, mask, s, classes), _engine(image, mask, s, classes), f"{name} {settings}")


def test_parity_2d_phantom_cohort(tmp_path):
    """radlens' synthetic 2D phantom cohort, default radlens params (binCount 32)."""
    import pandas as pd

    from radlens.synth import make_cohort

    man = make_cohort(tmp_path, n_cases=12, image_size=48, seed=5, show_progress=False)
    s = _settings(pyrad.DEFAULT_PARAMS)
    n = 0
    for r in pd.read_csv(man).itertuples():
        image, mask = sitk.ReadImage(str(tmp_path / r.image)), sitk.ReadImage(str(tmp_path / r.mask))
        n += _check(_pyradiomics(image, mask, s, ALL2D), _engine(image, mask, s, ALL2D), r.case_id)
    assert n == 12 * (9 + 18 + 24 + 16 + 16 + 14 + 5)


def test_feature_lists_keep_pyradiomics_order():
    rng = np.random.default_rng(0)
    image = sitk.GetImageFromArray(rng.normal(0, 1, (20, 20)))
    m = np.zeros((20, 20), np.uint8)
    m[3:15, 4:16] = 1
    mask = sitk.GetImageFromArray(m)
    classes = {"glcm": ["MCC", "Contrast", "JointEntropy"], "firstorder": ["Median", "Energy"]}
    s = {"binCount": 16}
    ref = _pyradiomics(image, mask, s, classes)
    got = _engine(image, mask, s, classes)
    _check({k: ref[k] for k in got}, got, "lists")  # pyradiomics orders classes by its own rules
    assert list(got) == ["original_glcm_MCC", "original_glcm_Contrast", "original_glcm_JointEntropy",
                         "original_firstorder_Median", "original_firstorder_Energy"]


def test_engine_covers_only_what_it_reproduces():
    orig = {"Original": {}}
    assert engine.engine_classes({}, {"firstorder": None, "glcm": None, "shape": None}, orig) == ("shape", "firstorder",
                                                                                                 "glcm")
    assert engine.engine_classes({}, {c: None for c in reversed(engine.CLASSES)}, orig) == engine.CLASSES
    assert "shape2D" not in engine.engine_classes({"force2D": True}, {"shape2D": None}, orig)
    assert engine.engine_classes({}, ALL, {"Original": {}, "LoG": {"sigma": [1.0]}}) == ()  # filters
    assert engine.engine_classes({"normalize": True}, ALL, orig) == ()
    assert engine.engine_classes({"resegmentRange": [-100, 100]}, ALL, orig) == ()
    assert engine.engine_classes({"weightingNorm": "euclidean"}, ALL, orig) == ("shape", "firstorder", "glszm", "gldm",
                                                                                "ngtdm")
    # a deprecated or unknown name: the class stays pyradiomics' (which reports it its own way)
    assert engine.engine_classes({}, {"glcm": ["SumVariance"], "firstorder": ["Mean"]}, orig) == ("firstorder",)


def test_engine_failure_falls_back_to_pyradiomics_visibly(tmp_path, monkeypatch):
    from radlens.radiomics.extract import radiomics
    from radlens.synth import make_cohort

    man = make_cohort(tmp_path / "c", n_cases=3, image_size=40, seed=2, show_progress=False)
    ref = radiomics(man, out=tmp_path / "p.parquet", engine="pyradiomics", show_progress=False)
    assert ref.diagnostics["radlens_engine"].isna().all()

    def broken(*a, **k):
        raise FloatingPointError("boom")

    monkeypatch.setattr(engine, "compute", broken)
    monkeypatch.setattr(engine, "compute_arrays", broken)  # the path on arrays (no SimpleITK crop)
    res = radiomics(man, out=tmp_path / "r.parquet", show_progress=False)
    assert res.n_failed == 0
    np.testing.assert_array_equal(res.features.drop(columns="case_id").to_numpy(float),
                                  ref.features.drop(columns="case_id").to_numpy(float))
    assert res.diagnostics["radlens_warnings"].str.contains("radlens engine failed").all()
    assert res.diagnostics["radlens_engine"].isna().all()
    assert (res.diagnostics["radlens_pyradiomics"] == "shape2D,firstorder,glcm,glrlm,glszm,gldm,ngtdm").all()
    monkeypatch.undo()
    res = radiomics(man, out=tmp_path / "e.parquet", show_progress=False)
    assert (res.diagnostics["radlens_engine"] == "shape2D,firstorder,glcm,glrlm,glszm,gldm,ngtdm").all()
    assert res.diagnostics["radlens_pyradiomics"].isna().all()


@pytest.mark.parametrize("roi,settings", [
    ([(5, 6)], {}),  # one pixel
    ([(5, 6), (5, 7), (5, 8)], {"minimumROIDimensions": 2}),  # a line
    ([(5, 6), (6, 6), (5, 7), (6, 7)], {"minimumROISize": 5}),  # too small
])
def test_roi_checks_same_errors_as_pyradiomics(tmp_path, roi, settings):
    """With every class in the engine pyradiomics is not called: its ROI checks are reproduced."""
    import pandas as pd

    from radlens.radiomics.extract import radiomics

    rng = np.random.default_rng(3)
    sitk.WriteImage(sitk.GetImageFromArray(rng.normal(0, 1, (16, 16))), str(tmp_path / "i.nrrd"))
    m = np.zeros((16, 16), np.uint8)
    for yx in roi:
        m[yx] = 1
    sitk.WriteImage(sitk.GetImageFromArray(m), str(tmp_path / "m.nrrd"))
    pd.DataFrame([{"case_id": "c", "image": str(tmp_path / "i.nrrd"), "mask": str(tmp_path / "m.nrrd")}]).to_csv(
        tmp_path / "man.csv", index=False)
    params = {"imageType": {"Original": {}}, "featureClass": {"shape2D": None, "firstorder": None},
              "setting": {"binCount": 8, **settings}}
    errs = [radiomics(tmp_path / "man.csv", params, out=tmp_path / f"{e}.parquet", engine=e,
                      show_progress=False).failures for e in ("pyradiomics", "radlens")]
    assert len(errs[0]) == 1 and errs[0]["stage"].iloc[0] == "extract"
    assert errs[1]["error"].tolist() == errs[0]["error"].tolist()


def test_volume_count_same_with_scipy_or_simpleitk(monkeypatch):
    """fast diagnostics count fully connected components with scipy (large runs) or, without
    scipy.ndimage, radlens' numpy union-find (small box; this one)."""
    import sys

    import scipy.ndimage  # noqa: F401

    m = np.zeros((6, 12, 12), np.uint8)
    m[1:3, 1:4, 1:4] = 1
    m[3, 4, 4] = 1  # touches the first blob by a corner only: same component (26-connectivity)
    m[1:5, 8:11, 8:11] = 1
    image = sitk.GetImageFromArray(np.random.default_rng(0).normal(0, 1, m.shape))
    mask = sitk.GetImageFromArray(m)
    case = _Case(image, mask)
    with_scipy = pyrad.fast_diagnostics(case)
    monkeypatch.delitem(sys.modules, "scipy.ndimage")
    with_sitk = pyrad.fast_diagnostics(case)
    assert with_scipy == with_sitk
    assert with_sitk["diagnostics_Mask-original_VolumeNum"] == 2


def test_shape3d_kernel_equals_pyradiomics_c():
    """The numpy mesh (area, volume) and pruned diameters against pyradiomics' C function
    (``cShape.calculate_coefficients``, which compares every pair of mesh vertices) on random
    masks of every thickness (1..9 voxels per axis), anisotropic spacing, and on a large blob
    where the pruning path (> 256 candidates) runs."""
    from radiomics import cShape

    from radlens.radiomics.kernels import shape3d

    assert shape3d.available(), "pyradiomics' triangle table was not found in its _cshape extension"
    rng = np.random.default_rng(7)
    masks = []
    for _ in range(150):
        r = rng.random(rng.integers(1, 10, 3)) < rng.uniform(0.2, 0.95)
        if r.sum() >= 2:
            masks.append((np.pad(r, 1), rng.uniform(0.3, 3.0, 3)))
    z, y, x = np.mgrid[:14, :40, :52]
    blob = ((z - 7) / 6.0) ** 2 + ((y - 20) / 17.0) ** 2 + ((x - 26) / 23.0) ** 2 < 1 + 0.3 * rng.random((14, 40, 52))
    masks.append((np.pad(blob, 1), np.array([5.0, 0.7, 0.7])))
    for m, sp in masks:
        area0, vol0, diam0 = cShape.calculate_coefficients(m, sp)
        area, vol = shape3d.mesh(m, sp)
        diam = shape3d.diameters(m, sp)
        assert abs(area - area0) <= RTOL * area0
        assert abs(vol - vol0) <= RTOL * abs(vol0) + 1e-12
        np.testing.assert_allclose(diam, diam0, rtol=RTOL, atol=0)


def test_component_count_equals_simpleitk():
    """radlens' numpy component count against SimpleITK's fully connected labelling (what
    pyradiomics' VolumeNum uses) on random 2D and 3D masks, sparse to dense, and 2D blobs/rings."""
    from radlens.radiomics.kernels.components import count_components

    rng = np.random.default_rng(3)
    for i in range(300):
        nd = 2 + i % 2
        r = rng.random(rng.integers(1, 9 if nd == 3 else 25, nd)) < rng.uniform(0.05, 0.8)
        if nd == 2 and i % 4 == 0:  # blobs and rings: the one-run-per-row shortcut and its refusals
            h, w = r.shape
            yy, xx = np.mgrid[:h, :w]
            d = ((yy - h / 2) / (h / 2 + 0.1)) ** 2 + ((xx - w / 2) / (w / 2 + 0.1)) ** 2
            r = (d < rng.uniform(0.2, 1.2)) & ((d > 0.3) if i % 8 == 0 else True)
        cc = sitk.ConnectedComponentImageFilter()
        cc.FullyConnectedOn()
        cc.Execute(sitk.GetImageFromArray(r.astype(np.uint8)))
        assert count_components(r) == cc.GetObjectCount(), f"mask {i} {r.shape}"


def test_percentiles_bit_identical_to_numpy():
    """The first-order percentiles (one sort, numpy's own interpolation arithmetic) against
    ``numpy.percentile`` itself (what pyradiomics calls), bit for bit, on sizes 1..400, ties,
    integers and constants."""
    rng = np.random.default_rng(11)
    for i in range(3000):
        n = int(rng.integers(1, 400))
        x = rng.normal(0, 1, n) * 10 ** rng.uniform(-3, 4)
        if i % 3 == 0:
            x = np.round(x)
        if i % 11 == 0:
            x = np.full(n, 3.7)
        np.testing.assert_array_equal(engine._percentiles(x), np.percentile(x, [10, 25, 50, 75, 90]))
