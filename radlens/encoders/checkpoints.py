"""Checkpoint loading: ``weights_only=True`` (no pickled code runs) and strict key matching."""
from __future__ import annotations

import logging
from pathlib import Path

from radlens.errors import InputError

log = logging.getLogger(__name__)

_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "network", "net", "module")


def read_state_dict(path: str | Path) -> dict:
    """Read a state_dict from ``.safetensors`` or a torch file (``.pt``, ``.pth``, ``.bin``, ``.ckpt``).

    Torch files load with ``weights_only=True``. A dict wrapping the weights under one of
    ``state_dict``, ``model_state_dict``, ``model``, ``network``, ``net``, ``module`` (as training
    loops save them) is unwrapped; a ``module.`` prefix on every key (DataParallel) is stripped.

    Returns
    -------
    dict str -> Tensor
    """
    import torch

    path = Path(path)
    if not path.exists():
        raise InputError(f"checkpoint {str(path)!r} does not exist; check 'checkpoint' in the encoder spec "
                         "(relative paths are resolved against the spec file's folder)")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            sd = load_file(str(path), device="cpu")
        except Exception as exc:  # safetensors raises its own error types
            raise InputError(f"checkpoint {str(path)!r} is not a readable safetensors file ({exc})") from exc
    else:
        try:
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:
            msg = str(exc).split("\n")[0][:300]
            raise InputError(
                f"checkpoint {str(path)!r} could not be loaded with weights_only=True ({type(exc).__name__}: {msg}). "
                "radlens never unpickles code: save the weights with torch.save(model.state_dict(), path) or "
                "safetensors.torch.save_file, or use kind: torchscript for a scripted model") from exc
    if isinstance(sd, dict):
        for key in _WRAPPER_KEYS:
            if key in sd and isinstance(sd[key], dict) and not isinstance(sd.get(key), torch.Tensor):
                log.info("checkpoint %s: using the weights under %r", path.name, key)
                sd = sd[key]
                break
    if not isinstance(sd, dict) or not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise InputError(f"checkpoint {str(path)!r} is not a state_dict (a mapping of parameter names to tensors); "
                         f"got {type(sd).__name__}")
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
        log.info("checkpoint %s: stripped the DataParallel 'module.' prefix", path.name)
    return sd


def load_strict(module, state_dict: dict, source: str) -> None:
    """Load ``state_dict`` into ``module``; any missing, unexpected or mis-shaped key is an error.

    Raises
    ------
    InputError
        Listing missing keys, unexpected keys and shape mismatches (up to 10 of each).
    """
    own = module.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s) {missing[:10]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s) {unexpected[:10]}")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatch(es) {shapes[:10]}")
        raise InputError(f"checkpoint {source!r} does not fit the network: " + "; ".join(parts)
                         + ". Is it the checkpoint of this architecture, built with the same 'args'? "
                         "radlens never loads a checkpoint partially")
    module.load_state_dict(state_dict, strict=True)
