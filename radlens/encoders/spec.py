"""Encoder specs: YAML files, inline YAML/JSON strings or dicts, validated into one normalised dict.

A spec says which network to build (``kind``), which weights to load (``checkpoint`` / ``path``),
which layer's output is the token grid (``layer``), how images are prepared for it (``preprocess``)
and how the ROI is mapped onto its tokens (``roi``). See ``docs/encoders.md`` for every key.
Relative paths are resolved against the YAML file's folder (or the working directory for inline
specs), so the normalised spec stored with the embeddings can rebuild the same encoder.
"""
from __future__ import annotations

import copy
import json
import logging
import os
from pathlib import Path
from typing import Any, Mapping

from radlens.errors import ConfigError

log = logging.getLogger(__name__)

KINDS = ("monai", "hf", "torchscript", "python")
INTENSITY = ("zscore", "minmax", "none")
INTERPOLATION = ("auto", "area", "bilinear", "trilinear", "bicubic", "nearest")
ROI_RULES = ("overlap", "center")
ROI_MODES = ("full", "crop")

_TOP_KEYS = {"kind", "name", "args", "factory", "path", "checkpoint", "layer", "layers", "class", "output",
             "tokens", "preprocess", "roi", "description", "strict"}
_PRE_KEYS = {"spatial_size", "intensity", "channels", "clip", "interpolation"}
_ROI_KEYS = {"rule", "min_overlap", "mode", "crop_margin"}
_TOK_KEYS = {"patch_size", "prefix"}


def _unknown(section: str, given: Mapping[str, Any], allowed: set[str]) -> None:
    bad = sorted(set(given) - allowed)
    if bad:
        import difflib

        hints = {b: difflib.get_close_matches(b, sorted(allowed), n=1) for b in bad}
        hint = "; ".join(f"{b!r}" + (f" (did you mean {h[0]!r}?)" if h else "") for b, h in hints.items())
        raise ConfigError(f"encoder spec: unknown key(s) in {section}: {hint}; allowed: {sorted(allowed)}")


def _read_text_spec(text: str, origin: str) -> dict:
    import yaml

    try:
        obj = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"encoder spec {origin}: not valid YAML/JSON ({exc}); give a YAML file or an "
                          "inline mapping such as '{kind: hf, path: dino/}'") from exc
    if not isinstance(obj, dict):
        raise ConfigError(f"encoder spec {origin}: expected a mapping with at least 'kind', got "
                          f"{type(obj).__name__} ({str(obj)[:80]!r}); a path that does not exist?")
    return obj


def read_spec(spec_or_path: Any) -> tuple[dict, Path]:
    """Read a spec from a dict, a YAML file, or an inline YAML/JSON string.

    Returns
    -------
    spec : dict
        The raw mapping (not validated).
    base : Path
        Folder that relative paths in the spec are resolved against.
    """
    if isinstance(spec_or_path, Mapping):
        return copy.deepcopy(dict(spec_or_path)), Path.cwd()
    if isinstance(spec_or_path, str):
        text = spec_or_path.strip()
        looks_inline = "\n" in text or text.startswith("{") or "kind:" in text or '"kind"' in text
        if looks_inline:
            return _read_text_spec(text, "(inline)"), Path.cwd()
        spec_or_path = Path(text)
    if isinstance(spec_or_path, os.PathLike):
        p = Path(spec_or_path)
        if not p.exists():
            raise ConfigError(f"encoder spec file {str(p)!r} does not exist; give a YAML file, a "
                              "save_pretrained folder, or an inline mapping such as '{kind: hf, path: dino/}'")
        if p.is_dir():
            # a bare save_pretrained folder is a complete hf spec
            return {"kind": "hf", "path": str(p.resolve())}, p.resolve().parent
        return _read_text_spec(p.read_text(encoding="utf-8"), repr(str(p))), p.resolve().parent
    raise ConfigError(f"encoder spec: expected a dict, a YAML path or an inline YAML string, got "
                      f"{type(spec_or_path).__name__}")


def _as_int_tuple(value: Any, key: str, ndim: int | None = None) -> tuple[int, ...]:
    if isinstance(value, int):
        value = [value] * (ndim or 2)
    try:
        out = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"encoder spec: {key}={value!r} must be a list of positive integers, e.g. [224, 224]")
    if not out or any(v <= 0 for v in out) or any(float(v) != float(w) for v, w in zip(out, value)):
        raise ConfigError(f"encoder spec: {key}={list(value)!r} must be a list of positive integers, e.g. [224, 224]")
    if len(out) not in (2, 3):
        raise ConfigError(f"encoder spec: {key}={list(out)} has {len(out)} entries; give (H, W) for 2D or "
                          "(D, H, W) for 3D")
    return out


def _resolve(base: Path, value: Any, key: str) -> str | None:
    if value in (None, ""):
        return None
    p = Path(os.path.expanduser(str(value)))
    if not p.is_absolute():
        p = base / p
    return str(p.resolve())


def normalize_spec(spec_or_path: Any) -> dict:
    """Validate a spec and fill defaults.

    Parameters
    ----------
    spec_or_path : dict, str or PathLike
        Spec mapping, YAML file, ``save_pretrained`` folder, or inline YAML/JSON string.

    Returns
    -------
    dict
        Normalised spec: every key present, paths absolute, ``preprocess.spatial_size`` a list
        (or None for ``hf``, filled from the model config when the encoder is loaded).

    Raises
    ------
    ConfigError
        Naming the key, the bad value and what is allowed.
    """
    raw, base = read_spec(spec_or_path)
    _unknown("the top level", raw, _TOP_KEYS)
    kind = raw.get("kind")
    if kind not in KINDS:
        raise ConfigError(f"encoder spec: kind={kind!r} is not allowed; use one of {list(KINDS)}")
    spec: dict[str, Any] = {
        "kind": kind,
        "name": raw.get("name"),
        "args": dict(raw.get("args") or {}),
        "factory": raw.get("factory"),
        "path": _resolve(base, raw.get("path"), "path"),
        "checkpoint": _resolve(base, raw.get("checkpoint"), "checkpoint"),
        "layer": raw.get("layer"),
        "class": raw.get("class"),
        "output": raw.get("output"),
        "strict": bool(raw.get("strict", True)),
    }
    if not spec["strict"]:
        raise ConfigError("encoder spec: strict=false is not supported: radlens never loads a checkpoint "
                          "partially; fix the checkpoint or the network arguments so all keys match")
    if kind == "monai" and not spec["name"]:
        raise ConfigError("encoder spec (kind: monai): 'name' is required, the class in monai.networks.nets, "
                          "e.g. name: DenseNet121")
    if kind == "python":
        fac = spec["factory"]
        if not isinstance(fac, str) or ":" not in fac:
            raise ConfigError(f"encoder spec (kind: python): factory={fac!r} must be 'package.module:callable'")
    if kind in ("hf", "torchscript") and not spec["path"]:
        what = "a save_pretrained folder" if kind == "hf" else "a TorchScript .pt file"
        raise ConfigError(f"encoder spec (kind: {kind}): 'path' is required ({what})")
    if kind == "torchscript" and spec["layer"] not in (None, ""):
        raise ConfigError("encoder spec (kind: torchscript): 'layer' cannot be used, TorchScript modules do "
                          "not support forward hooks; export the feature extractor itself, or pick an element "
                          "of a tuple/dict output with 'output: <index or key>'")
    if spec["layer"] is not None and kind != "hf" and not isinstance(spec["layer"], str):
        raise ConfigError(f"encoder spec: layer={spec['layer']!r} must be a dotted module name such as 'layer4'")
    if kind == "hf" and spec["layer"] is not None and not isinstance(spec["layer"], int):
        raise ConfigError(f"encoder spec (kind: hf): layer={spec['layer']!r} must be an integer index into "
                          "hidden_states (e.g. -2), or absent for last_hidden_state")
    layers = normalize_layers(raw.get("layers"), kind)
    if layers is not None:
        if spec["layer"] is not None and [spec["layer"]] != layers[:1]:
            raise ConfigError(f"encoder spec: layer={spec['layer']!r} and layers={layers!r} both given; give "
                              "layers only (every layer embedded from one forward pass), or layer only")
        if len(layers) == 1:
            spec["layer"] = layers[0]  # one layer: the same spec (and file) as ``layer``
        else:
            spec["layer"] = None
            spec["layers"] = layers  # only multi-layer specs carry the key: single-layer specs are unchanged

    tok = dict(raw.get("tokens") or {})
    _unknown("tokens", tok, _TOK_KEYS)
    spec["tokens"] = {"patch_size": tok.get("patch_size"), "prefix": tok.get("prefix")}
    if tok.get("prefix") is not None and (not isinstance(tok["prefix"], int) or tok["prefix"] < 0):
        raise ConfigError(f"encoder spec: tokens.prefix={tok['prefix']!r} must be a non-negative integer "
                          "(number of class + register tokens before the patch tokens)")

    pre = dict(raw.get("preprocess") or {})
    _unknown("preprocess", pre, _PRE_KEYS)
    size = pre.get("spatial_size")
    size = list(_as_int_tuple(size, "preprocess.spatial_size")) if size is not None else None
    if size is None and kind != "hf":
        raise ConfigError(f"encoder spec (kind: {kind}): preprocess.spatial_size is required, the model input "
                          "size (H, W) or (D, H, W), e.g. [64, 64]")
    if tok.get("patch_size") is not None:
        spec["tokens"]["patch_size"] = list(_as_int_tuple(tok["patch_size"], "tokens.patch_size",
                                                          len(size) if size else 2))
    inten = pre.get("intensity", "zscore")
    if isinstance(inten, Mapping):
        _unknown("preprocess.intensity", inten, {"mean", "std", "rescale"})
        if "mean" not in inten or "std" not in inten:
            raise ConfigError("encoder spec: preprocess.intensity as a mapping needs both 'mean' and 'std' "
                              "(per channel, applied after min-max scaling to [0, 1], or to the image as "
                              "stored with rescale: none)")
        rescale = inten.get("rescale", "minmax")
        if rescale not in ("minmax", "none"):
            raise ConfigError(f"encoder spec: preprocess.intensity.rescale={rescale!r} not allowed; use 'minmax' "
                              "(per-image scaling to [0, 1] before mean/std, the default) or 'none' (a fixed "
                              "affine map of the stored, clipped values)")
        mean = [float(v) for v in (inten["mean"] if isinstance(inten["mean"], (list, tuple)) else [inten["mean"]])]
        std = [float(v) for v in (inten["std"] if isinstance(inten["std"], (list, tuple)) else [inten["std"]])]
        if any(s <= 0 for s in std):
            raise ConfigError(f"encoder spec: preprocess.intensity.std={std} must be positive")
        inten = {"mean": mean, "std": std}
        if rescale != "minmax":  # the default is left out, so specs written before the key keep their hash
            inten["rescale"] = rescale
    elif inten not in INTENSITY:
        raise ConfigError(f"encoder spec: preprocess.intensity={inten!r} not allowed; use one of {list(INTENSITY)} "
                          "or {mean: [...], std: [...]}")
    clip = pre.get("clip")
    if clip is not None:
        if not isinstance(clip, (list, tuple)) or len(clip) != 2 or float(clip[0]) >= float(clip[1]):
            raise ConfigError(f"encoder spec: preprocess.clip={clip!r} must be [low, high] with low < high")
        clip = [float(clip[0]), float(clip[1])]
    interp = pre.get("interpolation", "auto")
    if interp not in INTERPOLATION:
        raise ConfigError(f"encoder spec: preprocess.interpolation={interp!r} not allowed; use one of {list(INTERPOLATION)}")
    ch = pre.get("channels")
    if ch is not None and (not isinstance(ch, int) or ch < 1):
        raise ConfigError(f"encoder spec: preprocess.channels={ch!r} must be a positive integer")
    spec["preprocess"] = {"spatial_size": size, "intensity": inten, "channels": ch, "clip": clip,
                          "interpolation": interp}

    roi = dict(raw.get("roi") or {})
    _unknown("roi", roi, _ROI_KEYS)
    spec["roi"] = validate_roi_options(roi.get("rule", "overlap"), roi.get("min_overlap", 0.5),
                                       roi.get("mode", "full"), roi.get("crop_margin", 0.25))
    if kind == "hf" and not Path(spec["path"]).is_dir():
        where = (f"the YAML's folder {str(base)!r}" if not isinstance(spec_or_path, Mapping)
                 and not (isinstance(spec_or_path, str) and ("\n" in spec_or_path or "kind:" in spec_or_path))
                 else f"the current folder {str(base)!r}")
        state = "is a file, not a folder" if Path(spec["path"]).exists() else "no such folder"
        raise ConfigError(f"encoder spec (kind: hf): path={raw.get('path')!r} -> {spec['path']!r}: {state} "
                          f"(relative paths resolve against {where}); give the folder model.save_pretrained() "
                          "wrote (config.json + weights). kind: hf loads local folders only, not Hub repo ids")
    return spec


def normalize_layers(layers: Any, kind: str) -> list | None:
    """Validate a list of feature layers (``layers:`` / ``--layers``).

    Parameters
    ----------
    layers : None, str (comma-separated) or sequence of str/int
        Dotted module names (``monai``/``python``; a ViT block may be given by its index, which
        means ``blocks.<i>``), or indices into ``hidden_states`` (``hf``).
    kind : encoder kind

    Returns
    -------
    list (str for module kinds, int for ``hf``), duplicates dropped, order kept; None when
    ``layers`` is None or empty.
    """
    if layers is None:
        return None
    if isinstance(layers, str):
        layers = [p.strip() for p in layers.split(",") if p.strip()]
    if not isinstance(layers, (list, tuple)):
        raise ConfigError(f"encoder spec: layers={layers!r} must be a list of layer names, e.g. [layer1, layer2]")
    if not layers:
        return None
    if kind == "torchscript":
        raise ConfigError("encoder spec (kind: torchscript): 'layers' cannot be used, TorchScript modules do "
                          "not support forward hooks; export a model that returns the features you need")
    out: list = []
    for v in layers:
        if isinstance(v, bool) or not isinstance(v, (str, int)) or (isinstance(v, str) and not v.strip()):
            raise ConfigError(f"encoder spec: layers entry {v!r} must be a dotted module name "
                              "(e.g. 'layer2') or a block index (e.g. 3)")
        if kind == "hf":
            try:
                v = int(v)
            except ValueError:
                raise ConfigError(f"encoder spec (kind: hf): layers entry {v!r} must be an integer index into "
                                  "hidden_states (0 = embeddings, i = output of block i, -1 = last)") from None
        else:
            v = str(v).strip()
        if v not in out:
            out.append(v)
    return out


def layer_name(layer: Any) -> str:
    """The name a layer has in artifacts (``"layer2"``, ``"3"``; ``"default"`` for the model's own output)."""
    return "default" if layer is None else str(layer)


def validate_roi_options(rule: str, min_overlap: float, mode: str, crop_margin: float) -> dict:
    """Check the ROI options; returns them as a dict (``rule, min_overlap, mode, crop_margin``)."""
    if rule not in ROI_RULES:
        raise ConfigError(f"roi.rule={rule!r} not allowed; use one of {list(ROI_RULES)}")
    if mode not in ROI_MODES:
        raise ConfigError(f"roi.mode={mode!r} not allowed; use one of {list(ROI_MODES)}")
    try:
        mo = float(min_overlap)
        cm = float(crop_margin)
    except (TypeError, ValueError):
        raise ConfigError(f"roi.min_overlap={min_overlap!r} and roi.crop_margin={crop_margin!r} must be numbers")
    if not 0.0 < mo <= 1.0:
        raise ConfigError(f"roi.min_overlap={mo} must be in (0, 1]: the fraction of a token's cell the ROI must cover")
    if cm < 0:
        raise ConfigError(f"roi.crop_margin={cm} must be >= 0 (fraction of the ROI size added on each side)")
    return {"rule": rule, "min_overlap": mo, "mode": mode, "crop_margin": cm}


def spec_to_json(spec: Mapping[str, Any]) -> str:
    """The spec as canonical JSON (what is stored in artifact metadata)."""
    return json.dumps(spec, sort_keys=True)
