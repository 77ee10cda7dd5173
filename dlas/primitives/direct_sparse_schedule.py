"""Default CPU schedule for a fused PrimFunc holding one sparse direct conv block
(`conv2d_direct_csr` / `conv2d_direct_bsr`, direct_sparse.py).

Same frame as the dense rule (direct_schedule.py): the input re-laid once (flat_input,
parallel over channels), the elementwise epilogue inlined into the last block and
computed at the tile from a local accumulator. The conv:

- CSR: loops (n, o) | y0, x0 | j | y1, x1: each output channel's tile of yt x xt pixels
  accumulates in registers over the row's non-zeros; per non-zero one offset load and one
  weight broadcast serve the whole tile; x1 (output columns) vectorised, y1 unrolled;
- BSR (bo, bk): (n, o/bo) | y0, x0 | jb, kk | o1 (bo), y1, x1: the bo channels of a block
  row share every input vector loaded.

The fused (n, channel[-block]) loop runs in parallel. Not MetaSchedule-tunable as such
(untested): the data-dependent indexing of the sparse arrays is outside what its
rules/feature extractor are known to handle; this rule is the schedule.
"""
from __future__ import annotations

from tvm import s_tir, tirx
from tvm.s_tir.dlight import ScheduleRule
from tvm.target import Target

from dlas.primitives.direct_sparse import SPARSE_PRIMITIVE, SPLIT_KEY
from dlas.primitives.schedule_utils import (PARALLEL_MIN_MACS, extent, finish_conv_tile, guarded,
                                            largest_divisor, open_conv, register_tile,
                                            sampled_split)


def direct_sparse_rule() -> ScheduleRule:
    return guarded("DirectSparseConv2D", _schedule)


def _schedule(func: tirx.PrimFunc, target: Target) -> s_tir.Schedule | None:
    opened = open_conv(func, SPARSE_PRIMITIVE,
                       lambda layout: "SSSSR" if layout.startswith("csr") else "SSSSRR")
    if opened is None:
        return None
    sch, conv, epilogue, producers, layout = opened
    csr = layout.startswith("csr")
    rows = 1 if csr else int(layout[3:].split("x")[0])

    lanes, budget = register_tile(sch, conv, target)
    loops = sch.get_loops(conv)
    n, o, y, x = loops[:4]
    reduce = loops[4:]
    exts = [extent(sch, lp) for lp in loops]
    if None in exts:
        return None
    # work: every (output, reduce) step, a bound (the rows are shorter than the longest)
    steps = 1
    for e in exts:
        steps *= e
    if rows > 1:
        o0, o1 = sch.split(o, [None, rows])
        inner = [o1]
    else:
        o0, inner = o, []
    y0, x0, *plane, x1 = _tile_plane(sch, y, x, exts[2], exts[3], lanes, max(1, budget // rows))
    inner += plane
    sch.reorder(n, o0, y0, x0, *reduce, *inner, x1)
    for lp in inner:
        sch.unroll(lp)
    if (extent(sch, x1) or 1) > 1:
        sch.vectorize(x1)
    sch.reverse_compute_at(epilogue, x0, preserve_unit_loops=True)
    parallel = steps >= PARALLEL_MIN_MACS
    finish_conv_tile(sch, conv, epilogue, [n, o0], reduce[0], parallel, lanes)
    for producer in producers:
        _schedule_input(sch, producer, parallel)
    return sch


def _tile_plane(sch, y, x, OH, OW, lanes, budget):
    """A row of up to 2 vectors of output columns, then as many output rows as fit in
    `budget` vectors. Returns [y0, x0, y1, (x vector blocks,) x1]."""
    xt = largest_divisor(OW, 2 * lanes)
    yt = largest_divisor(OH, max(1, budget // -(-xt // lanes)))
    y0, y1 = sampled_split(sch, y, [None, yt])
    x0, x1 = sampled_split(sch, x, [None, xt])
    if xt > lanes and xt % lanes == 0:
        xv, x1 = sampled_split(sch, x1, [None, lanes])
        return [y0, x0, y1, xv, x1]
    return [y0, x0, y1, x1]


def _schedule_input(sch: s_tir.Schedule, block, parallel: bool) -> None:
    """The flat input [N, C*plane]: loops split by (channel, phase, row, column), which
    lets the index arithmetic simplify away; one task per (n, channel)."""
    if SPLIT_KEY not in sch.get(block).annotations:
        return
    phases, rows, cols = (int(v) for v in sch.get(block).annotations[SPLIT_KEY])
    n, i = sch.get_loops(block)
    c, _, _, _ = sch.split(i, [None, phases, rows, cols])
    fused = sch.fuse(n, c)
    if parallel:
        sch.parallel(fused)
