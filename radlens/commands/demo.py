"""``radlens demo``: phantom cohort, demo encoders trained on the spot, the whole study, report.html."""
from __future__ import annotations

import argparse

NAME = "demo"
HELP = "complete study on a phantom cohort with planted ground truth (trains its own encoders; minutes on a laptop CPU)"
DESCRIPTION = """Run radlens end to end on an embedded default:

1. a phantom cohort whose lesions carry independent texture, intensity and shape attributes, with
   three binary tasks each tied to one of them (task_texture, task_intensity, task_shape);
2. a small CNN (MONAI ResNet) and a tiny ViT (HF DINOv2) trained on the spot: contrastive pretext
   pre-training, then per task a transfer-learning (frozen backbone + head) and a fine-tuned checkpoint;
3. OUT/study.yaml naming all of it, run by `radlens run` (radiomic lens, CAM drift, pooling probe,
   localization); 4. OUT/report.html with planted-truth checks (is the texture task's top-k enriched
   for texture features? does ROI pooling beat global pooling for small perturbations?).

Re-running reuses the cohort, the checkpoints and every unchanged stage.

example:
  radlens demo --out radlens-demo         # the full demo (measured run times: README, OUT/demo.json)
  radlens demo --out /tmp/q --quick       # smaller cohort, shorter training (several times faster)
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
