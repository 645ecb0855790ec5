"""``radlens run``: every stage of a study from one YAML, into one run folder, with report.html."""
from __future__ import annotations

import argparse

NAME = "run"
HELP = "run a whole study from one YAML (radiomics, embeddings, lens, CAM drift, probe, localization, report)"
DESCRIPTION = """Run every stage of a study described by one YAML into a run folder, then write report.html.

The YAML names the manifest, the radiomics settings, the encoders (per architecture a `pre`
encoder spec and, per downstream task, a `finetuned` and optionally a `transfer` classifier spec)
and the analyses. Stages whose inputs (content hashes of manifest, images, checkpoints and
upstream artefacts, plus the stage's settings) did not change since their last successful run are
skipped; a failing stage is recorded (RUN/stages/, RUN/logs/) and the others still run.

example:
  radlens demo --out demo/            # writes demo/study.yaml, a complete example
  radlens run demo/study.yaml         # re-run: unchanged stages are skipped
  radlens run my_study.yaml --out runs/v2 --only lens
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("study", help="study YAML (see configs/study.yaml)")
    p.add_argument("--out", default=None, help="run folder (default: the YAML's `out`, relative to the YAML)")
    p.add_argument("--force", action="store_true", help="re-run every stage even if its inputs did not change")
    p.add_argument("--no-report", dest="report", action="store_false", default=None,
                   help="do not write report.html")
    p.add_argument("--only", nargs="+", default=None, metavar="PREFIX",
                   help="run only stages whose name starts with PREFIX (and the stages they need), "
                        "e.g. radiomics, embed/cnn, lens, cam-drift, pooling-probe")


def run(args: argparse.Namespace) -> int:
    from radlens.commands._summary import print_summary
    from radlens.study import run as run_study

    res = run_study(args.study, args.out, force=args.force, report=args.report, only=args.only)
    print_summary(res)
    return 1 if res.failed else 0
