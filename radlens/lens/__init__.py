"""Radiomic lens: what fine-tuning changed in how embeddings depend on radiomic features.

* :mod:`radlens.lens.estimator`  ``RadiomicLens`` (fit on pre, closed-form heads for pre and post)
* :mod:`radlens.lens.frame`      radiomics / embedding frames fixed on pre
* :mod:`radlens.lens.mlp`        first-layer training (torch)
* :mod:`radlens.lens.scores`     sensitivity, shift, shares through the frozen first layer
* :mod:`radlens.lens.null`       permutation null and bootstrap replicates (vectorised)
* :mod:`radlens.lens.specific`   feature-specific Freedman–Lane null (analytic moments)
* :mod:`radlens.lens.shift`      the per-feature shift table and global summaries
* :mod:`radlens.lens.pipeline`   ``fit_pre`` / ``refit_post`` (artifacts in, artifacts out)
* :mod:`radlens.lens.emphasis`   the emphasis headline; Procrustes + scale decomposition of a change
* :mod:`radlens.lens.changes`    scores + null + bootstrap of several per-case changes at once
* :mod:`radlens.lens.crosstask`  common vs task-specific change, task alignment (``compare --lens``)
* :mod:`radlens.lens.compare`    cross-task comparison, ``class_enrichment``, ``precision_at_k``
* :mod:`radlens.lens.io`         save / load without pickle
* :mod:`radlens.lens.planted`    planted-truth simulations

See ``docs/lens.md`` (the ``compare`` function lives in :mod:`radlens.lens.compare`). Names below are imported lazily (``radlens --help`` stays instant).
"""
_LAZY = {"RadiomicLens": "radlens.lens.estimator", "fit_pre": "radlens.lens.pipeline",
         "refit_post": "radlens.lens.pipeline",
         "class_enrichment": "radlens.lens.compare", "precision_at_k": "radlens.lens.compare",
         "load_lens": "radlens.lens.io", "save_lens": "radlens.lens.io", "shift_table": "radlens.lens.shift",
         "cross_task": "radlens.lens.crosstask", "task_alignment": "radlens.lens.crosstask",
         "task_changes": "radlens.lens.crosstask", "decompose": "radlens.lens.crosstask",
         "compare_tasks": "radlens.lens.crosstask", "score_changes": "radlens.lens.changes"}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'radlens.lens' has no attribute {name!r}")
