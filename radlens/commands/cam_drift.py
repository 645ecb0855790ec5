"""``radlens cam-drift``: how the visual evidence moved between two checkpoints."""
from __future__ import annotations

import argparse

from radlens.commands import floats

NAME = "cam-drift"
HELP = "CAM drift (LayerCAM, Grad-CAM++, Grad-CAM, IG) between transfer-learning and fine-tuned checkpoints"
DESCRIPTION = """\
Compute attribution maps of checkpoint A (e.g. transfer learning: frozen backbone + head) and B
(fully fine-tuned) on the cases both classify correctly, and compare them per case without ground
truth: centroid displacement, IoU of equal-area top-k% masks, Pearson/Spearman correlation and
concentration change (top-k mass share, entropy, Gini). Summaries with bootstrap CIs, paired tests
between methods, architecture rankings and their reversals between methods, a model-randomisation
sanity check, and optionally drift along a checkpoint series.

Model YAML = classifier spec: encoder spec + head (safetensors weight/bias, pooling) + target_layer
+ classes (docs/contracts.md). Several architectures at once: give several --model-a and as many
--model-b (same order), optionally named with --arch.

Writes OUT (per case), OUT-stem.{summary,paired,paired_architectures,concentration,rankings,
reversals,counts,sanity,series}.parquet, OUT-stem.failures.csv, and with --save-maps an npz of the maps (localize reads it).

Example:
  radlens cam-drift --manifest cohort/manifest.csv --model-a cnn/classifier_tl.yaml \\
      --model-b cnn/classifier_ft.yaml --label-col task_shape --positive 1 \\
      --methods layercam,gradcam++ --out drift.parquet --save-maps maps.npz --figures figs/
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--manifest", required=True, help="manifest CSV/parquet")
    p.add_argument("--model-a", required=True, nargs="+", metavar="YAML",
                   help="classifier spec(s) of checkpoint A (transfer learning)")
    p.add_argument("--model-b", required=True, nargs="+", metavar="YAML",
                   help="classifier spec(s) of checkpoint B (fine-tuned), same order as --model-a")
    p.add_argument("--arch", nargs="+", default=None, metavar="NAME",
                   help="architecture name per pair (default: encoder name or spec folder)")
    p.add_argument("--target-layer", nargs="+", default=None, metavar="LAYER",
                   help="CAM target layer (dotted module name in the encoder) instead of the specs' target_layer: "
                        "one for all pairs or one per pair, in --model-a order (e.g. layer3 for a finer CNN map)")
    p.add_argument("--label-col", required=True, help="manifest column with the task labels")
    p.add_argument("--positive", default="1", help="positive class value in --label-col (default 1)")
    p.add_argument("--task", default=None, help="task name in the tables (default: --label-col)")
    p.add_argument("--methods", default="layercam,gradcam++",
                   help="comma-separated: layercam, gradcam++, gradcam, ig (default layercam,gradcam++)")
    p.add_argument("--samples", choices=("tp", "correct"), default="tp",
                   help="tp: positives both checkpoints predict positive (default); correct: any class both get right")
    p.add_argument("--top-k", type=floats, default=[10.0], metavar="K[,K...]",
                   help="percent(s) for equal-area top-k%% masks and mass shares (default 10)")
    p.add_argument("--thresholds", type=floats, default=[], metavar="T[,T...]",
                   help="optional fixed thresholds (fraction of each map's max) for extra IoUs")
    p.add_argument("--series", nargs="+", default=(), metavar="YAML",
                   help="intermediate checkpoints in training order (drift along epochs)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--ig-steps", type=int, default=32, help="integration steps for ig")
    p.add_argument("--no-sanity", action="store_true", help="skip the model-randomisation sanity check")
    p.add_argument("--sanity-cases", type=int, default=16, help="cases used by the randomisation check")
    p.add_argument("--sanity-max-spearman", type=float, default=0.5,
                   help="the check passes when trained vs randomised maps have median Spearman below this")
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-cases", type=int, default=None, help="only the first N manifest rows")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    p.add_argument("--channels-last", action="store_true",
                   help="run CNNs in channels-last memory layout (same maps; on CPU ~1.5x faster batched CAMs for "
                        "few-channel convolutions, see benchmarks/cam_bench.py); models that .view() a feature map "
                        "fail with it")
    p.add_argument("--out", required=True, help="per-case drift table (.parquet or .csv)")
    p.add_argument("--save-maps", default=None, metavar="NPZ", help="save the maps (npz, read by radlens localize)")
    p.add_argument("--figures", default=None, metavar="DIR", help="write overlay and distribution figures here")


def run(args) -> int:
    import logging

    from radlens.cam.run import cam_drift

    pos = args.positive
    try:
        pos = int(pos)
    except ValueError:
        pass
    res = cam_drift(args.manifest, args.model_a, args.model_b, label_col=args.label_col, positive=pos,
                    architecture=args.arch, task=args.task, series=tuple(args.series),
                    methods=[m for m in args.methods.split(",") if m.strip()], samples=args.samples,
                    top_k=args.top_k, thresholds=args.thresholds, batch_size=args.batch_size,
                    ig_steps=args.ig_steps, sanity=not args.no_sanity, sanity_cases=args.sanity_cases,
                    sanity_max_spearman=args.sanity_max_spearman,
                    n_boot=args.n_boot, seed=args.seed, max_cases=args.max_cases, device=args.device, out=args.out,
                    save_maps=args.save_maps, figures=args.figures, channels_last=args.channels_last,
                    target_layer=args.target_layer)
    log = logging.getLogger("radlens.cam-drift")
    for c in res.counts.to_dict("records"):
        log.info("%s/%s: %d cases compared of %d (positives %d, TP A %d, TP B %d)", c["architecture"], c["task"],
                 c["n_kept"], c["n_total"], c["n_positive"], c["n_tp_a"], c["n_tp_b"])
    if len(res.reversals):
        n_rev = int(res.reversals["reversal"].sum())
        log.info("ranking reversals between methods: %d of %d task x metric x method-pair comparisons",
                 n_rev, len(res.reversals))
    for k, v in res.outputs.items():
        log.info("wrote %s: %s", k, v)
    return 0
