"""Several layers from one forward pass: `embed --layers`, `pooling@layer` keys, Embeddings.select."""
import json
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("monai")

from radlens.encoders import embed, embed_arrays, load_encoder  # noqa: E402
from radlens.errors import ConfigError, InputError  # noqa: E402
from radlens.io.artifacts import Embeddings, read_embeddings, read_npz  # noqa: E402

torch.set_num_threads(1)

INPLACE = '''
import torch.nn as nn


def make():
    """conv -> ReLU(inplace) -> conv: the in-place ReLU overwrites module "0"'s output."""
    import torch

    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 3, 4, stride=4), nn.ReLU(inplace=True), nn.Conv2d(3, 5, 2, stride=2))
'''


def resnet_spec():
    args = {"block": "basic", "layers": [1, 1, 1, 1], "block_inplanes": [4, 8, 16, 32], "spatial_dims": 2,
            "n_input_channels": 1, "conv1_t_size": 3, "conv1_t_stride": 1, "no_max_pool": True,
            "feed_forward": False}
    return {"kind": "monai", "name": "ResNet", "args": args, "layer": "layer4",
            "preprocess": {"spatial_size": [32, 32], "intensity": "zscore"}}


def vit_spec():
    args = {"in_channels": 1, "img_size": [32, 32], "patch_size": [8, 8], "hidden_size": 24, "mlp_dim": 32,
            "num_layers": 3, "num_heads": 2, "classification": True, "num_classes": 2, "spatial_dims": 2}
    return {"kind": "monai", "name": "ViT", "args": args,
            "preprocess": {"spatial_size": [32, 32], "intensity": "zscore"}}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    from radlens.synth import make_cohort

    d = tmp_path_factory.mktemp("cohort")
    mp = make_cohort(d / "c", n_cases=7, image_size=32, seed=0)
    (d / "radlens_inplace_model.py").write_text(textwrap.dedent(INPLACE), encoding="utf-8")
    return d, mp


def _single(mp, spec, layer, out):
    return read_embeddings(embed(mp, dict(spec, layer=layer), out, batch_size=3, chunk_size=4, workers=0))


def test_cnn_layers_equal_separate_single_layer_runs(cohort, tmp_path):
    _, mp = cohort
    spec = resnet_spec()
    layers = ["layer1", "layer3", "layer2"]  # any order; kept as given
    out = embed(mp, spec, tmp_path / "multi.npz", layers=",".join(layers), batch_size=3, chunk_size=4)
    arrays, meta = read_npz(out)
    assert meta["layers"] == layers
    want = {f"{p}@{lay}" for p in ("global", "mean", "roi") for lay in layers}
    assert want <= set(arrays)
    assert not {"global", "mean", "roi"} & set(arrays)
    # grids differ per stage (stride-1 stem: 32, 16, 8 px); dims 4, 16, 8
    assert meta["layer_info"]["layer1"]["grid"] == [32, 32] and meta["layer_info"]["layer3"]["grid"] == [8, 8]
    assert [meta["layer_info"][lay]["dim"] for lay in layers] == [4, 16, 8]
    e = read_embeddings(out)
    assert e.layers == layers and e.multi_layer
    for lay in layers:
        ref = _single(mp, spec, lay, tmp_path / f"{lay}.npz")
        got = e.select(lay)
        assert sorted(got.pools) == sorted(ref.pools) == ["global", "mean", "roi"]
        assert got.case_id.tolist() == ref.case_id.tolist()
        assert got.meta["grid"] == ref.meta["grid"] and got.meta["dim"] == ref.meta["dim"]
        assert got.meta["layers"] == [lay] == ref.layers
        for k in ref.pools:
            np.testing.assert_array_equal(got.pools[k], ref.pools[k])  # bit for bit
        ref_arr, _ = read_npz(tmp_path / f"{lay}.npz")
        np.testing.assert_array_equal(arrays[f"roi_n_tokens@{lay}"], ref_arr["roi_n_tokens"])
    with pytest.raises(InputError, match=r"layer 'layer4' is not in these embeddings; available layers: "
                                         r"\['layer1', 'layer3', 'layer2'\]"):
        e.select("layer4")
    with pytest.raises(InputError, match="select"):
        e.get("roi")


def test_vit_blocks_by_index_and_cls(cohort, tmp_path):
    _, mp = cohort
    spec = vit_spec()
    e = read_embeddings(embed(mp, spec, tmp_path / "v.npz", layers=[0, 2], batch_size=4))
    assert e.layers == ["0", "2"]
    assert sorted(e.pools) == ["cls@0", "cls@2", "mean@0", "mean@2", "roi@0", "roi@2"]
    for i in (0, 2):
        ref = _single(mp, spec, f"blocks.{i}", tmp_path / f"b{i}.npz")
        for k in ref.pools:
            np.testing.assert_array_equal(e.select(i).pools[k], ref.pools[k])
    # the last block differs from the first: the layers are not the same array twice
    assert not np.allclose(e.pools["cls@0"], e.pools["cls@2"])
    with pytest.raises(ConfigError, match="block index 7 is out of range; the model has 3 blocks"):
        load_encoder(spec, layers=[7])


def test_inplace_module_after_a_hooked_layer(cohort, monkeypatch, tmp_path):
    d, mp = cohort
    monkeypatch.syspath_prepend(str(d))
    spec = {"kind": "python", "factory": "radlens_inplace_model:make",
            "preprocess": {"spatial_size": [32, 32], "intensity": "zscore", "channels": 1}}
    multi = read_embeddings(embed(mp, spec, tmp_path / "m.npz", layers="0,2", pooling="mean", batch_size=4))
    first = _single(mp, dict(spec), "0", tmp_path / "0.npz")
    np.testing.assert_array_equal(multi.select("0").get("mean"), first.get("mean"))
    assert (first.get("mean") < 0).any()  # pre-ReLU values: the copy was taken before the in-place ReLU


def test_single_layer_file_is_unchanged(cohort, tmp_path):
    _, mp = cohort
    spec = resnet_spec()
    a_arr, a_meta = read_npz(embed(mp, spec, tmp_path / "a.npz", layers=["layer2"], batch_size=3))
    b_arr, b_meta = read_npz(embed(mp, dict(spec, layer="layer2"), tmp_path / "b.npz", batch_size=3))
    assert sorted(a_arr) == sorted(b_arr) and "roi" in a_arr
    for k in a_arr:
        np.testing.assert_array_equal(a_arr[k], b_arr[k])
    assert a_meta["layers"] == b_meta["layers"] == ["layer2"] and a_meta["encoder"] == b_meta["encoder"]
    e = read_embeddings(tmp_path / "a.npz")
    assert e.layers == ["layer2"] and e.select("layer2") is e and not e.multi_layer
    # no named layer: "default"
    x = Embeddings(np.array(["a"]), {"cls": np.zeros((1, 2), np.float32)}, {"encoder": {"layer": None}})
    assert x.layers == ["default"]
    with pytest.raises(InputError, match=r"available layers: \['default'\]"):
        x.select("layer2")


def test_resume_and_cli_with_layers(cohort, tmp_path):
    from radlens.cli import main

    _, mp = cohort
    spec = resnet_spec()
    ref = read_embeddings(embed(mp, spec, tmp_path / "r.npz", layers="layer1,layer2", batch_size=2, chunk_size=3,
                                keep_parts=True))
    # a re-run reuses every chunk (same settings) and gives the same file
    again = read_embeddings(embed(mp, spec, tmp_path / "r.npz", layers="layer1,layer2", batch_size=2, chunk_size=3))
    for k in ref.pools:
        np.testing.assert_array_equal(again.pools[k], ref.pools[k])
    rc = main(["-q", "embed", str(mp), "--encoder", json.dumps(spec), "--layers", "layer1,layer2",
               "--out", str(tmp_path / "cli.npz"), "--batch-size", "2", "--chunk-size", "3"])
    assert rc == 0
    cli = read_embeddings(tmp_path / "cli.npz")
    assert cli.layers == ["layer1", "layer2"]
    for k in ref.pools:
        np.testing.assert_array_equal(cli.pools[k], ref.pools[k])
    with pytest.raises(ConfigError, match="layer='layer4' and layers="):
        load_encoder(dict(spec, layers=["layer1", "layer2"]))


def test_embed_arrays_multi_layer_keys(cohort):
    spec = resnet_spec()
    enc = load_encoder(spec, layers=["layer1", "layer4"])
    rng = np.random.default_rng(0)
    imgs = [rng.normal(size=(32, 32)).astype(np.float32) for _ in range(2)]
    rois = [np.zeros((32, 32), bool) for _ in imgs]
    for r in rois:
        r[8:16, 8:16] = True
    out, info = embed_arrays(enc, imgs, rois, return_info=True)
    assert out["roi@layer1"].shape == (2, 4) and out["roi@layer4"].shape == (2, 32)
    # 8x8 px ROI: 64 tokens of the 32x32 layer1 grid, 1 token of the 4x4 layer4 grid
    assert info["roi_n_tokens@layer1"].tolist() == [64, 64] and info["roi_n_tokens@layer4"].tolist() == [1, 1]


def test_hf_hidden_state_indices(tmp_path):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.Dinov2Config(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                                    patch_size=8, image_size=32, num_channels=3)
    transformers.Dinov2Model(cfg).eval().save_pretrained(tmp_path / "dino")
    spec = {"kind": "hf", "path": str(tmp_path / "dino"), "preprocess": {"spatial_size": [32, 32]}}
    rng = np.random.default_rng(1)
    imgs = [rng.normal(size=(32, 32)).astype(np.float32) for _ in range(3)]
    rois = [np.pad(np.ones((8, 16), bool), ((8, 16), (0, 16))) for _ in imgs]
    multi = embed_arrays(load_encoder(spec, layers="1,-1"), imgs, rois)
    assert sorted(multi) == ["cls@-1", "cls@1", "mean@-1", "mean@1", "roi@-1", "roi@1"]
    for lay in (1, -1):
        ref = embed_arrays(load_encoder(dict(spec, layer=lay)), imgs, rois)
        for k, v in ref.items():
            np.testing.assert_array_equal(multi[f"{k}@{lay}"], v)
    with pytest.raises(ConfigError, match="must be an integer index into hidden_states"):
        load_encoder(spec, layers=["encoder.layer.1"])
