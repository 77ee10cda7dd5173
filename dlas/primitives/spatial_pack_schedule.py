"""Default CPU schedule for a fused PrimFunc holding one dense `spatial_pack` conv block
(the sparse ones come scheduled, see spatial_pack_compute.py).

After FuseOps/FuseTIR such a function is: [pad] -> data_pack -> conv (packed output
[n, OC/oc, OH, OW, oc]) -> unpack -> [elementwise epilogue: bias, residual add, relu...].
The schedule:

- pad inlined into the data pack, which runs once, parallel over (n, channel block, row);
- the conv accumulates a register tile [rows, columns, oc] in a local buffer over its whole
  reduction (channel block, ky, kx, channel): the oc channels vectorised (one contiguous
  packed-weight vector times one broadcast input value), columns and rows unrolled, the
  kernel window (ky, kx) unrolled;
- parallel over the fused (n, channel block, row block) loops;
- unpack and epilogue inlined into the last block, computed at the tile straight from the
  registers: the unpack to NCHW is the tile's write-back.
"""
from __future__ import annotations

from tvm import s_tir, tirx
from tvm.s_tir.dlight import ScheduleRule
from tvm.target import Target

from dlas.primitives.schedule_utils import (PARALLEL_MIN_MACS, extent, finish_conv_tile, guarded,
                                            iterations, largest_divisor, open_conv,
                                            register_tile, sampled_split, schedule_producer)
from dlas.primitives.spatial_pack_compute import NAME, RULE


def spatial_pack_rule() -> ScheduleRule:
    return guarded(RULE, _schedule)


def _schedule(func: tirx.PrimFunc, target: Target) -> s_tir.Schedule | None:
    # unpack and epilogue inlined; pad -> data_pack: the pad inlined, one pass over the input
    opened = open_conv(func, NAME, "SSSSSRRRR", inline_pad=True)
    if opened is None:
        return None
    sch, conv, epilogue, producers, _ = opened
    lanes, budget = register_tile(sch, conv, target)
    tiled = _tile_packed(sch, conv, lanes, budget)
    if tiled is None:
        return None
    parallel_loops, at, first_reduction = tiled
    sch.reverse_compute_at(epilogue, at, preserve_unit_loops=True)
    parallel = iterations(sch, conv) >= PARALLEL_MIN_MACS
    finish_conv_tile(sch, conv, epilogue, parallel_loops, first_reduction, parallel, lanes)
    for producer in producers:  # data_pack (or pad): parallel over its outer rows
        schedule_producer(sch, producer, parallel, rows=3)
    return sch


def _tile_packed(sch, conv, lanes, budget):
    """Packed output [n, OC/oc, OH, OW, oc]: loops n, ob, y0, oi0, x0 | reductions | y1, x1,
    oi1, oi2 (vector). Returns (loops to fuse and parallelise, loop to compute the
    epilogue at, first reduction loop), None when the shape is not static."""
    loops = sch.get_loops(conv)
    n, ob, y, x, oi = loops[:5]
    reductions = loops[5:]
    OH, OW, B = (extent(sch, lp) for lp in (y, x, oi))
    if None in (OH, OW, B):
        return None
    vl = largest_divisor(B, lanes)
    nvec = largest_divisor(B // vl, budget)
    xt = largest_divisor(OW, max(1, budget // nvec))
    yt = largest_divisor(OH, max(1, budget // (nvec * xt)))
    oi0, oi1, oi2 = sampled_split(sch, oi, [None, nvec, vl])
    y0, y1 = sampled_split(sch, y, [None, yt])
    x0, x1 = sampled_split(sch, x, [None, xt])
    sch.reorder(n, ob, y0, oi0, x0, *reductions, y1, x1, oi1, oi2)
    for lp in (y1, x1, oi1):
        sch.unroll(lp)
    sch.vectorize(oi2)
    for lp in reductions[1:3]:  # the kernel window (ky, kx)
        sch.unroll(lp)
    return [n, ob, y0], x0, reductions[0]
