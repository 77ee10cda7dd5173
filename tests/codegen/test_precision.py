"""Float16 nets (compression step fp16) through import_model -> Untuned + Direct -> VM.

Tolerance: max|diff| <= 1e-2 x max|logit| against the torch half model (measured on
resnet18 32x32: 1.5e-3; float16 keeps ~3 decimal digits and the two sides round different
intermediates: TVM folds batch-norm in float64 and accumulates in float32).
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn as nn
import tvm
from tvm import relax, tirx

from dlas.codegen import Untuned, import_model
from dlas.compression.metrics import number_format
from dlas.models import make_model
from dlas.primitives import Direct
from tests.codegen.test_models_compile import rescale

RTOL = 1e-2
TARGET = "llvm"


class SmallCNN(nn.Module):
    """conv-bn-relu, a residual add, a depthwise conv, pooling, a linear head."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16),
                                  nn.ReLU())
        self.conv = nn.Conv2d(16, 16, 3, padding=1)
        self.dw = nn.Conv2d(16, 16, 3, stride=2, padding=1, groups=16)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.stem(x)
        x = torch.relu(self.dw(torch.relu(x + self.conv(x))))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def randomize_bn(net: nn.Module) -> nn.Module:
    """Random BN statistics and scales (biases and Linear layers as initialised)."""
    return rescale(net, bn_bias=False, linear=False)


def compiled_vs_half(net: nn.Module, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Logits of the compiled half net (float32 in and out) and of the torch half net."""
    half = copy.deepcopy(net).half()
    with torch.no_grad():
        ref = half(x.half()).float().numpy()
    ex, _ = Untuned().build(import_model(half, x[:1]), Direct(), tvm.target.Target(TARGET))
    assert number_format(half) == "float16"  # importing did not touch the net
    vm = relax.VirtualMachine(ex, tvm.cpu())
    out = np.concatenate([vm["main"](tvm.runtime.tensor(x[i:i + 1].numpy(), tvm.cpu())).numpy()
                          for i in range(len(x))])
    assert out.dtype == np.float32 and out.shape == ref.shape
    return out, ref


def rel_diff(out: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(out - ref).max() / np.abs(ref).max())


def test_small_cnn_fp16_matches_torch_half():
    torch.manual_seed(0)
    net = randomize_bn(SmallCNN())
    x = torch.randn(4, 3, 16, 16)
    out, ref = compiled_vs_half(net, x)
    assert rel_diff(out, ref) <= RTOL
    with torch.no_grad():
        ref32 = net(x).numpy()
    assert rel_diff(out, ref32) <= RTOL  # and close to the float32 net it came from


def test_resnet18_fp16_matches_torch_half():
    torch.manual_seed(0)
    net = randomize_bn(make_model("resnet18", 10, 32))
    out, ref = compiled_vs_half(net, torch.randn(2, 3, 32, 32))
    assert rel_diff(out, ref) <= RTOL
    assert (out.argmax(1) == ref.argmax(1)).all()


def test_main_keeps_float32_boundaries():
    mod = import_model(SmallCNN().eval().half(), torch.randn(1, 3, 8, 8))
    sig = mod["main"].ty
    assert [p.dtype for p in sig.params] == ["float32"] and sig.ret.dtype == "float32"
    assert 'dtype="float16"' in mod["main"].script()


def test_scheduled_conv2d_funcs_take_float16():
    net = randomize_bn(SmallCNN()).half()
    mod = Untuned().schedule(import_model(net, torch.randn(1, 3, 8, 8)), Direct(),
                             tvm.target.Target(TARGET))
    convs = {gv.name_hint: [str(p.dtype) for p in func.ty.params]
             for gv, func in mod.functions_items()
             if isinstance(func, tirx.PrimFunc) and "conv2d" in gv.name_hint}
    assert len(convs) >= 3, convs  # stem, conv, depthwise (maybe fused together differently)
    for name, dtypes in convs.items():
        # all inputs (data, weight, bias); the last parameter is the output
        assert dtypes[:-1] and set(dtypes[:-1]) == {"float16"}, (name, dtypes)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_other_precisions_are_not_float16(dtype):
    assert number_format(SmallCNN().to(dtype)) != "float16"


def test_relu6_clip_converts_to_float16():
    """ReLU6 imports as relax.clip with float64 scalar bounds, on which ToMixedPrecision
    stops (MobileNetV2, MNASNet); ClipBoundsAsTensors makes it convertible."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU6(), nn.Conv2d(8, 4, 1),
                        nn.Hardtanh(-1.0, 2.0)).eval()
    x = torch.randn(2, 3, 8, 8)
    out, ref = compiled_vs_half(net, x)
    assert rel_diff(out.reshape(2, -1), ref.reshape(2, -1)) <= RTOL
