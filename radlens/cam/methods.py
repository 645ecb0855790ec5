"""The attribution methods: one small combination rule each on top of :class:`~radlens.cam.base.BaseCAM`.

Notation: ``A`` activations and ``g = dy_c/dA`` gradients of the target logit ``y_c``, both
``(B, C, *grid)``; sums over ``ab`` run over the spatial grid. The base applies the final ReLU.

* Grad-CAM (Selvaraju et al. 2017): ``w_k = mean_ab g_k``; ``map = ReLU(sum_k w_k A_k)``.
* Grad-CAM++ (Chattopadhay et al. 2018), with the exponential score ``S = exp(y_c)`` whose
  higher derivatives close in terms of ``g``:
  ``alpha_k,ab = g^2 / (2 g^2 + sum_ab(A_k) g^3)`` (0 where the denominator is 0),
  ``w_k = sum_ab alpha_k,ab ReLU(g_k,ab)``; ``map = ReLU(sum_k w_k A_k)``. The common factor
  ``exp(y_c)`` of ``dS/dA`` is left out of the raw map (it scales each map by a constant).
* LayerCAM (Jiang et al. 2021): ``map = ReLU(sum_k ReLU(g_k) * A_k)`` element-wise.
* Integrated Gradients (Sundararajan et al. 2017) through captum, in input space:
  ``map = ReLU(sum_channels IG(x))`` with a zero baseline (the preprocessed image's zero).

:class:`MultiCAM` computes several of the layer-gradient methods from one forward and one backward
pass (they all combine the same ``A`` and ``g``); its maps equal separate single-method calls.
"""
from __future__ import annotations

import logging
from typing import Sequence

from radlens.cam.base import BaseAttribution, BaseCAM
from radlens.errors import InputError

log = logging.getLogger(__name__)


def _spatial_dims(t):
    return tuple(range(2, t.ndim))


class GradCAM(BaseCAM):
    """Grad-CAM: channel weights are the spatially averaged gradients."""

    name = "gradcam"

    @staticmethod
    def combine(acts, grads):
        w = grads.mean(dim=_spatial_dims(grads), keepdim=True)
        return (w * acts).sum(dim=1)


class GradCAMPlusPlus(BaseCAM):
    """Grad-CAM++ with the exponential-score closed form of the second/third-order terms."""

    name = "gradcam++"

    @staticmethod
    def combine(acts, grads):
        import torch

        g2 = grads ** 2
        g3 = g2 * grads
        sum_a = acts.sum(dim=_spatial_dims(acts), keepdim=True)
        denom = 2 * g2 + sum_a * g3
        safe = torch.where(denom != 0, denom, torch.ones_like(denom))
        alpha = torch.where(denom != 0, g2 / safe, torch.zeros_like(denom))
        w = (alpha * torch.relu(grads)).sum(dim=_spatial_dims(grads), keepdim=True)
        return (w * acts).sum(dim=1)


class LayerCAM(BaseCAM):
    """LayerCAM: every location weighted by its own positive gradient."""

    name = "layercam"

    @staticmethod
    def combine(acts, grads):
        import torch

        return (torch.relu(grads) * acts).sum(dim=1)


class IntegratedGradients(BaseAttribution):
    """Integrated Gradients (captum) in input space, summed over channels, positive part kept.

    Parameters
    ----------
    model : torch.nn.Module
    n_steps : int
        Riemann/Gauss-Legendre steps of the path integral.
    internal_batch_size : int or None
        Path points evaluated per forward pass (memory bound).
    batch_size : int or None
    """

    name = "ig"

    def __init__(self, model, target_layer=None, *, n_steps: int = 32, internal_batch_size: int | None = 64,
                 batch_size: int | None = None, channels_last: bool = False, **_ignored):
        super().__init__(model, batch_size=batch_size, channels_last=channels_last)
        if not isinstance(n_steps, int) or n_steps < 2:
            raise InputError(f"IntegratedGradients: n_steps={n_steps!r} must be an int >= 2")
        self.n_steps = n_steps
        self.internal_batch_size = internal_batch_size

    def _raw_maps(self, x, targets):
        import torch
        from captum.attr import IntegratedGradients as _IG

        with torch.no_grad():
            logits = self.model(x)
        if logits.ndim != 2 or logits.shape[0] != x.shape[0]:
            raise InputError(f"ig: the model must return logits of shape (B, K), got {tuple(logits.shape)}")
        used = self._resolve_targets(logits, targets)
        ig = _IG(self.model)
        with torch.enable_grad():
            attr = ig.attribute(x.detach(), baselines=torch.zeros_like(x), target=used.tolist(),
                                n_steps=self.n_steps, internal_batch_size=self.internal_batch_size)
        return {self.name: attr.detach().sum(dim=1)}, logits, used


METHODS = {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus, "layercam": LayerCAM, "ig": IntegratedGradients}
#: Methods that combine the target layer's activations and gradients (one shared pass, see MultiCAM).
LAYER_METHODS = ("gradcam", "gradcam++", "layercam")


class MultiCAM(BaseCAM):
    """Several layer-gradient CAMs (Grad-CAM, Grad-CAM++, LayerCAM) from one forward and one
    backward pass per batch.

    Parameters
    ----------
    model, target_layer : see :class:`~radlens.cam.base.BaseCAM`
    methods : sequence of str
        Layer-gradient method names (aliases accepted), each once.
    **kwargs : ``token_layout``, ``output_index``, ``batch_size``, ``use_input``, ``channels_last``.

    Notes
    -----
    The maps equal those of separate single-method objects on the same inputs: the combination
    rules read the same activations and gradients, only the forward and backward pass are shared.
    """

    name = "multi"

    def __init__(self, model, target_layer, methods: Sequence[str] = LAYER_METHODS, **kwargs):
        keys = [canonical_method(m) for m in methods]
        bad = [k for k in keys if k not in LAYER_METHODS]
        if bad or not keys or len(set(keys)) != len(keys):
            raise InputError(f"MultiCAM: methods={list(methods)!r}; give layer-gradient methods {list(LAYER_METHODS)}, "
                             "at least one, each once (Integrated Gradients has its own pass)")
        super().__init__(model, target_layer, **kwargs)
        self.methods = tuple(keys)

    def combiners(self) -> dict:
        return {k: METHODS[k].combine for k in self.methods}

    def attribute(self, x, targets=None) -> dict:
        """Maps of every method for a batch, one target class per sample.

        Parameters
        ----------
        x : torch.Tensor, shape (B, C, H, W) or (B, C, D, H, W)
        targets : sequence of int, shape (B,), or None

        Returns
        -------
        dict
            ``{method name: CAMResult}`` in the order of ``methods``.
        """
        return self._attribute(x, targets)
ALIASES = {"grad-cam": "gradcam", "gradcampp": "gradcam++", "grad-cam++": "gradcam++", "gradcamplusplus": "gradcam++",
           "layer-cam": "layercam", "integrated-gradients": "ig", "integrated_gradients": "ig",
           "integratedgradients": "ig"}


def canonical_method(name: str) -> str:
    """Canonical method name (``gradcam``, ``gradcam++``, ``layercam``, ``ig``); raises on unknown names."""
    key = str(name).strip().lower()
    key = ALIASES.get(key, key)
    if key not in METHODS:
        raise InputError(f"unknown CAM method {name!r}; allowed: {sorted(METHODS)} (aliases: {sorted(ALIASES)})")
    return key


def make_method(name: str, model, target_layer=None, **kwargs):
    """Instantiate a method by name.

    Parameters
    ----------
    name : str
        ``gradcam``, ``gradcam++``, ``layercam`` or ``ig`` (aliases accepted).
    model, target_layer : see :class:`~radlens.cam.base.BaseCAM`
    **kwargs : ``token_layout``, ``output_index``, ``batch_size``, ``use_input``, ``channels_last`` (CAMs);
        ``n_steps``, ``internal_batch_size``, ``batch_size``, ``channels_last`` (IG).
    """
    key = canonical_method(name)
    cls = METHODS[key]
    if key == "ig":
        kw = {k: v for k, v in kwargs.items() if k in ("n_steps", "internal_batch_size", "batch_size", "channels_last")}
        return cls(model, **kw)
    return cls(model, target_layer, **_cam_kwargs(kwargs))


def _cam_kwargs(kwargs: dict) -> dict:
    return {k: v for k, v in kwargs.items()
            if k in ("token_layout", "output_index", "batch_size", "use_input", "channels_last")}


def attribute_methods(names: Sequence[str], model, target_layer, x, targets=None, **kwargs) -> dict:
    """Maps of several methods for one batch, sharing one forward+backward pass among the
    layer-gradient methods (:class:`MultiCAM`); Integrated Gradients runs its own pass.

    Parameters
    ----------
    names : sequence of str
        Method names (aliases accepted), each once.
    model, target_layer : see :class:`~radlens.cam.base.BaseCAM`
    x : torch.Tensor, shape (B, C, *spatial)
    targets : sequence of int, shape (B,), or None
    **kwargs : as for :func:`make_method`.

    Returns
    -------
    dict
        ``{name as given: CAMResult}`` in the order of ``names``.
    """
    keys = [canonical_method(n) for n in names]
    if len(set(keys)) != len(keys):
        raise InputError(f"methods={list(names)!r}: give each method once")
    layer = [k for k in keys if k in LAYER_METHODS]
    out = {}
    if layer:
        out.update(MultiCAM(model, target_layer, layer, **_cam_kwargs(kwargs)).attribute(x, targets))
    if "ig" in keys:
        out["ig"] = make_method("ig", model, **kwargs)(x, targets)
    return {n: out[k] for n, k in zip(names, keys)}
