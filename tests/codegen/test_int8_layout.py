"""Blocked int8 activations between dot-product convs (dlas/codegen/int8_layout.py): every
int8 conv shape of the seven models exact in the blocked layouts, an int8 model (its
depthwise conv blocked too) bit for bit the same as its NCHW build with no activation
transformed, lone convs and float models untouched."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import tvm
from tvm import relax
from tvm.target.codegen import target_has_features

from dlas.codegen import Untuned, import_model, inference_passes
from dlas.codegen.int8_layout import CONV2D, blocked_int8_layout, dot_conv_layouts
from dlas.hardware.base import make_target
from dlas.primitives import Direct, Gemm, SpatialPack
from dlas.primitives.workloads import Conv2dWorkload

from tests.codegen.test_quantized import int8_of
from tests.primitives.test_int8_dot import SHAPES, many_convs, numpy_conv_int, operands

HOST = make_target({"kind": "llvm", "mcpu": "host"})
AVX2_TARGET = make_target({"kind": "llvm", "mcpu": "haswell"})
RUNS = {"vnni": target_has_features("avx512vnni", HOST), "avx2": target_has_features("avx2", HOST)}


def blocked_shapes(lanes: int) -> list[Conv2dWorkload]:
    """The dense shapes of test_int8_dot (the models' conv classes, cut to 9x9) as they
    are, and with their channels rounded up to whole blocks of `lanes` (so every class has
    blocked data and output; as they are, some have one side or none blocked)."""
    def whole(c: int) -> int:
        return -(-c // lanes) * lanes

    dense = [wl for wl in SHAPES if wl.groups == 1]
    rounded = [Conv2dWorkload(whole(wl.in_channels), whole(wl.out_channels), wl.height,
                              wl.width, wl.kernel, wl.stride, wl.padding, wl.dilation, 1)
               for wl in dense]
    return sorted(set(dense + rounded))


def conv_layouts(mod: tvm.IRModule) -> list[tuple[str, str]]:
    found = []

    def visit(expr) -> None:
        if isinstance(expr, relax.Call) and getattr(expr.op, "name", "") == "relax.nn.conv2d":
            found.append((str(expr.attrs.data_layout), str(expr.attrs.out_layout)))

    relax.analysis.post_order_visit(mod["main"], visit)
    return found


@pytest.mark.parametrize("primitive, path, target", [
    (Direct, "vnni", HOST), (SpatialPack, "vnni", HOST), (Direct, "avx2", AVX2_TARGET)])
def test_every_int8_conv_shape_exact_in_blocked_layouts(primitive, path, target):
    if not RUNS[path]:
        pytest.skip(f"this CPU cannot run {path} code")
    lanes = {"vnni": 16, "avx2": 8}[path]
    shapes = blocked_shapes(lanes)
    rng = np.random.default_rng(0)
    cases = [operands(wl, rng) for wl in shapes]
    if path == "avx2":  # DLAS's int8 range [-127, 127] takes avx2's sign form, -128 not
        for _, w in cases[1::2]:
            np.clip(w, -127, 127, out=w)
    plain = many_convs(shapes, [w for _, w in cases])
    # lone convs between the graph's edges stay NCHW (the pass blocks only the sides that
    # meet another dot-product conv): ask for the blocked layouts of such a side directly
    assert set(conv_layouts(blocked_int8_layout(lanes)(plain))) == {("NCHW", "NCHW")}
    mod = relax.transform.ConvertLayout({}, lambda call: {
        CONV2D: dot_conv_layouts(call, lanes)} if call.op.name == CONV2D else {})(plain)
    block = f"NCHW{lanes}c"
    expect = [(block if wl.in_channels % lanes == 0 else "NCHW",
               block if wl.out_channels % lanes == 0 else "NCHW") for wl in shapes]
    assert conv_layouts(mod) == expect
    assert sum(d == o == block for d, o in expect) >= len(shapes) // 2
    ex, stats = Untuned().build(mod, primitive(), target)
    assert stats["int8_path"] == path and stats["int8_dot_layers"] == len(shapes)
    assert stats["schedule_rules"].get("Int8DotConv2D") == len(shapes)
    outs = relax.VirtualMachine(ex, tvm.cpu())["main"](*(tvm.runtime.tensor(x) for x, _ in cases))
    for wl, (x, w), out in zip(shapes, cases, outs):
        assert np.array_equal(out.numpy(), numpy_conv_int(x, w, wl)), wl.label()


class Net(nn.Module):
    """What the blocked layout meets in ResNet and MobileNetV2: a 3-channel stem, residual
    adds, a strided conv, a depthwise conv between blocked 1x1s, a 24-channel conv (not a
    multiple of 16), ReLU6 (a clip), pooling, a linear head."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.conv1, self.conv2 = nn.Conv2d(16, 16, 3, padding=1), nn.Conv2d(16, 16, 3, padding=1)
        self.down = nn.Sequential(nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU())
        self.dw = nn.Sequential(nn.Conv2d(32, 32, 3, padding=1, groups=32), nn.ReLU6())
        self.pw = nn.Sequential(nn.Conv2d(32, 32, 1), nn.ReLU6(), nn.Conv2d(32, 24, 1))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(24, 10))

    def forward(self, x):
        x = self.stem(x)
        x = torch.relu(x + self.conv2(torch.relu(self.conv1(x))))
        return self.head(self.pw(self.dw(self.down(x))))


@pytest.fixture(scope="module")
def model():
    q = int8_of(Net(), 16)
    x = torch.randn(3, 1, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    return import_model(q, x[0]), x.numpy()


def test_blocked_layout_stays_between_convs(model):
    mod, _ = model
    before = tvm.transform.Sequential(inference_passes())(mod)
    after = blocked_int8_layout(16)(before)
    # blocked from the stem's output on, through the depthwise conv (direct's blocked
    # compute, int32 accumulators), to the 24-channel conv's NCHW output for the head; no
    # activation is transformed
    assert conv_layouts(after) == [("NCHW", "NCHW16c")] + [("NCHW16c", "NCHW16c")] * 5 \
        + [("NCHW16c", "NCHW")]
    text = after["main"].script()
    assert "R.layout_transform(lv" not in text  # (the constants' transforms fold away)
    assert "R.clip" not in text  # written as minimum/maximum, which follow the layout


@pytest.mark.parametrize("primitive", [Direct, SpatialPack])
def test_int8_model_bit_exact_with_its_nchw_build(model, primitive):
    if not RUNS["vnni"]:
        pytest.skip("this CPU has no avx512vnni")
    mod, xs = model
    outs = []
    for blocked in (True, False):
        ex, stats = Untuned().build(mod, primitive(int8_blocked=blocked), HOST)
        assert stats["int8_dot_layers"] == 6
        # the depthwise conv: direct's blocked compute between the blocked dot-product convs
        assert stats["schedule_rules"].get("DirectBlockedConv2D", 0) == int(blocked), stats
        assert stats["fallbacks"] == ({} if primitive is Direct else  # (direct's, either way)
                                      {"groups>1 (depthwise/grouped): direct": 1}), stats
        vm = relax.VirtualMachine(ex, tvm.cpu())
        outs.append([vm["main"](tvm.runtime.tensor(x)).numpy() for x in xs])
    assert all(np.array_equal(a, b) for a, b in zip(*outs))
    assert np.abs(outs[0][0]).max() > 1e-2


def test_float_models_and_other_primitives_are_untouched(model):
    fp32 = import_model(Net().eval(), torch.zeros(1, 3, 16, 16))
    fp32 = tvm.transform.Sequential(inference_passes())(fp32)
    tvm.ir.assert_structural_equal(blocked_int8_layout(16)(fp32), fp32)
    target = make_target({"kind": "llvm", "mcpu": "icelake-server"})
    assert Direct().blocked_int8_lanes(target) == 16
    assert Direct(int8_blocked=False).blocked_int8_lanes(target) is None
    assert Direct(format="csr").blocked_int8_lanes(target) is None
    assert Gemm().blocked_int8_lanes(target) is None
    assert SpatialPack().blocked_int8_lanes(AVX2_TARGET) == 8
    sandybridge = make_target({"kind": "llvm", "mcpu": "sandybridge"})  # no AVX2: no dot path
    assert SpatialPack().blocked_int8_lanes(sandybridge) is None
