"""Training primitives of the demo encoders: augmentation, batching, model read-outs and the
operating point, and measurements of what training changed."""
from __future__ import annotations

import numpy as np

#: planted attributes whose linear decodability from the pooled features is tracked pre -> ft
ATTRIBUTES = ("texture_corr_len", "texture_amp", "lesion_intensity", "lesion_radius", "elongation")


def _augment(x, gen, strong: bool, rotate: bool = True):
    """Random flips / 90-degree rotations when ``rotate`` (+ shift, intensity jitter and noise when ``strong``).

    x : Tensor (B, 1, H, W); gen : torch.Generator. Square images assumed for rotations.
    """
    import torch

    b = x.shape[0]
    flip_h = torch.rand(b, generator=gen) < 0.5
    flip_w = torch.rand(b, generator=gen) < 0.5
    x = torch.where(flip_h[:, None, None, None], x.flip(2), x)
    x = torch.where(flip_w[:, None, None, None], x.flip(3), x)
    if rotate and x.shape[2] == x.shape[3]:
        k = torch.randint(0, 4, (b,), generator=gen)
        x = torch.stack([torch.rot90(xi, int(ki), dims=(1, 2)) for xi, ki in zip(x, k)])
    if strong:
        x = _random_shift(x, gen, max(1, x.shape[2] // 16))
        # brightness / contrast jitter and noise in units of the batch's intensity SD (the inputs are
        # no longer standardised: on the [0, 1] scale a fixed 0.1 noise drowned the lesion texture)
        sd = x.std().clamp_min(1e-6)
        scale = 0.75 + 0.5 * torch.rand(b, 1, 1, 1, generator=gen)
        shift = 0.4 * sd * (torch.rand(b, 1, 1, 1, generator=gen) - 0.5)
        x = x * scale + shift + 0.1 * sd * torch.randn(x.shape, generator=gen)
    return x


def _random_shift(x, gen, pad: int):
    """Each image shifted by its own random offset of up to ``pad`` px per axis (reflect padding).

    x : Tensor (B, 1, H, W) -> same shape; draws ``dy`` then ``dx`` (B each) from ``gen``.
    """
    import torch

    b, h, w = x.shape[0], x.shape[2], x.shape[3]
    xp = torch.nn.functional.pad(x, (pad, pad, pad, pad), mode="reflect")
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=gen)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=gen)
    return torch.stack([xp[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(b)])


#: parts of a HF DINOv2 backbone that ``TrainConfig.vit_frozen`` can freeze, by parameter-name test
VIT_PARTS = {"embeddings": lambda n: n.startswith("embeddings."),
             "attention": lambda n: ".attention." in n,
             "mlp": lambda n: ".mlp." in n,
             "norms": lambda n: ".norm1." in n or ".norm2." in n or n.startswith("layernorm."),
             "layer_scale": lambda n: ".layer_scale" in n}


def vit_layer_id(name: str, n_layers: int) -> int:
    """Depth of a DINOv2 backbone parameter for layer-wise learning-rate decay (BEiT, Bao et al. 2022):
    0 for the embeddings (patch projection, position embeddings, CLS token), ``i + 1`` for
    ``encoder.layer.i``, ``n_layers + 1`` for the final layer norm (read by the head)."""
    if name.startswith("embeddings."):
        return 0
    if name.startswith("encoder.layer."):
        return int(name.split(".")[2]) + 1
    return n_layers + 1


def vit_param_groups(backbone, lr: float, layer_decay: float = 1.0, frozen=()) -> list[dict]:
    """AdamW parameter groups of a DINOv2 backbone's fine-tuning.

    Parameters
    ----------
    backbone : transformers.Dinov2Model
    lr : float
        Peak learning rate of the top (the final layer norm).
    layer_decay : float in (0, 1]
        Parameter at depth ``d`` (:func:`vit_layer_id`) gets ``lr * layer_decay ** (n_layers + 1 - d)``.
    frozen : iterable of str
        Keys of :data:`VIT_PARTS`: those parameters get ``requires_grad = False`` and no group.

    Returns
    -------
    list of dict
        One group per depth that has trainable parameters: ``{"params", "lr", "layer_id"}``, shallow first.
    """
    n_layers = int(backbone.config.num_hidden_layers)
    tests = [VIT_PARTS[k] for k in frozen]
    groups: dict[int, list] = {}
    for name, p in backbone.named_parameters():
        if any(t(name) for t in tests):
            p.requires_grad_(False)
            continue
        groups.setdefault(vit_layer_id(name, n_layers), []).append(p)
    return [{"params": ps, "lr": lr * layer_decay ** (n_layers + 1 - d), "layer_id": d}
            for d, ps in sorted(groups.items())]


def _batches(n: int, batch_size: int, gen, shuffle: bool = True) -> list:
    import torch

    order = torch.randperm(n, generator=gen) if shuffle else torch.arange(n)
    out = [order[i:i + batch_size] for i in range(0, n, batch_size)]
    if len(out) > 1 and len(out[-1]) < 4:  # a 1-3 image tail batch destabilises BatchNorm/contrastive
        out[-2] = torch.cat([out[-2], out.pop()])
    return out


def one_cycle_epochs(model, opt, n: int, batch_size: int, epochs: int, gen, batch_loss, log_rows: list,
                     stage: str, task: str = "") -> None:
    """The demo's training loop: ``epochs`` passes over ``n`` images in shuffled batches
    (:func:`_batches`), one AdamW step per batch under a one-cycle schedule (20 % warm-up, cosine
    decay; the peak rate of each parameter group is its ``lr``), one row per epoch appended to
    ``log_rows`` (``arch, stage, task, epoch, loss``: the epoch's mean batch loss).

    ``batch_loss(idx)`` returns the loss of the batch of image indices ``idx`` (it draws its
    augmentations from ``gen`` itself). Pretext, fine-tuning and the token head's fine-tuning all run
    here, so their schedules and random streams are the same by construction."""
    import torch

    n_steps = max(epochs * len(_batches(n, batch_size, gen, shuffle=False)), 1)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[g["lr"] for g in opt.param_groups],
                                                total_steps=n_steps, pct_start=0.2)
    step = 0
    for epoch in range(epochs):
        model.train()
        losses = []
        for idx in _batches(n, batch_size, gen):
            loss = batch_loss(idx)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            if step < n_steps:
                sched.step()
            losses.append(float(loss.detach()))
        log_rows.append({"arch": model.arch, "stage": stage, "task": task, "epoch": epoch + 1,
                         "loss": float(np.mean(losses))})


def _flip_consistent_loss(model, lin, xb, yb, weight: float):
    """Fine-tuning loss of ``flip_consistent_archs`` (:class:`radlens.synth.train.TrainConfig`).

    Cross-entropy on the batch ``xb`` (B, 1, H, W) and on its left-right mirror image, plus ``weight``
    times the mean squared difference between each image's class map and its mirror image's class map
    mirrored back -- an equivariance constraint on the CAM (in the spirit of SEAM, Wang et al. 2020).
    The class map is the per-position logit difference ``(w_1 - w_0) . A`` on the head's grid ``A``
    (logit units): the exact Grad-CAM of the positive class up to a constant, as the maps are drawn
    (cell ``j`` at pixel ``s * j + (s - 1) / 2``, so cell ``j`` of the mirror image is drawn where cell
    ``h - 1 - j`` of the image is). A standardised head (``standardised_head_archs``: a ``BatchNorm1d``
    before ``lin``, the ViT's) reads the pooled features divided by their batch SD, so the map's
    weights are divided by it too (detached), keeping the penalty in logit units -- with the raw weights
    the ViT's penalty was (SD 0.03-0.07)^2 smaller than meant. ViT: ``model.grid`` is the patch tokens
    on the patch grid.
    """
    import torch
    import torch.nn.functional as F

    b = xb.shape[0]
    g = model.grid(torch.cat([xb, xb.flip(3)]))            # (2B, C, h, w)
    pooled = g.mean(dim=(2, 3))
    loss = F.cross_entropy(model.head(pooled), torch.cat([yb, yb]))
    w = lin.weight[1] - lin.weight[0]
    norm = model.head[0] if isinstance(model.head, torch.nn.Sequential) else None
    if isinstance(norm, torch.nn.BatchNorm1d):  # a standardised head reads pooled / batch SD: the map too
        w = w / (pooled.detach().var(0, unbiased=False) + norm.eps).sqrt()
    cam = torch.einsum("bchw,c->bhw", g, w)
    return loss + weight * (cam[:b] - cam[b:].flip(2)).pow(2).mean()


def local_statistics(x, grid: tuple[int, int]):
    """Hand-crafted per-cell image statistics, the regression targets of the pretext task.

    Parameters
    ----------
    x : Tensor, shape (B, 1, H, W)
    grid : (h, w)
        Cells per axis (the feature grid of the model; ``H % h == W % w == 0``).

    Returns
    -------
    Tensor, shape (B, 7, h, w)
        Per cell: mean, standard deviation, mean |d/dx|, mean |d/dy|, mean |Laplacian| (fine
        structure), the standard deviation of a 2-px box-smoothed copy (coarse structure) and the
        cell's share of the image above its 75th percentile (bright mass).
    """
    import torch
    import torch.nn.functional as F

    h, w = grid
    ky, kx = x.shape[2] // h, x.shape[3] // w
    pool = lambda t: F.avg_pool2d(t, (ky, kx))  # noqa: E731
    xp = F.pad(x, (1, 1, 1, 1), mode="replicate")
    dx = (xp[:, :, 1:-1, 2:] - xp[:, :, 1:-1, :-2]).abs()
    dy = (xp[:, :, 2:, 1:-1] - xp[:, :, :-2, 1:-1]).abs()
    lap = (xp[:, :, 1:-1, 2:] + xp[:, :, 1:-1, :-2] + xp[:, :, 2:, 1:-1] + xp[:, :, :-2, 1:-1] - 4 * x).abs()
    smooth = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    mean = pool(x)
    sd = (pool(x ** 2) - mean ** 2).clamp_min(0).sqrt()
    msm = pool(smooth)
    sd_smooth = (pool(smooth ** 2) - msm ** 2).clamp_min(0).sqrt()
    q = torch.quantile(x.flatten(1), 0.75, dim=1)[:, None, None, None]
    bright = pool((x > q).float())
    return torch.cat([mean, sd, pool(dx), pool(dy), pool(lap), sd_smooth, bright], dim=1)


def _vit_finetune_loss(model, lin, xb, yb, aux: float, pretext, l1: float, l2: float = 0.0):
    """Fine-tuning loss of the ViT with ``vit_pretext_aux`` and / or ``vit_map_l1``
    (:class:`radlens.synth.train.TrainConfig`): cross-entropy
    + ``aux`` x the pretext loss (``pretext = (readout, mu, sd, grid)`` of :func:`radlens.synth.train.pretrain`:
    the frozen read-out predicting each token's standardised :func:`local_statistics`)
    + ``l1`` x the mean absolute per-token positive-class share ``lin.weight[1] . t_i`` (logit units; a
    standardised head's weights divided by the pooled features' batch SD, detached, as the head is folded
    after training): the exported Grad-CAM map before its ReLU, times the number of tokens
    + ``l2`` x the mean squared share.
    """
    import torch
    import torch.nn.functional as F

    g = model.grid(xb)                                        # (B, C, h, w) patch tokens on their grid
    pooled = g.mean(dim=(2, 3))
    loss = F.cross_entropy(model.head(pooled), yb)
    if aux:
        readout, mu, sd, grid = pretext
        loss = loss + aux * F.mse_loss(readout(g), (local_statistics(xb, grid) - mu) / sd)
    if l1 or l2:
        w = lin.weight[1]
        norm = model.head[0] if isinstance(model.head, torch.nn.Sequential) else None
        if isinstance(norm, torch.nn.BatchNorm1d):
            w = w / (pooled.detach().var(0, unbiased=False) + norm.eps).sqrt()
        share = torch.einsum("bchw,c->bhw", g, w)
        loss = loss + l1 * share.abs().mean() + l2 * share.pow(2).mean()
    return loss


def _features(model, x, batch_size: int = 128) -> np.ndarray:
    """Pooled features (n, D) in eval mode."""
    import torch

    model.eval()
    with torch.no_grad():
        return np.concatenate([model.features(x[i:i + batch_size]).numpy() for i in range(0, len(x), batch_size)])


def _logits(model, x, batch_size: int = 128) -> np.ndarray:
    import torch

    model.eval()
    with torch.no_grad():
        return np.concatenate([model(x[i:i + batch_size]).numpy() for i in range(0, len(x), batch_size)])


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, score)) if np.unique(y).size == 2 else float("nan")


def youden_threshold(y: np.ndarray, score: np.ndarray) -> float:
    """Score threshold maximising Youden's J = TPR - FPR (predict positive when ``score > t``).

    Candidates are the midpoints between consecutive distinct scores (plus one below the minimum); ties
    in J go to the threshold closest to 0, so a head that is already well placed keeps its bias.
    """
    y = np.asarray(y).astype(bool)
    score = np.asarray(score, dtype=float)
    if y.all() or not y.any():
        return 0.0
    u = np.unique(score)
    cand = np.concatenate([[u[0] - 1.0], (u[:-1] + u[1:]) / 2]) if u.size > 1 else np.array([u[0] - 1.0])
    pred = score[None, :] > cand[:, None]
    j = pred[:, y].mean(1) - pred[:, ~y].mean(1)
    best = np.flatnonzero(np.isclose(j, j.max()))
    return float(cand[best[np.argmin(np.abs(cand[best]))]])


def place_operating_point(model, x, y: np.ndarray, train_idx: np.ndarray) -> float:
    """Shift the positive-class bias so the two-class head decides at the Youden-optimal threshold of the
    training cases. A small fine-tuned head often ranks well (AUC) but calls nearly every case negative,
    which would leave CAM drift almost no true positives to compare. Returns the shift applied."""
    import torch

    d = np.diff(_logits(model, x[train_idx]), axis=1)[:, 0]
    t = youden_threshold(y[train_idx], d)
    with torch.no_grad():
        model.head.bias[1] -= t
    return t


def backbone_change(pre, post) -> dict[str, float]:
    """Relative L2 change ``||w_post - w_pre|| / ||w_pre||`` of the backbone, overall and per top-level block."""
    sp, sq = pre.state_dict(), post.state_dict()
    groups: dict[str, list[float]] = {}
    tot_num = tot_den = 0.0
    for k, v in sp.items():
        if not v.is_floating_point() or "running_" in k:
            continue
        num = float(((sq[k] - v) ** 2).sum())
        den = float((v ** 2).sum())
        parts = k.split(".")
        g = ".".join(parts[:3]) if parts[0] == "encoder" else parts[0]
        acc = groups.setdefault(g, [0.0, 0.0])
        acc[0] += num
        acc[1] += den
        tot_num += num
        tot_den += den
    out = {"total": float(np.sqrt(tot_num / max(tot_den, 1e-12)))}
    out.update({g: float(np.sqrt(a / max(b, 1e-12))) for g, (a, b) in groups.items()})
    return out


def attribute_decodability(feats: np.ndarray, table, train_idx, val_idx) -> dict[str, float]:
    """Validation R^2 of a ridge regression from pooled features to each planted attribute (lesion cases)."""
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    out = {}
    has = table["has_lesion"].to_numpy().astype(bool) if "has_lesion" in table.columns else np.ones(len(table), bool)
    for a in ATTRIBUTES:
        if a not in table.columns:
            continue
        t = table[a].to_numpy(dtype=float)
        tr = [i for i in train_idx if has[i] and np.isfinite(t[i])]
        va = [i for i in val_idx if has[i] and np.isfinite(t[i])]
        if len(tr) < 10 or len(va) < 5 or np.std(t[va]) == 0:
            continue
        reg = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 3, 11))).fit(feats[tr], t[tr])
        out[a] = float(reg.score(feats[va], t[va]))
    return out
