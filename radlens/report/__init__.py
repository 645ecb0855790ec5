"""``radlens report``: one self-contained HTML page of a ``radlens run`` folder.

The report only *reads* artefacts (tables, figures) written by the stages; figures of its own
(cohort examples, training summary, planted-truth checks, trade-off) go to ``<run>/figures/`` as
PNG + SVG and are embedded in the page as base64 PNG, so ``report.html`` is a single file that can
be mailed or archived. A section whose stage did not run says so, with the reason.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

SECTIONS = ("overview", "cohort", "training", "lens", "planted", "cam", "probe", "localization", "provenance")


def report(run_dir: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Write the HTML report of a run folder.

    Parameters
    ----------
    run_dir : path
        Folder written by :func:`radlens.study.run` (holds ``run.json`` and ``stages/``).
    out : path, optional
        HTML file (default ``<run_dir>/report.html``).

    Returns
    -------
    pathlib.Path of the HTML file.

    Raises
    ------
    InputError
        ``run_dir`` is not a run folder.
    """
    from radlens.errors import InputError
    from radlens.io.artifacts import atomic_write_text
    from radlens.report import html as H
    from radlens.report.sections import Context, build_sections

    run_dir = Path(run_dir)
    if not (run_dir / "run.json").exists():
        raise InputError(f"{str(run_dir)!r} is not a radlens run folder (no run.json); run "
                         "`radlens run STUDY.yaml` or `radlens demo` first")
    ctx = Context.load(run_dir)
    secs = build_sections(ctx)
    title = f"radlens report — {ctx.run.get('study', 'study')}"
    n = len(ctx.stages)
    n_fail = sum(1 for s in ctx.stages.values() if s.get("status") == "failed")
    subtitle = (f"run folder {H.esc(run_dir.resolve())} · {n} stages, "
                + (f'<span class="bad">{n_fail} failed</span>' if n_fail else '<span class="ok">none failed</span>')
                + f" · radlens {H.esc(ctx.run.get('versions', {}).get('radlens', '?'))}")
    out = Path(out) if out is not None else run_dir / "report.html"
    atomic_write_text(out, H.page(title, subtitle, secs))
    log.info("report: %s (%d sections)", out, len(secs))
    return out
