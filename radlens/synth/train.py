"""Demo encoder training: pretext pre-training, transfer learning and fine-tuning on a cohort.

For each architecture (a small MONAI ResNet, a small MONAI DenseNet and a tiny HF DINOv2 ViT,
:mod:`radlens.synth.models`):

1. **pre** — self-supervised pretext pre-training on every image of the cohort (:func:`pretrain`: from
   each cell of the feature grid a linear read-out predicts that image cell's hand-crafted local
   statistics, on strongly augmented views — flips, 90-degree rotations, shifts, brightness/contrast
   jitter and noise). It never sees a task label or a planted attribute.
2. per downstream task (``task_texture``, ``task_intensity``, ``task_shape``):

   * **tl** — transfer learning: the pre backbone frozen, an L2 logistic-regression linear head fitted
     on its pooled features (global average for the CNNs, patch-token mean for the ViT; the ViT's
     ``lse`` heads, ``TrainConfig.vit_pooling``: a log-mean-exp of per-token scores, :func:`fit_token_head`);
   * **ft** — full fine-tuning of the pre backbone with a fresh (zero) head: AdamW with a one-cycle
     learning-rate schedule (warm-up, cosine decay) on every parameter, flip augmentation (+ 90-degree
     rotations for the ResNet, ``TrainConfig.rot90_finetune_archs``). The ViT's ``lse`` heads start from
     their transfer head instead (``TrainConfig.vit_head_init``, in standardised token units).
     Starting from the tl head instead was a bug: the logistic head is fitted on standardised
     features, so in raw-feature units its weights are large (1 / feature std); the first steps then
     blew the backbone up (final training loss 3.8, validation AUC at chance on every task).

Checkpoints are written as ``.safetensors`` (CNN) or ``save_pretrained`` folders (ViT), with encoder
and classifier spec YAMLs in the formats of ``docs/contracts.md``. Everything is seeded, runs with
deterministic algorithms on a fixed number of threads, and restores torch's global state afterwards.
"""
from __future__ import annotations

import contextlib
import copy
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from radlens.errors import InputError
from radlens.synth.checkpoints import (  # noqa: F401  (re-exported)
    ARCH_INTENSITY,
    DEMO_INTENSITY,
    _encoder_spec,
    _write_checkpoint,
    _write_classifier,
    arch_intensity,
)
from radlens.synth.models import ARCHS  # noqa: F401  (re-exported)
from radlens.synth.steps import (  # noqa: F401  (re-exported)
    _flip_consistent_loss,
    _random_shift,
    _vit_finetune_loss,
    local_statistics,
    one_cycle_epochs,
    vit_param_groups,
    ATTRIBUTES,
    _auc,
    _augment,
    _batches,
    _features,
    _logits,
    attribute_decodability,
    backbone_change,
    place_operating_point,
    youden_threshold,
)
from radlens.synth.token_head import (  # noqa: F401  (re-exported)
    _finetune_token_head,
    _fold_token_head,
    _token_stats,
    fit_token_head,
)
from radlens.synth.train_config import TASKS, TrainConfig  # noqa: F401  (TASKS re-exported)

log = logging.getLogger(__name__)


@dataclass
class CohortArrays:
    """Images of a cohort held in memory for training.

    Attributes
    ----------
    case_id : ndarray of str, shape (n,)
    images : ndarray float32, shape (n, H, W)
    table : pandas.DataFrame
        The manifest rows (task labels, planted attributes, ``patient_id``, ``split``), in case order.
    train_idx, val_idx : ndarray of int
        Patient-grouped split.
    """

    case_id: np.ndarray
    images: np.ndarray
    table: Any
    train_idx: np.ndarray
    val_idx: np.ndarray


@dataclass
class TrainResult:
    """Where the demo checkpoints and specs are, and how well they learned.

    ``specs[arch]["pre"]`` is the pre encoder spec YAML; ``specs[arch][task]`` holds ``tl`` and
    ``ft`` classifier spec YAMLs and the ``ft_encoder`` spec YAML. ``metrics`` is the JSON summary
    written to ``training.json`` (validation AUCs, backbone change, attribute decodability, timings).
    """

    out_dir: Path
    specs: dict[str, dict[str, Any]] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- torch state hygiene
@contextlib.contextmanager
def torch_determinism(seed: int, threads: int) -> Iterator[None]:
    """Seed torch, use deterministic algorithms on ``threads`` threads; restore everything after."""
    import torch

    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(old_det)
            torch.set_num_threads(old_threads)


# --------------------------------------------------------------------------- data
def load_cohort_arrays(manifest_path: str | Path, val_fraction: float = 0.3, seed: int = 0) -> CohortArrays:
    """Read every case of a manifest into memory (all images must share one 2-D shape).

    The validation split is the manifest's ``split`` column (``val``/``valid``/``validation``/``test``
    rows) when present, otherwise a seeded patient-grouped split of ``val_fraction`` of the patients.
    """
    from radlens.io.images import load_case
    from radlens.io.manifest import read_manifest

    m = read_manifest(manifest_path)
    df = m.df.reset_index(drop=True)
    images = []
    for _, row in df.iterrows():
        case = load_case(row)
        images.append(np.asarray(case.array, dtype=np.float32))
    shapes = {im.shape for im in images}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise InputError(f"manifest {str(manifest_path)!r}: demo training needs 2-D images of one shape; "
                         f"found shapes {sorted(shapes)[:5]}")
    return CohortArrays(df["case_id"].astype(str).to_numpy(), np.stack(images), df,
                        *split_indices(df, val_fraction, seed))


def split_indices(df, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Patient-grouped train/validation indices (see :func:`load_cohort_arrays`)."""
    if "split" in df.columns and df["split"].notna().any():
        s = df["split"].astype(str).str.lower()
        val = s.isin(["val", "valid", "validation", "test"]).to_numpy()
        if 0 < val.sum() < len(df):
            return np.flatnonzero(~val), np.flatnonzero(val)
    pid = df["patient_id"].astype(str).to_numpy() if "patient_id" in df.columns else df["case_id"].astype(str).to_numpy()
    patients = np.unique(pid)
    rng = np.random.default_rng(seed)
    n_val = max(1, int(round(val_fraction * patients.size)))
    val_p = set(rng.permutation(patients)[:n_val].tolist())
    val = np.array([p in val_p for p in pid])
    return np.flatnonzero(~val), np.flatnonzero(val)


# --------------------------------------------------------------------------- training stages
def pretrain(model, x, cfg: TrainConfig, gen, log_rows: list) -> tuple:
    """Self-supervised pretext pre-training of ``model.backbone``: from each cell of its feature grid,
    a linear read-out predicts the hand-crafted statistics of that image cell
    (:func:`local_statistics`, standardised over the cohort), on strongly augmented images
    (a MaskFeat-style feature-prediction pretext without the masking). It never sees a task label
    or a planted attribute; it teaches every architecture -- the ViT in particular, which learns
    little from a couple of hundred labelled images alone -- to encode local intensity and
    structure, as a generic pre-trained encoder would.

    Returns ``(readout, mu, sd, grid)``: the trained 1x1-conv read-out, the statistics' cohort mean and
    SD and the feature grid, for :func:`finetune`'s ``vit_pretext_aux``."""
    import torch
    import torch.nn.functional as F

    with torch.no_grad():
        g0 = model.grid(x[:2])
        grid = tuple(int(v) for v in g0.shape[2:])
        d = int(g0.shape[1])
        stats = torch.cat([local_statistics(x[i:i + 256], grid) for i in range(0, len(x), 256)])
        mu, sd = stats.mean((0, 2, 3), keepdim=True), stats.std((0, 2, 3), keepdim=True) + 1e-6
    vit = model.arch == "vit"
    bs = cfg.vit_batch_size if vit else cfg.batch_size
    epochs = cfg.vit_pretext_epochs if vit else cfg.pretext_epochs
    lr = cfg.vit_lr_pretext if vit else cfg.lr_pretext
    readout = torch.nn.Conv2d(d, stats.shape[1], 1)
    params = list(model.backbone.parameters()) + list(readout.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    def batch_loss(idx):
        xb = _augment(x[idx], gen, strong=True)
        target = (local_statistics(xb, grid) - mu) / sd
        return F.mse_loss(readout(model.grid(xb)), target)

    one_cycle_epochs(model, opt, len(x), bs, epochs, gen, batch_loss, log_rows, "pretext")
    return readout, mu, sd, grid


def fit_linear_head(model, x, y: np.ndarray, train_idx: np.ndarray, seed: int) -> None:
    """Transfer learning: L2 logistic regression on frozen pooled features, copied into ``model.head``
    (``pooling="lse"`` heads: :func:`fit_token_head`)."""
    import torch
    from sklearn.linear_model import LogisticRegression

    if getattr(model, "pooling", "") == "lse":
        return fit_token_head(model, x, y, train_idx)

    feats = _features(model, x[train_idx]).astype(np.float64)
    mu, sd = feats.mean(0), feats.std(0)
    sd = np.maximum(sd, 1e-3 * max(float(np.median(sd)), 1e-12))  # near-constant (dead) features stay tame
    clf = LogisticRegression(C=1.0, max_iter=5000, random_state=seed).fit((feats - mu) / sd, y[train_idx])
    w = clf.coef_[0] / sd  # undo the standardisation so the head reads raw pooled features
    b = clf.intercept_[0] - float(np.dot(clf.coef_[0], mu / sd))
    with torch.no_grad():  # two-class softmax head equivalent to the logistic model (class-0 logit = 0)
        model.head.weight.copy_(torch.tensor(np.stack([np.zeros_like(w), w]), dtype=torch.float32))
        model.head.bias.copy_(torch.tensor([0.0, b], dtype=torch.float32))


def model_inputs(images: np.ndarray, train_idx: np.ndarray | None = None, intensity: dict | None = None):
    """The demo models' inputs, produced by radlens' own encoder preprocessing.

    The encoder specs the demo writes say :data:`DEMO_INTENSITY`; training on anything else would
    make every later analysis feed the models inputs they were not trained on, so the training
    tensors come from the same :class:`~radlens.encoders.preprocess.Preprocessor`.

    Parameters
    ----------
    images : ndarray, shape (n, H, W)
    train_idx : ignored (kept for callers of the earlier signature)
    intensity : dict, optional
        ``clip`` and ``intensity`` preprocessing entries (default :data:`DEMO_INTENSITY`).

    Returns
    -------
    x : Tensor float32, shape (n, 1, H, W)
    norm : None
        (The earlier per-cohort ``(mean, std)``; the fixed window needs none.)
    """
    import torch

    from radlens.encoders.preprocess import Preprocessor

    h, w = images.shape[1:]
    base = {"spatial_size": [int(h), int(w)], "interpolation": "auto", **(intensity or DEMO_INTENSITY)}
    roi = {"rule": "overlap", "min_overlap": 0.5, "mode": "full", "crop_margin": 0.25}
    final = Preprocessor(base, roi, 1)
    return torch.stack([final(im).x for im in images]), None


def finetune(model, x, y: np.ndarray, train_idx: np.ndarray, cfg: TrainConfig, gen, task: str,
             log_rows: list, pretext: tuple | None = None) -> None:
    """Full fine-tuning of backbone + a fresh zero head: cross-entropy, flip augmentation (+ 90-degree
    rotations for ``cfg.rot90_finetune_archs``),
    AdamW with a one-cycle schedule (20 % warm-up, cosine decay; the head at 3x the backbone's rate).

    For ``centered_head_archs`` the head reads batch-centred pooled features while training
    (``standardised_head_archs``: centred and divided by the batch SD), folded into the plain linear
    head afterwards (the same function, so the classifier spec and the exact Grad-CAM reading of
    :mod:`radlens.synth.models` hold unchanged). The ViT needs the standardisation: the mean of its
    layer-normed patch tokens varies little between images (per-feature SD 0.03-0.07 against token SDs
    near 0.8: a lesion is a few of 64 tokens), so a raw-unit head needs weights of order 20 that AdamW's
    bounded steps never reach -- with a raw zero head the ViT's training loss stayed at ln 2 on every
    task, even with the backbone frozen. The CNNs need the centring: the demo ResNet's pooled
    ``layer4`` features sit on a large common offset (mean 0.48, case-to-case SD 0.05), and each batch's
    label imbalance times that offset swamped the class signal in the head's gradient: on the shape
    task the loss stayed at ln 2 for 6 of 20 epochs (final training loss 0.31, validation AUC 0.89;
    default cohort, seed 0); centred, it falls from epoch 3 (0.12, 0.93).

    The ViT's recipe knobs (``vit_layer_decay``, ``vit_frozen``, ``vit_finetune_shift``, ``vit_map_l1`` / ``_l2``
    and ``vit_pretext_aux``, which needs ``pretext``: :func:`pretrain`'s return value) are in
    :class:`TrainConfig`."""
    import torch
    import torch.nn.functional as F

    vit = model.arch == "vit"
    lr = cfg.vit_lr_finetune if vit else cfg.lr_finetune
    epochs = (int(round(cfg.vit_epoch_factor * cfg.finetune_epochs)) if vit
              else int(dict(cfg.task_epochs).get(task, cfg.finetune_epochs)))
    fbs = cfg.vit_finetune_batch_size if vit else cfg.finetune_batch_size
    consistent = model.arch in tuple(cfg.flip_consistent_archs)
    if consistent:  # each step: half a batch of images and their mirror images, over half the epochs
        fbs, epochs = max(fbs // 2, 2), max((epochs + 1) // 2, 1)  # -> about the same steps and step size
    init = None
    if getattr(model, "pooling", "") == "lse" and cfg.vit_head_init == "tl":
        mu, sd = _token_stats(model, x[train_idx])
        w1, b1 = model.head.weight[1].detach(), model.head.bias.detach()
        init = (w1 * sd, float(b1[1] - b1[0]) + float(w1 @ mu))
    with torch.no_grad():  # a fresh head: the tl head's raw-unit weights destabilise the backbone
        model.head.weight.zero_()
        model.head.bias.zero_()
    if getattr(model, "pooling", "") == "lse":
        return _finetune_token_head(model, x, y, train_idx, cfg, gen, task, log_rows, lr, epochs, fbs, init)
    centered = model.arch in tuple(cfg.centered_head_archs)
    scaled = centered and model.arch in tuple(cfg.standardised_head_archs)
    if centered:  # centre (standardise) the pooled features per batch while training (folded back below)
        linear = model.head
        model.head = torch.nn.Sequential(torch.nn.BatchNorm1d(linear.in_features, affine=False,
                                                              track_running_stats=False) if scaled
                                         else _BatchCentre(), linear)
    groups = (vit_param_groups(model.backbone, lr, cfg.vit_layer_decay, cfg.vit_frozen) if vit
              else [{"params": list(model.backbone.parameters()), "lr": lr}])
    opt = torch.optim.AdamW(groups + [{"params": model.head.parameters(), "lr": 3 * lr}],
                            weight_decay=cfg.weight_decay)
    aux = float(cfg.vit_pretext_aux) if vit else 0.0
    if aux and pretext is None:
        raise InputError("TrainConfig.vit_pretext_aux > 0 needs pretrain()'s read-out: pass finetune(pretext=...)")
    if aux:
        pretext[0].requires_grad_(False)
    l1, l2 = (float(cfg.vit_map_l1), float(cfg.vit_map_l2)) if vit else (0.0, 0.0)
    shift = int(cfg.vit_finetune_shift) if vit else 0
    xt, yt = x[train_idx], torch.as_tensor(y[train_idx], dtype=torch.long)
    rotate = model.arch in tuple(cfg.rot90_finetune_archs)
    lin = model.head[-1] if centered else model.head

    def batch_loss(idx):
        xb = _augment(xt[idx], gen, strong=False, rotate=rotate)
        if shift:
            xb = _random_shift(xb, gen, shift)
        if consistent:
            return _flip_consistent_loss(model, lin, xb, yt[idx], cfg.flip_consistency)
        if aux or l1 or l2:
            return _vit_finetune_loss(model, lin, xb, yt[idx], aux, pretext, l1, l2)
        return F.cross_entropy(model(xb), yt[idx])

    one_cycle_epochs(model, opt, len(xt), fbs, epochs, gen, batch_loss, log_rows, "finetune", task)
    for p in model.backbone.parameters():  # vit_frozen parts: trainable again for whoever uses the model next
        p.requires_grad_(True)
    if centered:  # fold the centring / standardisation (eval-mode feature statistics) into the linear head
        model.head = linear
        f = torch.as_tensor(_features(model, xt), dtype=torch.float32)
        mu = f.mean(0)
        sd = (f.var(0, unbiased=False) + 1e-5).sqrt() if scaled else torch.ones_like(mu)
        with torch.no_grad():
            w = linear.weight / sd
            linear.bias.sub_(w @ mu)
            linear.weight.copy_(w)


def _BatchCentre():
    """A module computing ``f - f.mean(0)`` (the centred fine-tuning head's input, see :func:`finetune`)."""
    import torch

    class BatchCentre(torch.nn.Module):
        def forward(self, f):
            return f - f.mean(0, keepdim=True)

    return BatchCentre()


def train_demo_encoders(data: CohortArrays, out_dir: str | Path, cfg: TrainConfig | None = None,
                        processes: int | None = None) -> TrainResult:
    """Pre-train, transfer-learn and fine-tune the demo encoders; write checkpoints, specs and metrics.

    Parameters
    ----------
    data : CohortArrays
        From :func:`load_cohort_arrays` (images shape (n, H, W), square for the ViT).
    out_dir : path
        Receives ``<arch>/`` folders with checkpoints and ``encoder_*.yaml`` / ``classifier_*.yaml``
        specs, ``training.json`` (metrics) and ``training_log.csv`` (loss per epoch).
    cfg : TrainConfig
    processes : int, optional
        Architectures trained at once, each in its own (forked on Linux) process on ``cfg.threads`` torch
        threads (default: as many as this process has cores, at most one per architecture; 1 = all
        in this process). Every architecture is seeded on its own and runs on a fixed thread count,
        so the checkpoints and metrics are the same whatever ``processes`` is.

    Returns
    -------
    TrainResult
    """
    import pandas as pd

    from radlens.io.artifacts import write_json, write_table

    cfg = cfg or TrainConfig()
    out_dir = Path(out_dir)
    missing = [t for t in cfg.tasks if t not in data.table.columns]
    if missing:
        raise InputError(f"tasks {missing}: not columns of the manifest; available: {list(data.table.columns)}")
    if processes is not None and (not isinstance(processes, int) or processes < 1):
        raise InputError(f"processes={processes!r} must be a positive integer (or None: one per core)")
    n, h, w = data.images.shape
    result = TrainResult(out_dir)
    metrics: dict[str, Any] = {"config": asdict(cfg), "n_cases": int(n), "n_train": int(data.train_idx.size),
                               "n_val": int(data.val_idx.size), "image_shape": [int(h), int(w)],
                               "preprocess": {a: arch_intensity(a, cfg) for a in cfg.archs},
                               "archs": {}}
    jobs = list(enumerate(cfg.archs))
    if processes is None:
        try:
            processes = len(os.sched_getaffinity(0)) // max(int(cfg.threads), 1)
        except AttributeError:  # not on Linux
            processes = (os.cpu_count() or 1) // max(int(cfg.threads), 1)
    processes = max(1, min(processes, len(jobs)))
    if processes == 1:
        done = [_train_arch(ai, arch, data, out_dir, cfg) for ai, arch in jobs]
    else:
        import concurrent.futures as cf

        from radlens.parallel import _mp_context

        ctx = _mp_context()   # forked on Linux (RADLENS_MP_START=spawn overrides)
        if ctx.get_start_method() == "fork":
            # the workers inherit the imports instead of paying for them (monai alone: ~6 s of CPU each)
            from radlens.synth.models import import_dependencies

            import_dependencies(cfg.archs)
        log.info("training %d architectures in %d %s processes", len(jobs), processes, ctx.get_start_method())
        with cf.ProcessPoolExecutor(processes, mp_context=ctx, initializer=_worker_threads,
                                    initargs=(int(cfg.threads),)) as pool:
            # longest first (the quick demo's ViT pretext is its longest job: submitted after the DenseNet
            # it started only when the DenseNet ended); results are collected in architecture order
            order = sorted(jobs, key=lambda j: -training_cost(j[1], cfg, n, int(data.train_idx.size)))
            futs = {ai: pool.submit(_train_arch, ai, arch, data, out_dir, cfg) for ai, arch in order}
            done = [futs[ai].result() for ai, _ in jobs]  # in architecture order; an error is raised here
    log_rows: list[dict] = []
    for arch, am, specs, rows in done:
        metrics["archs"][arch] = am
        result.specs[arch] = specs
        log_rows.extend(rows)
    write_json(out_dir / "training.json", metrics)
    write_table(pd.DataFrame(log_rows, columns=["arch", "stage", "task", "epoch", "loss"]), out_dir / "training_log.csv")
    result.metrics = metrics
    return result


#: rough training cost per image and epoch (ms on one core; quick and default demo, 2026-11-29), by
#: architecture and phase: only used to hand the longest architecture to a training process first
_COST_MS = {"cnn": (4.0, 3.0), "densenet": (1.7, 0.6), "vit": (3.0, 1.5)}


def training_cost(arch: str, cfg: TrainConfig, n: int, n_train: int) -> float:
    """Estimated single-core training time (ms) of ``arch`` under ``cfg``: pretext epochs x ``n`` images
    plus fine-tuning epochs (every task) x ``n_train`` images, times :data:`_COST_MS`. Orders the
    training processes' work (longest first); the checkpoints do not depend on it."""
    pre_ms, ft_ms = _COST_MS[arch]
    pre = cfg.vit_pretext_epochs if arch == "vit" else cfg.pretext_epochs
    ft = sum(int(round(cfg.vit_epoch_factor * cfg.finetune_epochs)) if arch == "vit"
             else int(dict(cfg.task_epochs).get(t, cfg.finetune_epochs)) for t in cfg.tasks)
    return pre * n * pre_ms + ft * n_train * ft_ms


def _worker_threads(threads: int) -> None:
    """Training worker start-up: its torch thread count before any torch op (a forked worker must not
    run the parent's OpenMP thread team)."""
    import torch

    torch.set_num_threads(threads)


def _train_arch(ai: int, arch: str, data: CohortArrays, out_dir: Path, cfg: TrainConfig):
    """One architecture of :func:`train_demo_encoders`: ``(arch, metrics, specs, loss rows)``."""
    import torch

    from radlens.synth.models import (build_cnn, build_densenet, build_vit, cnn_args, densenet_args,
                                      make_classifier, vit_config)

    n, h, w = data.images.shape
    norm = None
    log_rows: list[dict] = []
    t0 = time.perf_counter()
    arch_dir = out_dir / arch
    arch_dir.mkdir(parents=True, exist_ok=True)
    vit_cfg = vit_config(image_size=h, patch_size=cfg.vit_patch, hidden_size=cfg.vit_hidden,
                         num_layers=cfg.vit_layers, num_heads=cfg.vit_heads) if arch == "vit" else None
    am: dict[str, Any] = {"tasks": {}}
    x_all, _ = model_inputs(data.images, intensity=arch_intensity(arch, cfg))
    with torch_determinism(cfg.seed + 1000 * ai, cfg.threads):
        gen = torch.Generator().manual_seed(cfg.seed + 1000 * ai)
        backbone = (build_cnn(cnn_args(cfg.cnn_width)) if arch == "cnn" else
                    build_densenet(densenet_args(cfg.densenet_width, cfg.densenet_blocks)) if arch == "densenet" else build_vit(vit_cfg))
        pre_model = (make_classifier(backbone, arch, sharpness=cfg.vit_sharpness) if arch == "vit"
                     else make_classifier(backbone, arch))
        pretext = pretrain(pre_model, x_all, cfg, gen, log_rows)
        pre_model.eval()
        pre_spec = _encoder_spec(arch, "pre", cfg, (h, w), norm, vit_cfg)
        _write_checkpoint(pre_model, arch, "pre", arch_dir, pre_spec)
        pre_feats = _features(pre_model, x_all)
        am["decodability"] = {"pre": attribute_decodability(pre_feats, data.table, data.train_idx, data.val_idx)}
        am["pretext_seconds"] = round(time.perf_counter() - t0, 2)
        specs: dict[str, Any] = {"pre": str(arch_dir / "encoder_pre.yaml")}
        for task in cfg.tasks:
            yf = data.table[task].to_numpy(dtype=float)
            labelled = np.isfinite(yf)  # lesion-free phantoms carry no task label
            y = np.where(labelled, yf, 0).astype(int)
            tr = data.train_idx[labelled[data.train_idx]]
            va = data.val_idx[labelled[data.val_idx]]
            tl = copy.deepcopy(pre_model)
            if arch == "vit":
                tl.pooling = cfg.vit_task_pooling(task)
            fit_linear_head(tl, x_all, y, tr, cfg.seed)
            place_operating_point(tl, x_all, y, tr)
            tl_path = _write_classifier(tl, arch, "tl", task, arch_dir, pre_spec, vit_cfg)
            ft = copy.deepcopy(tl)
            finetune(ft, x_all, y, tr, cfg, gen, task, log_rows, pretext=pretext)
            place_operating_point(ft, x_all, y, tr)
            ft.eval()
            ft_name = f"ft_{task}"
            ft_spec = _encoder_spec(arch, ft_name, cfg, (h, w), norm, vit_cfg)
            _write_checkpoint(ft, arch, ft_name, arch_dir, ft_spec)
            ft_path = _write_classifier(ft, arch, "ft", task, arch_dir, ft_spec, vit_cfg)
            auc = {k: _auc(y[va], np.diff(_logits(m, x_all[va]), axis=1)[:, 0])
                   for k, m in (("tl", tl), ("ft", ft))}
            ft_feats = _features(ft, x_all)
            am["decodability"][ft_name] = attribute_decodability(ft_feats, data.table, data.train_idx,
                                                                 data.val_idx)
            am["tasks"][task] = {"val_auc": auc, "backbone_change": backbone_change(pre_model.backbone, ft.backbone)}
            specs[task] = {"tl": str(tl_path), "ft": str(ft_path), "ft_encoder": str(arch_dir / f"encoder_{ft_name}.yaml")}
            log.info("%s %s: val AUC tl=%.3f ft=%.3f, backbone change %.3f", arch, task, auc["tl"], auc["ft"],
                     am["tasks"][task]["backbone_change"]["total"])
    am["seconds"] = round(time.perf_counter() - t0, 2)
    return arch, am, specs, log_rows


def train_demo(manifest_path: str | Path, out_dir: str | Path, cfg: TrainConfig | None = None) -> TrainResult:
    """Load a phantom-cohort manifest and run :func:`train_demo_encoders` on it."""
    cfg = cfg or TrainConfig()
    data = load_cohort_arrays(manifest_path, cfg.val_fraction, cfg.seed)
    return train_demo_encoders(data, out_dir, cfg)


def summarise(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (arch, task): validation AUCs and backbone change (for reports)."""
    rows = []
    for arch, am in metrics.get("archs", {}).items():
        for task, tm in am.get("tasks", {}).items():
            rows.append({"arch": arch, "task": task, "val_auc_tl": tm["val_auc"]["tl"],
                         "val_auc_ft": tm["val_auc"]["ft"], "backbone_change": tm["backbone_change"]["total"]})
    return rows


