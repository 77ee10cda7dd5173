"""int8 conv2d on the integer dot-product instructions (int8_intrin.py): the TE compute and
the compile-time weight packing.

The x86 instructions multiply unsigned activations by signed weights, and DLAS's int8
models have signed (symmetric) activations. The +128 shift makes them unsigned without
changing the graph or the quantization: with x_u8 = x + 128,

    sum_k x_u8[k] w[k] = sum_k x[k] w[k] + 128 sum_k w[k]

so the int8 convolution is the u8 one minus 128 * (sum of output channel o's weights), a
constant per output channel computed when the weight is packed and subtracted in the
conv's own epilogue (one integer subtract per output, fused with the unpack; the result is
the exact int32 conv2d the graph asked for, so the float requantization after it is
untouched). Padding is 128 in the shifted domain (0 in the signed one). The shift covers
every conv for one subtract, without changing the compression step or the stored models;
where the activations cannot be negative it is not needed (below). AArch64's `sdot`
multiplies s8 by s8, and avx2's sign form takes s8 too (int8_intrin.py): there the
activations are packed as they are (padding 0) and there is no compensation
(compensation=None). Activations proven >= 0 (codegen's
nonnegative.py: after a ReLU) are in [0, 127] already: on x86 they go in as u8 as they are
(unsigned=True: padding 0, no shift, no compensation).

Layouts (C padded to Cp, a multiple of the input block `ib` in {4, 8, 16}; O padded to Op,
a multiple of the instruction's output lanes L (int8_intrin.LANES: 16, 8 or 4), with zero
weights):

  data_pack[n, Cp/ib, Hp, Wp, ib]     u8   = pad(data)[n, c, h, w] + 128   (NCHW[ib]c)
  weight    [Op/L, Cp/ib, KH, KW, ib/4, L, 4]  s8                        (OIHW[ib/4]i[L]o4i)
  conv      [n, Op/L, OH, OW, L]      i32  = sum over (cb, ky, kx, c4, ci) data_pack * weight
  out       [n, O, OH, OW]            i32  = conv[n, o/L, y, x, o%L] - 128 * sum(w[o])

so the two innermost loops, L output channels x 4 input channels, are exactly one Lx4 dot
product (the tensor intrinsic), the 4 activation bytes one broadcast 32-bit load, the 4L
weight bytes one vector. The data pack runs once per call, inside the conv's PrimFunc
(pad, shift and re-layout in one pass over the input, like the float spatial_pack); the
unpack is the tile's write-back, fused with the requantization epilogue. Between two such
convs codegen's int8_layout.py keeps the activations NCHW[ib]c (ib = L): the pack is then
the pad and shift alone and the output stays blocked, with no unpack.
"""
from __future__ import annotations

import functools

import numpy as np
from tvm import te, tirx

from dlas.primitives.base import LAYOUT_KEY, PRIMITIVE_KEY
from dlas.primitives.legalize_utils import conv_ints

OB = 16  # the widest output-channel block (int8_intrin.LANES)
K4 = 4   # input channels of one dot product
SHIFT = 128
# the data pack's block name -> what its bytes are (int8_intrin.activation_dtype's answer)
PACKS = {"data_pack_u8": "uint8", "data_pack_s8": "int8", "data_pack_u7": "uint7"}

_ints = functools.partial(conv_ints, op="conv2d_int8_dot")


def input_block(channels: int, widest: int = 16) -> int:
    """The input-channel block: the widest of 16, 8, 4 (at most `widest`) dividing the
    channels padded to a multiple of 4."""
    padded = -(-channels // K4) * K4
    return next(b for b in (16, 8, 4) if b <= widest and padded % b == 0)


def pack_weight_int8(weight: np.ndarray, ib: int, lanes: int = OB
                     ) -> tuple[np.ndarray, np.ndarray]:
    """OIHW int8 -> (packed [Op/lanes, Cp/ib, KH, KW, ib/4, lanes, 4], compensation [O]
    int32 = 128 * sum of each output channel's weights, for the +128 shift)."""
    o, c, kh, kw = weight.shape
    op, cp = -(-o // lanes) * lanes, -(-c // ib) * ib
    padded = np.zeros((op, cp, kh, kw), np.int8)
    padded[:o, :c] = weight
    packed = (padded.reshape(op // lanes, lanes, cp // ib, ib // K4, K4, kh, kw)
              .transpose(0, 2, 5, 6, 3, 1, 4))
    comp = SHIFT * weight.astype(np.int64).reshape(o, -1).sum(axis=1)
    return np.ascontiguousarray(packed), comp.astype(np.int32)


def conv2d_int8_dot(data: te.Tensor, weight: te.Tensor, compensation: te.Tensor | None,
                    out_channels: int, strides, padding, dilation, primitive: str,
                    patches: tuple[int, int] | None = None,
                    blocked_out: bool = False, unsigned: bool = False) -> te.Tensor:
    """NCHW int8 conv2d (groups=1) with `out_channels` int32 outputs from the packed weight
    and its compensation (pack_weight_int8): the +128 shift to u8 (x86); None: s8
    activations as they are (sdot, avx2's sign form), or with `unsigned` read as u8 (they
    are >= 0: int8_intrin's uint7). The conv block is marked as `primitive`'s (its
    schedule rule finds it by that).

    patches=(KH, KW): the im2col form (gemm): the weight was packed from the [O, C*KH*KW,
    1, 1] matrix, and the data pack gathers the patch matrix [n, Kp/ib, OH, OW, ib] (k =
    (c, ky, kx), numpy's order) instead of the padded input, so the conv is a 1x1 one over
    the patches: one GEMM, its reduction the whole window in blocks of ib.

    Blocked layouts (int8_layout.py keeps the activations NCHW[ib]c between such convs): a
    5-D `data` is NCHW[ib]c already (ib the weight's input block), so its pack is only the
    pad and the shift, contiguous rows; blocked_out: the output is the conv's own
    [n, O/L, OH, OW, L] (O a multiple of L), compensated, with no unpack.
    """
    blocked_in = len(data.shape) == 5
    if blocked_in:
        n_, cbd, h_, w_, bd = (int(d) for d in data.shape)
        c_ = cbd * bd
    else:
        n_, c_, h_, w_ = (int(d) for d in data.shape)
    ob_, cb_, kh, kw, i4, lanes, _ = (int(d) for d in weight.shape)
    ib = i4 * K4
    if blocked_in and (bd != ib or patches is not None):
        raise ValueError(f"NCHW{bd}c data needs the weight's input block ({ib}), no im2col")
    o_, shift = int(out_channels), compensation is not None
    sh, sw = _ints(strides, 2, "strides")
    dh, dw = _ints(dilation, 2, "dilation")
    pt, pl, pb, pr = _ints(padding, 4, "padding")
    wkh, wkw = patches if patches is not None else (kh, kw)
    oh = (h_ + pt + pb - (wkh - 1) * dh - 1) // sh + 1
    ow = (w_ + pl + pr - (wkw - 1) * dw - 1) // sw + 1

    def shift_or_pad(value, inside):
        if not shift:
            dtype = "uint8" if unsigned else "int8"
            return tirx.if_then_else(inside, value.astype(dtype), tirx.const(0, dtype))
        value = (value.astype("int32") + SHIFT).astype("uint8")
        return tirx.if_then_else(inside, value, tirx.const(SHIFT, "uint8"))

    def shifted(n, c, y, x, inside):
        return shift_or_pad(data[n, tirx.min(c, c_ - 1), y, x], inside)

    def pack(n, cb, h, w, ci):
        y, x = h - pt, w - pl
        if blocked_in:  # (the channels are whole blocks: no channel padding)
            return shift_or_pad(data[n, cb, y, x, ci], tirx.all(y >= 0, y < h_, x >= 0, x < w_))
        c = cb * ib + ci
        return shifted(n, c, y, x, tirx.all(c < c_, y >= 0, y < h_, x >= 0, x < w_))

    def gather(n, kb, y0, x0, ki):
        k = kb * ib + ki
        c, ky, kx = k // (wkh * wkw), k // wkw % wkh, k % wkw
        y, x = y0 * sh + ky * dh - pt, x0 * sw + kx * dw - pl
        return shifted(n, c, y, x, tirx.all(k < c_ * wkh * wkw, y >= 0, y < h_, x >= 0, x < w_))

    name = "data_pack_u8" if shift else "data_pack_u7" if unsigned else "data_pack_s8"
    if patches is None:
        packed = te.compute((n_, cb_, h_ + pt + pb, w_ + pl + pr, ib), pack, name=name)
    else:  # the window is in the patches: the conv over them is 1x1, stride 1
        packed = te.compute((n_, cb_, oh, ow, ib), gather, name=name)
        sh = sw = dh = dw = 1
    rb = te.reduce_axis((0, cb_), name="rb")
    ry = te.reduce_axis((0, kh), name="ry")
    rx = te.reduce_axis((0, kw), name="rx")
    r4 = te.reduce_axis((0, i4), name="r4")
    ri = te.reduce_axis((0, K4), name="ri")
    conv = te.compute(
        (n_, ob_, oh, ow, lanes),
        lambda n, o, y, x, oi: te.sum(
            packed[n, rb, y * sh + ry * dh, x * sw + rx * dw, r4 * K4 + ri].astype("int32")
            * weight[o, rb, ry, rx, r4, oi, ri].astype("int32"), axis=[rb, ry, rx, r4, ri]),
        name="conv2d_int8_dot",
        attrs={PRIMITIVE_KEY: primitive, LAYOUT_KEY: f"NCHW{ib}c-OIHW{i4}i{lanes}o4i"})

    if blocked_out:
        if ob_ * lanes != o_:
            raise ValueError(f"NCHW{lanes}c output of {o_} channels: not whole blocks")
        if not shift:
            return conv
        return te.compute((n_, ob_, oh, ow, lanes), lambda n, o, y, x, oi:
                          conv[n, o, y, x, oi] - compensation[o * lanes + oi],
                          name="compensate")

    def unpack(n, o, y, x):
        value = conv[n, o // lanes, y, x, o % lanes]
        return value - compensation[o] if shift else value

    return te.compute((n_, o_, oh, ow), unpack, name="unpack_compensate" if shift else "unpack")
