"""Inference clean-up of an imported Relax graph, computed in numpy.

TVM's FoldConstant evaluates each constant subexpression by compiling it with LLVM, which
costs ~0.1 s per op: 8 s for the batch-norms of mobilenet_v2 (and the dataflow-pattern
rewriter hashes every large constant it passes: seconds on vgg16). This one-pass mutator
does the usual cases directly on the constant arrays instead:

- reshape / permute_dims of a constant (the importer's bias reshapes and linear-weight
  transposes) become constants;
- batch_norm after conv2d (optionally conv2d + constant bias) with constant weight and
  statistics is folded into the conv weight and one bias add;
- any other inference batch_norm becomes `x * scale + shift` with constant scale/shift.

Arithmetic in float64, stored in the original dtype.
"""
from __future__ import annotations

import numpy as np
import torch
import tvm
from tvm import relax
from tvm.ir import Op
from tvm.ir.expr import Constant

from dlas.codegen.int8_reference import bn_scale_shift


def _const(value: np.ndarray, dtype) -> relax.Expr:
    return relax.const(np.ascontiguousarray(value.astype(str(dtype), copy=False)))


def transpose(value: np.ndarray, axes: list[int]) -> np.ndarray:
    # torch's copy kernels are blocked and threaded: numpy takes ~2 s on vgg16's 411 MB
    return torch.from_numpy(np.ascontiguousarray(value)).permute(axes).contiguous().numpy()


def _bn_scale_shift(bn: relax.Call, gamma, beta, mean, var):
    """Per-channel (scale, shift) in float64 of an inference batch_norm call (the integer
    reference computes an unfolded batch norm with the same function)."""
    attrs = bn.attrs
    return bn_scale_shift(gamma if attrs.scale else None, beta if attrs.center else None,
                          mean, var, float(attrs.epsilon))


@relax.expr_functor.mutator
class _Folder(relax.PyExprMutator):
    def _value(self, expr: relax.Expr) -> relax.Expr:
        while isinstance(expr, relax.Var):
            bound = self.lookup_binding(expr)
            if bound is None:
                break
            expr = bound
        return expr

    def _array(self, expr: relax.Expr) -> np.ndarray | None:
        expr = self._value(expr)
        return expr.value.numpy() if isinstance(expr, Constant) else None

    def _call(self, expr: relax.Expr, name: str) -> relax.Call | None:
        expr = self._value(expr)
        if isinstance(expr, relax.Call) and isinstance(expr.op, Op) and expr.op.name == name:
            return expr
        return None

    def visit_call_(self, call: relax.Call) -> relax.Expr:
        call = self.visit_expr_post_order(call)
        if not isinstance(call, relax.Call) or not isinstance(call.op, Op):
            return call
        name = call.op.name
        if name in ("relax.reshape", "relax.permute_dims"):
            value = self._array(call.args[0])
            if value is not None:
                if name == "relax.reshape":
                    value = value.reshape([int(d) for d in call.ty.shape])
                else:
                    axes = call.attrs.axes
                    axes = (list(reversed(range(value.ndim))) if axes is None
                            else [int(a) for a in axes])
                    value = transpose(value, axes)
                return _const(value, call.ty.dtype)
        return call

    def visit_tuple_getitem_(self, op: relax.TupleGetItem) -> relax.Expr:
        op = self.visit_expr_post_order(op)
        bn = self._call(op.tuple_value, "relax.nn.batch_norm") if int(op.index) == 0 else None
        params = [self._array(a) for a in bn.args[1:]] if bn is not None else [None]
        if any(p is None for p in params):
            return op
        scale, shift = _bn_scale_shift(bn, *params)
        dtype, ndim, axis = op.ty.dtype, len(op.ty.shape), int(bn.attrs.axis)
        folded = self._fold_into_conv(bn.args[0], scale, shift, dtype) if axis == 1 else None
        if folded is not None:
            return folded
        shape = [1] * ndim
        shape[axis % ndim] = -1
        return relax.op.add(relax.op.multiply(bn.args[0], _const(scale.reshape(shape), dtype)),
                            _const(shift.reshape(shape), dtype))

    def _fold_into_conv(self, data, scale, shift, dtype) -> relax.Expr | None:
        """conv2d(x, W) [+ bias] followed by the batch-norm -> conv2d(x, W') + bias'."""
        bias = np.zeros(scale.shape)
        add = self._call(data, "relax.add")
        if add is not None:
            value = self._array(add.args[1])
            if value is None or value.size != scale.size:
                return None
            bias, data = value.reshape(-1).astype(np.float64), add.args[0]
        conv = self._call(data, "relax.nn.conv2d")
        weight = self._array(conv.args[1]) if conv is not None else None
        if weight is None or (conv.attrs.kernel_layout, conv.attrs.out_layout) != ("OIHW", "NCHW"):
            return None
        new_w = weight.astype(np.float64) * scale.reshape(-1, 1, 1, 1)
        out = relax.Call(conv.op, [conv.args[0], _const(new_w, weight.dtype)], conv.attrs)
        return relax.op.add(out, _const((bias * scale + shift).reshape(1, -1, 1, 1), dtype))


@relax.transform.function_pass(opt_level=0, name="DLASFoldInferenceConstants")
class FoldInferenceConstants:
    """Shape ops on constants and inference batch-norms, folded in numpy (see module doc).
    Leaves the unfolded originals as dead bindings: run DeadCodeElimination after it."""

    def transform_function(self, func: relax.Function, mod: tvm.IRModule, _ctx):
        if not isinstance(func, relax.Function):
            return func
        return _Folder(mod).visit_expr(func)
