"""Fully connected layers: matmul with a constant weight, re-laid in column blocks.

After import and constant folding a linear layer is `matmul(x[M, K], W[K, N])` with W a
constant. Read as is, each step of the reduction touches one short row piece of W per
output block, one page apart: vgg16's 25088x4096 classifier weight then streams from DRAM
several times slower than it could. Blocking W as [N/b, K, b] makes the weights of an
output block one contiguous stream, and the default ReductionTile schedule vectorises over
b with the reduction outside. Everything else keeps TVM's own legalization.
"""
from __future__ import annotations

from tvm import relax, te
from tvm.relax.transform.legalize_ops.linear_algebra import _matmul

from dlas.codegen.graph import transpose
from dlas.primitives.base import PRIMITIVE_KEY
from dlas.primitives.legalize_utils import constant_array, static_shape

BLOCKS = (32, 16, 8)


def matmul_blocked(x: te.Tensor, weight: te.Tensor, out_dtype: str) -> te.Tensor:
    """x[M, K] @ W where `weight` is W[K, N] blocked as [N/b, K, b]."""
    m, k = x.shape
    nb, _, b = weight.shape
    r = te.reduce_axis((0, k), name="k")
    blocked = te.compute(
        (m, nb, b),
        lambda i, jb, jj: te.sum(x[i, r].astype(out_dtype) * weight[jb, r, jj].astype(out_dtype),
                                 axis=r),
        name="matmul_blocked", attrs={PRIMITIVE_KEY: "dense"})
    return te.compute((m, nb * b), lambda i, j: blocked[i, j // b, j % b], name="matmul_unblock")


def legalize_matmul(bb: relax.BlockBuilder, call: relax.Call) -> relax.Expr:
    """LegalizeOps hook for relax.matmul: 2-D x times a constant 2-D weight -> blocked."""
    x, weight = call.args
    value, shape = constant_array(bb, weight), static_shape(x.ty.shape)
    if value is None or shape is None or len(shape) != 2:
        return _matmul(bb, call)
    block = next((b for b in BLOCKS if value.ndim == 2 and value.shape[1] % b == 0), None)
    if block is None:
        return _matmul(bb, call)
    k, n = value.shape
    packed = transpose(value.reshape(k, n // block, block), [1, 0, 2])
    out_dtype = str(call.attrs.out_dtype or call.ty.dtype)
    return bb.call_te(matmul_blocked, call.args[0], relax.const(packed), out_dtype,
                      primfunc_name_hint="matmul_blocked")


def dense_legalize_map() -> dict:
    return {"relax.matmul": legalize_matmul}
