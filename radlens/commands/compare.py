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

Layer-wise tables (refit-post with a layer-wise lens): each layer is compared in OUT/<layer>/ as above,
and OUT gets layer_features.csv (layer x feature: headline change, z, q per task, and the common /
task-specific decomposition when present), layer_summary.csv (per layer and task: CKA pre/post and
held-out R2 pre/post with bootstrap CIs) and the figures layer_heatmap (layer x feature class per
task) and layer_depth (CKA and R2 against depth). --layers restricts the layers.

Example:
  radlens compare shifts_texture.parquet shifts_shape.parquet shifts_intensity.parquet --out compare/
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("tables", nargs="+", help="shift tables (shifts_*.parquet)")
    p.add_argument("--value", default="z", choices=("z", "shift", "shift_excess", "share_change"),
                   help="heatmap value (default z: shift in null SDs, comparable across tasks)")
    p.add_argument("--top-k", type=int, default=15, help="features per task in the bar plot (default 15)")
    p.add_argument("--layers", default=None, metavar="all|L1,L2,...",
                   help="layer-wise tables only: the layers to compare (default: all)")
    p.add_argument("--out", required=True, help="output folder")


def run(args: argparse.Namespace) -> int:
    from radlens.lens.compare import compare
    from radlens.lens.layers import compare_layers, is_layered_table, parse_layers

    cmp, kw = compare, {}
    if any(is_layered_table(t) for t in args.tables) or args.layers is not None:
        cmp, kw = compare_layers, {"layers": parse_layers(args.layers)}
    cmp(args.tables, args.out, value=args.value, top_k=args.top_k, **kw)
    return 0
