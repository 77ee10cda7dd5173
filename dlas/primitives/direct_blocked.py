"""`direct` on blocked float activations: NCHW[b]c from one conv to the next.

A float conv of the NCHW graph writes its output through a transpose (the register tile
holds vectors of output channels, NCHW rows are pixels), and a depthwise conv vectorises
over output columns (a quarter of an AVX-512 vector at 4x4). With the activations kept as
[n, C/b, H, W, b] (b = the target's float lanes) between convs (codegen's
blocked_layout.py asks ConvertLayout for it), every tap of a conv reads and every tile
writes whole vectors of b channels: groups=1 convs broadcast one input channel of a pixel
against a vector of b output channels (direct's tile, OIHW{b}o weight), depthwise convs
multiply a vector of b input channels by the same channels' weights. Stride, dilation and
padding need no special layout (the vector runs along channels).

A conv takes this path when it is float, groups 1 or depthwise (one input and one output
channel per group), its output channels a multiple of b, with a constant OIHW weight and
static shapes; its data may stay NCHW (the 3-channel stem, an input that comes from
elsewhere) and its output too (the layer before the graph's end): the compute then reads
NCHW data, or its epilogue writes NCHW.
"""
from __future__ import annotations

import re

from tvm import relax, te, tirx, topi
from tvm.ir.expr import Constant

from dlas.primitives.base import LAYOUT_KEY, PRIMITIVE_KEY
from dlas.primitives.direct_compute import block_weight
from dlas.primitives.legalize_utils import conv_ints, is_nchw, static_shape
from dlas.primitives.schedule_utils import current_lanes

NAME = "direct.blocked"  # the conv block's PRIMITIVE_KEY (direct_schedule's blocked rule)
CLAMPED_PAD = "pad_clamped"  # a depthwise conv's pad, inlined by the schedule
_LAYOUT = re.compile(r"NCHW(\d+)c")


def channel_block(channels: int, lanes: int) -> int | None:
    """The block of a tensor with `channels` channels: a whole vector of `lanes` floats, or
    half of one (MobileNetV2's 24-channel layers on AVX-512); None: it stays NCHW."""
    return next((b for b in (lanes, lanes // 2) if b > 1 and channels % b == 0), None)


def blocked_float_layouts(call: relax.Call, lanes: int) -> list[str] | None:
    """[data, kernel, output] layouts (NCHW[b]c, b = channel_block, where the channels take
    one) of a conv2d call that can take this path; None for any other call."""
    attrs = call.attrs
    if getattr(call.op, "name", "") != "relax.nn.conv2d" or not is_nchw(attrs) \
            or not isinstance(call.args[1], Constant):
        return None
    data, weight = call.args
    dshape, wshape = static_shape(data.ty.shape), static_shape(weight.ty.shape)
    if dshape is None or wshape is None or static_shape(call.ty.shape) is None \
            or str(data.ty.dtype) != "float32" or str(weight.ty.dtype) != "float32" \
            or str(attrs.out_dtype or call.ty.dtype) != "float32":
        return None
    o, c, groups = wshape[0], dshape[1], int(attrs.groups)
    bd, bo = channel_block(c, lanes), channel_block(o, lanes)
    if bo is None or (groups != 1 and not (groups == c == o and bd == bo)):
        return None
    return ["NCHW" if bd is None else f"NCHW{bd}c", "OIHW", f"NCHW{bo}c"]


def blocked_call(call: relax.Call, dtype: str = "float32") -> bool:
    """Whether a conv2d call on `dtype` data is in the layouts blocked_float_layouts (or, for
    int8, int8_layout's depthwise case) gives: NCHW[b]c data and/or output, OIHW; either side
    may have been left NCHW."""
    attrs = call.attrs
    sides = (attrs.data_layout, attrs.out_layout)
    return attrs.kernel_layout == "OIHW" and sides != ("NCHW", "NCHW") \
        and str(call.args[0].ty.dtype) == dtype \
        and all(side == "NCHW" or _LAYOUT.fullmatch(side) for side in sides)


def legalize_direct_blocked(bb: relax.BlockBuilder, call: relax.Call, value) -> relax.Expr:
    """The blocked conv of a call in blocked_call's layouts, `value` its constant weight:
    output channels blocked as the output (or a depthwise conv's data) is, else by
    channel_block on the current target."""
    attrs = call.attrs
    out, data = (_LAYOUT.fullmatch(layout) for layout in (attrs.out_layout, attrs.data_layout))
    found = out or (data if int(attrs.groups) > 1 else None)
    block = int(found.group(1)) if found else channel_block(value.shape[0],
                                                            current_lanes("float32"))
    return bb.call_te(conv2d_direct_blocked, call.args[0], relax.const(block_weight(value, block)),
                      attrs.strides, attrs.padding, attrs.dilation, int(attrs.groups),
                      out is not None, str(attrs.out_dtype or call.ty.dtype),
                      primfunc_name_hint="conv2d_direct_blocked")


def conv2d_direct_blocked(data: te.Tensor, weight: te.Tensor, strides, padding, dilation,
                          groups: int, blocked_out: bool = True,
                          out_dtype: str | None = None) -> te.Tensor:
    """Conv2d, groups 1 or depthwise, on blocked activations; operands cast to `out_dtype`
    (default: the data's) before multiplying (int8 depthwise accumulates in int32).

    data [n, C/bd, H, W, bd] (or NCHW [n, C, H, W]); weight OIHW{b}o [O/b, C/groups, KH,
    KW, b] (a depthwise conv's bd = b); padding Relax's (top, left, bottom, right). Output
    [n, O/b, OH, OW, b], or NCHW (`blocked_out` False: a layout stage the schedule inlines
    into the epilogue)."""
    ob, cg, kh, kw, b = (int(d) for d in weight.shape)
    blocked = len(data.shape) == 5
    bd = int(data.shape[4]) if blocked else 1
    n_, h_, w_ = (data.shape[i] for i in (0, 2, 3))
    sh, sw = conv_ints(strides, 2, "strides", "conv2d_direct_blocked")
    dh, dw = conv_ints(dilation, 2, "dilation", "conv2d_direct_blocked")
    pt, pl, pb, pr = conv_ints(padding, 4, "padding", "conv2d_direct_blocked")
    oh = (h_ + pt + pb - (kh - 1) * dh - 1) // sh + 1
    ow = (w_ + pl + pr - (kw - 1) * dw - 1) // sw + 1
    depthwise = int(groups) > 1
    if any((pt, pl, pb, pr)) and depthwise and blocked:
        data = _clamped_pad(data, pt, pl, pb, pr)
    elif any((pt, pl, pb, pr)):  # (materialised: the schedule's producer)
        tail = [0] if blocked else []
        data = topi.nn.pad(data, [0, 0, pt, pl] + tail, [0, 0, pb, pr] + tail, name="pad")
    rc = te.reduce_axis((0, cg), name="rc")
    ry = te.reduce_axis((0, kh), name="ry")
    rx = te.reduce_axis((0, kw), name="rx")

    def at(n, o0, oi, y, x):
        if depthwise:  # the output's own channel
            return data[n, o0, y, x, oi] if blocked else data[n, o0 * b + oi, y, x]
        return data[n, rc // bd, y, x, rc % bd] if blocked else data[n, rc, y, x]

    out_dtype = out_dtype or data.dtype

    def body(n, o0, y, x, oi):
        return te.sum(at(n, o0, oi, y * sh + ry * dh, x * sw + rx * dw).astype(out_dtype)
                      * weight[o0, rc, ry, rx, oi].astype(out_dtype), axis=[rc, ry, rx])

    out = te.compute((n_, ob, oh, ow, b), body, name="conv2d_direct_blocked",
                     tag="conv2d_direct_blocked",
                     attrs={PRIMITIVE_KEY: NAME, LAYOUT_KEY: f"NCHW{b}c"})
    if blocked_out:
        return out
    return te.compute((n_, ob * b, oh, ow), lambda n, o, y, x: out[n, o // b, y, x, o % b],
                      name="unblock")


def _clamped_pad(data: te.Tensor, pt: int, pl: int, pb: int, pr: int) -> te.Tensor:
    """The zero-padded [n, C/b, Hp, Wp, b] input of a depthwise conv, as a select between
    the input read at a clamped position (always in bounds) and zero: branch-free, so the
    schedule inlines it into the conv's loads instead of materialising the padded tensor.
    Materialised, the pad pass took half of a blocked depthwise conv's time (96 channels at
    32x32: 34.6 us with it, 17.7 us for the same conv on an input needing no pad; inlined:
    18.1 us; Zen 4, 2 threads); a groups=1 conv, which broadcasts each input value to many
    output channels, keeps topi's materialised pad (inlined it ran 1.2-2.2x slower)."""
    n_, cb_, h_, w_, b = data.shape

    def value(n, c, y, x, i):
        inside = te.all(y >= pt, y < h_ + pt, x >= pl, x < w_ + pl)
        yy = te.max(te.min(y - pt, h_ - 1), 0)
        xx = te.max(te.min(x - pl, w_ - 1), 0)
        return tirx.Select(inside, data[n, c, yy, xx, i], tirx.const(0, data.dtype))

    return te.compute((n_, cb_, h_ + pt + pb, w_ + pl + pr, b), value, name=CLAMPED_PAD)
