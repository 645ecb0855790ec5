"""Fixed coordinate frames fitted on the *pre* data and applied unchanged to every *post* input.

* :class:`RadiomicsFrame` — cleans the radiomics table (constant / all-missing / optional
  near-duplicate columns dropped, with reasons), imputes missing values with the pre median,
  standardises with the pre mean and SD and clips at ``±clip`` SD.
* :class:`EmbeddingFrame` — centres embeddings with the pre mean and divides by one global scale
  (root mean square per coordinate), or per coordinate (``scaling="per_dim"``), then optionally
  projects onto the top ``n_components`` principal axes of the pre embeddings. It also exposes the
  full-rank principal scores used as a canonical, basis-free training target for the first layer.

Both serialise to plain arrays + JSON (no pickle).
"""
from __future__ import annotations

import logging

import numpy as np

from radlens.errors import InputError

log = logging.getLogger(__name__)

SCALINGS = ("global", "per_dim", "none")


def _clean_columns(df, near_duplicate_threshold):
    """Use radlens.radiomics.features.clean_features when present; otherwise drop constant,
    all-missing and non-numeric columns here. Returns (kept column names, report DataFrame)."""
    import pandas as pd

    try:
        from radlens.radiomics.features import clean_features
    except ImportError:  # radiomics package not installed in this tree yet
        clean_features = None
    if clean_features is not None:
        clean, report = clean_features(df, near_duplicate_threshold=near_duplicate_threshold)
        cols = [c for c in clean.columns if c != "case_id"]
        return cols, report
    rows, cols = [], []
    for c in df.columns:
        if c == "case_id":
            continue
        v = pd.to_numeric(df[c], errors="coerce").to_numpy(float)
        fin = v[np.isfinite(v)]
        if fin.size == 0:
            rows.append({"feature": c, "reason": "all missing or non-numeric"})
        elif np.ptp(fin) == 0:
            rows.append({"feature": c, "reason": "constant"})
        else:
            cols.append(c)
    return cols, pd.DataFrame(rows, columns=["feature", "reason"])


class RadiomicsFrame:
    """Radiomics cleaning + standardisation fitted on the pre cohort.

    Attributes after :meth:`fit`: ``features_`` (list of kept names), ``median_``, ``mean_``,
    ``scale_`` (each shape (p,)), ``report_`` (dropped columns with reasons).
    """

    def __init__(self, clip: float | None = 5.0, near_duplicate_threshold: float | None = None):
        self.clip = clip
        self.near_duplicate_threshold = near_duplicate_threshold

    def fit(self, df) -> "RadiomicsFrame":
        cols, report = _clean_columns(df, self.near_duplicate_threshold)
        if len(cols) == 0:
            raise InputError("radiomics table: no usable feature columns after cleaning (all constant or "
                             "missing); check the radiomics extraction")
        X = self._numeric(df, cols)
        self.features_ = list(cols)
        self.median_ = np.nanmedian(X, axis=0)
        X = np.where(np.isfinite(X), X, self.median_)
        try:
            from radlens.radiomics.features import FeatureStandardizer
        except ImportError:
            FeatureStandardizer = None
        if FeatureStandardizer is not None:
            st = FeatureStandardizer().fit(X)
            self.mean_, self.scale_ = np.asarray(st.mean_, float), np.asarray(st.scale_, float)
        else:
            sd = X.std(0)
            self.mean_, self.scale_ = X.mean(0), np.where(sd > 0, sd, 1.0)
        self.report_ = report
        n_missing = int((~np.isfinite(self._numeric(df, cols))).sum())
        if n_missing:
            log.info("radiomics: imputed %d missing values with the pre median", n_missing)
        return self

    @staticmethod
    def _numeric(df, cols):
        import pandas as pd

        return df[cols].apply(pd.to_numeric, errors="coerce").to_numpy(float)

    def transform(self, df) -> np.ndarray:
        """Standardised features, shape (n, p), columns in ``features_`` order."""
        missing = [c for c in self.features_ if c not in df.columns]
        if missing:
            raise InputError(f"radiomics table lacks {len(missing)} feature column(s) the lens was fitted "
                             f"with, e.g. {missing[:5]}; use the same radiomics parameters as for fit-pre")
        X = self._numeric(df, self.features_)
        X = np.where(np.isfinite(X), X, self.median_)
        Z = (X - self.mean_) / self.scale_
        if self.clip is not None:
            Z = np.clip(Z, -self.clip, self.clip)
        return Z

    def to_state(self) -> tuple[dict, dict]:
        arrays = {"rad_median": self.median_, "rad_mean": self.mean_, "rad_scale": self.scale_}
        return arrays, {"features": self.features_, "clip": self.clip,
                        "near_duplicate_threshold": self.near_duplicate_threshold}

    @classmethod
    def from_state(cls, arrays: dict, meta: dict) -> "RadiomicsFrame":
        self = cls(meta["clip"], meta.get("near_duplicate_threshold"))
        self.features_ = list(meta["features"])
        self.median_, self.mean_, self.scale_ = arrays["rad_median"], arrays["rad_mean"], arrays["rad_scale"]
        return self


class EmbeddingFrame:
    """Embedding coordinates fixed on the pre cohort.

    ``transform(Z) = ((Z - mean_) / scale_) @ components_.T`` (projection only when
    ``n_components`` is set). With ``scaling="global"`` every step is an orthogonal-equivariant
    map, so an orthogonal change of the post embedding basis (``Z_post @ Q``) becomes an
    orthogonal change of the frame coordinates (exactly when no PCA projection is used).

    Attributes after :meth:`fit`: ``mean_`` (d,), ``scale_`` (d,) or scalar, ``components_``
    (k, d) or None, ``explained_variance_ratio_`` (k,) or None, ``n_features_in_``.
    """

    def __init__(self, scaling: str = "global", n_components: int | None = None):
        self.scaling = scaling
        self.n_components = n_components

    def fit(self, Z) -> "EmbeddingFrame":
        Z = np.asarray(Z, float)
        if self.scaling not in SCALINGS:
            raise InputError(f"embedding_scaling={self.scaling!r} not allowed; use one of {SCALINGS}")
        n, d = Z.shape
        self.n_features_in_ = d
        self.mean_ = Z.mean(0)
        Zc = Z - self.mean_
        if self.scaling == "global":
            s = float(np.sqrt((Zc ** 2).mean()))
            self.scale_ = np.full(d, s if s > 0 else 1.0)
        elif self.scaling == "per_dim":
            sd = Zc.std(0)
            self.scale_ = np.where(sd > 0, sd, 1.0)
        else:
            self.scale_ = np.ones(d)
        self.components_ = None
        self.explained_variance_ratio_ = None
        if self.n_components is not None:
            k = int(self.n_components)
            kmax = min(n - 1, d)
            if not 1 <= k <= kmax:
                raise InputError(f"n_components={self.n_components!r} must be in [1, min(n_cases-1, dim)={kmax}]")
            Y = Zc / self.scale_
            _, sv, Vt = np.linalg.svd(Y, full_matrices=False)
            Vt = _sign_fix(Y, Vt)
            self.components_ = Vt[:k]
            self.explained_variance_ratio_ = (sv[:k] ** 2) / (sv ** 2).sum()
        return self

    def transform(self, Z) -> np.ndarray:
        """Frame coordinates, shape (n, k or d)."""
        Z = np.asarray(Z, float)
        if Z.ndim != 2 or Z.shape[1] != self.n_features_in_:
            raise InputError(f"embeddings have shape {Z.shape}; the lens was fitted on dimension "
                             f"{self.n_features_in_}; use embeddings of the same encoder architecture and pooling")
        Y = (Z - self.mean_) / self.scale_
        return Y if self.components_ is None else Y @ self.components_.T

    def to_state(self) -> tuple[dict, dict]:
        arrays = {"emb_mean": self.mean_, "emb_scale": self.scale_}
        if self.components_ is not None:
            arrays["emb_components"] = self.components_
            arrays["emb_evr"] = self.explained_variance_ratio_
        return arrays, {"scaling": self.scaling, "n_components": self.n_components,
                        "n_features_in": self.n_features_in_}

    @classmethod
    def from_state(cls, arrays: dict, meta: dict) -> "EmbeddingFrame":
        self = cls(meta["scaling"], meta["n_components"])
        self.n_features_in_ = int(meta["n_features_in"])
        self.mean_, self.scale_ = arrays["emb_mean"], arrays["emb_scale"]
        self.components_ = arrays.get("emb_components")
        self.explained_variance_ratio_ = arrays.get("emb_evr")
        return self


def _sign_fix(Y, Vt):
    """Basis-free sign convention for principal axes: the case with the largest absolute score on
    an axis gets a positive score (scores do not depend on the embedding basis, loadings do)."""
    scores = Y @ Vt.T
    idx = np.argmax(np.abs(scores), axis=0)
    sign = np.sign(scores[idx, np.arange(scores.shape[1])])
    sign[sign == 0] = 1
    return Vt * sign[:, None]


def principal_scores(Y) -> np.ndarray:
    """Full-rank principal scores of centred data ``Y`` (n, d): ``Y @ V`` with sign-fixed axes,
    shape (n, r), r = numerical rank. They are identical (to rounding) for ``Y`` and ``Y @ Q`` with
    Q orthogonal, which makes first-layer training independent of the embedding basis."""
    Y = np.asarray(Y, float) - np.asarray(Y, float).mean(0)
    _, sv, Vt = np.linalg.svd(Y, full_matrices=False)
    r = int((sv > sv[0] * 1e-10).sum()) if sv.size and sv[0] > 0 else 0
    Vt = _sign_fix(Y, Vt[:r])
    return Y @ Vt.T
