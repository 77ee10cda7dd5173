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

Weight layout OIHW{b}o (groups=1): vector over output channels, broadcast one input pixel
per tile column; every layer gets full-width vectors however small its feature map.
Weight layout OIHW (depthwise, grouped): vector over output columns.

Blocked activations (direct_blocked.py, output [n, O/b, OH, OW, b]): the same channel tile
with whole blocks of b as the vectors; the accumulators are already [.., pixel, channel]
and the epilogue writes contiguous vectors of b channels.
"""
from __future__ import annotations

from tvm import s_tir, tirx
from tvm.s_tir.dlight import ScheduleRule
from tvm.target import Target

from dlas.primitives.direct_blocked import CLAMPED_PAD
from dlas.primitives.direct_blocked import NAME as BLOCKED
from dlas.primitives.direct_compute import kernel_block
from dlas.primitives.schedule_utils import (PARALLEL_MIN_MACS, extent, finish_conv_tile, guarded,
                                            iterations, largest_divisor, open_conv, register_tile,
                                            sampled_split, schedule_producer)


def direct_conv2d_rule() -> ScheduleRule:
    return guarded("DirectConv2D", _schedule)


def _schedule(func: tirx.PrimFunc, target: Target) -> s_tir.Schedule | None:
    opened = open_conv(func, "direct", "SSSSRRR", inline_pad=True)  # (pad -> pad_phases)
    if opened is None:
        return None
    sch, conv, epilogue, producers, layout = opened

    lanes, budget = register_tile(sch, conv, target)
    n, o, y, x, rc, ry, rx = sch.get_loops(conv)
    O, OH, OW = (extent(sch, lp) for lp in (o, y, x))
    if None in (O, OH, OW):
        return None
    block = kernel_block(layout)
    if block is not None:
        outer = _tile_channels_vectorised(sch, conv, lanes, budget, block, O, OH, OW)
    else:
        outer = _tile_columns_vectorised(sch, conv, lanes, budget, O, OH, OW)
    n0, o0, y0, x0 = outer
    sch.reverse_compute_at(epilogue, x0, preserve_unit_loops=True)
    if block is not None:
        # accumulate as [.., pixel, channel] so a vector of channels is contiguous
        sch.transform_layout(conv, ("write", 0), lambda n, o, y, x: (n, y, x, o))
    macs = O * OH * OW * (extent(sch, n) or 1) * _window(sch, conv)
    parallel = macs >= PARALLEL_MIN_MACS
    finish_conv_tile(sch, conv, epilogue, [n0, o0, y0, x0], rc, parallel, lanes)
    for producer in producers:  # the pad (or its column phases): parallel over (n, c) rows
        schedule_producer(sch, producer, parallel, rows=2)
    return sch


def direct_blocked_rule() -> ScheduleRule:
    return guarded("DirectBlockedConv2D", _schedule_blocked)


def _schedule_blocked(func: tirx.PrimFunc, target: Target) -> s_tir.Schedule | None:
    opened = open_conv(func, BLOCKED, "SSSSSRRR")
    if opened is None:
        return None
    sch, conv, epilogue, producers, _ = opened
    _, budget = register_tile(sch, conv, target)
    n, ob, y, x, oi, rc, ry, rx = sch.get_loops(conv)
    OB, OH, OW = (extent(sch, lp) for lp in (ob, y, x))
    if None in (OB, OH, OW):
        return None
    xt, yt = _pixel_tile(budget, OH, OW)
    nob = largest_divisor(OB, max(1, budget // (xt * yt)))
    ob0, ob1 = sampled_split(sch, ob, [None, nob])
    outer = _pixels_then_channels(sch, n, ob0, [ob1, oi], y, x, [rc, ry, rx], yt, xt)
    sch.reverse_compute_at(epilogue, outer[-1], preserve_unit_loops=True)
    parallel = iterations(sch, conv) >= PARALLEL_MIN_MACS
    finish_conv_tile(sch, conv, epilogue, list(outer), rc, parallel, extent(sch, oi))
    for producer in producers:  # the pad: parallel over (n, channel block) planes, or
        if sch.get(producer).name_hint.startswith(CLAMPED_PAD):  # read in place
            sch.compute_inline(producer)
        else:
            schedule_producer(sch, producer, parallel, rows=2)
    return sch


def _pixel_tile(budget: int, OH: int, OW: int) -> tuple[int, int]:
    """(columns, rows) of a channel-vectorised tile (_tile_channels_vectorised)."""
    xt = largest_divisor(OW, budget if OW >= budget else 8)
    return xt, largest_divisor(OH, max(1, 8 // xt))


def _window(sch, conv) -> int:
    """Reduction length (input channels of the group x kernel window) of the conv block."""
    size = 1
    for iv in sch.get(conv).iter_vars:
        if iv.iter_type == tirx.IterVar.CommReduce:
            size *= int(iv.dom.extent)
    return size


def _tile_channels_vectorised(sch, conv, lanes, budget, block, O, OH, OW):
    """Tile (o: nvec x VL) x (y: YT) x (x: XT); loops n,o0,y0,x0 | rc,ry,rx | y1,x1,o1,o2.

    Up to 8 pixels per tile, or a row of as many as the accumulator budget where the rows
    are at least that long; the channel vectors fill the rest of the budget, so small feature maps
    (1x1, 2x2: matrix-vector products) still get enough independent FMA chains to hide their
    latency. A row of 16 floats is a whole cache line of each output channel: on AVX-512
    (16 accumulators) MobileNetV2@32's 1x1 convs at 32x32, where a channel's rows lie 4 KB
    apart, ran 1.3-1.7x faster with 16-pixel rows than with 8 pixels x 2 channel vectors
    (Zen 4, alone, 2 threads; the whole model 1.07x, resnet18 the same). The channel tile is
    a divisor or a multiple of the weight block, so each vector is one aligned piece of a
    block (no gathers).
    """
    vl = largest_divisor(block, lanes)
    xt, yt = _pixel_tile(budget, OH, OW)
    cap = max(1, budget // (xt * yt))
    nvec = max(k for k in range(1, cap + 1)
               if (O // vl) % k == 0 and (k * vl % block == 0 or block % (k * vl) == 0))
    n, o, y, x, rc, ry, rx = sch.get_loops(conv)
    o0, o1, o2 = sampled_split(sch, o, [None, nvec, vl])
    return _pixels_then_channels(sch, n, o0, [o1, o2], y, x, [rc, ry, rx], yt, xt)


def _pixels_then_channels(sch, n, o0, channels, y, x, reduction, yt, xt):
    """Rows and columns split by (yt, xt); loops n,o0,y0,x0 | reduction | y1,x1,*channels,
    the tile loops unrolled, the last (a vector of channels) vectorised. Returns the outer
    loops (n, o0, y0, x0)."""
    y0, y1 = sampled_split(sch, y, [None, yt])
    x0, x1 = sampled_split(sch, x, [None, xt])
    sch.reorder(n, o0, y0, x0, *reduction, y1, x1, *channels)
    for lp in (y1, x1, *channels[:-1]):
        sch.unroll(lp)
    sch.vectorize(channels[-1])
    return n, o0, y0, x0


def _tile_columns_vectorised(sch, conv, lanes, budget, O, OH, OW):
    """Tile (o: OT) x (y: YT) x (x: XT, vector); loops n,o0,y0,x0 | rc,ry,rx | o1,y1,x1."""
    xt = largest_divisor(OW, lanes)
    yt = largest_divisor(OH, 4)
    ot = largest_divisor(O, max(1, budget // yt))
    n, o, y, x, rc, ry, rx = sch.get_loops(conv)
    o0, o1 = sampled_split(sch, o, [None, ot])
    y0, y1 = sampled_split(sch, y, [None, yt])
    x0, x1 = sampled_split(sch, x, [None, xt])
    sch.reorder(n, o0, y0, x0, rc, ry, rx, o1, y1, x1)
    for lp in (o1, y1):
        sch.unroll(lp)
    if xt > 1:
        sch.vectorize(x1)
    return n, o0, y0, x0
