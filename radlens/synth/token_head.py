"""The demo ViT's token-score head (``head.pooling: lse``, :class:`radlens.synth.train.TrainConfig`
``vit_pooling``): transfer fit, fine-tuning and the fold into the raw-unit two-class head the classifier
spec holds. The linear head scores every patch token; the scores are pooled by
:func:`radlens.cam.model.lse_pool` (docs/cam.md "The ViT's shape head")."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from radlens.synth.steps import _augment, one_cycle_epochs

if TYPE_CHECKING:
    from radlens.synth.train_config import TrainConfig


def _fold_token_head(model, w, b, mu, sd) -> None:
    """Write a one-output head fitted on standardised tokens ``(t - mu) / sd`` into ``model.head`` as the
    raw-unit two-class head ``[0, w / sd]``, ``[0, b - (w / sd) . mu]`` (class-0 logit 0, as the logistic head)."""
    import torch

    with torch.no_grad():
        wr = w.reshape(-1) / sd
        model.head.weight.zero_()
        model.head.bias.zero_()
        model.head.weight[1].copy_(wr)
        model.head.bias[1] = float(b) - float(wr @ mu)


def _token_stats(model, x, batch_size: int = 128):
    """Per-channel mean and SD over every position of every image (eval mode): ``(mu, sd)``, each (D,)."""
    import torch

    model.eval()
    s1 = s2 = None
    n = 0
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            t = model.tokens(x[i:i + batch_size]).double().flatten(0, 1)
            s1 = t.sum(0) if s1 is None else s1 + t.sum(0)
            s2 = (t ** 2).sum(0) if s2 is None else s2 + (t ** 2).sum(0)
            n += t.shape[0]
    mu = s1 / n
    return mu.float(), ((s2 / n - mu ** 2).clamp_min(0) + 1e-5).sqrt().float()


def fit_token_head(model, x, y: np.ndarray, train_idx: np.ndarray, C: float = 1.0) -> None:
    """Transfer learning for ``pooling="lse"`` heads: an L2 logistic model whose logit is the log-mean-exp
    (:func:`radlens.cam.model.lse_pool`) of a linear score of every standardised position of the frozen
    backbone, fitted by L-BFGS (penalty ``||w||^2 / (2 C n)``, the ``LogisticRegression(C)`` objective over
    ``n`` cases), written into ``model.head`` in raw units (:func:`_fold_token_head`)."""
    import torch
    import torch.nn.functional as F

    from radlens.cam.model import lse_pool

    mu, sd = _token_stats(model, x[train_idx])
    with torch.no_grad():
        z = torch.cat([(model.tokens(x[train_idx][i:i + 128]) - mu) / sd for i in range(0, len(train_idx), 128)])
    yt = torch.as_tensor(y[train_idx], dtype=torch.float32)
    w = torch.zeros(z.shape[2], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=200, history_size=20, line_search_fn="strong_wolfe")
    lam = 1.0 / (C * len(train_idx))

    def closure():
        opt.zero_grad()
        logit = lse_pool((z @ w + b)[..., None], model.sharpness)[:, 0]
        loss = F.binary_cross_entropy_with_logits(logit, yt) + 0.5 * lam * (w ** 2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    _fold_token_head(model, w.detach(), b.detach(), mu, sd)


def _finetune_token_head(model, x, y, train_idx, cfg: TrainConfig, gen, task: str, log_rows: list,
                        lr: float, epochs: int, fbs: int, init=None) -> None:
    """:func:`finetune` of a ``pooling="lse"`` classifier: a one-output linear score of every position,
    standardised per channel over the batch's positions while training (the mean-pooled head's
    standardisation, per token), pooled by :func:`radlens.cam.model.lse_pool`; binary cross-entropy;
    folded into the raw-unit two-class head afterwards (:func:`_fold_token_head`, eval-mode statistics
    of the training images' positions)."""
    import torch
    import torch.nn.functional as F

    from radlens.cam.model import lse_pool

    d = model.head.in_features
    norm = torch.nn.BatchNorm1d(d, affine=False, track_running_stats=False)
    lin = torch.nn.Linear(d, 1)
    with torch.no_grad():
        lin.weight.zero_()
        lin.bias.zero_()
        if init is not None:  # the transfer head in standardised units (LP-FT)
            lin.weight.copy_(init[0].reshape(1, -1))
            lin.bias.fill_(float(init[1]))
    hf = float(cfg.vit_head_lr_factor)
    opt = torch.optim.AdamW([{"params": model.backbone.parameters(), "lr": lr},
                             {"params": lin.parameters(), "lr": hf * lr}], weight_decay=cfg.weight_decay)
    xt, yt = x[train_idx], torch.as_tensor(y[train_idx], dtype=torch.float32)
    rotate = model.arch in tuple(cfg.rot90_finetune_archs)

    def batch_loss(idx):
        xb = _augment(xt[idx], gen, strong=False, rotate=rotate)
        t = model.tokens(xb)
        z = norm(t.flatten(0, 1)).reshape(t.shape)
        return F.binary_cross_entropy_with_logits(lse_pool(lin(z), model.sharpness)[:, 0], yt[idx])

    one_cycle_epochs(model, opt, len(xt), fbs, epochs, gen, batch_loss, log_rows, "finetune", task)
    mu, sd = _token_stats(model, xt)
    _fold_token_head(model, lin.weight.detach(), lin.bias.detach(), mu, sd)
