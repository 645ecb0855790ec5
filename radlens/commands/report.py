"""``radlens report``: one self-contained HTML page of a run folder."""
from __future__ import annotations

import argparse

NAME = "report"
HELP = "write RUN_DIR/report.html: every analysis of a run folder on one self-contained page"
DESCRIPTION = """Write one self-contained HTML page (figures embedded as base64) from the artefacts of a
`radlens run` folder. It opens with one verdict per analysis and a Warnings box (failed sanity checks,
weak fits, unlearned tasks, near-chance scores, small-count rankings, failed stages), also written to
RUN_DIR/findings.json; then the cohort summary, radiomic shift heatmap and top features per task, planted-truth /
expected-class checks, CAM overlays and drift tables, pooling-probe curves, localization trade-off,
the config, versions and input hashes. Analyses that did not run are listed with the reason.

example:
  radlens report demo/
  radlens report runs/v2 --out runs/v2/summary.html
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="run folder written by `radlens run` / `radlens demo`")
    p.add_argument("--out", default=None, help="HTML file (default RUN_DIR/report.html)")


def run(args: argparse.Namespace) -> int:
    from radlens.report import report

    import json
    from pathlib import Path

    out = report(args.run_dir, out=args.out)
    ws = json.loads((Path(args.run_dir) / "findings.json").read_text(encoding="utf-8")).get("warnings", [])
    print(f"report: {out} ({len(ws)} warning{'s' if len(ws) != 1 else ''})")
    return 0
