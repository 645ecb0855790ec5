"""Radiomic feature tables: names parsed into image type and feature class, cleaning, standardisation.

pyradiomics names every feature ``<imageType>_<featureClass>_<featureName>``, e.g.
``original_glcm_Contrast``, ``wavelet-LLH_firstorder_Mean``, ``log-sigma-1-0-mm-3D_glszm_ZoneEntropy``,
``lbp-2D_gldm_DependenceEntropy``.  Image types use ``-`` inside, never ``_``, and feature names are
CamelCase, so the name splits at its two underscores.

Feature classes group into three *families* that the planted phantom tasks target:
``shape`` (``shape``, ``shape2D``), ``intensity`` (``firstorder``) and ``texture`` (``glcm``, ``glrlm``,
``glszm``, ``gldm``, ``ngtdm``).
"""
from __future__ import annotations

import logging
from typing import Iterable

import numpy as np

from radlens.errors import InputError

log = logging.getLogger(__name__)

FEATURE_CLASSES = ("shape", "shape2D", "firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm")
FAMILIES = {"shape": "shape", "shape2D": "shape", "firstorder": "intensity", "glcm": "texture",
            "glrlm": "texture", "glszm": "texture", "gldm": "texture", "ngtdm": "texture"}
ID_COLUMNS = ("case_id",)
#: Columns radiomics tables carry besides features (manifest columns, pyradiomics batch input columns
#: such as Image/Mask/Reader, patient ids): set aside with a note, never used as features. Compared
#: case-insensitively; every ``diagnostics_*`` column (pyradiomics' diagnostics) is set aside too.
META_COLUMNS = ("patient_id", "patient", "patientid", "subject", "subject_id", "split", "image", "mask", "label",
                "id", "reader", "case", "study", "series", "bbox_x", "bbox_y", "bbox_w", "bbox_h", "radlens_warnings",
                "slice_gaps", "unnamed: 0")
_ERRORS = ("raise", "skip", "other")
_METHODS = ("spearman", "pearson", "either")


# --------------------------------------------------------------------------- names
def _split(name) -> tuple[str, str, str] | None:
    if not isinstance(name, str):
        return None
    parts = name.split("_")
    if len(parts) != 3 or not all(parts) or parts[1] not in FEATURE_CLASSES or parts[0] == "diagnostics":
        return None
    return parts[0], parts[1], parts[2]


def _bad_name(name) -> InputError:
    return InputError(
        f"feature name {name!r} is not a pyradiomics feature name '<imageType>_<featureClass>_<featureName>' "
        f"with featureClass in {list(FEATURE_CLASSES)} (e.g. 'original_glcm_Contrast'); "
        "drop non-feature columns (ids, diagnostics) first or pass errors='skip'/'other'")


def feature_class(name: str) -> str:
    """Feature class of a pyradiomics feature name.

    ``"original_glcm_Contrast"`` -> ``"glcm"``; ``"original_shape2D_Elongation"`` -> ``"shape2D"``.
    Raises :class:`~radlens.errors.InputError` when ``name`` is not a feature name.
    """
    p = _split(name)
    if p is None:
        raise _bad_name(name)
    return p[1]


def image_type(name: str) -> str:
    """Image type (filter) of a pyradiomics feature name.

    ``"wavelet-LLH_glcm_Contrast"`` -> ``"wavelet-LLH"``; ``"log-sigma-1-0-mm-3D_firstorder_Mean"`` ->
    ``"log-sigma-1-0-mm-3D"``; ``"original_..."`` -> ``"original"``.
    """
    p = _split(name)
    if p is None:
        raise _bad_name(name)
    return p[0]


def feature_family(name: str) -> str:
    """``"shape"``, ``"intensity"`` (first order) or ``"texture"`` (GLCM/GLRLM/GLSZM/GLDM/NGTDM)."""
    return FAMILIES[feature_class(name)]


def feature_table_info(columns: Iterable[str], *, errors: str = "raise"):
    """One row per feature column: its image type, class, family and bare name.

    Parameters
    ----------
    columns : iterable of str
        Column names, e.g. ``radiomics_df.columns``; ``case_id`` is always skipped.
    errors : {"raise", "skip", "other"}
        What to do with a name that is not a pyradiomics feature name: raise
        :class:`~radlens.errors.InputError`, leave it out, or keep it with image type, class and
        family ``"other"`` (features computed by another tool).

    Returns
    -------
    pandas.DataFrame, shape (n_features, 5)
        Columns ``feature, image_type, feature_class, family, feature_name`` in input order.
    """
    import pandas as pd

    if errors not in _ERRORS:
        raise InputError(f"errors={errors!r} is not allowed; use one of {list(_ERRORS)}")
    rows = []
    for c in columns:
        if c in ID_COLUMNS:
            continue
        p = _split(c)
        if p is None:
            if errors == "raise":
                raise _bad_name(c)
            if errors == "skip":
                continue
            rows.append((c, "other", "other", "other", str(c)))
            continue
        rows.append((c, p[0], p[1], FAMILIES[p[1]], p[2]))
    return pd.DataFrame(rows, columns=["feature", "image_type", "feature_class", "family", "feature_name"])


# --------------------------------------------------------------------------- cleaning
def split_feature_columns(df, id_columns=ID_COLUMNS) -> tuple[list[str], list[tuple[str, str]]]:
    """Feature columns of a radiomics table, and the other columns with the reason each is set aside.

    Tables as users have them: radlens' own (``case_id`` + features), with a string ``patient_id``
    (or ``split`` ...) column, or the CSV pyradiomics' batch command writes (its input columns such
    as ``Image``, ``Mask``, then ``diagnostics_*``, then the features).

    Parameters
    ----------
    df : pandas.DataFrame
    id_columns : iterable of str
        Identifier columns passed through (not features, not reported).

    Returns
    -------
    features : list of str
        Numeric columns that are neither identifiers nor known metadata, in table order.
    aside : list of (column, reason)
        ``diagnostics_*`` columns, known metadata/path columns (:data:`META_COLUMNS`) and other
        non-numeric columns whose names are not pyradiomics feature names.

    Raises
    ------
    InputError
        A column named like a pyradiomics feature holds non-numeric values.
    """
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    ids = set(id_columns)
    meta = {m.lower() for m in META_COLUMNS}
    feats, aside, bad = [], [], []
    for c in df.columns:
        if c in ids:
            continue
        name = str(c)
        numeric = is_numeric_dtype(df[c].dtype) or is_bool_dtype(df[c].dtype)
        if name.startswith("diagnostics_"):
            aside.append((name, "pyradiomics diagnostics column, not a feature"))
        elif name.lower() in meta:
            aside.append((name, "identifier/metadata column (e.g. patient_id, Image, Mask), not a feature"))
        elif numeric:
            feats.append(c)
        elif _split(name) is not None:
            bad.append(name)
        else:
            aside.append((name, "non-numeric column whose name is not a pyradiomics feature name"))
    if bad:
        ex = {c: str(df[c].dropna().astype(str).iloc[0]) if df[c].notna().any() else "" for c in bad[:3]}
        raise InputError(f"feature table: feature column(s) {bad[:5]}{'...' if len(bad) > 5 else ''} hold non-numeric "
                         f"values (e.g. {ex}); re-export the table with numeric feature values (a CSV with decimal "
                         "commas or quoted numbers?), or drop those columns from the table")
    if aside:
        log.info("feature table: %d column(s) set aside (not features): %s", len(aside),
                 [c for c, _ in aside][:10])
    return feats, aside


def _feature_columns(df, id_columns):
    return split_feature_columns(df, id_columns)[0]


def _abs_corr(X: np.ndarray, method: str) -> np.ndarray:
    """|correlation| matrix (p, p) of the columns of ``X`` (n, p), pairwise-complete when NaNs occur."""
    import pandas as pd

    if method == "either":
        return np.fmax(_abs_corr(X, "spearman"), _abs_corr(X, "pearson"))
    if np.isfinite(X).all():
        if method == "spearman":
            from scipy.stats import rankdata

            X = rankdata(X, axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            C = np.corrcoef(X, rowvar=False)
    else:
        C = pd.DataFrame(X).corr(method=method).to_numpy()
    return np.abs(np.atleast_2d(C))


def clean_features(df, *, near_duplicate_threshold: float | None = None, method: str = "spearman",
                   max_nan_fraction: float | None = None, constant_tol: float = 0.0,
                   id_columns: Iterable[str] = ID_COLUMNS):
    """Drop uninformative feature columns and report what was dropped and why.

    Checks run in this order, each on the columns that survived the previous ones:

    1. ``all_nan``: no finite value;
    2. ``too_many_nan``: NaN fraction above ``max_nan_fraction`` (only when given);
    3. ``constant``: ``max - min <= constant_tol * max(1, |median|)`` over the finite values
       (``constant_tol=0``: exactly one distinct value);
    4. ``near_duplicate`` (only when ``near_duplicate_threshold`` is given): columns are visited in
       **table order** (pyradiomics' own order: image type, then class, then name) and a column is
       dropped when its absolute correlation with an already *kept* column is ``>= threshold``; the
       first of each group of near-duplicates is therefore the one kept.

    Parameters
    ----------
    df : pandas.DataFrame, shape (n_cases, n_columns)
        ``case_id`` (and other ``id_columns``) plus numeric feature columns; other columns
        (``patient_id``, pyradiomics' ``Image``/``Mask``/``diagnostics_*``, other text columns)
        are left out of the output and listed in the report (:func:`split_feature_columns`).
    near_duplicate_threshold : float in (0, 1], optional
        E.g. ``0.95``; ``None`` keeps near-duplicates.
    method : {"spearman", "pearson", "either"}
        Correlation for near-duplicates; ``"either"`` drops when either reaches the threshold.
        Correlations use the pairwise-complete cases.
    max_nan_fraction : float in [0, 1), optional
    constant_tol : float >= 0
    id_columns : iterable of str
        Non-feature columns passed through unchanged (first in the output).

    Returns
    -------
    clean_df : pandas.DataFrame, shape (n_cases, n_kept)
        Same rows and index; kept columns in their original order.
    report : pandas.DataFrame
        One row per dropped column: ``feature, reason, detail, duplicate_of, correlation``
        (the last two only for ``near_duplicate``); reason ``not_a_feature`` for the columns set
        aside as identifiers, metadata or diagnostics.
    """
    import pandas as pd

    id_columns = tuple(c for c in id_columns if c in df.columns)
    if near_duplicate_threshold is not None and not 0.0 < float(near_duplicate_threshold) <= 1.0:
        raise InputError(f"near_duplicate_threshold={near_duplicate_threshold!r} must be in (0, 1], e.g. 0.95, "
                         "or None to keep near-duplicates")
    if method not in _METHODS:
        raise InputError(f"method={method!r} is not allowed; use one of {list(_METHODS)}")
    if max_nan_fraction is not None and not 0.0 <= float(max_nan_fraction) < 1.0:
        raise InputError(f"max_nan_fraction={max_nan_fraction!r} must be in [0, 1) or None")
    if not float(constant_tol) >= 0.0:
        raise InputError(f"constant_tol={constant_tol!r} must be >= 0")
    feats, aside = split_feature_columns(df, id_columns)
    if not feats:
        raise InputError(f"feature table: no numeric feature column among {list(df.columns)[:12]}; a radiomics table "
                         "holds case_id plus feature columns (e.g. original_firstorder_Mean), as `radlens radiomics` "
                         "or pyradiomics' batch command writes it")
    report: list[dict] = []
    n = len(df)

    def drop(col, reason, detail, dup=None, corr=np.nan):
        report.append({"feature": col, "reason": reason, "detail": detail, "duplicate_of": dup,
                       "correlation": corr})

    kept = []
    for c in feats:
        x = df[c].to_numpy(dtype=float)
        fin = np.isfinite(x)
        if not fin.any():
            drop(c, "all_nan", f"no finite value in {n} rows")
            continue
        nan_frac = 1.0 - fin.mean()
        if max_nan_fraction is not None and nan_frac > max_nan_fraction:
            drop(c, "too_many_nan", f"{nan_frac:.1%} of rows are NaN/inf (max_nan_fraction={max_nan_fraction})")
            continue
        v = x[fin]
        spread = float(v.max() - v.min())
        if spread <= constant_tol * max(1.0, abs(float(np.median(v)))):
            drop(c, "constant", f"all {fin.sum()} finite values equal {float(np.median(v)):.6g}"
                 + (f" (range {spread:.3g} within constant_tol)" if spread > 0 else ""))
            continue
        kept.append(c)

    if near_duplicate_threshold is not None and len(kept) > 1:
        thr = float(near_duplicate_threshold)
        X = np.array(df[kept].to_numpy(dtype=float), dtype=float, copy=True)
        X[~np.isfinite(X)] = np.nan
        C = _abs_corr(X, method)
        keep_idx: list[int] = []
        for j, c in enumerate(kept):
            if keep_idx:
                r = C[j, keep_idx]
                r = np.where(np.isfinite(r), r, 0.0)
                k = int(np.argmax(r))
                if r[k] >= thr - 1e-12:
                    other = kept[keep_idx[k]]
                    drop(c, "near_duplicate", f"|{method} r| = {r[k]:.4f} >= {thr} with kept feature {other!r}",
                         dup=other, corr=float(r[k]))
                    continue
            keep_idx.append(j)
        kept = [kept[j] for j in keep_idx]

    rep = pd.DataFrame(report, columns=["feature", "reason", "detail", "duplicate_of", "correlation"])
    order = {c: i for i, c in enumerate(feats)}
    rep = rep.iloc[np.argsort([order[f] for f in rep["feature"]], kind="stable")].reset_index(drop=True)
    if aside:  # columns that are not features: listed first, with why
        notes = pd.DataFrame([{"feature": c, "reason": "not_a_feature", "detail": why, "duplicate_of": None,
                               "correlation": np.nan} for c, why in aside], columns=rep.columns)
        rep = pd.concat([notes, rep], ignore_index=True) if len(rep) else notes
    if len(rep):
        log.info("clean_features: kept %d of %d features; dropped %s", len(kept), len(feats),
                 rep["reason"].value_counts().to_dict())
    return df[list(id_columns) + kept].copy(), rep


# --------------------------------------------------------------------------- standardisation
class FeatureStandardizer:
    """Z-score feature columns: ``(x - mean_) / scale_``, NaN-aware and robust to zero variance.

    A small scikit-learn-style transformer (``get_params``/``set_params``/``fit``/``transform``/
    ``fit_transform``/``inverse_transform``) usable in a ``sklearn.pipeline.Pipeline``.

    Parameters
    ----------
    with_mean : bool
        Centre the columns.
    with_std : bool
        Divide by the (population, ``ddof=0``) standard deviation. Columns whose standard deviation is
        zero, not finite, or below ``min_scale`` get ``scale_ = 1`` (they are only centred).
    min_scale : float
        Smallest standard deviation treated as non-zero.

    Attributes
    ----------
    mean_ : ndarray, shape (n_features,)
        NaN-ignoring column means (0 where ``with_mean=False``; 0 for all-NaN columns).
    scale_ : ndarray, shape (n_features,)
    n_features_in_ : int
    feature_names_in_ : ndarray of str, shape (n_features,)
        Only when fitted on a DataFrame.
    """

    def __init__(self, with_mean: bool = True, with_std: bool = True, min_scale: float = 1e-12):
        self.with_mean = with_mean
        self.with_std = with_std
        self.min_scale = min_scale

    # sklearn parameter protocol (clone, grid search)
    def get_params(self, deep: bool = True) -> dict:
        return {"with_mean": self.with_mean, "with_std": self.with_std, "min_scale": self.min_scale}

    def set_params(self, **params) -> "FeatureStandardizer":
        for k, v in params.items():
            if k not in self.get_params():
                raise InputError(f"FeatureStandardizer has no parameter {k!r}; allowed: {sorted(self.get_params())}")
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        return f"FeatureStandardizer(with_mean={self.with_mean}, with_std={self.with_std}, min_scale={self.min_scale})"

    def _as_array(self, X, fitting: bool) -> np.ndarray:
        import pandas as pd

        if isinstance(X, pd.DataFrame):
            if fitting:
                self.feature_names_in_ = np.asarray([str(c) for c in X.columns], dtype=object)
            elif hasattr(self, "feature_names_in_"):
                cols = [str(c) for c in X.columns]
                if cols != list(self.feature_names_in_):
                    missing = [c for c in self.feature_names_in_ if c not in cols]
                    extra = [c for c in cols if c not in set(self.feature_names_in_)]
                    raise InputError(f"FeatureStandardizer: columns differ from those seen in fit "
                                     f"(missing {missing[:5]}, unexpected {extra[:5]}, or another order); "
                                     "pass the same feature columns in the same order")
            try:
                return X.to_numpy(dtype=float)
            except (TypeError, ValueError) as exc:
                raise InputError(f"FeatureStandardizer: non-numeric column in X ({exc}); drop id columns first "
                                 "or use radlens.radiomics.features.standardize") from None
        arr = np.asarray(X, dtype=float)
        if arr.ndim != 2:
            raise InputError(f"FeatureStandardizer: X must be 2-D (n_samples, n_features), got shape {arr.shape}")
        return arr

    def fit(self, X, y=None) -> "FeatureStandardizer":
        """Learn ``mean_`` and ``scale_`` from ``X`` (n_samples, n_features); NaN/inf ignored."""
        A = self._as_array(X, fitting=True)
        A = np.where(np.isfinite(A), A, np.nan)
        with np.errstate(all="ignore"), _quiet_nan_warnings():
            mean = np.nanmean(A, axis=0) if len(A) else np.zeros(A.shape[1])
            std = np.nanstd(A, axis=0) if len(A) else np.ones(A.shape[1])
        mean = np.where(np.isfinite(mean), mean, 0.0)
        self.mean_ = mean if self.with_mean else np.zeros(A.shape[1])
        ok = np.isfinite(std) & (std > float(self.min_scale))
        self.scale_ = np.where(ok, std, 1.0) if self.with_std else np.ones(A.shape[1])
        self.n_features_in_ = A.shape[1]
        return self

    def _check(self, A):
        if not hasattr(self, "scale_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError("FeatureStandardizer is not fitted yet; call fit(X) first")
        if A.shape[1] != self.n_features_in_:
            raise InputError(f"FeatureStandardizer: X has {A.shape[1]} features, fit saw {self.n_features_in_}")

    def _wrap(self, X, out):
        import pandas as pd

        if isinstance(X, pd.DataFrame):
            return pd.DataFrame(out, index=X.index, columns=X.columns)
        return out

    def transform(self, X):
        """Standardised copy of ``X`` (DataFrame in -> DataFrame out, same index/columns); NaN stays NaN."""
        A = self._as_array(X, fitting=False)
        self._check(A)
        return self._wrap(X, (A - self.mean_) / self.scale_)

    def inverse_transform(self, X):
        """Undo :meth:`transform`."""
        A = self._as_array(X, fitting=False)
        self._check(A)
        return self._wrap(X, A * self.scale_ + self.mean_)

    def fit_transform(self, X, y=None):
        return self.fit(X, y).transform(X)


class _quiet_nan_warnings:
    def __enter__(self):
        import warnings

        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc):
        return self._w.__exit__(*exc)


def standardize(df, *, fit_on=None, id_columns: Iterable[str] = ID_COLUMNS, with_mean: bool = True,
                with_std: bool = True):
    """Z-score the feature columns of a table, passing ``case_id`` (and other ``id_columns``) through.

    Parameters
    ----------
    df : pandas.DataFrame, shape (n_cases, n_columns)
    fit_on : pandas.DataFrame, optional
        Table whose statistics are used (e.g. the training split); default ``df`` itself.
    id_columns : iterable of str
    with_mean, with_std : bool

    Returns
    -------
    df_std : pandas.DataFrame
        Same shape, index and column order as ``df``.
    scaler : FeatureStandardizer
        Fitted on ``fit_on``'s feature columns; reuse it with ``scaler.transform``.
    """
    ids = tuple(c for c in id_columns if c in df.columns)
    feats = _feature_columns(df, ids)
    ref = df if fit_on is None else fit_on
    missing = [c for c in feats if c not in ref.columns]
    if missing:
        raise InputError(f"standardize: fit_on lacks feature columns {missing[:5]} present in df")
    scaler = FeatureStandardizer(with_mean=with_mean, with_std=with_std).fit(ref[feats])
    out = df.copy()
    out[feats] = scaler.transform(df[feats]).to_numpy()
    return out, scaler
