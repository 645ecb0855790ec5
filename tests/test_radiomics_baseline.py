"""`radlens radiomics` reproduces pyradiomics' own reference feature values (its test baseline).

The baseline CSVs (``../shared/data/pyradiomics/baseline/baseline_<class>.csv``) hold one column per
test case; the ``diagnostics_Configuration_*`` rows record the settings used. We rebuild a params
file from those rows, run the command line on the cases' NRRD files and compare every feature.
"""
from __future__ import annotations

import ast
import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from radlens.cli import main

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "pyradiomics"
pytestmark = pytest.mark.skipif(not (SHARED / "baseline").is_dir(),
                                reason=f"pyradiomics reference data not found at {SHARED} (team data in "
                                       "../shared, not part of a clone)")
CLASSES = ("firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm", "shape")
CASES = ("brain1", "breast1")
#: brain1's 3D mesh features in the baseline were computed by an older pyradiomics (2.0.1); the
#: current marching-cubes mesh differs by < 0.1 % on this two-component ROI. pyradiomics 3.1.4
#: itself gives exactly radlens' values (checked below), so only these get a looser tolerance.
MESH = {"original_shape_SurfaceArea", "original_shape_MeshVolume", "original_shape_Sphericity",
        "original_shape_SurfaceVolumeRatio"}


def _baseline():
    values, settings, types = {}, {}, {}
    for cls in CLASSES:
        rows = list(csv.reader(open(SHARED / "baseline" / f"baseline_{cls}.csv")))
        header = rows[0]
        for case in CASES:
            j = header.index(case)
            for r in rows[1:]:
                if r[0] == "diagnostics_Configuration_Settings":
                    settings.setdefault(case, {})[cls] = ast.literal_eval(r[j])
                elif r[0] == "diagnostics_Configuration_EnabledImageTypes":
                    types.setdefault(case, {})[cls] = ast.literal_eval(r[j])
                elif not r[0].startswith(("diagnostics_", "general_info")):
                    values.setdefault(case, {})[r[0]] = float(r[j])
    return values, settings, types


def test_reproduces_pyradiomics_baseline(tmp_path):
    values, settings, types = _baseline()
    # every class and case was computed with the same settings and image types
    s0 = settings[CASES[0]][CLASSES[0]]
    assert all(s == s0 for per in settings.values() for s in per.values())
    assert all(t == {"Original": {}} for per in types.values() for t in per.values())
    s0 = {k: v for k, v in s0.items() if k != "additionalInfo"}
    assert s0["binWidth"] == 25 and s0["interpolator"] is None
    params = tmp_path / "baseline.yaml"
    params.write_text(yaml.safe_dump({"imageType": {"Original": {}}, "featureClass": {c: None for c in CLASSES},
                                      "setting": s0}))
    pd.DataFrame([{"case_id": c, "image": str(SHARED / f"{c}_image.nrrd"), "mask": str(SHARED / f"{c}_label.nrrd")}
                  for c in CASES]).to_csv(tmp_path / "m.csv", index=False)
    out = tmp_path / "r.parquet"
    assert main(["radiomics", str(tmp_path / "m.csv"), "--params", str(params), "--out", str(out),
                 "--no-progress"]) == 0
    got = pd.read_parquet(out).set_index("case_id")
    n = 0
    for case in CASES:
        ref = values[case]
        assert set(ref) <= set(got.columns), sorted(set(ref) - set(got.columns))
        for name, b in ref.items():
            rtol = 1e-3 if (case == "brain1" and name in MESH) else 1e-9
            np.testing.assert_allclose(got.loc[case, name], b, rtol=rtol, atol=1e-12, err_msg=f"{case} {name}")
            n += 1
    assert n > 200  # ~107 features x 2 cases

    # the shipped radiomics_baseline.yaml is that same configuration
    from radiomics.featureextractor import RadiomicsFeatureExtractor

    from radlens.radiomics.extract import DEFAULT_PARAMS

    shipped = RadiomicsFeatureExtractor(str(DEFAULT_PARAMS.with_name("radiomics_baseline.yaml")))
    assert {k: v for k, v in shipped.settings.items() if k in s0} == s0
    # and plain pyradiomics (this version) gives radlens' numbers, MESH included (within 1e-9
    # relative from radlens' engine: first order and texture; shape bit for bit except the mesh
    # sums, whose triangles radlens adds in another order: within 1e-12)
    plain = RadiomicsFeatureExtractor(str(params)).execute(str(SHARED / "brain1_image.nrrd"),
                                                          str(SHARED / "brain1_label.nrrd"))
    for k, v in plain.items():
        if not k.startswith("diagnostics_"):
            if not k.startswith("original_shape"):
                np.testing.assert_allclose(got.loc["brain1", k], float(v), rtol=1e-9, atol=0, err_msg=k)
            elif k in MESH:
                np.testing.assert_allclose(got.loc["brain1", k], float(v), rtol=1e-12, atol=0, err_msg=k)
            else:
                assert got.loc["brain1", k] == float(v), k
