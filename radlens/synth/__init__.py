"""radlens.synth: phantom cohorts with planted ground truth (``make_cohort``), demo models and training.

``make_cohort`` is imported lazily so ``import radlens.synth`` stays cheap.
"""
from __future__ import annotations

__all__ = ["make_cohort", "render_cohort", "sample_attributes"]


def __getattr__(name):
    if name in __all__:
        from radlens.synth import cohort

        return getattr(cohort, name)
    raise AttributeError(f"module 'radlens.synth' has no attribute {name!r}")
