"""Small helpers shared by the default (DLight) schedule rules of primitives and codegen.

Everything here works on an `s_tir.Schedule`; a helper that cannot apply raises the
schedule's own error, and the rule that called it gives the function up (returns None).
"""
from __future__ import annotations

import logging
from collections.abc import Callable

from tvm import s_tir, tirx
from tvm.s_tir.dlight import ScheduleRule
from tvm.runtime import DataType
from tvm.target import Target
from tvm.target.codegen import (llvm_get_system_triple, llvm_get_vector_width,
                                target_has_features)

from dlas.errors import first_line
from dlas.primitives.base import LAYOUT_KEY, PRIMITIVE_KEY

log = logging.getLogger(__name__)

RULE_KEY = "dlas.schedule_rule"
SBlockRV = s_tir.schedule.SBlockRV
LoopRV = s_tir.schedule.LoopRV


def vector_bits(target: Target) -> int:
    """Width of one native vector register of `target`. On x86 from its features: TVM 0.27's
    `llvm_get_vector_width` answers 512 for every x86 CPU (haswell, znver3 and plain x86-64
    included), and schedules sized for 16 float lanes and 32 registers on an AVX2 CPU ran
    resnet18 2.4x slower (22.3 against 9.2 ms, `direct`, Zen 3)."""
    if target.kind.name != "llvm":
        return 128
    if is_x86(target):
        for feature, bits in (("avx512f", 512), ("avx", 256)):
            if target_has_features(feature, target):
                return bits
        return 128
    bits = llvm_get_vector_width(target)
    return bits if bits > 0 else 128


def is_x86(target: Target) -> bool:
    """An llvm target for x86 (its mtriple, else the host's): the only targets whose features
    `target_has_features` can be asked of — it answers for the host's triple."""
    triple = str(target.attrs.get("mtriple", "")) or llvm_get_system_triple()
    return target.kind.name == "llvm" and triple.startswith(("x86", "i386", "i686"))


def vector_lanes(target: Target, dtype_bits: int = 32) -> int:
    """SIMD lanes of `dtype_bits`-wide elements in one native vector register of `target`."""
    return max(1, vector_bits(target) // dtype_bits)


def current_lanes(dtype: str) -> int:
    """Vector lanes of `dtype` on the current target (legalizations run under `with
    target`; 512-bit vectors assumed without one)."""
    target = Target.current(allow_none=True)
    bits = DataType(dtype).bits
    return vector_lanes(target, bits) if target is not None else 512 // bits


def vector_registers(target: Target) -> int:
    """Architectural vector registers: 32 with AVX-512 (and on AArch64), else 16."""
    wide = vector_bits(target) >= 512
    arm = "aarch64" in str(target.attrs.get("mtriple", ""))
    return 32 if wide or arm else 16


def largest_divisor(n: int, cap: int) -> int:
    """The largest divisor of `n` that is at most `cap` (at least 1)."""
    for d in range(max(1, min(n, cap)), 0, -1):
        if n % d == 0:
            return d
    return 1


# the largest innermost tile MetaSchedule's mutations may draw (a few vectors of lanes)
MAX_INNERMOST = 64


def sampled_split(sch: s_tir.Schedule, loop: LoopRV, factors: list[int | None]) -> list[LoopRV]:
    """`sch.split(loop, factors)` with the factors drawn by MetaSchedule's
    `sample_perfect_tile`, its decision preset to `factors` (None: the rest of the extent).
    The untuned build gets exactly the fixed split; in a tuned build the default schedule is
    one point of a search space whose tiles MutateTileSize moves."""
    ext = extent(sch, loop)
    known = 1
    for f in factors:
        known *= f if f is not None else 1
    decision = [f if f is not None else ext // known for f in factors]
    sampled = sch.sample_perfect_tile(loop, n=len(decision),
                                      max_innermost_factor=max(MAX_INNERMOST, decision[-1]),
                                      decision=decision)
    return sch.split(loop, sampled)


def extent(sch: s_tir.Schedule, loop: LoopRV) -> int | None:
    ext = sch.get(loop).extent
    return int(ext) if isinstance(ext, tirx.IntImm) else None


def iterations(sch: s_tir.Schedule, block: SBlockRV) -> int:
    """The block's iteration count (the product of its iterators' extents: a conv's MACs)."""
    size = 1
    for iv in sch.get(block).iter_vars:
        size *= int(iv.dom.extent)
    return size


def root_blocks(sch: s_tir.Schedule) -> list[SBlockRV]:
    return list(sch.get_child_blocks(sch.get_sblock("root")))


def block_name(sch: s_tir.Schedule, block: SBlockRV) -> str:
    return sch.get(block).name_hint


def iter_kinds(sch: s_tir.Schedule, block: SBlockRV) -> str:
    """'S'/'R'/'O' per block iterator, e.g. 'SSSSRRR' for a conv2d."""
    kinds = {tirx.IterVar.DataPar: "S", tirx.IterVar.CommReduce: "R"}
    return "".join(kinds.get(iv.iter_type, "O") for iv in sch.get(block).iter_vars)


def annotated_blocks(sch: s_tir.Schedule, key: str) -> list[SBlockRV]:
    return [b for b in root_blocks(sch) if key in sch.get(b).annotations]


def sampled_parallel(sch: s_tir.Schedule, loop: LoopRV, parallel: bool) -> None:
    """Whether `loop` runs on the target's threads, as a decision MetaSchedule mutates: the
    loop split in two by `sample_perfect_tile`, the outer part parallel, the decision preset
    to [extent, 1] when `parallel` (as `sch.parallel(loop)`) else [1, extent] (a parallel
    loop of extent 1 lowers to serial code: no thread-pool launch). MutateTileSize moves
    factors between the two, so the search times serial, k tasks and fully parallel: which
    wins on small kernels depends on the CPU and its load, not on a MAC count alone."""
    ext = extent(sch, loop)
    if ext is None or ext < 2:
        if parallel:
            sch.parallel(loop)
        return
    tile = sch.sample_perfect_tile(loop, n=2, max_innermost_factor=ext,
                                   decision=[ext, 1] if parallel else [1, ext])
    sch.parallel(sch.split(loop, tile, preserve_unit_iters=False)[0])


def fuse_and_parallelize(sch: s_tir.Schedule, loops: list[LoopRV], *,
                         min_extent: int = 2) -> LoopRV | None:
    """Fuse `loops` (outermost first) and mark the result parallel if it has work to share."""
    if not loops:
        return None
    fused = sch.fuse(*loops) if len(loops) > 1 else loops[0]
    ext = extent(sch, fused)
    if ext is None or ext >= min_extent:
        sch.parallel(fused)
    return fused


def _same_layout(block) -> bool:
    """Whether every buffer the block reads is indexed exactly as the one it writes
    (element-wise, same shape): its loops can be fused in any grouping."""
    write = block.writes[0]
    shape = [str(d) for d in write.source.shape]
    index = [str(r.min) for r in write.region]
    return all([str(d) for d in r.source.shape] == shape and [str(x.min) for x in r.region] == index
               for r in block.reads)


def schedule_injective(sch: s_tir.Schedule, block: SBlockRV, lanes: int, *,
                       parallel_min_elems: int) -> None:
    """Parallel fused outer loops, vectorised innermost loop, for one spatial root block.

    The innermost loop is vectorised only when it is the block's last (contiguous) axis;
    the parallel loop covers the rest, and only when the block writes enough elements to
    pay for waking the thread pool.
    """
    loops = sch.get_loops(block)
    exts = [extent(sch, lp) for lp in loops]
    if not loops or any(e is None for e in exts):
        return
    while len(loops) > 1 and exts[-1] < lanes and _same_layout(sch.get(block)):
        # a short innermost axis (the 16 channels of NCHW16c) merged with the one above it:
        # LLVM re-vectorised 16-wide float->int8 quantize loops across rows with gathers (10x)
        loops = loops[:-2] + [sch.fuse(loops[-2], loops[-1])]
        exts = exts[:-2] + [exts[-2] * exts[-1]]
    total = 1
    for e in exts:
        total *= e
    inner = loops[-1]
    outer = loops[:-1]
    if exts[-1] > lanes and exts[-1] % lanes == 0:
        outer_part, inner = sampled_split(sch, inner, [None, lanes])
        outer = outer + [outer_part]
    if exts[-1] > 1:
        sch.vectorize(inner)
    if outer and total >= parallel_min_elems:
        fuse_and_parallelize(sch, outer)


# vector accumulators of a conv's register tile, by vector registers of the target: most of
# the register file, the rest holds the weight vectors and broadcast inputs of one step
ACCUMULATORS = {32: 16, 16: 8}
# multiply-adds below which a conv runs on one thread: waking the pool and joining it costs
# more than it saves on mobilenet_v2's small layers (measured on the 2-core Zen 5 under load)
PARALLEL_MIN_MACS = 1 << 20


def primitive_blocks(sch: s_tir.Schedule, name: str) -> list[SBlockRV]:
    """The root blocks the compute of primitive `name` marked as its own."""
    return [b for b in annotated_blocks(sch, PRIMITIVE_KEY)
            if str(sch.get(b).annotations[PRIMITIVE_KEY]) == name]


def single_output(sch: s_tir.Schedule) -> bool:
    """Whether the function has one output block (the epilogue can follow the conv tile)."""
    return len(sch.get_output_blocks(sch.get_sblock("root"))) == 1


def open_conv(func: tirx.PrimFunc, primitive: str, kinds: str | Callable[[str], str], *,
              inline_pad: bool = False):
    """The opening the conv schedule rules share: in a single-output `func`, the one block
    the compute of `primitive` marked, with iteration kinds `kinds` (or `kinds(layout)` of
    its kernel-layout annotation), isolated from its epilogue (isolate_conv). Returns
    (schedule, conv, epilogue, producers, layout), None when the function is not one of
    them."""
    sch = s_tir.Schedule(func)
    convs = primitive_blocks(sch, primitive)
    if len(convs) != 1 or not single_output(sch):
        return None
    layout = str(sch.get(convs[0]).annotations.get(LAYOUT_KEY, ""))
    if iter_kinds(sch, convs[0]) != (kinds(layout) if callable(kinds) else kinds):
        return None
    isolated = isolate_conv(sch, convs[0], inline_pad=inline_pad)
    return None if isolated is None else (sch, *isolated, layout)


def register_tile(sch: s_tir.Schedule, conv: SBlockRV, target: Target) -> tuple[int, int]:
    """(vector lanes of the conv's output dtype, accumulator vectors of one register tile)
    on `target`."""
    lanes = vector_lanes(target, sch.get(conv).writes[0].source.dtype.bits)
    return lanes, ACCUMULATORS[vector_registers(target)]


def isolate_conv(sch: s_tir.Schedule, conv: SBlockRV, *, inline_pad: bool = False):
    """Inline the elementwise blocks between `conv` and the output; give conv a local
    accumulator. `inline_pad`: a pad feeding a second producer (pad -> data_pack) is
    inlined into it, one pass over the input. Returns (conv, epilogue block, producer
    blocks), None if the last block is not fed by the conv."""
    blocks = root_blocks(sch)
    names = [block_name(sch, b) for b in blocks]
    idx = names.index(block_name(sch, conv))
    for block in blocks[idx + 1:-1]:
        sch.compute_inline(block)
    producers = blocks[:idx]
    if inline_pad and len(producers) == 2:
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


def vectorize_epilogue(sch: s_tir.Schedule, epilogue: SBlockRV, lanes: int) -> None:
    """Vectorise the epilogue's innermost loop (at the tile) when it is a few vectors long."""
    inner = sch.get_loops(epilogue)[-1]
    ext = extent(sch, inner)
    if ext is not None and 1 < ext <= 4 * lanes:
        sch.vectorize(inner)


def finish_conv_tile(sch: s_tir.Schedule, conv: SBlockRV, epilogue: SBlockRV,
                     outer: list[LoopRV], reduction: LoopRV, parallel: bool,
                     lanes: int) -> None:
    """The common end of a conv rule, after the epilogue is computed at the tile: the outer
    loops fused (sampled_parallel, preset to `parallel`), the accumulator init split from the
    reduction, the epilogue vectorised."""
    sampled_parallel(sch, sch.fuse(*outer), parallel)
    sch.decompose_reduction(conv, reduction)
    vectorize_epilogue(sch, epilogue, lanes)


def schedule_producer(sch: s_tir.Schedule, block: SBlockRV, parallel: bool, rows: int) -> None:
    """A producer of the conv (pad, data pack) runs once before it: its first `rows` loops
    fused, sampled_parallel preset to `parallel` (a zero fill inlined would sit in the hot
    loop)."""
    loops = sch.get_loops(block)
    if iter_kinds(sch, block).strip("S") or len(loops) < 3:
        return
    sampled_parallel(sch, sch.fuse(*loops[:rows]), parallel)


# MetaSchedule's choices of auto-unroll's max step on CPUs (its ParallelizeVectorizeUnroll)
UNROLL_STEPS = (0, 16, 64, 512)
UNROLL_KEY = "meta_schedule.unroll_explicit"


def sampled_unroll(sch: s_tir.Schedule) -> None:
    """How far LLVM may unroll beyond a schedule's explicit (register tile) unrolls, as a
    decision MetaSchedule mutates: a `sample_categorical` over UNROLL_STEPS on the root
    block, which MutateUnroll moves and the RewriteParallelVectorizeUnroll postprocessor
    turns into `pragma_auto_unroll_max_step` on each reduction block's outer loop (which
    reduction windows it unrolls then depends on their sizes: 1.1-1.25x on some of
    mobilenetv2's convs, slower on others). Preset to 0: the schedule as written."""
    step = sch.sample_categorical(list(UNROLL_STEPS), [1 / len(UNROLL_STEPS)] * len(UNROLL_STEPS),
                                  decision=0)
    sch.annotate(sch.get_sblock("root"), UNROLL_KEY, step)


def guarded(name: str, body: Callable[[tirx.PrimFunc, Target], s_tir.Schedule | None]
            ) -> ScheduleRule:
    """A DLight rule running `body` on llvm targets; any failure leaves the function as it was.
    As a search space (`tunable`, tuning.default_schedule) the schedule also samples its
    unroll step (sampled_unroll); the untuned build has no such annotation to rewrite.

    s_tir checks every primitive, so a schedule that would compute something else raises
    instead of applying; the rule then returns None and the function stays unscheduled
    (correct, only slow).
    """

    class _Rule(ScheduleRule):
        def apply(self, func, target, tunable):
            if not isinstance(func, tirx.PrimFunc) or target.kind.name != "llvm":
                return None
            try:
                sch = body(func, target)
                if sch is not None:  # say who scheduled it (read by schedule_stats)
                    sch.annotate(sch.get_sblock("root"), RULE_KEY, name)
                    if tunable:
                        sampled_unroll(sch)
                return sch
            except s_tir.schedule.schedule.ScheduleError as err:
                log.debug("%s: not applied (%s)", name, first_line(err, 200))
            except Exception as err:  # noqa: BLE001 - any failure means "leave it unscheduled"
                log.warning("%s: schedule failed, function left unscheduled: %s: %s",
                            name, type(err).__name__, first_line(str(err), 200))
            return None

        def __repr__(self):
            return name

    _Rule.__name__ = name
    return _Rule()
