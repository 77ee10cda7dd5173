"""Default CPU schedule for a fused PrimFunc holding one sparse direct conv block
(`conv2d_direct_csr` / `conv2d_direct_bsr`, direct_sparse.py).

Same frame as the dense rule (direct_schedule.py): the input re-laid once (flat_input,
parallel over channels), the elementwise epilogue inlined into the last block and
computed at the tile from a local accumulator. The conv:

- CSR: loops (n, o/2) | y0, x0 | j | o1 (2), y1, x1: a tile of 2 output channels x yt x
  xt pixels accumulates in registers over the channels' non-zeros (both rows step through
  j together, the shorter one padded, see direct_sparse.py); per non-zero one offset load
  and one weight broadcast serve a channel's part of the tile; x1 (output columns)
  vectorised, o1 and y1 unrolled;
- BSR (bo, bk): (n, o/(2 bo)) | y0, x0 | jb, kk | o1 (2 bo), y1, x1: the bo channels of a
  block row share every input vector loaded;
- a map narrower than a vector whose plane is whole vectors (8x8, 4x4 at 16 lanes), when
  two channels' (block rows') planes fit in the accumulators: (n, o/ob) | j... | o1 (ob),
  p0, p1 with the plane p = y*ow + x fused (consecutive in the flat input), p1
  vectorised: the whole plane of ob channels per tile, ob as many as fit.

Two channels (block rows) per tile rather than one: the two rows' loads and FMAs are
independent and read the same input rows (measured on Zen 4, 2 cores: CSR 16x16 and 32x32
layers ~1.2x faster, BSR 4x1 ~2x; four channels with half the pixels was no better).

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
                                            sampled_parallel, sampled_split)


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
    vectors = exts[2] * exts[3] // lanes
    if exts[3] < lanes and exts[2] * exts[3] % lanes == 0 and 2 * rows * vectors <= budget:
        block = rows * largest_divisor(exts[1] // rows, max(1, budget // (vectors * rows)))
        o0, o1 = sampled_split(sch, o, [None, block])
        pv, x1 = sampled_split(sch, sch.fuse(y, x), [None, lanes])
        inner, tile = [o1, pv], []
    else:
        _, row_vectors = _row(exts[3], lanes)
        block = rows * (2 if exts[1] % (2 * rows) == 0 and budget >= 2 * rows * row_vectors
                        else 1)
        o0, o1 = sampled_split(sch, o, [None, block])
        y0, x0, *plane, x1 = _tile_plane(sch, y, x, exts[2], exts[3], lanes,
                                         max(1, budget // block))
        inner, tile = [o1, *plane], [y0, x0]
    sch.reorder(n, o0, *tile, *reduce, *inner, x1)
    for lp in inner:
        sch.unroll(lp)
    if (extent(sch, x1) or 1) > 1:
        sch.vectorize(x1)
    sch.reverse_compute_at(epilogue, (tile or [o0])[-1], preserve_unit_loops=True)
    parallel = steps >= PARALLEL_MIN_MACS
    finish_conv_tile(sch, conv, epilogue, [n, o0], reduce[0], parallel, lanes)
    for producer in producers:
        _schedule_input(sch, producer, parallel)
    return sch


def _row(OW, lanes) -> tuple[int, int]:
    """A tile's row: up to 2 vectors of output columns (a divisor of OW), and its vectors."""
    xt = largest_divisor(OW, 2 * lanes)
    return xt, -(-xt // lanes)


def _tile_plane(sch, y, x, OH, OW, lanes, budget):
    """A row of up to 2 vectors of output columns, then as many output rows as fit in
    `budget` vectors. Returns [y0, x0, y1, (x vector blocks,) x1]."""
    xt, row_vectors = _row(OW, lanes)
    yt = largest_divisor(OH, max(1, budget // row_vectors))
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
    sampled_parallel(sch, sch.fuse(n, c), parallel)
