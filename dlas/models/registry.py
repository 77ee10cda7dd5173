"""The model layer's registry: one entry per model name, torchvision definitions underneath.

Each entry is a `ModelSpec`: the torchvision constructor name and, for small inputs
(image_size <= SMALL_INPUT_MAX, i.e. CIFAR/digits-sized images), the standard CIFAR
adaptation. Adding a model is one `ModelSpec(...)` line in MODELS.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch.nn as nn
import torchvision.models as tvm

# Inputs up to this side length get the small-input (CIFAR) adaptation; ImageNet-sized ones do not.
SMALL_INPUT_MAX = 64


def cifar_resnet(net: tvm.ResNet) -> tvm.ResNet:
    """ResNet for 32x32: 3x3 stride-1 stem and no max-pool (He et al.'s CIFAR setting),
    so the last stage still sees 4x4 features instead of 1x1."""
    net.conv1 = nn.Conv2d(3, net.conv1.out_channels, kernel_size=3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    return net


def cifar_mobilenet_v2(net: tvm.MobileNetV2) -> tvm.MobileNetV2:
    """MobileNetV2 for 32x32: first conv stride 1 (the second stage's stride is set to 1 by
    MOBILENET_V2_CIFAR_STAGES), as in the common CIFAR MobileNetV2s. Overall stride 8
    instead of 32: the last stage sees 4x4 features. Unchanged, the net ends at 1x1 and
    stayed at chance accuracy on digits."""
    stem = net.features[0][0]
    stem.stride = (1, 1)
    return net


# torchvision's default inverted-residual setting (t, c, n, s) with stage 2's stride 2 -> 1.
MOBILENET_V2_CIFAR_STAGES = [
    [1, 16, 1, 1], [6, 24, 2, 1], [6, 32, 3, 2], [6, 64, 4, 2],
    [6, 96, 3, 1], [6, 160, 3, 2], [6, 320, 1, 1],
]


@dataclass(frozen=True)
class ModelSpec:
    """How to build one model: torchvision constructor `tv_name`; for small inputs the extra
    constructor kwargs `small_kwargs` and the module surgery `small`."""

    tv_name: str
    small: Callable[[nn.Module], nn.Module] | None = None
    small_kwargs: dict = field(default_factory=dict)

    def build(self, num_classes: int, small_input: bool) -> nn.Module:
        kwargs = dict(self.small_kwargs) if small_input else {}
        net = tvm.get_model(self.tv_name, weights=None, num_classes=num_classes, **kwargs)
        if small_input and self.small is not None:
            net = self.small(net)
        return net


MODELS: dict[str, ModelSpec] = {
    "resnet18": ModelSpec("resnet18", small=cifar_resnet),
    "mobilenetv2": ModelSpec("mobilenet_v2", small=cifar_mobilenet_v2,
                             small_kwargs={"inverted_residual_setting": MOBILENET_V2_CIFAR_STAGES}),
}
