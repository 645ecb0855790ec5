"""Planted phantom attributes are carried by the radiomic feature class that should carry them."""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from radlens.synth import make_cohort


def _auc(score, y):
    pos, neg = score[y == 1], score[y == 0]
    gt = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    a = gt / (len(pos) * len(neg))
    return max(a, 1 - a)  # direction-free separability


@pytest.fixture(scope="module")
def features(tmp_path_factory):
    from radiomics import featureextractor

    logging.getLogger("radiomics").setLevel(logging.ERROR)
    out = tmp_path_factory.mktemp("rad")
    df = pd.read_csv(make_cohort(out, n_cases=50, image_size=64, seed=11, lesion_free_fraction=0.0))
    ext = featureextractor.RadiomicsFeatureExtractor(force2D=True, binWidth=0.02, additionalInfo=False)
    ext.disableAllFeatures()
    ext.enableFeaturesByName(firstorder=["Mean", "Median"], shape2D=["Elongation", "PixelSurface"],
                             glcm=["InverseVariance", "DifferenceEntropy", "Idm"], glrlm=["RunEntropy"])
    rows = []
    for r in df.itertuples():
        f = ext.execute(sitk.ReadImage(str(out / r.image)), sitk.ReadImage(str(out / r.mask)))
        rows.append({k: float(v) for k, v in f.items()})
    return df, pd.DataFrame(rows)


def _best(F, df, task, cls):
    cols = [c for c in F.columns if c.split("_")[1] == cls]
    return max(_auc(F[c].to_numpy(), df[task].to_numpy()) for c in cols)


def test_each_task_lives_in_its_feature_class(features):
    df, F = features
    # intensity task: first-order features separate it; shape features do not
    assert _best(F, df, "task_intensity", "firstorder") > 0.95
    assert _best(F, df, "task_intensity", "shape2D") < 0.75
    # shape task: shape2D Elongation separates it; first-order does not
    assert _best(F, df, "task_shape", "shape2D") > 0.95
    assert _best(F, df, "task_shape", "firstorder") < 0.75
    # texture task: GLCM separates it better than first-order and shape features
    g = _best(F, df, "task_texture", "glcm")
    assert g > 0.85
    assert g > _best(F, df, "task_texture", "firstorder") + 0.1
    assert _best(F, df, "task_texture", "shape2D") < 0.75


def test_size_recorded_matches_pixel_surface(features):
    df, F = features
    area = F["original_shape2D_PixelSurface"].to_numpy()
    np.testing.assert_allclose(area, df["lesion_area_frac"].to_numpy() * 64 * 64, rtol=1e-6)
    # equivalent radius: area ~ pi r^2 (pixelisation makes small ROIs deviate)
    big = df["lesion_radius"].to_numpy() > 4
    ratio = area[big] / (np.pi * df["lesion_radius"].to_numpy()[big] ** 2)
    assert np.all((ratio > 0.85) & (ratio < 1.15))
