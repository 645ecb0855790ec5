"""radlens localize: score attribution / attention maps against the manifest's boxes or masks."""
from __future__ import annotations

NAME = "localize"
HELP = "score attribution/attention maps against ground-truth boxes or masks (pointing game, AUC, IoU, ...)"
DESCRIPTION = """\
Score maps keyed by case_id against the manifest's boxes / masks, per sample, with per-class
summaries (bootstrap CIs, patients resampled whole) and, with a second map set, paired
differences b - a (Wilcoxon signed-rank, BH q-values).

Maps: .npz (a case_id array + stacked arrays (n, h, w), pick one with --map-key, e.g.
layercam__a from `radlens cam-drift`; or one array per case id), .npy + <stem>.case_id.txt,
.pt (dict case_id -> tensor). Any resolution: resized onto the image by bilinear interpolation
(half-pixel centres). Manifest rows sharing an image are one sample with several boxes.

Writes OUT (per sample), OUT.summary, OUT.paired (with --maps-b / --map-key-b),
OUT.failures.csv and OUT_scores.png/.svg. Definitions: docs/localization.md.

example:
  radlens localize --manifest manifest.csv --maps maps.npz --map-key layercam__a \\
      --map-key-b layercam__b --class-col task_shape --out loc.parquet
"""


def add_arguments(p) -> None:
    p.add_argument("--manifest", required=True, help="manifest (CSV/parquet) with boxes or masks")
    p.add_argument("--maps", required=True, help="maps file (.npz, .npy or .pt), map set 'a'")
    p.add_argument("--map-key", default=None, help="array in --maps to use (when it holds several)")
    p.add_argument("--maps-b", default=None, help="second maps file, map set 'b' (default: --maps's file "
                   "when --map-key-b is given)")
    p.add_argument("--map-key-b", default=None, help="array in the second maps file")
    p.add_argument("--case-ids", default=None, help="case-id list of a .npy --maps (default <stem>.case_id.txt)")
    p.add_argument("--case-ids-b", default=None, help="case-id list of a .npy --maps-b")
    p.add_argument("--names", nargs=2, default=["a", "b"], metavar=("A", "B"),
                   help="labels of the two map sets (default: a b)")
    p.add_argument("--out", required=True, help="per-sample table (.parquet or .csv)")
    p.add_argument("--class-col", default=None, help="label column for per-class summaries")
    p.add_argument("--group-col", default="image", help="rows with equal values form one sample with "
                   "several boxes (default: image; 'none': every row alone)")
    p.add_argument("--positive-col", default=None, help="score only rows where this column is 1/true "
                   "(e.g. has_lesion)")
    p.add_argument("--binarize", nargs="+", default=["otsu", "topk", "fixed"],
                   choices=["otsu", "topk", "fixed"], help="binarisations for IoU/mIoU/box IoU/centroid")
    p.add_argument("--threshold", type=float, default=0.5, help="fixed threshold on the min-max normalised "
                   "map (default 0.5)")
    p.add_argument("--topk", type=float, default=None, help="top-k fraction of pixels (default: the GT area)")
    p.add_argument("--tolerance", type=float, default=0.0, help="pointing-game tolerance in pixels (default 0)")
    p.add_argument("--tie-rule", default="fraction", choices=["fraction", "any", "all", "first"],
                   help="pointing game with tied maxima (default fraction: share of tied maxima inside)")
    p.add_argument("--box-from", default="largest", choices=["largest", "all"],
                   help="region of the binarised map for box IoU and centroid (default: largest component)")
    p.add_argument("--abs", dest="absolute", action="store_true", help="score |map| (signed attributions)")
    p.add_argument("--transpose", action="store_true", help="transpose maps (h, w) -> (w, h) before resizing")
    p.add_argument("--flip", default=None, choices=["h", "v", "hv"], help="flip maps before resizing")
    p.add_argument("--orientation", default="error", choices=["error", "warn", "ignore"],
                   help="when a map looks transposed relative to its image (default: error)")
    p.add_argument("--resample-mask", action="store_true", help="resample masks onto the image grid")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-figure", action="store_true", help="do not draw OUT_scores.png")


def run(args) -> int:
    import logging

    from radlens.localization.run import localize

    res = localize(
        args.manifest, args.maps, out=args.out, map_key=args.map_key, maps_b=args.maps_b,
        map_key_b=args.map_key_b, case_ids=args.case_ids, case_ids_b=args.case_ids_b,
        names=tuple(args.names), class_col=args.class_col,
        group_col=None if str(args.group_col).lower() == "none" else args.group_col,
        positive_col=args.positive_col, binarize=tuple(args.binarize), threshold=args.threshold,
        topk=args.topk, tolerance=args.tolerance, tie_rule=args.tie_rule, box_from=args.box_from,
        absolute=args.absolute, transpose=args.transpose, flip=args.flip, orientation=args.orientation,
        n_boot=args.n_boot, seed=args.seed, resample_mask=args.resample_mask, figure=not args.no_figure)
    log = logging.getLogger("radlens.localize")
    n = res.per_sample["sample_id"].nunique()
    written = [str(q) for p in res.paths.values() for q in (p if isinstance(p, list) else [p])]
    log.info("scored %d samples; wrote %s", n, ", ".join(written))
    if len(res.failures):
        log.warning("%d failure(s), see %s", len(res.failures), res.paths.get("failures"))
    return 0
