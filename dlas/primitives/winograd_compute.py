"""The `winograd` primitive's compute: a 3x3, stride 1 conv2d by Winograd's minimal filtering
F(m x m, 3 x 3) (Lavin and Gray, arXiv:1509.09308): each output tile of m x m pixels comes
from an alpha x alpha input tile, alpha = m + 2:

  V[a, b, p, c]   = (B^T d B)[a, b]          d: input tile p of channel c (padded NCHW data)
  U[a, b, o, c]   = (G g G^T)[a, b]          g: the 3x3 weight, transformed at compile time
  M[a, b, p, o]   = sum_c V[a, b, p, c] * U[a, b, o, c]      alpha^2 GEMMs (the conv block)
  out[n, o, y, x] = (A^T M[., ., p, o] A)[y % m, x % m]      p: the tile holding (y, x)

so each output costs alpha^2 / m^2 * C multiply-adds in the GEMMs instead of 9 * C: 2.25x
fewer for m = 2, 4x for m = 4, plus the transforms (a few operations per input and output
element, not per channel pair). The price is rounding: the transforms' coefficients (up to
8 for m = 4) scale the float error, see tests/primitives/winograd_reference.py.

U is laid out [alpha, alpha, O/ob, C, ob] (ob output channels contiguous: the GEMM's vector
over output channels streams one block of it per tile, like direct's OIHW{b}o). The
transforms are written as explicit sums of their matrices' non-zero entries, one sum per
row chosen by a Select on the index in the tile: once the schedule unrolls those indices
each output is its own short sum (a multiply by a zero entry never happens: LLVM keeps
x * 0.0, which is not 0 for inf or NaN). Two passes each (rows, then columns), so m = 4 costs
2 * 6 * 5 operations per input element pair instead of 6 * 6 * 25.
Transform matrices: TVM's Cook-Toom construction with its interpolation points
(topi.nn.winograd_util, the ones TVM's own Winograd schedules used).
"""
from __future__ import annotations

import functools

import numpy as np
from tvm import te, tirx, topi
from tvm.topi.nn.winograd_util import _cook_toom_convolution, _interpolation_points

from dlas.primitives.base import LAYOUT_KEY, PRIMITIVE_KEY
from dlas.primitives.legalize_utils import conv_ints

NAME = "winograd"
KERNEL = 3
# on every block: MetaSchedule's generic sketch rules leave them alone (TVM 0.27's rules
# crash on the transform blocks: "TensorRegion pattern match failed" in ReverseComputeAt,
# a crash of the whole search, not a failed candidate); tuning searches DLAS's schedule
SKETCHES_OFF = {"schedule_rule": "None"}


@functools.cache
def transform_matrices(m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(A [alpha, m], B [alpha, alpha], G [alpha, 3]) of F(m x m, 3 x 3), float64."""
    points = _interpolation_points(m + KERNEL - 2)
    a, b, g = _cook_toom_convolution(points, m, KERNEL)
    return (np.asarray(a, np.float64), np.asarray(b, np.float64), np.asarray(g, np.float64))


def transform_weight(weight: np.ndarray, m: int, ob: int, dtype: str) -> np.ndarray:
    """OIHW 3x3 weight -> U = G g G^T as [alpha, alpha, O/ob, C, ob] of `dtype`
    (computed in float64, rounded once)."""
    _, _, g = transform_matrices(m)
    o, c, _, _ = weight.shape
    u = np.einsum("ak,ockl,bl->aboc", g, weight.astype(np.float64), g, optimize=True)
    alpha = g.shape[0]
    return np.ascontiguousarray(u.reshape(alpha, alpha, o // ob, ob, c)
                                .transpose(0, 1, 2, 4, 3).astype(dtype))


def _weighted(column: np.ndarray, term, dtype: str) -> tirx.PrimExpr:
    """sum_i column[i] * term(i) over the non-zero entries (1 and -1 without a multiply)."""
    total = None
    for i, coef in enumerate(column):
        if coef == 0:
            continue
        value = term(i)
        if coef == -1:
            value = -value
        elif coef != 1:
            value = value * tirx.const(float(coef), dtype)
        total = value if total is None else total + value
    return total


def _by_index(index, exprs: list) -> tirx.PrimExpr:
    """exprs[index] as a chain of Selects (folded once `index` is an unrolled constant)."""
    out = exprs[-1]
    for k in range(len(exprs) - 2, -1, -1):
        out = tirx.Select(index == k, exprs[k], out)
    return out


def tile_geometry(oh: int, ow: int, m: int) -> tuple[int, int]:
    """Tiles per column and per row of an oh x ow output."""
    return -(-oh // m), -(-ow // m)


def conv2d_winograd(data: te.Tensor, weight: te.Tensor, padding, m: int,
                    out_dtype: str | None = None, channel_block: int = 16) -> te.Tensor:
    """NCHW conv2d, 3x3 kernel, stride 1, dilation 1, groups 1, of `data` with the
    transformed weight `weight` ([alpha, alpha, O/ob, C, ob], transform_weight); `padding`
    Relax's (top, left, bottom, right). The output must hold whole tiles (oh, ow multiples
    of m: the legalization picks m). Operands are cast to `out_dtype` (float16 -> float32).
    The padded input is first packed NCHW[k]c, k the largest divisor of C up to
    `channel_block` (one vector), so the input transform reads whole vectors of channels."""
    n_, c_, h_, w_ = (int(d) for d in data.shape)
    alpha, _, obs, _, ob = (int(d) for d in weight.shape)
    if alpha != m + KERNEL - 1:
        raise ValueError(f"conv2d_winograd: weight transformed for alpha={alpha}, not m={m}")
    o_ = obs * ob
    pt, pl, pb, pr = conv_ints(padding, 4, "padding", op="conv2d_winograd")
    oh, ow = h_ + pt + pb - KERNEL + 1, w_ + pl + pr - KERNEL + 1
    th, tw = tile_geometry(oh, ow, m)
    if (th * m, tw * m) != (oh, ow):
        raise ValueError(f"conv2d_winograd: output {oh}x{ow} is not whole {m}x{m} tiles")
    dtype = out_dtype or data.dtype
    a_mat, b_mat, _ = transform_matrices(m)
    if any((pt, pl, pb, pr)):
        data = topi.nn.pad(data, [0, 0, pt, pl], [0, 0, pb, pr], name="pad")
    tiles = n_ * th * tw
    k = max(b for b in range(1, min(c_, channel_block) + 1) if c_ % b == 0)
    _, _, hp, wp = (int(d) for d in data.shape)
    packed = te.compute((n_, c_ // k, hp, wp, k),
                        lambda n, cb, y, x, ci: data[n, cb * k + ci, y, x],
                        name="winograd_data_pack", attrs=SKETCHES_OFF)

    def at(p, c, i, j):  # input tile p of channel c, element (i, j)
        n, ty, tx = p // (th * tw), p // tw % th, p % tw
        return packed[n, c // k, ty * m + i, tx * m + j, c % k].astype(dtype)

    rows = te.compute(
        (alpha, alpha, tiles, c_),
        lambda a, j, p, c: _by_index(a, [_weighted(b_mat[:, k], lambda i: at(p, c, i, j), dtype)
                                         for k in range(alpha)]),
        name="winograd_input_rows", attrs=SKETCHES_OFF)
    v = te.compute(
        (alpha, alpha, tiles, c_),
        lambda a, b, p, c: _by_index(b, [_weighted(b_mat[:, k], lambda j: rows[a, j, p, c], dtype)
                                         for k in range(alpha)]),
        name="winograd_input", attrs=SKETCHES_OFF)
    rc = te.reduce_axis((0, c_), name="rc")
    gemm = te.compute(
        (alpha, alpha, tiles, o_),
        lambda a, b, p, o: te.sum(v[a, b, p, rc] * weight[a, b, o // ob, rc, o % ob].astype(dtype),
                                  axis=rc),
        name="winograd_gemm",
        attrs={PRIMITIVE_KEY: NAME, LAYOUT_KEY: f"winograd{m}:{ob}o", **SKETCHES_OFF})
    out_rows = te.compute(
        (alpha, m, tiles, o_),
        lambda a, x, p, o: _by_index(x, [_weighted(a_mat[:, k], lambda b: gemm[a, b, p, o], dtype)
                                         for k in range(m)]),
        name="winograd_output_rows", attrs=SKETCHES_OFF)

    def out(n, o, y, x):
        p = (n * th + y // m) * tw + x // m
        return _by_index(y % m, [_weighted(a_mat[:, k], lambda a: out_rows[a, x % m, p, o], dtype)
                                 for k in range(m)])

    return te.compute((n_, o_, oh, ow), out, name="conv2d_winograd", tag="conv2d_winograd",
                      attrs=SKETCHES_OFF)
