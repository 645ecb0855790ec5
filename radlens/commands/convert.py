"""``radlens convert``: public datasets' annotations -> a radlens manifest."""
from __future__ import annotations

import argparse

NAME = "convert"
HELP = "convert ChestX-Det10 / NIH ChestX-ray14 boxes / a PI-CAI-like MRI folder to a manifest"
DESCRIPTION = """Convert a public dataset's annotations to a radlens manifest (CSV or parquet).

Image paths are written relative to the manifest's folder. See data_manifests/README.md.

formats:
  chestxdet10 JSON IMAGE_DIR   ChestX-Det10 train.json/test.json; one row per box,
                               [x1, y1, x2, y2] -> bbox_x=x1, bbox_y=y1, bbox_w=x2-x1, bbox_h=y2-y1
  nih-bbox CSV IMAGE_DIR       ChestX-ray14 BBox_List_2017.csv; one row per box (x, y, w, h)
  picai ROOT                   ROOT/images/<pid>/<pid>_<sid>_t2w.mha + ROOT/labels/<pid>_<sid>.nii.gz

examples:
  radlens convert chestxdet10 train.json train_data/ --out chestxdet10.csv
  radlens convert nih-bbox BBox_List_2017.csv images/ --out nih_boxes.csv
  radlens convert picai picai/ --labels picai_labels/csPCa_lesion_delineations/human_expert/resampled \\
      --marksheet picai_labels/clinical_information/marksheet.csv --out picai.csv
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("format", choices=("chestxdet10", "nih-bbox", "picai"), help="annotation format")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="JSON IMAGE_DIR (chestxdet10), CSV IMAGE_DIR (nih-bbox) or ROOT (picai)")
    p.add_argument("--out", required=True, help="manifest to write (.csv or .parquet)")
    p.add_argument("--no-check-images", dest="check_images", action="store_false",
                   help="box formats: do not require the images to exist yet")
    p.add_argument("--negatives", choices=("skip", "full"), default=None,
                   help="chestxdet10: images without boxes are skipped (default) or get a whole-image box")
    p.add_argument("--sequence", default=None, help="picai: image of each study to use (default t2w)")
    p.add_argument("--labels", default=None, dest="labels_dir", help="picai: label folder (default ROOT/labels)")
    p.add_argument("--marksheet", default=None, help="picai: clinical CSV to join on patient_id, study_id")
    p.add_argument("--empty", choices=("skip", "error"), default=None,
                   help="picai: studies with an empty lesion mask are skipped (default) or an error")


def run(args: argparse.Namespace) -> int:
    from radlens.errors import InputError
    from radlens.io.converters import convert

    allowed = {"chestxdet10": {"negatives"}, "nih-bbox": set(),
               "picai": {"sequence", "labels_dir", "marksheet", "empty"}}[args.format]
    opts = {k: getattr(args, k) for k in ("negatives", "sequence", "labels_dir", "marksheet", "empty")
            if getattr(args, k) is not None}
    wrong = sorted(set(opts) - allowed)
    if wrong:
        flags = ", ".join("--" + ("labels" if w == "labels_dir" else w) for w in wrong)
        raise InputError(f"convert {args.format}: option(s) {flags} do not apply to this format")
    convert(args.format, args.inputs, args.out, check_images=args.check_images, **opts)
    return 0
