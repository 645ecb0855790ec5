"""Planted truth with a real network (issue #15): a 'fine-tuned' copy of the demo CNN (MONAI ResNet,
4 stages) that differs from the pre checkpoint only in ``layer3`` → ``layer1``/``layer2`` unchanged
(CKA = 1 to 1e-9, no feature with q < 0.05), ``layer3``/``layer4`` changed; a copy whose ``layer3``
output is only rescaled and re-coded (channel permutation, ``layer4`` compensated) → no change of
emphasis at ``layer3`` and an unchanged ``layer4``.

Embeddings: ``radlens.encoders`` with ``layers=[layer1..layer4]`` (every stage's global average from one
forward pass; the checkpoints are safetensors files named in a ``kind: monai`` encoder spec), written as
a multi-layer embeddings file (``"{pooling}@{layer}"`` keys, meta ``layers``)."""
import copy

import numpy as np
import pandas as pd
import pytest

from radlens.cli import main
from radlens.io.artifacts import Embeddings, read_table, write_embeddings, write_table

torch = pytest.importorskip("torch")
pytest.importorskip("monai")

LAYERS = ["layer1", "layer2", "layer3", "layer4"]
FIT = ["--hidden", "12", "--seeds", "2", "--max-epochs", "80", "--patience", "10"]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _images(n, size=32, seed=0):
    """Smooth random fields with a bright or dark disk: brightness, contrast, grain and disk vary by case."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    out = np.empty((n, size, size))
    for i in range(n):
        f = gaussian_filter(rng.normal(size=(size, size)), rng.uniform(0.5, 3.0))
        disk = ((yy - size / 2 - rng.uniform(-4, 4)) ** 2 + (xx - size / 2 - rng.uniform(-4, 4)) ** 2
                < rng.uniform(3, 10) ** 2)
        out[i] = rng.normal() + rng.uniform(0.5, 2.0) * f / f.std() + rng.normal(0, 1.5) * disk
    return out


def _radiomics(img):
    """Radiomic-like descriptors computed from the images (pyradiomics-style names)."""
    n = img.shape[0]
    flat = img.reshape(n, -1)
    dx, dy = np.diff(img, axis=2), np.diff(img, axis=1)
    mu, sd = flat.mean(1), flat.std(1)
    c = (img[:, :, 1:] - mu[:, None, None]) * (img[:, :, :-1] - mu[:, None, None])
    bright = flat > (mu + sd)[:, None]
    return pd.DataFrame({
        "case_id": [f"c{i:04d}" for i in range(n)],
        "original_firstorder_Mean": mu, "original_firstorder_StandardDeviation": sd,
        "original_firstorder_Maximum": flat.max(1), "original_firstorder_Minimum": flat.min(1),
        "original_firstorder_Skewness": ((flat - mu[:, None]) ** 3).mean(1) / sd ** 3,
        "original_glcm_Contrast": (dx ** 2).mean((1, 2)) + (dy ** 2).mean((1, 2)),
        "original_glcm_Correlation": c.mean((1, 2)) / sd ** 2,
        "original_glrlm_GrayLevelNonUniformity": np.abs(dx).mean((1, 2)),
        "original_shape_MeshSurface": bright.mean(1),
        "original_shape_Elongation": np.abs(dy).mean((1, 2)) / (np.abs(dx).mean((1, 2)) + 1e-9),
    })


def _embed(model, images, d, name):
    """Save ``model`` as a checkpoint, load it back through an encoder spec reading 4 layers, embed."""
    from safetensors.torch import save_file

    from radlens.encoders import embed_arrays, load_encoder
    from radlens.synth.models import cnn_args

    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(state, str(d / f"{name}.safetensors"))
    spec = {"kind": "monai", "name": "ResNet", "args": cnn_args(4), "checkpoint": str(d / f"{name}.safetensors"),
            "preprocess": {"spatial_size": [32, 32], "intensity": "zscore"}}
    out = embed_arrays(load_encoder(spec, layers=LAYERS), list(images), pooling=("cls",), batch_size=64)
    return {L: out[f"global@{L}"].astype(float) for L in LAYERS}


def _write(path, cid, arrays):
    write_embeddings(path, Embeddings(cid, {f"global@{L}": a.astype(np.float32) for L, a in arrays.items()},
                                      {"layers": list(arrays)}))


def _changed_layer3(pre):
    post = copy.deepcopy(pre)
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        w = post.layer3[0].conv1.weight
        w.add_(0.8 * w.std() * torch.randn(w.shape, generator=g, dtype=w.dtype))
    return post


def _recoded_layer3(pre, c=1.7, seed=3):
    """layer3's output multiplied by c > 0 and its channels permuted (an orthogonal re-coding that
    commutes with the block's final ReLU); layer4's inputs compensated, so layer4 computes the same."""
    post = copy.deepcopy(pre)
    b3, b4 = post.layer3[0], post.layer4[0]
    perm = torch.as_tensor(np.random.default_rng(seed).permutation(b3.conv2.out_channels))
    with torch.no_grad():
        b3.conv2.weight.copy_(b3.conv2.weight[perm])
        ds_conv, ds_bn = b3.downsample[0], b3.downsample[1]
        ds_conv.weight.copy_(ds_conv.weight[perm])
        ds_conv.bias.copy_(ds_conv.bias[perm])
        for bn in (b3.bn2, ds_bn):
            for name in ("running_mean", "running_var"):
                getattr(bn, name).copy_(getattr(bn, name)[perm])
            bn.weight.copy_(c * bn.weight[perm])
            bn.bias.copy_(c * bn.bias[perm])
        b4.conv1.weight.copy_(b4.conv1.weight[:, perm] / c)
        b4.downsample[0].weight.copy_(b4.downsample[0].weight[:, perm] / c)
    return post


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    from radlens.synth.models import build_cnn, cnn_args

    d = tmp_path_factory.mktemp("layers_planted")
    torch.manual_seed(0)
    pre = build_cnn(cnn_args(4)).eval()
    img = _images(160, seed=1)
    rad = _radiomics(img)
    cid = rad["case_id"].to_numpy()
    write_table(rad, d / "radiomics.parquet")
    E = {"pre": _embed(pre, img, d, "pre"), "changed": _embed(_changed_layer3(pre), img, d, "changed"),
         "recoded": _embed(_recoded_layer3(pre), img, d, "recoded")}
    for k, v in E.items():
        _write(d / f"{k}.npz", cid, v)
    assert main(["fit-pre", "--radiomics", str(d / "radiomics.parquet"), "--embeddings", str(d / "pre.npz"),
                 "--layers", "all", "--out", str(d / "lens"), *FIT]) == 0
    for task in ("changed", "recoded"):
        assert main(["refit-post", "--lens", str(d / "lens"), "--embeddings", str(d / f"{task}.npz"),
                     "--n-null", "60", "--n-boot", "40", "--out", str(d / f"shifts_{task}.parquet")]) == 0
    assert main(["compare", str(d / "shifts_changed.parquet"), str(d / "shifts_recoded.parquet"),
                 "--out", str(d / "cmp")]) == 0
    return d, E


def test_layers_before_the_changed_block_do_not_change(planted):
    d, E = planted
    for L in ("layer1", "layer2"):   # the forward pass up to layer2 is bit-identical
        assert np.array_equal(E["pre"][L], E["changed"][L])
    summ = read_table(d / "cmp" / "layer_summary.csv").set_index(["layer", "task"])
    feats = read_table(d / "cmp" / "layer_features.csv")
    for L in ("layer1", "layer2"):
        s = summ.loc[(L, "changed")]
        assert abs(s["cka"] - 1) < 1e-9 and abs(s["cka_ci_low"] - 1) < 1e-9 and abs(s["cka_ci_high"] - 1) < 1e-9
        t = read_table(d / L / "shifts_changed.parquet")
        assert (t["shift"] == 0).all() and (t["emphasis"] == 0).all()
        assert not (t["q"] < 0.05).any() and not (t["shift_q"] < 0.05).any()
        assert not (t["shift_q_specific"] < 0.05).any()
        f = feats[(feats["layer"] == L) & (feats["task"] == "changed") & (feats["kind"] == "task")]
        assert f["no_change"].all() and (f["q"] == 1).all()


def test_changed_block_and_after_do_change(planted):
    d, _ = planted
    summ = read_table(d / "cmp" / "layer_summary.csv").set_index(["layer", "task"])
    for L in ("layer3", "layer4"):
        s = summ.loc[(L, "changed")]
        assert s["cka_ci_high"] < 1 - 1e-3, (L, s["cka"], s["cka_ci_high"])
        t = read_table(d / L / "shifts_changed.parquet")
        assert (t["q"] < 0.05).any(), (L, t[["feature", "z", "q"]])


def test_rescaled_recoded_block_is_not_a_change_of_emphasis(planted):
    """layer3 of the 're-coded' copy = 1.7 × (pre layer3) with permuted channels: the emphasis headline
    (lens v2: change left after a Procrustes + scale alignment) finds nothing, while the raw Jacobian
    shift would call every feature changed; CKA = 1; layer4 (compensated) is unchanged."""
    d, E = planted
    P = E["recoded"]["layer3"]
    # the planted truth itself: post = c · pre · permutation (to float32 rounding)
    perm = np.argmax(np.abs(np.corrcoef(E["pre"]["layer3"].T, P.T)[:P.shape[1], P.shape[1]:]), axis=0)
    assert np.allclose(P, 1.7 * E["pre"]["layer3"][:, perm], rtol=1e-5, atol=1e-6)
    summ = read_table(d / "cmp" / "layer_summary.csv").set_index(["layer", "task"])
    assert abs(summ.loc[("layer3", "recoded"), "cka"] - 1) < 1e-6
    assert abs(summ.loc[("layer4", "recoded"), "cka"] - 1) < 1e-6
    t = read_table(d / "layer3" / "shifts_recoded.parquet")
    assert not (t["q"] < 0.05).any(), t[["feature", "emphasis", "z", "q"]]      # the headline: no change
    assert (t["shift_q"] < 0.05).mean() >= 0.5                                 # the raw shift is fooled
    assert np.allclose(t["sensitivity_post"], 1.7 * t["sensitivity_pre"], rtol=1e-4)
    feats = read_table(d / "cmp" / "layer_features.csv")
    f3 = feats[(feats["layer"] == "layer3") & (feats["task"] == "recoded") & (feats["kind"] == "task")]
    assert not (f3["q"] < 0.05).any()
    for L in ("layer1", "layer2"):
        assert abs(summ.loc[(L, "recoded"), "cka"] - 1) < 1e-9
