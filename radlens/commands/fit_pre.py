"""``radlens fit-pre``: fit the radiomic lens on the embeddings before fine-tuning."""
from __future__ import annotations

import argparse

from radlens.commands import floats

NAME = "fit-pre"
HELP = "radiomic lens: fit radiomics -> pre embeddings MLP (first layer frozen for refit-post)"
DESCRIPTION = """\
Fit the radiomic lens on the encoder's embeddings *before* fine-tuning: the radiomics are cleaned
and standardised, the embeddings put in a frame fixed on these pre data (centred, one global scale,
optional PCA), and a two-layer MLP radiomics -> embedding is trained (weight decay, early stopping on
a patient-grouped validation split) for several seeds. Its first layer is kept frozen; the head is
re-estimated in closed form (ridge, penalty by grouped CV) so that refit-post can apply the very same
estimator to each fine-tuned encoder. Inputs are joined on case_id; ids missing on either side are
listed in the error.

Writes LENS_DIR/lens.json + lens.npz (no pickle), fit_report.csv (per seed: epochs, penalty,
held-out R2), radiomics_cleaning.csv (dropped features with reasons).

Layer-wise (embeddings from `radlens embed --layers`): --layers all (or L1,L2,...) fits one lens per
layer in LENS_DIR/<layer>/ (each with the layout above) and writes LENS_DIR/layers.json.

Example:
  radlens fit-pre --radiomics radiomics.parquet --embeddings embeddings_pre.npz --pooling roi \\
      --manifest cohort/manifest.csv --out lens/
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--radiomics", required=True, help="radiomics table (.parquet/.csv: case_id + features)")
    p.add_argument("--embeddings", required=True, help="pre embeddings (.npz from radlens embed, or .parquet/.csv)")
    p.add_argument("--pooling", default=None, help="pooling mode to use: roi, cls, global, mean, external "
                   "(default: roi if present, else cls/global/mean)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--manifest", default=None, help="manifest with patient_id (grouped splits)")
    g.add_argument("--groups", default=None, help="CSV with case_id,patient_id (grouped splits)")
    p.add_argument("--hidden", type=int, default=64, help="hidden width m (default 64)")
    p.add_argument("--activation", default="tanh", choices=("tanh", "gelu", "softplus", "sigmoid", "relu"))
    p.add_argument("--seeds", type=int, default=5, help="number of first layers (seeds) (default 5)")
    p.add_argument("--weight-decay", type=float, default=1e-2)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--max-epochs", type=int, default=300)
    p.add_argument("--patience", type=int, default=20)
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--scaling", default="global", choices=("global", "per_dim", "none"),
                   help="embedding frame scaling (global keeps orthogonal invariance; default)")
    p.add_argument("--n-components", type=int, default=None, help="optional PCA of the frame to K components")
    p.add_argument("--alphas", type=floats, default=None, metavar="A[,A...]", help="ridge penalty grid")
    p.add_argument("--cv-folds", type=int, default=5)
    p.add_argument("--near-duplicate-threshold", type=float, default=None,
                   help="drop one of two radiomic features with |r| above this")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--layers", default=None, metavar="all|L1,L2,...",
                   help="layer-wise lens: one lens per layer of a multi-layer embeddings file (all, or a "
                        "comma-separated subset), in LENS_DIR/<layer>/")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="layer-wise lens: fit N layers at once in worker processes (default 1; the lenses do "
                        "not depend on it)")
    p.add_argument("--out", required=True, help="lens folder")


def run(args: argparse.Namespace) -> int:
    from radlens.lens.pipeline import fit_pre

    fit, kw = fit_pre, {}
    if args.layers is not None:
        from radlens.lens.layers import fit_pre_layers, parse_layers

        fit, kw = fit_pre_layers, {"layers": parse_layers(args.layers), "jobs": args.jobs}
    elif args.jobs != 1:
        from radlens.errors import InputError

        raise InputError(f"--jobs {args.jobs} runs the layers of a layer-wise lens in parallel; add --layers "
                         "(e.g. --layers all) or leave --jobs out")
    fit(args.radiomics, args.embeddings, args.out, pooling=args.pooling, manifest=args.manifest, **kw,
        groups=args.groups, hidden=args.hidden, activation=args.activation, n_seeds=args.seeds,
        weight_decay=args.weight_decay, lr=args.lr, max_epochs=args.max_epochs, patience=args.patience,
        val_fraction=args.val_fraction, embedding_scaling=args.scaling, n_components=args.n_components,
        alphas=args.alphas, cv_folds=args.cv_folds, near_duplicate_threshold=args.near_duplicate_threshold,
        random_state=args.seed)
    return 0
