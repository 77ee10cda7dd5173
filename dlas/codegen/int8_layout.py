"""Blocked activations between int8 convolutions: NCHW[L]c from one dot-product conv to the
next, converted only where the graph leaves them.

An int8 conv on the integer dot-product instructions computes on NCHW[ib]c input and
produces [n, O/L, OH, OW, L] int32 (dlas/primitives/int8_compute.py, L the instruction's
output lanes). In an NCHW graph every such conv re-lays its input (pad, shift, and a
channel interleave that reads 4..16 rows at once) and unpacks its output to NCHW inside
its epilogue (a transpose of the accumulator tile). Profiled on int8 resnet18@32 (Zen 4,
2 threads), the NCHW -> NCHW4c input pack alone took ~48 us of the ~250 us 64-channel
3x3 conv.

This pass asks TVM's ConvertLayout for NCHW[L]c data and output on every conv that takes
the dot-product path (int8, groups 1, constant OIHW weight, static shapes; data or output
blocked where its channels are whole blocks). The element-wise requantization between
convs (rescale, bias, residual add, ReLU, quantize) follows the layout, so the next conv
reads the previous one's blocked int8 output: its pack is only the pad and the +128 shift,
contiguous rows, and the epilogue writes whole vectors of L channels. An int8 depthwise
conv whose channels are whole blocks is blocked too (direct_blocked.py's compute: a vector
of L channels per tap, int32 accumulators), so MobileNetV2's 1x1 convs around its depthwise
convs no longer pack and unpack NCHW in every call (mobilenetv2@32 int8 1.21 -> 0.78 ms,
Zen 4). A conv whose input comes from another conv2d (grouped, float), or whose output goes
to one, keeps NCHW on that side: a layout transform there would be a stand-alone transpose
kernel (on MobileNetV2 ~0.5 ms of int8 transposes around its depthwise convs, before they
were blocked), where the conv's in-kernel pack or unpack does the same re-lay at no extra
pass. Transforms are left only at
the graph's edges (the stem's 3-channel input stays NCHW; the flatten before the
classifier). Every value is the same: the ops compute the same arithmetic on re-indexed
tensors, so the result is bit-exact.

The pass itself (ConvertLayout, which sides stay NCHW, clips as min/max) is
blocked_layout.py's, shared with `direct`'s float convs.
"""
from __future__ import annotations

import functools

import tvm
from tvm import relax
from tvm.ir.expr import Constant

from dlas.codegen.blocked_layout import CONV2D, blocked_layout
from dlas.primitives.int8_legalize import dot_operands
from dlas.primitives.legalize_utils import is_nchw, static_shape


def dot_conv_layouts(call: relax.Call, lanes: int) -> list[str] | None:
    """[data, kernel, output] layouts for a conv2d call that takes the int8 dot-product path
    (int8_legalize.int8_dot_path's conditions): NCHW[lanes]c for data and output where
    their channels are whole blocks; for an int8 depthwise conv whose channels are, both
    blocked; None for any other call."""
    if getattr(call.op, "name", "") != CONV2D or not is_nchw(call.attrs) \
            or not isinstance(call.args[1], Constant):
        return None
    dshape, oshape = static_shape(call.args[0].ty.shape), static_shape(call.ty.shape)
    block = f"NCHW{lanes}c"
    if _blocked_depthwise(call, dshape, lanes):
        return [block, "OIHW", block]
    if not dot_operands(call) or oshape is None:
        return None
    return [block if dshape[1] % lanes == 0 else "NCHW", "OIHW",
            block if oshape[1] % lanes == 0 else "NCHW"]


def _blocked_depthwise(call: relax.Call, dshape: list[int] | None, lanes: int) -> bool:
    """An int8 depthwise conv (int32 output) whose channels are whole blocks: it computes on
    the blocked activations too (direct_blocked.py, a vector of `lanes` channels per tap,
    accumulated in int32), so the dot-product convs around it keep theirs."""
    attrs, (data, weight) = call.attrs, call.args
    return (dshape is not None and str(data.ty.dtype) == str(weight.ty.dtype) == "int8"
            and str(attrs.out_dtype or call.ty.dtype) == "int32"
            and int(attrs.groups) == dshape[1] == int(weight.ty.shape[0]) > 1
            and dshape[1] % lanes == 0 and static_shape(call.ty.shape) is not None)


def blocked_int8_layout(lanes: int) -> tvm.transform.Pass:
    """The pass (module doc) for a target whose dot-product instruction has `lanes` output
    lanes; a module without a conv it would block is returned unchanged."""
    return blocked_layout(functools.partial(dot_conv_layouts, lanes=lanes),
                          "DLASBlockedInt8Layout")
