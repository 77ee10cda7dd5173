"""Which int8 convolutions read activations that cannot be negative.

A quantized activation that comes out of a ReLU (or ReLU6, or a max pool, a residual sum or a
concatenation of such) is an int8 in [0, 127]. The x86 dot-product instructions multiply
unsigned bytes by signed ones, so such an input needs neither the +128 shift and its
compensation nor avx2's sign trick (dlas/primitives/int8_intrin.py): its bytes go in as
they are. This is a sign analysis of the Relax graph just before legalization: an
expression is non-negative when its op keeps a non-negative operand so (relu, a clip or
maximum with a bound >= 0, a product or sum of non-negatives, pooling, layout changes,
casts between types that hold its values). Anything it does not know is assumed signed, so
a conv is only ever given the unsigned form where every value provably fits it.
"""
from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.ir.expr import Constant

from dlas.codegen.int8_layout import CONV2D
from dlas.primitives.int8_legalize import nonnegative_inputs

ALWAYS = {"relax.nn.relu", "relax.sigmoid", "relax.exp"}
# ops whose result is non-negative when all their tensor operands are
# (not divide: 0 / 0 is NaN)
ALL_OPERANDS = {"relax.add", "relax.multiply", "relax.minimum",
                "relax.round", "relax.floor", "relax.ceil", "relax.nn.max_pool2d",
                "relax.nn.avg_pool2d", "relax.nn.adaptive_avg_pool2d", "relax.mean",
                "relax.sum", "relax.max", "relax.layout_transform", "relax.reshape",
                "relax.permute_dims", "relax.flatten", "relax.squeeze", "relax.expand_dims",
                "relax.strided_slice", "relax.concat", "relax.image.resize2d"}
INTEGER_BITS = {"int8": 7, "int16": 15, "int32": 31, "int64": 63,
                "uint8": 8, "uint16": 16, "uint32": 32, "uint64": 64}


def nonnegative_conv_inputs(func: relax.Function) -> set[tuple[relax.Expr, Constant]]:
    """(data, weight) of the conv2d calls in `func` with a constant weight whose int8 data
    operand is provably >= 0 (the module doc's rules). The pair, not the weight alone: two
    calls can share a weight (a module applied twice) and not their input's sign."""
    bound = {b.var: b.value for block in func.body.blocks for b in block.bindings}
    memo: dict = {}

    def nonneg(expr) -> bool:
        if isinstance(expr, relax.Var):
            if expr not in memo:
                memo[expr] = False  # (a cycle cannot happen in dataflow; be safe anyway)
                memo[expr] = expr in bound and nonneg(bound[expr])
            return memo[expr]
        if isinstance(expr, Constant):
            value = expr.value.numpy()
            return value.size == 0 or bool(np.min(value) >= 0)
        if isinstance(expr, relax.Tuple):
            return all(nonneg(field) for field in expr.fields)
        if not isinstance(expr, relax.Call):
            return False
        name = getattr(expr.op, "name", "")
        tensors = [a for a in expr.args  # (not a clip's bounds, a reshape's shape)
                   if isinstance(a, relax.Var | relax.Call | relax.Tuple | Constant)]
        if name in ALWAYS:
            return True
        if name == "relax.clip":
            return _prim_value(expr.args[1]) >= 0 or nonneg(expr.args[0])
        if name == "relax.maximum":
            return any(nonneg(a) for a in tensors)
        if name == "relax.astype":
            return _keeps_values(str(expr.args[0].ty.dtype), str(expr.ty.dtype)) \
                and nonneg(expr.args[0])
        if name in ALL_OPERANDS:
            return bool(tensors) and all(nonneg(a) for a in tensors)
        return False

    found = set()
    for value in bound.values():
        if isinstance(value, relax.Call) and getattr(value.op, "name", "") == CONV2D \
                and str(value.args[0].ty.dtype) == "int8" \
                and isinstance(value.args[1], Constant) and nonneg(value.args[0]):
            found.add((value.args[0], value.args[1]))
    return found


def legalize_ops(legalize: dict) -> tvm.transform.Pass:
    """relax.transform.LegalizeOps with `legalize`'s hooks, told which convs read
    activations >= 0 (int8_legalize.nonnegative_inputs), found in the module it runs on."""
    inner = relax.transform.LegalizeOps(legalize)

    @tvm.transform.module_pass(opt_level=0, name="DLASLegalizeOps")
    def transform(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        convs = set()
        for _, func in mod.functions_items():
            if isinstance(func, relax.Function):
                convs |= nonnegative_conv_inputs(func)
        with nonnegative_inputs(convs):
            return inner(mod)

    return transform


def _prim_value(value) -> float:
    """A clip bound (a PrimValue or an immediate) as a number; -inf when not a constant."""
    value = getattr(value, "value", value)
    value = getattr(value, "value", value)
    return float(value) if isinstance(value, int | float) else float("-inf")


def _keeps_values(source: str, target: str) -> bool:
    """Whether a cast from `source` to `target` keeps every non-negative value it is given
    non-negative: to a float, or from a float or integer to an integer type at least as
    wide (a float to int cast out of range is undefined either way; the quantize's clip
    comes before it)."""
    if target.startswith(("float", "bfloat")):
        return True
    if target not in INTEGER_BITS:
        return False
    if source.startswith(("float", "bfloat")):
        return True
    return source in INTEGER_BITS and INTEGER_BITS[source] <= INTEGER_BITS[target]
