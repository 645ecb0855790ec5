"""Emphasis: how the lens's sensitivity to each radiomic feature changed, blind to a global
rescale and to an orthogonal re-coding of the post embedding; and the decomposition of the
embedding's change into re-coding, rescale and the rest (orthogonal Procrustes + scale).

**Emphasis score** (the ``refit-post`` headline). With the RMS sensitivities ``s_pre,r``,
``s_post,r`` of feature r (:mod:`radlens.lens.scores`, per lens seed),

    ρ = median_r (s_post,r / s_pre,r)          (the typical sensitivity rescale)
    emphasis_r = s_post,r / ρ − s_pre,r         (pre units: frame units per feature SD)

Sensitivities depend on the post head only through ``coef coef^T``, so they do not move under an
orthogonal re-coding of post; a global rescale multiplies every ``s_post,r`` and ρ alike. The
median makes ρ the rescale of the features whose emphasis did *not* change, so a few features
gaining sensitivity stand out instead of every other feature "losing share".

**Procrustes decomposition** (global summary, and the null of the emphasis score).

With ``Yp`` the pre frame coordinates (centred) and ``Yq`` the post ones (centred on their own mean:
a constant offset is absorbed by the heads' intercepts anyway):

    Q = argmax_{Q orthogonal} tr(Yp^T Yq Q)     (SVD of Yq^T Yp = U Σ V^T,  Q = U V^T)
    b = tr(Yp^T Yq Q) / ‖Yp‖²                   (least-squares scale of Yq Q on Yp)
    E_emphasis = Yq Q / b − Yp                  (the change in pre units, n × k)

``E_emphasis`` is exactly 0 for ``Yq = c Yp R`` (any c > 0, R orthogonal), and is unchanged when the
post embedding is further rescaled or rotated: ``Yq → c Yq R`` gives ``Q → R^T Q``, ``b → c b``. The
total squared change in post units splits exactly (each step can only lower the residual, because
Q = I and b = 1 are candidates):

    ‖Yq − Yp‖²  =  [‖Yq − Yp‖² − ‖Yq Q − Yp‖²]       re-coding (orthogonal)
                 + [‖Yq Q − Yp‖² − ‖Yq Q − b Yp‖²]   rescale
                 +  ‖Yq Q − b Yp‖²                   emphasis (= b² ‖E_emphasis‖²)
"""
from __future__ import annotations

import numpy as np

#: relative size (‖E‖ / ‖Yp‖) below which a change is treated as rounding noise (nothing changed)
NO_CHANGE_TOL = 1e-6


def align_post(Y_pre, Y_post, rotate: bool = True) -> dict:
    """Orthogonal Procrustes + global scale alignment of post frame coordinates onto pre.

    Parameters
    ----------
    Y_pre : ndarray, shape (n, k)   pre embeddings in the lens frame.
    Y_post : ndarray, shape (n, k)  post embeddings of the same cases in the same frame.
    rotate : bool, default True
        False: global scale only (``Q = I``).

    Returns
    -------
    dict: ``E`` (n, k) emphasis change (pre units); ``Q`` (k, k); ``rescale`` (b); ``rotation_size``
    (‖Q − I‖_F / sqrt(2k): 0 = no rotation, about 1 for a random rotation); ``recoding_share``,
    ``rescale_share``, ``emphasis_share`` (shares of the total squared change, sum to 1);
    ``no_change`` (bool: the emphasis change is rounding noise).
    """
    Yp = np.asarray(Y_pre, float)
    Yp = Yp - Yp.mean(0)
    Yq = np.asarray(Y_post, float)
    Yq = Yq - Yq.mean(0)
    if Yp.shape != Yq.shape:
        raise ValueError(f"align_post: Y_pre {Yp.shape} and Y_post {Yq.shape} differ")
    if rotate:
        U, s, Vt = np.linalg.svd(Yq.T @ Yp)
        Q = U @ Vt
        cross = float(s.sum())
    else:
        Q = np.eye(Yq.shape[1])
        cross = float((Yq * Yp).sum())
    YqQ = Yq @ Q
    pp = float((Yp ** 2).sum())
    b = float(cross / pp) if pp > 0 else 1.0
    b = b if b > 0 else 1.0
    raw = float(((Yq - Yp) ** 2).sum())
    rot = min(float(((YqQ - Yp) ** 2).sum()), raw)
    res = min(float(((YqQ - b * Yp) ** 2).sum()), rot)
    tot = raw if raw > 0 else 1.0
    E = YqQ / b - Yp
    k = Q.shape[0]
    return {"E": E, "Q": Q, "rescale": b, "rotation_size": float(np.linalg.norm(Q - np.eye(k)) / np.sqrt(2 * k)),
            "recoding_share": max(raw - rot, 0.0) / tot, "rescale_share": max(rot - res, 0.0) / tot,
            "emphasis_share": res / tot, "no_change": bool(np.sqrt(float((E ** 2).sum()) / max(pp, 1e-300)) < NO_CHANGE_TOL),
            "change_norm_ratio": float(np.sqrt(raw / pp)) if pp > 0 else float("nan")}


def describe_alignment(al: dict) -> str:
    """One sentence for a user: how the embedding was rescaled / re-coded and how much of its change
    is left as a change of radiomic emphasis."""
    parts = []
    b = al["rescale"]
    if abs(b - 1) >= 0.05:
        parts.append(f"rescaled ×{b:.2f}")
    if al["recoding_share"] >= 0.05 or al["rotation_size"] >= 0.1:
        parts.append(f"rotated (orthogonal re-coding, rotation size {al['rotation_size']:.2f})")
    head = ("the embedding was " + " and ".join(parts)) if parts else "the embedding was neither rescaled nor rotated"
    if "sensitivity_rescale" in al:
        head += f" (radiomic sensitivities ×{al['sensitivity_rescale']:.2f} overall)"
    tail = (f"; of its change, {100 * al['recoding_share']:.0f}% is orthogonal re-coding, "
            f"{100 * al['rescale_share']:.0f}% global rescale and {100 * al['emphasis_share']:.0f}% other "
            "(non-rigid) change")
    if al["no_change"]:
        tail += " (none beyond rounding: the radiomic emphasis cannot have changed)"
    else:
        tail += " (the emphasis headline's null is built from that part)"
    return head + tail


def emphasis_scores(sens_pre, sens_post) -> tuple[np.ndarray, np.ndarray]:
    """Emphasis change per feature and the sensitivity rescale ρ (see the module docstring).

    Parameters
    ----------
    sens_pre, sens_post : ndarray, shape (..., p)   RMS sensitivities (not squared).

    Returns
    -------
    emphasis : ndarray (..., p);  rho : ndarray (...,)
    """
    sp = np.asarray(sens_pre, float)
    sq = np.asarray(sens_post, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = np.nanmedian(np.where(sp > 0, sq / sp, np.nan), axis=-1)
    rho = np.where(np.isfinite(rho) & (rho > 0), rho, 1.0)
    return sq / rho[..., None] - sp, rho
