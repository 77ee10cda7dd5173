"""Blocked activations between convolutions: NCHW[L]c from one conv to the next, converted
only where the graph leaves them; the pass the int8 dot-product convs (int8_layout.py) and
`direct`'s float convs (primitives/direct_blocked.py) share.

It asks TVM's ConvertLayout for the layouts a predicate gives each conv2d it takes (data
and output NCHW[L]c where their channels are whole blocks). The element-wise ops between
convs (a requantization's rescale, bias, residual add, ReLU, quantize; a float epilogue's
bias, ReLU6, residual add) follow the layout, so the next conv reads the previous one's
blocked output. A conv whose input comes from a conv2d the pass does not take, or whose
output goes to one, keeps NCHW on that side: a layout transform there would be a
stand-alone transpose kernel, where the conv's in-kernel pack or unpack does the same
re-lay at no extra pass. Transforms are left only at the graph's edges (the stem's
3-channel input stays NCHW; the flatten before the classifier). Every value is the same:
the ops compute the same arithmetic on re-indexed tensors.

Relax's `clip` has no layout rule for a sub-indexed layout (ConvertLayout would put a
clip back in NCHW, with two transforms around it), so clips are first written as the
minimum/maximum TVM's clip computes (topi: max(min(x, hi), lo)).
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable

import tvm
from tvm import relax
from tvm.ir.expr import Constant

CONV2D = "relax.nn.conv2d"
# [data, kernel, output] layouts of a conv2d call the pass blocks, None for any other
Layouts = Callable[[relax.Call], "list[str] | None"]


# ops the blocked layout passes through between convs (a requantization's, a float epilogue's)
ELEMENTWISE = {f"relax.{op}" for op in ("astype", "multiply", "add", "subtract", "divide",
                                        "round", "minimum", "maximum", "clip", "nn.relu")}


def _key(weight: Constant) -> str:
    """What names a conv across ConvertLayout's rewrite: its constant weight's bytes."""
    value = weight.value.numpy()
    return hashlib.sha1(value.tobytes() + repr(value.shape).encode()).hexdigest()


def _nchw_sides(func: relax.Function, conv_layouts: Layouts) -> tuple[set, set]:
    """Keys (_key of their weights) of the convs the pass blocks whose input comes from, and
    of those whose output goes to, the graph's edge or another conv2d (one the pass does not
    block) through element-wise ops only. That side stays NCHW: a transform there would be
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
                and conv_layouts(value) is None)

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
        if isinstance(value, relax.Call) and conv_layouts(value) is not None:
            key = _key(value.args[1])
            data = value.args[0]
            if isinstance(data, relax.Var) and reaches_edge(data, upward=True):
                data_nchw.add(key)
            if var.same_as(result) or any(reaches_edge(user, upward=False)
                                          for user in users.get(var, [])):
                out_nchw.add(key)
    return data_nchw, out_nchw


def _blocked_convs(func: relax.Function, conv_layouts: Layouts) -> int:
    found = []

    def visit(expr) -> None:
        if isinstance(expr, relax.Call):
            layouts = conv_layouts(expr)
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


def blocked_layout(conv_layouts: Layouts, name: str) -> tvm.transform.Pass:
    """The pass (module doc) blocking the convs `conv_layouts` gives layouts for; a module
    without a conv it would block is returned unchanged."""

    from_other, to_other = set(), set()  # (_nchw_sides of the module being transformed)

    def layouts(call: relax.Call) -> dict[str, list[str]]:
        if getattr(call.op, "name", "") != CONV2D:
            return {}
        found = conv_layouts(call)
        if found is None:  # any other conv2d keeps its layouts, whatever its input's
            attrs = call.attrs
            return {CONV2D: [attrs.data_layout, attrs.kernel_layout, attrs.out_layout]}
        key = _key(call.args[1])
        data = "NCHW" if key in from_other else found[0]
        return {CONV2D: [data, found[1], "NCHW" if key in to_other else found[2]]}

    @tvm.transform.module_pass(opt_level=0, name=name)
    def transform(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        funcs = [(gv, f) for gv, f in mod.functions_items() if isinstance(f, relax.Function)]
        if not any(_blocked_convs(f, conv_layouts) for _, f in funcs):
            return mod
        from_other.clear()
        to_other.clear()
        out = tvm.IRModule({})
        for gv, func in mod.functions_items():
            if isinstance(func, relax.Function):
                func = _ClipAsMinMax().visit_expr(func)
                sides = _nchw_sides(func, conv_layouts)
                from_other.update(sides[0])
                to_other.update(sides[1])
            out[gv] = func
        out = out.with_attrs(mod.attrs) if mod.attrs is not None else out
        return relax.transform.ConvertLayout({}, layouts)(out)

    return transform
