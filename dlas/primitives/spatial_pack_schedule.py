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

from dlas.primitives.base import PRIMITIVE_KEY
from dlas.primitives.direct_schedule import PARALLEL_MIN_MACS
from dlas.primitives.spatial_pack_compute import NAME, RULE
from dlas.primitives.schedule_utils import (annotated_blocks, block_name, extent, guarded,
                                            iter_kinds, largest_divisor, root_blocks,
                                            vector_lanes, vector_registers)

# vector accumulators of one tile: most of the register file, the rest holds the weight
# vectors and broadcast inputs of one step
ACCUMULATORS = {32: 16, 16: 8}


def spatial_pack_rule() -> ScheduleRule:
    return guarded(RULE, _schedule)


def _schedule(func: tirx.PrimFunc, target: Target) -> s_tir.Schedule | None:
    sch = s_tir.Schedule(func)
    convs = [b for b in annotated_blocks(sch, PRIMITIVE_KEY)
             if str(sch.get(b).annotations[PRIMITIVE_KEY]) == NAME]
    if len(convs) != 1:
        return None
    conv = convs[0]
    if (iter_kinds(sch, conv) != "SSSSSRRRR"
            or len(sch.get_output_blocks(sch.get_sblock("root"))) != 1):
        return None
    isolated = _isolate(sch, conv)
    if isolated is None:
        return None
    conv, epilogue, producers = isolated
    lanes = vector_lanes(target, sch.get(conv).writes[0].source.dtype.bits)
    budget = ACCUMULATORS[vector_registers(target)]
    tiled = _tile_packed(sch, conv, lanes, budget)
    if tiled is None:
        return None
    parallel_loops, at, first_reduction = tiled
    sch.reverse_compute_at(epilogue, at, preserve_unit_loops=True)
    fused = sch.fuse(*parallel_loops)
    parallel = _macs(sch, conv) >= PARALLEL_MIN_MACS
    if parallel:
        sch.parallel(fused)
    sch.decompose_reduction(conv, first_reduction)
    _vectorize_epilogue(sch, epilogue, lanes)
    for producer in producers:
        _schedule_producer(sch, producer, parallel)
    return sch


def _isolate(sch: s_tir.Schedule, conv):
    """Inline the blocks between conv and the output (unpack, epilogue) and the pad into
    the data pack; give conv a local accumulator. Returns (conv, last block, producers)."""
    blocks = root_blocks(sch)
    names = [block_name(sch, b) for b in blocks]
    idx = names.index(block_name(sch, conv))
    for block in blocks[idx + 1:-1]:
        sch.compute_inline(block)
    producers = blocks[:idx]
    if len(producers) == 2:  # pad -> data_pack: one pass over the input
        sch.compute_inline(producers[0])
        producers = producers[1:]
    if idx == len(blocks) - 1:  # conv writes the output itself
        epilogue = sch.cache_write(conv, 0, "local")
    else:
        epilogue = root_blocks(sch)[-1]
        if block_name(sch, conv) not in {block_name(sch, p) for p in sch.get_producers(epilogue)}:
            return None
        sch.set_scope(conv, 0, "local")
    return conv, epilogue, producers


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
    oi0, oi1, oi2 = sch.split(oi, [None, nvec, vl])
    y0, y1 = sch.split(y, [None, yt])
    x0, x1 = sch.split(x, [None, xt])
    sch.reorder(n, ob, y0, oi0, x0, *reductions, y1, x1, oi1, oi2)
    for lp in (y1, x1, oi1):
        sch.unroll(lp)
    sch.vectorize(oi2)
    for lp in reductions[1:3]:  # the kernel window (ky, kx)
        sch.unroll(lp)
    return [n, ob, y0], x0, reductions[0]


def _macs(sch, conv) -> int:
    size = 1
    for iv in sch.get(conv).iter_vars:
        size *= int(iv.dom.extent)
    return size


def _vectorize_epilogue(sch, epilogue, lanes):
    inner = sch.get_loops(epilogue)[-1]
    ext = extent(sch, inner)
    if ext is not None and 1 < ext <= 4 * lanes:
        sch.vectorize(inner)


def _schedule_producer(sch, block, parallel):
    """data_pack / pad: parallel over its outer rows."""
    loops = sch.get_loops(block)
    if iter_kinds(sch, block).strip("S") or len(loops) < 3:
        return
    fused = sch.fuse(*loops[:3])
    if parallel:
        sch.parallel(fused)
