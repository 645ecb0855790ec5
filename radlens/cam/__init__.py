"""CAM drift: attribution maps of two (or more) checkpoints and how the evidence moved.

* :mod:`radlens.cam.base`      one base owning hooks, the backward pass, ReLU, upsampling
* :mod:`radlens.cam.methods`   LayerCAM, Grad-CAM++, Grad-CAM (one combination rule each), IG (captum)
* :mod:`radlens.cam.vit`       ViT token sequences -> patch grids
* :mod:`radlens.cam.model`     classifiers from a classifier spec; randomised copies
* :mod:`radlens.cam.drift`     per-sample drift metrics, true-positive filter
* :mod:`radlens.cam.aggregate` summaries, paired tests, rankings, ranking reversals
* :mod:`radlens.cam.run`       :func:`cam_drift` / :func:`cam_drift_study`

Heavy libraries (torch, captum) are imported inside functions; names below load lazily.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "CAMResult": "radlens.cam.base", "GradCAM": "radlens.cam.methods", "GradCAMPlusPlus": "radlens.cam.methods",
    "LayerCAM": "radlens.cam.methods", "IntegratedGradients": "radlens.cam.methods",
    "MultiCAM": "radlens.cam.methods", "attribute_methods": "radlens.cam.methods",
    "make_method": "radlens.cam.methods", "METHODS": "radlens.cam.methods", "TokenLayout": "radlens.cam.vit",
    "load_classifier": "radlens.cam.model", "Classifier": "radlens.cam.model",
    "drift_metrics": "radlens.cam.drift", "true_positive_filter": "radlens.cam.drift",
    "summarize": "radlens.cam.aggregate", "paired_tests": "radlens.cam.aggregate",
    "architecture_rankings": "radlens.cam.aggregate", "ranking_reversals": "radlens.cam.aggregate",
    "cam_drift": "radlens.cam.run", "cam_drift_study": "radlens.cam.run", "ModelPair": "radlens.cam.run",
    "CamDriftResult": "radlens.cam.run",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'radlens.cam' has no attribute {name!r}")
