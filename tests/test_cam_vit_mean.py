"""The demo's ViT CAM: Grad-CAM on the final layer norm of a patch-mean-pooled DINOv2 head is the exact
per-token share of the target logit (signed token activations), checked against a reference computed
directly from the HF model's tokens and the head weights -- and LayerCAM is not (it keeps the sign
of activations whose weight is negative)."""
import numpy as np
import pytest
import yaml

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

SIZE = 32


@pytest.fixture(scope="module")
def vit_clf(tmp_path_factory):
    from safetensors.torch import save_file

    from radlens.cam.model import load_classifier
    from radlens.synth.models import ARCHS, build_vit, vit_config

    root = tmp_path_factory.mktemp("vitmean")
    torch.manual_seed(3)
    net = build_vit(vit_config(image_size=SIZE, patch_size=8, hidden_size=16, num_layers=2, num_heads=2))
    with torch.no_grad():  # non-trivial final norm: signed, channel-dependent scales
        net.layernorm.weight.copy_(torch.randn(16))
        net.layernorm.bias.copy_(torch.randn(16))
    net.save_pretrained(str(root / "enc"), safe_serialization=True)
    w, b = torch.randn(2, 16), torch.tensor([0.3, -0.2])
    save_file({"weight": w, "bias": b}, str(root / "head.safetensors"))
    spec = {"encoder": {"kind": "hf", "path": "enc/", "preprocess": {"spatial_size": [SIZE, SIZE],
                                                                      "intensity": "zscore", "channels": 1}},
            "head": {"checkpoint": "head.safetensors", "pooling": ARCHS["vit"]["pooling"]},
            "target_layer": ARCHS["vit"]["target_layer"], "classes": ["negative", "positive"]}
    (root / "clf.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    return load_classifier(root / "clf.yaml"), net.eval(), w, b


def test_gradcam_is_the_per_token_logit_share(vit_clf):
    from radlens.cam.methods import attribute_methods

    clf, net, w, b = vit_clf
    assert clf.token_layout is not None and not clf.use_input
    torch.manual_seed(0)
    x = torch.randn(3, 1, SIZE, SIZE)
    targets = [1, 0, 1]
    res = attribute_methods(["gradcam", "layercam"], clf.module, clf.target_layer, x, targets,
                            token_layout=clf.token_layout)
    with torch.no_grad():
        tok = net(pixel_values=x).last_hidden_state[:, 1:].double()  # (B, 16, D) patch tokens after the norm
    n = tok.shape[1]
    for i, t in enumerate(targets):
        share = (tok[i] @ w[t].double()) / n                          # (16,) signed per-token contributions
        # the shares and the bias add up to the logit (exact decomposition)
        logit = float(res["gradcam"].logits[i, t])
        assert abs(float(share.sum()) + float(b[t]) - logit) < 1e-4
        ref = np.maximum(share.numpy(), 0).reshape(SIZE // 8, SIZE // 8)  # row-major patch grid
        np.testing.assert_allclose(res["gradcam"].raw[i], ref, rtol=1e-4, atol=1e-6)
        # LayerCAM keeps ReLU(g) * A: for a negative head weight the token's sign is flipped away
        lay = np.maximum((tok[i] * np.maximum(w[t].double() / n, 0)).sum(1).numpy(), 0).reshape(ref.shape)
        np.testing.assert_allclose(res["layercam"].raw[i], lay, rtol=1e-4, atol=1e-6)
        assert not np.allclose(res["layercam"].raw[i], ref, atol=1e-3)
