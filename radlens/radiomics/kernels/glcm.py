"""pyradiomics' GLCM features of one ROI, computed from pyradiomics' own co-occurrence matrix.

Laid out (angles, non-empty cells) so every sum runs along contiguous memory; weighted sums as
matrix products; MCC by a symmetric eigensolver where provably equal (see :func:`_mcc_symmetric`).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from radlens.radiomics.kernels.common import EPS, angle_mean


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
    f: dict[str, Any] = angle_mean(v)
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
