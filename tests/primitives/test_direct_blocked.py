"""`direct` on blocked float activations (dlas/primitives/direct_blocked.py, the layout pass
codegen/blocked_layout.py): which convs take it, every float conv case equal to PyTorch in
each mix of blocked and NCHW sides, a MobileNet-like chain blocked from the stem to the
head with no transform in between and the same result as its NCHW build, a lone conv
left NCHW, and the primitives and targets that keep NCHW."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import tvm
from tvm import relax, te

from dlas.codegen import Untuned, import_model
from dlas.hardware.base import make_target
from dlas.primitives import Direct, Winograd
from dlas.primitives.direct_blocked import (blocked_call, blocked_float_layouts, channel_block,
                                            conv2d_direct_blocked)
from dlas.primitives.direct_compute import block_weight
from dlas.primitives.direct_schedule import direct_blocked_rule
from tests.primitives.conv_reference import CONV_CASES, HOST

RULE = "DirectBlockedConv2D"


def conv_call(c: int, o: int, groups: int = 1, dtype: str = "float32",
              h: int = 8) -> relax.Call:
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType([1, c, h, h], dtype))
    w = relax.const(np.zeros((o, c // groups, 3, 3), dtype))
    with bb.function("main", [x]):
        out = bb.emit(relax.op.nn.conv2d(x, w, padding=1, groups=groups))
        bb.emit_func_output(out)
    return bb.get()["main"].body.blocks[0].bindings[0].value


@pytest.mark.parametrize("c, o, groups, dtype, expected", [
    (16, 32, 1, "float32", ["NCHW16c", "OIHW", "NCHW16c"]),
    (3, 32, 1, "float32", ["NCHW", "OIHW", "NCHW16c"]),      # the stem reads NCHW
    (96, 24, 1, "float32", ["NCHW16c", "OIHW", "NCHW8c"]),   # 24 channels: half a vector
    (24, 24, 24, "float32", ["NCHW8c", "OIHW", "NCHW8c"]),   # depthwise
    (32, 20, 1, "float32", None),                            # no block of 20 channels
    (32, 32, 4, "float32", None),                            # grouped, not depthwise
    (12, 12, 12, "float32", None),
    (16, 32, 1, "float16", None),
])
def test_which_convs_take_blocked_layouts(c, o, groups, dtype, expected):
    call = conv_call(c, o, groups, dtype)
    assert blocked_float_layouts(call, 16) == expected
    assert channel_block(24, 16) == 8 and channel_block(24, 8) == 8 and channel_block(6, 8) is None
    assert not blocked_call(call)  # (still NCHW: the pass has not run)


def run_blocked(case, data_blocked: bool, out_blocked: bool) -> tuple[np.ndarray, np.ndarray]:
    """One conv case through conv2d_direct_blocked and its schedule rule on the host (block
    8: less than an AVX-512 vector, so the rule also meets half-vector blocks), against
    PyTorch."""
    (n, c, h, w), (o, kh, kw), stride, pad, dilation, groups = case
    b = 8
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c, h, w)).astype("float32")
    weight = rng.standard_normal((o, c // groups, kh, kw)).astype("float32")
    top, left, bottom, right = pad
    ref = F.conv2d(F.pad(torch.tensor(x), (left, right, top, bottom)), torch.tensor(weight),
                   stride=stride, dilation=dilation, groups=groups).numpy()
    xin = x.reshape(n, c // b, b, h, w).transpose(0, 1, 3, 4, 2) if data_blocked else x
    data = te.placeholder(xin.shape, name="x")
    wt = te.placeholder((o // b, c // groups, kh, kw, b), name="w")
    conv = conv2d_direct_blocked(data, wt, stride, pad, dilation, groups, out_blocked)
    relu = te.compute(conv.shape, lambda *i: te.max(conv(*i), 0.0), name="relu")
    func = te.create_prim_func([data, wt, relu])
    sch = direct_blocked_rule().apply(func, HOST, False)
    assert sch is not None and str(sch.get(sch.get_sblock("root")).annotations[
        "dlas.schedule_rule"]) == RULE
    lib = tvm.compile(sch.mod, target=HOST)
    dev = tvm.cpu()
    out = tvm.runtime.tensor(np.zeros([int(d) for d in relu.shape], "float32"), dev)
    lib(tvm.runtime.tensor(np.ascontiguousarray(xin), dev),
        tvm.runtime.tensor(block_weight(weight, b), dev), out)
    got = out.numpy()
    if out_blocked:
        got = got.transpose(0, 1, 4, 2, 3).reshape(ref.shape)
    return got, np.maximum(ref, 0)


BLOCKED_CASES = {name: case for name, case in CONV_CASES.items()
                 if case[1][0] % 8 == 0 and (case[5] == 1 or case[5] == case[0][1] == case[1][0])}
# a depthwise conv's pad is read in place (clamped, selected): every side, dilation, 5x5
BLOCKED_CASES.update({
    "depthwise 3x3 asymmetric pad": ((1, 16, 7, 9), (16, 3, 3), 1, (0, 2, 1, 0), 1, 16),
    "depthwise 5x5 s2 dilation 2": ((1, 8, 13, 11), (8, 5, 5), 2, (4, 3, 4, 3), 2, 8),
})


@pytest.mark.parametrize("name", sorted(BLOCKED_CASES))
def test_every_conv_case_equals_pytorch_in_each_layout_mix(name):
    case = BLOCKED_CASES[name]
    sides = [(True, True), (True, False), (False, True)] if case[0][1] % 8 == 0 \
        else [(False, True), (False, False)]
    for data_blocked, out_blocked in sides:
        got, ref = run_blocked(case, data_blocked, out_blocked)
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max(),
                                   err_msg=f"{name} data/out blocked {data_blocked}/{out_blocked}")


def test_depthwise_cases_are_covered():
    assert any(case[5] > 1 for case in BLOCKED_CASES.values())
    assert any(case[2] > 1 for case in BLOCKED_CASES.values() if case[5] > 1)  # strided too


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


def test_blocked_on_cpu_targets_for_dense_direct_only():
    avx512 = make_target({"kind": "llvm", "mcpu": "skylake-avx512"})
    avx2 = make_target({"kind": "llvm", "mcpu": "haswell"})
    arm = make_target({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"]})
    assert [Direct().blocked_float_lanes(t) for t in (avx512, avx2, arm)] == [16, 8, 4]
    assert Direct(blocked=False).blocked_float_lanes(avx512) is None
    assert Direct().nchw().blocked_float_lanes(avx512) is None
    assert Direct(format="csr").blocked_float_lanes(avx512) is None
    assert Direct(format="auto").blocked_float_lanes(avx512) is None
    assert Winograd().blocked_float_lanes(avx512) is None  # its transforms are NCHW
    assert Direct().blocked_float_lanes(make_target({"kind": "cuda", "arch": "sm_80"})) is None
