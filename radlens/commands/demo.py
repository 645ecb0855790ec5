"""``radlens demo``: phantom cohort, demo encoders trained on the spot, the whole study, report.html."""
from __future__ import annotations

import argparse

NAME = "demo"
HELP = "complete study on a phantom cohort with planted ground truth (trains its own three encoders; minutes on a laptop CPU)"
DESCRIPTION = """Run radlens end to end on an embedded default:

1. a phantom cohort (400 images, 64 px; --quick: 160) whose lesions carry independent texture,
   intensity and shape attributes, with three binary tasks each tied to one of them (task_texture,
   task_intensity, task_shape);
2. three encoders trained on the spot -- a small MONAI ResNet, a small MONAI DenseNet and a tiny HF
   DINOv2 ViT: a self-supervised pretext, then per task a transfer-learning (frozen backbone + head)
   and a fine-tuned checkpoint;
3. OUT/study.yaml naming all of it, run by `radlens run` (radiomic lens, CAM drift, pooling probe,
   localization); 4. OUT/report.html, and OUT/demo.json with the key numbers (validation AUCs,
   pointing game / pixel AUC of the CAMs, sanity checks, planted-truth recovery, timings).

Re-running reuses the cohort, the checkpoints and every unchanged stage.

example:
  radlens demo --out radlens-demo         # the full demo (measured run times: README, OUT/demo.json)
  radlens demo --out /tmp/q --quick       # smaller cohort, shorter training (the tests run it)
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="radlens-demo", help="demo folder (default ./radlens-demo)")
    p.add_argument("--quick", action="store_true", help="smaller cohort and shorter training (several times faster)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--force", action="store_true", help="regenerate the cohort and retrain the encoders")


def run(args: argparse.Namespace) -> int:
    from radlens.commands._summary import print_summary
    from radlens.demo import demo

    res = demo(args.out, quick=args.quick, seed=args.seed, force=args.force)
    print_summary(res)
    return 0 if res.report else 1
