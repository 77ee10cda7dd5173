"""The five larger models: logits at 32 and 224, and their small-input adaptations."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from dlas.models import make_model

NEW = ["resnet50", "vgg16", "densenet161", "efficientnet_b0", "mnasnet1_0"]


def _convs(net: nn.Module) -> list[nn.Conv2d]:
    return [m for m in net.modules() if isinstance(m, nn.Conv2d)]


def _last_feature_side(net: nn.Module, size: int) -> int:
    """Spatial side of the last conv's output (the features the head pools)."""
    sides = []
    hooks = [m.register_forward_hook(lambda m, i, o: sides.append(o.shape[-1])) for m in _convs(net)]
    with torch.no_grad():
        net.eval()(torch.randn(1, 3, size, size))
    for h in hooks:
        h.remove()
    return sides[-1]


@pytest.mark.parametrize("size,classes", [(32, 10), (224, 1000)])
@pytest.mark.parametrize("name", NEW)
def test_logits(name, size, classes):
    torch.manual_seed(0)
    net = make_model(name, classes, size).eval()
    with torch.no_grad():
        out = net(torch.randn(1, 3, size, size))
    assert out.shape == (1, classes) and torch.isfinite(out).all()


# side of the last features at 32x32 with the adaptation (torchvision's stems would give 1)
SMALL_SIDE = {"resnet50": 4, "vgg16": 2, "densenet161": 4, "efficientnet_b0": 4, "mnasnet1_0": 4}


@pytest.mark.parametrize("name", NEW)
def test_small_input_adaptation(name):
    small, large = make_model(name, 10, 32), make_model(name, 10, 224)
    if name != "vgg16":  # VGG's convs are all stride 1; only its head changes
        assert _convs(small)[0].stride == (1, 1) and _convs(large)[0].stride == (2, 2)
    assert _last_feature_side(small, 32) == SMALL_SIDE[name]
    assert _last_feature_side(large, 224) == (14 if name == "vgg16" else 7)


def test_specific_adaptations():
    r = make_model("resnet50", 10, 32)
    assert r.conv1.kernel_size == (3, 3) and isinstance(r.maxpool, nn.Identity)
    d = make_model("densenet161", 10, 32)
    assert d.features.conv0.kernel_size == (3, 3) and isinstance(d.features.pool0, nn.Identity)
    v = make_model("vgg16", 10, 32)  # vgg16_bn with a CIFAR head
    assert any(isinstance(m, nn.BatchNorm2d) for m in v.modules())
    assert isinstance(v.classifier, nn.Linear) and v.classifier.in_features == 512
    assert v.avgpool.output_size in (1, (1, 1))
    assert sum(p.numel() for p in v.parameters()) < 20_000_000  # no 25088-4096-4096 head
    # torchvision's definitions stay for ImageNet-sized input
    assert make_model("vgg16", 1000, 224).classifier[0].in_features == 25088
    e = make_model("efficientnet_b0", 10, 32)
    assert any(isinstance(m, nn.SiLU) for m in e.modules())
    assert sum(c.groups > 1 for c in _convs(e)) == 16  # every MBConv's depthwise conv
