"""Default CPU schedules for every PrimFunc that no primitive claims.

Three DLight rules, tried in order after the primitive's own rules:

- `ReductionTile`: one reduction (matmul/linear, pooling windows, other convolutions) plus
  an elementwise epilogue, whose innermost output axis is read contiguously: register-tiled
  like the direct conv (reduction outside, vector over that axis inside, accumulator in a
  local buffer, epilogue computed at the tile, outer loops parallel);
- TVM's own `dlight.cpu.Reduction` for multi-stage row reductions (softmax, norms, mean);
- `ParallelVectorize`: anything else, block by block: fused outer loops in parallel,
  innermost loop vectorised when the block is elementwise, reductions kept innermost.

Small functions stay single-threaded: waking the thread pool costs more than it saves.
"""
from __future__ import annotations

from tvm import s_tir, tirx
from tvm.sym.pattern import detect_linear_equation
from tvm.s_tir import dlight
from tvm.s_tir.dlight import ScheduleRule
from tvm.target import Target

from dlas.primitives.schedule_utils import (extent, fuse_and_parallelize, guarded, iter_kinds,
                                            largest_divisor, root_blocks, sampled_split,
                                            schedule_injective, vector_lanes, vector_registers)

# work items below which a function runs on one thread: waking and joining the pool costs
# microseconds (output elements of elementwise functions; multiply-adds of reductions,
# the same threshold as the direct conv's)
PARALLEL_MIN_ELEMS = 1 << 16
PARALLEL_MIN_WORK = 1 << 20


def generic_rules() -> list[ScheduleRule]:
    tvm_reduction = dlight.cpu.Reduction()
    return [guarded("ReductionTile", _reduction_tile),
            guarded("TVMReduction", lambda func, target: tvm_reduction.apply(func, target, False)),
            guarded("ParallelVectorize", _parallel_vectorize)]


def _inline_injective(sch: s_tir.Schedule) -> None:
    """Inline every elementwise/broadcast block that is not an output, until none is left."""
    changed = True
    while changed:
        changed = False
        outputs = {sch.get(b).name_hint for b in sch.get_output_blocks(sch.get_sblock("root"))}
        for block in root_blocks(sch):
            if sch.get(block).name_hint in outputs or set(iter_kinds(sch, block)) != {"S"}:
                continue
            try:
                sch.compute_inline(block)
                changed = True
                break
            except s_tir.schedule.schedule.ScheduleError:
                continue


def _product(values) -> int:
    out = 1
    for v in values:
        out *= v
    return out


def _stride(index: tirx.PrimExpr, var: tirx.Var) -> int | None:
    """The constant coefficient of `var` in `index` (0 if absent), None if not linear."""
    coeffs = detect_linear_equation(index, [var])
    if len(coeffs) != 2 or not isinstance(coeffs[0], tirx.IntImm):
        return None
    return int(coeffs[0])


def _contiguous_axis(sch: s_tir.Schedule, block) -> int | None:
    """Index of the innermost non-unit spatial iterator when the write and every read that
    depends on it walk it along their innermost non-unit dimension (stride 1, or 2 for
    strided windows), else None: vectorising over it would gather."""
    stmt = sch.get(block)
    spatial = [i for i, iv in enumerate(stmt.iter_vars)
               if iv.iter_type == tirx.IterVar.DataPar and int(iv.dom.extent) > 1]
    if not spatial:
        return None
    axis = spatial[-1]
    var = stmt.iter_vars[axis].var
    write = stmt.writes[0]
    if _innermost_stride(write, var) != 1:
        return None
    used = False
    for read in stmt.reads:
        if read.source.same_as(write.source):
            continue
        stride = _innermost_stride(read, var)
        if stride is None or stride > 2:
            return None
        used = used or stride > 0
    return axis if used else None


def _innermost_stride(region: tirx.BufferRegion, var: tirx.Var) -> int | None:
    """Stride of `var` in the buffer's innermost non-unit dimension; 0 if it is not used
    at all, None if it is used elsewhere or not linearly."""
    shape = [int(d) if isinstance(d, tirx.IntImm) else None for d in region.source.shape]
    strides = [_stride(rng.min, var) for rng in region.region]
    if None in strides:
        return None
    used = [d for d, st in enumerate(strides) if st]
    if not used:
        return 0
    if len(used) > 1 or any(e != 1 for e in shape[used[0] + 1:]):
        return None
    return strides[used[0]]


def _reduction_tile(func: tirx.PrimFunc, target: Target) -> s_tir.Schedule | None:
    sch = s_tir.Schedule(func)
    _inline_injective(sch)
    blocks = root_blocks(sch)
    if not 1 <= len(blocks) <= 2 or len(sch.get_output_blocks(sch.get_sblock("root"))) != 1:
        return None
    red = blocks[0]
    kinds = iter_kinds(sch, red)
    if "R" not in kinds or kinds.rstrip("R").count("R") or "O" in kinds:
        return None  # want spatial iterators first, then reductions
    if len(blocks) == 2 and set(iter_kinds(sch, blocks[1])) != {"S"}:
        return None
    loops = sch.get_loops(red)
    if len(loops) != len(kinds):
        return None
    exts = [extent(sch, lp) for lp in loops]
    if None in exts:
        return None
    axis = _contiguous_axis(sch, red)
    if axis is None:
        return None
    n_s = len(kinds.rstrip("R"))
    lanes = vector_lanes(target, sch.get(red).writes[0].source.dtype.bits)
    budget = 16 if vector_registers(target) >= 32 else 8

    vl = largest_divisor(exts[axis], lanes)
    rest = exts[axis] // vl
    nvec = largest_divisor(rest, 2)
    rows_axis = next((i for i in reversed(range(n_s)) if i != axis and exts[i] > 1), None)
    rt = largest_divisor(exts[rows_axis], max(1, budget // nvec)) if rows_axis is not None else 1

    v0, v1, v2 = sampled_split(sch, loops[axis], [None, nvec, vl])
    outer, inner = [], []
    for i in range(n_s):
        if i == axis:
            outer.append(v0)
        elif i == rows_axis:
            r0, r1 = sampled_split(sch, loops[i], [None, rt])
            outer.append(r0)
            inner.append(r1)
        else:
            outer.append(loops[i])
    sch.reorder(*outer, *loops[n_s:], *inner, v1, v2)
    for lp in (*inner, v1):
        sch.unroll(lp)
    sch.vectorize(v2)

    if len(blocks) == 1:
        epilogue = sch.cache_write(red, 0, "local")
    else:
        epilogue = blocks[1]
        sch.set_scope(red, 0, "local")
    sch.reverse_compute_at(epilogue, outer[-1], preserve_unit_loops=True)
    if _product(exts) >= PARALLEL_MIN_WORK:
        fuse_and_parallelize(sch, outer)
    sch.decompose_reduction(red, loops[n_s])
    last = sch.get_loops(epilogue)[-1]
    if 1 < (extent(sch, last) or 0) <= 4 * lanes:
        sch.vectorize(last)
    return sch


def _parallel_vectorize(func: tirx.PrimFunc, target: Target) -> s_tir.Schedule | None:
    sch = s_tir.Schedule(func)
    _inline_injective(sch)
    applied = False
    for block in root_blocks(sch):
        kinds = iter_kinds(sch, block)
        loops = sch.get_loops(block)
        exts = [extent(sch, lp) for lp in loops]
        if not loops or None in exts or len(loops) != len(kinds) or "O" in kinds:
            continue
        lanes = vector_lanes(target, sch.get(block).writes[0].source.dtype.bits)
        if set(kinds) == {"S"}:
            schedule_injective(sch, block, lanes, parallel_min_elems=PARALLEL_MIN_ELEMS)
            applied = True
        elif not kinds.rstrip("R").count("R"):
            n_s = len(kinds.rstrip("R"))
            if n_s and _product(exts) >= PARALLEL_MIN_WORK and _product(exts[:n_s]) > 1:
                fuse_and_parallelize(sch, loops[:n_s])
                applied = True
    return sch if applied else None
