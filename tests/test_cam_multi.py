"""One shared forward+backward pass for several methods; the no-grad prefix; channels-last weights."""
import copy

import numpy as np
import pytest
import torch
import torch.nn as nn

from radlens.cam.base import to_channels_last
from radlens.cam.methods import LAYER_METHODS, MultiCAM, attribute_methods, make_method
from radlens.errors import InputError
from test_cam_methods import REFS, _models, _ref_acts_grads

torch.set_num_threads(1)

FIELDS = ("raw", "upsampled", "maps", "targets", "logits")


@pytest.mark.parametrize("arch", ["cnn2d", "cnn3d", "vit"])
@pytest.mark.parametrize("batch_size", [None, 3])
def test_multi_method_pass_equals_separate_single_method_calls(arch, batch_size):
    model, lname, x, layout = _models()[arch]
    layer = dict(model.named_modules())[lname]
    targets = (np.arange(x.shape[0]) % 3).tolist()
    methods = ["layercam", "gradcam++", "gradcam"]
    multi = MultiCAM(model, layer, methods, token_layout=layout, batch_size=batch_size)(x, targets)
    assert list(multi) == methods
    for m in methods:
        single = make_method(m, model, layer, token_layout=layout, batch_size=batch_size)(x, targets)
        for f in FIELDS:
            np.testing.assert_array_equal(getattr(multi[m], f), getattr(single, f), err_msg=f"{arch} {m} {f}")


def test_multi_method_use_input_and_attribute_methods_with_ig_and_aliases():
    model, _, x, layout = _models()["vit"]
    t = [0, 1, 2, 0, 1, 2]
    both = attribute_methods(["Grad-CAM++", "layer-cam"], model, model.b2, x, t, token_layout=layout, use_input=True)
    assert list(both) == ["Grad-CAM++", "layer-cam"]
    for given, key in (("Grad-CAM++", "gradcam++"), ("layer-cam", "layercam")):
        single = make_method(key, model, model.b2, token_layout=layout, use_input=True)(x, t)
        np.testing.assert_array_equal(both[given].maps, single.maps)
    cnn, lname, xc, _ = _models()["cnn2d"]
    tc = [0, 1, 2, 0, 1, 2, 0]
    res = attribute_methods(["ig", "gradcam"], cnn, dict(cnn.named_modules())[lname], xc, tc, n_steps=4)
    np.testing.assert_array_equal(res["ig"].raw, make_method("ig", cnn, n_steps=4)(xc, tc).raw)


@pytest.mark.parametrize("methods, msg", [(["gradcam", "ig"], "layer-gradient"), (["gradcam", "grad-cam"], "each once"),
                                          ([], "at least one")])
def test_multi_method_refuses_ig_duplicates_and_empty(methods, msg):
    model, lname, _, _ = _models()["cnn2d"]
    with pytest.raises(InputError, match=msg):
        MultiCAM(model, dict(model.named_modules())[lname], methods)
    assert set(LAYER_METHODS) == {"gradcam", "gradcam++", "layercam"}


class InPlaceRes(nn.Module):
    """The target layer's output is modified in place downstream (``out += skip``; ``relu_``)."""

    def __init__(self, k=3):
        super().__init__()
        self.c1 = nn.Conv2d(1, 4, 3, padding=1)
        self.c2 = nn.Conv2d(4, 4, 3, padding=1)
        self.head = nn.Linear(4, k)

    def forward(self, x):
        y = torch.relu(self.c1(x))
        out = self.c2(y)
        out += y
        out = torch.relu_(out)
        return self.head(out.flatten(2).mean(2))


@pytest.mark.parametrize("method", list(REFS))
def test_in_place_ops_after_the_target_layer_and_frozen_weights(method):
    """Only the part after the target layer is recorded; in-place ops on its output and frozen
    weights (requires_grad=False) still give the grad-mode per-sample reference."""
    torch.manual_seed(0)
    model = InPlaceRes().double().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    x = torch.randn(5, 1, 9, 7, dtype=torch.float64)
    t = [0, 2, 1, 1, 0]
    cls, ref = REFS[method]
    res = cls(model, model.c2)(x, t)
    for i in range(x.shape[0]):
        a, g, y = _ref_acts_grads(model, "c2", x[i:i + 1], t[i], None)
        r = ref(a, g, y)
        np.testing.assert_allclose(res.raw[i], r, atol=1e-6 * max(1.0, np.abs(r).max()), rtol=1e-6)  # float32 maps
    assert torch.is_grad_enabled()
    with torch.no_grad():  # the caller's grad mode is restored
        cls(model, model.c2)(x, t)
        assert not torch.is_grad_enabled()


@pytest.mark.parametrize("arch", ["cnn2d", "cnn3d"])
def test_channels_last_weights_keep_values_and_maps(arch):
    model, lname, x, _ = _models()[arch]
    model, x = model.float(), x.float()
    t = (np.arange(x.shape[0]) % 3).tolist()
    ref = make_method("layercam", model, dict(model.named_modules())[lname])(x, t)
    cl = copy.deepcopy(model)
    before = {k: v.clone() for k, v in cl.state_dict().items()}
    res = MultiCAM(cl, dict(cl.named_modules())[lname], ["layercam"], channels_last=True)(x, t)["layercam"]
    fmt = torch.channels_last if x.ndim == 4 else torch.channels_last_3d
    assert cl.c2.weight.is_contiguous(memory_format=fmt)
    for k, v in cl.state_dict().items():
        assert torch.equal(v, before[k]), k
    np.testing.assert_allclose(res.maps, ref.maps, atol=1e-5)
    np.testing.assert_allclose(res.logits, ref.logits, atol=1e-5)
    to_channels_last(cl)  # idempotent
    assert cl.c2.weight.is_contiguous(memory_format=fmt)
