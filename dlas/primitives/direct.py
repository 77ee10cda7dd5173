"""The `direct` primitive: legalization of relax.nn.conv2d to `conv2d_direct` (see
direct_compute.py for the compute and the weight layouts, direct_schedule.py for its
default schedule), or with format csr/bsr to its sparse variants for the layers whose
constant weight is sparse enough (direct_sparse.py, direct_sparse_schedule.py); int8
layers with groups=1 on a target with integer dot products to the dot-product compute
with NCHW4c input and direct's tile (int8_legalize.py)."""
from __future__ import annotations

import copy
import functools
from collections.abc import Callable

import numpy as np
from tvm import relax
from tvm.s_tir.dlight import ScheduleRule
from tvm.target import Target

from dlas.primitives.base import LegalizeFunc, Primitive, Record
from dlas.primitives.direct_blocked import blocked_call, legalize_direct_blocked
from dlas.primitives.direct_compute import block_weight, block_weight_te, conv2d_direct
from dlas.primitives.direct_schedule import direct_blocked_rule, direct_conv2d_rule
from dlas.primitives.direct_sparse import (conv2d_direct_bsr, conv2d_direct_csr, ell_group,
                                           geometry, window_offsets)
from dlas.primitives.direct_sparse_schedule import direct_sparse_rule
from dlas.primitives.int8_compute import K4
from dlas.primitives.int8_legalize import blocked_lanes
from dlas.primitives.int8_schedule import int8_dot_rule
from dlas.primitives.legalize_utils import parse_block
from dlas.primitives.schedule_utils import vector_lanes
from dlas.primitives.sparse_format import as_matrix, check_block, to_bsr, to_csr, to_ell
from dlas.primitives.triage import Conv2dLayer, constant_fallback, open_conv2d


def legalize_conv2d_direct(bb: relax.BlockBuilder, call: relax.Call,
                           record: Callable[..., None] = lambda **_: None,
                           int8_dot: bool = True) -> relax.Expr:
    """LegalizeOps hook for relax.nn.conv2d: emit `conv2d_direct` (NCHW/OIHW graphs), or
    for an int8 layer on a target with integer dot products (int8_dot) the dot-product
    compute with direct's tiling and NCHW4c input (triage.py). `record`
    (LayerCounts.add) is told how each layer was computed."""
    layer = open_conv2d(bb, call, primitive="direct", format="dense", threshold=1.0,
                        int8_dot=int8_dot, record=record, blocked_float=True, widest_block=K4)
    if not isinstance(layer, Conv2dLayer):
        return layer
    layer.record()
    if blocked_call(call):  # (codegen's blocked_layout.py asked for these layouts)
        return legalize_direct_blocked(bb, call, layer.value)
    return direct_dense(bb, call, layer)


def direct_dense(bb: relax.BlockBuilder, call: relax.Call, layer: Conv2dLayer) -> relax.Expr:
    """`conv2d_direct` of a layer (also the other primitives' fallback for the layers they
    do not compute: depthwise, grouped, dynamic shapes)."""
    attrs, weight = layer.attrs, layer.weight
    wshape, groups = layer.wshape, layer.groups
    kernel_layout = "OIHW"
    block = next((b for b in (32, 16, 8, 4) if wshape and wshape[0] % b == 0), None)
    if groups == 1 and block is not None:
        kernel_layout = f"OIHW{block}o"
        if layer.value is not None:  # re-lay now rather than in every inference
            weight = relax.const(block_weight(layer.value, block))
        else:
            weight = bb.emit_te(block_weight_te, weight, block,
                                primfunc_name_hint="conv2d_weight_blocked")
    out_dtype = attrs.out_dtype or call.ty.dtype
    return bb.call_te(conv2d_direct, layer.data, weight, attrs.strides, attrs.padding,
                      attrs.dilation, groups, str(out_dtype), kernel_layout,
                      primfunc_name_hint="conv2d_direct")


def legalize_conv2d_direct_sparse(bb: relax.BlockBuilder, call: relax.Call, *, format: str,
                                  threshold: float, block: tuple[int, int],
                                  record: Callable[..., None] = lambda **_: None,
                                  int8_dot: bool = True) -> relax.Expr:
    """LegalizeOps hook for format csr/bsr: a layer whose constant weight has sparsity >=
    `threshold` gets `conv2d_direct_csr`/`_bsr` with the weight as constant sparse arrays;
    any other layer is the dense direct conv (a non-constant weight recorded as fallback)."""
    layer = open_conv2d(bb, call, primitive="direct", format=format, threshold=threshold,
                        int8_dot=int8_dot, record=record, widest_block=K4)
    if not isinstance(layer, Conv2dLayer):
        return layer
    if not layer.sparse or layer.dshape is None:
        reason = (constant_fallback(layer, format, "direct") if not layer.sparse
                  else "dynamic shape: dense direct")
        layer.record(fallback=reason)
        return direct_dense(bb, call, layer)
    attrs, data, value, dshape = layer.attrs, layer.data, layer.value, layer.dshape
    matrix = as_matrix(value)
    geo = geometry(dshape, value.shape, attrs.strides, attrs.padding, attrs.dilation)
    if format == "csr":
        sparse = to_csr(matrix)
        offsets, compute = window_offsets(sparse.indices, geo), conv2d_direct_csr
    else:
        check_block(matrix.shape, block, layer=f"conv2d weight {list(value.shape)}")
        sparse = to_bsr(matrix, block)
        columns = sparse.indices[:, None] * block[1] + np.arange(block[1])
        offsets, compute = window_offsets(columns, geo), conv2d_direct_bsr
    layer.record(sparse=True)
    bo = 1 if format == "csr" else block[0]
    values, offsets = to_ell(sparse.indptr, sparse.data, offsets,
                             group=ell_group(matrix.shape[0] // bo, bo))
    out_dtype = attrs.out_dtype or call.ty.dtype
    return bb.call_te(compute, data, relax.const(values), relax.const(offsets),
                      list(value.shape), attrs.strides, attrs.padding, attrs.dilation,
                      int(attrs.groups), str(out_dtype),
                      primfunc_name_hint=f"conv2d_direct_{format}")


class Direct(Primitive):
    """Direct convolution (config: conf/primitive/direct.yaml).

    format dense: every layer dense. csr/bsr: each layer whose constant weight has sparsity
    >= sparsity_threshold is computed from its sparse form, the others dense; `block`
    (bo output channels x bk weight columns) is the BSR tile, it must divide every layer
    that goes bsr (DLASError otherwise). int8_dot: int8 layers on the target's integer
    dot-product instructions where it has them (False: the generic int8 compute, to
    compare); int8_blocked: their activations NCHW[L]c from one such conv to the next
    (codegen's int8_layout.py; False: each conv takes and gives NCHW, to compare);
    blocked: dense float convs (groups 1, depthwise) on activations NCHW[b]c from one to
    the next on CPU targets, b the float vector lanes (direct_blocked.py; False: NCHW, to
    compare).
    """

    formats = ("dense", "csr", "bsr")

    def __init__(self, name: str = "direct", format: str = "dense",
                 sparsity_threshold: float = 0.5, block=(4, 1), int8_dot: bool = True,
                 int8_blocked: bool = True, blocked: bool = True):
        super().__init__(name, format, sparsity_threshold)
        self.block = parse_block(block)
        self.int8_dot = bool(int8_dot)
        self.int8_blocked = bool(int8_blocked)
        self.blocked = bool(blocked)

    def legalize_map(self, record: Record = lambda **_: None) -> dict[str, LegalizeFunc]:
        if self.format == "dense":
            hook = functools.partial(legalize_conv2d_direct, record=record,
                                     int8_dot=self.int8_dot)
        else:
            hook = functools.partial(legalize_conv2d_direct_sparse, format=self.format,
                                     threshold=self.sparsity_threshold, block=self.block,
                                     record=record, int8_dot=self.int8_dot)
        return {"relax.nn.conv2d": hook}

    def __repr__(self) -> str:
        return (super().__repr__()[:-1] + f", block={list(self.block)}, "
                f"int8_dot={self.int8_dot}, int8_blocked={self.int8_blocked}, "
                f"blocked={self.blocked})")

    def blocked_int8_lanes(self, target: Target) -> int | None:
        return blocked_lanes(target, self.format, self.int8_dot, self.int8_blocked)

    def blocked_float_lanes(self, target: Target) -> int | None:
        if self.format != "dense" or not self.blocked or target is None \
                or target.kind.name != "llvm":
            return None
        return vector_lanes(target, 32)

    def nchw(self) -> Direct:
        other = copy.copy(self)
        other.blocked = False
        return other

    def schedule_rules(self, target: Target) -> list[ScheduleRule]:
        rules = [int8_dot_rule("direct"), direct_blocked_rule(), direct_conv2d_rule()]
        return rules + [direct_sparse_rule()] if self.format != "dense" else rules
