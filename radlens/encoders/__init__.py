"""Encoders: specs, adapters (MONAI, transformers, TorchScript, python factories), preprocessing,
ROI → token mapping, poolings from one forward pass, and embedding extraction.

Public API::

    enc = load_encoder("encoder.yaml", device="cpu")
    x, roi = enc.preprocess(case)                 # (C, *spatial) tensor, bool ROI in model pixels
    tok = enc.forward_features(x[None])           # TokenOutput(patch (B, N, D), grid, cls, pooled_global)
    pools = embed_arrays(enc, images, rois)       # {"cls"/"global", "mean", "roi"}: (n, D)
    embed(manifest, enc, "embeddings.npz")        # streamed, resumable, writes via write_embeddings format

Nothing here imports torch at module import time.
"""
from radlens.encoders.embed import embed, embed_arrays, forward_pool
from radlens.encoders.encoder import Encoder, load_encoder, resolve_device
from radlens.encoders.pooling import POOL_CHOICES, TokenOutput, pool_tokens, resolve_poolings
from radlens.encoders.spec import normalize_spec
from radlens.encoders.tokens import (box_to_mask, grid_to_tokens, roi_to_tokens, roi_token_weights,
                                     split_tokens, stored_to_model_coverage, token_coverage, tokens_to_grid)

__all__ = [
    "Encoder", "TokenOutput", "POOL_CHOICES", "box_to_mask", "embed", "embed_arrays", "forward_pool",
    "grid_to_tokens", "load_encoder", "normalize_spec", "pool_tokens", "resolve_device", "resolve_poolings",
    "roi_to_tokens", "roi_token_weights", "split_tokens", "stored_to_model_coverage", "token_coverage",
    "tokens_to_grid",
]
