"""radlens.cam.model._probe_target: does the head depend on the target layer? (one forward/backward)."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from radlens.cam.model import _probe_target  # noqa: E402
from radlens.errors import ConfigError  # noqa: E402


class _Net(torch.nn.Module):
    def __init__(self, antisymmetric: bool, detach: bool = False):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.head = torch.nn.Linear(4, 2)
        self.detach = detach
        with torch.no_grad():
            w = torch.randn(4, generator=torch.Generator().manual_seed(3))
            if antisymmetric:  # a two-class softmax head written as [-w, w]: the logits always sum to a constant
                self.head.weight.copy_(torch.stack([-w, w]))
                self.head.bias.zero_()

    def forward(self, x):
        a = torch.relu(self.conv(x))
        if self.detach:
            a = a.detach()
        return self.head(a.mean((2, 3)))


class _Enc:
    spec = {"preprocess": {"channels": 1}}
    grid = (8, 8)
    device = "cpu"


@pytest.mark.parametrize("antisymmetric", [False, True])
def test_head_depending_on_the_layer_is_accepted(antisymmetric):
    net = _Net(antisymmetric)
    # the sum of the logits is constant for the antisymmetric head, yet each class logit depends on conv:
    # the probe must project the logits, not sum them
    x = torch.randn(2, 1, 8, 8, requires_grad=True)
    assert torch.autograd.grad(net(x).sum(), x)[0].abs().max() < 1e-6 if antisymmetric else True
    layout, use_input = _probe_target(net, net.conv, _Enc(), (8, 8), "unit.yaml", False)
    assert layout is None and use_input is False


def test_head_not_depending_on_the_layer_is_refused():
    net = _Net(False, detach=True)
    with pytest.raises(ConfigError, match="unit.yaml: the logits do not depend on the patch positions"):
        _probe_target(net, net.conv, _Enc(), (8, 8), "unit.yaml", False)
