"""MONAI / python-factory / TorchScript encoders: exact poolings, known-function tokens, bad inputs."""
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("monai")

from radlens.encoders import embed_arrays, load_encoder  # noqa: E402
from radlens.errors import ConfigError, InputError  # noqa: E402

torch.set_num_threads(1)


def cnn_args(dims=2, width=4):
    # stride-1 stem, no max-pool: layer4 grid = input / 8
    return {"block": "basic", "layers": [1, 1, 1, 1], "block_inplanes": [width, 2 * width, 4 * width, 8 * width],
            "spatial_dims": dims, "n_input_channels": 1, "conv1_t_size": 3, "conv1_t_stride": 1,
            "no_max_pool": True, "feed_forward": False}


def _hooked(model, layer, x):
    """Feature map of ``layer`` captured by the test's own hook."""
    box = {}
    h = dict(model.named_modules())[layer].register_forward_hook(lambda m, i, o: box.setdefault("o", o))
    with torch.no_grad():
        model(x)
    h.remove()
    return box["o"]


@pytest.fixture(scope="module")
def resnet2d(tmp_path_factory):
    from monai.networks.nets import ResNet
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = ResNet(**cnn_args()).eval()
    d = tmp_path_factory.mktemp("r2d")
    save_file(model.state_dict(), str(d / "ckpt.safetensors"))
    spec = {"kind": "monai", "name": "ResNet", "args": cnn_args(), "checkpoint": str(d / "ckpt.safetensors"),
            "layer": "layer4", "preprocess": {"spatial_size": [32, 48], "intensity": "none"}}
    return model, spec, d


def test_monai_cnn_exact_global_mean_roi(resnet2d):
    model, spec, _ = resnet2d
    enc = load_encoder(spec)
    assert enc.grid == (4, 6) and not enc.has_cls and enc.dim == 32
    rng = np.random.default_rng(0)
    imgs = [rng.normal(size=(32, 48)).astype(np.float32) for _ in range(3)]
    rois = [np.zeros((32, 48), bool) for _ in imgs]
    for r in rois:
        r[8:16, 0:16] = True  # cells (1, 0), (1, 1) of the 8-px layer4 grid
    out = embed_arrays(enc, imgs, rois)
    assert sorted(out) == ["global", "mean", "roi"]
    f = _hooked(model, "layer4", torch.from_numpy(np.stack(imgs))[:, None]).numpy()  # (3, 32, 4, 6)
    np.testing.assert_allclose(out["global"], f.mean((2, 3)), atol=1e-5)
    np.testing.assert_allclose(out["mean"], f.mean((2, 3)), atol=1e-5)
    np.testing.assert_allclose(out["roi"], f[:, :, 1, 0:2].mean(-1), atol=1e-5)


def test_monai_3d_network_on_3d_phantom(tmp_path):
    from monai.networks.nets import ResNet

    from radlens.io.images import load_case
    from radlens.io.manifest import read_manifest
    from radlens.synth import make_cohort

    mp = make_cohort(tmp_path / "c3", n_cases=4, image_size=16, seed=0, dim=3)
    case = load_case(next(read_manifest(mp).rows()))
    assert case.array.ndim == 3
    torch.manual_seed(0)
    model = ResNet(**cnn_args(3)).eval()
    torch.save(model.state_dict(), tmp_path / "r3d.pt")
    enc = load_encoder({"kind": "monai", "name": "ResNet", "args": cnn_args(3), "checkpoint": str(tmp_path / "r3d.pt"),
                        "layer": "layer4", "preprocess": {"spatial_size": [16, 16, 16], "intensity": "zscore"}})
    assert enc.grid == (2, 2, 2)
    x, roi_in = enc.preprocess(case)
    assert tuple(x.shape) == (1, 16, 16, 16) and roi_in.shape == (16, 16, 16)
    # exact: z-scored volume by hand, ROI tokens by hand from the model-input mask (overlap >= 0.5)
    a = case.array.astype(np.float64)
    np.testing.assert_allclose(x[0].numpy(), (a - a.mean()) / a.std(), atol=1e-4)
    f = _hooked(model, "layer4", x[None]).numpy()[0]  # (32, 2, 2, 2)
    cell = case.roi.reshape(2, 8, 2, 8, 2, 8).mean((1, 3, 5))
    sel = cell >= 0.5
    if not sel.any():
        sel = cell == cell.max()
    out = embed_arrays(enc, [case.array], [case.roi])
    np.testing.assert_allclose(out["roi"][0], f[:, sel].mean(-1), atol=1e-5)
    np.testing.assert_allclose(out["global"][0], f.mean((1, 2, 3)), atol=1e-5)


def test_monai_vit_classification_tokens():
    args = dict(in_channels=1, img_size=(32, 32), patch_size=(8, 8), hidden_size=16, mlp_dim=32, num_layers=1,
                num_heads=2, spatial_dims=2, classification=True, num_classes=2)
    enc = load_encoder({"kind": "monai", "name": "ViT", "args": args,
                        "preprocess": {"spatial_size": [32, 32], "intensity": "none"}})
    assert enc.has_cls and enc.grid == (4, 4)  # default layer 'norm': cls + 16 patches
    rng = np.random.default_rng(1)
    imgs = [rng.normal(size=(32, 32)).astype(np.float32) for _ in range(2)]
    out = embed_arrays(enc, imgs, boxes=[(24, 0, 8, 8)] * 2)  # patch (0, 3)
    t = _hooked(enc.module, "norm", torch.from_numpy(np.stack(imgs))[:, None]).numpy()  # (2, 17, 16)
    np.testing.assert_allclose(out["cls"], t[:, 0], atol=1e-5)
    np.testing.assert_allclose(out["mean"], t[:, 1:].mean(1), atol=1e-5)
    np.testing.assert_allclose(out["roi"], t[:, 1 + 3], atol=1e-5)


KNOWN = '''
import torch
import torch.nn as nn


class PatchMean(nn.Module):
    """Tokens = [mean, 2 * mean + 1] of each p x p patch of channel 0 (known function of the pixels)."""

    def __init__(self, patch=4):
        super().__init__()
        self.pool = nn.AvgPool2d(patch)
        self.scale = nn.Parameter(torch.tensor([1.0, 2.0]))
        self.shift = nn.Parameter(torch.tensor([0.0, 1.0]))

    def forward(self, x):
        m = self.pool(x[:, :1])
        return m * self.scale.view(1, 2, 1, 1) + self.shift.view(1, 2, 1, 1)


def make(patch=4):
    return PatchMean(patch)
'''


@pytest.fixture()
def known_module(tmp_path, monkeypatch):
    (tmp_path / "radlens_known_model.py").write_text(textwrap.dedent(KNOWN), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    import radlens_known_model

    importlib.reload(radlens_known_model)
    torch.save(radlens_known_model.make(4).state_dict(), tmp_path / "known.pt")
    return tmp_path


@pytest.mark.parametrize("rule", ["overlap", "center"])
def test_known_function_tokens_give_expected_roi_mean(known_module, rule):
    """Ramp image v(r, c) = r + 100 c, stored 24 x 40, area-resized to 12 x 20, 4-px patches → grid 3 x 5.

    A token is the mean of its model patch = the ramp's mean over the token's stored cell (8 x 8
    stored px): v at the cell centre, (8a + 3.5) + 100 (8b + 3.5). ROI box rows [6, 18), cols [8, 24):
    token cells rows [0,8),[8,16),[16,24) cols [0,8),...; overlap rows 2/8, 1, 2/8; cols 0, 1, 1, 0, 0.
    Both rules select (1, 1), (1, 2); ROI mean = mean of v at centres (11.5, 811.5) and (11.5, 1611.5).
    """
    enc = load_encoder({"kind": "python", "factory": "radlens_known_model:make", "args": {"patch": 4},
                        "checkpoint": str(known_module / "known.pt"),
                        "preprocess": {"spatial_size": [12, 20], "intensity": "none", "channels": 1},
                        "roi": {"rule": rule}})
    assert enc.grid == (3, 5)
    r, c = np.mgrid[0:24, 0:40]
    img = (r + 100.0 * c).astype(np.float32)
    out = embed_arrays(enc, [img], boxes=[(8, 6, 16, 12)])
    v = np.mean([11.5 + 100 * 11.5, 11.5 + 100 * 19.5])
    np.testing.assert_allclose(out["roi"][0], [v, 2 * v + 1], rtol=1e-5)
    v_all = 11.5 + 100 * 19.5  # mean of the ramp over the whole image
    np.testing.assert_allclose(out["mean"][0], [v_all, 2 * v_all + 1], rtol=1e-5)


def test_torchscript_encoder(tmp_path):
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 5, 4, stride=4)

        def forward(self, x):
            return self.conv(x), x.mean()

    torch.manual_seed(0)
    net = Net().eval()
    torch.jit.save(torch.jit.trace(net, torch.zeros(1, 1, 16, 16)), str(tmp_path / "net.pt"))
    enc = load_encoder({"kind": "torchscript", "path": str(tmp_path / "net.pt"), "output": 0,
                        "preprocess": {"spatial_size": [16, 16], "intensity": "none"}})
    assert enc.grid == (4, 4) and enc.channels == 1
    img = np.random.default_rng(0).normal(size=(16, 16)).astype(np.float32)
    out = embed_arrays(enc, [img], boxes=[(0, 12, 4, 4)])  # cell (3, 0)
    with torch.no_grad():
        f = net(torch.from_numpy(img)[None, None])[0].numpy()[0]
    np.testing.assert_allclose(out["global"][0], f.mean((1, 2)), atol=1e-6)
    np.testing.assert_allclose(out["roi"][0], f[:, 3, 0], atol=1e-6)
    with pytest.raises(ConfigError, match="forward hooks"):
        load_encoder({"kind": "torchscript", "path": str(tmp_path / "net.pt"), "layer": "conv",
                      "preprocess": {"spatial_size": [16, 16]}})


def test_bad_inputs_clear_errors(resnet2d, tmp_path):
    model, spec, d = resnet2d
    from monai.networks.nets import ResNet

    # wrong checkpoint: another width → shape mismatches listed; a different net → missing/unexpected keys
    torch.save(ResNet(**cnn_args(width=8)).state_dict(), tmp_path / "w8.pt")
    with pytest.raises(InputError, match=r"w8.pt.*shape mismatch.*conv1.weight"):
        load_encoder(dict(spec, checkpoint=str(tmp_path / "w8.pt")))
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "other.pt")
    with pytest.raises(InputError, match=r"missing key\(s\) \['conv1.weight'.*unexpected key\(s\) \['fc.weight'\]"):
        load_encoder(dict(spec, checkpoint=str(tmp_path / "other.pt")))
    # pickled code never runs: a pickled module is refused by weights_only
    torch.save(model, tmp_path / "pickled.pt")
    with pytest.raises(InputError, match="weights_only=True"):
        load_encoder(dict(spec, checkpoint=str(tmp_path / "pickled.pt")))
    with pytest.raises(InputError, match="does not exist"):
        load_encoder(dict(spec, checkpoint=str(tmp_path / "nope.pt")))
    # layer that does not exist: close matches listed
    with pytest.raises(ConfigError, match=r"layer='layer5'.*closest names: \['layer4', 'layer3'"):
        load_encoder(dict(spec, layer="layer5"))
    # no layer on a network whose output is a vector: candidates listed
    args = dict(spatial_dims=2, in_channels=1, out_channels=2, init_features=4, growth_rate=4,
                block_config=(1, 1))
    with pytest.raises(InputError, match=r"neither a feature map.*layers with feature-map or token outputs: \[.*features"):
        load_encoder({"kind": "monai", "name": "DenseNet", "args": args, "preprocess": {"spatial_size": [16, 16]}})
    # image size the model cannot take
    vit = dict(in_channels=1, img_size=(32, 32), patch_size=(8, 8), hidden_size=16, mlp_dim=32, num_layers=1,
               num_heads=2, spatial_dims=2)
    with pytest.raises(InputError, match=r"preprocess.spatial_size=\[40, 40\]"):
        load_encoder({"kind": "monai", "name": "ViT", "args": vit, "preprocess": {"spatial_size": [40, 40]}})
    # spec problems name the key
    with pytest.raises(ConfigError, match="'preprocesss'.*did you mean 'preprocess'"):
        load_encoder(dict(spec, preprocesss={}))
    with pytest.raises(ConfigError, match="name='Resnet'.*ResNet"):
        load_encoder(dict(spec, name="Resnet"))
    with pytest.raises(ConfigError, match="roi.rule='middle'"):
        load_encoder(dict(spec, roi={"rule": "middle"}))
    with pytest.raises(InputError, match="device='cuda'"):
        if torch.cuda.is_available():
            raise InputError("device='cuda' (skip: CUDA present)")
        load_encoder(spec, device="cuda")
