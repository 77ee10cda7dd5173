"""The `gemm` primitive: legalization of relax.nn.conv2d to im2col + matrix multiply, with a
dense, CSR or BSR weight (see gemm_compute.py for the computes, gemm_schedule.py for their
default schedules).

Per layer: a constant weight whose sparsity reaches `sparsity_threshold` takes the sparse
format (format csr|bsr), every other layer the dense GEMM. Depthwise convs go to the direct
primitive, recorded as a fallback: as a GEMM each channel is a 1 x KH*KW by KH*KW x OH*OW
product (no reuse to tile for), which direct's per-channel window loop does better.
Grouped convs with several channels per group are a GEMM per (image, group). int8 layers
with groups=1 on a target with integer dot products: the dot-product GEMM over the patch
matrix, packed u8 in blocks of 16 patch rows (int8_legalize.py).
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import numpy as np
from tvm import relax
from tvm.s_tir.dlight import ScheduleRule
from tvm.target import Target

from dlas.primitives.base import FORMATS, LegalizeFunc, Primitive, Record
from dlas.primitives.direct import direct_dense
from dlas.primitives.direct_schedule import direct_conv2d_rule
from dlas.primitives.gemm_compute import (conv2d_gemm, conv2d_gemm_bsr, conv2d_gemm_csr,
                                          pack_block, pack_weight, pack_weight_te)
from dlas.primitives.gemm_schedule import gemm_conv2d_rule
from dlas.primitives.int8_compute import OB
from dlas.primitives.int8_schedule import int8_dot_rule
from dlas.primitives.legalize_utils import parse_block
from dlas.primitives.sparse_format import as_matrix, check_block, to_bsr, to_csr
from dlas.primitives.triage import Conv2dLayer, constant_fallback, open_conv2d

DEPTHWISE = "depthwise: direct (GEMM of one channel per group)"


def _sparse_constants(arrays: Sequence[np.ndarray]) -> list[relax.Constant]:
    """data, indices, indptr as constants, every (block) row given at least one stored
    value (a zero at column 0 where it has none): TE initialises a data-dependent
    reduction in its first iteration, so an empty row would never be written."""
    data, indices, indptr = arrays
    counts = np.diff(indptr)
    if counts.min(initial=1) == 0:
        padded = np.concatenate([[0], np.cumsum(np.maximum(counts, 1))]).astype(np.int32)
        rows = np.repeat(np.arange(len(counts)), counts)
        pos = padded[rows] + np.arange(len(indices)) - indptr[rows]
        new_data = np.zeros((padded[-1], *data.shape[1:]), data.dtype)
        new_indices = np.zeros(padded[-1], np.int32)
        new_data[pos], new_indices[pos] = data, indices
        data, indices, indptr = new_data, new_indices, padded
    return [relax.const(a) for a in (data, indices, indptr)]


def legalize_conv2d_gemm(bb: relax.BlockBuilder, call: relax.Call, format: str = "dense",
                         sparsity_threshold: float = 0.5, block: tuple[int, int] = (4, 1),
                         record: Callable[..., None] = lambda **_: None,
                         int8_dot: bool = True) -> relax.Expr:
    """LegalizeOps hook for relax.nn.conv2d (NCHW/OIHW, static shapes): im2col GEMM; an
    int8 layer on a target with integer dot products (int8_dot) as the dot-product GEMM
    over the patch matrix (int8_legalize.py). `record` (LayerCounts.add) is told how
    each layer was computed."""
    layer = open_conv2d(bb, call, primitive="gemm", format=format, threshold=sparsity_threshold,
                        int8_dot=int8_dot, record=record, widest_block=OB, im2col=True)
    if not isinstance(layer, Conv2dLayer):
        return layer
    attrs, data, value, wshape, groups = (layer.attrs, layer.data, layer.value, layer.wshape,
                                          layer.groups)
    if wshape is None or layer.dshape is None or (groups > 1 and wshape[1] == 1):
        layer.record(fallback=DEPTHWISE if wshape and layer.dshape else "dynamic shape: direct")
        return direct_dense(bb, call, layer)
    o, cg, kh, kw = wshape
    out_dtype = str(attrs.out_dtype or call.ty.dtype)
    conv = (attrs.strides, attrs.padding, attrs.dilation, groups, out_dtype)
    if layer.sparse:
        matrix = as_matrix(value)
        layer.record(sparse=True)
        if format == "csr":
            csr = to_csr(matrix)
            args = _sparse_constants((csr.data, csr.indices, csr.indptr))
            return bb.call_te(conv2d_gemm_csr, data, *args, (kh, kw), *conv,
                              primfunc_name_hint="conv2d_gemm_csr")
        check_block(matrix.shape, block, layer=f"conv2d {o}x{cg}x{kh}x{kw}")
        bsr = to_bsr(matrix, block)
        args = _sparse_constants((bsr.data, bsr.indices, bsr.indptr))
        return bb.call_te(conv2d_gemm_bsr, data, *args, (kh, kw), *conv,
                          primfunc_name_hint="conv2d_gemm_bsr")
    layer.record(fallback=constant_fallback(layer, format, "gemm"))
    b = pack_block(o // groups)
    if value is not None:  # re-lay now rather than in every inference
        packed = relax.const(pack_weight(value, b))
    else:
        packed = bb.emit_te(pack_weight_te, layer.weight, b,
                            primfunc_name_hint="conv2d_weight_packed")
    return bb.call_te(conv2d_gemm, data, packed, (kh, kw), *conv,
                      primfunc_name_hint="conv2d_gemm")


class Gemm(Primitive):
    """im2col + GEMM convolution, dense, CSR or BSR weights (config: conf/primitive/gemm.yaml).

    block: the BSR tile [bo, bk] (output channels x patch rows); it must divide every layer
    that goes sparse, or the build raises a DLASError naming the layer.
    int8_dot: int8 layers on the target's dot-product instructions where it has them.
    """

    formats = FORMATS

    def __init__(self, name: str = "gemm", format: str = "dense",
                 sparsity_threshold: float = 0.5, block: Sequence[int] = (4, 1),
                 int8_dot: bool = True):
        super().__init__(name, format, sparsity_threshold)
        self.block = parse_block(block)
        self.int8_dot = bool(int8_dot)

    def legalize_map(self, record: Record = lambda **_: None) -> dict[str, LegalizeFunc]:
        return {"relax.nn.conv2d": functools.partial(
            legalize_conv2d_gemm, format=self.format, sparsity_threshold=self.sparsity_threshold,
            block=self.block, record=record, int8_dot=self.int8_dot)}

    def schedule_rules(self, target: Target) -> list[ScheduleRule]:
        # direct's rule for the depthwise layers handed to it
        return [int8_dot_rule("gemm"), gemm_conv2d_rule(), direct_conv2d_rule()]

    def __repr__(self) -> str:
        return (super().__repr__()[:-1]
                + f", block={list(self.block)}, int8_dot={self.int8_dot})")
