"""The `direct` primitive: legalization of relax.nn.conv2d to `conv2d_direct` (see
direct_compute.py for the compute and the weight layouts, direct_schedule.py for its
default schedule)."""
from __future__ import annotations

import functools
import logging
from collections.abc import Callable

import numpy as np
from tvm import relax, tirx
from tvm.ir.expr import Constant
from tvm.relax.transform.legalize_ops.nn import _nn_conv2d
from tvm.s_tir.dlight import ScheduleRule
from tvm.target import Target

from dlas.primitives.base import LegalizeFunc, Primitive
from dlas.primitives.direct_compute import block_weight, block_weight_te, conv2d_direct
from dlas.primitives.direct_schedule import direct_conv2d_rule

log = logging.getLogger(__name__)


def _static(shape) -> list[int] | None:
    dims = [d.value if isinstance(d, tirx.IntImm) else d for d in shape]
    return dims if all(isinstance(d, int) for d in dims) else None


def _constant_array(bb: relax.BlockBuilder, expr: relax.Expr) -> np.ndarray | None:
    """The value of the constant behind `expr` (directly, or a variable bound to one)."""
    if isinstance(expr, relax.Var):
        expr = bb.lookup_binding(expr) or expr
    return expr.value.numpy() if isinstance(expr, Constant) else None


def legalize_conv2d_direct(bb: relax.BlockBuilder, call: relax.Call,
                           record: Callable[..., None] = lambda **_: None) -> relax.Expr:
    """LegalizeOps hook for relax.nn.conv2d: emit `conv2d_direct` (NCHW/OIHW graphs).
    `record` (Primitive.count_layer) is told how each layer was computed."""
    attrs = call.attrs
    data, weight = call.args
    if (attrs.data_layout, attrs.kernel_layout, attrs.out_layout) != ("NCHW", "OIHW", "NCHW"):
        log.info("direct: %s/%s conv2d left to TVM's own legalization",
                 attrs.data_layout, attrs.kernel_layout)
        record(fallback=f"{attrs.data_layout}/{attrs.kernel_layout} layout: TVM's conv2d")
        return _nn_conv2d(bb, call)
    record()
    wshape = _static(weight.ty.shape)
    groups = int(attrs.groups)
    kernel_layout = "OIHW"
    block = next((b for b in (32, 16, 8, 4) if wshape and wshape[0] % b == 0), None)
    if groups == 1 and block is not None:
        kernel_layout = f"OIHW{block}o"
        value = _constant_array(bb, weight)
        if value is not None:  # re-lay now rather than in every inference
            weight = relax.const(block_weight(value, block))
        else:
            weight = bb.emit_te(block_weight_te, weight, block,
                                primfunc_name_hint="conv2d_weight_blocked")
    out_dtype = attrs.out_dtype or call.ty.dtype
    return bb.call_te(conv2d_direct, data, weight, attrs.strides, attrs.padding, attrs.dilation,
                      groups, str(out_dtype), kernel_layout, primfunc_name_hint="conv2d_direct")


class Direct(Primitive):
    """Direct convolution, dense weights (config: conf/primitive/direct.yaml)."""

    formats = ("dense",)

    def __init__(self, name: str = "direct", format: str = "dense",
                 sparsity_threshold: float = 0.5):
        super().__init__(name, format, sparsity_threshold)

    def legalize_map(self) -> dict[str, LegalizeFunc]:
        return {"relax.nn.conv2d": functools.partial(legalize_conv2d_direct,
                                                     record=self.count_layer)}

    def schedule_rules(self, target: Target) -> list[ScheduleRule]:
        return [direct_conv2d_rule()]
