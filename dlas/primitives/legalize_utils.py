"""Small helpers shared by the conv2d primitives' legalizations (direct, gemm, spatial_pack)
and their TE computes: static shapes, constant weights, the per-layer sparse-or-dense
choice, conv attribute lists, the BSR block setting."""
from __future__ import annotations

import numpy as np
from tvm import relax, tirx
from tvm.ir.expr import Constant

from dlas.errors import DLASError
from dlas.primitives.sparse_format import weight_sparsity


def static_shape(shape) -> list[int] | None:
    """`shape` as ints, None when any dimension is symbolic."""
    dims = [d.value if isinstance(d, tirx.IntImm) else d for d in shape]
    return dims if all(isinstance(d, int) for d in dims) else None


def constant_array(bb: relax.BlockBuilder, expr: relax.Expr) -> np.ndarray | None:
    """The value of the constant behind `expr` (directly, or a variable bound to one)."""
    if isinstance(expr, relax.Var):
        expr = bb.lookup_binding(expr) or expr
    return expr.value.numpy() if isinstance(expr, Constant) else None


def is_nchw(attrs) -> bool:
    """Whether a relax.nn.conv2d call's layouts are the NCHW/OIHW the primitives compute."""
    return (attrs.data_layout, attrs.kernel_layout, attrs.out_layout) == ("NCHW", "OIHW", "NCHW")


def layout_fallback(attrs) -> str:
    """The fallback reason recorded for a conv2d left to TVM's own legalization."""
    return f"{attrs.data_layout}/{attrs.kernel_layout} layout: TVM's conv2d"


def takes_sparse(value: np.ndarray | None, format: str, threshold: float) -> bool:
    """The per-layer choice: a sparse `format` for a constant weight whose sparsity reaches
    `threshold`; every other layer is computed dense."""
    return format != "dense" and value is not None and weight_sparsity(value) >= threshold


def parse_block(block) -> tuple[int, int]:
    """The `block` setting (BSR tile [bo, bk]) as two positive ints, DLASError otherwise."""
    try:
        bo, bk = (int(b) for b in block)
    except (TypeError, ValueError):
        bo = bk = 0
    if bo < 1 or bk < 1:
        raise DLASError("primitive.block", block, "two positive integers [bo, bk]",
                        layer="primitive")
    return bo, bk


def conv_ints(values, n: int, what: str, op: str) -> list[int]:
    """A conv attribute (strides, padding...) as `n` ints, one value repeated n times;
    ValueError naming `op` otherwise."""
    vals = [int(v) for v in values] if hasattr(values, "__len__") else [int(values)]
    if len(vals) == 1:
        vals = vals * n
    if len(vals) != n:
        raise ValueError(f"{op}: {what} needs {n} values, got {vals}")
    return vals
