"""radlens radiomics: pyradiomics features of every ROI in a manifest."""
from __future__ import annotations

import argparse

NAME = "radiomics"
HELP = "pyradiomics features of every ROI in a manifest (cached, parallel, resumable)"
DESCRIPTION = """\
Extract pyradiomics features for every ROI of a manifest.

The params file is read by pyradiomics itself (RadiomicsFeatureExtractor(PARAMS)); settings it
leaves unset take pyradiomics' defaults. Without --params radlens' default is used
(binCount 32, all feature classes, Original image; see radlens/configs/radiomics_default.yaml).
2D images are extracted in 2D (shape2D, 2D texture).

Writes OUT (case_id + one float column per feature), OUT's .diagnostics table and
.failures.csv (case_id, stage, error). Results are cached per case (content of image, ROI and
params + pyradiomics version): a re-run extracts nothing, an interrupted run resumes.

examples:
  radlens radiomics manifest.csv --out radiomics.parquet --jobs 4
  radlens radiomics manifest.csv --jobs auto      # a pool only when the cohort is large enough to gain
  radlens radiomics manifest.csv --params configs/radiomics_ct.yaml --executor dask --scheduler tcp://host:8786
"""


def _jobs(text: str):
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of processes; use an integer (0 = one per "
                                         "CPU) or 'auto'") from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("manifest", help="manifest CSV/TSV/parquet (case_id, image, mask or bbox_*, ...)")
    p.add_argument("--params", default=None, metavar="PARAMS.yaml",
                   help="pyradiomics params file (default: radlens' radiomics_default.yaml)")
    p.add_argument("--out", default="radiomics.parquet", metavar="OUT",
                   help="feature table, .parquet or .csv (default: %(default)s)")
    p.add_argument("--jobs", "-j", type=_jobs, default=1, metavar="N",
                   help="parallel worker processes (0 = one per CPU; auto = one per CPU unless the cases to "
                        "extract are too few/small for a pool to win; default: %(default)s)")
    p.add_argument("--executor", choices=["process", "dask"], default="process",
                   help="local process pool or a Dask cluster (default: %(default)s)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="Dask scheduler address, e.g. tcp://host:8786 (default: a local cluster of --jobs workers)")
    p.add_argument("--cache-dir", default=None, metavar="DIR",
                   help="per-case cache folder (default: next to OUT, <stem>.cache)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    p.add_argument("--retry-failed", action="store_true", help="recompute cases whose cached result is a failure")
    p.add_argument("--resample-mask", action="store_true",
                   help="resample masks not on their image's grid (nearest neighbour) instead of failing them")
    p.add_argument("--check-images", action="store_true",
                   help="open every image and mask first and report all content problems at once (default: "
                        "such cases land in the failures table while the others are extracted)")
    p.add_argument("--diagnostics", choices=["fast", "pyradiomics"], default="fast",
                   help="fast: radlens computes the diagnostics (default); pyradiomics: its own additionalInfo (slower)")
    p.add_argument("--engine", choices=["radlens", "pyradiomics"], default="radlens",
                   help="radlens: first order and texture classes (GLCM, GLRLM, GLSZM, GLDM, NGTDM) by radlens' "
                        "engine, equal to pyradiomics to 1e-9 and faster; shape, filters and other settings by "
                        "pyradiomics; pyradiomics: every class by pyradiomics (default: %(default)s)")
    p.add_argument("--progress", dest="progress", action="store_true", default=None,
                   help="always show the progress bar (default: only on a terminal)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="never show the progress bar")


def run(args: argparse.Namespace) -> int:
    if args.executor == "process" and args.jobs not in (1, "auto"):
        # first thing, before the heavy imports: the zygote imports the engine on an idle core while
        # this process does, then forks the workers: this process never forks while holding data
        from radlens.zygote import start_zygote

        start_zygote("radlens.radiomics.schedule:preload", idle_core=True)
    from radlens.radiomics.extract import radiomics

    res = radiomics(args.manifest, params=args.params, out=args.out, jobs=args.jobs, executor=args.executor,
                    scheduler=args.scheduler, cache_dir=args.cache_dir, use_cache=not args.no_cache,
                    retry_failed=args.retry_failed, resample_mask=args.resample_mask,
                    check_images=args.check_images, diagnostics=args.diagnostics,
                    show_progress=args.progress, engine=args.engine)
    n_ok, n_fail = res.n_cases - res.n_failed, res.n_failed
    print(f"radiomics: {n_ok} cases x {res.n_features} features -> {res.out} "
          f"({res.n_computed} extracted, {res.n_cached} from cache)")
    print(f"  diagnostics -> {res.diagnostics_path}")
    print(f"  failures: {n_fail} -> {res.failures_path}")
    return 0 if n_ok > 0 or n_fail == 0 else 1
