"""Build a model of the model layer by name."""
from __future__ import annotations

from pathlib import Path

import torch.nn as nn

from dlas.errors import DLASError
from dlas.models.registry import MODELS, SMALL_INPUT_MAX
from dlas.models.weights import load_checkpoint, load_torchvision
from dlas.values import integer


def input_dtype(net: nn.Module):
    """The dtype `net` takes its inputs in: that of its first floating parameter (float16
    after the fp16 compression step), None for a net without one."""
    return next((p.dtype for p in net.parameters() if p.is_floating_point()), None)


def _looks_like_path(weights: str) -> bool:
    return any(sep in weights for sep in ("/", "\\", ".")) or Path(weights).expanduser().exists()


def make_model(name: str, num_classes: int, image_size: int, weights: str | None = None
               ) -> nn.Module:
    """A torchvision `name` network with a `num_classes` head, adapted to small inputs
    (image_size <= 64: CIFAR stems), with `weights` from a local state_dict checkpoint, a
    torchvision weights name (DEFAULT, IMAGENET1K_V1, ...; ImageNet-sized only) or None
    (random init). Returned in train mode, on CPU."""
    if name not in MODELS:
        raise DLASError("model.name", name, sorted(MODELS), reason="unknown model", layer="model")
    for what, value, low in (("model.num_classes", num_classes, 1), ("model.image_size", image_size, 8)):
        integer(what, value, low, layer="model")
    spec = MODELS[name]
    small = image_size <= SMALL_INPUT_MAX
    net = spec.make(int(num_classes), small)
    if weights is None:
        return net
    weights = str(weights)
    if _looks_like_path(weights):
        return load_checkpoint(net, weights)
    return load_torchvision(net, spec.tv_name, weights, int(num_classes), small)
