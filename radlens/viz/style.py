"""Shared figure style and saving (PNG + SVG). Each analysis has its own ``radlens/viz/<name>.py``
with one function per figure kind; they read artifacts, never recompute analyses."""
from __future__ import annotations

from pathlib import Path


def use_agg():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update({
        "figure.dpi": 110, "savefig.dpi": 150, "font.size": 9, "axes.titlesize": 10,
        "axes.labelsize": 9, "legend.fontsize": 8, "axes.spines.top": False,
        "axes.spines.right": False, "savefig.bbox": "tight",
    })
    return plt


def save_figure(fig, out_stem: str | Path, formats=("png", "svg")) -> list[Path]:
    """Save ``fig`` as ``<out_stem>.png`` and ``.svg`` (atomic), close it, return the paths.

    The format extension is appended to the stem (``loc.v2_scores`` -> ``loc.v2_scores.png``); a stem
    that already ends in an image extension (``fig.png``) has it replaced.
    """
    from radlens.io.artifacts import atomic_path

    out_stem = Path(out_stem)
    if out_stem.suffix.lower() in (".png", ".svg", ".pdf", ".jpg", ".jpeg"):
        out_stem = out_stem.with_suffix("")
    paths = []
    for fmt in formats:
        p = out_stem.with_name(f"{out_stem.name}.{fmt}")
        with atomic_path(p) as tmp:
            fig.savefig(tmp, format=fmt)
        paths.append(p)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return paths
