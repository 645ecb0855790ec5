"""Shared figure style and saving (PNG + SVG). Each analysis has its own ``radlens/viz/<name>.py``
with one function per figure kind; they read artifacts, never recompute analyses."""
from __future__ import annotations

import contextlib
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


#: formats :func:`save_figure` writes when its caller names none (:func:`figure_formats` changes it)
FORMATS = ("png", "svg")
_ALLOWED = ("png", "svg", "pdf")
#: savefig metadata that leaves the creation date out, per format (PNG carries none)
_NO_DATE = {"svg": {"Date": None}, "pdf": {"CreationDate": None}}


def check_formats(formats) -> tuple[str, ...]:
    """``formats`` as a tuple, PNG first; ValueError naming what is allowed."""
    fm = [str(f).lower().lstrip(".") for f in formats]
    bad = [f for f in fm if f not in _ALLOWED]
    if bad or "png" not in fm:
        raise ValueError(f"allowed formats are {list(_ALLOWED)}, and png is required (the report embeds the PNGs)")
    return tuple(dict.fromkeys(["png"] + fm))


@contextlib.contextmanager
def figure_formats(formats):
    """Within the block, :func:`save_figure` writes ``formats`` by default (e.g. ``("png",)``: no SVG
    copies). Module state: forked worker processes inherit it, spawned ones do not."""
    global FORMATS
    old, FORMATS = FORMATS, check_formats(formats)
    try:
        yield
    finally:
        FORMATS = old


def save_figure(fig, out_stem: str | Path, formats=None) -> list[Path]:
    """Save ``fig`` as ``<out_stem>.png`` and ``.svg`` (``formats``; default :data:`FORMATS`; atomic),
    close it, return the paths (PNG first).

    The format extension is appended to the stem (``loc.v2_scores`` -> ``loc.v2_scores.png``); a stem
    that already ends in an image extension (``fig.png``) has it replaced.
    """
    from radlens.io.artifacts import atomic_path

    out_stem = Path(out_stem)
    if out_stem.suffix.lower() in (".png", ".svg", ".pdf", ".jpg", ".jpeg"):
        out_stem = out_stem.with_suffix("")
    import matplotlib.pyplot as plt

    paths = []
    for fmt in (FORMATS if formats is None else formats):
        p = out_stem.with_name(f"{out_stem.name}.{fmt}")
        # the same figure gives the same bytes: no creation date, SVG ids from a fixed salt
        with atomic_path(p) as tmp, plt.rc_context({"svg.hashsalt": "radlens"}):
            fig.savefig(tmp, format=fmt, metadata=_NO_DATE.get(fmt))
        paths.append(p)

    plt.close(fig)
    return paths
