"""Whole (tiny) networks: torch -> import_model -> Untuned + Direct -> Relax VM, vs PyTorch.

Logits must agree within 1e-4 x max |logit|.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import tvm
from hydra.utils import instantiate
from omegaconf import OmegaConf
from tvm import relax

from dlas.codegen import Untuned, import_model
from dlas.config import make
from dlas.errors import DLASError
from dlas.primitives import Direct
from tests.codegen.test_models_compile import rescale

CONF = Path(__file__).resolve().parents[2] / "conf"
TARGETS = {"llvm": lambda: tvm.target.Target("llvm"),
           "host": lambda: tvm.target.Target.from_device(tvm.cpu())}


def conv_bn(cin, cout, stride=1, groups=1):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, groups=groups, bias=False),
                         nn.BatchNorm2d(cout))


class TinyCNN(nn.Module):
    """conv-bn-relu, a residual block, depthwise conv, bn on its own, pool, flatten, linear."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(conv_bn(3, 16), nn.ReLU())
        self.body = nn.Sequential(conv_bn(16, 16), nn.ReLU(), conv_bn(16, 16))
        self.dw = nn.Sequential(conv_bn(16, 16, stride=2, groups=16), nn.ReLU6())
        self.pw = nn.Conv2d(16, 24, 1)  # with bias, no bn
        self.post = nn.BatchNorm2d(24)  # not after a conv: becomes a scale/shift
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(24, 10)

    def forward(self, x):
        x = self.stem(x)
        x = torch.relu(x + self.body(x))
        x = self.post(torch.relu(self.pw(self.dw(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


class GenericOps(nn.Module):
    """Everything that is not a conv2d: pooling, adaptive pooling, reductions, softmax..."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc1 = nn.Linear(8 * 2 * 2, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x):
        x = nn.functional.max_pool2d(self.conv(x), 3, 2, 1)
        x = x * torch.sigmoid(x.mean((2, 3), keepdim=True))  # squeeze-excite-like
        x = nn.functional.adaptive_avg_pool2d(x, (2, 2))
        x = torch.nn.functional.gelu(self.fc1(torch.flatten(x, 1)))
        return torch.softmax(self.fc2(x), dim=-1) + x.sum(-1, keepdim=True)


def randomize_bn(net: nn.Module) -> nn.Module:
    """Random BN statistics and affine (Linear layers as initialised)."""
    return rescale(net, linear=False)


def compile_and_compare(net: nn.Module, x: torch.Tensor, target) -> dict:
    with torch.no_grad():
        ref = net(x).numpy()
    codegen = Untuned()
    ex, stats = codegen.build(import_model(net, x), Direct(), target)
    vm = relax.VirtualMachine(ex, tvm.cpu())
    out = vm["main"](tvm.runtime.tensor(x.numpy(), tvm.cpu())).numpy()
    assert out.shape == ref.shape
    assert np.abs(out - ref).max() <= 1e-4 * np.abs(ref).max()
    return stats


@pytest.mark.parametrize("target", list(TARGETS))
def test_tiny_cnn_matches_pytorch(target):
    torch.manual_seed(0)
    stats = compile_and_compare(randomize_bn(TinyCNN()), torch.randn(1, 3, 16, 16),
                                TARGETS[target]())
    assert stats["unscheduled_funcs"] == 0, stats
    rules = stats["schedule_rules"]  # every conv (bn folded in), blocked where it can be
    assert rules.get("DirectConv2D", 0) + rules.get("DirectBlockedConv2D", 0) == 5, stats


def test_generic_ops_match_pytorch():
    torch.manual_seed(0)
    stats = compile_and_compare(GenericOps().eval(), torch.randn(1, 3, 12, 12),
                                TARGETS["host"]())
    assert stats["schedule_rules"].get("DirectBlockedConv2D") == 1, stats
    assert stats["scheduled_funcs"] >= 4, stats


def test_batch_norm_is_folded_into_conv():
    net = randomize_bn(nn.Sequential(conv_bn(3, 8), nn.ReLU()))
    mod = import_model(net, torch.randn(1, 3, 8, 8))
    text = mod["main"].script()
    assert "batch_norm" not in text and text.count("R.nn.conv2d") == 1


def test_unsupported_ops_are_named():
    class Special(nn.Module):
        def forward(self, x):
            return torch.special.i0(x) + torch.lgamma(x)

    with pytest.raises(DLASError) as err:
        import_model(Special(), torch.rand(1, 4) + 0.5)
    assert err.value.layer == "codegen"
    assert "i0" in str(err.value) and "lgamma" in str(err.value)


def test_bad_format_from_config_is_a_dlas_error():
    cfg = OmegaConf.create({"primitive": OmegaConf.load(CONF / "primitive" / "direct.yaml")})
    cfg.primitive.format = "ell"  # not a weight format (direct has dense, csr, bsr)
    with pytest.raises(DLASError) as err:
        make(cfg, "primitive")
    assert err.value.layer == "primitive" and "'ell'" in str(err.value)
    assert "dense" in str(err.value)


def test_codegen_config_instantiates():
    codegen = instantiate(OmegaConf.load(CONF / "codegen" / "untuned.yaml"))
    assert isinstance(codegen, Untuned) and codegen.name == "untuned"
