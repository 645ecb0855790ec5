"""Token outputs of one forward pass and the poolings computed from them.

``cls``     the ViT class token (models without one — CNNs, SigLIP, MONAI ViT without
            classification — have none; their global pooling is reported as ``global``);
``global``  the model's own global pooling (CNN: global average of the feature map; SigLIP:
            the attention-pooling head; otherwise the mean of patch tokens);
``mean``    mean of the patch tokens only (never class or register tokens);
``roi``     weighted mean of the patch tokens the ROI selects (weights from
            :func:`radlens.encoders.tokens.roi_token_weights`, uniform over the selection).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from radlens.errors import ConfigError

POOL_CHOICES = ("cls", "global", "mean", "roi")


@dataclass
class TokenOutput:
    """Features of one batch at the encoder's feature layer.

    Attributes
    ----------
    patch : Tensor, shape (B, N, D)
        Patch tokens (ViT) or feature-map cells (CNN), row-major over ``grid``.
    grid : tuple of int
        Token grid, ``(h, w)`` or ``(d, h, w)``; ``prod(grid) == N``.
    cls : Tensor (B, D) or None
        Class token.
    pooled_global : Tensor (B, D) or None
        The model's global pooling when it has no class token.
    registers : Tensor (B, R, D) or None
        Register tokens (never pooled).
    """

    patch: Any
    grid: tuple
    cls: Any = None
    pooled_global: Any = None
    registers: Any = None


def resolve_poolings(requested: Sequence[str] | str, has_cls: bool) -> list[str]:
    """Output pooling names for a request.

    ``cls`` and ``global`` both ask for "the whole-image vector": a model with a class token
    answers ``cls``, one without answers ``global``. Order follows the request, duplicates dropped.
    """
    if isinstance(requested, str):
        requested = [p.strip() for p in requested.split(",") if p.strip()]
    out: list[str] = []
    for p in requested:
        if p not in POOL_CHOICES:
            raise ConfigError(f"pooling={p!r} not allowed; use any of {list(POOL_CHOICES)} "
                              "('cls' on a model without a class token gives 'global')")
        name = ("cls" if has_cls else "global") if p in ("cls", "global") else p
        if name not in out:
            out.append(name)
    if not out:
        raise ConfigError("pooling is empty; give at least one of cls, global, mean, roi")
    return out


def pool_tokens(tok: TokenOutput, names: Sequence[str], roi_weights=None) -> dict[str, Any]:
    """Compute the requested poolings from one :class:`TokenOutput`.

    Parameters
    ----------
    tok : TokenOutput
    names : sequence of str
        Output names from :func:`resolve_poolings`.
    roi_weights : Tensor, shape (B, N), optional
        Required for ``roi``; each row sums to 1.

    Returns
    -------
    dict name -> Tensor float32 (B, D)
    """
    import torch

    patch = tok.patch.float()
    out = {}
    for name in names:
        if name == "cls":
            if tok.cls is None:
                raise ConfigError("pooling 'cls' requested but the model has no class token; use 'global'")
            out[name] = tok.cls.float()
        elif name == "global":
            out[name] = tok.pooled_global.float() if tok.pooled_global is not None else patch.mean(1)
        elif name == "mean":
            out[name] = patch.mean(1)
        elif name == "roi":
            if roi_weights is None:
                raise ConfigError("pooling 'roi' needs an ROI for every image")
            w = torch.as_tensor(roi_weights, dtype=patch.dtype, device=patch.device)
            out[name] = torch.einsum("bn,bnd->bd", w, patch)
        else:  # pragma: no cover - resolve_poolings guards this
            raise ConfigError(f"unknown pooling {name!r}")
    return out


def to_numpy(pools: dict[str, Any]) -> dict[str, np.ndarray]:
    """Tensors → float32 numpy arrays on the CPU."""
    return {k: v.detach().to("cpu", dtype=__import__("torch").float32).numpy() for k, v in pools.items()}
