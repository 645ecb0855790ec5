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
* first order: one call for every percentile;
* GLRLM, GLSZM, GLDM, NGTDM: pyradiomics' C matrices, then all features of a class at once
  (one ``nanmean`` over angles for GLRLM).

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

from radlens.radiomics.kernels import shape3d

log = logging.getLogger(__name__)

#: classes the engine computes, in the form pyradiomics names them
CLASSES = ("shape", "shape2D", "firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm")
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
        if cls in ("glcm", "glrlm") and settings.get("weightingNorm") is not None:
            continue
        if cls == "shape2D" and settings.get("force2D", False):  # 2D shape of 3D slices: pyradiomics'
            continue
        out.append(cls)
    return tuple(out)


# --------------------------------------------------------------------------- discretisation
def bin_edges(values: np.ndarray, settings: Mapping[str, Any]):
    """pyradiomics' ``imageoperations.getBinEdges`` (same arithmetic, same dtypes)."""
    bin_count = settings.get("binCount")
    if bin_count is not None:  # numpy.histogram's edges (its arithmetic: float min/max, linspace)
        lo, hi = float(values.min()), float(values.max())
        if lo == hi:
            lo, hi = lo - 0.5, hi + 0.5
        edges = np.linspace(lo, hi, int(bin_count) + 1, endpoint=True)
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
    out[roi] = np.searchsorted(bin_edges(vals, settings), vals, side="right")  # numpy.digitize's own call
    return out


# --------------------------------------------------------------------------- first order
def firstorder(image: np.ndarray, roi: np.ndarray, binned: np.ndarray, spacing, settings) -> dict[str, float]:
    """pyradiomics' first-order features of one ROI (segment-based).

    Means as ``add.reduce / n`` (what ``numpy.mean`` computes for float64), the variance as
    ``numpy.std(x) ** 2`` computes it, every percentile and the median in one call (the median
    as the 50th percentile: the same value up to its last bit)."""
    x = image[roi].astype("float")
    shift = settings.get("voxelArrayShift", 0)
    counts = np.bincount(binned[roi])
    counts = counts[counts > 0]
    p = counts / float(counts.sum())
    n = x.size
    add = np.add.reduce
    mean = add(x) / n
    dev = x - mean
    d2 = dev * dev
    m2 = add(d2) / n
    m3 = add(dev ** 3) / n
    m4 = add(d2 * d2) / n
    p10, p25, p50, p75, p90 = np.percentile(x, [10, 25, 50, 75, 90]).tolist()
    energy = add((x + shift) ** 2)
    sel = x[(x >= p10) & (x <= p90)]
    m2d = m2 if m2 != 0 else 1.0
    hi, lo = x.max(), x.min()
    f = {
        "10Percentile": p10, "90Percentile": p90, "Energy": energy,
        "Entropy": -1.0 * add(p * np.log2(p + EPS)),
        "InterquartileRange": p75 - p25,
        "Kurtosis": m4 / m2d ** 2.0,
        "Maximum": hi,
        "MeanAbsoluteDeviation": add(np.absolute(dev)) / n,
        "Mean": mean, "Median": p50, "Minimum": lo, "Range": hi - lo,
        "RobustMeanAbsoluteDeviation": add(np.absolute(sel - add(sel) / sel.size)) / sel.size,
        "RootMeanSquared": np.sqrt(energy / float(n)) if n else 0.0,
        "Skewness": m3 / m2d ** 1.5,
        "TotalEnergy": energy * np.multiply.reduce(spacing),
        "Uniformity": add(p ** 2),
        "Variance": np.sqrt(m2) ** 2,
    }
    return f


# --------------------------------------------------------------------------- GLCM
def glcm_matrix(binned: np.ndarray, roi: np.ndarray, settings, gl=None) -> tuple[np.ndarray, np.ndarray, int]:
    """Normalised GLCM ``(levels, levels, angles)`` on the grey levels present, as pyradiomics
    builds it (its C extension, symmetrical, empty angles removed), the levels and Ng."""
    from radiomics import cMatrices

    gl = np.unique(binned[roi]) if gl is None else gl
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


def _angle_mean(rows: dict[str, np.ndarray]) -> dict[str, float]:
    """pyradiomics' ``nanmean`` over angles of every feature at once (rows: name -> (angles,))."""
    V = np.stack(list(rows.values()))
    if np.isnan(V).any():
        with np.errstate(all="ignore"):
            m = np.nanmean(V, axis=1)
    else:  # nanmean without NaN: the same sum and division
        m = np.add.reduce(V, 1) / V.shape[1]
    return dict(zip(rows, m.tolist()))


def glcm(binned: np.ndarray, roi: np.ndarray, settings, gl=None) -> dict[str, float]:
    """pyradiomics' GLCM features of one ROI (segment-based, no weighting).

    Per angle on the matrix's non-empty cells only (a small ROI's GLCM is mostly zeros; the
    empty cells add exact zeros), laid out (angles, cells) so every sum runs along contiguous
    memory; weighted sums of the same cells are one matrix product. The means ``ux``/``uy``, HXY2
    and MCC use the whole matrix, as pyradiomics sums them.
    """
    P, gl, ng = glcm_matrix(binned, roi, settings, gl)
    n, _, A = P.shape
    g = gl.astype("float")
    pxc = P.sum(1)  # (n, A)
    pyc = P.sum(0)
    px, py = pxc.T, pyc.T  # (A, n)
    flat = P.reshape(n * n, A)
    nz = np.flatnonzero(flat.any(1))  # NaN (an empty single angle) counts as non-empty
    Pk = np.ascontiguousarray(flat[nz].T)  # (A, K)
    ri, rj = nz // n, nz % n
    gi, gj = g[ri], g[rj]
    ux = np.add.reduce(g[:, None, None] * P, (0, 1))  # dense, as pyradiomics sums them: the centred
    uy = np.add.reduce(g[None, :, None] * P, (0, 1))  # moments below are sensitive to their last bits
    k_sum = np.arange(2, ng * 2 + 1, dtype="float")
    k_diff = np.arange(0, ng, dtype="float")
    # p_add / p_sub: probabilities of each grey-level sum (2..2Ng) / difference (0..Ng-1), per angle
    rows = (np.arange(A) * (2 * ng - 1))[:, None]
    isum = (gi + gj).astype(np.int64) - 2
    idiff = np.abs(gi - gj).astype(np.int64)
    p_add = np.bincount((rows + isum[None, :]).ravel(), Pk.ravel(), A * (2 * ng - 1)).reshape(A, 2 * ng - 1)
    p_sub = np.bincount(((np.arange(A) * ng)[:, None] + idiff[None, :]).ravel(), Pk.ravel(), A * ng).reshape(A, ng)
    HXY = -np.add.reduce(Pk * np.log2(Pk + EPS), 1)
    v: dict[str, Any] = {}  # per-angle values, averaged over angles at the end
    lin = Pk @ np.stack([gi * gj, np.abs(gi - gj) ** 2], 1)  # (A, 2)
    v["Autocorrelation"] = lin[:, 0]
    c = (gi + gj)[None, :] - ux[:, None] - uy[:, None]
    c2 = c ** 2
    v["ClusterProminence"] = np.add.reduce(Pk * (c2 * c2), 1)
    v["ClusterShade"] = np.add.reduce(Pk * (c2 * c), 1)
    v["ClusterTendency"] = np.add.reduce(Pk * c2, 1)
    v["Contrast"] = lin[:, 1]
    di, dj = gi[None, :] - ux[:, None], gj[None, :] - uy[:, None]
    ss = np.add.reduce(Pk * di ** 2, 1)
    sigx = ss ** 0.5
    sigy = np.add.reduce(Pk * dj ** 2, 1) ** 0.5
    corm = np.add.reduce(Pk * di * dj, 1)
    corr = corm / (sigx * sigy + EPS)
    corr[sigx * sigy == 0] = 1
    v["Correlation"] = corr
    kd = k_diff[None, :]
    # DifferenceAverage, Id, Idm, Idmn, Idn, InverseVariance: weighted sums of p_sub
    inv = np.zeros(ng)
    inv[1:] = 1.0 / k_diff[1:] ** 2
    wsub = p_sub @ np.stack([k_diff, 1 / (1 + k_diff), 1 / (1 + k_diff ** 2), 1 / (1 + (k_diff ** 2) / (ng ** 2)),
                             1 / (1 + (k_diff / ng)), inv], 1)  # (A, 6)
    diffavg = wsub[:, 0]
    v["DifferenceAverage"] = diffavg
    v["DifferenceEntropy"] = -np.add.reduce(p_sub * np.log2(p_sub + EPS), 1)
    v["DifferenceVariance"] = np.add.reduce(p_sub * (kd - diffavg[:, None]) ** 2, 1)
    v["Id"], v["Idm"], v["Idmn"], v["Idn"] = wsub[:, 1], wsub[:, 2], wsub[:, 3], wsub[:, 4]
    HX = -np.add.reduce(px * np.log2(px + EPS), 1)
    HY = -np.add.reduce(py * np.log2(py + EPS), 1)
    HXY1 = -np.add.reduce(Pk * np.log2(px[:, ri] * py[:, rj] + EPS), 1)
    pxy = px[:, :, None] * py[:, None, :]
    HXY2 = -np.add.reduce(pxy * np.log2(pxy + EPS), (1, 2))
    div = np.fmax(HX, HY)
    imc1 = HXY - HXY1
    imc1[div != 0] /= div[div != 0]
    imc1[div == 0] = 0
    v["Imc1"] = imc1
    imc2 = (1 - np.e ** (-2 * (HXY2 - HXY))) ** 0.5
    imc2[HXY2 == HXY] = 0
    v["Imc2"] = imc2
    v["InverseVariance"] = wsub[:, 5]
    v["JointEnergy"] = np.add.reduce(Pk ** 2, 1)
    v["JointEntropy"] = HXY
    v["MaximumProbability"] = np.max(Pk, 1)
    v["SumAverage"] = p_add @ k_sum
    v["SumEntropy"] = -np.add.reduce(p_add * np.log2(p_add + EPS), 1)
    v["SumSquares"] = ss
    f: dict[str, Any] = _angle_mean(v)
    f["JointAverage"] = ux.mean()
    f["MCC"] = _mcc(P, pxc[:, None, :], pyc[None, :, :])
    return f


def _mcc(P, px, py):
    n = P.shape[0]
    if n < 2:
        return 1  # flat region (pyradiomics returns the int 1)
    try:
        # Q[i, j] = sum_k P[i, k] P[j, k] / (px[i] py[k] + eps), per angle
        Q = (P / (px * py + EPS)).transpose(2, 0, 1) @ P.transpose(2, 1, 0)
        fast = _mcc_symmetric(Q, px[:, 0, :].T)
        if fast is not None:
            return fast
        ev = np.linalg.eigvals(Q)
        ev.sort()
        return np.nanmean(np.sqrt(ev[:, -2])).real
    except Exception:  # pyradiomics: a feature that raises is NaN
        return np.nan


def _mcc_symmetric(Q, px):
    """MCC from pyradiomics' ``Q`` (angles, n, n) by a symmetric eigensolver, or None where the
    result could differ from its general solver's by more than 1e-11 relative.

    Without pyradiomics' ``eps``, ``M = D^½ Q D^-½`` (``D = diag(px)``) is symmetric: ``Q`` is
    similar to it, so they share eigenvalues. (A grey level without neighbours at an angle has
    ``px = 0`` and an all-zero row and column in ``Q``: its scale is irrelevant, 1 is used.) With
    ``eps``, ``M = S + A`` with ``S`` symmetric and ``A`` a tiny antisymmetric part; by Bauer-Fike
    (``S`` is normal) every eigenvalue of ``M`` lies within ``‖A‖₂ ≤ ‖A‖_F`` of one of ``S``.
    Taken when ``‖A‖_F`` is below 1e-11 times the second-largest eigenvalue of every angle (and
    that eigenvalue is positive); the symmetric solver is ~4x faster than the general one.
    """
    r = np.sqrt(np.where(px > 0, px, 1.0))  # (angles, n)
    M = Q * (r[:, :, None] / r[:, None, :])
    S = (M + M.transpose(0, 2, 1)) * 0.5
    asym = np.sqrt(np.add.reduce((M - S) ** 2, (1, 2)))
    lam = np.linalg.eigvalsh(S)[:, -2]  # ascending per angle: the second largest
    if not ((lam > 0).all() and (asym <= 1e-11 * lam).all()):
        return None
    return float(np.mean(np.sqrt(lam)))


# --------------------------------------------------------------------------- ROI checks and shape
def check_roi(roi: np.ndarray, settings: Mapping[str, Any]) -> None:
    """pyradiomics' ``checkMask`` on a ROI cropped to its box (same errors, same messages)."""
    if not roi.any():
        raise ValueError("Label (%g) not present in mask" % 1)
    ndims = int(np.add.reduce(np.array(roi.shape) > 1, None))
    min_dims = settings.get("minimumROIDimensions", 2)
    if ndims == 0:
        raise ValueError("mask only contains 1 segmented voxel! Cannot extract features for a single voxel.")
    if ndims < min_dims:
        raise ValueError("mask has too few dimensions (number of dimensions %d, minimum required %d)"
                         % (ndims, min_dims))
    min_size = settings.get("minimumROISize", None)
    if min_size is not None:
        size = int(roi.sum())
        if size <= min_size:
            raise ValueError("Size of the ROI is too small (minimum size: %g, ROI size: %g" % (min_size, size))


def _axes(coords, spacing) -> np.ndarray:
    """Sorted eigenvalues of the ROI's physical-coordinate covariance (pyradiomics' shape axes)."""
    np_ = len(coords[0])
    xyz = np.array(coords, dtype="int").transpose((1, 0)) * spacing[None, :]
    xyz -= np.mean(xyz, axis=0)
    xyz /= np.sqrt(np_)
    ev = np.linalg.eigvals(np.dot(xyz.T.copy(), xyz))
    ev[(ev < 0) & (ev > -1e-10)] = 0
    ev.sort()
    return ev


def _root4(ev, k):
    return np.nan if ev[k] < 0 else np.sqrt(ev[k]) * 4


def shape(roi: np.ndarray, spacing_xyz) -> dict[str, float]:
    """pyradiomics' 3D shape features (its C marching cubes and diameters)."""
    from radiomics import cShape

    sp = np.array(spacing_xyz[::-1], dtype=np.float64)
    m = np.pad(roi, 1)
    coords = np.where(m)
    if shape3d.available():  # numpy mesh + pruned diameters (pyradiomics' C compares all vertex pairs)
        area, vol = shape3d.mesh(m, sp)
        diam = shape3d.diameters(m, sp)
    else:
        area, vol, diam = cShape.calculate_coefficients(m, sp)
    ev = _axes(coords, sp)
    z, y, x = sp
    f = {"Elongation": np.nan if ev[1] < 0 or ev[2] < 0 else np.sqrt(ev[1] / ev[2]),
         "Flatness": np.nan if ev[0] < 0 or ev[2] < 0 else np.sqrt(ev[0] / ev[2]),
         "LeastAxisLength": _root4(ev, 0), "MajorAxisLength": _root4(ev, 2),
         "Maximum2DDiameterColumn": diam[1], "Maximum2DDiameterRow": diam[2], "Maximum2DDiameterSlice": diam[0],
         "Maximum3DDiameter": diam[3], "MeshVolume": vol, "MinorAxisLength": _root4(ev, 1),
         "Sphericity": (36 * np.pi * vol ** 2) ** (1.0 / 3.0) / area, "SurfaceArea": area,
         "SurfaceVolumeRatio": area / vol, "VoxelVolume": len(coords[0]) * (z * x * y)}
    return f


def shape2d(roi: np.ndarray, spacing_xy) -> dict[str, float]:
    """pyradiomics' 2D shape features of a 2D ROI (its C perimeter, surface and diameter)."""
    from radiomics import cShape

    sp = np.array(spacing_xy[::-1])
    m = np.pad(roi, 1)
    coords = np.where(m)
    perim, surf, diam = cShape.calculate_coefficients2D(m, sp)
    ev = _axes(coords, sp)
    y, x = sp
    return {"Elongation": np.nan if ev[0] < 0 or ev[1] < 0 else np.sqrt(ev[0] / ev[1]),
            "MajorAxisLength": _root4(ev, 1), "MaximumDiameter": diam, "MeshSurface": surf,
            "MinorAxisLength": _root4(ev, 0), "Perimeter": perim, "PerimeterSurfaceRatio": perim / surf,
            "PixelSurface": len(coords[0]) * (x * y), "Sphericity": (2 * np.sqrt(np.pi * surf)) / perim}


# --------------------------------------------------------------------------- GLRLM, GLSZM, GLDM, NGTDM
def _present(P: np.ndarray, gl: np.ndarray) -> np.ndarray:
    """Rows of the grey levels present in the ROI (pyradiomics deletes the empty ones)."""
    return P[0][gl - 1]


def glrlm(binned, roi, settings, gl, ng) -> dict[str, float]:
    """pyradiomics' GLRLM features (segment-based, no weighting), laid out (angles, levels, runs):
    sums along contiguous memory, the weighted sums of the matrix as matrix products."""
    from radiomics import cMatrices

    P, _ = cMatrices.calculate_glrlm(binned, roi, ng, np.max(binned.shape), settings.get("force2D", False),
                                     settings.get("force2Ddimension", 0))
    P = _present(P, gl)  # (levels, run lengths, angles)
    add = np.add.reduce
    Nr = add(P, (0, 1))
    if P.shape[2] > 1 and not (Nr != 0).all():
        keep = Nr != 0
        P, Nr = P[:, :, keep], Nr[keep]
    Nr = Nr.astype(float)
    Nr[Nr == 0] = np.nan
    keep = add(P, (0, 2)) != 0  # run lengths that occur (pyradiomics drops the others)
    T = np.ascontiguousarray(P[:, keep].transpose(2, 0, 1), dtype=np.float64)  # (A, L, R)
    iv = gl.astype(float)
    jv = np.arange(1, P.shape[1] + 1, dtype=np.float64)[keep]
    pr = add(T, 1)  # (A, R)
    pg = add(T, 2)  # (A, L)
    i2, j2 = iv ** 2, jv ** 2
    wr = pr @ np.stack([1 / j2, j2, jv], 1)  # (A, 3)
    wg = pg @ np.stack([1 / i2, i2], 1)  # (A, 2)
    wp = np.einsum("alk,lm->amk", T @ np.stack([1 / j2, j2], 1), np.stack([1 / i2, i2], 1))  # (A, i, j)
    v: dict[str, Any] = {}
    v["ShortRunEmphasis"] = wr[:, 0] / Nr
    v["LongRunEmphasis"] = wr[:, 1] / Nr
    gln = add(pg * pg, 1)
    v["GrayLevelNonUniformity"] = gln / Nr
    v["GrayLevelNonUniformityNormalized"] = gln / (Nr ** 2)
    rln = add(pr * pr, 1)
    v["RunLengthNonUniformity"] = rln / Nr
    v["RunLengthNonUniformityNormalized"] = rln / Nr ** 2
    v["RunPercentage"] = Nr / wr[:, 2]
    pgn = pg / Nr[:, None]
    u_i = pgn @ iv
    v["GrayLevelVariance"] = add(pgn * (iv[None, :] - u_i[:, None]) ** 2, 1)
    prn = pr / Nr[:, None]
    u_j = prn @ jv
    v["RunVariance"] = add(prn * (jv[None, :] - u_j[:, None]) ** 2, 1)
    pn = T / Nr[:, None, None]
    v["RunEntropy"] = -add(pn * np.log2(pn + EPS), (1, 2))
    v["LowGrayLevelRunEmphasis"] = wg[:, 0] / Nr
    v["HighGrayLevelRunEmphasis"] = wg[:, 1] / Nr
    v["ShortRunLowGrayLevelEmphasis"] = wp[:, 0, 0] / Nr
    v["ShortRunHighGrayLevelEmphasis"] = wp[:, 1, 0] / Nr
    v["LongRunLowGrayLevelEmphasis"] = wp[:, 0, 1] / Nr
    v["LongRunHighGrayLevelEmphasis"] = wp[:, 1, 1] / Nr
    return _angle_mean(v)


def _zone_features(P, iv, jv, Nz, prefix) -> dict[str, Any]:
    """GLSZM / GLDM features shared by formula: P (levels, sizes), Nz the zone (voxel) count."""
    ps = np.add.reduce(P, 0)
    pg = np.add.reduce(P, 1)
    i2, j2 = (iv ** 2)[:, None], (jv ** 2)[None, :]
    f: dict[str, Any] = {}
    f["small"] = np.add.reduce(ps / (jv ** 2), None) / Nz
    f["large"] = np.add.reduce(ps * (jv ** 2), None) / Nz
    f["GrayLevelNonUniformity"] = np.add.reduce(pg ** 2, None) / Nz
    f["GrayLevelNonUniformityNormalized"] = np.add.reduce(pg ** 2, None) / Nz ** 2
    f["sizeNU"] = np.add.reduce(ps ** 2, None) / Nz
    f["sizeNUN"] = np.add.reduce(ps ** 2, None) / Nz ** 2
    pgn = pg / Nz
    u_i = np.add.reduce(pgn * iv, None)
    f["GrayLevelVariance"] = np.add.reduce(pgn * (iv - u_i) ** 2, None)
    psn = ps / Nz
    u_j = np.add.reduce(psn * jv, None)
    f["sizeVar"] = np.add.reduce(psn * (jv - u_j) ** 2, None)
    pn = P / Nz
    f["entropy"] = -np.add.reduce(pn * np.log2(pn + EPS), None)
    f["low"] = np.add.reduce(pg / (iv ** 2), None) / Nz
    f["high"] = np.add.reduce(pg * (iv ** 2), None) / Nz
    f["smallLow"] = np.add.reduce(P / (i2 * j2), None) / Nz
    f["smallHigh"] = np.add.reduce(P * i2 / j2, None) / Nz
    f["largeLow"] = np.add.reduce(P * j2 / i2, None) / Nz
    f["largeHigh"] = np.add.reduce(P * (j2 * i2), None) / Nz
    return f


def glszm(binned, roi, settings, gl, ng) -> dict[str, float]:
    """pyradiomics' GLSZM features (segment-based)."""
    from radiomics import cMatrices

    P = cMatrices.calculate_glszm(binned, roi, ng, np.add.reduce(roi, None), settings.get("force2D", False),
                                  settings.get("force2Ddimension", 0))
    P = _present(P, gl)  # (levels, zone sizes)
    ps = np.add.reduce(P, 0)
    jv = np.arange(1, P.shape[1] + 1, dtype=np.float64)
    Nz = np.add.reduce(P, None)
    Nz = Nz if Nz != 0 else 1
    Np = np.add.reduce(ps * jv, None)
    Np = Np if Np != 0 else 1
    keep = ps != 0
    f = _zone_features(P[:, keep], gl.astype(float), jv[keep], Nz, "zone")
    return {"SmallAreaEmphasis": f["small"], "LargeAreaEmphasis": f["large"],
            "GrayLevelNonUniformity": f["GrayLevelNonUniformity"],
            "GrayLevelNonUniformityNormalized": f["GrayLevelNonUniformityNormalized"],
            "SizeZoneNonUniformity": f["sizeNU"], "SizeZoneNonUniformityNormalized": f["sizeNUN"],
            "ZonePercentage": Nz / Np, "GrayLevelVariance": f["GrayLevelVariance"], "ZoneVariance": f["sizeVar"],
            "ZoneEntropy": f["entropy"], "LowGrayLevelZoneEmphasis": f["low"],
            "HighGrayLevelZoneEmphasis": f["high"], "SmallAreaLowGrayLevelEmphasis": f["smallLow"],
            "SmallAreaHighGrayLevelEmphasis": f["smallHigh"], "LargeAreaLowGrayLevelEmphasis": f["largeLow"],
            "LargeAreaHighGrayLevelEmphasis": f["largeHigh"]}


def gldm(binned, roi, settings, gl, ng) -> dict[str, float]:
    """pyradiomics' GLDM features (segment-based)."""
    from radiomics import cMatrices

    P = cMatrices.calculate_gldm(binned, roi, np.array(settings.get("distances", [1])), ng,
                                 settings.get("gldm_a", 0), settings.get("force2D", False),
                                 settings.get("force2Ddimension", 0))
    P = _present(P, gl)  # (levels, dependence sizes)
    jv = np.arange(1, P.shape[1] + 1, dtype="float64")
    keep = np.add.reduce(P, 0) != 0
    P, jv = P[:, keep], jv[keep]
    Nz = np.add.reduce(np.add.reduce(P, 0), None)
    Nz = Nz if Nz != 0 else 1
    f = _zone_features(P, gl.astype(float), jv, Nz, "dep")
    return {"DependenceEntropy": f["entropy"], "DependenceNonUniformity": f["sizeNU"],
            "DependenceNonUniformityNormalized": f["sizeNUN"], "DependenceVariance": f["sizeVar"],
            "GrayLevelNonUniformity": f["GrayLevelNonUniformity"], "GrayLevelVariance": f["GrayLevelVariance"],
            "HighGrayLevelEmphasis": f["high"], "LargeDependenceEmphasis": f["large"],
            "LargeDependenceHighGrayLevelEmphasis": f["largeHigh"],
            "LargeDependenceLowGrayLevelEmphasis": f["largeLow"], "LowGrayLevelEmphasis": f["low"],
            "SmallDependenceEmphasis": f["small"], "SmallDependenceHighGrayLevelEmphasis": f["smallHigh"],
            "SmallDependenceLowGrayLevelEmphasis": f["smallLow"]}


def ngtdm(binned, roi, settings, gl, ng) -> dict[str, float]:
    """pyradiomics' NGTDM features (segment-based)."""
    from radiomics import cMatrices

    P = cMatrices.calculate_ngtdm(binned, roi, np.array(settings.get("distances", [1])), ng,
                                  settings.get("force2D", False), settings.get("force2Ddimension", 0))[0]
    P = P[P[:, 0] != 0]  # (levels present, [count, s, level])
    Nvp = np.add.reduce(P[:, 0], None)
    p = P[:, 0] / Nvp
    s_ = P[:, 1]
    i = P[:, 2]
    ngp = np.add.reduce(P[:, 0] > 0, None)
    f: dict[str, Any] = {}
    coarse = np.add.reduce(p * s_, None)
    f["Coarseness"] = 1 / coarse if coarse != 0 else 1e6
    div = ngp * (ngp - 1)
    contrast = np.add.reduce(p[:, None] * p[None, :] * (i[:, None] - i[None, :]) ** 2, None) * np.add.reduce(s_, None) / Nvp
    f["Contrast"] = contrast / div if div != 0 else 0
    i_p = i * p
    absdiff = np.add.reduce(np.abs(i_p[:, None] - i_p[None, :]), None)
    f["Busyness"] = np.add.reduce(p * s_, None) / absdiff if absdiff != 0 else 0
    ps = p * s_
    divisor = p[:, None] + p[None, :]
    divisor[divisor == 0] = 1
    f["Complexity"] = np.add.reduce(np.abs(i[:, None] - i[None, :]) * (ps[:, None] + ps[None, :]) / divisor, None) / Nvp
    sum_s = np.add.reduce(s_, None)
    strength = np.add.reduce((p[:, None] + p[None, :]) * (i[:, None] - i[None, :]) ** 2, None)
    f["Strength"] = strength / sum_s if sum_s != 0 else 0
    return f


_MATRIX_CLASSES = {"glrlm": glrlm, "glszm": glszm, "gldm": gldm, "ngtdm": ngtdm}


# --------------------------------------------------------------------------- one ROI
def compute(image, mask, settings: Mapping[str, Any], classes: Mapping[str, Any]) -> dict[str, float]:
    """Features ``original_<class>_<name>`` of the engine's ``classes`` on an image and ROI
    already cropped to the ROI's box (SimpleITK images, ROI value 1), in pyradiomics' order.

    ``classes`` maps class name to its feature list (None/empty: all current features).
    """
    import SimpleITK as sitk

    return compute_arrays(sitk.GetArrayFromImage(image), sitk.GetArrayViewFromImage(mask) == 1,
                          image.GetSpacing(), settings, classes)


def compute_arrays(arr, roi: np.ndarray, spacing, settings: Mapping[str, Any],
                   classes: Mapping[str, Any]) -> dict[str, float]:
    """:func:`compute` on arrays: image ``arr`` (None when only shape classes are asked: shape
    depends on the ROI alone), boolean ``roi`` of the box, ``spacing`` in SimpleITK order."""
    binned = None
    out: dict[str, float] = {}
    for cls, names in classes.items():
        if binned is None and not cls.startswith("shape"):
            binned = discretise(arr, roi, settings)
            gl = np.unique(binned[roi])
        if cls == "shape":
            vals = shape(roi, spacing)
        elif cls == "shape2D":
            vals = shape2d(roi, spacing)
        elif cls == "firstorder":
            vals = firstorder(arr, roi, binned, spacing, settings)
        elif cls == "glcm":
            vals = glcm(binned, roi, settings, gl)
        elif cls in _MATRIX_CLASSES:
            vals = _MATRIX_CLASSES[cls](binned, roi, settings, gl, int(np.max(gl)))
        else:  # pragma: no cover - guarded by engine_classes
            raise ValueError(f"engine does not compute {cls!r}")
        for name in (names or feature_names(cls)):
            out[f"original_{cls}_{name}"] = float(vals[name])
    return out
