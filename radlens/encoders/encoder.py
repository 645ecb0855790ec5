"""The :class:`Encoder`: a loaded network + its preprocessing + its token grid."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from radlens.encoders.adapters import build_adapter
from radlens.encoders.pooling import TokenOutput, resolve_poolings
from radlens.encoders.preprocess import Prepared, Preprocessor
from radlens.encoders.spec import normalize_spec, validate_roi_options
from radlens.encoders.tokens import roi_token_weights, select_tokens
from radlens.errors import ConfigError, InputError

log = logging.getLogger(__name__)


def resolve_device(device: str | None) -> str:
    """``"cpu"``, ``"cuda"``, ``"cuda:N"`` (checked to exist) or None (= cpu)."""
    import torch

    device = device or "cpu"
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"device={device!r}: CUDA is not available on this machine; use --device cpu")
    if device not in ("cpu",) and not device.startswith("cuda") and device != "mps":
        raise InputError(f"device={device!r} not allowed; use cpu, cuda or cuda:N")
    return device


def checkpoint_hash(spec: dict) -> str:
    """sha256 of the weights a spec loads (file, folder, or both combined)."""
    from radlens.io.artifacts import file_hash, obj_hash

    parts = []
    if spec["kind"] in ("hf", "torchscript"):
        parts.append(file_hash(spec["path"]))
    if spec["checkpoint"]:
        parts.append(file_hash(spec["checkpoint"]))
    if not parts:
        log.warning("encoder %s has no checkpoint: its weights come from the network constructor "
                    "(seeded); the checkpoint hash is the spec's hash", spec.get("name") or spec.get("factory"))
        return "spec:" + obj_hash(spec)
    return parts[0] if len(parts) == 1 else obj_hash(parts)


class Encoder:
    """A loaded encoder. Build with :func:`load_encoder`.

    Attributes
    ----------
    module : torch.nn.Module (eval mode)
    spec : dict
        Normalised spec (``preprocess.spatial_size`` filled in).
    checkpoint_hash : str
    device : str
    spatial_size : tuple of int
        Model input size, ``(H, W)`` or ``(D, H, W)``.
    channels : int
    grid : tuple of int
        Token grid at ``spatial_size``.
    dim : int
        Token dimension D.
    has_cls : bool
    """

    def __init__(self, spec: dict, device: str = "cpu"):
        self.device = resolve_device(device)
        self.adapter = build_adapter(spec, self.device)
        self.module = self.adapter.module
        pre = dict(spec["preprocess"])
        if pre["spatial_size"] is None:
            pre["spatial_size"] = list(self.adapter.default_size)
        if pre["channels"] is None:
            pre["channels"] = int(self.adapter.channels)
        spec = dict(spec, preprocess=pre)
        self.spec = spec
        self.spatial_size = tuple(pre["spatial_size"])
        self.channels = int(pre["channels"])
        self.preprocessor = Preprocessor(pre, spec["roi"], self.channels)
        self.checkpoint_hash = checkpoint_hash(spec)
        self._probe()

    # ------------------------------------------------------------------ set-up
    def _probe(self) -> None:
        import torch

        x = torch.zeros((1, self.channels, *self.spatial_size), device=self.device)
        try:
            with torch.no_grad():
                toks = self.adapter.forward_multi(x)
        except (ConfigError,) as exc:
            raise exc
        except Exception as exc:  # noqa: BLE001 - turned into a user-facing message
            msg = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            if isinstance(exc, InputError) and "feature layer output" in msg:
                cands = self.adapter.candidate_layers(x)
                raise InputError(f"{msg}; layers with feature-map or token outputs: {cands}") from exc
            raise InputError(
                f"the model cannot take input of preprocess.spatial_size={list(self.spatial_size)} with "
                f"preprocess.channels={self.channels} ({type(exc).__name__}: {msg}); use the input size and "
                "channel count the network was built for (ViTs: a multiple of the patch size)") from exc
        for name, tok in zip(self.layer_names, toks):
            if 0 in tok.grid or tok.patch.shape[1] == 0:
                raise InputError(f"preprocess.spatial_size={list(self.spatial_size)} is too small: the feature layer "
                                 f"{name!r} has an empty grid {tok.grid}; use a larger input size")
        self.grids = [tuple(int(g) for g in tok.grid) for tok in toks]
        self.dims = [int(tok.patch.shape[-1]) for tok in toks]
        self.has_cls_by_layer = [tok.cls is not None for tok in toks]
        tok = toks[0]
        self.grid = self.grids[0]
        self.dim = self.dims[0]
        self.has_cls = self.has_cls_by_layer[0]
        self.n_registers = 0 if tok.registers is None else int(tok.registers.shape[1])
        log.info("encoder %s: input %s x%d ch, layers %s, grids %s, dims %s, cls=%s, registers=%d",
                 self.name, self.spatial_size, self.channels, self.layer_names, self.grids, self.dims,
                 self.has_cls, self.n_registers)

    @property
    def layer_names(self) -> list[str]:
        """Names of the feature layers (``layers`` of a multi-layer spec, else ``[layer]`` or ``["default"]``)."""
        from radlens.encoders.spec import layer_name

        return [layer_name(v) for v in (self.spec.get("layers") or [self.spec["layer"]])]

    @property
    def multi_layer(self) -> bool:
        """True when the spec asks for several layers (artifact keys become ``pooling@layer``)."""
        return len(self.layer_names) > 1

    def output_key(self, pooling: str, layer_index: int) -> str:
        """Artifact key of a pooling of one layer: ``pooling`` (one layer) or ``pooling@layer`` (several)."""
        return f"{pooling}@{self.layer_names[layer_index]}" if self.multi_layer else pooling

    def layer_pool_names(self, pooling: Sequence[str] | str = ("cls", "mean", "roi")) -> list[list[str]]:
        """:meth:`pool_names` of every layer (``cls`` → ``global`` on a layer without a class token)."""
        return [resolve_poolings(pooling, h) for h in self.has_cls_by_layer]

    @property
    def n_prefix(self) -> int:
        """Non-patch tokens before the patches in a token sequence (class + registers; 0 for CNNs)."""
        return int(self.has_cls) + self.n_registers

    @property
    def name(self) -> str:
        s = self.spec
        return str(s.get("name") or s.get("factory") or (Path(s["path"]).name if s.get("path") else s["kind"]))

    def pool_names(self, pooling: Sequence[str] | str = ("cls", "mean", "roi")) -> list[str]:
        """Output pooling names for this model (``cls`` → ``global`` without a class token)."""
        return resolve_poolings(pooling, self.has_cls)

    # ------------------------------------------------------------------ per image
    def prepare(self, image: np.ndarray, roi: np.ndarray | None = None, case_id: str = "?",
                roi_mode: str | None = None) -> Prepared:
        """Preprocess one stored image and map its ROI (bool or float coverage) to model pixels."""
        return self.preprocessor(image, roi, case_id=case_id, roi_mode=roi_mode)

    def preprocess(self, case, roi_mode: str | None = None):
        """Contract entry point: a loaded case (``.array``, ``.roi``, ``.case_id``).

        Returns
        -------
        x : Tensor float32, shape (C, *spatial_size)
        roi : ndarray bool, shape spatial_size
            Model-input pixels at least half covered by the ROI (the most-covered pixel(s) when
            none is; all False when the case has no ROI).
        """
        roi = getattr(case, "roi", None)
        p = self.prepare(case.array, roi, case_id=str(getattr(case, "case_id", "?")), roi_mode=roi_mode)
        if p.roi_cov is None:
            return p.x, np.zeros(self.spatial_size, dtype=bool)
        m = p.roi_cov >= 0.5
        if not m.any():
            m = p.roi_cov >= p.roi_cov.max() - 1e-12
        return p.x, m

    def roi_tokens(self, roi_cov: np.ndarray, case_id: str = "?", rule: str | None = None,
                   min_overlap: float | None = None) -> tuple[np.ndarray, bool]:
        """Tokens an ROI selects (no warning; see :func:`radlens.encoders.tokens.select_tokens`).

        Returns
        -------
        idx : ndarray int64 (k,), row-major over :attr:`grid`
        fallback : bool, True when the nearest token stood in for an ROI that covers none
        """
        r = self.spec["roi"]
        idx, fallback, _ = select_tokens(roi_cov, self.grid, rule or r["rule"],
                                         r["min_overlap"] if min_overlap is None else min_overlap, case_id)
        return idx, fallback

    def token_weights(self, roi_cov: np.ndarray, case_id: str = "?", rule: str | None = None,
                      min_overlap: float | None = None) -> np.ndarray:
        """ROI pooling weights (prod(grid),) for a model-input ROI coverage map (warns on fallback)."""
        r = self.spec["roi"]
        return roi_token_weights(roi_cov, self.grid, rule=rule or r["rule"],
                                 min_overlap=r["min_overlap"] if min_overlap is None else min_overlap,
                                 case_id=case_id)

    # ------------------------------------------------------------------ batches
    def forward_features(self, x) -> TokenOutput:
        """One forward pass: tokens at the feature layer.

        Parameters
        ----------
        x : Tensor, shape (B, C, *spatial_size)

        Returns
        -------
        TokenOutput
        """
        return self.adapter.forward(x.to(self.device))

    def forward_layers(self, x) -> list[TokenOutput]:
        """One forward pass: tokens at every feature layer (:attr:`layer_names` order).

        Parameters
        ----------
        x : Tensor, shape (B, C, *spatial_size)

        Returns
        -------
        list of TokenOutput, one per layer (grids and dims may differ between CNN stages)
        """
        return self.adapter.forward_multi(x.to(self.device))

    def __repr__(self) -> str:
        return (f"Encoder({self.spec['kind']}:{self.name}, input={self.spatial_size}, grid={self.grid}, "
                f"dim={self.dim}, cls={self.has_cls}, device={self.device!r})")


def load_encoder(spec_or_path: Any, device: str = "cpu", *, roi: dict | None = None,
                 layers: Sequence | str | None = None) -> Encoder:
    """Load an encoder from a spec.

    Parameters
    ----------
    spec_or_path : dict, str or PathLike
        YAML file, ``save_pretrained`` folder (= ``kind: hf``), inline YAML/JSON string, or dict.
    device : {"cpu", "cuda", "cuda:N", "auto"}
    roi : dict, optional
        Overrides of the spec's ``roi`` section (``rule``, ``min_overlap``, ``mode``, ``crop_margin``).
    layers : list or comma-separated str, optional
        Feature layers to read from one forward pass, replacing the spec's ``layer``/``layers``
        (dotted module names; ViT blocks by index; ``hf``: ``hidden_states`` indices).

    Returns
    -------
    Encoder

    Raises
    ------
    ConfigError, InputError
        Naming the spec key, file or parameter at fault.
    """
    spec = normalize_spec(spec_or_path)
    if layers is not None:
        from radlens.encoders.spec import normalize_layers

        lay = normalize_layers(layers, spec["kind"])
        if lay is None:
            raise ConfigError(f"layers={layers!r} is empty; give at least one layer name")
        spec.pop("layers", None)
        spec["layer"] = lay[0] if len(lay) == 1 else None
        if len(lay) > 1:
            spec["layers"] = lay
    if roi:
        r = dict(spec["roi"], **{k: v for k, v in roi.items() if v is not None})
        spec["roi"] = validate_roi_options(r["rule"], r["min_overlap"], r["mode"], r["crop_margin"])
    return Encoder(spec, device=device)
