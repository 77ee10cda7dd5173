"""The default schedules draw their tiles with `sample_perfect_tile` (a search space for
MetaSchedule), their decisions preset to the heuristic: the untuned build must get exactly
the schedule of fixed splits, and the decisions must be the heuristic's tiles."""
from __future__ import annotations

import re

import numpy as np
import pytest
import tvm
import tvm_ffi
from tvm import relax, s_tir
from tvm.s_tir import meta_schedule as ms

from dlas.codegen import Untuned
from dlas.codegen.pipeline import front_passes, inference_passes, relax_pipeline
from dlas.codegen.tuning import default_schedule
from dlas.hardware.base import make_target
from dlas.primitives import Direct, Gemm, SpatialPack, Winograd
from dlas.primitives.schedule_utils import UNROLL_STEPS

# a fixed target (not the host): the tiles depend on its vector width and register count
TARGET = make_target({"kind": "llvm", "mcpu": "skylake-avx512"})
HOST = make_target({"kind": "llvm", "mcpu": "host"})  # what runs here
# (in channels, out channels, side, kernel, stride, groups)
SHAPES = [(16, 32, 8, 3, 1, 1), (32, 64, 9, 1, 1, 1), (24, 24, 12, 3, 1, 24)]
MODULES = ["dlas.primitives.direct_schedule", "dlas.primitives.direct_sparse_schedule",
           "dlas.primitives.gemm_schedule", "dlas.primitives.int8_schedule",
           "dlas.primitives.spatial_pack_schedule", "dlas.primitives.winograd_schedule",
           "dlas.primitives.schedule_utils",
           "dlas.codegen.schedules"]
CASES = {"direct": (Direct, "float32"), "gemm": (Gemm, "float32"),
         "spatial_pack": (SpatialPack, "float32"), "winograd": (Winograd, "float32"),
         "direct-csr": (Direct, "float32"),
         "direct-int8": (Direct, "int8"), "spatial_pack-int8": (SpatialPack, "int8")}


def convs(dtype: str, sparse: bool) -> tvm.IRModule:
    """main(x_0, x_1, ...) = (relu(conv2d_0(x_0)), ...) with constant weights; int8 -> int32."""
    rng = np.random.default_rng(0)
    bb = relax.BlockBuilder()
    xs = [relax.Var(f"x{i}", relax.TensorType((1, c, s, s), dtype))
          for i, (c, _, s, _, _, _) in enumerate(SHAPES)]
    with bb.function("main", xs):
        with bb.dataflow():
            outs = []
            for x, (c, o, _, k, stride, groups) in zip(xs, SHAPES):
                w = rng.integers(-8, 8, (o, c // groups, k, k)).astype(dtype)
                if sparse:
                    w[rng.random(w.shape) < 0.8] = 0
                y = bb.emit(relax.op.nn.conv2d(x, relax.const(w), strides=stride, padding=k // 2,
                                               groups=groups,
                                               out_dtype="int32" if dtype == "int8" else dtype))
                outs.append(bb.emit(relax.op.nn.relu(y)) if dtype != "int8" else y)
            out = bb.emit_output(relax.Tuple(outs))
        bb.emit_func_output(out)
    return bb.get()


def case(name: str):
    primitive, dtype = CASES[name]
    sparse = name.endswith("csr")
    return convs(dtype, sparse), primitive(format="csr" if sparse else "dense")


def fixed_split(sch, loop, factors):
    """The schedules' splits before sampling: literal factors."""
    return sch.split(loop, factors)


@pytest.mark.parametrize("name", list(CASES))
def test_untuned_schedule_equals_the_fixed_split_one(name, monkeypatch):
    mod, primitive = case(name)
    sampled = Untuned().schedule(mod, primitive, TARGET)
    for module in MODULES:
        monkeypatch.setattr(f"{module}.sampled_split", fixed_split)
    fixed = Untuned().schedule(mod, primitive, TARGET)
    assert {gv.name_hint for gv, _ in sampled.functions_items()} == {
        gv.name_hint for gv, _ in fixed.functions_items()}
    for gv, func in sampled.functions_items():
        if isinstance(func, tvm.tirx.PrimFunc):
            assert int(func.attrs["tirx.is_scheduled"]) == 1, gv.name_hint
            tvm.ir.assert_structural_equal(func, fixed[gv.name_hint])


def decisions(name: str) -> dict[str, list[list[int]]]:
    """The sampled tiles of each scheduled conv function, in trace order."""
    mod, primitive = case(name)
    fused = relax_pipeline(inference_passes() + front_passes(primitive, TARGET), TARGET)(mod)
    rules = Untuned().rules(primitive, TARGET)
    out = {}
    for gv, func in fused.functions_items():
        if isinstance(func, tvm.tirx.PrimFunc) and "conv" in gv.name_hint:
            with TARGET:
                sch = default_schedule(func, rules, TARGET)
            trace = sch.trace
            out[gv.name_hint] = [[int(d) for d in trace.decisions[inst]] for inst in trace.insts
                                 if inst.kind.name == "SamplePerfectTile"]
    return out


# the heuristic tiles on AVX-512 (16 float lanes, 32 vector registers) per conv function,
# as the fixed splits gave them before sampling: output channels ([rest, vectors, lanes]; int8
# [rest, blocks of 16]; depthwise [rest, channels]), rows, columns; CSR channels (pairs),
# rows, columns, on the 8x8 map channels (4: 16 accumulators) and the flattened plane; and
# each stage's parallel loop as [tasks, iterations per task] (sampled_parallel; [1, n]:
# serial, as every conv here is under PARALLEL_MIN_MACS): the conv's, then its pad's or pack's
# (a tensorized int8 conv's own loop is not sampled: int8_schedule.py)
EXPECTED = {
    "direct": {"fused_conv2d_direct_relu": [[1, 2, 16], [8, 1], [1, 8], [1, 8], [1, 16]],
               "fused_conv2d_direct1_relu1": [[1, 4, 16], [9, 1], [3, 3], [1, 27]],
               # depthwise
               "fused_conv2d_direct2_relu2": [[6, 4], [3, 4], [1, 12], [1, 18], [1, 24]]},
    "gemm": {"conv2d_gemm": [[1, 2, 16], [8, 1], [1, 8], [1, 8], [1, 144]],
             "conv2d_gemm1": [[1, 4, 16], [9, 1], [3, 3], [1, 27], [1, 32]],
             # depthwise: direct
             "fused_conv2d_direct_relu2": [[6, 4], [3, 4], [1, 12], [1, 18], [1, 24]]},
    "spatial_pack": {"fused_conv2d_spatial_pack_relu": [[1, 2, 16], [8, 1], [1, 8], [1, 8],
                                                        [1, 10]],
                     "fused_conv2d_spatial_pack1_relu1": [[1, 2, 16], [9, 1], [3, 3], [1, 18],
                                                          [1, 18]],
                     "fused_conv2d_direct_relu2": [[6, 4], [3, 4], [1, 12], [1, 18], [1, 24]]},
    # winograd (8x8 output: m = 4, 4 tiles): the pack's parallel loop; input channels [rest,
    # lanes] and that stage's loop; GEMM output channels [rest, vectors, lanes], tiles [rest,
    # 4] and its loop; output transform channels [rest, lanes] and its loop
    "winograd": {"fused_conv2d_winograd_relu": [[1, 10], [1, 16], [1, 4], [1, 2, 16], [1, 4],
                                                [1, 36], [2, 16], [1, 4]],
                 "fused_conv2d_direct_relu1": [[1, 4, 16], [9, 1], [3, 3], [1, 27]],
                 "fused_conv2d_direct1_relu2": [[6, 4], [3, 4], [1, 12], [1, 18], [1, 24]]},
    "direct-csr": {"fused_conv2d_direct_csr_relu": [[8, 4], [4, 16], [1, 8], [1, 16]],
                   "fused_conv2d_direct_csr1_relu1": [[32, 2], [3, 3], [1, 9], [1, 32],
                                                      [1, 32]],
                   "fused_conv2d_direct_csr2_relu2": [[12, 2], [2, 6], [1, 12], [1, 12],
                                                      [1, 24]]},
    "direct-int8": {"conv2d_direct_int8": [[1, 2], [8, 1], [1, 8], [1, 40]],
                    "conv2d_direct_int81": [[1, 4], [9, 1], [3, 3], [1, 72]],
                    # depthwise: generic int8
                    "conv2d_direct": [[6, 4], [3, 4], [1, 12], [1, 18], [1, 24]]},
    "spatial_pack-int8": {"conv2d_spatial_pack_int8": [[1, 2], [8, 1], [1, 8], [1, 10]],
                          "conv2d_spatial_pack_int81": [[2, 2], [9, 1], [3, 3], [1, 18]],
                          "conv2d_direct": [[6, 4], [3, 4], [1, 12], [1, 18], [1, 24]]},
}


@pytest.mark.parametrize("name", list(CASES))
def test_decisions_are_the_heuristic_tiles(name):
    assert decisions(name) == EXPECTED[name]


def default_of(name: str, function: str, target) -> tuple[tvm.tirx.PrimFunc, s_tir.Schedule]:
    """Case `name`'s fused function `function` on `target` and its default schedule."""
    mod, primitive = case(name)
    fused = relax_pipeline(inference_passes() + front_passes(primitive, target), target)(mod)
    func = fused[function]
    with target:
        return func, default_schedule(func, Untuned().rules(primitive, target), target)


def replayed(sch: s_tir.Schedule, func, inst, decision: list[int]) -> s_tir.Schedule:
    """`sch`'s trace applied afresh to `func` with `inst`'s decision replaced."""
    moved = s_tir.Schedule(func)
    sch.trace.with_decision(inst, decision, remove_postproc=True).apply_to_schedule(
        moved, remove_postproc=False)
    return moved


def test_a_decision_is_a_search_point():
    """Replayed with another decision, the same trace gives another valid tiling."""
    # 32 output channels: [1, 2, 16] by default
    func, sch = default_of("direct", "fused_conv2d_direct_relu", TARGET)
    inst = next(i for i in sch.trace.insts if i.kind.name == "SamplePerfectTile")
    moved = replayed(sch, func, inst, [2, 1, 16])
    assert not tvm_ffi.structural_equal(moved.mod, sch.mod)
    tiles = [[int(d) for d in moved.trace.decisions[i]] for i in moved.trace.insts
             if i.kind.name == "SamplePerfectTile"]
    assert tiles[0] == [2, 1, 16]


def parallel_samples(trace) -> list:
    """The SamplePerfectTile instructions that decide a parallel loop (sampled_parallel)."""
    loops = [inst.inputs[0] for inst in trace.insts if inst.kind.name == "Parallel"]
    factors = [inst.inputs[1:] for inst in trace.insts if inst.kind.name == "Split"
               and any(inst.outputs[0].same_as(lp) for lp in loops)]
    assert loops and len(factors) == len(loops)
    return [inst for inst in trace.insts if inst.kind.name == "SamplePerfectTile"
            and any(inst.outputs[0].same_as(f[0]) for f in factors)]


def run_func(func: tvm.tirx.PrimFunc, args: list[np.ndarray]) -> tuple[np.ndarray, str]:
    """Compiled on the host: the last buffer (the output) after a call, and the LLVM IR."""
    ex = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target=HOST)
    tensors = [tvm.runtime.tensor(a) for a in args]
    ex["main"](*tensors)
    return tensors[-1].numpy(), ex.mod.inspect_source("ll")


@pytest.mark.parametrize("name, function", [("direct", "fused_conv2d_direct_relu"),
                                            ("direct-int8", "conv2d_direct")])
def test_the_parallel_decision_is_a_search_point(name, function):
    """Each stage's parallel loop is a sampled split preset to serial here (small convs): the
    default has no thread-pool launch; moved to k tasks, the same trace compiles to a parallel
    launch and computes the same (an int8 depthwise conv too)."""
    func, sch = default_of(name, function, HOST)
    rng = np.random.default_rng(0)
    args = [rng.integers(-8, 8, [int(d) for d in p.ty.shape]).astype(str(p.ty.dtype))
            for p in func.params]
    expected, ir = run_func(sch.mod["main"], [a.copy() for a in args])
    assert "TVMBackendParallelLaunch" not in ir
    samples = parallel_samples(sch.trace)
    serial = [int(d) for d in sch.trace.decisions[samples[0]]]
    assert serial[0] == 1 and serial[1] > 2
    n = serial[1]
    for tasks in (min(k for k in range(2, n + 1) if n % k == 0), n):
        moved = replayed(sch, func, samples[0], [tasks, n // tasks])
        out, ir = run_func(moved.mod["main"], [a.copy() for a in args])
        assert "TVMBackendParallelLaunch" in ir
        np.testing.assert_array_equal(out, expected)


def same_code(ir: str) -> str:
    """LLVM IR without the addresses its alias metadata names (they differ per build)."""
    return re.sub(r"0x[0-9a-f]+", "", ir)


@pytest.mark.parametrize("name, function", [("direct", "fused_conv2d_direct_relu"),
                                            ("direct-int8", "conv2d_direct")])
def test_the_unroll_decision_is_a_search_point(name, function):
    """The default samples its auto-unroll step, preset to 0 (the schedule as written, no
    pragma: the same code as the untuned build's); moved to 64 or 512, the search's
    postprocessor puts the step on the conv's loops, the code changes and computes the same."""
    func, sch = default_of(name, function, HOST)
    (sample,) = [i for i in sch.trace.insts if i.kind.name == "SampleCategorical"]
    assert [int(c) for c in sample.attrs[0]] == list(UNROLL_STEPS)
    assert int(sch.trace.decisions[sample]) == 0
    rng = np.random.default_rng(0)
    args = [rng.integers(-8, 8, [int(d) for d in p.ty.shape]).astype(str(p.ty.dtype))
            for p in func.params]
    expected, ir = run_func(sch.mod["main"], [a.copy() for a in args])
    assert "pragma_auto_unroll_max_step" not in sch.mod.script()
    untuned = Untuned().schedule(*case(name), HOST)[function]
    assert same_code(run_func(untuned, [a.copy() for a in args])[1]) == same_code(ir)
    for decision in (2, 3):
        moved = replayed(sch, func, sample, decision)
        assert ms.postproc.RewriteParallelVectorizeUnroll().apply(moved)
        assert f"pragma_auto_unroll_max_step\": {UNROLL_STEPS[decision]}" in moved.mod.script()
        out, unrolled = run_func(moved.mod["main"], [a.copy() for a in args])
        assert same_code(unrolled) != same_code(ir)
        np.testing.assert_array_equal(out, expected)
