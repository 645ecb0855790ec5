"""radlens.radiomics: pyradiomics extraction at scale (:mod:`.extract`) and feature tables
(:mod:`.features`).

Import-light: ``import radlens.radiomics`` loads neither pyradiomics nor SimpleITK; the names
below are resolved from their submodules on first use.
"""
from __future__ import annotations

import importlib

_LAZY = {
    "radiomics": "extract", "load_params": "extract", "extract_case": "extract", "RadiomicsResult": "extract",
    "DEFAULT_PARAMS": "extract",
    "feature_class": "features", "image_type": "features", "clean_features": "features",
    "standardize": "features", "FeatureStandardizer": "features",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
