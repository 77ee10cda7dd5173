"""Blocked activations between int8 convolutions: NCHW[L]c from one dot-product conv to the
next, converted only where the graph leaves them.

An int8 conv on the integer dot-product instructions computes on NCHW[ib]c input and
produces [n, O/L, OH, OW, L] int32 (dlas/primitives/int8_compute.py, L the instruction's
output lanes). In an NCHW graph every such conv re-lays its input (pad, shift, and a
channel interleave that reads 4..16 rows at once) and unpacks its output to NCHW inside
its epilogue (a transpose of the accumulator tile). Profiled on int8 resnet18@32 (Zen 4,
2 threads), the NCHW -> NCHW4c input pack alone took ~48 us of the ~250 us 64-channel
3x3 conv.

This pass asks TVM's ConvertLayout for NCHW[L]c data and output on every conv that takes
the dot-product path (int8, groups 1, constant OIHW weight, static shapes; data or output
blocked where its channels are whole blocks). The element-wise requantization between
convs (rescale, bias, residual add, ReLU, quantize) follows the layout, so the next conv
reads the previous one's blocked int8 output: its pack is only the pad and the +128 shift,
contiguous rows, and the epilogue writes whole vectors of L channels. Layout transforms
stay only at the graph's edges and around ops that keep NCHW (the 3-channel stem's input,
depthwise convs, the flatten before the classifier). Every value is the same: the ops
compute the same arithmetic on re-indexed tensors, so the result is bit-exact.

Relax's `clip` has no layout rule for a sub-indexed layout (ConvertLayout would put the
quantize's clip back in NCHW, with two transforms around it), so clips are first written
as the minimum/maximum TVM's clip computes (topi: max(min(x, hi), lo)).
"""
from __future__ import annotations

import tvm
from tvm import relax
from tvm.ir.expr import Constant

from dlas.primitives.legalize_utils import is_nchw, static_shape

CONV2D = "relax.nn.conv2d"


def dot_conv_layouts(call: relax.Call, lanes: int) -> list[str] | None:
    """[data, kernel, output] layouts for a conv2d call that takes the int8 dot-product path
    (int8_legalize.int8_dot_path's conditions): NCHW[lanes]c for data and output where
    their channels are whole blocks; None for any other call."""
    if getattr(call.op, "name", "") != CONV2D or not is_nchw(call.attrs):
        return None
    data, weight = call.args
    if str(data.ty.dtype) != "int8" or not isinstance(weight, Constant) \
            or str(weight.ty.dtype) != "int8" or int(call.attrs.groups) != 1 \
            or str(call.attrs.out_dtype or call.ty.dtype) != "int32":
        return None
    dshape, oshape = static_shape(data.ty.shape), static_shape(call.ty.shape)
    if dshape is None or oshape is None:
        return None
    block = f"NCHW{lanes}c"
    return [block if dshape[1] % lanes == 0 else "NCHW", "OIHW",
            block if oshape[1] % lanes == 0 else "NCHW"]


def _blocked_convs(func: relax.Function, lanes: int) -> int:
    found = []

    def visit(expr) -> None:
        if isinstance(expr, relax.Call):
            layouts = dot_conv_layouts(expr, lanes)
            if layouts is not None and layouts != ["NCHW", "OIHW", "NCHW"]:
                found.append(expr)

    relax.analysis.post_order_visit(func, visit)
    return len(found)


@relax.expr_functor.mutator
class _ClipAsMinMax(relax.PyExprMutator):
    def visit_call_(self, call: relax.Call) -> relax.Expr:
        call = super().visit_call_(call)
        if getattr(call.op, "name", "") != "relax.clip":
            return call
        x, lo, hi = call.args
        dtype = str(call.ty.dtype)
        return relax.op.maximum(relax.op.minimum(x, relax.const(hi.value, dtype)),
                                relax.const(lo.value, dtype))


def blocked_int8_layout(lanes: int) -> tvm.transform.Pass:
    """The pass (module doc) for a target whose dot-product instruction has `lanes` output
    lanes; a module without a conv it would block is returned unchanged."""

    def layouts(call: relax.Call) -> dict[str, list[str]]:
        if getattr(call.op, "name", "") != CONV2D:
            return {}
        # any other conv2d (depthwise, float) stays NCHW, whatever its input's layout
        return {CONV2D: dot_conv_layouts(call, lanes) or ["NCHW", "OIHW", "NCHW"]}

    @tvm.transform.module_pass(opt_level=0, name="DLASBlockedInt8Layout")
    def transform(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        funcs = [(gv, f) for gv, f in mod.functions_items() if isinstance(f, relax.Function)]
        if not any(_blocked_convs(f, lanes) for _, f in funcs):
            return mod
        mod = mod.clone() if hasattr(mod, "clone") else tvm.IRModule(mod.functions, mod.attrs)
        for gv, func in funcs:
            mod[gv] = _ClipAsMinMax().visit_expr(func)
        return relax.transform.ConvertLayout({}, layouts)(mod)

    return transform
