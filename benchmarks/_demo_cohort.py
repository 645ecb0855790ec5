"""The demo's phantom cohort for the recipe harnesses (``vit_recipe.py``, ``vit_cam.py``, ``cnn_cam.py``), drawn
once per work folder and flavour, and the ViT harnesses' common options."""
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


def recipe_parser(description: str, work: str):
    """The ViT recipe harnesses' common options: ``--work``, ``--quick``, ``--seeds``, ``--set``."""
    import argparse

    p = argparse.ArgumentParser(description=description)
    p.add_argument("--work", default=work, help="cohort and checkpoint / pretext cache folder")
    p.add_argument("--quick", action="store_true", help="the quick demo's cohort and epochs")
    p.add_argument("--seeds", default="0")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="TrainConfig field (Python literal, else a string), e.g. vit_patch=4; repeatable")
    return p


def _literal(v: str):
    """A ``--set`` value: a Python literal, else the bare string (``vit_intensity=window``)."""
    import ast

    try:
        return ast.literal_eval(v)
    except (ValueError, SyntaxError):
        return v


def vit_setup(a) -> tuple:
    """``(DemoSize, TrainConfig overrides, work folder, cohort manifest)`` of parsed :func:`recipe_parser`
    options: the ``--set`` fields plus the flavour's ViT epochs where not set; the cohort drawn if absent."""
    from radlens.demo import FULL, QUICK

    size = QUICK if a.quick else FULL
    over = {k: _literal(v) for k, v in (s.split("=", 1) for s in a.set)}
    over.setdefault("vit_epoch_factor", size.vit_epoch_factor)
    over.setdefault("vit_pretext_epochs", size.vit_pretext_epochs)
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    return size, over, work, cohort(work, a.quick)
