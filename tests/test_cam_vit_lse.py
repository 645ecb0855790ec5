"""A log-mean-exp (multiple-instance) ViT head, ``head.pooling: lse``: the logit is
``(1/r) log mean_i exp(r (w_c . t_i + b_c))`` over the patch tokens ``t_i`` after the final layer norm,
and Grad-CAM at that norm is the per-token class score ``ReLU(w_c . t_i) / N`` -- checked against a
reference computed directly from the HF model's tokens and the head weights."""
import math

import numpy as np
import pytest
import yaml

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

SIZE = 32


def _spec(root, head):
    return {"encoder": {"kind": "hf", "path": "enc/", "preprocess": {"spatial_size": [SIZE, SIZE],
                                                                      "intensity": "zscore", "channels": 1}},
            "head": {"checkpoint": "head.safetensors", **head},
            "target_layer": "layernorm", "classes": ["negative", "positive"]}


@pytest.fixture(scope="module")
def vit_lse(tmp_path_factory):
    from safetensors.torch import save_file

    from radlens.cam.model import load_classifier
    from radlens.synth.models import build_vit, vit_config

    root = tmp_path_factory.mktemp("vitlse")
    torch.manual_seed(5)
    net = build_vit(vit_config(image_size=SIZE, patch_size=8, hidden_size=16, num_layers=2, num_heads=2))
    with torch.no_grad():
        net.layernorm.weight.copy_(torch.randn(16))
        net.layernorm.bias.copy_(torch.randn(16))
    net.save_pretrained(str(root / "enc"), safe_serialization=True)
    w, b = torch.randn(2, 16), torch.tensor([0.3, -0.2])
    save_file({"weight": w, "bias": b}, str(root / "head.safetensors"))
    r = 2.5
    (root / "clf.yaml").write_text(yaml.safe_dump(_spec(root, {"pooling": "lse", "sharpness": r})), encoding="utf-8")
    return load_classifier(root / "clf.yaml"), net.eval(), w, b, r, root


def test_logits_and_gradcam_match_the_per_token_reference(vit_lse):
    from radlens.cam.methods import attribute_methods

    clf, net, w, b, r, _ = vit_lse
    assert clf.token_layout is not None and not clf.use_input
    torch.manual_seed(0)
    x = torch.randn(3, 1, SIZE, SIZE)
    targets = [1, 0, 1]
    res = attribute_methods(["gradcam"], clf.module, clf.target_layer, x, targets, token_layout=clf.token_layout)
    with torch.no_grad():
        tok = net(pixel_values=x).last_hidden_state[:, 1:].double().numpy()  # (B, 16, D) after the final norm
    wd, bd = w.double().numpy(), b.double().numpy()
    for i, t in enumerate(targets):
        s = tok[i] @ wd[t]                                        # (16,) per-token class scores, no bias
        z = r * (s + bd[t])
        ref_logit = (z.max() + math.log(np.exp(z - z.max()).sum()) - math.log(s.size)) / r
        assert abs(float(res["gradcam"].logits[i, t]) - ref_logit) < 1e-4
        ref = np.maximum(s, 0).reshape(SIZE // 8, SIZE // 8) / s.size
        np.testing.assert_allclose(res["gradcam"].raw[i], ref, rtol=1e-4, atol=1e-6)


def test_small_sharpness_approaches_the_mean_head(vit_lse, tmp_path):
    """r -> 0: the log-mean-exp of the scores tends to their mean, i.e. the mean-pooled linear head."""
    from radlens.cam.model import lse_pool

    _, net, w, b, _, _ = vit_lse
    x = torch.randn(2, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        tok = net(pixel_values=x).last_hidden_state[:, 1:].double()  # double: r = 1e-6 divides rounding by r
        w, b = w.double(), b.double()
        mean_head = tok.mean(1) @ w.T + b
        lse = lse_pool(tok @ w.T + b, 1e-6)  # second-order term r Var(s) / 2 ~ 1e-5
        sharp = lse_pool(tok @ w.T + b, 1e3)
    np.testing.assert_allclose(lse.numpy(), mean_head.numpy(), atol=1e-4)
    np.testing.assert_allclose(sharp.numpy(), (tok @ w.T + b).max(1).values.numpy(), atol=5e-3)


@pytest.mark.parametrize("head, msg", [({"pooling": "lse", "sharpness": 0}, "head.sharpness=0"),
                                       ({"pooling": "mean", "sharpness": 2.0}, "only used with pooling: lse"),
                                       ({"pooling": "lse", "temperature": 2.0}, "unknown head key")])
def test_bad_head_specs_are_refused(vit_lse, head, msg):
    from radlens.cam.model import load_classifier
    from radlens.errors import ConfigError

    root = vit_lse[-1]
    with pytest.raises(ConfigError, match=msg):
        load_classifier({**_spec(root, head), "encoder": {**_spec(root, head)["encoder"], "path": str(root / "enc")},
                         "head": {"checkpoint": str(root / "head.safetensors"), **head}})
