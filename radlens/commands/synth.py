"""``radlens synth``: generate a phantom cohort with planted ground truth."""
from __future__ import annotations

import argparse

NAME = "synth"
HELP = "generate a phantom cohort (CXR-like images or MRI-like volumes) with planted lesion attributes"
DESCRIPTION = """Generate a phantom cohort with planted ground truth.

Writes OUT/images/, OUT/masks/ (unless --roi bbox) and OUT/manifest.csv whose columns hold the
planted lesion attributes (size, intensity, texture correlation length and amplitude, elongation,
orientation, position) and three balanced binary tasks each derived from one attribute
(task_texture, task_intensity, task_shape), plus has_lesion, patient_id (two images per patient)
and a patient-level train/test split.

example:
  radlens synth --out cohort/ --n-cases 200 --size 64 --seed 0
  radlens synth --out mri/ --n-cases 40 --size 32 --dim 3
  radlens synth --out boxes/ --roi bbox --format png --preview
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="output folder (created)")
    p.add_argument("--n-cases", type=int, default=200, help="number of images (default 200)")
    p.add_argument("--size", type=int, default=None,
                   help="image side in pixels (default 64 for 2D, 32 for 3D)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--dim", type=int, choices=(2, 3), default=2,
                   help="2: chest-X-ray-like images, 3: MRI-like volumes (default 2)")
    p.add_argument("--lesion-free", type=float, default=0.2, dest="lesion_free_fraction",
                   help="fraction of lesion-free images with a control ROI (default 0.2)")
    p.add_argument("--roi", choices=("mask", "bbox"), default="mask",
                   help="ROI form in the manifest (default mask; bbox is 2D only)")
    p.add_argument("--format", choices=("nii.gz", "png"), default="nii.gz", dest="image_format",
                   help="image format (default nii.gz float32; png is 2D only)")
    p.add_argument("--png-dtype", choices=("uint8", "uint16"), default="uint8",
                   help="PNG sample type (default uint8)")
    p.add_argument("--images-per-patient", type=int, default=2, help="images per patient (default 2)")
    p.add_argument("--test-fraction", type=float, default=0.3,
                   help="fraction of patients in the test split (default 0.3)")
    p.add_argument("--preview", action="store_true",
                   help="also write OUT/phantom_examples.png/.svg: a grid of cases with ROI outlines")


def run(args: argparse.Namespace) -> int:
    import logging
    from pathlib import Path

    from radlens.synth import make_cohort

    size = args.size if args.size is not None else (64 if args.dim == 2 else 32)
    path = make_cohort(args.out, n_cases=args.n_cases, image_size=size, seed=args.seed, dim=args.dim,
                       lesion_free_fraction=args.lesion_free_fraction, roi=args.roi,
                       image_format=args.image_format, images_per_patient=args.images_per_patient,
                       test_fraction=args.test_fraction, png_dtype=args.png_dtype)
    log = logging.getLogger("radlens.synth")
    if args.preview:
        from radlens.viz.synth import plot_phantom_examples

        files = plot_phantom_examples(path, Path(args.out) / "phantom_examples")
        log.info("preview: %s", ", ".join(map(str, files)))
    log.info("manifest: %s", path)
    return 0
