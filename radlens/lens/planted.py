"""Planted-truth simulations for the lens (tests, benchmark, docs): radiomics with pyradiomics-like
names, pre embeddings that depend nonlinearly on every feature, and post embeddings with an exactly
known change."""
from __future__ import annotations

import numpy as np

_CLASSES = ("firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm", "shape")


def planted_radiomics(n: int, p: int, seed: int = 0, rho: float = 0.3):
    """Radiomics DataFrame (``case_id`` + p columns named ``original_<class>_F<j>``) with an
    equicorrelated (``rho``) Gaussian design inside blocks of 5 features."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p))
    for s in range(0, p, 5):
        X[:, s:s + 5] = np.sqrt(1 - rho) * X[:, s:s + 5] + np.sqrt(rho) * rng.normal(size=(n, 1))
    names = [f"original_{_CLASSES[(j // 5) % len(_CLASSES)]}_F{j:03d}" for j in range(p)]
    df = pd.DataFrame(X, columns=names)
    df.insert(0, "case_id", [f"c{i:05d}" for i in range(n)])
    return df


def planted_embeddings(X, d: int, seed: int = 0, width: int = 48, noise: float = 0.3) -> np.ndarray:
    """Pre embeddings (n, d): a random two-layer tanh map of all features plus Gaussian noise."""
    rng = np.random.default_rng(seed)
    X = np.asarray(X, float)
    A = rng.normal(size=(X.shape[1], width)) / np.sqrt(X.shape[1])
    B = rng.normal(size=(width, d)) / np.sqrt(width)
    Z = np.tanh(X @ A) @ B
    return Z + noise * Z.std() * rng.normal(size=Z.shape)


def planted_change(X, Z_pre, planted, kind: str = "signal", strength: float = 1.0, seed: int = 0,
                   noise: float = 0.05) -> np.ndarray:
    """Post embeddings with a known change.

    kind : ``"signal"``  Z_pre + strength·tanh(X[:, planted] U) V (+ small fresh noise): the change
           is driven only by the planted features;
           ``"noise"``   Z_pre + fresh Gaussian noise of relative size ``strength`` (no feature);
           ``"rotate"``  Z_pre @ Q with a random orthogonal Q (nothing but the basis changes).
    """
    rng = np.random.default_rng(seed)
    X = np.asarray(X, float)
    Z = np.asarray(Z_pre, float)
    n, d = Z.shape
    scale = Z.std()
    if kind == "rotate":
        Q, _ = np.linalg.qr(rng.normal(size=(d, d)))
        return Z @ Q
    if kind == "noise":
        return Z + strength * scale * rng.normal(size=Z.shape)
    if kind == "signal":
        k = len(planted)
        U = rng.normal(size=(k, 2 * k))
        V = rng.normal(size=(2 * k, d)) / np.sqrt(2 * k)
        sig = np.tanh(X[:, planted] @ U) @ V
        sig *= strength * scale / sig.std()
        return Z + sig + noise * scale * rng.normal(size=Z.shape)
    raise ValueError(f"kind={kind!r} not allowed; use 'signal', 'noise' or 'rotate'")


def _signal(X, feats, d, strength, scale, rng):
    k = len(feats)
    U = rng.normal(size=(k, 2 * k))
    V = rng.normal(size=(2 * k, d)) / np.sqrt(2 * k)
    sig = np.tanh(X[:, feats] @ U) @ V
    return sig * (strength * scale / sig.std())


def planted_tasks(X, Z_pre, common, specific: dict, *, common_strength: float = 0.6,
                  specific_strength: float = 0.3, noise: float = 0.05, seed: int = 0) -> dict:
    """Post embeddings of several tasks fine-tuned from one pre encoder, with a known common and
    task-specific change.

    ``Z_t = Z_pre + s_common(X[:, common]) + s_t(X[:, specific[t]]) + fresh noise``, each signal a
    random tanh map of its features scaled to ``strength × std(Z_pre)``; the common signal is the
    same array for every task.

    Parameters
    ----------
    X : ndarray (n, p);  Z_pre : ndarray (n, d)
    common : list of int   features driving the common change.
    specific : dict task -> list of int   features driving each task's own change.

    Returns
    -------
    dict task -> ndarray (n, d)
    """
    rng = np.random.default_rng(seed)
    X = np.asarray(X, float)
    Z = np.asarray(Z_pre, float)
    n, d = Z.shape
    scale = Z.std()
    base = Z + (_signal(X, list(common), d, common_strength, scale, rng) if len(common) else 0)
    return {t: base + _signal(X, list(f), d, specific_strength, scale, rng) + noise * scale * rng.normal(size=Z.shape)
            for t, f in specific.items()}


def planted_labels(X, features, *, seed: int = 0, kind: str = "binary", groups=None) -> np.ndarray:
    """Labels driven by ``features`` (a random positive combination plus logistic noise; binary:
    thresholded at the median). With no feature, labels independent of X. ``groups``: one label per
    patient (the first case's)."""
    rng = np.random.default_rng(seed)
    X = np.asarray(X, float)
    n = X.shape[0]
    f = list(features)
    score = (X[:, f] @ rng.uniform(0.5, 1.5, len(f))) / np.sqrt(len(f)) if f else np.zeros(n)
    score = score + rng.logistic(size=n) * 0.5
    if groups is not None:
        g = np.asarray(groups)
        first = {}
        for i, gi in enumerate(g):
            first.setdefault(gi, score[i])
        score = np.array([first[gi] for gi in g])
    return (score > np.median(score)).astype(int) if kind == "binary" else score


def planted_lenses(seeds, n: int, p: int, d: int, **params) -> dict:
    """Per data seed ``s``: ``(radiomics df, X (n, p), Z_pre (n, d), RadiomicLens fitted on them)``,
    fitted on one torch and one BLAS thread (so the planted tests give the same numbers everywhere).
    ``params`` go to :class:`radlens.lens.estimator.RadiomicLens` (with ``random_state=s``)."""
    import torch
    from threadpoolctl import threadpool_limits

    from radlens.lens.estimator import RadiomicLens

    torch.set_num_threads(1)
    out = {}
    with threadpool_limits(1):
        for s in seeds:
            df = planted_radiomics(n, p, seed=s)
            X = df.drop(columns="case_id").to_numpy()
            Z = planted_embeddings(X, d, seed=s)
            out[s] = (df, X, Z, RadiomicLens(random_state=s, **params).fit(df, Z))
    return out
