"""Tiny versions of the structures the seven models are made of, int8-quantized once per
test session (shared by test_divergence and test_import_batchnorm)."""
from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn as nn

from tests.codegen.test_models_compile import rescale
from tests.codegen.test_quantized import int8_of

SIZE = 8


class Residual(nn.Module):  # ResNet's basic block
    def __init__(self, c):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)

    def forward(self, x):
        return torch.relu(x + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))


class InvertedResidual(nn.Module):  # MobileNetV2 / MNASNet: expand, depthwise, project
    def __init__(self, c):
        super().__init__()
        self.expand = nn.Sequential(nn.Conv2d(c, 2 * c, 1), nn.ReLU6())
        self.depthwise = nn.Sequential(nn.Conv2d(2 * c, 2 * c, 3, padding=1, groups=2 * c),
                                       nn.ReLU6())
        self.project = nn.Conv2d(2 * c, c, 1)

    def forward(self, x):
        return x + self.project(self.depthwise(self.expand(x)))


class DenseLayer(nn.Module):  # DenseNet: concat, then a batch norm PT2E cannot fold
    def __init__(self, c):
        super().__init__()
        self.branch = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU())
        self.norm = nn.BatchNorm2d(2 * c)
        self.conv = nn.Conv2d(2 * c, c, 1)

    def forward(self, x):
        return self.conv(torch.relu(self.norm(torch.cat([x, self.branch(x)], 1))))


class SqueezeExcite(nn.Module):  # EfficientNet / MNASNet-style channel attention
    def __init__(self, c):
        super().__init__()
        self.reduce, self.expand = nn.Conv2d(c, c // 2, 1), nn.Conv2d(c // 2, c, 1)

    def forward(self, x):
        squeezed = nn.functional.silu(self.reduce(x.mean((2, 3), keepdim=True)))
        return x * torch.sigmoid(self.expand(squeezed))


class Classifier(nn.Module):  # VGG's head: max-pool, flatten, linear-relu-linear
    def __init__(self, c):
        super().__init__()
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(c * (SIZE // 2) ** 2, 32), nn.ReLU())

    def forward(self, x):
        return self.fc(self.pool(x))


STRUCTURES = {"residual": Residual, "depthwise": InvertedResidual, "concat": DenseLayer,
              "squeeze_excite": SqueezeExcite, "classifier": Classifier}


def tiny(structure: str) -> nn.Module:
    """stem conv -> the structure -> global average pooling (or the VGG head) -> linear."""
    torch.manual_seed(0)
    body = STRUCTURES[structure](8)
    head = [nn.Linear(32, 10)] if structure == "classifier" else \
        [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)]
    # in-place ReLU as torchvision has it (the probe of the conv before it must not see it)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
                        body, *head)
    return rescale(net).eval()


@functools.cache
def quantized(structure: str) -> torch.fx.GraphModule:
    """tiny(structure) after DLAS's int8 step, once per test session (torchao's convert of a
    graph with an unfolded batch norm exports ~100 patterns: seconds)."""
    return int8_of(tiny(structure), SIZE)


def inputs(n: int = 4) -> np.ndarray:
    return torch.randn(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2)).numpy()
