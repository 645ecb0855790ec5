"""Writing the demo's trained models: checkpoints, encoder and classifier spec YAMLs (``docs/contracts.md``)."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING

from radlens.synth.models import ARCHS

if TYPE_CHECKING:
    from radlens.synth.train import TrainConfig

#: the demo encoders' intensity preprocessing: the phantoms' fixed [0, 1] scale, clipped, never rescaled
#: per image. A per-image min-max rescale (the earlier ``intensity: {mean, std}``) let the intensity
#: task be read from the *background*: a bright lesion raises the image maximum, so everything else
#: comes out darker. The fine-tuned CNNs learned exactly that shortcut (Grad-CAM pixel AUC 0.14-0.21,
#: pointing game 0.00: the maps lit up everything but the lesion).
DEMO_INTENSITY = {"clip": [0.0, 1.0], "intensity": "none"}
#: per architecture: the ViT (layer norms everywhere, trained from scratch) learns nothing from the
#: un-centred [0, 1] scale (validation AUC 0.27-0.65), so it gets a per-image z-score -- a far weaker
#: global coupling than min-max (a 5-12 % lesion moves an image's mean and SD by a few percent)
ARCH_INTENSITY = {"cnn": DEMO_INTENSITY, "densenet": DEMO_INTENSITY, "vit": {"clip": None, "intensity": "zscore"}}
#: the ViT's alternatives (``TrainConfig.vit_intensity``): ``zscore`` (above) or ``window``, the CNNs'
#: fixed [0, 1] window, centred and scaled by fixed constants (the demo cohort's pixel mean 0.42 and SD 0.20,
#: rounded; no per-image statistics: a bright lesion
#: cannot change how the rest of the image is encoded)
VIT_INTENSITY = {"zscore": ARCH_INTENSITY["vit"],
                 "window": {"clip": [0.0, 1.0], "intensity": {"mean": [0.4], "std": [0.2], "rescale": "none"}}}


def arch_intensity(arch: str, cfg: TrainConfig | None = None) -> dict:
    """``clip`` and ``intensity`` preprocessing entries of ``arch`` under ``cfg`` (the ViT: ``cfg.vit_intensity``)."""
    if arch == "vit" and cfg is not None:
        return VIT_INTENSITY[cfg.vit_intensity]
    return ARCH_INTENSITY[arch]


def _write_yaml(path: Path, obj: dict) -> Path:
    import yaml

    from radlens.io.artifacts import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(obj, sort_keys=False))
    return path


def _save_state(module, path: Path) -> None:
    from safetensors.torch import save_file

    from radlens.io.artifacts import atomic_path

    state = {k: v.detach().contiguous().clone() for k, v in module.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp))


def _encoder_spec(arch: str, name: str, cfg: TrainConfig, image_shape, norm: tuple[float, float], vit_cfg) -> dict:
    """Encoder spec dict (paths relative to the folder the YAMLs are written in)."""
    from radlens.synth.models import cnn_args, densenet_args

    pre = {"spatial_size": [int(s) for s in image_shape], **arch_intensity(arch, cfg), "channels": 1}
    roi = {"rule": "overlap", "min_overlap": 0.5, "mode": "full", "crop_margin": 0.25}
    if arch == "cnn":
        return {"kind": "monai", "name": "ResNet", "args": cnn_args(cfg.cnn_width),
                "checkpoint": f"{name}.safetensors", "layer": ARCHS["cnn"]["layer"], "preprocess": pre, "roi": roi}
    if arch == "densenet":
        return {"kind": "monai", "name": "DenseNet", "args": densenet_args(cfg.densenet_width, cfg.densenet_blocks),
                "checkpoint": f"{name}.safetensors", "layer": "features", "preprocess": pre, "roi": roi}
    return {"kind": "hf", "path": f"{name}/", "preprocess": pre, "roi": roi}


def _write_checkpoint(model, arch: str, name: str, arch_dir: Path, spec: dict) -> None:
    if arch == "vit":
        model.backbone.save_pretrained(str(arch_dir / name), safe_serialization=True)
    else:
        _save_state(model.backbone, arch_dir / f"{name}.safetensors")
    _write_yaml(arch_dir / f"encoder_{name}.yaml", spec)


def _write_classifier(model, arch: str, kind: str, task: str, arch_dir: Path, enc_spec: dict, vit_cfg) -> Path:
    from safetensors.torch import save_file

    head_path = arch_dir / f"head_{kind}_{task}.safetensors"
    save_file({"weight": model.head.weight.detach().contiguous().clone(),
               "bias": model.head.bias.detach().contiguous().clone()}, str(head_path))
    # every head reads the mean over positions of the target layer's output (see radlens.synth.models.ARCHS)
    spec = {"encoder": copy.deepcopy(enc_spec),
            "head": {"checkpoint": head_path.name, "pooling": getattr(model, "pooling", ARCHS[arch]["pooling"]),
                     **({"sharpness": float(model.sharpness)} if getattr(model, "pooling", "") == "lse" else {})},
            "target_layer": ARCHS[arch]["target_layer"],
            "classes": ["negative", "positive"]}
    return _write_yaml(arch_dir / f"classifier_{kind}_{task}.yaml", spec)
