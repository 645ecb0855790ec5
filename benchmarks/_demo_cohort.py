"""The demo's phantom cohort for the recipe harnesses (``vit_recipe.py``, ``cnn_cam.py``), drawn once
per work folder and flavour."""
from __future__ import annotations

from pathlib import Path


def cohort(work: Path, quick: bool) -> Path:
    """``work/cohort_<n>/manifest.csv`` of the demo's cohort (seed 0; QUICK or FULL size), drawn if absent."""
    from radlens.demo import FULL, QUICK, draw_cohort

    size = QUICK if quick else FULL
    out = work / f"cohort_{size.n_cases}"
    if not (out / "manifest.csv").exists():
        draw_cohort(out, size, seed=0)
    return out / "manifest.csv"
