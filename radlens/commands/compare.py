"""``radlens compare``: radiomic shifts across downstream tasks."""
from __future__ import annotations

import argparse

NAME = "compare"
HELP = "radiomic lens: compare shift tables across tasks (heatmap, top-k bars, rank correlations, class totals)"
DESCRIPTION = """\
Read several shift tables from radlens refit-post (one per fine-tuned encoder / task) and write:
heatmap radiomic feature x task (features grouped by class, clustered within; dots mark q<0.05),
top-k bars with bootstrap CIs per task, task x task Spearman rank-correlation matrix, and totals per
feature class (share of the total squared shift). Figures as PNG and SVG, tables as CSV.

Example:
  radlens compare shifts_texture.parquet shifts_shape.parquet shifts_intensity.parquet --out compare/
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("tables", nargs="+", help="shift tables (shifts_*.parquet)")
    p.add_argument("--value", default="z", choices=("z", "shift", "shift_excess", "share_change"),
                   help="heatmap value (default z: shift in null SDs, comparable across tasks)")
    p.add_argument("--top-k", type=int, default=15, help="features per task in the bar plot (default 15)")
    p.add_argument("--out", required=True, help="output folder")


def run(args: argparse.Namespace) -> int:
    from radlens.lens.compare import compare

    compare(args.tables, args.out, value=args.value, top_k=args.top_k)
    return 0
