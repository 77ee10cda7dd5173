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


def cifar_vgg(net: tvm.VGG) -> tvm.VGG:
    """VGG for 32x32: the five max-pools leave 1x1x512 features, so average-pool to 1x1 and
    classify with one Linear(512, classes), as the common CIFAR VGGs do. torchvision's head
    (pool to 7x7 = 49 copies of the one pixel, then 25088-4096-4096) would hold 119 M of
    the 134 M parameters for no extra information."""
    net.avgpool = nn.AdaptiveAvgPool2d(1)
    net.classifier = nn.Linear(512, net.classifier[-1].out_features)
    return net


def cifar_densenet(net: tvm.DenseNet) -> tvm.DenseNet:
    """DenseNet for 32x32: 3x3 stride-1 stem conv and no max-pool (the CIFAR DenseNets of
    Huang et al.), so the three transitions take 32 -> 4 and the last block sees 4x4."""
    stem = net.features.conv0
    net.features.conv0 = nn.Conv2d(3, stem.out_channels, kernel_size=3, stride=1, padding=1, bias=False)
    net.features.pool0 = nn.Identity()
    return net


def cifar_efficientnet(net: tvm.EfficientNet) -> tvm.EfficientNet:
    """EfficientNet-B0 for 32x32: stem conv stride 1 and stage 2's first (depthwise) conv
    stride 1, like the CIFAR MobileNetV2 here: overall stride 8, the last stage sees 4x4.
    Unchanged, 32x32 ends at 1x1 after stage 6."""
    net.features[0][0].stride = (1, 1)
    net.features[2][0].block[1][0].stride = (1, 1)  # block: expand, depthwise, SE, project
    return net


def cifar_mnasnet(net: tvm.MNASNet) -> tvm.MNASNet:
    """MNASNet for 32x32: stem conv stride 1 and the first stack's stride-2 depthwise conv
    stride 1, as for MobileNetV2/EfficientNet here: overall stride 8, the last stage 4x4."""
    net.layers[0].stride = (1, 1)
    net.layers[8][0].layers[3].stride = (1, 1)  # first inverted residual: expand, dw, project
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

    def make(self, num_classes: int, small_input: bool) -> nn.Module:
        kwargs = dict(self.small_kwargs) if small_input else {}
        net = tvm.get_model(self.tv_name, weights=None, num_classes=num_classes, **kwargs)
        if small_input and self.small is not None:
            net = self.small(net)
        return net


MODELS: dict[str, ModelSpec] = {
    "resnet18": ModelSpec("resnet18", small=cifar_resnet),
    "mobilenetv2": ModelSpec("mobilenet_v2", small=cifar_mobilenet_v2,
                             small_kwargs={"inverted_residual_setting": MOBILENET_V2_CIFAR_STAGES}),
    "resnet50": ModelSpec("resnet50", small=cifar_resnet),
    # vgg16_bn, not vgg16: without BatchNorm the 13-conv stack trains from random init only
    # with careful init/learning rates; the common CIFAR VGG16s have BN too.
    "vgg16": ModelSpec("vgg16_bn", small=cifar_vgg),
    "densenet161": ModelSpec("densenet161", small=cifar_densenet),
    "efficientnet_b0": ModelSpec("efficientnet_b0", small=cifar_efficientnet),
    "mnasnet1_0": ModelSpec("mnasnet1_0", small=cifar_mnasnet),
}
