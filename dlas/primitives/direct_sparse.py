"""Sparse variants of the `direct` primitive: conv2d over a CSR or BSR weight.

The weight [O, C/g, KH, KW] is the matrix W[O, K], K = C/g*KH*KW (sparse_format.py); column
k stands for (c, ky, kx) = (k // (KH*KW), k // KW % KH, k % KW), and

out[n, o, y, x] = sum over the stored j of row o:
                  data[j] * pad(in)[n, g(o)*Cg + c(j), y*sh + ky(j)*dh, x*sw + kx(j)*dw]

computed as data[j] * flat[n, base(g(o)) + offset(k_j) + y*ws + x] (see below).

BSR with block (bo, bk): the bo rows of a block row share its block columns, so the
schedule computes them together and each input vector loaded serves bo channels.

Reduce extent. The row length indptr[o+1] - indptr[o] depends on the output channel.
Written as a TE reduce axis of that extent (tvm.md §8), create_prim_func nests a block per
output element around the reduction, and no schedule primitive can then move the
reduction outside a tile of output pixels. So the reduction runs to the longest row,
max_row (the weight is a compile-time constant), over the rows stored ELLPACK-style in
groups of up to GROUP consecutive channels (block rows), each group j-major:
values[g, j, r] is the j-th stored value of the group's row r, the rows past their end
padded with weight 0 at offset 0 (sparse_format.to_ell). The cost is the FMAs of the
padding (max_row/mean row: ~1.3 at 90 % on a 3x3 conv with 64 input channels, ~1.1 with
512). In return a term needs no row bounds (the CSR form selected the weight by j < row
length: an indptr load, a compare and a select or branch per term), and the j-th entries
of a tile's channels are adjacent: one contiguous stream of weights per tile, not two per
channel (~30 on 4x4 maps, more than the prefetchers follow). Groups, not the whole matrix
j-major: at 55 % sparsity a 512-channel layer's 9 MB of weights read at a 2 KB stride was
2.5x slower than row by row. TE's `te.sum(..., where=)` cannot be used: create_prim_func
silently drops the condition in TVM 0.27 (checked: no block predicate).

Input and weight columns. The input is re-laid once per call into `flat_input`: for each
channel, each kernel column kx and each row stride phase, the zero-padded input's columns
x*sw + kx*dw (x < ow) of its rows, flattened: rows of exactly ow elements. A weight
column k then is one offset into it (computed at compile time from the column indices,
`window_offsets`), and output pixel (y, x) reads offset + y*ow + x: no (c, ky, kx)
decoding in the loop (it was ~25 of the ~40 instructions per non-zero on a 4x4 map, now
~12 for 4 vector FMAs), a strided conv reads contiguous vectors, not gathers, and the
whole output plane of one channel, flattened, reads one contiguous range. On a map
narrower than a vector (8x8, 4x4 at 32x32 input) the schedule vectorises over that plane
instead of over output columns, which would leave lanes idle (8 of 16 on 8x8 with
AVX-512). The price is kw copies of the input (3x for 3x3 kernels; it was ~1.2x, padded,
split into column phases); measured on Zen 4 against that layout (with its plane padded
to whole vectors, dropping the pad columns): CSR 1.3-1.6x faster on the 8x8 and 4x4
layers of resnet18@32, 1.0-1.2x on 16x16 and 32x32.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from tvm import te, tirx

from dlas.primitives.base import LAYOUT_KEY, PRIMITIVE_KEY
from dlas.primitives.legalize_utils import conv_ints
from dlas.primitives.schedule_utils import largest_divisor

SPARSE_PRIMITIVE = "direct_sparse"
INPUT_BLOCK = "conv_input_flat"  # the re-laid input (flat_input)
SPLIT_KEY = "dlas.input_split"  # its (kx x row phases, rows, columns) per channel
GROUP = 16  # channels (BSR: block-row channels) per group of the ELL weight, at most

_ints = functools.partial(conv_ints, op="conv2d_direct")


@dataclass(frozen=True)
class Geometry:
    """Shapes of one conv2d and of its flat input: channel c of the padded input, as kw
    column gathers x sh row phases of hs rows x ws (= ow) columns, at [n, c*plane :
    (c+1)*plane]."""

    n: int
    c: int
    h: int
    w: int
    o: int
    cg: int
    kh: int
    kw: int
    sh: int
    sw: int
    dh: int
    dw: int
    pt: int
    pl: int
    oh: int
    ow: int
    hs: int
    ws: int

    @property
    def plane(self) -> int:
        return self.kw * self.sh * self.hs * self.ws


def geometry(data_shape, weight_shape, strides, padding, dilation) -> Geometry:
    n_, c_, h_, w_ = (int(d) for d in data_shape)
    o_, cg, kh, kw = (int(d) for d in weight_shape)
    sh, sw = _ints(strides, 2, "strides")
    dh, dw = _ints(dilation, 2, "dilation")
    pt, pl, pb, pr = _ints(padding, 4, "padding")
    hp, wp = h_ + pt + pb, w_ + pl + pr
    oh = (hp - (kh - 1) * dh - 1) // sh + 1
    ow = (wp - (kw - 1) * dw - 1) // sw + 1
    return Geometry(n_, c_, h_, w_, o_, cg, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow,
                    -(-hp // sh), ow)


def window_offsets(columns: np.ndarray, geo: Geometry) -> np.ndarray:
    """Flat-input offset of weight column k = (c, ky, kx) for output pixel (0, 0) of the
    group's first channel; output pixel (y, x) reads offset + y*ws + x."""
    k = columns.astype(np.int64)
    c, ky, kx = k // (geo.kh * geo.kw), k // geo.kw % geo.kh, k % geo.kw
    wy = ky * geo.dh
    off = (((c * geo.kw + kx) * geo.sh + wy % geo.sh) * geo.hs + wy // geo.sh) * geo.ws
    return off.astype(np.int32)


def flat_input(data: te.Tensor, geo: Geometry) -> te.Tensor:
    """[N, C, H, W] -> [N, C*plane]: per channel, kernel column kx and row stride phase,
    the zero-padded input's columns x*sw + kx*dw (x < ow) of its rows, so every weight
    column is one offset and an output channel's plane reads consecutive elements."""
    hw = geo.hs * geo.ws

    def at(n, i):
        c, r = i // geo.plane, i % geo.plane
        phase, r = r // hw, r % hw
        y = r // geo.ws * geo.sh + phase % geo.sh - geo.pt
        x = r % geo.ws * geo.sw + phase // geo.sh * geo.dw - geo.pl
        inside = tirx.all(y >= 0, y < geo.h, x >= 0, x < geo.w)
        return tirx.if_then_else(inside, data[n, c, y, x], tirx.const(0, data.dtype))

    return te.compute((geo.n, geo.c * geo.plane), at, name=INPUT_BLOCK,
                      attrs={SPLIT_KEY: [geo.kw * geo.sh, geo.hs, geo.ws]})


def _sparse_conv(data, geo: Geometry, axes, term, out_dtype: str, name: str,
                 layout: str) -> te.Tensor:
    """out[n, o, y, x] = sum over `axes` of weight * flat[n, base(o) + offset + y*ws + x],
    (weight, offset) = term(o, *axes)."""
    groups_base = None
    if geo.c != geo.cg:  # grouped: the input channels of o's group start at its base
        og = geo.o // (geo.c // geo.cg)
        groups_base = lambda o: (o // og) * (geo.cg * geo.plane)  # noqa: E731
    flat = flat_input(data, geo)

    def body(n, o, y, x):
        weight, offset = term(o, *axes)
        base = offset + y * geo.ws + x
        if groups_base is not None:
            base = base + groups_base(o)
        return te.sum(weight * flat[n, base].astype(out_dtype), axis=list(axes))

    return te.compute((geo.n, geo.o, geo.oh, geo.ow), body, name=name, tag=name,
                      attrs={PRIMITIVE_KEY: SPARSE_PRIMITIVE, LAYOUT_KEY: layout})


def ell_group(rows: int, bo: int = 1) -> int:
    """Block rows of `bo` channels per ELL group of a layer with `rows` block rows."""
    return largest_divisor(rows, max(1, GROUP // bo))


def conv2d_direct_csr(data: te.Tensor, values: te.Tensor, offsets: te.Tensor, weight_shape,
                      strides, padding, dilation, groups: int = 1,
                      out_dtype: str | None = None) -> te.Tensor:
    """NCHW conv2d with a CSR weight of the OIHW shape `weight_shape` stored ELL-style
    (sparse_format.to_ell, group ell_group(O)): values[O/group, max_row, group],
    offsets[O/group, max_row, group] (window_offsets of the column indices)."""
    geo = geometry(data.shape, weight_shape, strides, padding, dilation)
    out_dtype = out_dtype or data.dtype
    group = int(values.shape[2])

    def term(o, j):
        at = (o // group, j, o % group)
        return values[at].astype(out_dtype), offsets[at]

    return _sparse_conv(data, geo, [te.reduce_axis((0, int(values.shape[1])), name="j")],
                        term, out_dtype, "conv2d_direct_csr", "csr")


def conv2d_direct_bsr(data: te.Tensor, values: te.Tensor, offsets: te.Tensor, weight_shape,
                      strides, padding, dilation, groups: int = 1,
                      out_dtype: str | None = None) -> te.Tensor:
    """NCHW conv2d with a BSR weight stored ELL-style by block rows (group ell_group(O/bo,
    bo)): values[O/bo/group, max_row, group, bo, bk], offsets[O/bo/group, max_row, group,
    bk] (window_offsets of each block's bk columns)."""
    geo = geometry(data.shape, weight_shape, strides, padding, dilation)
    group, bo, bk = (int(d) for d in values.shape[2:])
    out_dtype = out_dtype or data.dtype

    def term(o, jb, kk):
        at = (o // bo // group, jb, o // bo % group)
        return values[(*at, o % bo, kk)].astype(out_dtype), offsets[(*at, kk)]

    axes = [te.reduce_axis((0, int(values.shape[1])), name="jb"),
            te.reduce_axis((0, bk), name="kk")]
    return _sparse_conv(data, geo, axes, term, out_dtype, "conv2d_direct_bsr",
                        f"bsr{bo}x{bk}")
