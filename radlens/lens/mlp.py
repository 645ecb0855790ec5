"""First-layer training: Linear(p→m) + activation + Linear(m→d), AdamW with weight decay, early
stopping on a patient-grouped validation split (torch, CPU, float64, deterministic per seed).

Only the first layer (``W1``, ``b1``) is kept by the lens; the SGD-trained head is discarded and
re-estimated in closed form (see :mod:`radlens.lens.estimator`), for pre and post alike.
"""
from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)

ACTIVATIONS = ("tanh", "gelu", "softplus", "sigmoid", "relu")


def activation(name: str, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Activation ``σ(u)`` and derivative ``σ'(u)`` in numpy (same formulas as the torch module).

    Parameters
    ----------
    u : ndarray, any shape (pre-activations ``X @ W1.T + b1``).
    """
    from scipy.special import erf, expit

    if name == "tanh":
        t = np.tanh(u)
        return t, 1 - t * t
    if name == "sigmoid":
        s = expit(u)
        return s, s * (1 - s)
    if name == "softplus":
        return np.logaddexp(0, u), expit(u)
    if name == "relu":
        return np.maximum(u, 0), (u > 0).astype(float)
    if name == "gelu":  # exact (erf) GELU, as torch.nn.GELU()
        cdf = 0.5 * (1 + erf(u / np.sqrt(2)))
        pdf = np.exp(-0.5 * u * u) / np.sqrt(2 * np.pi)
        return u * cdf, cdf + u * pdf
    raise ValueError(f"activation={name!r} not allowed; use one of {ACTIVATIONS}")


def _torch_act(name):
    import torch.nn as nn

    return {"tanh": nn.Tanh, "gelu": nn.GELU, "softplus": nn.Softplus, "sigmoid": nn.Sigmoid,
            "relu": nn.ReLU}[name]()


def train_first_layer(X, T, train_idx, val_idx, *, hidden: int, act: str, weight_decay: float, lr: float,
                      max_epochs: int, patience: int, batch_size: int, seed: int) -> dict:
    """Train the two-layer MLP X → T and return the best (lowest validation loss) first layer.

    Parameters
    ----------
    X : ndarray, shape (n, p)   standardised radiomics.
    T : ndarray, shape (n, r)   training targets (pre embeddings in a canonical frame).
    train_idx, val_idx : integer arrays   disjoint row indices (patient-grouped).

    Returns
    -------
    dict: ``W1`` (m, p), ``b1`` (m,), ``best_epoch``, ``epochs``, ``val_r2`` (pooled R² of the
    MLP's own head on the validation rows at the best epoch), ``train_loss``, ``val_loss``
    (per-epoch lists).
    """
    import torch

    # tiny per-step work: intra-op threads only add synchronisation (badly so on a busy machine)
    prev_threads = torch.get_num_threads()
    small = batch_size * (X.shape[1] * hidden + hidden * T.shape[1]) < 5_000_000
    if small:
        torch.set_num_threads(1)
    try:
        return _train(X, T, train_idx, val_idx, hidden=hidden, act=act, weight_decay=weight_decay, lr=lr,
                      max_epochs=max_epochs, patience=patience, batch_size=batch_size, seed=seed)
    finally:
        if small:
            torch.set_num_threads(prev_threads)


def _train(X, T, train_idx, val_idx, *, hidden, act, weight_decay, lr, max_epochs, patience, batch_size, seed):
    import torch

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    Xt = torch.as_tensor(X, dtype=torch.float64)
    Tt = torch.as_tensor(T, dtype=torch.float64)
    p, r = Xt.shape[1], Tt.shape[1]
    model = torch.nn.Sequential(torch.nn.Linear(p, hidden), _torch_act(act), torch.nn.Linear(hidden, r)).double()
    # the SGD head starts from the target mean, so early epochs fit structure, not the offset
    with torch.no_grad():
        model[2].bias.copy_(Tt[train_idx].mean(0))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    tr = torch.as_tensor(np.asarray(train_idx), dtype=torch.long)
    va = torch.as_tensor(np.asarray(val_idx), dtype=torch.long)
    Xv, Tv = Xt[va], Tt[va]
    sst_v = float(((Tv - Tt[tr].mean(0)) ** 2).sum())
    best = (np.inf, None, 0, np.nan)
    train_hist, val_hist = [], []
    bad = 0
    epoch = 0
    for epoch in range(1, max_epochs + 1):
        model.train()
        order = tr[torch.randperm(tr.numel(), generator=gen)]
        tot = 0.0
        for s in range(0, order.numel(), batch_size):
            b = order[s:s + batch_size]
            opt.zero_grad()
            loss = ((model(Xt[b]) - Tt[b]) ** 2).mean()
            loss.backward()
            opt.step()
            tot += loss.item() * b.numel()
        train_hist.append(tot / tr.numel())
        model.eval()
        with torch.no_grad():
            sse = float(((model(Xv) - Tv) ** 2).sum())
        vloss = sse / Tv.numel()
        val_hist.append(vloss)
        if vloss < best[0] - 1e-12 * max(1.0, abs(best[0]) if np.isfinite(best[0]) else 1.0):
            state = (model[0].weight.detach().numpy().copy(), model[0].bias.detach().numpy().copy())
            best = (vloss, state, epoch, 1 - sse / sst_v if sst_v > 0 else np.nan)
            bad = 0
        else:
            bad += 1
            if bad >= patience:
                break
    W1, b1 = best[1]
    log.debug("seed %d: best epoch %d of %d, val R² %.3f", seed, best[2], epoch, best[3])
    return {"W1": W1, "b1": b1, "best_epoch": int(best[2]), "epochs": int(epoch), "val_r2": float(best[3]),
            "train_loss": train_hist, "val_loss": val_hist}
