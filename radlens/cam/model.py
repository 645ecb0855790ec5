"""Classifiers from a classifier spec (encoder spec + linear head + pooling + CAM target layer),
and re-initialised copies for the model-randomisation sanity check.

Classifier spec (``docs/contracts.md``)::

    encoder: {...encoder spec...}      # or a path to an encoder YAML
    head:
      checkpoint: head_tl.safetensors  # tensors "weight" (K, D) and "bias" (K,)
      pooling: global                  # global | cls | mean | lse
      sharpness: 1.0                   # lse only: r in (1/r) log mean_i exp(r * head(token_i))
    target_layer: layer4               # dotted module name inside the encoder module
    target_input: false                # optional; true: explain the tokens entering target_layer
    classes: [negative, positive]      # optional (default "0".."K-1")
"""
from __future__ import annotations

import copy
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from radlens.cam.vit import TokenLayout
from radlens.errors import ConfigError, InputError

log = logging.getLogger(__name__)

POOLINGS = ("global", "cls", "mean", "lse")
_KEYS = {"encoder", "head", "target_layer", "target_input", "classes", "description", "name"}
#: head keys besides checkpoint and pooling (``sharpness``: ``lse`` only)
_HEAD_KEYS = {"checkpoint", "pooling", "sharpness"}


def lse_pool(scores, sharpness: float):
    """Log-mean-exp of per-token class scores: ``(1/r) log( (1/N) sum_i exp(r s_i) )`` over tokens.

    Parameters
    ----------
    scores : Tensor, shape (B, N, K)
        The linear head applied to every patch token (bias included).
    sharpness : float > 0
        ``r``: towards 0 the mean of the scores (the ``mean`` pooling's logits exactly in the limit),
        large: their maximum.

    Returns
    -------
    Tensor, shape (B, K)

    Notes
    -----
    The pooling commutes with adding a constant (``g(s + c) = g(s) + c``), so its gradients over the
    tokens sum to one: Grad-CAM's channel weights (the token mean of the gradient) are ``w_c / N``
    whatever the scores, and its raw map is ``ReLU(w_c . t_i) / N`` -- each token's own class score
    (bias excluded), the instance scores of multiple-instance learning.
    """
    import math

    import torch

    r = float(sharpness)
    return (torch.logsumexp(r * scores, dim=1) - math.log(scores.shape[1])) / r


def _classifier_module(encoder, head, pooling: str, sharpness: float = 1.0):
    import torch

    class ClassifierModule(torch.nn.Module):
        """``logits = head(pool(encoder.forward_features(x)))``; the encoder module is a sub-module,
        so the CAM target layer is reachable from here."""

        def __init__(self):
            super().__init__()
            self.encoder = encoder.module
            self.head = head
            self._enc = encoder
            self.pooling = pooling

        def features(self, x):
            out = self._enc.forward_features(x)
            if pooling == "cls":
                if out.cls is None:
                    raise InputError("classifier head.pooling='cls' but this encoder has no class token; "
                                     "use pooling: global or mean")
                return out.cls
            if pooling == "global" and out.pooled_global is not None:
                return out.pooled_global
            return out.patch.mean(dim=1)

        def forward(self, x):
            if pooling == "lse":  # the head scores every patch token; the scores are pooled per class
                return lse_pool(self.head(self._enc.forward_features(x).patch), sharpness)
            return self.head(self.features(x))

    return ClassifierModule()


@dataclass
class Classifier:
    """A classifier ready for CAMs.

    Attributes
    ----------
    module : torch.nn.Module
        ``(B, C, *spatial) -> logits (B, K)``, eval mode.
    target_layer : torch.nn.Module
        The CAM layer (a sub-module of ``module``).
    token_layout : TokenLayout or None
        Set when the target layer emits ViT tokens.
    use_input : bool
        Explain the tokens entering ``target_layer`` (see :class:`~radlens.cam.base.BaseCAM`).
    encoder : radlens.encoders Encoder
    classes : list of str
    spec : dict
        The classifier spec (encoder spec normalised by the encoder loader).
    source : str
        Spec file (or "(inline)").
    """

    module: Any
    target_layer: Any
    token_layout: TokenLayout | None
    encoder: Any
    classes: list[str]
    spec: dict
    source: str
    checkpoint_hash: str = ""
    target_name: str = ""
    use_input: bool = False
    spatial_size: tuple[int, ...] = field(default_factory=tuple)

    def randomized(self, seed: int = 0) -> "Classifier":
        """A copy with every weight re-initialised (same target layer, layout and preprocessing)."""
        mod = randomized_copy(self.module, seed)
        target = dict(mod.named_modules())[f"encoder.{self.target_name}" if self.target_name else "encoder"]
        return Classifier(module=mod, target_layer=target, token_layout=self.token_layout, encoder=self.encoder,
                          classes=self.classes, spec=self.spec, source=f"{self.source} (randomised, seed {seed})",
                          checkpoint_hash="randomised", target_name=self.target_name, use_input=self.use_input,
                          spatial_size=self.spatial_size)

    def preprocess(self, case):
        """``(x (C, *spatial), roi_in)`` for one case, as the encoder prepares it."""
        return self.encoder.preprocess(case)


def read_classifier_spec(spec_or_path) -> tuple[dict, Path, str]:
    """Read a classifier spec (dict, YAML file or inline YAML); returns (spec, base folder, source)."""
    import yaml

    if isinstance(spec_or_path, dict):
        return copy.deepcopy(spec_or_path), Path.cwd(), "(inline)"
    text = str(spec_or_path)
    p = Path(os.path.expanduser(text))
    if p.is_file():
        try:
            spec = yaml.safe_load(p.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ConfigError(f"classifier spec {str(p)!r} is not valid YAML: {exc}") from exc
        base, source = p.resolve().parent, str(p)
    elif "\n" in text or text.lstrip().startswith("{"):
        spec, base, source = yaml.safe_load(text), Path.cwd(), "(inline)"
    else:
        raise ConfigError(f"classifier spec {text!r} does not exist; give a YAML file with encoder, head, "
                          "target_layer and classes (docs/contracts.md 'Classifier spec')")
    if not isinstance(spec, dict):
        raise ConfigError(f"classifier spec {source}: expected a mapping, got {type(spec).__name__}")
    bad = sorted(set(spec) - _KEYS)
    if bad:
        raise ConfigError(f"classifier spec {source}: unknown key(s) {bad}; allowed: {sorted(_KEYS)}")
    for k in ("encoder", "head", "target_layer"):
        if k not in spec or spec[k] in (None, ""):
            raise ConfigError(f"classifier spec {source}: '{k}' is missing; see docs/contracts.md 'Classifier spec'")
    return spec, base, source


def _encoder_spec_with_base(enc, base: Path):
    """Encoder spec as the loader takes it, with relative paths resolved against ``base``."""
    if isinstance(enc, str):
        p = Path(os.path.expanduser(enc))
        if not p.is_absolute():
            p = base / p
        if p.exists():
            return str(p)
        return enc  # inline YAML string
    enc = copy.deepcopy(dict(enc))
    for k in ("checkpoint", "path"):
        if enc.get(k) and not Path(os.path.expanduser(str(enc[k]))).is_absolute():
            enc[k] = str((base / str(enc[k])).resolve())
    return enc


def _find_layer(module, name: str, source: str):
    mods = dict(module.named_modules())
    if name not in mods:
        import difflib

        near = difflib.get_close_matches(name, list(mods), n=3)
        raise ConfigError(f"classifier spec {source}: target_layer {name!r} is not a module of the encoder"
                          + (f"; did you mean {near}?" if near else "")
                          + f" (some available: {[m for m in mods if m][-8:]})")
    return mods[name]


def load_classifier(spec_or_path, device: str = "cpu", target_layer: str | None = None) -> Classifier:
    """Build a classifier from a classifier spec.

    Parameters
    ----------
    spec_or_path : dict, str or PathLike
        Classifier spec (YAML file, inline YAML or dict).
    device : str
        ``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (passed to the encoder loader).
    target_layer : str, optional
        CAM target layer (dotted module name inside the encoder module) used instead of the spec's
        ``target_layer``; the spec file is not changed (``radlens cam-drift --target-layer``,
        study ``cam_drift.options.target_layers``).

    Returns
    -------
    Classifier
    """
    import torch
    from safetensors.torch import load_file

    from radlens.encoders import load_encoder

    spec, base, source = read_classifier_spec(spec_or_path)
    if target_layer is not None:
        if not isinstance(target_layer, str) or not target_layer:
            raise ConfigError(f"classifier spec {source}: target_layer override {target_layer!r} must be a dotted "
                              "module name of the encoder, e.g. 'layer3'")
        spec["target_layer"] = target_layer
    head_spec = spec["head"]
    if not isinstance(head_spec, dict) or "checkpoint" not in head_spec:
        raise ConfigError(f"classifier spec {source}: head must be a mapping with 'checkpoint' (safetensors with "
                          "'weight' (K, D) and 'bias' (K,)) and 'pooling'")
    pooling = head_spec.get("pooling", "global")
    if pooling not in POOLINGS:
        raise ConfigError(f"classifier spec {source}: head.pooling={pooling!r} not allowed; use one of {list(POOLINGS)}")
    bad = sorted(set(head_spec) - _HEAD_KEYS)
    if bad:
        raise ConfigError(f"classifier spec {source}: unknown head key(s) {bad}; allowed: {sorted(_HEAD_KEYS)}")
    sharpness = head_spec.get("sharpness", 1.0)
    if "sharpness" in head_spec and pooling != "lse":
        raise ConfigError(f"classifier spec {source}: head.sharpness is only used with pooling: lse "
                          f"(pooling is {pooling!r}); remove it or set pooling: lse")
    if isinstance(sharpness, bool) or not isinstance(sharpness, (int, float)) or not 0 < float(sharpness) < 1e4:
        raise ConfigError(f"classifier spec {source}: head.sharpness={sharpness!r} must be a number in (0, 1e4)")
    hp = Path(os.path.expanduser(str(head_spec["checkpoint"])))
    hp = hp if hp.is_absolute() else base / hp
    if not hp.exists():
        raise ConfigError(f"classifier spec {source}: head checkpoint {str(hp)!r} does not exist")
    tensors = load_file(str(hp))
    if "weight" not in tensors or "bias" not in tensors:
        raise ConfigError(f"head checkpoint {str(hp)!r} holds {sorted(tensors)}; expected 'weight' (K, D) and 'bias' (K,)")
    w, b = tensors["weight"], tensors["bias"]
    if w.ndim != 2 or b.ndim != 1 or b.shape[0] != w.shape[0]:
        raise ConfigError(f"head checkpoint {str(hp)!r}: weight {tuple(w.shape)} / bias {tuple(b.shape)} must be (K, D) / (K,)")
    encoder = load_encoder(_encoder_spec_with_base(spec["encoder"], base), device=device)
    head = torch.nn.Linear(w.shape[1], w.shape[0])
    with torch.no_grad():
        head.weight.copy_(w)
        head.bias.copy_(b)
    dev = getattr(encoder, "device", device)  # resolved by the encoder loader ("auto" -> cuda/cpu)
    module = _classifier_module(encoder, head, pooling, float(sharpness)).to(dev).eval()
    target = _find_layer(encoder.module, str(spec["target_layer"]), source)
    classes = [str(c) for c in spec.get("classes") or range(w.shape[0])]
    if len(classes) != w.shape[0]:
        raise ConfigError(f"classifier spec {source}: {len(classes)} classes {classes} but the head has {w.shape[0]} outputs")
    size = tuple(int(s) for s in getattr(encoder, "spatial_size", None) or (encoder.spec.get("preprocess") or {})["spatial_size"])
    force_input = bool(spec.get("target_input", False))
    layout, use_input = _probe_target(module, target, encoder, size, source, force_input)
    from radlens.io.artifacts import file_hash

    h = getattr(encoder, "checkpoint_hash", "") or ""
    clf = Classifier(module=module, target_layer=target, token_layout=layout, encoder=encoder, classes=classes,
                     spec={**spec, "encoder": encoder.spec}, source=source,
                     checkpoint_hash=f"{h}:{file_hash(hp)[:16]}", target_name=str(spec["target_layer"]),
                     use_input=use_input, spatial_size=size)
    log.info("classifier %s: %d classes, pooling %s, target layer %s%s", source, len(classes), pooling,
             spec["target_layer"], f", tokens on grid {layout.grid} (+{layout.n_prefix} prefix)" if layout else "")
    return clf


def _probe_target(module, target, encoder, size, source, force_input: bool):
    """One forward/backward on seeded noise: does the target layer emit tokens (on which grid), and
    do the head's logits depend on its patch positions?

    Returns
    -------
    layout : TokenLayout or None
    use_input : bool
        True when the layer's *input* tokens must be explained (class-token pooling after the last
        block: the output patch tokens never reach the head).
    """
    import torch

    c = int((encoder.spec.get("preprocess") or {}).get("channels") or 1)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn((2, c, *size), generator=gen).to(getattr(encoder, "device", "cpu"))

    def grads_at(use_input):
        seen = []
        if use_input:
            h = target.register_forward_pre_hook(
                lambda m, a, k: seen.append(next(t for t in list(a) + list(k.values()) if isinstance(t, torch.Tensor))),
                with_kwargs=True)
        else:
            h = target.register_forward_hook(lambda m, i, o: seen.append(o[0] if isinstance(o, (tuple, list)) else o))
        try:
            with torch.enable_grad():
                logits = module(x.clone().requires_grad_(True))
                if not seen:
                    raise ConfigError(f"classifier spec {source}: target layer did not run in a forward pass")
                # a random projection of every class logit: logits.sum() has zero gradient for
                # antisymmetric heads (two classes with w1 = -w0) although each logit depends on the layer
                proj = torch.randn(logits.shape, generator=torch.Generator().manual_seed(1)).to(logits)
                (g,) = torch.autograd.grad((logits * proj).sum(), seen[-1], allow_unused=True)
        finally:
            h.remove()
        return seen[-1].detach(), g

    a, g = grads_at(force_input)
    if a.ndim not in (3, 2 + len(size)):
        raise ConfigError(f"classifier spec {source}: target layer output shape {tuple(a.shape)} is neither a feature "
                          "map (B, C, *grid) nor tokens (B, N, D)")
    layout = TokenLayout.infer(a.shape[1], tuple(encoder.grid)) if a.ndim == 3 else None
    patch_g = None if g is None else (g[:, layout.n_prefix:] if layout else g)
    if patch_g is not None and bool((patch_g != 0).any()):
        return layout, force_input
    if layout is not None and not force_input:
        a2, g2 = grads_at(True)
        if a2.ndim == 3 and g2 is not None and bool((g2[:, a2.shape[1] - layout.n_patches:] != 0).any()):
            log.warning("classifier spec %s: the patch tokens leaving target_layer never reach the head (class-token "
                        "pooling after the last block: the final norm is per token), so their gradients are zero; "
                        "explaining the tokens ENTERING that layer instead (set target_input: true to silence this)",
                        source)
            return TokenLayout.infer(a2.shape[1], tuple(encoder.grid)), True
    raise ConfigError(f"classifier spec {source}: the logits do not depend on the patch positions of target_layer "
                      "(zero gradients); choose a layer on the path to the head, e.g. the last convolutional stage, "
                      "or for a class-token ViT the last block's input (target_input: true) or its first norm")


def randomized_copy(module, seed: int = 0):
    """Deep copy of ``module`` with every parameter re-initialised (the model-randomisation sanity
    check of Adebayo et al. 2018): modules with ``reset_parameters`` use it; remaining parameters
    (e.g. class tokens, position embeddings) are drawn from N(0, std of the original tensor).
    """
    import torch

    clone = copy.deepcopy(module)
    covered = set()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for m in clone.modules():
            if hasattr(m, "reset_parameters") and callable(m.reset_parameters):
                m.reset_parameters()
                covered.update(id(p) for p in m.parameters(recurse=False))
        with torch.no_grad():
            for p in clone.parameters():
                if id(p) not in covered:
                    std = float(p.detach().float().std()) if p.numel() > 1 else 0.02
                    p.normal_(0.0, std if std > 0 else 0.02)
    return clone.eval()
