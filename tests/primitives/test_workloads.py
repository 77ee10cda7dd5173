"""The conv2d workloads derived from DLAS's models."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from dlas.errors import DLASError
from dlas.models import MODELS, make_model
from dlas.primitives.workloads import (SIZES, Conv2dWorkload, distinct_workloads,
                                       model_workloads, subsample)

# conv2d calls per model (the same at both sizes: only strides/stems differ) and distinct
# configurations at 32 / at 224. A change means a model definition changed: update
# deliberately, then the benchmarks' and correctness suite's layer lists change with it.
COUNTS = {
    "densenet161": (160, 86, 86), "efficientnet_b0": (81, 46, 46), "mnasnet1_0": (52, 33, 33),
    "mobilenetv2": (52, 30, 30), "resnet18": (20, 11, 11), "resnet50": (53, 23, 23),
    "vgg16": (13, 9, 9),
}


def test_every_model_is_counted():
    assert set(COUNTS) == set(MODELS)


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_counts_per_model_are_stable(name):
    calls, distinct32, distinct224 = COUNTS[name]
    for size, distinct in ((32, distinct32), (224, distinct224)):
        layers = model_workloads(name, size)
        assert (len(layers), len(set(layers))) == (calls, distinct), (name, size)


def test_distinct_list_covers_every_model_and_size():
    rows = distinct_workloads()
    workloads = [wl for wl, _ in rows]
    assert len(workloads) == len(set(workloads)) == 389
    seen = {where for _, wheres in rows for where in wheres}
    assert seen == {f"{m}@{s}" for m in MODELS for s in SIZES}
    for name in MODELS:
        for size in SIZES:
            mine = {wl for wl, wheres in rows if f"{name}@{size}" in wheres}
            assert mine == set(model_workloads(name, size))


def test_resnet18_32_has_the_3x3_64_layer():
    layer = Conv2dWorkload(64, 64, 32, 32, (3, 3), (1, 1), (1, 1), (1, 1), 1)
    assert layer in model_workloads("resnet18", 32)
    assert layer.kind == "dense" and layer.out_size == (32, 32)
    assert layer.macs == 64 * 64 * 9 * 32 * 32
    assert dict(distinct_workloads())[layer] == ("resnet18@32", "resnet50@32", "vgg16@32")


def test_mobilenetv2_has_depthwise_layers():
    depthwise = [wl for wl in set(model_workloads("mobilenetv2", 32)) if wl.kind == "depthwise"]
    assert len(depthwise) == 10
    assert Conv2dWorkload(32, 32, 32, 32, (3, 3), (1, 1), (1, 1), (1, 1), 32) in depthwise
    assert all(wl.groups == wl.in_channels == wl.out_channels for wl in depthwise)


@pytest.mark.parametrize("name", ["resnet18", "mobilenetv2"])
def test_meta_device_shapes_match_a_real_forward(name):
    """The hooks run on the meta device; a real CPU forward gives the same layers."""
    found = []
    torch.manual_seed(0)
    net = make_model(name, 10, 32).eval()
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            m.register_forward_hook(lambda mod, inp, out: found.append(
                (tuple(inp[0].shape), tuple(mod.weight.shape), mod.stride, mod.padding,
                 mod.groups, tuple(out.shape))))
    with torch.no_grad():
        net(torch.randn(1, 3, 32, 32))
    derived = [((1, wl.in_channels, wl.height, wl.width), wl.weight_shape, wl.stride,
                wl.padding, wl.groups, (1, wl.out_channels, *wl.out_size))
               for wl in model_workloads(name, 32)]
    assert derived == found


def test_cached():
    assert model_workloads("vgg16", 32) is model_workloads("vgg16", 32)
    assert distinct_workloads() is distinct_workloads()


def test_scaled_keeps_the_layer_but_the_size():
    wl = Conv2dWorkload(16, 16, 112, 56, (5, 5), (2, 2), (2, 2), (1, 1), 16)
    small = wl.scaled(8)
    assert (small.height, small.width) == (8, 8) and small.kind == "depthwise"
    assert small.kernel == wl.kernel and small.stride == wl.stride
    assert wl.scaled(2).height == 5  # never smaller than the kernel
    assert wl.scaled(500) == wl


def test_subsample_keeps_every_shape_class():
    workloads = [wl for wl, _ in distinct_workloads()]
    classes = {wl.shape_class for wl in workloads}
    assert {kind for kind, _, _ in classes} == {"dense", "depthwise"}
    assert len(classes) == 9
    picked = subsample(workloads, 1000)
    assert len(picked) == 9 and {wl.shape_class for wl in picked} == classes
    assert subsample(workloads, 1) == workloads
    every7 = subsample(workloads, 7)
    assert every7 == subsample(workloads, 7) and 389 / 7 < len(every7) < 389 / 7 + 9
    with pytest.raises(DLASError, match="subsample"):
        subsample(workloads, 0)


def test_unknown_size():
    with pytest.raises(DLASError, match="image_size"):
        model_workloads("resnet18", 64)
