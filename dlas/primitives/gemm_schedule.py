"""Default CPU schedule for a fused PrimFunc holding one `gemm` conv2d block.

After FuseOps/FuseTIR a dense one is: im2col -> conv2d_gemm -> [elementwise epilogue: bias,
residual add, relu ...]; a sparse one (opaque to FuseOps: data-dependent loops) is im2col ->
conv2d_gemm_csr|bsr, its epilogue a separate function. Dense:

- im2col: materialised once (parallel over its rows), in the layout the GEMM reads;
- conv: a register tile accumulates in a local buffer over the whole reduction, innermost
  axis vectorised, the rest unrolled; the outer tile loops are fused and run in parallel
  (when the layer has the work to pay for the thread pool);
- epilogue: all elementwise blocks inlined into the last one, computed at the tile, reading
  the accumulator straight from registers.

Weight [O/b, K, b]: tile (channels: vectors of b) x (up to 8 pixels); the patch matrix is
laid out [N, G, OH, K, OW] so the rows of the K x 8 strip a tile reads are OW apart
(as [.., K, OH, OW] they are OH*OW apart: 4 KiB at 32x32, all in one L1 set; a fully
packed strip made the scattered im2col writes cost 6x more than they saved). The loop over
tiles runs the larger of the two operands once: channel blocks outside when the weight is
bigger than the patch matrix (deep layers), pixel tiles outside otherwise. b = 1 (odd
group widths): vectors of pixels instead.
CSR/BSR: TE turns a data-dependent reduction into a block per output element around the
loop over the row's stored values, and a schedule cannot move loops across a block. So:
one output channel x up to 8 vectors of pixels (whole output rows: contiguous patch rows)
per tile, vectorised as one wide vector around that loop (8 independent FMA chains), the
tiles parallel. BSR: the loop is per block row and sums its bo channels together (a tuple
reduction, gemm_compute.py), so a loaded patch row serves bo channels: bo x (up to
16/bo vectors of pixels) accumulators per tile.
"""
from __future__ import annotations

from tvm import s_tir, tirx
from tvm.s_tir.dlight import ScheduleRule
from tvm.target import Target

from dlas.primitives.base import LAYOUT_KEY
from dlas.primitives.gemm_compute import FORMAT_KEY
from dlas.primitives.schedule_utils import (PARALLEL_MIN_MACS, extent, finish_conv_tile, guarded,
                                            isolate_conv, iter_kinds, largest_divisor,
                                            primitive_blocks, register_tile, sampled_parallel,
                                            sampled_split, single_output)
# pixels of a dense tile: with 2 vectors of channels, 16 accumulators (AVX-512)
_PIXELS = 8
# sparse tiles: at most this many vectors of pixels per output row (independent FMA
# chains: 2 FMA units x 4 cycles latency)
_SPARSE_VECTORS = 8


def gemm_conv2d_rule() -> ScheduleRule:
    return guarded("GemmConv2D", _schedule)


def _schedule(func: tirx.PrimFunc, target: Target) -> s_tir.Schedule | None:
    sch = s_tir.Schedule(func)
    convs, cols = primitive_blocks(sch, "gemm"), primitive_blocks(sch, "gemm.im2col")
    if len(convs) != 1 or len(cols) != 1:
        return None
    conv, im2col = convs[0], cols[0]
    fmt = str(sch.get(conv).annotations[FORMAT_KEY])
    lanes, budget = register_tile(sch, conv, target)
    if fmt in ("csr", "bsr"):
        return _sparse(sch, conv, im2col, lanes, budget)
    if fmt != "dense" or not single_output(sch):
        return None
    isolated = isolate_conv(sch, conv)
    if isolated is None:
        return None
    conv, epilogue, _ = isolated
    layout = str(sch.get(conv).annotations[LAYOUT_KEY])
    tile = _dense(sch, conv, im2col, lanes, budget, int(layout[2:-1]))
    if tile is None:
        return None
    outer, reduction, macs = tile
    sch.reverse_compute_at(epilogue, outer[-1], preserve_unit_loops=True)
    parallel = macs >= PARALLEL_MIN_MACS
    finish_conv_tile(sch, conv, epilogue, outer, reduction, parallel, lanes)
    _schedule_im2col(sch, im2col, parallel)
    return sch


def _dense(sch, conv, im2col, lanes, budget, block):
    n, o, y, x, k = sch.get_loops(conv)
    exts = [extent(sch, lp) for lp in (n, o, y, x, k)]
    if None in exts:
        return None
    N, O, OH, OW, K = exts
    if block > 1:  # vectors of channels, a tile of up to 8 pixels
        vl = largest_divisor(block, lanes)
        xt = largest_divisor(OW, _PIXELS)
        yt = largest_divisor(OH, max(1, _PIXELS // xt))
        cap = max(1, budget // (xt * yt))
        nvec = max(v for v in range(1, cap + 1) if (O // vl) % v == 0
                   and (v * vl % block == 0 or block % (v * vl) == 0))
        o0, o1, o2 = sampled_split(sch, o, [None, nvec, vl])
        y0, y1 = sampled_split(sch, y, [None, yt])
        x0, x1 = sampled_split(sch, x, [None, xt])
        inner = [y1, x1, o1, o2]
    else:  # vectors of pixels, a tile of several channels
        xt = largest_divisor(OW, lanes)
        yt = largest_divisor(OH, max(1, budget // 4))
        ot = largest_divisor(O, max(1, budget // yt))
        o0, o1 = sampled_split(sch, o, [None, ot])
        y0, y1 = sampled_split(sch, y, [None, yt])
        x0, x1 = sampled_split(sch, x, [None, xt])
        inner = [o1, y1, x1]
    weight_bytes = O * K
    cols_bytes = N * K * OH * OW  # (per group; same element size order)
    outer = [n, o0, y0, x0] if weight_bytes >= cols_bytes else [n, y0, x0, o0]
    sch.reorder(*outer, k, *inner)
    for lp in inner[:-1]:
        sch.unroll(lp)
    if extent(sch, inner[-1]) > 1:
        sch.vectorize(inner[-1])
    if block > 1:  # accumulate as [.., pixel, channel]: a vector of channels is contiguous
        sch.transform_layout(conv, ("write", 0), lambda n, o, y, x: (n, y, x, o))
    # patch rows of one output row together: the K x xt strip of a tile then has rows OW
    # apart, not OH*OW (4 KiB at 32x32: all of them in one L1 set)
    sch.transform_layout(im2col, ("write", 0), lambda n, g, k, y, x: (n, g, y, k, x))
    return outer, k, N * O * OH * OW * K


def _sparse(sch, conv, im2col, lanes, budget) -> s_tir.Schedule | None:
    """CSR/BSR: TE made `conv` a block per output element (per block row and pixel for
    BSR) holding the loop over the stored values (an inner reduction block). Tile its
    (y, x) loops into whole-row runs of pixels, vectorise them as one wide vector around
    that loop (its extent depends on the channel only, so every pixel of a vector runs the
    same stored values), parallel over (image, channel, tile). BSR: bo accumulators per
    pixel vector, so fewer pixels per tile; its interleave into NCHW runs at the tile."""
    blocks = sch.get_child_blocks(sch.get_sblock("root"))
    if iter_kinds(sch, conv) != "SSSS" or len(blocks) not in (2, 3):
        return None
    rows = blocks[2] if len(blocks) == 3 else None
    bo = len(sch.get(conv).writes)
    n, o, y, x = sch.get_loops(conv)
    exts = [extent(sch, lp) for lp in (n, o, y, x)]
    if None in exts:
        return None
    N, O, OH, OW = exts
    pixels = max(1, min(_SPARSE_VECTORS, budget // bo)) * lanes
    if OW <= pixels:
        yt, xt = largest_divisor(OH, max(1, pixels // OW)), OW
    else:
        yt, xt = 1, largest_divisor(OW, pixels)
    y0, y1 = sch.split(y, [None, yt])
    x0, x1 = sch.split(x, [None, xt])
    sch.reorder(n, o, y0, x0, y1, x1)
    p = sch.fuse(y1, x1)
    if extent(sch, p) > 1:
        # one vector of the whole tile (LLVM splits it into registers): a vector loop per
        # register would each run the stored values, one latency-bound FMA chain at a time
        sch.vectorize(p)
    if rows is not None:
        sch.reverse_compute_at(rows, x0, preserve_unit_loops=True)
        *_, ro, ry, rx = sch.get_loops(rows)
        sch.reorder(ro, ry, rx)
        sch.unroll(ro)  # the row picks fold to one load each
        rp = sch.fuse(ry, rx)
        if extent(sch, rp) > 1:
            sch.vectorize(rp)
    # multiply-adds per output are data-dependent: count 1/8 of the patch length (a
    # 90 %-pruned layer) for the parallel threshold
    k = extent(sch, sch.get_loops(im2col)[2]) or 1
    parallel = N * O * bo * OH * OW * max(1, k // 8) >= PARALLEL_MIN_MACS
    sampled_parallel(sch, sch.fuse(n, o, y0, x0), parallel)
    _schedule_im2col(sch, im2col, parallel)
    return sch


def _schedule_im2col(sch, im2col, parallel: bool):
    """Parallel over (image, group, patch row); the gather is cheap next to the GEMM."""
    loops = sch.get_loops(im2col)
    sampled_parallel(sch, sch.fuse(*loops[:3]), parallel)
