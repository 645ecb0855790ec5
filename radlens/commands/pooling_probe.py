"""``radlens pooling-probe``: does small-lesion signal survive pooling, before and after fine-tuning?"""
from __future__ import annotations

import argparse

NAME = "pooling-probe"
HELP = "linear probes of CLS/global, patch-mean and ROI pooling on a perturbation panel and lesions"
DESCRIPTION = """\
Pooling probe (one forward pass, every pooling): inserts small perturbations (isotropic blur,
motion blur, fine reticular texture, low-contrast nodule) at recorded places into clean images
over a grid of footprint sizes and strengths, and scores how well a grouped-CV linear probe on
each pooling (cls or global, mean, roi) separates each clean image from its perturbed copy:
AUC with bootstrap CIs, DeLong tests between poolings, Benjamini-Hochberg across cells. With
lesion findings: image-level AUC stratified by lesion box size (small vs large gap) and a
box-level probe (lesion box vs the same place in a negative image); box-jitter curves; and with
--encoder-post the per-cell AUC difference post - pre.

Writes OUT (result table), OUT-stem.scores.parquet (per-sample out-of-fold scores),
OUT-stem.failures.csv and figures OUT-stem_panel/_size_gap/_jitter/_pre_post (.png, .svg).

example:
  radlens pooling-probe --manifest cohort/manifest.csv --encoder pre.yaml \\
      --encoder-post finetuned.yaml --panel configs/panel.yaml --out probe/probe.parquet
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--manifest", required=True, help="manifest (CSV/TSV/parquet), one row per ROI")
    p.add_argument("--encoder", required=True, help="encoder spec YAML of the pre-fine-tuning checkpoint")
    p.add_argument("--encoder-post", default=None,
                   help="encoder spec YAML of the fine-tuned checkpoint (adds pre-vs-post differences)")
    p.add_argument("--panel", default=None,
                   help="panel YAML merged over the packaged default (radlens/configs/panel_default.yaml)")
    p.add_argument("--findings", default=None,
                   help="comma-separated binary label columns for the size-stratified lesion probe "
                        "(overrides lesion.findings), e.g. has_lesion")
    p.add_argument("--out", default="probe.parquet", help="result table (.parquet or .csv)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N | auto")
    p.add_argument("--no-figures", action="store_true", help="skip the figures")


def run(args: argparse.Namespace) -> int:
    from radlens.probe.run import pooling_probe

    findings = None if args.findings is None else [f.strip() for f in args.findings.split(",") if f.strip()]
    res = pooling_probe(args.manifest, args.encoder, encoder_post=args.encoder_post, panel=args.panel,
                        out=args.out, findings=findings, device=args.device,
                        figures=not args.no_figures)
    for name, path in res.paths.items():
        print(f"{name}: {path}")
    return 0
