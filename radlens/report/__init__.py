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

SECTIONS = ("overview", "cohort", "training", "lens", "planted", "cam", "probe", "localization", "stages",
            "provenance")


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
    from radlens.io.artifacts import write_json
    from radlens.report.verdicts import findings

    ctx = Context.load(run_dir)
    out = Path(out) if out is not None else run_dir / "report.html"
    tok = (H.LINK_BASE.set(out.parent), H.RUN_DIR.set(run_dir))
    try:
        secs = build_sections(ctx)
        found = findings(ctx)
    finally:
        H.LINK_BASE.reset(tok[0])
        H.RUN_DIR.reset(tok[1])
    title = f"radlens report — {ctx.run.get('study', 'study')}"
    subtitle = status_line(ctx, found["warnings"]) + (
        f" · run folder {H.esc(run_dir.resolve())} · radlens {H.esc(ctx.run.get('versions', {}).get('radlens', '?'))}")
    top = ("<section id=\"findings\"><h2>Findings</h2>" + H.verdict_list(found["verdicts"])
           + H.warnings_box(found["warnings"]) + "</section>")
    write_json(run_dir / "findings.json", found)
    atomic_write_text(out, H.page(title, subtitle, secs, top=top))
    log.info("report: %s (%d sections, %d warnings)", out, len(secs), len(found["warnings"]))
    return out


def status_line(ctx, warnings: list[dict]) -> str:
    """Header status: failed stages AND failed checks (HTML)."""
    from radlens.report import html as H

    n = len(ctx.stages)
    n_fail = sum(1 for s in ctx.stages.values() if s.get("status") == "failed")
    n_err = sum(w.get("severity") == "error" for w in warnings)
    n_warn = len(warnings) - n_err
    parts = [f"{n} stages, " + (f'<span class="bad">{n_fail} failed</span>' if n_fail else "none failed")]
    if n_warn or n_err:
        parts.append(f'<a href="#warnings" class="bad">{len(warnings)} warning{"s" if len(warnings) != 1 else ""}'
                     + (f" ({n_err} errors)" if n_err else "") + "</a>")
    else:
        parts.append('<span class="ok">no warnings</span>')
    cls = "bad" if (n_fail or warnings) else "ok"
    label = "needs attention" if (n_fail or warnings) else "all checks passed"
    return f'<b class="{cls}">{label}</b>: ' + " · ".join(parts)
