"""Default CPU schedule for a fused PrimFunc holding one `conv2d_direct` block.

After FuseOps/FuseTIR such a function is: [pad] -> conv2d_direct -> [elementwise epilogue:
bias add, batch-norm scale/shift, residual add, relu, clip ...]. The schedule:

- pad: materialised once, parallel over (batch, channel) rows: its zero fill then never
  sits in the hot loop (inlining it puts a bounds test on every multiply-add);
- conv: a register tile of output channels x output pixels accumulates in a local buffer
  over the whole (c, ky, kx) window, innermost axis vectorised, the rest unrolled; the
  outer (channel block, pixel block) loops are fused and run in parallel;
- epilogue: all elementwise blocks inlined into the last one, which is computed at the
  tile, reading the accumulator straight from registers.

Weight layout IHWO (groups=1): vector over output channels, broadcast one input pixel per
tile column; every layer gets full-width vectors however small its feature map.
Weight layout OIHW (depthwise, grouped): vector over output columns.
"""
from __future__ import annotations

from tvm import s_tir, tirx
from tvm.s_tir.dlight import ScheduleRule
from tvm.target import Target

from dlas.primitives.base import LAYOUT_KEY, PRIMITIVE_KEY
from dlas.primitives.schedule_utils import (annotated_blocks, block_name, extent,
                                            fuse_and_parallelize, guarded, iter_kinds,
                                            largest_divisor, root_blocks, vector_lanes,
                                            vector_registers)

# accumulators kept in registers: most of the register file, leaving room for the
# weight vectors and broadcast inputs of one step
_ACCUMULATORS = {32: 16, 16: 8}


def direct_conv2d_rule() -> ScheduleRule:
    return guarded("DirectConv2D", _schedule)


def _schedule(func: tirx.PrimFunc, target: Target) -> s_tir.Schedule | None:
    sch = s_tir.Schedule(func)
    convs = [b for b in annotated_blocks(sch, PRIMITIVE_KEY)
             if str(sch.get(b).annotations[PRIMITIVE_KEY]) == "direct"]
    if len(convs) != 1 or len(sch.get_output_blocks(sch.get_sblock("root"))) != 1:
        return None
    conv = convs[0]
    if iter_kinds(sch, conv) != "SSSSRRR":
        return None
    layout = str(sch.get(conv).annotations[LAYOUT_KEY])
    conv, epilogue, producers = _isolate(sch, conv)

    lanes = vector_lanes(target, sch.get(conv).writes[0].source.dtype.bits)
    budget = _ACCUMULATORS[vector_registers(target)]
    n, o, y, x, rc, ry, rx = sch.get_loops(conv)
    O, OH, OW = (extent(sch, lp) for lp in (o, y, x))
    if None in (O, OH, OW):
        return None
    if layout == "IHWO" and O % min(lanes, 4) == 0:
        outer = _tile_channels_vectorised(sch, conv, lanes, budget, O, OH, OW)
    else:
        outer = _tile_columns_vectorised(sch, conv, lanes, budget, O, OH, OW)
    n0, o0, y0, x0 = outer
    sch.reverse_compute_at(epilogue, x0, preserve_unit_loops=True)
    if layout == "IHWO":
        # accumulate as [.., pixel, channel] so a vector of channels is contiguous
        sch.transform_layout(conv, ("write", 0), lambda n, o, y, x: (n, y, x, o))
    fuse_and_parallelize(sch, [n0, o0, y0, x0])
    sch.decompose_reduction(conv, rc)
    _vectorize_epilogue(sch, epilogue, lanes)
    for block in producers:
        _schedule_pad(sch, block)
    return sch


def _isolate(sch: s_tir.Schedule, conv):
    """Inline the elementwise blocks between conv and the output; give conv a local
    accumulator. Returns (conv, epilogue block, producer blocks)."""
    blocks = root_blocks(sch)
    names = [block_name(sch, b) for b in blocks]
    idx = names.index(block_name(sch, conv))
    for block in blocks[idx + 1:-1]:
        sch.compute_inline(block)
    producers = blocks[:idx]
    if idx == len(blocks) - 1:  # conv writes the output itself
        epilogue = sch.cache_write(conv, 0, "local")
    else:
        epilogue = root_blocks(sch)[-1]
        if len(sch.get_producers(epilogue)) < 1:
            raise ValueError("epilogue is not fed by the conv")
        sch.set_scope(conv, 0, "local")
    return conv, epilogue, producers


def _tile_channels_vectorised(sch, conv, lanes, budget, O, OH, OW):
    """Tile (o: nvec x VL) x (y: YT) x (x: XT); loops n,o0,y0,x0 | rc,ry,rx | y1,x1,o1,o2."""
    vl = largest_divisor(O, lanes)
    nvec = 2 if O % (2 * vl) == 0 and O >= 4 * vl else 1
    pixels = max(1, budget // nvec)
    xt = largest_divisor(OW, pixels)
    yt = largest_divisor(OH, max(1, pixels // xt))
    n, o, y, x, rc, ry, rx = sch.get_loops(conv)
    o0, o1, o2 = sch.split(o, [None, nvec, vl])
    y0, y1 = sch.split(y, [None, yt])
    x0, x1 = sch.split(x, [None, xt])
    sch.reorder(n, o0, y0, x0, rc, ry, rx, y1, x1, o1, o2)
    for lp in (y1, x1, o1):
        sch.unroll(lp)
    sch.vectorize(o2)
    return n, o0, y0, x0


def _tile_columns_vectorised(sch, conv, lanes, budget, O, OH, OW):
    """Tile (o: OT) x (y: YT) x (x: XT, vector); loops n,o0,y0,x0 | rc,ry,rx | o1,y1,x1."""
    xt = largest_divisor(OW, lanes)
    yt = largest_divisor(OH, 4)
    ot = largest_divisor(O, max(1, budget // yt))
    n, o, y, x, rc, ry, rx = sch.get_loops(conv)
    o0, o1 = sch.split(o, [None, ot])
    y0, y1 = sch.split(y, [None, yt])
    x0, x1 = sch.split(x, [None, xt])
    sch.reorder(n, o0, y0, x0, rc, ry, rx, o1, y1, x1)
    for lp in (o1, y1):
        sch.unroll(lp)
    if xt > 1:
        sch.vectorize(x1)
    return n, o0, y0, x0


def _vectorize_epilogue(sch, epilogue, lanes):
    loops = sch.get_loops(epilogue)
    inner = loops[-1]
    ext = extent(sch, inner)
    if ext is not None and 1 < ext <= 4 * lanes:
        sch.vectorize(inner)


def _schedule_pad(sch, block):
    """A producer (the pad) runs before the conv, parallel over its (n, c) rows."""
    loops = sch.get_loops(block)
    if iter_kinds(sch, block).strip("S") or len(loops) < 3:
        return
    fuse_and_parallelize(sch, loops[:2])
