"""``radlens refit-post``: per-feature shifts of a fine-tuned encoder through the frozen lens."""
from __future__ import annotations

import argparse

NAME = "refit-post"
HELP = "radiomic lens: re-estimate the head on fine-tuned embeddings; per-feature shifts with z, p, q, CIs"
DESCRIPTION = """\
Re-estimate the lens head on the embeddings of a fine-tuned encoder with the same closed-form
estimator (and penalty) as the pre head, propagate the head change through the frozen first layer
and score every radiomic feature. Headline (emphasis, z, p, q, rank): the change of the
embedding's sensitivity to the feature after a global rescale and an orthogonal re-coding of the
embedding are taken out (sensitivity_post / rho - sensitivity_pre, rho = median ratio), tested
against cluster permutations of the change left after a Procrustes + scale alignment of post onto
pre, with a bootstrap CI. The raw Jacobian shift keeps its own tests (shift, shift_z, shift_p,
shift_q; feature-specific Freedman-Lane shift_*_specific), plus sensitivities, share changes and
ranking stability over the lens seeds. Embeddings must cover exactly the lens's cases (joined on
case_id).

Writes OUT (one row per feature, sorted by rank) with global summaries in its metadata and in
OUT-stem.json: R2 pre/post, CKA, class totals, seed stability, and the global change of the
embedding (rescale factor, rotation size, share of the change that is orthogonal re-coding /
rescale / other, and one sentence: "the embedding was rescaled x1.50 and rotated ...").

Layer-wise lens (fit-pre --layers): every layer of the lens is refitted; OUT holds all layers (column
layer), OUT-parent/<layer>/OUT-name each layer's table, OUT-stem.json the per-layer summaries with
linear CKA pre/post and held-out R2 pre/post, each with a patient-bootstrap CI (--n-boot replicates).

Example:
  radlens refit-post --lens lens/ --embeddings embeddings_task_texture.npz --task texture \\
      --out shifts_texture.parquet
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lens", required=True, help="lens folder from radlens fit-pre")
    p.add_argument("--embeddings", required=True, help="post (fine-tuned) embeddings of the same cases")
    p.add_argument("--task", default=None, help="task name (default: OUT name after 'shifts_')")
    p.add_argument("--pooling", default=None, help="pooling mode (default: the one the lens was fitted on)")
    p.add_argument("--n-null", type=int, default=200, help="null replicates (default 200; 0: no z/p/q)")
    p.add_argument("--n-boot", type=int, default=200, help="bootstrap replicates for CIs (default 200; 0: none)")
    p.add_argument("--no-specific", action="store_true",
                   help="skip the feature-specific (Freedman-Lane) test of the raw shift (shift_*_specific)")
    p.add_argument("--layers", default=None, metavar="all|L1,L2,...",
                   help="layer-wise lens only: the layers to refit (default: every layer of the lens)")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="layer-wise lens only: refit N layers at once in worker processes (default 1; the "
                        "tables do not depend on it)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="shift table (.parquet or .csv)")


def run(args: argparse.Namespace) -> int:
    from radlens.lens.layers import is_layered_lens, parse_layers, refit_post_layers
    from radlens.lens.pipeline import refit_post

    refit, kw = refit_post, {}
    if is_layered_lens(args.lens):
        refit, kw = refit_post_layers, {"layers": parse_layers(args.layers), "jobs": args.jobs}
    elif args.layers is not None or args.jobs != 1:
        from radlens.errors import InputError

        opt = "--layers" if args.layers is not None else "--jobs"
        raise InputError(f"{opt} given, but lens {args.lens!r} is a single-layer lens; fit it with "
                         f"`radlens fit-pre --layers ...` or leave {opt} out")
    refit(args.lens, args.embeddings, args.out, task=args.task, pooling=args.pooling, n_null=args.n_null,
          n_boot=args.n_boot, seed=args.seed, specific=not args.no_specific, **kw)
    return 0
