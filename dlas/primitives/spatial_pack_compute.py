"""The `spatial_pack` primitive's computes: conv2d on channel-blocked (packed) tensors.

Dense (the NCHW[x]c scheme of TVM's x86 conv2d_NCHWc), groups=1, a plain TE compute, all
inside one PrimFunc so the graph keeps seeing an NCHW conv2d:

  data_pack[n, C/ic, Hp, Wp, ic]       = pad(data)[n, cb*ic + ci, h, w]
  weight (constant, packed in numpy)     [O/oc, C/ic, KH, KW, ic, oc]
  conv_pack[n, O/oc, OH, OW, oc]       = sum_{cb, ky, kx, ci} data_pack[..] * weight[..]
  out[n, o, y, x]                      = conv_pack[n, o // oc, y, x, o % oc]   (unpack)

so the inner loop of the schedule is a vector of `oc` output channels times one broadcast
input value, both loaded with unit stride. Scheduled by spatial_pack_schedule.py.

Sparse, over the weight matrix W[O, C*KH*KW] (sparse_format.py; column k = (c, ky, kx)):
the reduction runs over the stored values only, a loop whose bounds come from indptr (a
data-dependent extent). TE can express that (tvm.md section 8), but it puts the reduction
in a block nested inside the spatial one, and no schedule primitive moves a loop across
that boundary: the vector and register tile must sit inside the sparse loop. So these are
written as already-scheduled TIR (TVMScript), with their tile sizes from the target:

- csr: per (n, o, block of output rows) a flat accumulator over those rows at the padded
  width; for each stored value of row o, one broadcast weight times a contiguous stretch of
  the input (padded and split by stride phase once up front; the column indices are
  replaced at compile time by the offset of each tap in that buffer: no decoding in the
  hot loop);
- bsr (block bo x bk): the BSR row block is the packed output-channel block: per
  (n, channel block, rows, columns) a [rows, columns, bo] accumulator; for each stored
  block, bk vectors of bo weights times one broadcast input value; unpacked to NCHW on
  write-back.
MetaSchedule leaves them as they are (marked scheduled); the epilogue is not fused into
them (an opaque PrimFunc for FuseOps): a generic rule schedules it separately.

Operands are cast to `out_dtype` before multiplying (int8 -> int32, float16 -> float32).
"""
from __future__ import annotations

import functools

import numpy as np
from tvm import te, tirx, topi
from tvm.script import tirx as T

from dlas.primitives.base import LAYOUT_KEY, PRIMITIVE_KEY
from dlas.primitives.legalize_utils import conv_ints
from dlas.primitives.schedule_utils import largest_divisor

RULE = "SpatialPackConv2D"  # the schedule rule name (spatial_pack_schedule.py)

NAME = "spatial_pack"


_ints = functools.partial(conv_ints, op="spatial_pack")


def _geometry(data: te.Tensor, kh: int, kw: int, strides, padding, dilation):
    """Padded data (NCHW) and (oh, ow, sh, sw, dh, dw)."""
    _, _, h_, w_ = (int(d) for d in data.shape)
    sh, sw = _ints(strides, 2, "strides")
    dh, dw = _ints(dilation, 2, "dilation")
    pt, pl, pb, pr = _ints(padding, 4, "padding")
    oh = (h_ + pt + pb - (kh - 1) * dh - 1) // sh + 1
    ow = (w_ + pl + pr - (kw - 1) * dw - 1) // sw + 1
    if any((pt, pl, pb, pr)):
        data = topi.nn.pad(data, [0, 0, pt, pl], [0, 0, pb, pr], name="pad")
    return data, (oh, ow, sh, sw, dh, dw)


def pack_weight(weight: np.ndarray, ic: int, oc: int) -> np.ndarray:
    """OIHW -> [O/oc, I/ic, KH, KW, ic, oc]."""
    o, i, kh, kw = weight.shape
    return np.ascontiguousarray(weight.reshape(o // oc, oc, i // ic, ic, kh, kw)
                                .transpose(0, 2, 4, 5, 3, 1))


def pack_weight_te(weight: te.Tensor, ic: int, oc: int) -> te.Tensor:
    """pack_weight as a TE compute (weights that are not constants)."""
    o, i, kh, kw = (int(d) for d in weight.shape)
    return te.compute((o // oc, i // ic, kh, kw, ic, oc),
                      lambda ob, cb, y, x, ci, oi: weight[ob * oc + oi, cb * ic + ci, y, x],
                      name="weight_pack")


def _unpack(packed: te.Tensor, out_dtype: str) -> te.Tensor:
    n_, ob, oh, ow, b = (int(d) for d in packed.shape)
    return te.compute((n_, ob * b, oh, ow),
                      lambda n, o, y, x: packed[n, o // b, y, x, o % b].astype(out_dtype),
                      name="unpack")


def conv2d_spatial_pack(data: te.Tensor, weight: te.Tensor, strides, padding, dilation,
                        out_dtype: str | None = None) -> te.Tensor:
    """NCHW conv2d (groups=1) with the packed weight [O/oc, C/ic, KH, KW, ic, oc]; the block
    sizes ic and oc are read off the weight's shape."""
    n_, c_, _, _ = (int(d) for d in data.shape)
    ob, cb, kh, kw, ic, oc = (int(d) for d in weight.shape)
    if cb * ic != c_:
        raise ValueError(f"spatial_pack: packed weight has {cb}x{ic} input channels, data {c_}")
    out_dtype = out_dtype or data.dtype
    padded, (oh, ow, sh, sw, dh, dw) = _geometry(data, kh, kw, strides, padding, dilation)
    hp, wp = (int(d) for d in padded.shape[2:])
    packed = te.compute((n_, cb, hp, wp, ic),
                        lambda n, b, h, w, ci: padded[n, b * ic + ci, h, w], name="data_pack")
    rb = te.reduce_axis((0, cb), name="rb")
    ry = te.reduce_axis((0, kh), name="ry")
    rx = te.reduce_axis((0, kw), name="rx")
    rc = te.reduce_axis((0, ic), name="rc")
    conv = te.compute(
        (n_, ob, oh, ow, oc),
        lambda n, o, y, x, oi: te.sum(
            packed[n, rb, y * sh + ry * dh, x * sw + rx * dw, rc].astype(out_dtype)
            * weight[o, rb, ry, rx, rc, oi].astype(out_dtype), axis=[rb, ry, rx, rc]),
        name="conv2d_spatial_pack",
        attrs={PRIMITIVE_KEY: NAME, LAYOUT_KEY: f"NCHW{ic}c-OIHW{ic}i{oc}o"})
    return _unpack(conv, out_dtype)


def sparse_output_shape(data_shape, kernel: tuple[int, int], strides, padding, dilation,
                        out_channels: int) -> tuple[int, int, int, int]:
    n_, _, h_, w_ = (int(d) for d in data_shape)
    (sh, sw), (dh, dw) = _ints(strides, 2, "strides"), _ints(dilation, 2, "dilation")
    pt, pl, pb, pr = _ints(padding, 4, "padding")
    return (n_, out_channels, (h_ + pt + pb - (kernel[0] - 1) * dh - 1) // sh + 1,
            (w_ + pl + pr - (kernel[1] - 1) * dw - 1) // sw + 1)


def csr_tile(oh: int, wq: int, lanes: int, budget: int) -> int:
    """Rows of the csr accumulator tile [rows * Wq]: at most `budget` vectors."""
    return largest_divisor(oh, max(1, budget * lanes // wq))


def phase_geometry(data_shape, kernel, strides, padding, dilation):
    """(Hq, Wq, slack): the padded input split by stride phase is [C, sh, sw, Hq, Wq] per
    image, plus `slack` zeros at its end (a tile's discarded columns read past the last
    plane)."""
    _, _, h_, w_ = (int(d) for d in data_shape)
    (sh, sw), (_, dw) = _ints(strides, 2, "strides"), _ints(dilation, 2, "dilation")
    pt, pl, pb, pr = _ints(padding, 4, "padding")
    wq = -(-(w_ + pl + pr) // sw)
    return -(-(h_ + pt + pb) // sh), wq, wq + (kernel[1] - 1) * dw // sw + 1


def csr_offsets(columns: np.ndarray, kernel, data_shape, strides, padding,
                dilation) -> np.ndarray:
    """Column k = (c, ky, kx) of W[O, C*KH*KW] -> offset of that tap's window start in the
    phase-split padded input: the csr kernel's hot loop then adds it instead of decoding k."""
    kh, kw = kernel
    (sh, sw), (dh, dw) = _ints(strides, 2, "strides"), _ints(dilation, 2, "dilation")
    hq, wq, _ = phase_geometry(data_shape, kernel, strides, padding, dilation)
    c, ky, kx = columns // (kh * kw), columns % (kh * kw) // kw, columns % kw
    off = (((c * sh + ky * dh % sh) * sw + kx * dw % sw) * hq + ky * dh // sh) * wq \
        + kx * dw // sw
    return off.astype(np.int32)


def bsr_tile(oh: int, ow: int, bo: int, lanes: int, budget: int) -> tuple[int, int]:
    """(rows, columns) of the bsr accumulator tile [rows, columns, bo]."""
    nvec = max(1, -(-bo // lanes))
    xt = largest_divisor(ow, max(1, budget // nvec))
    return largest_divisor(oh, max(1, budget // (nvec * xt))), xt


def conv2d_spatial_pack_csr(data_shape, dtype: str, out_channels: int, nnz: int,
                            kernel: tuple[int, int], strides, padding, dilation,
                            out_dtype: str, lanes: int = 16, budget: int = 16) -> tirx.PrimFunc:
    """NCHW conv2d (groups=1) with a CSR weight over W[O, C*KH*KW] (values, `offsets` from
    csr_offsets in place of the column indices, indptr), as a scheduled PrimFunc.

    The input is padded and split by stride phase once, [C, sh, sw, Hq, Wq] per image, so
    every tap of every stride reads unit-stride rows of width Wq. Parallel over (n, o, block
    of output rows); the accumulator is that block's rows at the padded width, flat
    ([rows * Wq], the Wq - OW extra columns computed and dropped), so one long vector runs
    over several rows even for 4x4 maps; for each stored value of row o: one broadcast
    weight times that contiguous stretch of the input."""
    N, C, H, W = (int(d) for d in data_shape)
    O = int(out_channels)
    sh, sw = _ints(strides, 2, "strides")
    pt, pl, _, _ = _ints(padding, 4, "padding")
    _, _, OH, OW = sparse_output_shape(data_shape, kernel, strides, padding, dilation, O)
    Hq, Wq, slack = phase_geometry(data_shape, kernel, strides, padding, dilation)
    plane = C * sh * sw * Hq * Wq
    yt = csr_tile(OH, Wq, lanes, budget)
    YB, TW = OH // yt, -(-yt * Wq // lanes) * lanes  # blocks of rows, flat tile width
    TV = TW // lanes
    rule = RULE

    @T.prim_func(private=True, s_tir=True)
    def func(data: T.Buffer((N, C, H, W), dtype), values: T.Buffer((nnz,), dtype),
             offsets: T.Buffer((nnz,), "int32"), indptr: T.Buffer((O + 1,), "int32"),
             out: T.Buffer((N, O, OH, OW), out_dtype)):
        T.func_attr({"tirx.noalias": True, "tirx.is_scheduled": True})
        with T.sblock("root"):
            T.sblock_attr({"dlas.schedule_rule": rule, "dlas.primitive": "spatial_pack",
                           "dlas.kernel_layout": "csr"})
            pad = T.sblock_alloc_buffer((N, plane + slack + lanes), dtype)
            for nc in T.parallel(N * C):
                for py, px, hq in T.grid(sh, sw, Hq):
                    for wq in T.vectorized(Wq):
                        pad[nc // C, (((nc % C * sh + py) * sw + px) * Hq + hq) * Wq + wq] = \
                            T.if_then_else(
                                pt <= hq * sh + py and hq * sh + py < H + pt
                                and pl <= wq * sw + px and wq * sw + px < W + pl,
                                data[nc // C, nc % C, hq * sh + py - pt, wq * sw + px - pl],
                                T.Cast(dtype, 0))
            for n in range(N):
                for t in T.vectorized(slack + lanes):
                    pad[n, plane + t] = T.Cast(dtype, 0)
            for f in T.parallel(N * O * YB):
                acc = T.decl_buffer((TW,), out_dtype, scope="local")
                for t0 in T.unroll(TV):
                    for t1 in T.vectorized(lanes):
                        acc[t0 * lanes + t1] = T.Cast(out_dtype, 0)
                for j in range(indptr[f // YB % O], indptr[f // YB % O + 1]):
                    for t0 in T.unroll(TV):
                        for t1 in T.vectorized(lanes):
                            acc[t0 * lanes + t1] = acc[t0 * lanes + t1] + T.Cast(
                                out_dtype, values[j]) * T.Cast(out_dtype, pad[
                                    f // (YB * O), offsets[j] + f % YB * yt * Wq
                                    + t0 * lanes + t1])
                for y1 in T.unroll(yt):
                    for x in T.vectorized(OW):
                        out[f // (YB * O), f // YB % O, f % YB * yt + y1, x] = acc[y1 * Wq + x]

    return func


def conv2d_spatial_pack_bsr(data_shape, dtype: str, out_channels: int, nnzb: int,
                            block: tuple[int, int], kernel: tuple[int, int], strides, padding,
                            dilation, out_dtype: str, lanes: int = 16,
                            budget: int = 16) -> tirx.PrimFunc:
    """NCHW conv2d (groups=1) with a BSR weight (values [nnzb, bo, bk], indices, indptr) over
    W[O, C*KH*KW], as a scheduled PrimFunc: the BSR row block is the packed output-channel
    block. Parallel over (n, row block of channels, block of output rows); per tile of
    [rows, columns, bo] a loop over the stored blocks of that channel block only, each
    column of a block a vector of bo weights times one broadcast input value; the tile is
    unpacked to NCHW when written back."""
    N, C, H, W = (int(d) for d in data_shape)
    O = int(out_channels)
    bo, bk = block
    OB = O // bo
    KH, KW = kernel
    (sh, sw), (dh, dw) = _ints(strides, 2, "strides"), _ints(dilation, 2, "dilation")
    pt, pl, pb, pr = _ints(padding, 4, "padding")
    _, _, OH, OW = sparse_output_shape(data_shape, kernel, strides, padding, dilation, O)
    Hp, Wp, KK = H + pt + pb, W + pl + pr, KH * KW
    yt, xt = bsr_tile(OH, OW, bo, lanes, budget)
    YB, XB = OH // yt, OW // xt
    rule = RULE

    @T.prim_func(private=True, s_tir=True)
    def func(data: T.Buffer((N, C, H, W), dtype), values: T.Buffer((nnzb, bo, bk), dtype),
             indices: T.Buffer((nnzb,), "int32"), indptr: T.Buffer((OB + 1,), "int32"),
             out: T.Buffer((N, O, OH, OW), out_dtype)):
        T.func_attr({"tirx.noalias": True, "tirx.is_scheduled": True})
        with T.sblock("root"):
            T.sblock_attr({"dlas.schedule_rule": rule, "dlas.primitive": "spatial_pack",
                           "dlas.kernel_layout": "bsr"})
            pad = T.sblock_alloc_buffer((N, C, Hp, Wp), dtype)
            for nc in T.parallel(N * C):
                for h in range(Hp):
                    for w in T.vectorized(Wp):
                        pad[nc // C, nc % C, h, w] = T.if_then_else(
                            pt <= h and h < H + pt and pl <= w and w < W + pl,
                            data[nc // C, nc % C, h - pt, w - pl], T.Cast(dtype, 0))
            for f in T.parallel(N * OB * YB):
                for x0 in range(XB):
                    acc = T.decl_buffer((yt, xt, bo), out_dtype, scope="local")
                    for y1 in T.unroll(yt):
                        for x1 in T.unroll(xt):
                            for oi in T.vectorized(bo):
                                acc[y1, x1, oi] = T.Cast(out_dtype, 0)
                    for j in range(indptr[f // YB % OB], indptr[f // YB % OB + 1]):
                        for kk in T.unroll(bk):
                            for y1 in T.unroll(yt):
                                for x1 in T.unroll(xt):
                                    for oi in T.vectorized(bo):
                                        acc[y1, x1, oi] = acc[y1, x1, oi] + T.Cast(
                                            out_dtype, values[j, oi, kk]) * T.Cast(out_dtype, pad[
                                                f // (YB * OB), (indices[j] * bk + kk) // KK,
                                                (f % YB * yt + y1) * sh
                                                + (indices[j] * bk + kk) % KK // KW * dh,
                                                (x0 * xt + x1) * sw
                                                + (indices[j] * bk + kk) % KW * dw])
                    for oi in T.unroll(bo):
                        for y1 in T.unroll(yt):
                            for x1 in T.vectorized(xt):
                                out[f // (YB * OB), f // YB % OB * bo + oi, f % YB * yt + y1,
                                    x0 * xt + x1] = acc[y1, x1, oi]

    return func
