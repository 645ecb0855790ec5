"""radlens tradeoff: task performance vs localization score per checkpoint, from `radlens localize` outputs."""
from __future__ import annotations

NAME = "tradeoff"
HELP = "accuracy-interpretability trade-off: task AUC vs localization score per checkpoint (table + figure)"
DESCRIPTION = """\
Per checkpoint: the mean localization score over samples with a 95% patient-cluster bootstrap
CI (from `radlens localize` per-sample tables) against the task performance with its 95% CI
(given in a table, or the AUC with a DeLong CI computed from predictions).

Localization (--loc, repeatable):
  --loc NAME=PATH          one per checkpoint, in training order (PATH: a `localize --out` table);
  --loc NAME=PATH@SET      take map set SET of a two-set `localize` table;
  --loc PATH               one table with two map sets (`localize --maps-b`): its map sets
                           (map_set column, e.g. a b, or the --names given) are the checkpoints.
Task performance (one of):
  --task perf.csv          columns checkpoint, task_metric[, task_low, task_high, task_n]
  --predictions p.parquet  one row per case and checkpoint: checkpoint, y_true (0/1), y_score
The checkpoint names must match the NAMEs (or the map sets).

Writes OUT (checkpoint, order, score, loc_mean, loc_low, loc_high, loc_n, task_metric,
task_low, task_high, task_n, task_ci_method) and OUT's stem .png/.svg: task AUC (x) vs the score
(y), error bars 95% CIs, checkpoints joined in order with arrows. Definitions:
docs/localization.md.

examples:
  radlens tradeoff --loc pre=loc_pre.parquet --loc ft-1k=loc_1k.parquet \\
      --loc ft-5k=loc_5k.parquet --predictions preds.parquet --score pointing_game \\
      --out tradeoff.csv
  radlens tradeoff --loc loc.parquet --task perf.csv --out tradeoff.csv   # map sets a, b
"""


def add_arguments(p) -> None:
    p.add_argument("--loc", action="append", required=True, metavar="NAME=PATH",
                   help="per-sample localization table of one checkpoint (repeat, in order; NAME=PATH@SET "
                        "takes one map set), or a single PATH whose map sets are the checkpoints")
    p.add_argument("--score", default="auc", help="localization score column (default auc; e.g. "
                   "pointing_game, mass_inside, iou_topk)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--task", default=None, help="task performance table (.csv/.parquet): checkpoint, "
                   "task_metric[, task_low, task_high, task_n]")
    g.add_argument("--predictions", default=None, help="predictions table (.csv/.parquet): the task AUC "
                   "and its DeLong CI are computed per checkpoint")
    p.add_argument("--pred-checkpoint-col", default="checkpoint", help="checkpoint column of --predictions "
                   "(default checkpoint)")
    p.add_argument("--pred-y-col", default="y_true", help="0/1 label column of --predictions (default y_true)")
    p.add_argument("--pred-score-col", default="y_score", help="score column of --predictions, higher = "
                   "positive (default y_score)")
    p.add_argument("--order", nargs="+", default=None, metavar="CHECKPOINT",
                   help="checkpoint order (default: the --loc order, or the map sets' order)")
    p.add_argument("--class-col", default=None, help="class column of the localization tables (with --class)")
    p.add_argument("--class", dest="cls", default=None, help="keep only samples of this class")
    p.add_argument("--group-col", default="patient_id", help="cluster column of the bootstrap (default "
                   "patient_id; 'none': samples resampled one by one)")
    p.add_argument("--task-label", default="task AUC", help="x-axis label (default 'task AUC')")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="tradeoff.csv", help="table (.csv or .parquet; default tradeoff.csv); "
                   "the figure goes next to it")
    p.add_argument("--no-figure", action="store_true", help="write the table only")


def _parse_loc(values: list[str]):
    """``--loc`` values -> dict name -> path / (path, map set), or one path."""
    from pathlib import Path

    from radlens.errors import InputError

    named, bare = {}, []
    for v in values:
        if "=" in v and not Path(v).exists():
            name, path = v.split("=", 1)
            if not name or not path:
                raise InputError(f"--loc {v!r}: expected NAME=PATH (e.g. --loc pre=loc_pre.parquet)")
            if name in named:
                raise InputError(f"--loc: checkpoint name {name!r} given twice; each NAME once")
            if "@" in path and not Path(path).exists():
                path, map_set = path.rsplit("@", 1)
                named[name] = (path, map_set)
            else:
                named[name] = path
        else:
            bare.append(v)
    if bare and (named or len(bare) > 1):
        raise InputError(f"--loc: {bare} without NAME=; use NAME=PATH for every checkpoint, or give a single "
                         "table whose map sets are the checkpoints")
    return named or bare[0]


def run(args) -> int:
    from radlens.localization.tradeoff import tradeoff

    tradeoff(_parse_loc(args.loc), args.out, score=args.score, task=args.task, predictions=args.predictions,
             pred_checkpoint_col=args.pred_checkpoint_col, pred_y_col=args.pred_y_col,
             pred_score_col=args.pred_score_col, order=args.order, class_col=args.class_col, cls=args.cls,
             group_col=None if str(args.group_col).lower() == "none" else args.group_col,
             n_boot=args.n_boot, seed=args.seed, task_label=args.task_label, figure=not args.no_figure)
    return 0
