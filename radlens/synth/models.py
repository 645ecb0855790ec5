"""Demo network definitions: a small MONAI ResNet, a small MONAI DenseNet and a tiny HF DINOv2 ViT.

Both are built exactly the way a user's own encoder is described to radlens (an encoder spec with
``kind: monai`` + ``name``/``args``, or ``kind: hf`` + a ``save_pretrained`` folder), so the demo
exercises the same adapter paths as real studies. :class:`DemoClassifier` adds the linear head the
classifier spec describes (``head.pooling`` reads the pooled backbone output) and is what
:mod:`radlens.synth.train` optimises.

torch / monai / transformers are imported lazily inside the functions.
"""
from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

#: The demo architectures and what their linear heads read. Every head reads the spatial / token mean
#: of the CAM target layer's output, so ``logit = bias + sum over positions of (head weight . activation) / N``
#: exactly: Grad-CAM on that layer is the per-position share of the logit (Zhou et al.'s CAM), signed
#: activations included (the ViT's final layer norm and the DenseNet's last batch norm emit signed values).
#: ``pooling`` is the default; the ViT's shape classifiers use ``lse`` (``TrainConfig.vit_pooling``: the head
#: scores every token, Grad-CAM at ``layernorm`` is each token's own score, docs/cam.md "The ViT's shape head").
#: The ResNet is read at ``layer3`` (16x16 at 64 px, stride 4, receptive field 25 px): MONAI's ResNet always
#: builds four stages, and its ``layer4`` (8x8) is too coarse for the demo's 5-6 px wide elongated lesions;
#: the encoder spec's ``layer: layer3`` stops every forward pass there, so ``layer4`` is never run or trained
#: (docs/cam.md "Which CNN layer").
ARCHS = {"cnn": {"kind": "monai", "pooling": "global", "layer": "layer3", "target_layer": "layer3"},
         "densenet": {"kind": "monai", "pooling": "global", "layer": "features", "target_layer": "features"},
         "vit": {"kind": "hf", "pooling": "mean", "layer": None, "target_layer": "layernorm"}}


def cnn_args(width: int = 8) -> dict[str, Any]:
    """Constructor arguments of the demo CNN (``monai.networks.nets.ResNet``).

    A four-stage basic-block ResNet (one block per stage) with ``width * (1, 2, 4, 8)`` channels,
    a 3x3 stride-1 stem and no max-pool, so a 64x64 input gives a 16x16 ``layer3`` grid (the demo's
    head and CAM layer, see :data:`ARCHS`; ``layer4``, 8x8, is built by MONAI but never run). No fully
    connected layer (``feed_forward: false``): the linear head lives in the classifier spec.
    """
    return {"block": "basic", "layers": [1, 1, 1, 1], "block_inplanes": [width, 2 * width, 4 * width, 8 * width],
            "spatial_dims": 2, "n_input_channels": 1, "conv1_t_size": 3, "conv1_t_stride": 1,
            "no_max_pool": True, "feed_forward": False}


def densenet_args(width: int = 16, blocks=(4,)) -> dict[str, Any]:
    """Constructor arguments of the demo DenseNet (``monai.networks.nets.DenseNet``).

    A 7x7 stride-2 stem and a max-pool (64 px -> 16x16), then ``blocks`` dense blocks (default: one
    block of four layers, growth ``width // 2``; each further block follows a pooling transition), so
    a 64x64 input gives a 16x16 ``features`` grid (the last batch norm's output, read by the head
    through a spatial mean; stride 4, receptive field 43 px; three layers: 35 px). Two blocks ``(3, 3)``
    (the earlier demo) give an 8x8 grid, whose cells (8 px apart) could not point at a 5-6 px wide
    lesion band (docs/cam.md "Which CNN layer"). ``out_channels`` sizes MONAI's own classification
    layers, which the demo never runs (the encoder stops at ``features``).
    """
    return {"spatial_dims": 2, "in_channels": 1, "out_channels": 2, "init_features": int(width),
            "growth_rate": max(int(width) // 2, 2), "block_config": [int(b) for b in blocks], "bn_size": 2}


def import_dependencies(archs=tuple(ARCHS)) -> None:
    """Import what building ``archs`` needs (torch; monai for the CNNs, transformers for the ViT), e.g.
    before forking worker processes that then inherit the modules."""
    import torch  # noqa: F401

    if {"cnn", "densenet"} & set(archs):
        import monai.networks.nets  # noqa: F401
    if "vit" in archs:
        import transformers  # noqa: F401


def build_densenet(args: dict[str, Any] | None = None):
    """The demo DenseNet backbone: ``monai.networks.nets.DenseNet(**args)`` (see :func:`densenet_args`)."""
    from monai.networks.nets import DenseNet

    return DenseNet(**(args or densenet_args()))


def build_cnn(args: dict[str, Any] | None = None):
    """The demo CNN backbone: ``monai.networks.nets.ResNet(**args)`` (see :func:`cnn_args`)."""
    from monai.networks.nets import ResNet

    return ResNet(**(args or cnn_args()))


def vit_config(image_size: int = 64, patch_size: int = 8, hidden_size: int = 64, num_layers: int = 4,
               num_heads: int = 4, mlp_ratio: int = 2):
    """A tiny ``transformers.Dinov2Config`` for 1-channel ``image_size`` images.

    ``(image_size / patch_size) ** 2`` patch tokens plus one CLS token of width ``hidden_size``.
    """
    from transformers import Dinov2Config

    return Dinov2Config(image_size=image_size, patch_size=patch_size, num_channels=1, hidden_size=hidden_size,
                        num_hidden_layers=num_layers, num_attention_heads=num_heads, mlp_ratio=mlp_ratio,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, drop_path_rate=0.0,
                        layerscale_value=1.0, use_mask_token=False)


def build_vit(config=None):
    """The demo ViT backbone: ``transformers.Dinov2Model(config)`` (see :func:`vit_config`)."""
    from transformers import Dinov2Model

    model = Dinov2Model(config or vit_config())
    return model


def vit_target_layer(config=None) -> str:
    """Dotted name of the ViT CAM layer: the final layer norm, whose patch tokens the head reads (their mean,
    or each token for ``pooling="lse"``)."""
    return "layernorm"


def pooled_features(backbone, x, arch: str):
    """What the demo linear head reads.

    Parameters
    ----------
    backbone : torch.nn.Module
        :func:`build_cnn` or :func:`build_vit` output.
    x : Tensor, shape (B, 1, H, W)
        Preprocessed images.
    arch : {"cnn", "densenet", "vit"}
        ``cnn``: global average of the ``layer3`` feature map (pooling ``global``);
        ``densenet``: global average of the ``features`` output (last batch norm; pooling ``global``);
        ``vit``: mean of the patch tokens of ``last_hidden_state`` (after the final layer norm; pooling
        ``mean``).

    Returns
    -------
    Tensor, shape (B, D)
    """
    if arch == "cnn":
        return grid_features(backbone, x, arch).mean(dim=(2, 3))  # the demo ResNet is read at layer3 (16x16)
    if arch == "densenet":
        return backbone.features(x).mean(dim=(2, 3))
    if arch == "vit":
        return backbone(pixel_values=x).last_hidden_state[:, 1:].mean(dim=1)
    raise ValueError(f"arch {arch!r} not supported; use one of {sorted(ARCHS)}")


def grid_features(backbone, x, arch: str):
    """The target layer's output on its grid, ``(B, C, h, w)`` (ViT: patch tokens put on the patch grid).

    :func:`pooled_features` is its mean over ``(h, w)`` for every architecture.
    """
    if arch == "cnn":
        f = backbone.act(backbone.bn1(backbone.conv1(x)))  # demo ResNet: no max-pool (cnn_args)
        for name in ("layer1", "layer2", "layer3"):  # the head reads layer3; layer4 is never run (ARCHS)
            f = getattr(backbone, name)(f)
        return f
    if arch == "densenet":
        return backbone.features(x)
    if arch == "vit":
        tok = backbone(pixel_values=x).last_hidden_state[:, 1:]
        b, n, d = tok.shape
        side = int(round(n ** 0.5))
        return tok.transpose(1, 2).reshape(b, d, side, n // side)
    raise ValueError(f"arch {arch!r} not supported; use one of {sorted(ARCHS)}")


def feature_dim(backbone, arch: str) -> int:
    """Width ``D`` of :func:`pooled_features` for a backbone."""
    if arch == "cnn":
        return int(backbone.layer3[-1].conv2.out_channels)
    if arch == "densenet":
        return int(backbone.features.norm5.num_features)
    return int(backbone.config.hidden_size)


def make_classifier(backbone, arch: str, n_classes: int = 2, pooling: str | None = None, sharpness: float = 1.0):
    """A :class:`DemoClassifier` around ``backbone`` (built lazily so torch stays optional at import).

    ``pooling``: the classifier spec's ``head.pooling`` (default :data:`ARCHS`'s); ``lse`` (with
    ``sharpness``) applies the linear head to every position of :func:`grid_features` and pools the
    per-position class scores by :func:`radlens.cam.model.lse_pool`, as radlens' classifier loader does.
    """
    import torch

    pooling = pooling or ARCHS[arch]["pooling"]
    if pooling not in (ARCHS[arch]["pooling"], "lse"):
        raise ValueError(f"pooling {pooling!r} not supported for {arch!r}; use {ARCHS[arch]['pooling']!r} or 'lse'")

    class DemoClassifier(torch.nn.Module):
        """Backbone + linear head: ``logits = head(pool(backbone(x)))``, or for ``pooling="lse"``
        ``lse_pool(head(positions))``."""

        def __init__(self):
            super().__init__()
            self.backbone = backbone
            self.arch = arch
            self.pooling = pooling
            self.sharpness = float(sharpness)
            self.head = torch.nn.Linear(feature_dim(backbone, arch), n_classes)

        def features(self, x):
            """Mean over positions (every pooling's linear read-out of the pooled features; decodability)."""
            return pooled_features(self.backbone, x, self.arch)

        def grid(self, x):
            return grid_features(self.backbone, x, self.arch)

        def tokens(self, x):
            """Positions of :meth:`grid` as tokens, ``(B, N, D)`` (row-major)."""
            return self.grid(x).flatten(2).transpose(1, 2)

        def forward(self, x):
            if self.pooling == "lse":
                from radlens.cam.model import lse_pool

                return lse_pool(self.head(self.tokens(x)), self.sharpness)
            return self.head(self.features(x))

    return DemoClassifier()
