"""Adapters: build the network of a spec and turn one forward pass into a :class:`TokenOutput`.

* ``monai`` / ``python``: an ``nn.Module``; the feature layer (dotted name) is captured with a
  forward hook, and the rest of the network is skipped once it has fired. No ``layer`` means the
  model's own output (first element of a tuple, e.g. MONAI ``ViT`` returns ``(x, hidden_states)``).
* ``hf``: a transformers vision model from a local ``save_pretrained`` folder (offline);
  ``last_hidden_state`` (or ``hidden_states[layer]``) is split into class, register and patch tokens.
* ``torchscript``: a scripted/traced module whose output (or ``output:`` element) is the features.

Feature tensors are read as a channels-first map ``(B, C, *grid)`` when they have as many spatial
axes as the input, or as a token sequence ``(B, T, D)`` whose last ``prod(grid)`` tokens are patches.
"""
from __future__ import annotations

import difflib
import importlib
import inspect
import logging
from typing import Any, Sequence

import numpy as np

from radlens.encoders.checkpoints import load_strict, read_state_dict
from radlens.encoders.pooling import TokenOutput
from radlens.encoders.tokens import grid_to_tokens, split_tokens
from radlens.errors import ConfigError, InputError

log = logging.getLogger(__name__)


class _Stop(Exception):
    """Raised by the capture hook to skip the layers after the feature layer."""


def find_module(model, name: str):
    """Sub-module by dotted name; an unknown name lists the closest existing names."""
    names = [n for n, _ in model.named_modules() if n]
    mods = dict(model.named_modules())
    if name not in mods:
        close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
        tail = names[-8:]
        raise ConfigError(f"encoder spec: layer={name!r} does not exist in {type(model).__name__}; "
                          f"closest names: {close or 'none'}; last modules: {tail}")
    return mods[name]


def _first_tensor(out):
    import torch

    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    if isinstance(out, dict):
        for v in out.values():
            if isinstance(v, torch.Tensor):
                return v
    if hasattr(out, "last_hidden_state"):
        return out.last_hidden_state
    raise InputError(f"the feature layer returned {type(out).__name__}, not a tensor; pick a layer whose output "
                     "is a feature map (B, C, *spatial) or a token sequence (B, T, D)")


def _patch_size_from_module(model, ndim: int) -> tuple[int, ...] | None:
    """Patch size of the first patch-embedding convolution (kernel == stride > 1)."""
    import torch.nn as nn

    for _, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Conv3d)) and m.kernel_size == m.stride and max(m.kernel_size) > 1:
            if len(m.kernel_size) == ndim:
                return tuple(int(k) for k in m.kernel_size)
    return None


def interpret_features(feat, spatial_size: Sequence[int], patch_size: Sequence[int] | None = None,
                       prefix: int | None = None) -> TokenOutput:
    """Read a feature tensor as tokens on a grid.

    Parameters
    ----------
    feat : Tensor, (B, C, *grid) feature map or (B, T, D) token sequence
    spatial_size : model input size (numpy order)
    patch_size : per-axis patch size for token sequences (inferred when None)
    prefix : number of class + register tokens before the patches (inferred when None)

    Returns
    -------
    TokenOutput (CNN maps: ``pooled_global`` = spatial mean; sequences: ``cls`` = first prefix token)
    """
    nd = len(spatial_size)
    if feat.ndim == nd + 2:
        grid = tuple(int(g) for g in feat.shape[2:])
        patch = grid_to_tokens(feat)
        return TokenOutput(patch=patch, grid=grid, cls=None, pooled_global=patch.mean(1))
    if feat.ndim != 3:
        raise InputError(f"feature layer output has shape {tuple(feat.shape)}: neither a feature map "
                         f"(B, C, {', '.join('*' * 1 for _ in range(nd))}) nor a token sequence (B, T, D); "
                         "choose another 'layer'")
    t = int(feat.shape[1])
    if patch_size is not None:
        grid = tuple(int(s) // int(p) for s, p in zip(spatial_size, patch_size))
    else:
        grid = None
        for p in range(1, min(spatial_size) + 1):
            if all(s % p == 0 for s in spatial_size):
                g = tuple(s // p for s in spatial_size)
                pre = t - int(np.prod(g))
                if 0 <= pre <= 16 and (prefix is None or pre == prefix):
                    grid = g
                    break
        if grid is None:
            raise InputError(f"cannot infer the patch grid of a token sequence of length {t} for input "
                             f"{tuple(spatial_size)}; set tokens.patch_size (and tokens.prefix) in the encoder spec")
    pre = t - int(np.prod(grid)) if prefix is None else int(prefix)
    cls, regs, patch = split_tokens(feat, grid, pre, has_cls=pre >= 1)
    return TokenOutput(patch=patch, grid=grid, cls=cls, pooled_global=None if cls is not None else patch.mean(1),
                       registers=regs)


class ModuleAdapter:
    """``monai`` and ``python`` kinds: an ``nn.Module`` plus an optional hooked layer."""

    def __init__(self, spec: dict, device: str):
        import torch

        kind = spec["kind"]
        torch.manual_seed(0)  # deterministic init for modules built without a checkpoint
        if kind == "monai":
            import monai.networks.nets as nets

            ctor = getattr(nets, spec["name"], None)
            if ctor is None:
                close = difflib.get_close_matches(spec["name"], [n for n in dir(nets) if n[:1].isupper()], n=5)
                raise ConfigError(f"encoder spec: name={spec['name']!r} is not a network in monai.networks.nets; "
                                  f"closest: {close}")
            what = f"monai.networks.nets.{spec['name']}"
        else:
            mod_name, _, fn = spec["factory"].partition(":")
            try:
                ctor = getattr(importlib.import_module(mod_name), fn)
            except (ImportError, AttributeError) as exc:
                raise ConfigError(f"encoder spec: factory={spec['factory']!r} cannot be imported ({exc}); "
                                  "give 'package.module:callable' importable from this environment") from exc
            what = spec["factory"]
        try:
            model = ctor(**spec["args"])
        except TypeError as exc:
            raise ConfigError(f"encoder spec: {what}(**args) failed with args={spec['args']}: {exc}") from exc
        if spec["checkpoint"]:
            load_strict(model, read_state_dict(spec["checkpoint"]), spec["checkpoint"])
        self.module = model.eval().to(device)
        self.layers = [self._resolve_layer(v) for v in (spec.get("layers") or [spec["layer"]])]
        self.layer = self.layers[0]
        self._targets = [find_module(self.module, v) if v else None for v in self.layers]
        self._target = self._targets[0]
        self.tokens = spec["tokens"]
        self.patch_size = self.tokens["patch_size"]
        self.channels = self._infer_channels(spec)
        self.default_size = None

    def _resolve_layer(self, layer):
        """A dotted module name; a block index (``3``, ``-1``) means ``blocks.<i>`` on ViT-style models."""
        if layer is None:
            if all(hasattr(self.module, a) for a in ("patch_embedding", "blocks", "norm")):
                # MONAI ViT-style: the final norm's output holds all tokens (with classification=True the
                # model's own output is the logits)
                return "norm"
            return None
        name = str(layer)
        mods = dict(self.module.named_modules())
        if name in mods:
            return name
        try:
            idx = int(name)
        except ValueError:
            return name  # find_module lists the closest names
        blocks = getattr(self.module, "blocks", None)
        if blocks is None or not hasattr(blocks, "__len__"):
            raise ConfigError(f"encoder spec: layer {name!r} is a block index, but {type(self.module).__name__} has "
                              "no 'blocks' list; give a dotted module name such as 'layer2'")
        n = len(blocks)
        if not -n <= idx < n:
            raise ConfigError(f"encoder spec: block index {idx} is out of range; the model has {n} blocks "
                              f"(0..{n - 1}, or -1 for the last)")
        return f"blocks.{idx % n}"

    def _infer_channels(self, spec) -> int:
        for key in ("in_channels", "n_input_channels", "num_channels", "in_chans"):
            if key in spec["args"]:
                return int(spec["args"][key])
        import torch.nn as nn

        for _, m in self.module.named_modules():
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
                return int(m.in_channels)
        return 1

    def raw_features_multi(self, x) -> list:
        """Output of every feature layer from ONE forward pass (the network stops after the last of them)."""
        if self._targets == [None]:
            return [_first_tensor(self.module(x))]
        uniq = dict(zip(self.layers, self._targets))
        box: dict[str, Any] = {}
        hooks = []
        for name, target in uniq.items():
            def hook(_m, _i, out, name=name):
                if name not in box:  # a module called twice (e.g. a shared activation): its first call
                    t = _first_tensor(out)
                    # layers still to run may modify this output in place (ReLU(inplace=True)): keep a copy
                    box[name] = t if len(box) == len(uniq) - 1 else t.clone()
                if len(box) == len(uniq):
                    raise _Stop
            hooks.append(target.register_forward_hook(hook))
        try:
            self.module(x)
        except _Stop:
            pass
        finally:
            for h in hooks:
                h.remove()
        missing = [n for n in uniq if n not in box]
        if missing:
            raise InputError(f"layer(s) {missing} were not executed by the forward pass; choose layers on the "
                             "path from input to output")
        return [box[n] for n in self.layers]

    def raw_features(self, x):
        return self.raw_features_multi(x)[0]

    def _interpret(self, feat, x) -> TokenOutput:
        ps = self.patch_size
        if feat.ndim == 3 and ps is None:
            ps = _patch_size_from_module(self.module, x.ndim - 2)
        return interpret_features(feat, x.shape[2:], ps, self.tokens["prefix"])

    def forward_multi(self, x) -> list[TokenOutput]:
        """One :class:`TokenOutput` per feature layer, all from one forward pass."""
        return [self._interpret(f, x) for f in self.raw_features_multi(x)]

    def forward(self, x) -> TokenOutput:
        return self._interpret(self.raw_features(x), x)

    def candidate_layers(self, x) -> list[str]:
        """Modules whose output is a feature map or token sequence (last 8, execution order)."""
        seen: list[str] = []
        hooks = []
        for name, m in self.module.named_modules():
            if not name:
                continue

            def hook(_m, _i, out, name=name):
                try:
                    t = _first_tensor(out)
                except InputError:
                    return
                if t.ndim in (3, x.ndim):
                    seen.append(name)
            hooks.append(m.register_forward_hook(hook))
        try:
            self.module(x)
        except Exception:  # noqa: BLE001 - only collecting names
            pass
        finally:
            for h in hooks:
                h.remove()
        return list(dict.fromkeys(seen))[-8:]


class TorchScriptAdapter(ModuleAdapter):
    """``torchscript`` kind: the module's output (or its ``output:`` element) is the feature tensor."""

    def __init__(self, spec: dict, device: str):
        import torch

        try:
            self.module = torch.jit.load(spec["path"], map_location=device).eval()
        except (RuntimeError, ValueError, FileNotFoundError) as exc:
            raise InputError(f"TorchScript file {spec['path']!r} could not be loaded ({str(exc).splitlines()[0]}); "
                             "save it with torch.jit.save(torch.jit.script(model) or torch.jit.trace(...), path)") from exc
        self.layer = None
        self.layers = [None]
        self._target = None
        self._targets = [None]
        self.output = spec["output"]
        self.tokens = spec["tokens"]
        self.patch_size = self.tokens["patch_size"]
        self.channels = 1
        for p in self.module.parameters():
            if p.ndim in (4, 5):
                self.channels = int(p.shape[1])
            break
        self.default_size = None

    def raw_features_multi(self, x) -> list:
        return [self.raw_features(x)]

    def raw_features(self, x):
        out = self.module(x)
        if self.output is not None:
            try:
                out = out[self.output]
            except (KeyError, IndexError, TypeError) as exc:
                raise ConfigError(f"encoder spec: output={self.output!r} cannot select from the model output "
                                  f"({type(out).__name__}): {exc}") from exc
        return _first_tensor(out)

    def candidate_layers(self, x) -> list[str]:
        return []


_DUAL_TO_VISION = {"clip": "CLIPVisionModel", "siglip": "SiglipVisionModel", "siglip2": "Siglip2VisionModel"}


class HFAdapter:
    """``hf`` kind: a transformers vision backbone from a local folder, offline."""

    def __init__(self, spec: dict, device: str):
        import transformers
        from transformers import AutoConfig

        path = spec["path"]
        try:
            config = AutoConfig.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise InputError(f"encoder spec (kind: hf): path={path!r} is not a transformers model folder "
                             f"({str(exc).splitlines()[0]}); save one with model.save_pretrained(folder)") from exc
        cls_name = spec["class"] or _DUAL_TO_VISION.get(config.model_type)
        ctor = getattr(transformers, cls_name, None) if cls_name else transformers.AutoModel
        if cls_name and ctor is None:
            raise ConfigError(f"encoder spec: class={cls_name!r} is not a transformers class")
        try:
            model = ctor.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise InputError(f"encoder spec (kind: hf): cannot load {path!r} ({str(exc).splitlines()[0]})") from exc
        if spec["checkpoint"]:
            load_strict(model, read_state_dict(spec["checkpoint"]), spec["checkpoint"])
        self.module = model.eval().to(device)
        vcfg = getattr(model.config, "vision_config", model.config)
        ps = getattr(vcfg, "patch_size", None)
        if ps is None:
            raise ConfigError(f"encoder spec (kind: hf): {type(model).__name__} has no patch_size in its config; "
                              "only ViT-style vision models are supported")
        self.patch = (int(ps), int(ps))
        self.channels = int(getattr(vcfg, "num_channels", 3))
        size = getattr(vcfg, "image_size", 224)
        self.default_size = [int(size), int(size)] if isinstance(size, int) else [int(s) for s in size]
        mt = str(getattr(vcfg, "model_type", ""))
        self.has_cls = not mt.startswith("siglip")
        self.n_registers = int(getattr(vcfg, "num_register_tokens", 0) or 0)
        self.layers = list(spec.get("layers") or [spec["layer"]])
        self.layer = self.layers[0]
        params = inspect.signature(self.module.forward).parameters
        self._interp_kw = "interpolate_pos_encoding" in params
        self._image_size = self.default_size

    def forward_multi(self, x) -> list[TokenOutput]:
        """One :class:`TokenOutput` per requested ``hidden_states`` index, from one forward pass."""
        kw: dict[str, Any] = {"pixel_values": x}
        if any(v is not None for v in self.layers):
            kw["output_hidden_states"] = True
        if self._interp_kw and list(x.shape[2:]) != list(self._image_size):
            kw["interpolate_pos_encoding"] = True
        s = x.shape[2:]
        if len(s) != 2 or any(int(a) % p for a, p in zip(s, self.patch)):
            raise InputError(f"input size {tuple(s)} is not a 2D multiple of the patch size {self.patch}")
        out = self.module(**kw)
        grid = tuple(int(a) // p for a, p in zip(s, self.patch))
        prefix = (1 if self.has_cls else 0) + self.n_registers
        res = []
        for layer in self.layers:
            if layer is None:
                seq = out.last_hidden_state
            else:
                hs = out.hidden_states
                if not -len(hs) <= layer < len(hs):
                    raise ConfigError(f"encoder spec (kind: hf): layer index {layer} is out of range; the model "
                                      f"has {len(hs)} hidden states (0 = embeddings .. {len(hs) - 1}, or -1)")
                seq = hs[layer]
            cls, regs, patch = split_tokens(seq, grid, prefix, has_cls=self.has_cls)
            pooled = None
            if not self.has_cls:
                po = getattr(out, "pooler_output", None)
                pooled = po if (po is not None and layer is None) else patch.mean(1)
            res.append(TokenOutput(patch=patch, grid=grid, cls=cls, pooled_global=pooled, registers=regs))
        return res

    def forward(self, x) -> TokenOutput:
        return self.forward_multi(x)[0]

    def candidate_layers(self, x) -> list[str]:
        return []


def build_adapter(spec: dict, device: str):
    """The adapter for ``spec['kind']``."""
    kind = spec["kind"]
    if kind in ("monai", "python"):
        return ModuleAdapter(spec, device)
    if kind == "hf":
        return HFAdapter(spec, device)
    if kind == "torchscript":
        return TorchScriptAdapter(spec, device)
    raise ConfigError(f"encoder spec: kind={kind!r} not allowed")
