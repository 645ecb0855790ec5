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
