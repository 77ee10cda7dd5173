"""The blocked float layout on whole graphs (dlas/codegen/blocked_layout.py with `direct`'s
float convs): a MobileNet-like chain blocked from the stem to the head with no transform in
between and the same result as its NCHW build; a lone conv left NCHW."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import tvm
from tvm import relax

from dlas.codegen import Untuned, import_model
from dlas.primitives import Direct
from tests.primitives.conv_reference import HOST

RULE = "DirectBlockedConv2D"


class Inverted(nn.Module):
    """A MobileNetV2-like chain: stem, expand 1x1, depthwise (stride 1 and 2), project 1x1
    to 24 channels (half a vector on AVX-512), a residual add, ReLU6, the pooled head."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU6())
        self.block = nn.Sequential(nn.Conv2d(16, 48, 1), nn.ReLU6(),
                                   nn.Conv2d(48, 48, 3, padding=1, groups=48), nn.ReLU6(),
                                   nn.Conv2d(48, 16, 1))
        self.down = nn.Sequential(nn.Conv2d(16, 48, 3, stride=2, padding=1),
                                  nn.ReLU6(), nn.Conv2d(48, 48, 3, stride=2, padding=1, groups=48),
                                  nn.Conv2d(48, 24, 1))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(24, 10))

    def forward(self, x):
        x = self.stem(x)
        x = x + self.block(x)
        return self.head(self.down(x))


def layout_transforms(mod: tvm.IRModule) -> list[str]:
    return [gv.name_hint for gv in mod.functions if "layout_transform" in gv.name_hint]


def test_a_chain_is_blocked_from_stem_to_head_and_computes_the_same():
    torch.manual_seed(0)
    net = Inverted().eval()
    with torch.no_grad():
        net.stem[1].running_mean.uniform_(-1, 1)
        net.stem[1].running_var.uniform_(0.5, 2)
    x = torch.randn(1, 3, 16, 16)
    mod = import_model(net, x)
    with torch.no_grad():
        ref = net(x).numpy()
    outs = {}
    for blocked in (True, False):
        ex, stats = Untuned().build(mod, Direct(blocked=blocked), HOST)
        vm = relax.VirtualMachine(ex, tvm.cpu())
        outs[blocked] = vm["main"](tvm.runtime.tensor(x.numpy())).numpy()
        rules = stats["schedule_rules"]
        assert rules.get(RULE if blocked else "DirectConv2D") == 7, stats  # every conv
        assert stats["unscheduled_funcs"] == 0 and stats["fallback_layers"] == 0, stats
    np.testing.assert_allclose(outs[True], ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
    np.testing.assert_allclose(outs[True], outs[False], rtol=1e-6, atol=1e-6)
    # no transform between convs: the only one un-blocks the last conv's output for the pool
    with HOST:
        scheduled = Untuned().schedule(mod, Direct(), HOST)
    assert len(layout_transforms(scheduled)) <= 1, layout_transforms(scheduled)


def test_a_lone_conv_stays_nchw():
    """Input and output at the graph's edges: blocking would only add two transposes."""
    net = nn.Conv2d(16, 32, 3, padding=1).eval()
    x = torch.randn(1, 16, 8, 8)
    _, stats = Untuned().build(import_model(net, x), Direct(), HOST)
    assert stats["schedule_rules"] == {"DirectConv2D": 1}, stats


def test_an_aarch64_build_blocks_by_neon_vectors():
    """NEON: 4 lanes, so 16..48-channel tensors take NCHW4c (compiled, not run here)."""
    from dlas.hardware.base import make_target

    arm = make_target({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"]})
    x = torch.randn(1, 3, 16, 16)
    mod = import_model(Inverted().eval(), x)
    _, stats = Untuned().build(mod, Direct(), arm)
    assert stats["schedule_rules"].get(RULE) == 7 and stats["unscheduled_funcs"] == 0, stats
    with arm:
        scheduled = Untuned().schedule(mod, Direct(), arm)
    blocks = set()

    def visit(expr) -> None:
        if isinstance(expr, relax.Call) and "direct_blocked" in str(expr.args[0]):
            blocks.add(int(expr.ty.shape[-1]))

    relax.analysis.post_order_visit(scheduled["main"], visit)
    assert blocks == {4}, blocks  # every conv's output [n, C/4, H, W, 4]
