"""The `gemm` primitive: conv2d as im2col + matrix multiply, dense, CSR and BSR weights.

    cols[n, g, k, y, x] = data[n, g*Cg + c, y*sh + ky*dh - pt, x*sw + kx*dw - pl]   (0 outside)
    out[n, o, y, x]     = sum_k W[o, k] * cols[n, o // Og, k, y, x]

with k = (c, ky, kx) in that order (numpy's reshape of OIHW to W[O, K], K = Cg*KH*KW, the
matrix sparse_format.py stores) and Og = O / groups: one GEMM per (image, group), batched.
Padding, stride and dilation are folded into the gather, so there is no pad stage. The
patch matrix keeps (y, x) as two axes (the GEMM's N = OH*OW) so the output is NCHW as is
and the schedule can tile pixels in rectangles.

Weights (dense): W packed as [O/b, K, b] (b output channels contiguous, b dividing Og so a
vector never spans two groups), re-laid once at compile time for constant weights: the
schedule vectorises over those b channels with unit-stride loads. b = 1 (odd group widths)
keeps [O, K] and the schedule vectorises over pixels instead.
CSR: data[nnz], indices[nnz] (k), indptr[O + 1]. BSR (bo, bk): data[nnzb, bo, bk],
indices[nnzb] (k / bk), indptr[O/bo + 1]. TE turns a data-dependent reduction into a
block per output element around the loop over stored values, so the sparse schedules
vectorise over pixels around that loop (see gemm_schedule.py); BSR reduces a block row's
bo channels in one such loop (a tuple reduction), then interleaves them.
"""
from __future__ import annotations

import functools

import numpy as np
from tvm import te, tirx

from dlas.primitives.base import LAYOUT_KEY, PRIMITIVE_KEY
from dlas.primitives.legalize_utils import conv_ints

# block annotation naming the weight format of a gemm block (dense, csr, bsr)
FORMAT_KEY = "dlas.format"


_ints = functools.partial(conv_ints, op="conv2d_gemm")


def out_size(h: int, w: int, kernel, strides, padding, dilation) -> tuple[int, int]:
    kh, kw = _ints(kernel, 2, "kernel")
    sh, sw = _ints(strides, 2, "strides")
    dh, dw = _ints(dilation, 2, "dilation")
    pt, pl, pb, pr = _ints(padding, 4, "padding")
    return ((h + pt + pb - (kh - 1) * dh - 1) // sh + 1,
            (w + pl + pr - (kw - 1) * dw - 1) // sw + 1)


def im2col(data: te.Tensor, kernel, strides, padding, dilation, groups: int) -> te.Tensor:
    """[N, C, H, W] -> cols [N, groups, C/groups*KH*KW, OH, OW]; zeros where a window
    reaches into the padding."""
    n_, c_, h_, w_ = (int(d) for d in data.shape)
    kh, kw = _ints(kernel, 2, "kernel")
    sh, sw = _ints(strides, 2, "strides")
    dh, dw = _ints(dilation, 2, "dilation")
    pt, pl, _, _ = _ints(padding, 4, "padding")
    oh, ow = out_size(h_, w_, kernel, strides, padding, dilation)
    cg = c_ // int(groups)

    def gather(n, g, k, y, x):
        c, ky, kx = k // (kh * kw), (k // kw) % kh, k % kw
        iy, ix = y * sh + ky * dh - pt, x * sw + kx * dw - pl
        inside = tirx.all(iy >= 0, iy < h_, ix >= 0, ix < w_)
        return tirx.if_then_else(inside, data[n, g * cg + c, iy, ix],
                                 tirx.const(0, data.dtype))

    return te.compute((n_, int(groups), cg * kh * kw, oh, ow), gather, name="im2col",
                      tag="im2col", attrs={PRIMITIVE_KEY: "gemm.im2col"})


def conv2d_gemm(data: te.Tensor, weight: te.Tensor, kernel, strides, padding, dilation,
                groups: int = 1, out_dtype: str | None = None) -> te.Tensor:
    """NCHW conv2d as W[O, K] x cols; `weight` packed [O/b, K, b] (pack_weight)."""
    out_dtype = out_dtype or data.dtype
    cols = im2col(data, kernel, strides, padding, dilation, groups)
    n_, _, k_, oh, ow = cols.shape
    ob, _, b = (int(d) for d in weight.shape)
    og = ob * b // int(groups)
    r = te.reduce_axis((0, k_), name="k")
    return te.compute(
        (n_, ob * b, oh, ow),
        lambda n, o, y, x: te.sum(cols[n, o // og, r, y, x].astype(out_dtype)
                                  * weight[o // b, r, o % b].astype(out_dtype), axis=r),
        name="conv2d_gemm", tag="conv2d_gemm",
        attrs={PRIMITIVE_KEY: "gemm", FORMAT_KEY: "dense", LAYOUT_KEY: f"OK{b}o"})


def conv2d_gemm_csr(data: te.Tensor, w_data: te.Tensor, w_indices: te.Tensor,
                    w_indptr: te.Tensor, kernel, strides, padding, dilation, groups: int = 1,
                    out_dtype: str | None = None) -> te.Tensor:
    """NCHW conv2d as CSR W[O, K] x cols: a data-dependent reduction over each row's
    stored values."""
    out_dtype = out_dtype or data.dtype
    cols = im2col(data, kernel, strides, padding, dilation, groups)
    n_, _, _, oh, ow = cols.shape
    o_ = int(w_indptr.shape[0]) - 1
    og = o_ // int(groups)

    def row(n, o, y, x):
        start, end = w_indptr[o], w_indptr[o + 1]
        e = te.reduce_axis((0, end - start), name="e")
        return te.sum(w_data[start + e].astype(out_dtype)
                      * cols[n, o // og, w_indices[start + e], y, x].astype(out_dtype), axis=e)

    return te.compute((n_, o_, oh, ow), row, name="conv2d_gemm_csr", tag="conv2d_gemm_csr",
                      attrs={PRIMITIVE_KEY: "gemm", FORMAT_KEY: "csr"})


def conv2d_gemm_bsr(data: te.Tensor, w_data: te.Tensor, w_indices: te.Tensor,
                    w_indptr: te.Tensor, kernel, strides, padding, dilation, groups: int = 1,
                    out_dtype: str | None = None) -> te.Tensor:
    """NCHW conv2d as BSR W[O, K] x cols. One data-dependent reduction per block row sums
    all bo rows at once (a tuple reduction: bo outputs [N, O/bo, OH, OW]), so each patch
    row loaded serves bo output channels; `bsr_rows` interleaves them into NCHW."""
    out_dtype = out_dtype or data.dtype
    cols = im2col(data, kernel, strides, padding, dilation, groups)
    n_, _, _, oh, ow = (int(d) for d in cols.shape)
    _, bo, bk = (int(d) for d in w_data.shape)
    nb = int(w_indptr.shape[0]) - 1
    og = nb * bo // int(groups)
    block_sum = te.comm_reducer(lambda a, b: [x + y for x, y in zip(a, b)],
                                lambda *dtypes: [tirx.const(0, d) for d in dtypes],
                                name="block_sum")

    def group(ob, i):
        if int(groups) == 1:
            return 0
        return (ob * bo) // og if og % bo == 0 else (ob * bo + i) // og

    def block_row(n, ob, y, x):
        start, end = w_indptr[ob], w_indptr[ob + 1]
        # one axis over (stored block, column in block): TE would put a static axis for
        # the column outside the loop over blocks
        e = te.reduce_axis((0, (end - start) * bk), name="e")
        blk, j = start + e // bk, e % bk
        return block_sum([w_data[blk, i, j].astype(out_dtype)
                          * cols[n, group(ob, i), w_indices[blk] * bk + j, y, x]
                          .astype(out_dtype) for i in range(bo)], axis=e)

    rows = te.compute((n_, nb, oh, ow), block_row, name="conv2d_gemm_bsr",
                      tag="conv2d_gemm_bsr",
                      attrs={PRIMITIVE_KEY: "gemm", FORMAT_KEY: "bsr", LAYOUT_KEY: f"{bo}x{bk}"})
    rows = [rows] if bo == 1 else list(rows)

    def interleave(n, o, y, x):
        value = rows[bo - 1][n, o // bo, y, x]
        for i in reversed(range(bo - 1)):
            value = tirx.Select(o % bo == i, rows[i][n, o // bo, y, x], value)
        return value

    return te.compute((n_, nb * bo, oh, ow), interleave, name="bsr_rows")


def pack_weight(weight: np.ndarray, block: int) -> np.ndarray:
    """OIHW -> [O/block, K, block] (block divides O/groups)."""
    o = weight.shape[0]
    matrix = weight.reshape(o // block, block, -1)
    return np.ascontiguousarray(matrix.transpose(0, 2, 1))


def pack_weight_te(weight: te.Tensor, block: int) -> te.Tensor:
    """OIHW -> [O/block, K, block] as a TE compute (weights that are not constants)."""
    o, c, kh, kw = (int(d) for d in weight.shape)
    return te.compute((o // block, c * kh * kw, block),
                      lambda ob, k, b: weight[ob * block + b, k // (kh * kw), (k // kw) % kh,
                                              k % kw], name="weight_packed")


def pack_block(out_per_group: int) -> int:
    """The weight block b: the largest of 32, 16, 8, 4 dividing the group width, else 1."""
    return next((b for b in (32, 16, 8, 4) if out_per_group % b == 0), 1)
