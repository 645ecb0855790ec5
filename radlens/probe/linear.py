"""Linear probes: standardised logistic regression scored out-of-fold with grouped CV.

Folds are grouped (by source image in the perturbation panel, by patient for lesions), so a clean
image and its perturbed copy — or two images of one patient — never straddle a train/test split.
Out-of-fold decision values of all samples give one AUC per (pooling, cell), and because every
pooling is scored on the *same* samples the AUCs can be compared by a paired DeLong test.
"""
from __future__ import annotations

import logging
import warnings

import numpy as np

from radlens.errors import InputError

log = logging.getLogger(__name__)

try:  # scikit-learn is a hard dependency; import lazily where it is heavy
    from sklearn.base import BaseEstimator, ClassifierMixin
except ImportError:  # pragma: no cover
    BaseEstimator, ClassifierMixin = object, object


class LinearProbe(ClassifierMixin, BaseEstimator):
    """Standardise features, then L2 logistic regression (the linear probe).

    Parameters
    ----------
    C : float, default 1.0
        Inverse L2 penalty of the logistic regression (on standardised features).
    max_iter : int, default 2000
    random_state : int, default 0

    Attributes
    ----------
    scaler_ : sklearn.preprocessing.StandardScaler
    clf_ : sklearn.linear_model.LogisticRegression
    classes_ : ndarray, shape (2,)
    """

    def __init__(self, C: float = 1.0, max_iter: int = 2000, random_state: int = 0):
        self.C = C
        self.max_iter = max_iter
        self.random_state = random_state

    def fit(self, X, y):
        """Fit on ``X`` (n, d) and binary ``y`` (n,); returns self."""
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        if not (isinstance(self.C, (int, float)) and self.C > 0):
            raise InputError(f"LinearProbe: C={self.C!r} must be a positive number")
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y)
        if X.ndim != 2 or X.shape[0] != y.shape[0]:
            raise InputError(f"LinearProbe.fit: X shape {X.shape} and y shape {y.shape} do not "
                             "match (need X (n, d), y (n,))")
        self.classes_ = np.unique(y)
        if self.classes_.size != 2:
            raise InputError(f"LinearProbe.fit: need two classes in y, got {self.classes_.tolist()}")
        self.scaler_ = StandardScaler().fit(X)
        Xs = np.nan_to_num(self.scaler_.transform(X))
        # liblinear: fast at probe sizes; the dual form when features outnumber samples. It
        # penalises the intercept too, which shifts no ranking (AUC is intercept-free).
        self.clf_ = LogisticRegression(C=float(self.C), solver="liblinear",
                                       dual=bool(Xs.shape[1] > Xs.shape[0]), max_iter=self.max_iter,
                                       random_state=self.random_state)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.clf_.fit(Xs, y)
        return self

    def decision_function(self, X) -> np.ndarray:
        """Logit of the positive class, shape (n,)."""
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "clf_")
        X = np.asarray(X, dtype=np.float64)
        return self.clf_.decision_function(np.nan_to_num(self.scaler_.transform(X)))

    def predict_proba(self, X) -> np.ndarray:
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "clf_")
        return self.clf_.predict_proba(np.nan_to_num(self.scaler_.transform(np.asarray(X, float))))

    def predict(self, X) -> np.ndarray:
        return self.classes_[(self.decision_function(X) > 0).astype(int)]


def grouped_folds(y, groups, n_splits: int = 5, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified, grouped K-fold splits (no group on both sides of a split).

    ``n_splits`` is lowered (with a log message) when there are fewer groups than folds, or
    fewer groups of the rarer class; at least 2 folds are needed.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    y = np.asarray(y)
    groups = np.asarray(groups)
    if y.shape[0] != groups.shape[0]:
        raise InputError(f"grouped_folds: y has {y.shape[0]} rows but groups has {groups.shape[0]}")
    n_groups = np.unique(groups).size
    per_class = [np.unique(groups[y == c]).size for c in np.unique(y)]
    k = min(int(n_splits), n_groups, min(per_class) if per_class else 0)
    if k < 2:
        raise InputError(f"grouped CV: need at least 2 groups of each class for 2 folds; got "
                         f"{n_groups} groups, per class {per_class}; add images/patients")
    if k < n_splits:
        log.info("grouped CV: %d folds instead of %d (only %d groups / %s per class)", k, n_splits,
                 n_groups, per_class)
    cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    return [(tr, te) for tr, te in cv.split(np.zeros(y.size), y, groups)]


def out_of_fold_scores(X, y, groups, *, n_splits: int = 5, C: float = 1.0, seed: int = 0,
                       folds=None) -> np.ndarray:
    """Out-of-fold decision values of a :class:`LinearProbe` under grouped CV.

    Parameters
    ----------
    X : array-like, shape (n, d)
    y : array-like of {0, 1}, shape (n,)
    groups : array-like, shape (n,)   source image / patient of each row
    folds : precomputed ``grouped_folds`` output (so several poolings share identical folds).

    Returns
    -------
    scores : ndarray float64, shape (n,)
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y).astype(int)
    if X.ndim != 2 or X.shape[0] != y.shape[0]:
        raise InputError(f"out_of_fold_scores: X shape {X.shape} does not match y shape {y.shape}")
    if folds is None:
        folds = grouped_folds(y, groups, n_splits, seed)
    scores = np.full(y.shape[0], np.nan)
    for tr, te in folds:
        if np.unique(y[tr]).size < 2:
            raise InputError("out_of_fold_scores: a training fold holds one class only; add more "
                             "groups of the rarer class or lower n_splits")
        scores[te] = LinearProbe(C=C, random_state=seed).fit(X[tr], y[tr]).decision_function(X[te])
    if np.isnan(scores).any():
        raise InputError("out_of_fold_scores: folds do not cover every row")
    return scores
