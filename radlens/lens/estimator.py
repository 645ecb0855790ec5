"""``RadiomicLens``: radiomics → embedding two-layer MLP whose first layer is frozen after fitting on
the pre embeddings and whose linear head is re-estimated, in closed form and with one estimator,
for the pre embeddings and for every post embedding.

See ``docs/lens.md`` for the definitions and the reasons behind them.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from radlens.errors import InputError
from radlens.lens.frame import SCALINGS, EmbeddingFrame, RadiomicsFrame, principal_scores
from radlens.lens.mlp import ACTIVATIONS, activation, train_first_layer
from radlens.stats.ridge import group_kfold, pooled_r2, ridge_cv, ridge_fit

log = logging.getLogger(__name__)


class _ParamsMixin:
    """scikit-learn parameter protocol (``get_params``/``set_params``/``clone``) without importing
    scikit-learn at module import time."""

    @classmethod
    def _param_names(cls):
        import inspect

        return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]

    def get_params(self, deep: bool = True) -> dict:
        return {k: getattr(self, k) for k in self._param_names()}

    def set_params(self, **params):
        valid = self._param_names()
        for k, v in params.items():
            if k not in valid:
                raise ValueError(f"Invalid parameter {k!r} for {type(self).__name__}; valid: {valid}")
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        default = type(self)().get_params()
        changed = {k: v for k, v in self.get_params().items() if repr(v) != repr(default[k])}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in changed.items())})"


def _check_fitted(est):
    from sklearn.exceptions import NotFittedError

    if not hasattr(est, "W1_"):
        raise NotFittedError(f"This {type(est).__name__} instance is not fitted yet; call fit(X, Z_pre) "
                             "or RadiomicLens.load(lens_dir) first")


def grouped_holdout(groups, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split rows into (train, validation) with whole groups on one side; about ``fraction`` of the
    rows (at least one group, never all) go to validation.

    Parameters
    ----------
    groups : array-like, shape (n,);  fraction : float in (0, 1);  seed : int

    Returns
    -------
    train_idx, val_idx : integer arrays
    """
    g = np.asarray(groups)
    uniq, inv = np.unique(g, return_inverse=True)
    if uniq.size < 2:
        raise InputError("need at least 2 patients (groups) for a validation split; got 1")
    rng = np.random.default_rng(seed)
    order = rng.permutation(uniq.size)
    sizes = np.bincount(inv)
    target = fraction * g.size
    val_groups, acc = [], 0
    for k in order:
        if (acc >= target and val_groups) or len(val_groups) == uniq.size - 1:
            break
        val_groups.append(k)
        acc += sizes[k]
    val = np.isin(inv, val_groups)
    return np.flatnonzero(~val), np.flatnonzero(val)


@dataclass
class HeadFit:
    """Closed-form heads (one per seed) for one set of embeddings.

    coef : (S, m, k);  intercept : (S, k);  r2_heldout : (S,) pooled R² on each seed's validation
    split of a head fitted on that seed's training split (same penalty);  r2_cv : (S,) grouped-CV
    R² at the lens penalty.
    """

    coef: np.ndarray
    intercept: np.ndarray
    r2_heldout: np.ndarray
    r2_cv: np.ndarray


class RadiomicLens(_ParamsMixin):
    """Radiomic lens on an encoder's embeddings (scikit-learn estimator).

    Parameters
    ----------
    hidden : int, default 64
        Width m of the hidden layer.
    activation : {"tanh", "gelu", "softplus", "sigmoid", "relu"}, default "tanh"
        Hidden activation σ (smooth ones give a smooth Jacobian).
    n_seeds : int, default 5
        Independent first layers (different initialisation and validation split); scores are
        aggregated over seeds and their agreement is reported.
    weight_decay, lr : float, defaults 1e-2, 1e-2
        AdamW settings for the first-layer training.
    max_epochs, patience, batch_size : int, defaults 300, 20, 64
        Early stopping on the validation loss (the best epoch's first layer is kept).
    val_fraction : float, default 0.2
        Fraction of cases (whole patients) held out for early stopping and held-out R².
    embedding_scaling : {"global", "per_dim", "none"}, default "global"
        Frame scaling of embeddings. ``global`` (one scalar) keeps the frame orthogonally
        equivariant; ``per_dim`` does not (see docs/lens.md).
    n_components : int or None, default None
        Optional PCA projection of the frame to k components (fitted on pre).
    alphas : sequence of float or None
        Ridge penalty grid for the closed-form head (default ``logspace(-5, 2, 15)``).
    cv_folds : int, default 5
        Grouped CV folds for the penalty.
    clip : float or None, default 5.0
        Standardised radiomics are clipped to ±clip.
    near_duplicate_threshold : float or None
        Passed to radiomics cleaning (drop one of two features with |r| above it).
    random_state : int, default 0

    Attributes
    ----------
    feature_names_in_ : ndarray of str, shape (p,)
    radiomics_frame_, embedding_frame_ : fitted frames
    X_ : (n, p) standardised radiomics of the training cases
    Z_pre_ : (n, k) pre embeddings in the frame
    groups_ : (n,) patient labels;  case_ids_ : (n,) or None
    W1_ : (S, m, p);  b1_ : (S, m);  alpha_ : (S,)
    head_pre_ : HeadFit;  val_masks_ : (S, n) bool
    fit_report_ : list of dict (per seed: epochs, best epoch, MLP val R², penalty, CV R²)
    """

    def __init__(self, hidden=64, activation="tanh", n_seeds=5, weight_decay=1e-2, lr=1e-2, max_epochs=300,
                 patience=20, batch_size=64, val_fraction=0.2, embedding_scaling="global", n_components=None,
                 alphas=None, cv_folds=5, clip=5.0, near_duplicate_threshold=None, random_state=0):
        self.hidden = hidden
        self.activation = activation
        self.n_seeds = n_seeds
        self.weight_decay = weight_decay
        self.lr = lr
        self.max_epochs = max_epochs
        self.patience = patience
        self.batch_size = batch_size
        self.val_fraction = val_fraction
        self.embedding_scaling = embedding_scaling
        self.n_components = n_components
        self.alphas = alphas
        self.cv_folds = cv_folds
        self.clip = clip
        self.near_duplicate_threshold = near_duplicate_threshold
        self.random_state = random_state

    # ------------------------------------------------------------------ checks
    def _check_params(self):
        def bad(name, allowed):
            raise InputError(f"RadiomicLens: {name}={getattr(self, name)!r} not allowed; {allowed}")

        if self.activation not in ACTIVATIONS:
            bad("activation", f"use one of {ACTIVATIONS}")
        if self.embedding_scaling not in SCALINGS:
            bad("embedding_scaling", f"use one of {SCALINGS}")
        for name in ("hidden", "n_seeds", "max_epochs", "patience", "batch_size"):
            if not (isinstance(getattr(self, name), (int, np.integer)) and getattr(self, name) >= 1):
                bad(name, "use an integer >= 1")
        if not (isinstance(self.cv_folds, (int, np.integer)) and self.cv_folds >= 2):
            bad("cv_folds", "use an integer >= 2")
        if not 0 < float(self.val_fraction) < 0.5:
            bad("val_fraction", "use a value in (0, 0.5)")
        for name in ("weight_decay", "lr"):
            if not float(getattr(self, name)) >= 0:
                bad(name, "use a value >= 0")

    def _as_frame(self, X):
        import pandas as pd

        if isinstance(X, pd.DataFrame):
            return X.drop(columns=[c for c in ("case_id",) if c in X.columns])
        X = np.asarray(X, float)
        if X.ndim != 2:
            raise InputError(f"radiomics X must be 2-D (cases, features), got shape {X.shape}")
        return pd.DataFrame(X, columns=[f"x{j}" for j in range(X.shape[1])])

    # ------------------------------------------------------------------ fit
    def fit(self, X, Z, groups=None, case_ids=None) -> "RadiomicLens":
        """Fit frames, first layers (one per seed), penalties and pre heads.

        Parameters
        ----------
        X : DataFrame (feature columns; ``case_id`` ignored) or ndarray, shape (n, p)
            Radiomics of the n cases, rows aligned with ``Z``.
        Z : ndarray, shape (n, d)
            Pre (before fine-tuning) embeddings.
        groups : array-like, shape (n,), optional
            Patient labels; no patient is split across training/validation or CV folds
            (default: every case its own group).
        case_ids : array-like of str, shape (n,), optional
            Stored so that post embeddings can be aligned to the training rows.

        Returns
        -------
        self
        """
        self._check_params()
        df = self._as_frame(X)
        Z = np.asarray(Z, float)
        n = len(df)
        if Z.ndim != 2 or Z.shape[0] != n:
            raise InputError(f"embeddings Z have shape {Z.shape}; expected ({n}, d) rows aligned with X")
        if not np.isfinite(Z).all():
            bad = np.flatnonzero(~np.isfinite(Z).all(1))
            raise InputError(f"pre embeddings have non-finite values in rows {bad[:10].tolist()}; re-run embed "
                             "for these cases or drop them from both tables")
        groups = np.arange(n).astype(str) if groups is None else np.asarray(groups).astype(str)
        if groups.shape != (n,):
            raise InputError(f"groups has shape {groups.shape}; expected ({n},)")
        if n < 10:
            raise InputError(f"RadiomicLens needs at least 10 cases, got {n}")
        self.radiomics_frame_ = RadiomicsFrame(self.clip, self.near_duplicate_threshold).fit(df)
        self.X_ = self.radiomics_frame_.transform(df)
        self.feature_names_in_ = np.asarray(self.radiomics_frame_.features_, dtype=object)
        self.n_features_in_ = self.X_.shape[1]
        self.embedding_frame_ = EmbeddingFrame(self.embedding_scaling, self.n_components).fit(Z)
        self.Z_pre_ = self.embedding_frame_.transform(Z)
        self.groups_ = groups
        self.case_ids_ = None if case_ids is None else np.asarray(case_ids).astype(str)
        T = principal_scores(self.Z_pre_)   # canonical, basis-free training target
        W1, b1, alphas, masks, report = [], [], [], [], []
        from radlens.progress import progress

        for s in progress(range(self.n_seeds), desc="fit-pre seeds", unit="seed"):
            seed = int(self.random_state) + s
            tr, va = grouped_holdout(groups, float(self.val_fraction), seed)
            res = train_first_layer(self.X_, T, tr, va, hidden=int(self.hidden), act=self.activation,
                                    weight_decay=float(self.weight_decay), lr=float(self.lr),
                                    max_epochs=int(self.max_epochs), patience=int(self.patience),
                                    batch_size=int(self.batch_size), seed=seed)
            H = activation(self.activation, self.X_ @ res["W1"].T + res["b1"])[0]
            cv = ridge_cv(H, self.Z_pre_, groups, self.alphas, int(self.cv_folds), seed)
            if cv["alpha"] in (cv["alphas"][0], cv["alphas"][-1]):
                log.warning("seed %d: ridge penalty %.3g is at the edge of the grid; consider widening alphas",
                            seed, cv["alpha"])
            W1.append(res["W1"])
            b1.append(res["b1"])
            alphas.append(cv["alpha"])
            m = np.zeros(n, bool)
            m[va] = True
            masks.append(m)
            report.append({"seed": seed, "epochs": res["epochs"], "best_epoch": res["best_epoch"],
                           "mlp_val_r2": res["val_r2"], "alpha": cv["alpha"],
                           "cv_r2": float(np.nanmax(cv["cv_r2"])), "n_train": int(tr.size), "n_val": int(va.size)})
        self.W1_ = np.stack(W1)
        self.b1_ = np.stack(b1)
        self.alpha_ = np.asarray(alphas, float)
        self.val_masks_ = np.stack(masks)
        self.head_pre_ = self.refit_head(self.Z_pre_, frame=False)
        for rec, r2 in zip(report, self.head_pre_.r2_heldout):
            rec["head_val_r2"] = float(r2)
        self.fit_report_ = report
        log.info("fit-pre: %d cases, %d features, frame dim %d, held-out R² (closed-form head) %.3f",
                 n, self.n_features_in_, self.Z_pre_.shape[1], float(np.mean(self.head_pre_.r2_heldout)))
        return self

    # ------------------------------------------------------------------ hidden layer
    def hidden_activations(self, s: int, X=None) -> tuple[np.ndarray, np.ndarray]:
        """Hidden activations and derivatives of seed ``s`` for standardised radiomics ``X``
        (default: the training cases), each shape (n, m)."""
        _check_fitted(self)
        X = self.X_ if X is None else X
        return activation(self.activation, X @ self.W1_[s].T + self.b1_[s])

    def transform_embeddings(self, Z) -> np.ndarray:
        """Embeddings (n, d) → frame coordinates (n, k) with the frame fitted on pre."""
        _check_fitted(self)
        return self.embedding_frame_.transform(Z)

    # ------------------------------------------------------------------ heads
    def refit_head(self, Z, frame: bool = True) -> HeadFit:
        """Re-estimate the head of every seed on embeddings ``Z`` of the training cases (same row
        order) with the closed-form ridge and the penalty chosen on pre.

        Parameters
        ----------
        Z : ndarray, shape (n, d) (raw embeddings; ``frame=False``: already frame coordinates (n, k))

        Returns
        -------
        HeadFit
        """
        _check_fitted(self)
        Y = self.transform_embeddings(Z) if frame else np.asarray(Z, float)
        if Y.shape[0] != self.X_.shape[0]:
            raise InputError(f"embeddings have {Y.shape[0]} rows; the lens was fitted on {self.X_.shape[0]} "
                             "cases and the head is re-estimated on the same cases")
        coefs, ints, r2h, r2c = [], [], [], []
        for s in range(self.W1_.shape[0]):
            H = self.hidden_activations(s)[0]
            a = float(self.alpha_[s])
            c, b = ridge_fit(H, Y, a)
            coefs.append(c)
            ints.append(b)
            va = self.val_masks_[s]
            ct, bt = ridge_fit(H[~va], Y[~va], a)
            r2h.append(pooled_r2(Y[va], H[va] @ ct + bt, Y[~va].mean(0)))
            r2c.append(self._cv_r2(H, Y, a, s))
        return HeadFit(np.stack(coefs), np.stack(ints), np.asarray(r2h), np.asarray(r2c))

    def _cv_r2(self, H, Y, alpha, s):
        k = int(min(self.cv_folds, np.unique(self.groups_).size))
        sse = sst = 0.0
        for tr, te in group_kfold(self.groups_, k, int(self.random_state) + s):
            c, b = ridge_fit(H[tr], Y[tr], alpha)
            sse += float(((Y[te] - H[te] @ c - b) ** 2).sum())
            sst += float(((Y[te] - Y[tr].mean(0)) ** 2).sum())
        return 1 - sse / sst if sst > 0 else float("nan")

    # ------------------------------------------------------------------ sklearn surface
    def predict(self, X) -> np.ndarray:
        """Pre embeddings (frame coordinates, shape (n, k)) predicted from radiomics ``X`` by the
        closed-form pre heads, averaged over seeds."""
        _check_fitted(self)
        Xs = self.radiomics_frame_.transform(self._as_frame(X))
        out = 0
        for s in range(self.W1_.shape[0]):
            H = activation(self.activation, Xs @ self.W1_[s].T + self.b1_[s])[0]
            out = out + H @ self.head_pre_.coef[s] + self.head_pre_.intercept[s]
        return out / self.W1_.shape[0]

    def score(self, X, Z) -> float:
        """Pooled R² of :meth:`predict` against embeddings ``Z`` (raw, shape (n, d))."""
        Y = self.transform_embeddings(Z)
        return pooled_r2(Y, self.predict(X), Y.mean(0))

    def shift_scores(self, Z_post, **kw):
        """Per-feature shift table and global summaries for post embeddings ``Z_post`` (n, d) of the
        training cases; see :func:`radlens.lens.shift.shift_table` for the keywords."""
        from radlens.lens.shift import shift_table

        _check_fitted(self)
        return shift_table(self, Z_post, **kw)

    def save(self, path) -> None:
        """Write the lens to folder ``path`` (npz + JSON, no pickle)."""
        from radlens.lens.io import save_lens

        save_lens(self, path)

    @classmethod
    def load(cls, path) -> "RadiomicLens":
        """Read a lens written by :meth:`save`."""
        from radlens.lens.io import load_lens

        return load_lens(path)
