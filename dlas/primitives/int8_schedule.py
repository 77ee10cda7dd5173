"""Default CPU schedule for a fused PrimFunc holding one `conv2d_int8_dot` block
(int8_compute.py): the Lx4 dot product tensorized with the target's instruction.

After FuseOps/FuseTIR such a function is: data_pack_u8/_s8/_u7 (pad [+ shift] + NCHW[ib]c) ->
conv (packed int32 output [n, Op/L, OH, OW, L], L the instruction's lanes) ->
unpack[_compensate] (or compensate alone, blocked output: int8_layout.py) -> [requantization
epilogue: float rescale, bias, residual add, relu, quantize of the next layer...]. The
schedule:

- data pack: runs once, parallel over (n, channel block, row), vectorised along rows;
- conv: a register tile of [rows, columns, channel blocks of L] int32 accumulators (one
  vector register each) over the whole reduction (channel block, ky, kx, groups of 4
  channels); the innermost Lx4 is replaced by the target's instruction (`vpdpbusd`, the
  AVX512BW or AVX2 multiply-add pair, `sdot`), the tile loops around it unrolled;
  parallel over the fused (n, channel blocks, row and column blocks);
- unpack, compensation and epilogue inlined into the last block and computed at the tile,
  from the accumulators.

The tile shape is the primitive's: `direct` and `gemm` (a 1x1 conv over its patch matrix)
take direct's float heuristic (up to 8 pixels, channel blocks filling the rest of the
accumulator budget), `spatial_pack` its own (two channel blocks, then as many columns and
rows as fit).
"""
from __future__ import annotations

from tvm import s_tir, tirx
from tvm.s_tir.dlight import ScheduleRule
from tvm.target import Target

from dlas.primitives.int8_compute import PACKS
from dlas.primitives.int8_intrin import LANES, int8_path, intrinsic
from dlas.primitives.schedule_utils import (PARALLEL_MIN_MACS, extent, guarded, largest_divisor,
                                            open_conv, register_tile, sampled_parallel,
                                            sampled_split, vectorize_epilogue)

RULE = "Int8DotConv2D"


def int8_block_name(primitive: str) -> str:
    """The PRIMITIVE_KEY value of `primitive`'s int8 dot-product conv block."""
    return f"{primitive}.int8"


def int8_dot_rule(primitive: str) -> ScheduleRule:
    """The rule for `primitive`'s int8 dot-product convs (direct or spatial_pack tiles)."""
    tile = _tile_spatial_pack if primitive == "spatial_pack" else _tile_direct

    def apply(func: tirx.PrimFunc, target: Target) -> s_tir.Schedule | None:
        path = int8_path(target)
        if path not in LANES:
            return None
        opened = open_conv(func, int8_block_name(primitive), "SSSSSRRRRR")
        if opened is None:
            return None
        sch, conv, epilogue, producers, _ = opened
        _, budget = register_tile(sch, conv, target)
        n, ob, y, x, oi, rb, ry, rx, r4, ri = sch.get_loops(conv)
        OBS, OH, OW = (extent(sch, lp) for lp in (ob, y, x))
        if None in (OBS, OH, OW):
            return None
        nob, yt, xt = tile(OBS, OH, OW, budget)
        o0, o1 = sampled_split(sch, ob, [None, nob])
        y0, y1 = sampled_split(sch, y, [None, yt])
        x0, x1 = sampled_split(sch, x, [None, xt])
        sch.reorder(n, o0, y0, x0, rb, ry, rx, r4, y1, x1, o1, oi, ri)
        for lp in (y1, x1, o1):
            sch.unroll(lp)
        sch.reverse_compute_at(epilogue, x0, preserve_unit_loops=True)
        macs = 1
        for iv in sch.get(conv).iter_vars:
            macs *= int(iv.dom.extent)
        parallel = macs >= PARALLEL_MIN_MACS
        # a fixed choice, not sampled_parallel: under a split of this loop TVM 0.27's
        # tensorize fails ("extent of an IterVar (int32) must match its Var's dtype (int64)")
        fused = sch.fuse(n, o0, y0, x0)
        if parallel:
            sch.parallel(fused)
        init = sch.decompose_reduction(conv, rb)
        sch.vectorize(sch.get_loops(init)[-1])
        activations = _activations(sch.get(producers[-1]).name_hint)
        sch.tensorize(sch.get_loops(conv)[-2], intrinsic(path, activations))
        vectorize_epilogue(sch, epilogue, LANES[path])
        for producer in producers:  # data_pack
            _schedule_pack(sch, producer, parallel)
        return sch

    return guarded(RULE, apply)


def _activations(pack: str) -> str:
    """What the data pack block `pack` holds (int8_compute.PACKS; FuseTIR may have suffixed
    its name)."""
    return next(kind for name, kind in PACKS.items() if pack.startswith(name))


def _schedule_pack(sch: s_tir.Schedule, pack, parallel: bool) -> None:
    """The data pack [n, Cp/ib, Hp, Wp, ib] = shifted NCHW rows: parallel over (n, block,
    row); per row the ib channels unrolled, each a vector along the row (contiguous reads
    of the NCHW input): 2.5-4x faster than element by element (64x34x34, Zen 5). From
    NCHW[ib]c data (int8_layout.py) a padded row is one contiguous copy: vectors of 64
    bytes along it."""
    n, cb, h, w, ci = sch.get_loops(pack)
    sampled_parallel(sch, sch.fuse(n, cb, h), parallel)
    if len(sch.get(pack).reads[0].source.shape) == 5:
        ib = extent(sch, ci)
        _, w = sch.split(w, [None, largest_divisor(extent(sch, w), max(1, 64 // ib))])
        sch.vectorize(sch.fuse(w, ci))
        return
    sch.reorder(ci, w)
    sch.unroll(ci)
    wp = extent(sch, w)
    if wp is not None and wp > 64:
        _, w = sch.split(w, [None, largest_divisor(wp, 32)])
    if (extent(sch, w) or 1) > 1:
        sch.vectorize(w)


def _tile_direct(OBS: int, OH: int, OW: int, budget: int) -> tuple[int, int, int]:
    """(channel blocks, rows, columns): direct's float tile, up to 8 pixels, the channel
    blocks filling the rest of the accumulator budget."""
    xt = largest_divisor(OW, 8)
    yt = largest_divisor(OH, max(1, 8 // xt))
    return largest_divisor(OBS, max(1, budget // (xt * yt))), yt, xt


def _tile_spatial_pack(OBS: int, OH: int, OW: int, budget: int) -> tuple[int, int, int]:
    """(channel blocks, rows, columns): spatial_pack's float tile, two channel blocks
    (its oc block of two vectors), then columns and rows up to the budget."""
    nob = largest_divisor(OBS, 2)
    xt = largest_divisor(OW, max(1, budget // nob))
    yt = largest_divisor(OH, max(1, budget // (nob * xt)))
    return nob, yt, xt
