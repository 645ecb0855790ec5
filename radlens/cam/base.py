"""Attribution base classes: targets, hooks, the backward pass, ReLU, upsampling, normalisation.

Every method (``radlens.cam.methods``) is one small function on top of :class:`BaseCAM` that turns
a layer's activations and gradients into a map; everything else lives here, once:

* **one target per sample** — ``targets`` must hold exactly ``B`` class indices (or ``None`` for
  each sample's own predicted class); it is never truncated or broadcast;
* the **forward hook** captures the target layer's output (the first element of a tuple output),
  and is removed in ``finally``; a layer that runs more than once per forward is refused;
* **one backward pass** per batch: the gradient of ``sum_i logit_i[target_i]`` with respect to the
  activations. In eval mode samples do not interact, so row ``i`` of that gradient is exactly
  ``d logit_i[target_i] / d A_i`` (the model is switched to eval for the call and restored after);
* the part of the forward pass **before** the target layer runs without autograd recording (the
  gradient never flows there); recording starts at the target layer's output;
* **several methods, one pass**: every layer-gradient method is a combination of the same
  activations and gradients, so :class:`~radlens.cam.methods.MultiCAM` computes Grad-CAM,
  Grad-CAM++ and LayerCAM from one forward and one backward pass per batch;
* optional **channels-last** weights (``channels_last=True``): torch's CPU convolutions (oneDNN)
  batch far better on NHWC/NDHWC tensors than on NCHW ones with few channels;
* ViT token outputs ``(B, N, D)`` are reshaped onto the patch grid via a
  :class:`~radlens.cam.vit.TokenLayout` (class/register tokens dropped);
* **ReLU** of the combined map, **linear upsampling** (bilinear 2D / trilinear 3D,
  ``align_corners=False``) to the input size, and a per-sample **max normalisation**.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from radlens.cam.vit import TokenLayout
from radlens.errors import InputError

log = logging.getLogger(__name__)


@dataclass
class CAMResult:
    """Maps of one batch.

    Attributes
    ----------
    raw : ndarray float32, shape (B, *layer_grid)
        ReLU'd, unnormalised map on the target layer's grid (input grid for input-space methods).
    upsampled : ndarray float32, shape (B, *input_spatial)
        ``raw`` linearly resized to the model input; unnormalised.
    maps : ndarray float32, shape (B, *input_spatial)
        ``upsampled`` divided by its per-sample maximum, in [0, 1]; an all-zero map stays zero
        (no min shift, so zero evidence stays zero and mass-based metrics are unchanged).
    targets : ndarray int64, shape (B,)
        Class index explained for each sample.
    logits : ndarray float32, shape (B, K)
    """

    raw: np.ndarray
    upsampled: np.ndarray
    maps: np.ndarray
    targets: np.ndarray
    logits: np.ndarray


def _concat(results: list[CAMResult]) -> CAMResult:
    if len(results) == 1:
        return results[0]
    return CAMResult(*(np.concatenate([getattr(r, k) for r in results]) for k in
                       ("raw", "upsampled", "maps", "targets", "logits")))


def to_channels_last(model) -> None:
    """Store ``model``'s 4D parameters and buffers channels-last (5D: channels-last-3d), in place.

    Values are unchanged (only the memory layout); convolutions then produce channels-last outputs,
    which torch's CPU (oneDNN) kernels process much faster in a batch than NCHW tensors with few
    channels. A model that calls ``.view`` on a spatial feature map fails with channels-last
    tensors (use ``.reshape``/``.flatten`` there, or leave this off).

    Parameters
    ----------
    model : torch.nn.Module
    """
    import itertools

    import torch

    formats = {4: torch.channels_last, 5: torch.channels_last_3d}
    for t in itertools.chain(model.parameters(), model.buffers()):
        fmt = formats.get(t.ndim)
        if fmt is not None and not t.is_contiguous(memory_format=fmt):
            t.data = t.data.contiguous(memory_format=fmt)


def _replace_output(output, index: int, new):
    """``output`` with its tensor (or tuple element ``index``) replaced by ``new``."""
    if not isinstance(output, (tuple, list)):
        return new
    items = list(output)
    items[index] = new
    return output._make(items) if hasattr(output, "_make") else type(output)(items)


def normalise_max(m: np.ndarray) -> np.ndarray:
    """Divide each map (first axis = sample) by its maximum; maps whose max is <= 0 become zeros.

    Parameters
    ----------
    m : ndarray, shape (B, *spatial), non-negative

    Returns
    -------
    ndarray float32, same shape, values in [0, 1]
    """
    m = np.asarray(m, dtype=np.float64)
    flat = m.reshape(m.shape[0], -1)
    mx = flat.max(axis=1) if flat.shape[1] else np.zeros(m.shape[0])
    out = np.zeros_like(flat)
    ok = mx > 0
    out[ok] = flat[ok] / mx[ok, None]
    return out.reshape(m.shape).astype(np.float32)


def normalise_max_torch(m):
    """:func:`normalise_max` on a torch tensor, in float32 on its device (the batched path).

    Equal to :func:`normalise_max` value for value: a float32 quotient computed in float64 and
    rounded to float32 is the correctly rounded float32 quotient, so no float64 copy of the batch
    is needed.

    Parameters
    ----------
    m : Tensor, shape (B, *spatial), non-negative

    Returns
    -------
    Tensor float32, same shape, values in [0, 1]
    """
    import torch

    flat = m.float().reshape(m.shape[0], -1)
    if flat.shape[1] == 0:
        return flat.reshape(m.shape)
    mx = flat.amax(dim=1, keepdim=True)
    ok = mx > 0
    out = torch.where(ok, flat / torch.where(ok, mx, torch.ones_like(mx)), torch.zeros_like(flat))
    return out.reshape(m.shape)


def upsample(cam, size: Sequence[int]):
    """Linear resize of ``cam`` (torch, shape (B, *grid)) to ``size`` (bilinear 2D / trilinear 3D,
    ``align_corners=False``); returns shape (B, *size)."""
    import torch.nn.functional as F

    size = tuple(int(s) for s in size)
    if tuple(cam.shape[1:]) == size:
        return cam
    mode = {2: "bilinear", 3: "trilinear"}.get(len(size))
    if mode is None:
        raise InputError(f"upsample: only 2D and 3D maps are supported, got spatial size {size}")
    return F.interpolate(cam[:, None], size=size, mode=mode, align_corners=False)[:, 0]


class BaseAttribution:
    """Shared parts of every attribution method: target validation, batching, ReLU, upsampling and
    normalisation. Subclasses implement :meth:`_raw_maps`.

    Parameters
    ----------
    model : torch.nn.Module
        Maps an input ``(B, C, *spatial)`` to logits ``(B, K)``.
    batch_size : int or None
        Samples per forward/backward pass (``None``: the whole input at once).
    channels_last : bool
        Convert the model's 4D/5D weights to channels-last memory layout, in place, once (see
        :func:`to_channels_last`; values unchanged). Much faster batched CNN passes on CPU.
    """

    name = "base"

    def __init__(self, model, *, batch_size: int | None = None, channels_last: bool = False):
        if batch_size is not None and (not isinstance(batch_size, (int, np.integer)) or batch_size < 1):
            raise InputError(f"{type(self).__name__}: batch_size={batch_size!r} must be a positive int or None")
        self.model = model
        self.batch_size = batch_size
        self.channels_last = bool(channels_last)
        if self.channels_last:
            to_channels_last(model)

    # ------------------------------------------------------------------ targets
    @staticmethod
    def check_targets(targets, n: int):
        """Validate ``targets`` as exactly one class index per sample (or ``None``).

        Returns
        -------
        ndarray int64, shape (n,), or None
        """
        if targets is None:
            return None
        if isinstance(targets, (int, np.integer)):
            raise InputError(
                f"targets={int(targets)!r}: one target per sample is required (got a single int for a batch "
                f"of {n}); pass a list of {n} class indices, e.g. [{int(targets)}] * {n}")
        t = np.asarray(targets.detach().cpu() if hasattr(targets, "detach") else targets)
        if t.ndim != 1 or t.shape[0] != n:
            raise InputError(f"targets has shape {t.shape}; one target per sample is required: shape ({n},) for "
                             f"a batch of {n} (targets are never truncated or broadcast)")
        if t.dtype.kind not in "iu":
            if t.dtype.kind == "f" and np.all(np.isfinite(t)) and np.all(t == np.round(t)):
                t = t.astype(np.int64)
            else:
                raise InputError(f"targets must be integer class indices, got dtype {t.dtype}: {t[:5].tolist()}")
        return t.astype(np.int64)

    @staticmethod
    def _resolve_targets(logits, t):
        import torch

        k = logits.shape[1]
        if t is None:
            return logits.argmax(dim=1)
        if t.size and (t.min() < 0 or t.max() >= k):
            bad = t[(t < 0) | (t >= k)]
            raise InputError(f"targets {bad[:5].tolist()} out of range for a model with {k} outputs (0..{k - 1})")
        return torch.as_tensor(t, device=logits.device)

    # ------------------------------------------------------------------ public
    def __call__(self, x, targets=None) -> CAMResult:
        return self.attribute(x, targets)

    def attribute(self, x, targets=None) -> CAMResult:
        """Maps for a batch, one target class per sample.

        Parameters
        ----------
        x : torch.Tensor, shape (B, C, H, W) or (B, C, D, H, W)
        targets : sequence of int, shape (B,), or None
            Class index to explain for each sample; ``None`` explains each sample's predicted class.

        Returns
        -------
        CAMResult
        """
        return self._attribute(x, targets)[self.name]

    def _attribute(self, x, targets) -> dict[str, CAMResult]:
        """Maps of every method this object computes (``{name: CAMResult}``), batch by batch."""
        import torch

        if not isinstance(x, torch.Tensor):
            raise InputError(f"{self.name}: x must be a torch.Tensor of shape (B, C, *spatial), got {type(x).__name__}")
        if x.ndim not in (4, 5):
            raise InputError(f"{self.name}: x must have shape (B, C, H, W) or (B, C, D, H, W), got {tuple(x.shape)}")
        t = self.check_targets(targets, x.shape[0])
        bs = self.batch_size or x.shape[0]
        param = next(iter(self.model.parameters()), None)
        if param is not None and x.device != param.device:
            x = x.to(param.device)  # the input follows the model (CPU or GPU)
        out: dict[str, list[CAMResult]] = {}
        training = [m for m in self.model.modules() if m.training]  # restored exactly afterwards
        try:
            for m in training:
                m.training = False
            for s in range(0, x.shape[0], bs):
                tt = None if t is None else t[s:s + bs]
                raws, logits, used = self._raw_maps(x[s:s + bs], tt)
                used_np = used.detach().cpu().numpy().astype(np.int64)
                logits_np = logits.detach().cpu().numpy().astype(np.float32)
                for name, raw in raws.items():
                    with torch.no_grad():  # ReLU, upsampling and normalisation on the whole batch, in torch
                        raw = torch.relu(raw).float()
                        up = upsample(raw, x.shape[2:])
                        maps = normalise_max_torch(up)
                    raw_np = raw.cpu().numpy()
                    up_np = up.cpu().numpy() if up is not raw else raw_np.copy()  # never shared
                    out.setdefault(name, []).append(CAMResult(
                        raw=raw_np, upsampled=up_np, maps=maps.cpu().numpy(),
                        targets=used_np.copy(), logits=logits_np.copy()))  # not shared between methods
        finally:
            for m in training:
                m.training = True
        return {name: _concat(rs) for name, rs in out.items()}

    def _raw_maps(self, x, targets):  # pragma: no cover - abstract
        """Return ({method name: pre-ReLU map (B, *grid)}, logits (B, K), targets used (B,))."""
        raise NotImplementedError


class BaseCAM(BaseAttribution):
    """Layer-gradient CAMs: hooks on ``target_layer``, one backward pass, a per-method combination.

    Parameters
    ----------
    model : torch.nn.Module
    target_layer : torch.nn.Module
        A sub-module of ``model`` whose output is ``(B, C, *grid)`` (CNN) or ``(B, N, D)`` tokens
        (ViT; then ``token_layout`` is required). Tuple outputs use element ``output_index``.
    token_layout : TokenLayout, optional
    output_index : int
    batch_size : int or None
    use_input : bool
        Explain the tensor *entering* ``target_layer`` (its first positional or tensor keyword
        argument) instead of its output. For class-token-pooled ViTs the patch tokens leaving the
        last block never reach the head (the final norm is per token), so their gradients are
        zero; the tokens entering that block are the last ones that do.
    channels_last : bool
        See :class:`BaseAttribution`.

    Notes
    -----
    With ``use_input=False`` the layers before the target run without autograd recording: the hook
    turns recording on and hands the rest of the model a copy of the layer output that requires
    grad, so in-place operations on it (``out += identity``) behave as in an ordinary forward pass.
    With ``use_input=True`` the whole forward pass is recorded (the tensor entering the layer may
    also feed other paths computed before the layer runs).
    """

    def __init__(self, model, target_layer, *, token_layout: TokenLayout | None = None,
                 output_index: int = 0, batch_size: int | None = None, use_input: bool = False,
                 channels_last: bool = False):
        super().__init__(model, batch_size=batch_size, channels_last=channels_last)
        if target_layer is None or not any(m is target_layer for m in model.modules()):
            raise InputError(f"{type(self).__name__}: target_layer {type(target_layer).__name__} is not a sub-module "
                             "of the model; pass a module from model.named_modules()")
        if token_layout is not None and not isinstance(token_layout, TokenLayout):
            raise InputError(f"token_layout must be a radlens.cam.vit.TokenLayout, got {type(token_layout).__name__}")
        self.target_layer = target_layer
        self.token_layout = token_layout
        self.output_index = output_index
        self.use_input = bool(use_input)

    @staticmethod
    def combine(acts, grads):  # pragma: no cover - abstract
        """The method: activations and gradients (B, C, *grid) -> map (B, *grid) before ReLU."""
        raise NotImplementedError

    def combiners(self) -> dict:
        """``{method name: combine function}`` of the maps this object computes from one pass."""
        return {self.name: self.combine}

    def _to_grid(self, a, n_spatial: int):
        if a.ndim == 2 + n_spatial:
            return a
        if a.ndim == 3:
            if self.token_layout is None:
                raise InputError(
                    f"{self.name}: the target layer emits tokens of shape {tuple(a.shape)}; pass "
                    "token_layout=TokenLayout(grid, n_prefix) so they can be put back on the patch grid")
            return self.token_layout.to_grid(a)
        raise InputError(f"{self.name}: target layer output has shape {tuple(a.shape)}; expected (B, C, *grid) with "
                         f"{n_spatial} spatial dims or (B, N, D) tokens")

    def activations_and_grads(self, x, targets):
        """Forward with a hook on the target layer and one backward pass.

        Returns
        -------
        acts, grads : torch.Tensor, shape (B, C, *grid) (tokens already on the patch grid)
        logits : torch.Tensor, shape (B, K)
        used : torch.Tensor int64, shape (B,), the targets explained
        """
        import torch

        store: list = []
        prefix_no_grad = not self.use_input

        def hook(module, inputs, output):
            t = output[self.output_index] if isinstance(output, (tuple, list)) else output
            if not isinstance(t, torch.Tensor):
                raise InputError(f"{self.name}: target layer output is {type(t).__name__}, not a tensor")
            if store:  # a second run of the layer: refused after the forward
                store.append(t)
                return None
            torch.set_grad_enabled(True)  # recording starts here; restored by activations_and_grads
            acts = t.detach().requires_grad_(True).clone()
            store.append(acts)
            return _replace_output(output, self.output_index, acts)

        def pre_hook(module, args, kwargs):
            cands = list(args) + [v for v in kwargs.values()]
            t = next((c for c in cands if isinstance(c, torch.Tensor)), None)
            if t is None:
                raise InputError(f"{self.name}: the target layer received no tensor input")
            store.append(t)

        if self.use_input:
            handle = self.target_layer.register_forward_pre_hook(pre_hook, with_kwargs=True)
        else:
            handle = self.target_layer.register_forward_hook(hook)
        grad_mode = torch.is_grad_enabled()
        try:
            if prefix_no_grad:
                torch.set_grad_enabled(False)
                xx = x.detach()
            else:
                torch.set_grad_enabled(True)
                xx = x.detach().clone().requires_grad_(True)
            logits = self.model(xx)
            torch.set_grad_enabled(True)
            if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or logits.shape[0] != x.shape[0]:
                raise InputError(f"{self.name}: the model must return logits of shape (B, K) = ({x.shape[0]}, K), "
                                 f"got {getattr(logits, 'shape', type(logits).__name__)}")
            if len(store) != 1:
                raise InputError(f"{self.name}: the target layer ran {len(store)} times in one forward pass; "
                                 "choose a layer that runs exactly once")
            acts = store[0]
            used = self._resolve_targets(logits, targets)
            score = logits.gather(1, used[:, None]).sum()
            grads = None
            if score.requires_grad:
                (grads,) = torch.autograd.grad(score, acts, allow_unused=True)
            if grads is None:
                raise InputError(f"{self.name}: the target layer's output does not influence the logits; "
                                 "choose a layer on the path to the classifier head")
        finally:
            torch.set_grad_enabled(grad_mode)
            handle.remove()
        n_sp = x.ndim - 2
        return (self._to_grid(acts.detach(), n_sp), self._to_grid(grads.detach(), n_sp),
                logits.detach(), used)

    def _raw_maps(self, x, targets):
        import torch

        acts, grads, logits, used = self.activations_and_grads(x, targets)
        with torch.no_grad():
            raws = {name: fn(acts, grads) for name, fn in self.combiners().items()}
        return raws, logits, used
