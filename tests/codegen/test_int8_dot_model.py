"""An int8 model through the normal codegen on a target with integer dot products: its
dense convs take the dot-product path (recorded as `int8_path` in the stats the results
row gets), depthwise ones keep the generic int8 compute, and the logits equal PyTorch's
quantize/dequantize model to float rounding."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import tvm
from tvm import relax
from tvm.target.codegen import target_has_features

from dlas.codegen import Untuned, import_model
from dlas.hardware.base import make_target
from dlas.primitives import Direct, Gemm, SpatialPack

from tests.codegen.test_quantized import int8_of

HOST = make_target({"kind": "llvm", "mcpu": "host"})


class Tiny(nn.Module):
    """Stem (3 channels), strided conv, depthwise, 1x1 with 40 channels (not a multiple of
    16), a residual 3x3, pooling, linear: 4 dense convs, 1 depthwise."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.down = nn.Sequential(nn.Conv2d(16, 24, 3, stride=2, padding=1), nn.ReLU())
        self.dw = nn.Sequential(nn.Conv2d(24, 24, 3, padding=1, groups=24), nn.ReLU())
        self.pw = nn.Sequential(nn.Conv2d(24, 40, 1), nn.ReLU())
        self.res = nn.Conv2d(40, 40, 3, padding=1)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(40, 10))

    def forward(self, x):
        y = self.pw(self.dw(self.down(self.stem(x))))
        return self.head(torch.relu(self.res(y) + y))


@pytest.fixture(scope="module")
def quantized():
    q = int8_of(Tiny(), 16)
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    return import_model(q, x), x.numpy(), q(x).detach().numpy()


# (the host runs vnni code only on a VNNI host: see the skip)
@pytest.mark.parametrize("primitive, path, target", [
    (Direct, "vnni", HOST), (SpatialPack, "vnni", HOST), (Gemm, "vnni", HOST),
    (SpatialPack, "avx2", make_target({"kind": "llvm", "mcpu": "haswell"}))])
def test_int8_model_on_dot_products_matches_pytorch(quantized, primitive, path, target):
    feature = {"vnni": "avx512vnni", "avx2": "avx2"}[path]
    if not target_has_features(feature, HOST):
        pytest.skip(f"this CPU has no {feature}")
    mod, x, ref = quantized
    codegen = Untuned()
    ex, stats = codegen.build(mod, primitive(), target)
    assert stats["int8_path"] == path
    assert stats["int8_dot_layers"] == 4 and stats["conv_layers"] == 5
    out = relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()
    assert np.abs(ref).max() > 1e-2  # the comparison is not between zeros
    assert np.abs(out - ref).max() <= 1e-4 * np.abs(ref).max() + 1e-6


def test_plain_target_records_plain_and_float_models_record_nothing(quantized):
    mod, _, _ = quantized
    codegen = Untuned()
    _, stats = codegen.build(mod, Direct(), make_target({"kind": "llvm", "mcpu": "sandybridge"}))
    assert stats["int8_path"] == "plain" and stats["int8_dot_layers"] == 0
    float_mod = import_model(Tiny().eval(), torch.randn(1, 3, 16, 16))
    _, stats = codegen.build(float_mod, Direct(), make_target({"kind": "llvm", "mcpu": "znver5"}))
    assert "int8_path" not in stats
