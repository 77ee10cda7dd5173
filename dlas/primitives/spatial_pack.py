"""The `spatial_pack` primitive: legalization of relax.nn.conv2d to the packed computes of
spatial_pack_compute.py (dense NCHW[x]c, csr, bsr), default schedule in
spatial_pack_schedule.py.

Per layer:
- int8 with groups=1 and a constant weight, on a target with integer dot products: the
  dot-product compute, NCHW16c u8 input and spatial_pack's tile (int8_legalize.py), unless
  the layer goes sparse;
- layout other than NCHW/OIHW: TVM's own conv2d (fallback recorded);
- groups > 1 (depthwise, grouped): the `direct` primitive's compute, which handles every
  grouping (fallback recorded): packing input channels across groups buys nothing there;
- weight not a constant: dense packed, weight packed inside the graph (and, for csr/bsr,
  a fallback recorded: a sparse format needs the values at compile time);
- weight sparsity >= sparsity_threshold (csr/bsr): the sparse compute, else dense.

Block sizes (dense): `ic_block`/`oc_block` from the config, or per layer when null: the
largest divisor of the channels up to one vector (ic) / two vectors (oc) of the
accumulation dtype on the current target. A configured block that does not divide a layer's
channels is replaced by the nearest divisor (logged).
"""
from __future__ import annotations

import functools
import logging
from collections.abc import Sequence

import numpy as np
from tvm import relax
from tvm.s_tir.dlight import ScheduleRule
from tvm.target import Target

from dlas.primitives.base import LegalizeFunc, Primitive, Record
from dlas.primitives.direct import direct_dense
from dlas.primitives.direct_schedule import direct_blocked_rule, direct_conv2d_rule
from dlas.primitives.int8_compute import OB
from dlas.primitives.int8_legalize import blocked_lanes
from dlas.primitives.int8_schedule import int8_dot_rule
from dlas.primitives.legalize_utils import parse_block, static_shape
from dlas.primitives.schedule_utils import (ACCUMULATORS, current_lanes, largest_divisor,
                                            vector_registers)
from dlas.primitives.sparse_format import as_matrix, check_block, to_bsr, to_csr
from dlas.primitives.spatial_pack_compute import (conv2d_spatial_pack, conv2d_spatial_pack_bsr,
                                                  conv2d_spatial_pack_csr, csr_offsets,
                                                  pack_weight, pack_weight_te,
                                                  sparse_output_shape, NAME)
from dlas.primitives.spatial_pack_schedule import spatial_pack_rule
from dlas.primitives.triage import Conv2dLayer, constant_fallback, open_conv2d
from dlas.values import integer

log = logging.getLogger(__name__)

def nearest_divisor(n: int, want: int) -> int:
    """The divisor of n closest to `want` (the smaller one on a tie)."""
    return min((d for d in range(1, n + 1) if n % d == 0), key=lambda d: (abs(d - want), d))


def choose_block(channels: int, configured: int | None, default_cap: int, what: str) -> int:
    if configured is None:
        return largest_divisor(channels, default_cap)
    if channels % configured:
        block = nearest_divisor(channels, configured)
        log.info("spatial_pack: %s=%d does not divide %d channels, using %d",
                 what, configured, channels, block)
        return block
    return configured


def _nonempty(array: np.ndarray) -> np.ndarray:
    # buffers cannot be empty: an all-zero weight keeps one stored value (never read)
    if array.shape[0] == 0:
        array = np.zeros((1,) + array.shape[1:], dtype=array.dtype)
    return array


def _budget() -> int:
    target = Target.current(allow_none=True)
    return ACCUMULATORS[vector_registers(target)] if target is not None else 16


def legalize_conv2d_spatial_pack(bb: relax.BlockBuilder, call: relax.Call,
                                 prim: SpatialPack, record: Record) -> relax.Expr:
    """LegalizeOps hook for relax.nn.conv2d (NCHW/OIHW graphs); `prim` gives the settings,
    `record` (LayerCounts.add) is told how each layer was computed."""
    layer = open_conv2d(bb, call, primitive=NAME, format=prim.format,
                        threshold=prim.sparsity_threshold, int8_dot=prim.int8_dot,
                        record=record, widest_block=OB)
    if not isinstance(layer, Conv2dLayer):
        return layer
    attrs, value, wshape = layer.attrs, layer.value, layer.wshape
    if layer.groups != 1 or wshape is None or layer.dshape is None:
        layer.record(fallback="groups>1 (depthwise/grouped): direct" if layer.groups != 1
                     else "dynamic shape: direct")
        return direct_dense(bb, call, layer)
    out_dtype = str(attrs.out_dtype or call.ty.dtype)
    conv_args = (attrs.strides, attrs.padding, attrs.dilation)
    o_, c_, kh, kw = wshape
    if layer.sparse:
        layer.record(sparse=True)
        return _sparse_call(bb, call, prim, value, out_dtype)
    layer.record(fallback=constant_fallback(layer, prim.format, NAME))
    lanes = current_lanes(out_dtype)
    ic = choose_block(c_, prim.ic_block, lanes, "ic_block")
    oc = choose_block(o_, prim.oc_block, 2 * lanes, "oc_block")
    if value is not None:  # pack once at compile time rather than in every inference
        packed = relax.const(pack_weight(value, ic, oc))
    else:
        packed = bb.emit_te(pack_weight_te, layer.weight, ic, oc, primfunc_name_hint="weight_pack")
    return bb.call_te(conv2d_spatial_pack, layer.data, packed, *conv_args, out_dtype,
                      primfunc_name_hint="conv2d_spatial_pack")


def _sparse_call(bb: relax.BlockBuilder, call: relax.Call, prim: SpatialPack,
                 value: np.ndarray, out_dtype: str) -> relax.Expr:
    """call_tir of the csr/bsr PrimFunc, the sparse weight arrays as constants."""
    attrs, data = call.attrs, call.args[0]
    o_, _, kh, kw = value.shape
    dshape = static_shape(data.ty.shape)
    geometry = ((kh, kw), attrs.strides, attrs.padding, attrs.dilation, out_dtype)
    tile = {"lanes": current_lanes(out_dtype), "budget": _budget()}
    matrix = as_matrix(value)
    if prim.format == "csr":
        sp = to_csr(matrix)
        values = _nonempty(sp.data)
        columns = csr_offsets(sp.indices, (kh, kw), dshape, attrs.strides, attrs.padding,
                              attrs.dilation)
        func = conv2d_spatial_pack_csr(dshape, str(value.dtype), o_, values.shape[0],
                                       *geometry, **tile)
    else:
        check_block(matrix.shape, prim.block, layer=f"conv2d {list(value.shape)}")
        sp = to_bsr(matrix, prim.block)
        values, columns = _nonempty(sp.data), sp.indices
        func = conv2d_spatial_pack_bsr(dshape, str(value.dtype), o_, values.shape[0],
                                       prim.block, *geometry, **tile)
    gvar = bb.add_func(func, f"conv2d_spatial_pack_{prim.format}")
    out_shape = sparse_output_shape(dshape, (kh, kw), attrs.strides, attrs.padding,
                                    attrs.dilation, o_)
    args = [data, relax.const(values), relax.const(_nonempty(columns)), relax.const(sp.indptr)]
    return relax.call_tir(gvar, args, relax.TensorType(out_shape, out_dtype))


class SpatialPack(Primitive):
    """Spatial pack convolution (NCHW[x]c), dense or sparse csr/bsr weights
    (config: conf/primitive/spatial_pack.yaml).

    block:    BSR block [bo, bk] over the weight matrix [O, C*KH*KW] (bsr only); bo is the
              vector of output channels of the packed compute
    ic_block, oc_block: dense packing block sizes, None = chosen per layer (float and
              generic int8 layers; an int8 layer on the integer dot-product instructions
              is packed NCHW16c / OIHW4i16o4i, int8_compute.py)
    int8_dot: int8 layers on the target's dot-product instructions where it has them
    int8_blocked: their activations NCHW[L]c from one such conv to the next (codegen's
              int8_layout.py; False: each conv takes and gives NCHW)
    """

    formats = ("dense", "csr", "bsr")

    def __init__(self, name: str = "spatial_pack", format: str = "dense",
                 sparsity_threshold: float = 0.5, block: Sequence[int] = (16, 1),
                 ic_block: int | None = None, oc_block: int | None = None,
                 int8_dot: bool = True, int8_blocked: bool = True):
        super().__init__(name, format, sparsity_threshold)
        self.int8_dot = bool(int8_dot)
        self.int8_blocked = bool(int8_blocked)
        self.block = parse_block(block)
        self.ic_block = integer("primitive.ic_block", ic_block, 1, optional=True,
                                layer="primitive")
        self.oc_block = integer("primitive.oc_block", oc_block, 1, optional=True,
                                layer="primitive")

    def legalize_map(self, record: Record = lambda **_: None) -> dict[str, LegalizeFunc]:
        return {"relax.nn.conv2d": functools.partial(legalize_conv2d_spatial_pack, prim=self,
                                                     record=record)}

    def schedule_rules(self, target: Target) -> list[ScheduleRule]:
        # direct's rules for the layers handed to it (grouped, depthwise; int8 depthwise on
        # the blocked int8 layout)
        return [int8_dot_rule(NAME), spatial_pack_rule(), direct_blocked_rule(),
                direct_conv2d_rule()]

    def __repr__(self) -> str:
        return (f"SpatialPack(format={self.format!r}, sparsity_threshold="
                f"{self.sparsity_threshold}, block={list(self.block)}, "
                f"ic_block={self.ic_block}, oc_block={self.oc_block}, "
                f"int8_dot={self.int8_dot}, int8_blocked={self.int8_blocked})")

    def blocked_int8_lanes(self, target: Target) -> int | None:
        return blocked_lanes(target, self.format, self.int8_dot, self.int8_blocked)
