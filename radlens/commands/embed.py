"""``radlens embed``: one encoder checkpoint over a cohort → embeddings.npz (cls/global, mean, roi)."""
from __future__ import annotations

NAME = "embed"
HELP = "embed a cohort with one encoder checkpoint (cls/global, mean and ROI poolings from one forward pass)"
DESCRIPTION = """\
Run an encoder over every case of a manifest and write embeddings.npz: case_id plus one (n, D)
array per pooling — cls (ViT class token; models without one give 'global', their global
pooling), mean (patch tokens only), roi (the tokens the ROI covers) — all from ONE forward pass,
with the encoder spec and checkpoint sha256 in the metadata. Failed cases are listed in
<out stem>.failures.csv. Large cohorts stream to <out>.parts/ in chunks; re-running the same
command after an interruption reuses the finished chunks.

encoder: a YAML spec file, a transformers save_pretrained folder, or an inline spec such as
  '{kind: monai, name: DenseNet121, args: {spatial_dims: 2, in_channels: 1, out_channels: 2},
    checkpoint: ft.safetensors, layer: features.norm5, preprocess: {spatial_size: [224, 224]}}'
(see docs/encoders.md).

--layers L1,L2,... reads several layers from the same forward pass into one file: arrays
'roi@layer2', 'cls@3', ... and meta 'layers' (read one with Embeddings.select(layer)).

examples:
  radlens embed cohort/manifest.csv --encoder dino_ft.yaml --out emb/ft.npz --device cuda --autocast
  radlens embed cohort/manifest.csv --encoder resnet.yaml --layers layer1,layer2,layer3 --out emb/pre.npz
  radlens embed cohort/manifest.csv --encoder dino.yaml --out emb/pre.npz --executor dask --scheduler tcp://host:8786
"""


def add_arguments(p) -> None:
    p.add_argument("manifest", help="manifest (.csv/.tsv/.parquet)")
    p.add_argument("--encoder", required=True, help="encoder spec: YAML file, HF folder, or inline YAML/JSON")
    p.add_argument("--out", required=True, help="output .npz (e.g. embeddings_ft.npz)")
    p.add_argument("--layers", default=None,
                   help="comma-separated feature layers embedded from ONE forward pass, replacing the spec's "
                        "layer: dotted module names (layer1,layer2), ViT blocks by index (2,4,6; hf: "
                        "hidden_states indices); arrays are then named pooling@layer (roi@layer2)")
    p.add_argument("--pooling", default="cls,mean,roi",
                   help="comma-separated poolings among cls, global, mean, roi (default: cls,mean,roi)")
    p.add_argument("--batch-size", type=int, default=16, help="images per forward pass (default 16)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    p.add_argument("--autocast", action="store_true", help="mixed precision forward pass (fp16 on CUDA, bf16 on CPU)")
    p.add_argument("--roi-mode", choices=("full", "crop"), default=None,
                   help="full: whole image in, ROI pooled from its tokens; crop: ROI + margin cropped and "
                        "resized (default: the spec's roi.mode, else full)")
    p.add_argument("--roi-rule", choices=("overlap", "center"), default=None,
                   help="ROI → token rule (default: the spec's roi.rule, else overlap)")
    p.add_argument("--min-overlap", type=float, default=None,
                   help="overlap rule: fraction of a token's cell the ROI must cover (default 0.5)")
    p.add_argument("--chunk-size", type=int, default=1024, help="cases per chunk file (default 1024)")
    p.add_argument("--workers", type=int, default=2,
                   help="loader threads/processes preparing cases ahead of the model (default 2; 0 = none)")
    p.add_argument("--loader", choices=("auto", "thread", "process"), default="auto",
                   help="auto (default): worker processes with one torch thread each (= process)")
    p.add_argument("--no-resume", action="store_true", help="recompute everything, ignoring finished chunks")
    p.add_argument("--executor", choices=("local", "dask"), default="local",
                   help="local (default): this process; dask: every chunk is a task on a Dask cluster (the model "
                        "is loaded once per worker; the result is the same file as a local run)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="Dask scheduler address, e.g. tcp://host:8786 (default: a local cluster of --jobs workers)")
    p.add_argument("--jobs", type=int, default=2, help="workers of the local Dask cluster when --scheduler is not given")


def run(args) -> int:
    from radlens.encoders.embed import embed

    embed(args.manifest, args.encoder, args.out, pooling=args.pooling, batch_size=args.batch_size,
          device=args.device, autocast=args.autocast, roi_mode=args.roi_mode, roi_rule=args.roi_rule,
          min_overlap=args.min_overlap, chunk_size=args.chunk_size, resume=not args.no_resume,
          workers=args.workers, loader=args.loader, layers=args.layers, executor=args.executor,
          scheduler=args.scheduler, jobs=args.jobs)
    return 0
