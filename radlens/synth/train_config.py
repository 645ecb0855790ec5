"""Demo training settings: :class:`TrainConfig` (re-exported by :mod:`radlens.synth.train`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from radlens.errors import InputError
from radlens.synth.models import ARCHS

TASKS = ("task_texture", "task_intensity", "task_shape")


@dataclass
class TrainConfig:
    """Demo training settings (all epochs are passes over the training images).

    Parameters
    ----------
    archs : tuple of {"cnn", "densenet", "vit"}
    tasks : tuple of str
        Binary label columns of the manifest, one transfer-learning and one fine-tuned checkpoint each.
    pretext_epochs, finetune_epochs : int
    batch_size, finetune_batch_size : int
        Images per step of the pretext task (contrastive negatives) and of fine-tuning.
    lr_pretext, lr_finetune : float
        AdamW peak learning rates (fine-tuning: backbone; the head gets 3x), one-cycle schedule.
    vit_lr_finetune : float
        Peak fine-tuning learning rate of the ViT backbone (its head: 3x). 2e-4 (with flips only, see
        ``rot90_finetune_archs``): the lowest validation AUC over tasks and seeds 0-3 was 0.90 (demo
        cohort), against 0.84 at 1e-4 (seeds 0-3) and 0.81 at 3e-4 (seed 0).
    vit_pretext_epochs, vit_batch_size, vit_finetune_batch_size, vit_lr_pretext :
        The ViT's own pretext length, pretext / fine-tuning batch sizes and pretext learning rate. A
        transformer trained from scratch needs more optimiser steps than the CNNs: with the CNNs' 4
        pretext epochs of 32 images (52 steps) its pooled features told the texture classes apart at
        validation AUC 0.69 (transfer) and fine-tuning never left chance; 8 epochs of 16 images (200
        steps) give 0.91 (default demo cohort, seed 0). Its steps are cheaper than the ResNet's, so the
        ViT still trains faster than the ResNet.
    task_epochs : dict task -> int
        Fine-tuning epochs of the CNNs (ResNet, DenseNet) for these tasks instead of ``finetune_epochs``
        (the ViT keeps its own). The quick demo gives the shape task more: see ``radlens.demo.QUICK``.
    vit_epoch_factor : float
        The ViT fine-tunes ``round(vit_epoch_factor * finetune_epochs)`` epochs (0.75: with its smaller
        batches it still takes more steps than the CNNs, and its training, run beside the DenseNet's,
        then fits within the ResNet's).
    weight_decay : float
        AdamW weight decay of fine-tuning.
    rot90_finetune_archs : tuple of str
        Architectures whose fine-tuning augmentation adds random 90-degree rotations to the flips. Not
        the ViT: the demo cohort's elongated lesions lie within 30 degrees of vertical, and its
        pretext features (like the hand-crafted |d/dx|, |d/dy| targets they predict) are orientation
        specific, so a quarter-turned long lesion reads as a different pattern. On the pretext features
        of seed 0 a linear shape probe scores validation AUC 0.87 on the images as drawn and 0.24 on
        them quarter-turned; fine-tuned with quarter turns the ViT had to learn "elongated either
        way" from ~250 images and did not (training AUC 0.74, validation 0.67); with flips only it
        reaches 0.93 (docs/synth.md). Flips keep a near-vertical ellipse near vertical, and every label.
        Not the DenseNet either: with quarter turns its one-block (16x16) version fine-tuned to shape
        validation AUC 0.77 and Grad-CAM pointing game 0.47, flips only 0.98 and 0.70 (seed 0); the
        earlier two-block one 0.88 -> 0.97 (docs/cam.md "Which CNN layer"). Nor, since its head reads the
        16x16 ``layer3``, the ResNet: with quarter turns that ResNet fine-tuned to shape validation AUC
        0.77 on training seed 1 (below its transfer checkpoint's 0.86), flips only 0.99; over seeds 0-3
        flips only give 0.99-1.00 (demo cohort, ``benchmarks/cnn_cam.py``). Default: none.
    flip_consistent_archs : tuple of str
        Architectures fine-tuned on each batch and its left-right mirror image with a penalty
        ``flip_consistency`` x the mean squared difference (logit units) between each image's class
        map (the head's per-position logit difference: its exact Grad-CAM up to a constant) and the
        mirrored map of its mirror image (:func:`_flip_consistent_loss`). The DenseNet: without it,
        its shape maps peaked on ONE long edge of the 5-6 px wide elongated lesions, a pixel or three
        outside the band (the evidence for "elongated" was one edge polarity, a different one per
        training seed), so the shape pointing game was 0.70 / 0.71 / 0.50 / 0.65 over training seeds
        0-3; with it (0.3) and a fourth dense layer (``densenet_blocks``) 0.70 / 0.68 / 0.82 / 0.83
        (docs/cam.md "Every training seed"). Each step takes half a batch of images and their mirror
        images, over half the epochs: about the same steps, step size and compute as without it.
    flip_consistency : float >= 0
        Weight of that penalty.
    centered_head_archs : tuple of str
        Architectures whose fine-tuning head reads batch-centred pooled features while training
        (folded back into a plain linear head afterwards, see :func:`finetune`).
    standardised_head_archs : tuple of str
        Of those, the ones whose head input is also divided by the batch SD (standardised).
    temperature : float
        NT-Xent temperature.
    cnn_width : int
        CNN stem width (stages: width x 1, 2, 4, 8).
    densenet_width : int
        DenseNet stem width (growth rate width / 2).
    densenet_blocks : tuple of int
        Dense layers per dense block (:func:`radlens.synth.models.densenet_args`). ``(4,)``: one block,
        a 16x16 ``features`` grid at 64 px (receptive field 43 px). With ``(3, 3)`` (8x8) the fine-tuned
        shape Grad-CAM's maximum fell beside the 5-6 px wide elongated lesions (pointing game 0.53;
        ``(3,)`` with flips-only fine-tuning: 0.70, default cohort, seed 0). Four layers rather than
        three go with ``flip_consistent_archs``: with the mirror penalty the three-layer block's shape
        maps were flat across the band and peaked on either edge (training seed 0: 0.57); the fourth
        layer gives them one peak on it (shape pointing game 0.68-0.83 over training seeds 0-3;
        docs/cam.md "Every training seed").
    vit_hidden, vit_layers, vit_heads, vit_patch : int
        Tiny DINOv2 size.
    vit_layer_decay : float in (0, 1]
        Layer-wise learning-rate decay of the ViT's fine-tuning (BEiT / MAE): block ``i`` of ``L`` gets
        ``vit_lr_finetune * vit_layer_decay ** (L - i)``, the embeddings ``** (L + 1)``, the final layer
        norm the full rate (:func:`radlens.synth.steps.vit_param_groups`). 1: one rate for all.
    vit_frozen : tuple of str
        Parts of the ViT backbone kept frozen while fine-tuning (keys of
        :data:`radlens.synth.steps.VIT_PARTS`: ``embeddings``, ``attention``, ``mlp``, ``norms``,
        ``layer_scale``). Default: none.
    vit_pretext_aux : float >= 0
        Weight of the pretext loss (the pretext read-out, frozen, predicting each token's local
        statistics, :func:`radlens.synth.train.pretrain`) added to the ViT's fine-tuning loss. 0: none.
    vit_finetune_shift : int >= 0
        Random translation (px, reflect padding) of the ViT's fine-tuning images on top of the flips. 0: none.
    vit_map_l1 : float >= 0
        Weight of an L1 penalty on the ViT's per-token positive-class logit shares while fine-tuning (its
        exact Grad-CAM map before the ReLU, :func:`radlens.synth.steps._vit_finetune_loss`): evidence on few
        tokens. 0: none. This and ``vit_map_l2`` / ``vit_pretext_aux`` do not apply while the ViT is in
        ``flip_consistent_archs``.
    vit_map_l2 : float >= 0
        Weight of the same shares' mean square (large shares cost most). 0 (default): none. With the
        mean-pooled head on every task, 1e-4 raised the shape pointing game over training seeds 0-3 from
        0.54 / 0.40 / 0.43 / 0.36 to 0.60 / 0.58 / 0.53 / 0.38 (it takes the body's outline off the shape
        maps) but lowered intensity pointing from 0.91-0.94 to 0.70-0.89; the shape task's ``lse`` head
        (``vit_pooling``) does better (docs/cam.md "The ViT with a token-evidence penalty").
        All of ``vit_layer_decay``, ``vit_frozen``, ``vit_pretext_aux``, ``vit_finetune_shift`` and
        ``vit_map_*`` act on the ViT's mean-pooled heads only (not on ``lse`` heads, which fine-tune in
        :func:`radlens.synth.token_head._finetune_token_head`).
    vit_intensity : {"zscore", "window"}
        The ViT's intensity preprocessing (:data:`radlens.synth.checkpoints.VIT_INTENSITY`): a per-image
        z-score, or the CNNs' fixed [0, 1] window centred and scaled by fixed constants.
    vit_pooling : {"mean", "lse"} or dict task -> {"mean", "lse"}
        The ViT classifiers' ``head.pooling`` (docs/contracts.md), for every task or per task (tasks not
        in the dict: ``mean``): ``mean``, a linear head on the patch-token mean; ``lse``, a linear score
        of every patch token pooled by a log-mean-exp of sharpness ``vit_sharpness``
        (:func:`radlens.cam.model.lse_pool`; multiple-instance pooling: a few tokens can carry the
        logit, and Grad-CAM at ``layernorm`` is the per-token score map). Default ``{"task_shape": "lse"}``:
        with the mean head the transformer parked the elongation evidence on body-edge background tokens
        (fine-tuned shape Grad-CAM pointing game 0.54 / 0.40 / 0.43 / 0.36 over training seeds 0-3); with the
        log-mean-exp head (and ``vit_head_init="tl"``) 0.64 / 0.68 / 0.73 / 0.72, shape validation AUC
        0.87-0.91. Texture and intensity keep the mean head: with ``lse`` seed 0's texture fine-tuned only to
        0.70 (zero head) or 0.82 (transfer-head start). docs/cam.md "The ViT's shape head".
    vit_sharpness : float > 0
        ``r`` of the ``lse`` pooling (logit units).
    vit_head_lr_factor : float
        The ViT's fine-tuning head learning rate, as a multiple of ``vit_lr_finetune`` (``lse`` heads).
    vit_head_init : {"zero", "tl"}
        ``lse`` heads: fine-tuning starts from a zero head or from the transfer head (in standardised
        token units; linear probing then fine-tuning). ``tl`` (default): with a zero head one training
        seed of four fine-tuned shape maps that peaked beside the lesion (pointing 0.45, shape-only screen).
    val_fraction : float
        Fraction of patients held out (when the manifest has no ``split`` column) to report AUCs.
    seed : int
    threads : int
        torch intra-op threads used while training (fixed, so numbers do not depend on the machine load).
    """

    archs: tuple = ("cnn", "densenet", "vit")
    tasks: tuple = TASKS
    pretext_epochs: int = 4
    finetune_epochs: int = 8
    batch_size: int = 32
    finetune_batch_size: int = 32
    lr_pretext: float = 2e-3
    lr_finetune: float = 3e-3
    vit_lr_finetune: float = 2e-4
    task_epochs: dict = field(default_factory=dict)
    vit_epoch_factor: float = 0.75
    vit_pretext_epochs: int = 8
    vit_batch_size: int = 16
    vit_finetune_batch_size: int = 16
    vit_lr_pretext: float = 2e-3
    weight_decay: float = 0.05
    rot90_finetune_archs: tuple = ()
    flip_consistent_archs: tuple = ("densenet",)
    flip_consistency: float = 0.3
    centered_head_archs: tuple = ("cnn", "densenet", "vit")
    standardised_head_archs: tuple = ("vit",)
    temperature: float = 0.2
    cnn_width: int = 8
    densenet_width: int = 16
    densenet_blocks: tuple = (4,)
    vit_hidden: int = 64
    vit_layers: int = 4
    vit_heads: int = 4
    vit_patch: int = 8
    vit_intensity: str = "zscore"
    vit_layer_decay: float = 1.0
    vit_frozen: tuple = ()
    vit_pretext_aux: float = 0.0
    vit_finetune_shift: int = 0
    vit_map_l1: float = 0.0
    vit_map_l2: float = 0.0
    vit_pooling: Any = field(default_factory=lambda: {"task_shape": "lse"})
    vit_sharpness: float = 1.0
    vit_head_lr_factor: float = 3.0
    vit_head_init: str = "tl"
    val_fraction: float = 0.3
    seed: int = 0
    threads: int = 1

    def __post_init__(self):
        bad = [a for a in self.archs if a not in ARCHS]
        if bad or not self.archs:
            raise InputError(f"TrainConfig.archs={list(self.archs)!r}: allowed values are {sorted(ARCHS)}")
        for name in ("pretext_epochs", "finetune_epochs", "batch_size", "finetune_batch_size", "cnn_width", "densenet_width", "vit_hidden",
                     "vit_layers", "vit_heads", "vit_patch", "threads", "vit_pretext_epochs", "vit_batch_size",
                     "vit_finetune_batch_size"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or v < (0 if name.endswith("epochs") else 1):
                raise InputError(f"TrainConfig.{name}={v!r}: must be a positive integer")
        bad = {t: e for t, e in dict(self.task_epochs).items()
               if t not in self.tasks or not isinstance(e, (int, np.integer)) or e < 0}
        if bad:
            raise InputError(f"TrainConfig.task_epochs={dict(self.task_epochs)!r}: keys must be among tasks "
                             f"{list(self.tasks)} and values epochs >= 0; bad: {bad}")
        for name in ("rot90_finetune_archs", "flip_consistent_archs", "centered_head_archs", "standardised_head_archs"):
            bad = [a for a in getattr(self, name) if a not in ARCHS]
            if bad:
                raise InputError(f"TrainConfig.{name}={list(getattr(self, name))!r}: allowed values are {sorted(ARCHS)}")
        if not (isinstance(self.flip_consistency, (int, float, np.floating)) and self.flip_consistency >= 0):
            raise InputError(f"TrainConfig.flip_consistency={self.flip_consistency!r}: must be a number >= 0")
        if self.vit_intensity not in ("zscore", "window"):
            raise InputError(f"TrainConfig.vit_intensity={self.vit_intensity!r}: allowed values are "
                             "['window', 'zscore']")
        if not (isinstance(self.vit_layer_decay, (int, float, np.floating)) and 0 < self.vit_layer_decay <= 1):
            raise InputError(f"TrainConfig.vit_layer_decay={self.vit_layer_decay!r}: must be a number in (0, 1]")
        from radlens.synth.steps import VIT_PARTS

        bad = [k for k in self.vit_frozen if k not in VIT_PARTS]
        if bad or isinstance(self.vit_frozen, str):
            raise InputError(f"TrainConfig.vit_frozen={self.vit_frozen!r}: a tuple of {sorted(VIT_PARTS)}")
        if not (isinstance(self.vit_pretext_aux, (int, float, np.floating)) and self.vit_pretext_aux >= 0):
            raise InputError(f"TrainConfig.vit_pretext_aux={self.vit_pretext_aux!r}: must be a number >= 0")
        for name in ("vit_map_l1", "vit_map_l2"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float, np.floating)) and v >= 0):
                raise InputError(f"TrainConfig.{name}={v!r}: must be a number >= 0")
        if not (isinstance(self.vit_finetune_shift, (int, np.integer)) and self.vit_finetune_shift >= 0):
            raise InputError(f"TrainConfig.vit_finetune_shift={self.vit_finetune_shift!r}: must be an integer >= 0")
        vp = self.vit_pooling
        known = sorted(set(TASKS) | set(self.tasks))
        if not (vp in ("mean", "lse") or (isinstance(vp, dict) and set(vp) <= set(known)
                                          and set(vp.values()) <= {"mean", "lse"})):
            raise InputError(f"TrainConfig.vit_pooling={vp!r}: allowed values are 'lse', 'mean' or a dict "
                             f"task -> 'lse' / 'mean' with tasks among {known} (the demo's tasks and tasks)")
        if (isinstance(self.vit_sharpness, bool) or not isinstance(self.vit_sharpness, (int, float, np.floating))
                or not 0 < self.vit_sharpness < 1e4):
            raise InputError(f"TrainConfig.vit_sharpness={self.vit_sharpness!r}: must be a number in (0, 1e4)")
        if "vit" in tuple(self.flip_consistent_archs) and any(self.vit_task_pooling(t) == "lse" for t in self.tasks):
            raise InputError(f"TrainConfig.flip_consistent_archs={list(self.flip_consistent_archs)!r} with "
                             f"vit_pooling={self.vit_pooling!r}: the mirror-consistency penalty is not implemented "
                             "for the ViT's lse heads; drop 'vit' from flip_consistent_archs or use vit_pooling='mean'")
        if self.vit_head_init not in ("zero", "tl"):
            raise InputError(f"TrainConfig.vit_head_init={self.vit_head_init!r}: allowed values are ['tl', 'zero']")
        if not (isinstance(self.vit_head_lr_factor, (int, float)) and self.vit_head_lr_factor > 0):
            raise InputError(f"TrainConfig.vit_head_lr_factor={self.vit_head_lr_factor!r}: must be a number > 0")
        if not 0.0 < self.val_fraction < 0.9:
            raise InputError(f"TrainConfig.val_fraction={self.val_fraction!r}: must be in (0, 0.9)")

    def vit_task_pooling(self, task: str) -> str:
        """The ViT classifiers' ``head.pooling`` for ``task`` (``vit_pooling``)."""
        vp = self.vit_pooling
        return vp.get(task, "mean") if isinstance(vp, dict) else vp
