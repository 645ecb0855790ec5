"""CAM methods vs per-sample reference implementations written here from the papers' formulas."""
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from radlens.cam.methods import GradCAM, GradCAMPlusPlus, IntegratedGradients, LayerCAM, make_method
from radlens.cam.vit import TokenLayout
from radlens.errors import InputError

torch.set_num_threads(1)


# ----------------------------------------------------------------------------- tiny models
class TinyCNN(nn.Module):
    def __init__(self, dim=2, k=3):
        super().__init__()
        conv = nn.Conv2d if dim == 2 else nn.Conv3d
        self.c1 = conv(1, 4, 3, padding=1)
        self.c2 = conv(4, 6, 3, stride=2, padding=1)
        self.head = nn.Linear(6, k)

    def forward(self, x):
        a = self.c2(torch.relu(self.c1(x)))
        h = torch.relu(a).flatten(2).mean(2)
        return self.head(h)


class TinyViT(nn.Module):
    def __init__(self, k=3, d=8, patch=4, n_reg=2):
        super().__init__()
        self.embed = nn.Conv2d(1, d, patch, stride=patch)
        self.cls = nn.Parameter(torch.randn(1, 1 + n_reg, d))
        self.b1 = nn.TransformerEncoderLayer(d, 2, 16, dropout=0.0, batch_first=True)
        self.b2 = nn.TransformerEncoderLayer(d, 2, 16, dropout=0.0, batch_first=True)
        self.head = nn.Linear(d, k)

    def forward(self, x):
        t = self.embed(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls.expand(x.shape[0], -1, -1), t], 1)
        t = self.b2(self.b1(t))
        return self.head(t[:, 0])


def _models():
    torch.manual_seed(0)
    return {
        "cnn2d": (TinyCNN(2).double(), "c2", torch.randn(7, 1, 12, 10, dtype=torch.float64), None),
        "cnn3d": (TinyCNN(3).double(), "c2", torch.randn(5, 1, 6, 8, 8, dtype=torch.float64), None),
        "vit": (TinyViT().double(), "b1", torch.randn(6, 1, 16, 12, dtype=torch.float64), TokenLayout((4, 3), 3)),
    }


# ----------------------------------------------------------------------------- reference (one sample)
def _ref_acts_grads(model, layer_name, x1, target, layout):
    layer = dict(model.named_modules())[layer_name]
    box = {}
    h = layer.register_forward_hook(lambda m, i, o: box.__setitem__("a", o))
    try:
        xx = x1.clone().requires_grad_(True)
        out = model(xx)
        y = out[0, target]
        g = torch.autograd.grad(y, box["a"])[0]
    finally:
        h.remove()
    a = box["a"][0].detach().numpy()
    g = g[0].numpy()
    if layout is not None:  # tokens (N, D) -> (D, gh, gw), patch j at row j // gw, column j % gw
        gh, gw = layout.grid
        A = np.zeros((a.shape[1], gh, gw))
        G = np.zeros_like(A)
        for j in range(gh * gw):
            A[:, j // gw, j % gw] = a[layout.n_prefix + j]
            G[:, j // gw, j % gw] = g[layout.n_prefix + j]
        a, g = A, G
    return a, g, float(y.detach())


def ref_gradcam(a, g, y):
    cam = sum(g[k].mean() * a[k] for k in range(a.shape[0]))
    return np.maximum(cam, 0)


def ref_layercam(a, g, y):
    cam = sum(np.maximum(g[k], 0) * a[k] for k in range(a.shape[0]))
    return np.maximum(cam, 0)


def ref_gradcampp(a, g, y):
    # S = exp(y): dS/dA = S g, d2S/dA2 = S g^2, d3S/dA3 = S g^3 (Chattopadhay et al., eq. 19)
    S = np.exp(y)
    cam = 0
    for k in range(a.shape[0]):
        d1, d2, d3 = S * g[k], S * g[k] ** 2, S * g[k] ** 3
        den = 2 * d2 + a[k].sum() * d3
        alpha = np.where(den != 0, d2 / np.where(den != 0, den, 1), 0)
        w = (alpha * np.maximum(d1, 0)).sum()
        cam = cam + w * a[k]
    return np.maximum(cam, 0) / S  # the constant exp(y) is left out of radlens' raw map


REFS = {"gradcam": (GradCAM, ref_gradcam), "layercam": (LayerCAM, ref_layercam),
        "gradcam++": (GradCAMPlusPlus, ref_gradcampp)}


@pytest.mark.parametrize("arch", ["cnn2d", "cnn3d", "vit"])
@pytest.mark.parametrize("method", list(REFS))
def test_batched_maps_equal_per_sample_reference(arch, method):
    model, lname, x, layout = _models()[arch]
    cls, ref = REFS[method]
    rng = np.random.default_rng(1)
    targets = rng.integers(0, 3, x.shape[0])
    targets[:3] = [0, 2, 1]  # mixed targets for sure
    cam = cls(model, dict(model.named_modules())[lname], token_layout=layout)
    res = cam(x, targets.tolist())
    assert res.targets.tolist() == targets.tolist()
    nsp = x.ndim - 2
    for i in range(x.shape[0]):
        a, g, y = _ref_acts_grads(model, lname, x[i:i + 1], int(targets[i]), layout)
        r = ref(a, g, y)
        assert res.raw[i].shape == r.shape
        np.testing.assert_allclose(res.raw[i], r, atol=1e-5 * max(1.0, np.abs(r).max()), rtol=1e-5)
        up = F.interpolate(torch.tensor(r)[None, None], size=x.shape[2:],
                           mode="bilinear" if nsp == 2 else "trilinear", align_corners=False)[0, 0].numpy()
        np.testing.assert_allclose(res.upsampled[i], up, atol=1e-5 * max(1.0, up.max()), rtol=1e-5)
        norm = up / up.max() if up.max() > 0 else np.zeros_like(up)
        np.testing.assert_allclose(res.maps[i], norm, atol=1e-5)
    assert res.maps.shape == (x.shape[0],) + tuple(x.shape[2:])
    assert res.maps.max() <= 1 + 1e-6 and res.maps.min() >= 0


def test_batch_size_chunking_and_none_targets_use_own_prediction():
    model, lname, x, _ = _models()["cnn2d"]
    layer = dict(model.named_modules())[lname]
    full = LayerCAM(model, layer)(x, None)
    chunked = LayerCAM(model, layer, batch_size=3)(x, None)
    with torch.no_grad():
        pred = model(x).argmax(1).numpy()
    assert full.targets.tolist() == pred.tolist()
    np.testing.assert_allclose(full.raw, chunked.raw, atol=1e-6)


def test_integrated_gradients_matches_gauss_legendre_reference():
    torch.manual_seed(0)
    model = TinyCNN(2).double()
    x = torch.randn(4, 1, 8, 8, dtype=torch.float64)
    targets = [2, 0, 1, 2]
    res = IntegratedGradients(model, n_steps=16)(x, targets)
    nodes, weights = np.polynomial.legendre.leggauss(16)
    alphas, w = (nodes + 1) / 2, weights / 2
    for i, t in enumerate(targets):
        total = torch.zeros_like(x[i:i + 1])
        for al, wt in zip(alphas, w):
            xi = (al * x[i:i + 1]).clone().requires_grad_(True)
            g = torch.autograd.grad(model(xi)[0, t], xi)[0]
            total += wt * g
        ig = (x[i:i + 1] * total)[0].sum(0).numpy()
        np.testing.assert_allclose(res.raw[i], np.maximum(ig, 0), atol=1e-7)
        # completeness: sum of IG ~= f(x) - f(0)
        with torch.no_grad():
            diff = float(model(x[i:i + 1])[0, t] - model(torch.zeros_like(x[i:i + 1]))[0, t])
        assert abs((x[i:i + 1] * total).sum().item() - diff) < 1e-3 * max(1, abs(diff))


def test_hooks_removed_and_training_mode_restored():
    model, lname, x, _ = _models()["cnn2d"]
    layer = dict(model.named_modules())[lname]
    model.train()
    GradCAMPlusPlus(model, layer)(x, [0] * x.shape[0])
    assert model.training
    assert len(layer._forward_hooks) == 0
    with pytest.raises(InputError):
        GradCAM(model, layer)(x, [0, 1])  # wrong length -> error, hooks still removed
    assert len(layer._forward_hooks) == 0


@pytest.mark.parametrize("targets, msg", [
    ([0, 1], "shape (7,)"),
    (1, "one target per sample"),
    ([0] * 6 + [5], "out of range"),
    (["a"] * 7, "integer class indices"),
])
def test_bad_targets_raise_clear_errors(targets, msg):
    model, lname, x, _ = _models()["cnn2d"]
    with pytest.raises(InputError, match=msg.replace("(", r"\(").replace(")", r"\)")):
        LayerCAM(model, dict(model.named_modules())[lname])(x, targets)


def test_token_layer_without_layout_and_foreign_layer_raise():
    model, lname, x, layout = _models()["vit"]
    with pytest.raises(InputError, match="token_layout"):
        LayerCAM(model, model.b1)(x, [0] * x.shape[0])
    with pytest.raises(InputError, match="not a sub-module"):
        LayerCAM(model, nn.Linear(2, 2))
    with pytest.raises(InputError, match="prefix"):
        LayerCAM(model, model.b1, token_layout=TokenLayout((4, 4), 1))(x, [0] * x.shape[0])
    with pytest.raises(InputError, match="unknown CAM method"):
        make_method("scorecam", model, model.b1)


def test_use_input_explains_tokens_entering_the_layer():
    """The input of block b2 is the output of block b1: both routes give identical maps."""
    model, _, x, layout = _models()["vit"]
    t = [0, 1, 2, 0, 1, 2]
    out_b1 = LayerCAM(model, model.b1, token_layout=layout)(x, t)
    in_b2 = LayerCAM(model, model.b2, token_layout=layout, use_input=True)(x, t)
    np.testing.assert_allclose(in_b2.raw, out_b1.raw, atol=1e-10)
    assert len(model.b2._forward_pre_hooks) == 0
