"""``radlens compare``: radiomic changes across downstream tasks."""
from __future__ import annotations

import argparse

from radlens.errors import InputError

NAME = "compare"
HELP = ("radiomic lens: compare tasks (shift tables: heatmap, top-k, rank correlations, class totals; with --lens: "
        "common vs task-specific change and task alignment)")
DESCRIPTION = """\
Shift tables from radlens refit-post (one per fine-tuned encoder / task) give: heatmap radiomic
feature x task of the emphasis headline (features grouped by class; dots mark q<0.05),
top-k bars with bootstrap CIs, task x task Spearman rank correlations and totals per feature class
(heatmap.png, top_k_bars.png, rank_correlation.png, class_totals.png, top_k.csv, global_summary.csv).

With --lens and one --embeddings TASK=PATH per task (post embeddings of the lens's cases) it also
splits the change into what every fine-tuning changed (common: the mean change over tasks) and what
each task changed beyond the others (contrast: its change minus the mean of the other tasks'), each
scored per radiomic feature with the permutation null (z, p, BH q) and bootstrap CIs of refit-post:
OUT/common.csv (feature, feature_class, common_shift, common_z, common_p, common_q, common_rank),
OUT/contrast.csv (task, feature, feature_class, contrast, contrast_ci_low, contrast_ci_high,
contrast_z, contrast_p, contrast_q, contrast_rank), common_heatmap.png, contrast_heatmap.png. With two
tasks the two contrasts are mirror images (identical scores). With --labels (the manifest, or any
table with case_id, optional patient_id and a label column TASK or task_TASK per task) it tests task
alignment: the Pearson correlation over features between each feature's |association| with the task's
labels and the task's specific change of emphasis, with a patient-grouped permutation p
(OUT/alignment.csv: task, alignment, alignment_p, n_features; association.csv; alignment.png).

Layer-wise tables (refit-post with a layer-wise lens): each layer is compared in OUT/<layer>/ as above
(with --lens LENS_DIR of fit-pre --layers and multi-layer --embeddings files: each layer's lens and
layer), and OUT gets layer_features.csv (layer x feature: headline change, z, q per task, and the
common / task-specific decomposition when computed), layer_summary.csv (per layer and task: CKA
pre/post and held-out R2 pre/post with bootstrap CIs) and the figures layer_heatmap (layer x feature
class per task) and layer_depth (CKA and R2 against depth). --layers restricts the layers.

Examples:
  radlens compare shifts_texture.parquet shifts_shape.parquet --out compare/
  radlens compare shifts_*.parquet --lens lens/ --embeddings texture=emb_texture.npz \\
      --embeddings shape=emb_shape.npz --labels cohort/manifest.csv --out compare/
"""


def _task_path(s: str) -> tuple[str, str]:
    if "=" not in s or s.startswith("=") or s.endswith("="):
        raise argparse.ArgumentTypeError(f"--embeddings expects TASK=PATH, got {s!r}")
    t, p = s.split("=", 1)
    return t, p


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("tables", nargs="*", help="shift tables (shifts_*.parquet) from radlens refit-post")
    p.add_argument("--value", default="z", choices=("z", "emphasis", "emphasis_excess", "shift", "shift_z",
                                                    "share_change"),
                   help="heatmap value of the shift tables (default z: emphasis change in null SDs)")
    p.add_argument("--top-k", type=int, default=15, help="features per task in the bar plot (default 15)")
    p.add_argument("--lens", default=None, help="lens folder from radlens fit-pre (cross-task decomposition)")
    p.add_argument("--embeddings", action="append", type=_task_path, default=[], metavar="TASK=PATH",
                   help="post embeddings of one task (repeat per task; needs --lens)")
    p.add_argument("--labels", default=None, help="manifest or table with case_id, optional patient_id and a label "
                   "column TASK or task_TASK per task (task alignment)")
    p.add_argument("--pooling", default=None, help="pooling mode (default: the one the lens was fitted on)")
    p.add_argument("--align", default="scale", choices=("scale", "procrustes", "none"),
                   help="remove each task's global rescale (scale, default), also its orthogonal re-coding "
                   "(procrustes), or nothing (none) before the decomposition")
    p.add_argument("--n-null", type=int, default=200, help="null replicates (default 200; 0: no z/p/q)")
    p.add_argument("--n-boot", type=int, default=200, help="bootstrap replicates for contrast CIs (default 200)")
    p.add_argument("--n-perm", type=int, default=999, help="label permutations of the alignment test (default 999)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--layers", default=None, metavar="all|L1,L2,...",
                   help="layer-wise tables only: the layers to compare (default: all)")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="layer-wise tables only: compare N layers at once in worker processes (default 1)")
    p.add_argument("--out", required=True, help="output folder")


def run(args: argparse.Namespace) -> int:
    from radlens.lens.compare import compare

    emb = dict(args.embeddings)
    if len(emb) != len(args.embeddings):
        raise InputError("compare: a task is given twice in --embeddings; give each TASK=PATH once")
    from radlens.lens.layers import compare_layers, is_layered_table, parse_layers

    cmp, kw = compare, {}
    if any(is_layered_table(t) for t in args.tables) or args.layers is not None:
        cmp, kw = compare_layers, {"layers": parse_layers(args.layers), "jobs": args.jobs}
    elif args.jobs != 1:
        raise InputError(f"--jobs {args.jobs} compares the layers of layer-wise shift tables in parallel; these "
                         "tables are single-layer: leave --jobs out")
    cmp(args.tables, args.out, value=args.value, top_k=args.top_k, lens=args.lens, embeddings=emb or None, **kw,
        labels=args.labels, pooling=args.pooling, n_null=args.n_null, n_boot=args.n_boot, n_perm=args.n_perm,
        seed=args.seed, aligned=args.align)
    return 0
