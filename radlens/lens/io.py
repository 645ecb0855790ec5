"""Save / load a fitted :class:`~radlens.lens.estimator.RadiomicLens` without pickle:
``lens.npz`` (numeric and string arrays, ``allow_pickle=False``) + ``lens.json`` (parameters,
feature names, frame settings, fit report, provenance)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from radlens.errors import InputError

FORMAT = "radlens-lens/1"
_ARRAYS = ("X_", "Z_pre_", "W1_", "b1_", "alpha_", "val_masks_")


def save_lens(lens, path, provenance: dict | None = None) -> Path:
    """Write ``lens`` to folder ``path`` (created); returns the folder."""
    from radlens.io.artifacts import write_json, write_npz
    from radlens.lens.estimator import _check_fitted

    _check_fitted(lens)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    arrays = {k: getattr(lens, k) for k in _ARRAYS}
    arrays["groups_"] = np.asarray(lens.groups_).astype(str)
    if lens.case_ids_ is not None:
        arrays["case_ids_"] = np.asarray(lens.case_ids_).astype(str)
    h = lens.head_pre_
    arrays.update(head_coef=h.coef, head_intercept=h.intercept, head_r2_heldout=h.r2_heldout, head_r2_cv=h.r2_cv)
    ra, rmeta = lens.radiomics_frame_.to_state()
    ea, emeta = lens.embedding_frame_.to_state()
    arrays.update(ra)
    arrays.update(ea)
    write_npz(path / "lens.npz", arrays, {"format": FORMAT})
    params = lens.get_params()
    if params.get("alphas") is not None:
        params["alphas"] = [float(a) for a in params["alphas"]]
    meta = {"format": FORMAT, "params": params, "feature_names": [str(f) for f in lens.feature_names_in_],
            "radiomics_frame": rmeta, "embedding_frame": emeta, "fit_report": lens.fit_report_,
            "extra": getattr(lens, "extra_", {}), "provenance": provenance or {}}
    write_json(path / "lens.json", meta)
    return path


def load_lens(path):
    """Read a lens folder written by :func:`save_lens`."""
    from radlens.io.artifacts import read_json, read_npz
    from radlens.lens.estimator import HeadFit, RadiomicLens
    from radlens.lens.frame import EmbeddingFrame, RadiomicsFrame

    path = Path(path)
    if not (path / "lens.json").exists() or not (path / "lens.npz").exists():
        raise InputError(f"lens folder {str(path)!r} lacks lens.json / lens.npz; create it with "
                         "`radlens fit-pre ... --out LENS_DIR`")
    meta = read_json(path / "lens.json")
    if meta.get("format") != FORMAT:
        raise InputError(f"lens folder {str(path)!r} has format {meta.get('format')!r}; this radlens reads "
                         f"{FORMAT!r}; re-run fit-pre with this version")
    arrays, _ = read_npz(path / "lens.npz")
    lens = RadiomicLens(**meta["params"])
    for k in _ARRAYS:
        setattr(lens, k, arrays[k])
    lens.groups_ = arrays["groups_"].astype(str)
    lens.case_ids_ = arrays["case_ids_"].astype(str) if "case_ids_" in arrays else None
    lens.head_pre_ = HeadFit(arrays["head_coef"], arrays["head_intercept"], arrays["head_r2_heldout"],
                             arrays["head_r2_cv"])
    lens.radiomics_frame_ = RadiomicsFrame.from_state(arrays, meta["radiomics_frame"])
    lens.embedding_frame_ = EmbeddingFrame.from_state(arrays, meta["embedding_frame"])
    lens.feature_names_in_ = np.asarray(meta["feature_names"], dtype=object)
    lens.n_features_in_ = len(meta["feature_names"])
    lens.fit_report_ = meta["fit_report"]
    lens.extra_ = meta.get("extra", {})
    return lens
