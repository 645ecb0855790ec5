"""Demo network definitions: a small MONAI ResNet and a tiny HF DINOv2 ViT.

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

#: The two demo architectures and what their linear heads read.
ARCHS = {"cnn": {"kind": "monai", "pooling": "global", "layer": "layer4", "target_layer": "layer4"},
         "vit": {"kind": "hf", "pooling": "cls", "layer": None, "target_layer": None}}


def cnn_args(width: int = 8) -> dict[str, Any]:
    """Constructor arguments of the demo CNN (``monai.networks.nets.ResNet``).

    A four-stage basic-block ResNet (one block per stage) with ``width * (1, 2, 4, 8)`` channels,
    a 3x3 stride-1 stem and no max-pool, so a 64x64 input gives an 8x8 ``layer4`` grid. No fully
    connected layer (``feed_forward: false``): the linear head lives in the classifier spec.
    """
    return {"block": "basic", "layers": [1, 1, 1, 1], "block_inplanes": [width, 2 * width, 4 * width, 8 * width],
            "spatial_dims": 2, "n_input_channels": 1, "conv1_t_size": 3, "conv1_t_stride": 1,
            "no_max_pool": True, "feed_forward": False}


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


def vit_target_layer(config) -> str:
    """Dotted name of the last transformer block of a DINOv2 model (the ViT CAM layer)."""
    return f"encoder.layer.{config.num_hidden_layers - 1}"


def pooled_features(backbone, x, arch: str):
    """What the demo linear head reads.

    Parameters
    ----------
    backbone : torch.nn.Module
        :func:`build_cnn` or :func:`build_vit` output.
    x : Tensor, shape (B, 1, H, W)
        Preprocessed images.
    arch : {"cnn", "vit"}
        ``cnn``: global average of the ``layer4`` feature map (pooling ``global``);
        ``vit``: the CLS token of ``last_hidden_state`` (after the final layer norm; pooling ``cls``).

    Returns
    -------
    Tensor, shape (B, D)
    """
    if arch == "cnn":
        return backbone(x)  # MONAI ResNet without fc: flattened adaptive average pool of layer4
    if arch == "vit":
        return backbone(pixel_values=x).last_hidden_state[:, 0]
    raise ValueError(f"arch {arch!r} not supported; use one of {sorted(ARCHS)}")


def feature_dim(backbone, arch: str) -> int:
    """Width ``D`` of :func:`pooled_features` for a backbone."""
    if arch == "cnn":
        return int(backbone.layer4[-1].conv2.out_channels) if hasattr(backbone.layer4[-1], "conv2") else \
            int(backbone.in_planes)
    return int(backbone.config.hidden_size)


def make_classifier(backbone, arch: str, n_classes: int = 2):
    """A :class:`DemoClassifier` around ``backbone`` (built lazily so torch stays optional at import)."""
    import torch

    class DemoClassifier(torch.nn.Module):
        """Backbone + linear head on the pooled features: ``logits = head(pool(backbone(x)))``."""

        def __init__(self):
            super().__init__()
            self.backbone = backbone
            self.arch = arch
            self.head = torch.nn.Linear(feature_dim(backbone, arch), n_classes)

        def features(self, x):
            return pooled_features(self.backbone, x, self.arch)

        def forward(self, x):
            return self.head(self.features(x))

    return DemoClassifier()
