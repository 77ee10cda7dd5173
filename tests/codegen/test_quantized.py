"""int8 models compile to integer arithmetic: int8 x int8 convolutions and matmuls with
int32 accumulation, whose results equal PyTorch's quantize/dequantize reference."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import tvm
from tvm import relax, tirx

from dlas.codegen import Untuned, import_model
from dlas.codegen.divergence import divergence, first_layer_departure, report
from dlas.codegen.pipeline import constant_bytes
from dlas.compression import StepContext
from dlas.compression.int8 import Int8Quantization
from dlas.hardware.base import make_target
from dlas.models import make_model
from dlas.primitives import Direct

from tests.codegen.test_models_compile import rescale

HOST = make_target({"kind": "llvm", "mcpu": "host"})


def int8_of(net: nn.Module, size: int) -> nn.Module:
    gen = torch.Generator().manual_seed(1)
    data = [(torch.randn(8, 3, size, size, generator=gen), None) for _ in range(2)]
    return Int8Quantization(calibration_batches=2).apply(
        net.eval(), StepContext(torch.zeros(1, 3, size, size), lambda: iter(data)))


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.ReLU(),  # depthwise
        nn.Conv2d(16, 32, 3, stride=2, padding=1, groups=2), nn.ReLU(),  # grouped, strided
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))


def conv_funcs(mod: tvm.IRModule) -> dict[str, tirx.PrimFunc]:
    """The PrimFuncs computing a direct conv2d (fused with their epilogues)."""
    return {gv.name_hint: func for gv, func in mod.functions_items()
            if isinstance(func, tirx.PrimFunc) and "conv2d_direct" in gv.name_hint}


def test_int8_graph_imports_as_integer_ops_and_matches_pytorch():
    q = int8_of(small_cnn(), 16)
    x = torch.randn(1, 3, 16, 16)
    mod = import_model(q, x)
    text = mod.script()
    assert text.count("R.nn.conv2d(") == 3 and text.count('out_dtype="int32"') == 4  # + linear
    assert 'dtype="float32") = R.nn.conv2d' not in text  # no float convolution left

    codegen = Untuned()
    scheduled = codegen.schedule(mod, Direct(), HOST)
    convs = conv_funcs(scheduled)
    assert len(convs) == 3, list(convs)
    for name, func in convs.items():
        # data and weight come in as int8 (parameter order: data, weight, epilogue operands,
        # output) and the products accumulate in an int32 buffer
        dtypes = [str(p.dtype) for p in func.ty.params]
        assert dtypes[:2] == ["int8", "int8"], (name, dtypes)
        assert '"int32"' in func.script(), name

    ex, stats = codegen.build(mod, Direct(), HOST)
    out = relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x.numpy())).numpy()
    ref = q(x).detach().numpy()
    # integer accumulation equals the float reference up to float rounding of the scales
    assert np.abs(out - ref).max() <= 1e-4 * np.abs(ref).max() + 1e-6


@pytest.mark.slow
def test_int8_resnet18_weights_take_a_quarter_of_the_bytes():
    torch.manual_seed(0)
    net = rescale(make_model("resnet18", 10, 32))
    x = torch.randn(1, 3, 32, 32)
    codegen = Untuned()
    fp32 = codegen.schedule(import_model(net, x), Direct(), HOST)
    q = int8_of(net, 32)
    int8 = codegen.schedule(import_model(q, x), Direct(), HOST)
    ratio = constant_bytes(int8) / constant_bytes(fp32)
    assert 0.24 < ratio <= 0.30, ratio  # int8 weights + float32 biases and scales
    # Each int8 layer fed the compiled model's own input computes PyTorch's result (within
    # half a quantization step). The logits themselves are not held to PyTorch's: where a
    # float conv lands on a rounding tie, PyTorch's float accumulation order (it differs
    # between CPUs) flips one int8 value by one step, and flips cascade through resnet18
    # (on an AVX2 EPYC: 1 of 65536 values at layer1.1, 20 % at layer4, 2 % of the logits).
    rows = divergence(q, x.numpy(), Direct(), codegen, HOST, fmt="int8", rtol=1e-4)
    assert first_layer_departure(rows) is None, report(rows)
    layers = [r for r in rows if r.probe.input_probe]
    assert len(layers) >= 20 and all(r.step > 0 for r in layers), report(rows)


def test_affine_activations_keep_the_float_reference():
    """A graph DLAS's quantizer would not produce (affine activations, zero point != 0)
    is still imported correctly, as float arithmetic on dequantized values."""
    from torch.ao.quantization.fx._decomposed import quantized_decomposed_lib  # noqa: F401

    class Affine(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            q = torch.ops.quantized_decomposed.quantize_per_tensor(x, 0.05, 3, -128, 127, torch.int8)
            d = torch.ops.quantized_decomposed.dequantize_per_tensor(q, 0.05, 3, -128, 127, torch.int8)
            return self.conv(d)

    net = Affine().eval()
    x = torch.randn(1, 3, 8, 8)
    gm = torch.export.export(net, (x,)).module()
    mod = import_model(gm, x)
    assert 'out_dtype="int32"' not in mod.script()
    ex, _ = Untuned().build(mod, Direct(), HOST)
    out = relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x.numpy())).numpy()
    assert np.abs(out - gm(x).detach().numpy()).max() < 1e-5
