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
contiguous rows, and the epilogue writes whole vectors of L channels. A conv whose input
comes from another conv2d (depthwise, grouped, float), or whose output goes to one, keeps
NCHW on that side: a layout transform there would be a stand-alone transpose kernel (on
MobileNetV2 ~0.5 ms of int8 transposes around its depthwise convs), where the conv's
in-kernel pack or unpack does the same re-lay at no extra pass. Transforms are left only at
the graph's edges (the stem's 3-channel input stays NCHW; the flatten before the
classifier). Every value is the same: the ops compute the same arithmetic on re-indexed
tensors, so the result is bit-exact.

Relax's `clip` has no layout rule for a sub-indexed layout (ConvertLayout would put the
quantize's clip back in NCHW, with two transforms around it), so clips are first written
as the minimum/maximum TVM's clip computes (topi: max(min(x, hi), lo)).
"""
from __future__ import annotations

import hashlib

import tvm
from tvm import relax
from tvm.ir.expr import Constant

from dlas.primitives.int8_legalize import dot_operands
from dlas.primitives.legalize_utils import is_nchw, static_shape

CONV2D = "relax.nn.conv2d"


def dot_conv_layouts(call: relax.Call, lanes: int) -> list[str] | None:
    """[data, kernel, output] layouts for a conv2d call that takes the int8 dot-product path
    (int8_legalize.int8_dot_path's conditions): NCHW[lanes]c for data and output where
    their channels are whole blocks; None for any other call."""
    if getattr(call.op, "name", "") != CONV2D or not is_nchw(call.attrs) \
            or not dot_operands(call) or not isinstance(call.args[1], Constant):
        return None
    dshape, oshape = static_shape(call.args[0].ty.shape), static_shape(call.ty.shape)
    if oshape is None:
        return None
    block = f"NCHW{lanes}c"
    return [block if dshape[1] % lanes == 0 else "NCHW", "OIHW",
            block if oshape[1] % lanes == 0 else "NCHW"]


# ops the blocked layout passes through between convs (the requantization's)
ELEMENTWISE = {f"relax.{op}" for op in ("astype", "multiply", "add", "subtract", "divide",
                                        "round", "minimum", "maximum", "clip", "nn.relu")}


def _key(weight: Constant) -> str:
    """What names a conv across ConvertLayout's rewrite: its constant weight's bytes."""
    value = weight.value.numpy()
    return hashlib.sha1(value.tobytes() + repr(value.shape).encode()).hexdigest()


def _nchw_sides(func: relax.Function, lanes: int) -> tuple[set, set]:
    """Keys (_key of their weights) of the dot-product convs whose input comes from, and
    of those whose output goes to, the graph's edge or another conv2d (depthwise, grouped,
    float) through element-wise ops only. That side stays NCHW: a transform there would be
    a stand-alone transpose kernel, where the conv's in-kernel pack or unpack does the same
    re-lay at no extra pass over the tensor (MobileNetV2's 1x1s around its depthwise convs;
    a lone conv)."""
    bound, users = {}, {}
    for block in func.body.blocks:
        for binding in block.bindings:
            value = bound[binding.var] = binding.value
            args = (value.args if isinstance(value, relax.Call) else
                    value.fields if isinstance(value, relax.Tuple) else [value])
            for arg in args:
                if isinstance(arg, relax.Var):
                    users.setdefault(arg, []).append(binding.var)
    params, result = set(func.params), func.body.body

    def is_other_conv(value) -> bool:
        return (isinstance(value, relax.Call) and getattr(value.op, "name", "") == CONV2D
                and dot_conv_layouts(value, lanes) is None)

    def reaches_edge(start: relax.Var, upward: bool) -> bool:
        seen, todo = set(), [start]
        while todo:
            var = todo.pop()
            if var in seen:
                continue
            seen.add(var)
            value = bound.get(var)
            if var in params or var.same_as(result) or is_other_conv(value):
                return True
            if isinstance(value, relax.Var | relax.Tuple):  # (a tuple: the outputs)
                todo += [value] if upward and isinstance(value, relax.Var) \
                    else users.get(var, [])
            elif isinstance(value, relax.Call) \
                    and getattr(value.op, "name", "") in ELEMENTWISE:
                todo += ([a for a in value.args if isinstance(a, relax.Var)] if upward
                         else users.get(var, []))
        return False

    data_nchw, out_nchw = set(), set()
    for var, value in bound.items():
        if isinstance(value, relax.Call) and dot_conv_layouts(value, lanes) is not None:
            key = _key(value.args[1])
            data = value.args[0]
            if isinstance(data, relax.Var) and reaches_edge(data, upward=True):
                data_nchw.add(key)
            if var.same_as(result) or any(reaches_edge(user, upward=False)
                                          for user in users.get(var, [])):
                out_nchw.add(key)
    return data_nchw, out_nchw


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

    nchw = ["NCHW", "OIHW", "NCHW"]
    from_other, to_other = set(), set()  # (_nchw_sides of the module being transformed)

    def layouts(call: relax.Call) -> dict[str, list[str]]:
        if getattr(call.op, "name", "") != CONV2D:
            return {}
        found = dot_conv_layouts(call, lanes)
        if found is None:  # any other conv2d stays NCHW, whatever its input's layout
            return {CONV2D: nchw}
        key = _key(call.args[1])
        data = "NCHW" if key in from_other else found[0]
        return {CONV2D: [data, "OIHW", "NCHW" if key in to_other else found[2]]}

    @tvm.transform.module_pass(opt_level=0, name="DLASBlockedInt8Layout")
    def transform(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        funcs = [(gv, f) for gv, f in mod.functions_items() if isinstance(f, relax.Function)]
        if not any(_blocked_convs(f, lanes) for _, f in funcs):
            return mod
        from_other.clear()
        to_other.clear()
        out = tvm.IRModule({})
        for gv, func in mod.functions_items():
            if isinstance(func, relax.Function):
                func = _ClipAsMinMax().visit_expr(func)
                sides = _nchw_sides(func, lanes)
                from_other.update(sides[0])
                to_other.update(sides[1])
            out[gv] = func
        out = out.with_attrs(mod.attrs) if mod.attrs is not None else out
        return relax.transform.ConvertLayout({}, layouts)(out)

    return transform
