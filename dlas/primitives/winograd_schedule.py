"""Default CPU schedule for a fused PrimFunc holding one `winograd` conv (winograd_compute.py).

After FuseOps/FuseTIR such a function is: [pad] -> winograd_input_rows -> winograd_input ->
winograd_gemm -> winograd_output_rows -> conv2d_winograd -> [elementwise epilogue: bias,
residual add, relu ...]. The schedule:

- input transform: the pad inlined; per (tile, vector of input channels), the row pass
  computed into registers and the column pass from them, every index in the tile unrolled
  (so each output is its own short sum), the channels vectorised; parallel over tiles;
- GEMMs: per (a, b) a register tile of tiles x output-channel vectors accumulates over the
  input channels in a local buffer (a broadcast V value times a contiguous vector of the
  transformed weight block), like direct's channel-vectorised tile; parallel over
  (a, b, channel block), the weight block staying in cache while the tiles stream past;
- output transform: per (output tile, vector of output channels) the row pass into
  registers, then the m x m pixels, unrolled, vectorised over the channels, the epilogue
  inlined into it (one write of each output); parallel over the output tiles.
Tile sizes are drawn with MetaSchedule's sampling (sampled_split), except the split of the
output by m, which the transform needs exactly.
"""
from __future__ import annotations

import re

from tvm import s_tir, tirx
from tvm.s_tir.dlight import ScheduleRule
from tvm.target import Target

from dlas.primitives.base import LAYOUT_KEY
from dlas.primitives.schedule_utils import (PARALLEL_MIN_MACS, SBlockRV, block_name, extent,
                                            guarded, iterations, largest_divisor,
                                            primitive_blocks, register_tile, root_blocks,
                                            sampled_parallel, sampled_split, single_output)
from dlas.primitives.winograd_compute import NAME

RULE = "WinogradConv2D"
STAGES = ("winograd_data_pack", "winograd_input_rows", "winograd_input", "winograd_gemm", "winograd_output_rows",
          "conv2d_winograd")
_LAYOUT = re.compile(r"winograd(\d+):(\d+)o")


def winograd_rule() -> ScheduleRule:
    return guarded(RULE, _schedule)


def _schedule(func: tirx.PrimFunc, target: Target) -> s_tir.Schedule | None:
    sch = s_tir.Schedule(func)
    gemms = primitive_blocks(sch, NAME)
    if len(gemms) != 1 or not single_output(sch):
        return None
    layout = _LAYOUT.fullmatch(str(sch.get(gemms[0]).annotations.get(LAYOUT_KEY, "")))
    blocks = root_blocks(sch)
    names = [block_name(sch, b) for b in blocks]
    if layout is None or any(stage not in names for stage in STAGES):
        return None
    m, ob = int(layout.group(1)), int(layout.group(2))
    stage = {name: blocks[names.index(name)] for name in STAGES}
    lanes, budget = register_tile(sch, stage["winograd_gemm"], target)
    for block in blocks[:names.index(STAGES[0])]:  # the pad, into the pack
        sch.compute_inline(block)
    for block in blocks[names.index(STAGES[-1]) + 1:]:  # the epilogue, into the output
        sch.reverse_compute_inline(block)
    parallel = iterations(sch, stage["winograd_gemm"]) >= PARALLEL_MIN_MACS
    _pack(sch, stage["winograd_data_pack"], parallel)
    _input_transform(sch, stage["winograd_input_rows"], stage["winograd_input"], lanes, parallel)
    _gemm(sch, stage["winograd_gemm"], lanes, budget, ob, parallel)
    _output_transform(sch, stage["winograd_output_rows"], stage["conv2d_winograd"], m, lanes,
                      parallel)
    return sch


def _rows_at(sch: s_tir.Schedule, rows: SBlockRV, at) -> None:
    """A transform's row pass computed into registers at its column pass's loop `at`
    (unit loops kept: a loop count the search's replay keeps for any tile): its own loops
    (the indices in the tile) unrolled, the innermost (the lanes) vectorised."""
    sch.compute_at(rows, at, preserve_unit_loops=True)
    sch.set_scope(rows, 0, "local")
    loops = sch.get_loops(rows)
    first = next(i for i, lp in enumerate(loops) if sch.get(lp).same_as(sch.get(at))) + 1
    for lp in loops[first:-1]:
        sch.unroll(lp)
    sch.vectorize(loops[-1])


def _pack(sch: s_tir.Schedule, pack: SBlockRV, parallel: bool) -> None:
    """The NCHW[k]c pack: once over the input, parallel over (n, channel block, row), each
    input row read as one vector per channel (contiguous) and written k apart; vectors of
    the k channels of a pixel would gather H*W apart (4 KiB at 32x32: one L1 set)."""
    n, cb, y, x, ci = sch.get_loops(pack)
    sch.reorder(ci, x)
    sch.vectorize(x)
    sampled_parallel(sch, sch.fuse(n, cb, y), parallel)


def _input_transform(sch, rows: SBlockRV, v: SBlockRV, lanes: int, parallel: bool) -> None:
    a, b, p, c = sch.get_loops(v)
    vl = largest_divisor(extent(sch, c), lanes)
    c0, c1 = sampled_split(sch, c, [None, vl])
    sch.reorder(p, c0, a, b, c1)
    _rows_at(sch, rows, c0)
    sch.unroll(a)
    sch.unroll(b)
    sch.vectorize(c1)
    sampled_parallel(sch, sch.fuse(p, c0), parallel)


def _gemm(sch, gemm: SBlockRV, lanes: int, budget: int, ob: int, parallel: bool) -> None:
    """Tile (p: PT) x (o: nvec x VL); loops a, b, o0, p0 | rc | p1, o1, o2 (vector)."""
    a, b, p, o, rc = sch.get_loops(gemm)
    tiles, channels = extent(sch, p), extent(sch, o)
    vl = largest_divisor(ob, lanes)
    pt = largest_divisor(tiles, 8)
    cap = max(1, budget // pt)
    nvec = max(k for k in range(1, cap + 1)
               if (channels // vl) % k == 0 and (k * vl % ob == 0 or ob % (k * vl) == 0))
    o0, o1, o2 = sampled_split(sch, o, [None, nvec, vl])
    p0, p1 = sampled_split(sch, p, [None, pt])
    sch.reorder(a, b, o0, p0, rc, p1, o1, o2)
    acc = sch.cache_write(gemm, 0, "local")
    sch.reverse_compute_at(acc, p0, preserve_unit_loops=True)
    sch.unroll(p1)
    sch.unroll(o1)
    sch.vectorize(o2)
    inner = sch.get_loops(acc)[-1]
    if extent(sch, inner) is not None and extent(sch, inner) > 1:
        sch.vectorize(inner)
    # (before the init is split off: parallel needs a whole reduction block)
    sampled_parallel(sch, sch.fuse(a, b, o0), parallel)
    sch.decompose_reduction(gemm, rc)


def _output_transform(sch, rows: SBlockRV, out: SBlockRV, m: int, lanes: int,
                      parallel: bool) -> None:
    n, o, y, x = sch.get_loops(out)
    vl = largest_divisor(extent(sch, o), lanes)
    o0, o1 = sampled_split(sch, o, [None, vl])
    y0, y1 = sch.split(y, [None, m])  # exactly m: the transform's index in the tile
    x0, x1 = sch.split(x, [None, m])
    # the pixels written as rows of m (contiguous in NCHW, as the residual is read), the
    # channels unrolled: vectors of channels would scatter H*W apart, in one L1 set at 32x32
    # (the 64-channel 32x32 conv with a residual add took 2.5x the time of the one without)
    sch.reorder(n, y0, x0, o0, o1, y1, x1)
    _rows_at(sch, rows, o0)
    sch.unroll(o1)
    sch.unroll(y1)
    sch.vectorize(x1)
    sampled_parallel(sch, sch.fuse(n, y0, x0), parallel)
