"""`direct` on blocked float activations (dlas/primitives/direct_blocked.py): which convs
take it, every float conv case equal to PyTorch in each mix of blocked and NCHW sides
(a depthwise conv's in-place pad on every side), and the primitives and targets that keep
NCHW. The layout pass on whole graphs: tests/codegen/test_blocked_layout.py."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import tvm
from tvm import relax, te

from dlas.hardware.base import make_target
from dlas.primitives import Direct, Winograd
from dlas.primitives.direct_blocked import (blocked_call, blocked_float_layouts, channel_block,
                                            conv2d_direct_blocked)
from dlas.primitives.direct_compute import block_weight
from dlas.primitives.direct_schedule import direct_blocked_rule
from dlas.primitives.workloads import Conv2dWorkload
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


def test_every_int8_depthwise_shape_of_the_models_exact():
    """int8 depthwise convs between blocked dot-product convs (codegen's int8_layout.py) take
    this compute with int32 accumulators: each depthwise class of the seven models
    (test_int8_dot's SHAPES, channels rounded up to blocks of 16), full-range operands, equal
    to the NumPy integer reference."""
    from tests.primitives.test_int8_dot import SHAPES, numpy_conv_int, operands

    b, rng = 16, np.random.default_rng(3)
    shapes = [wl for wl in SHAPES if wl.groups > 1]
    assert len(shapes) >= 5
    for wl in shapes:
        c = -(-wl.in_channels // b) * b
        wl = Conv2dWorkload(c, c, wl.height, wl.width, wl.kernel, wl.stride, wl.padding,
                            wl.dilation, c)
        x, w = operands(wl, rng)
        data = te.placeholder((1, c // b, wl.height, wl.width, b), "int8", name="x")
        wt = te.placeholder((c // b, 1, *wl.kernel, b), "int8", name="w")
        (ph, pw) = wl.padding
        conv = conv2d_direct_blocked(data, wt, wl.stride, (ph, pw, ph, pw), wl.dilation, c,
                                     True, "int32")
        sch = direct_blocked_rule().apply(te.create_prim_func([data, wt, conv]), HOST, False)
        assert sch is not None, wl.label()
        lib = tvm.compile(sch.mod, target=HOST)
        out = tvm.runtime.tensor(np.zeros([int(d) for d in conv.shape], "int32"))
        xb = np.ascontiguousarray(x.reshape(1, c // b, b, wl.height, wl.width)
                                  .transpose(0, 1, 3, 4, 2))
        lib(tvm.runtime.tensor(xb), tvm.runtime.tensor(block_weight(w, b)), out)
        got = out.numpy().transpose(0, 1, 4, 2, 3).reshape(1, c, *wl.out_size)
        assert np.array_equal(got, numpy_conv_int(x, w, wl)), wl.label()
