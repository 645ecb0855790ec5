"""radlens' own feature engine for the hottest pyradiomics classes, at parity with pyradiomics.

Profiling pyradiomics (3.1.4) on 2D phantom ROIs (radlens path: ROI already cropped, no
``additionalInfo``) put GLCM first (about a third of a ROI's CPU time) and first order second:
both compute every feature in its own method, each with a few numpy calls on tiny arrays
(``nanmean``, ``nanpercentile`` through ``apply_along_axis``, one boolean-mask sum per grey-level
sum/difference), and re-discretise the ROI per class with a Python ``min()`` over its voxels.
This module computes all features of a class in one pass from shared intermediates:

* discretisation: pyradiomics' own bin edges (:func:`bin_edges`, same arithmetic and dtypes) and
  ``numpy.digitize``;
* GLCM: the co-occurrence matrix from pyradiomics' own C extension (``radiomics._cmatrices``,
  the same call pyradiomics makes), then every feature from its formulas in pyradiomics, with
  grey-level sums and differences as one matrix product;
* first order: one sorted copy of the ROI's intensities for every percentile.

Values equal pyradiomics' to 1e-9 relative (sums may be added in another order); the parity
tests compare every feature with ``RadiomicsFeatureExtractor.execute`` on pyradiomics' real test
cases and on phantoms. Only the settings it reproduces are taken (:func:`engine_classes`); any
other class or setting is computed by pyradiomics itself, and the diagnostics say which
(``radlens_engine``).
"""
from __future__ import annotations

import logging
from typing import Any, Mapping

import numpy as np

log = logging.getLogger(__name__)

#: classes the engine computes, in the form pyradiomics names them
CLASSES = ("firstorder", "glcm")
EPS = np.spacing(1)


def _names(cls: str) -> list[str]:
    """Non-deprecated feature names of a pyradiomics class, in the order it computes them."""
    from radiomics import getFeatureClasses

    return [n for n, dep in getFeatureClasses()[cls].getFeatureNames().items() if not dep]


_NAMES: dict[str, list[str]] = {}


def feature_names(cls: str) -> list[str]:
    if cls not in _NAMES:
        _NAMES[cls] = _names(cls)
    return _NAMES[cls]


def engine_classes(settings: Mapping[str, Any], enabled: Mapping[str, Any], image_types: Mapping[str, Any]) -> tuple:
    """The enabled classes the engine computes for these settings (the others stay pyradiomics').

    Requires the Original image only (no filter), no resampling, normalisation, resegmentation or
    voxel-based extraction; GLCM without ``weightingNorm``. A class with an explicit feature list
    is taken only when every name is a current (non-deprecated) feature of it.
    """
    if set(image_types) != {"Original"} or settings.get("voxelBased") or settings.get("normalize"):
        return ()
    if settings.get("resampledPixelSpacing") is not None or settings.get("resegmentRange") is not None:
        return ()
    out = []
    for cls in CLASSES:
        if cls not in enabled:
            continue
        names = enabled[cls]
        if names and not set(names) <= set(feature_names(cls)):
            continue
        if cls == "glcm" and settings.get("weightingNorm") is not None:
            continue
        out.append(cls)
    return tuple(out)


# --------------------------------------------------------------------------- discretisation
def bin_edges(values: np.ndarray, settings: Mapping[str, Any]):
    """pyradiomics' ``imageoperations.getBinEdges`` (same arithmetic, same dtypes)."""
    bin_count = settings.get("binCount")
    if bin_count is not None:
        edges = np.histogram(values, bin_count)[1]
        edges[-1] += 1
        return edges
    width = settings.get("binWidth", 25)
    minimum, maximum = values.min(), values.max()  # numpy scalars of the image dtype, as min()/max() give
    low = minimum - (minimum % width)
    edges = np.arange(low, maximum + 2 * width, width)
    if len(edges) == 1:
        edges = [edges[0] - .5, edges[0] + .5]
    return edges


def discretise(image: np.ndarray, roi: np.ndarray, settings: Mapping[str, Any]) -> np.ndarray:
    """pyradiomics' ``binImage``: int grey levels inside the ROI (1..), 0 outside."""
    out = np.zeros(image.shape, dtype="int")
    vals = image[roi]
    out[roi] = np.digitize(vals, bin_edges(vals, settings))
    return out


# --------------------------------------------------------------------------- first order
def firstorder(image: np.ndarray, roi: np.ndarray, binned: np.ndarray, spacing, settings) -> dict[str, float]:
    """pyradiomics' first-order features of one ROI (segment-based)."""
    x = image[roi].astype("float")
    shift = settings.get("voxelArrayShift", 0)
    _, counts = np.unique(binned[roi], return_counts=True)
    p = counts.astype("float") / float(counts.sum())
    n = x.size
    mean = np.mean(x)
    dev = x - mean
    m2 = np.mean(dev ** 2)
    m3 = np.mean(dev ** 3)
    m4 = np.mean(dev ** 4)
    p10, p25, p75, p90 = np.percentile(x, [10, 25, 75, 90])
    energy = np.sum((x + shift) ** 2)
    sel = x[(x >= p10) & (x <= p90)]
    m2d = m2 if m2 != 0 else 1.0
    f = {
        "10Percentile": p10, "90Percentile": p90, "Energy": energy,
        "Entropy": -1.0 * np.sum(p * np.log2(p + EPS)),
        "InterquartileRange": p75 - p25,
        "Kurtosis": m4 / m2d ** 2.0,
        "Maximum": x.max(),
        "MeanAbsoluteDeviation": np.mean(np.absolute(dev)),
        "Mean": mean, "Median": np.median(x), "Minimum": x.min(), "Range": x.max() - x.min(),
        "RobustMeanAbsoluteDeviation": np.mean(np.absolute(sel - np.mean(sel))),
        "RootMeanSquared": np.sqrt(energy / float(n)) if n else 0.0,
        "Skewness": m3 / m2d ** 1.5,
        "TotalEnergy": energy * np.multiply.reduce(spacing),
        "Uniformity": np.sum(p ** 2),
        "Variance": np.std(x) ** 2,
    }
    return f


# --------------------------------------------------------------------------- GLCM
def glcm_matrix(binned: np.ndarray, roi: np.ndarray, settings) -> tuple[np.ndarray, np.ndarray, int]:
    """Normalised GLCM ``(levels, levels, angles)`` on the grey levels present, as pyradiomics
    builds it (its C extension, symmetrical, empty angles removed), the levels and Ng."""
    from radiomics import cMatrices

    gl = np.unique(binned[roi])
    ng = int(np.max(gl))
    P, _ = cMatrices.calculate_glcm(binned, roi, np.array(settings.get("distances", [1])), ng,
                                    settings.get("force2D", False), settings.get("force2Ddimension", 0))
    P = P[0][np.ix_(gl - 1, gl - 1)]
    if settings.get("symmetricalGLCM", True):
        P = P + np.transpose(P, (1, 0, 2))
    s = P.sum((0, 1))
    if P.shape[2] > 1:
        keep = s != 0
        if not keep.all():
            P, s = P[:, :, keep], s[keep]
    s = s.astype(float)
    s[s == 0] = np.nan
    return P / s[None, None, :], gl, ng


def glcm(binned: np.ndarray, roi: np.ndarray, settings) -> dict[str, float]:
    """pyradiomics' GLCM features of one ROI (segment-based, no weighting)."""
    P, gl, ng = glcm_matrix(binned, roi, settings)
    n, _, A = P.shape
    g = gl.astype("float")
    i, j = g[:, None, None], g[None, :, None]
    px = P.sum(1, keepdims=True)  # (n, 1, A)
    py = P.sum(0, keepdims=True)  # (1, n, A)
    ux = np.sum(i * P, (0, 1))
    uy = np.sum(j * P, (0, 1))
    flat = P.reshape(n * n, A)
    ij_sum = (g[:, None] + g[None, :]).ravel()
    ij_diff = np.abs(g[:, None] - g[None, :]).ravel()
    k_sum = np.arange(2, ng * 2 + 1, dtype="float")
    k_diff = np.arange(0, ng, dtype="float")
    p_add = (k_sum[:, None] == ij_sum[None, :]).astype(float) @ flat  # (2 Ng - 1, A)
    p_sub = (k_diff[:, None] == ij_diff[None, :]).astype(float) @ flat  # (Ng, A)
    HXY = -np.sum(P * np.log2(P + EPS), (0, 1))
    mean = np.nanmean
    f: dict[str, Any] = {}
    f["Autocorrelation"] = mean(np.sum(P * (i * j), (0, 1)))
    f["JointAverage"] = ux.mean()
    c = (i + j) - ux - uy
    f["ClusterProminence"] = mean(np.sum(P * c ** 4, (0, 1)))
    f["ClusterShade"] = mean(np.sum(P * c ** 3, (0, 1)))
    f["ClusterTendency"] = mean(np.sum(P * c ** 2, (0, 1)))
    f["Contrast"] = mean(np.sum(P * (np.abs(i - j) ** 2), (0, 1)))
    di, dj = i - ux, j - uy
    sigx = np.sum(P * di ** 2, (0, 1)) ** 0.5
    sigy = np.sum(P * dj ** 2, (0, 1)) ** 0.5
    corm = np.sum(P * di * dj, (0, 1))
    corr = corm / (sigx * sigy + EPS)
    corr[sigx * sigy == 0] = 1
    f["Correlation"] = mean(corr)
    kd = k_diff[:, None]
    diffavg = np.sum(kd * p_sub, 0)
    f["DifferenceAverage"] = mean(diffavg)
    f["DifferenceEntropy"] = mean(-np.sum(p_sub * np.log2(p_sub + EPS), 0))
    f["DifferenceVariance"] = mean(np.sum(p_sub * (kd - diffavg[None, :]) ** 2, 0))
    f["Id"] = mean(np.sum(p_sub / (1 + kd), 0))
    f["Idm"] = mean(np.sum(p_sub / (1 + kd ** 2), 0))
    f["Idmn"] = mean(np.sum(p_sub / (1 + (kd ** 2) / (ng ** 2)), 0))
    f["Idn"] = mean(np.sum(p_sub / (1 + (kd / ng)), 0))
    pxy = px * py
    HX = -np.sum(px * np.log2(px + EPS), (0, 1))
    HY = -np.sum(py * np.log2(py + EPS), (0, 1))
    HXY1 = -np.sum(P * np.log2(pxy + EPS), (0, 1))
    HXY2 = -np.sum(pxy * np.log2(pxy + EPS), (0, 1))
    div = np.fmax(HX, HY)
    imc1 = HXY - HXY1
    imc1[div != 0] /= div[div != 0]
    imc1[div == 0] = 0
    f["Imc1"] = mean(imc1)
    imc2 = (1 - np.e ** (-2 * (HXY2 - HXY))) ** 0.5
    imc2[HXY2 == HXY] = 0
    f["Imc2"] = mean(imc2)
    f["InverseVariance"] = mean(np.sum(p_sub[1:, :] / k_diff[1:, None] ** 2, 0))
    f["JointEnergy"] = mean(np.sum(P ** 2, (0, 1)))
    f["JointEntropy"] = mean(HXY)
    f["MCC"] = _mcc(P, px, py)
    f["MaximumProbability"] = mean(np.amax(P, (0, 1)))
    f["SumAverage"] = mean(np.sum(k_sum[:, None] * p_add, 0))
    f["SumEntropy"] = mean(-np.sum(p_add * np.log2(p_add + EPS), 0))
    f["SumSquares"] = mean(np.sum(P * di ** 2, (0, 1)))
    return f


def _mcc(P, px, py):
    n = P.shape[0]
    if n < 2:
        return 1  # flat region (pyradiomics returns the int 1)
    try:
        # Q[i, j] = sum_k P[i, k] P[j, k] / (px[i] py[k] + eps), per angle
        Q = np.einsum("ika,jka->aij", P / (px * py + EPS), P)
        ev = np.linalg.eigvals(Q)
        ev.sort()
        return np.nanmean(np.sqrt(ev[:, -2])).real
    except Exception:  # pyradiomics: a feature that raises is NaN
        return np.nan


# --------------------------------------------------------------------------- one ROI
def compute(image, mask, settings: Mapping[str, Any], classes: Mapping[str, Any]) -> dict[str, float]:
    """Features ``original_<class>_<name>`` of the engine's ``classes`` on an image and ROI
    already cropped to the ROI's box (SimpleITK images, ROI value 1), in pyradiomics' order.

    ``classes`` maps class name to its feature list (None/empty: all current features).
    """
    import SimpleITK as sitk

    arr = sitk.GetArrayFromImage(image)
    roi = sitk.GetArrayViewFromImage(mask) == 1
    binned = discretise(arr, roi, settings)
    out: dict[str, float] = {}
    for cls, names in classes.items():
        if cls == "firstorder":
            vals = firstorder(arr, roi, binned, image.GetSpacing(), settings)
        elif cls == "glcm":
            vals = glcm(binned, roi, settings)
        else:  # pragma: no cover - guarded by engine_classes
            raise ValueError(f"engine does not compute {cls!r}")
        for name in (names or feature_names(cls)):
            out[f"original_{cls}_{name}"] = float(vals[name])
    return out
