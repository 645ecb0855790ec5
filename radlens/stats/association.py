"""Feature–label association profiles and the correlation of a profile with another one (Pearson
by default, Spearman as an option), with a (patient-grouped) label-permutation p-value.

Association of each feature with a label, rank-based (invariant to monotone transforms of the
features):

* binary label: ``AUC − 0.5`` (Mann–Whitney; positive when larger values go with the larger label);
* numeric label with more than two values: Spearman ρ;
* categorical label with more than two classes: mean over classes of ``|AUC_one-vs-rest − 0.5|``
  (unsigned).

Everything is vectorised over label permutations: with the feature ranks ``R`` (n, p) fixed, an
AUC is a linear function of the positives' rank sum and a Spearman ρ a correlation with centred
ranks, so ``B`` permutations cost one (B, n) @ (n, p) product.
"""
from __future__ import annotations

import numpy as np


def label_kind(y) -> str:
    """``"binary"``, ``"numeric"`` (more than two numeric values) or ``"categorical"``."""
    import pandas as pd

    s = pd.Series(np.asarray(y, dtype=object)).dropna()
    vals = s.unique()
    if len(vals) < 2:
        raise ValueError(f"label has {len(vals)} distinct value(s); need at least 2")
    if len(vals) == 2:
        return "binary"
    num = pd.to_numeric(s, errors="coerce")
    return "numeric" if num.notna().all() else "categorical"


def _ranks(X):
    from scipy import stats as st

    return st.rankdata(np.asarray(X, float), axis=0)


def _auc_minus_half(R, pos):
    """AUC − 0.5 of every column of ranks ``R`` (n, p) for positives ``pos`` (n,) or (B, n) bool."""
    pos = np.asarray(pos, float)
    n1 = pos.sum(-1, keepdims=True)
    n0 = R.shape[0] - n1
    U = pos @ R - n1 * (n1 + 1) / 2
    return U / (n1 * n0) - 0.5


def feature_association(X, y, perms=None, kind: str | None = None) -> np.ndarray:
    """Rank association of every feature with the label (see the module docstring).

    Parameters
    ----------
    X : ndarray, shape (n, p)   features (rows with a missing label must be removed beforehand).
    y : array-like, shape (n,)  labels (no missing values).
    perms : ndarray of int, shape (B, n), optional
        Row permutations of the labels (``y[perms[b]]``); the association is then computed for every
        permuted label vector.
    kind : str, optional  ``label_kind(y)`` when not given.

    Returns
    -------
    ndarray, shape (p,) or (B, p) with ``perms``.
    """
    import pandas as pd

    R = _ranks(X)
    y = np.asarray(y, dtype=object)
    kind = kind or label_kind(y)
    idx = perms if perms is not None else np.arange(len(y))[None, :]
    if kind == "binary":
        vals = sorted(pd.unique(y), key=lambda v: (str(type(v)), v))
        codes = (y == vals[1]).astype(float)
        out = _auc_minus_half(R, codes[idx])
    elif kind == "numeric":
        ry = _ranks(pd.to_numeric(pd.Series(y)).to_numpy(float)[:, None])[:, 0]
        Rc = R - R.mean(0)
        Rc /= np.linalg.norm(Rc, axis=0).clip(1e-300)
        yc = ry[idx] - ry.mean()
        yc /= np.linalg.norm(yc, axis=1, keepdims=True).clip(1e-300)
        out = yc @ Rc
    elif kind == "categorical":
        out = 0
        vals = pd.unique(y)
        for v in vals:
            out = out + np.abs(_auc_minus_half(R, (y == v).astype(float)[idx]))
        out = out / len(vals)
    else:
        raise ValueError(f"kind={kind!r} not allowed; use 'binary', 'numeric' or 'categorical'")
    return out[0] if perms is None else out


#: statistics of :func:`alignment_test` (the first is the default)
ALIGNMENT_STATISTICS = ("pearson", "spearman")


def pearson_rows(a, B) -> np.ndarray:
    """Pearson r between vector ``a`` (p,) and every row of ``B`` (b, p) (NaN for a constant row)."""
    a = np.asarray(a, float) - np.mean(a)
    B = np.atleast_2d(np.asarray(B, float))
    B = B - B.mean(1, keepdims=True)
    den = np.linalg.norm(a) * np.linalg.norm(B, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (B @ a) / den


def spearman_rows(a, B) -> np.ndarray:
    """Spearman ρ between vector ``a`` (p,) and every row of ``B`` (b, p) (average ranks for ties)."""
    from scipy import stats as st

    ra = st.rankdata(a)
    rb = st.rankdata(np.atleast_2d(B), axis=1)
    ra = ra - ra.mean()
    rb = rb - rb.mean(1, keepdims=True)
    den = np.linalg.norm(ra) * np.linalg.norm(rb, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (rb @ ra) / den


def alignment_test(profile, X, y, groups=None, *, n_perm: int = 999, seed: int = 0,
                   absolute: bool = True, statistic: str = "pearson") -> dict:
    """Does a per-feature ``profile`` (e.g. how much each feature's sensitivity changed) go with the
    features' association with the label ``y``?

    Statistic (``statistic``): the correlation over features between ``profile`` and the association
    profile (its absolute value when ``absolute``, since a change of sensitivity has no sign):
    ``"pearson"`` (default) correlates the values, so each feature weighs by how strongly it separates
    the labels (``r ∝ Σ_r (|a_r| − mean|a|) · profile_r``: the |association|-weighted mean of the
    profile); ``"spearman"`` correlates the ranks, so the many features unrelated to the label (their
    |association| is noise) weigh as much as the signature's, which dilutes a sparse signature
    (docs/lens.md §9c, §11). Null: the labels permuted over whole patients
    (:func:`radlens.stats.permutation.cluster_permutations`), which keeps the correlation between
    features; one-sided p ``(1 + #{s_b ≥ s}) / (B + 1)``.

    Parameters
    ----------
    profile : array-like, shape (p,)
    X : ndarray, shape (n, p);  y : array-like, shape (n,) (missing labels: rows dropped)
    groups : array-like, shape (n,), optional   patient of each row (default: each row its own).
    n_perm : int;  seed : int;  absolute : bool
    statistic : {"pearson", "spearman"}, default "pearson"

    Returns
    -------
    dict: ``alignment`` (the correlation), ``alignment_p``, ``null_mean``, ``null_sd``, ``n_features``,
    ``n_cases``, ``label_kind``, ``statistic``, ``association`` (p,) (signed).
    """
    import pandas as pd

    from radlens.stats.permutation import cluster_permutations

    if statistic not in ALIGNMENT_STATISTICS:
        raise ValueError(f"statistic={statistic!r} not allowed; use one of {ALIGNMENT_STATISTICS}")
    corr = pearson_rows if statistic == "pearson" else spearman_rows
    X = np.asarray(X, float)
    profile = np.asarray(profile, float)
    y = np.asarray(y, dtype=object)
    keep = pd.notna(pd.Series(y)).to_numpy()
    X, y = X[keep], y[keep]
    g = np.arange(len(y)) if groups is None else np.asarray(groups)[keep]
    kind = label_kind(y)
    assoc = feature_association(X, y, kind=kind)
    ok = np.isfinite(profile) & np.isfinite(assoc)
    f = np.abs if absolute else (lambda v: v)
    rho = float(corr(profile[ok], f(assoc[ok])[None])[0])
    perms = cluster_permutations(g, n_perm, seed)
    null = corr(profile[ok], f(feature_association(X[:, ok], y, perms, kind=kind)))
    null = null[np.isfinite(null)]
    p = float((1 + (null >= rho - 1e-12).sum()) / (null.size + 1)) if np.isfinite(rho) else np.nan
    return {"alignment": rho, "alignment_p": p, "null_mean": float(null.mean()) if null.size else np.nan,
            "null_sd": float(null.std(ddof=1)) if null.size > 1 else np.nan, "n_features": int(ok.sum()),
            "n_cases": int(len(y)), "label_kind": kind, "statistic": statistic, "association": assoc}
