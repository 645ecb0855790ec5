"""transformers encoders from local save_pretrained folders: exact cls / mean / roi vectors."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from radlens.encoders import embed_arrays, load_encoder  # noqa: E402
from radlens.errors import ConfigError, InputError  # noqa: E402

torch.set_num_threads(1)
TINY = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, patch_size=8,
            image_size=32, num_channels=3)


@pytest.fixture(scope="module")
def dino_dir(tmp_path_factory):
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("dino") / "dino"
    transformers.Dinov2Model(transformers.Dinov2Config(**TINY)).eval().save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def dinoreg_dir(tmp_path_factory):
    torch.manual_seed(1)
    d = tmp_path_factory.mktemp("dinoreg") / "dinoreg"
    cfg = transformers.Dinov2WithRegistersConfig(**TINY, num_register_tokens=4)
    transformers.Dinov2WithRegistersModel(cfg).eval().save_pretrained(d)
    return d


def _images(n, shape, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=shape).astype(np.float32) for _ in range(n)]


def _hand_hidden(folder, cls_name, imgs):
    """The model's own last_hidden_state for images fed as-is (no resize, no normalisation), 3 channels."""
    model = getattr(transformers, cls_name).from_pretrained(folder).eval()
    x = torch.from_numpy(np.stack(imgs))[:, None].repeat(1, 3, 1, 1)
    with torch.no_grad():
        return model(pixel_values=x).last_hidden_state.numpy()


def test_dinov2_from_yaml_exact_poolings(dino_dir, tmp_path):
    # spec file with a relative path, non-square input (4 x 6 patches)
    (tmp_path / "enc.yaml").write_text(f"kind: hf\npath: {dino_dir.name}\npreprocess:\n  spatial_size: [32, 48]\n"
                                       "  intensity: none\n")
    (tmp_path / dino_dir.name).symlink_to(dino_dir)
    enc = load_encoder(tmp_path / "enc.yaml")
    assert enc.grid == (4, 6) and enc.has_cls and enc.n_registers == 0 and enc.channels == 3
    imgs = _images(3, (32, 48))
    # ROI: stored rows [8, 24), cols [16, 32) = patch rows 1-2, cols 2-3 → tokens 8, 9, 14, 15
    rois = [np.zeros((32, 48), bool) for _ in imgs]
    for r in rois:
        r[8:24, 16:32] = True
    out = embed_arrays(enc, imgs, rois, batch_size=2)
    h = _hand_hidden(dino_dir, "Dinov2Model", imgs)
    assert h.shape[1] == 1 + 24
    np.testing.assert_allclose(out["cls"], h[:, 0], atol=1e-5)
    np.testing.assert_allclose(out["mean"], h[:, 1:].mean(1), atol=1e-5)
    np.testing.assert_allclose(out["roi"], h[:, 1 + np.array([8, 9, 14, 15])].mean(1), atol=1e-5)
    # boxes (x, y, w, h) give the same tokens
    out_b = embed_arrays(enc, imgs, boxes=[(16, 8, 16, 16)] * 3, pooling="roi")
    np.testing.assert_allclose(out_b["roi"], out["roi"], atol=1e-6)
    # checkpoint hash: content hash of the folder, stable
    assert len(enc.checkpoint_hash) == 64
    assert load_encoder(dino_dir).checkpoint_hash == enc.checkpoint_hash


def test_dinov2_registers_are_not_patches(dinoreg_dir):
    enc = load_encoder({"kind": "hf", "path": str(dinoreg_dir), "preprocess": {"intensity": "none"}})
    assert enc.spatial_size == (32, 32) and enc.grid == (4, 4) and enc.n_registers == 4
    imgs = _images(2, (32, 32), seed=3)
    rois = [np.zeros((32, 32), bool) for _ in imgs]
    for r in rois:
        r[0:8, 24:32] = True  # patch (0, 3) → token 3
    out = embed_arrays(enc, imgs, rois)
    h = _hand_hidden(dinoreg_dir, "Dinov2WithRegistersModel", imgs)
    assert h.shape[1] == 1 + 4 + 16
    np.testing.assert_allclose(out["cls"], h[:, 0], atol=1e-5)
    np.testing.assert_allclose(out["mean"], h[:, 5:].mean(1), atol=1e-5)
    np.testing.assert_allclose(out["roi"], h[:, 5 + 3], atol=1e-5)
    # including the registers would give a different vector: the test can fail
    assert np.abs(out["mean"] - h[:, 1:].mean(1)).max() > 1e-3


def test_siglip_has_no_cls_and_clip_has_one(tmp_path):
    vis = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, patch_size=8,
               image_size=32, num_channels=3)
    torch.manual_seed(0)
    transformers.SiglipVisionModel(transformers.SiglipVisionConfig(**vis)).save_pretrained(tmp_path / "sig")
    transformers.CLIPVisionModel(transformers.CLIPVisionConfig(**vis)).save_pretrained(tmp_path / "clip")
    imgs = _images(2, (32, 32), seed=5)
    rois = [np.ones((32, 32), bool)] * 2
    sig = load_encoder({"kind": "hf", "path": str(tmp_path / "sig"), "preprocess": {"intensity": "none"}})
    assert not sig.has_cls and sig.pool_names(("cls", "mean", "roi")) == ["global", "mean", "roi"]
    out = embed_arrays(sig, imgs, rois)
    m = transformers.SiglipVisionModel.from_pretrained(tmp_path / "sig").eval()
    x = torch.from_numpy(np.stack(imgs))[:, None].repeat(1, 3, 1, 1)
    with torch.no_grad():
        o = m(pixel_values=x)
    np.testing.assert_allclose(out["global"], o.pooler_output.numpy(), atol=1e-5)
    np.testing.assert_allclose(out["mean"], o.last_hidden_state.numpy().mean(1), atol=1e-5)  # all 16 are patches
    clip = load_encoder({"kind": "hf", "path": str(tmp_path / "clip"), "preprocess": {"intensity": "none"}})
    assert clip.has_cls and clip.grid == (4, 4)
    out = embed_arrays(clip, imgs, rois, pooling="cls")
    m = transformers.CLIPVisionModel.from_pretrained(tmp_path / "clip").eval()
    with torch.no_grad():
        h = m(pixel_values=x).last_hidden_state.numpy()
    np.testing.assert_allclose(out["cls"], h[:, 0], atol=1e-5)


def test_hf_bad_inputs(dino_dir, tmp_path):
    # image size the model cannot take: not a multiple of the 8-px patch
    with pytest.raises(InputError, match=r"preprocess.spatial_size=\[30, 30\]"):
        load_encoder({"kind": "hf", "path": str(dino_dir), "preprocess": {"spatial_size": [30, 30]}})
    # wrong checkpoint for this architecture: keys listed
    from safetensors.torch import save_file

    save_file({"conv.weight": torch.zeros(2, 3)}, str(tmp_path / "wrong.safetensors"))
    with pytest.raises(InputError, match=r"missing key.*unexpected key\(s\) \['conv.weight'\]"):
        load_encoder({"kind": "hf", "path": str(dino_dir), "checkpoint": str(tmp_path / "wrong.safetensors")})
    with pytest.raises(InputError, match="not a transformers model folder"):
        load_encoder({"kind": "hf", "path": str(tmp_path)})
    with pytest.raises(ConfigError, match="integer index into hidden_states"):
        load_encoder({"kind": "hf", "path": str(dino_dir), "layer": "encoder.layer.0"})
    enc = load_encoder({"kind": "hf", "path": str(dino_dir), "preprocess": {"intensity": "none"}})
    with pytest.raises(InputError, match="case '#1'.*ROI is empty"):
        embed_arrays(enc, _images(2, (32, 32)), [np.ones((32, 32), bool), np.zeros((32, 32), bool)])
    with pytest.raises(InputError, match="case '#0'.*encoder takes 2D"):
        embed_arrays(enc, [np.zeros((4, 32, 32), np.float32)], [np.ones((4, 32, 32), bool)])


def test_hidden_state_layer_and_checkpoint_roundtrip(dino_dir, tmp_path):
    """layer: -2 reads hidden_states[-2]; a full state_dict checkpoint (fine-tuned weights) loads strictly."""
    model = transformers.Dinov2Model.from_pretrained(dino_dir).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)
    torch.save(model.state_dict(), tmp_path / "ft.pt")
    enc = load_encoder({"kind": "hf", "path": str(dino_dir), "checkpoint": str(tmp_path / "ft.pt"), "layer": -2,
                        "preprocess": {"intensity": "none"}})
    imgs = _images(2, (32, 32), seed=9)
    out = embed_arrays(enc, imgs, [np.ones((32, 32), bool)] * 2, pooling=("cls", "mean"))
    x = torch.from_numpy(np.stack(imgs))[:, None].repeat(1, 3, 1, 1)
    with torch.no_grad():
        hs = model(pixel_values=x, output_hidden_states=True).hidden_states[-2].numpy()
    np.testing.assert_allclose(out["cls"], hs[:, 0], atol=1e-5)
    np.testing.assert_allclose(out["mean"], hs[:, 1:].mean(1), atol=1e-5)
