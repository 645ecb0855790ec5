"""pyradiomics' GLRLM, GLSZM, GLDM and NGTDM features of one ROI, from pyradiomics' own C matrices."""
from __future__ import annotations

from typing import Any

import numpy as np

from radlens.radiomics.kernels.common import EPS, angle_mean


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
    return angle_mean(v)


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
