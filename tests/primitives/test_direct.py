"""The direct conv2d primitive, built through the real Relax path and compared with PyTorch.

Tolerance: float32 sums over at most a few hundred products in a different order than
PyTorch's, so max |out - ref| <= 1e-5 * max |ref| (plus 1e-6 for all-small outputs).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import tvm
from conv_reference import (assert_close, conv_cases, conv_module, run_vm, runs_parallel,
                            torch_conv)
from hydra.utils import instantiate
from omegaconf import OmegaConf
from tvm import relax, s_tir, te

from dlas.codegen import Untuned
from dlas.errors import DLASError
from dlas.hardware.base import make_target
from dlas.primitives import Direct, Primitive, block_weight, conv2d_direct, kernel_block
from dlas.primitives.direct_schedule import direct_conv2d_rule
from dlas.primitives.int8_intrin import int8_path
from dlas.primitives.schedule_utils import PARALLEL_MIN_MACS, vector_lanes, vector_registers

HOST = tvm.target.Target.from_device(tvm.cpu())
CONF = Path(__file__).resolve().parents[2] / "conf"

CASES = conv_cases("3x3 s1 p1", "3x3 s2 p1", "3x3 asymmetric pad", "3x3 dilation 2", "1x1 s1",
                   "1x1 s2", "7x7 s2 p3 stem", "depthwise 3x3 s1", "depthwise 3x3 s2", "grouped 4",
                   "non-square", "odd channels", "batch 2, 1x1 map")


@pytest.mark.parametrize("case", list(CASES))
def test_conv_matches_torch(case):
    shape, (o, kh, kw), stride, padding, dilation, groups = CASES[case]
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape, dtype=np.float32)
    w = rng.standard_normal((o, shape[1] // groups, kh, kw), dtype=np.float32)
    codegen = Untuned()
    ex, stats = codegen.build(conv_module(shape, w, stride, padding, dilation, groups), Direct(),
                              HOST)
    assert stats["unscheduled_funcs"] == 0, stats
    assert stats["schedule_rules"] == {"DirectConv2D": 1}, stats
    assert_close(run_vm(ex, x), torch_conv(x, w, stride, padding, dilation, groups))


@pytest.mark.parametrize("target", ["llvm", "host"])
def test_weight_as_input_is_blocked_at_runtime(target):
    """A weight that is not a constant goes through the TE re-layout inside the graph."""
    target = HOST if target == "host" else tvm.target.Target("llvm")
    shape, w_shape = (1, 8, 6, 6), (16, 8, 3, 3)
    rng = np.random.default_rng(1)
    x, w = (rng.standard_normal(s, dtype=np.float32) for s in (shape, w_shape))
    ex, _ = Untuned().build(conv_module(shape, w, 1, (1, 1, 1, 1), 1, 1, weight_as_input=True),
                         Direct(), target)
    assert_close(run_vm(ex, x, w), torch_conv(x, w, 1, (1, 1, 1, 1), 1, 1))


@pytest.mark.parametrize("int8_dot", [False, True])
def test_int8_accumulates_in_int32(int8_dot):
    """out_dtype reaches the compute: int8 operands, exact int32 sums, with the generic
    int8 compute and (on a target with integer dot products) the dot-product one."""
    rng = np.random.default_rng(2)
    x = rng.integers(-128, 128, (1, 16, 8, 8)).astype("int8")
    w = rng.integers(-128, 128, (32, 16, 3, 3)).astype("int8")
    bb = relax.BlockBuilder()
    xv = relax.Var("x", relax.TensorType(x.shape, "int8"))
    with bb.function("main", [xv]):
        with bb.dataflow():
            y = bb.emit(relax.op.nn.conv2d(xv, relax.const(w), padding=(1, 1, 1, 1),
                                           out_dtype="int32"))
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    codegen = Untuned()
    executable, stats = codegen.build(bb.get(), Direct(int8_dot=int8_dot), HOST)
    got = run_vm(executable, x)
    ref = F.conv2d(torch.from_numpy(x).double(), torch.from_numpy(w).double(), padding=1)
    assert got.dtype == np.int32 and np.array_equal(got, ref.numpy().astype(np.int32))
    dot = int8_dot and int8_path(HOST) != "plain"
    assert stats["schedule_rules"] == {"Int8DotConv2D" if dot else "DirectConv2D": 1}


def scheduled_conv(shape, weight, stride=1, padding=(1, 1, 1, 1), groups=1):
    mod = Untuned().schedule(conv_module(shape, weight, stride, padding, 1, groups),
                             Direct(), HOST)
    convs = {gv.name_hint: f for gv, f in mod.functions_items()
             if isinstance(f, tvm.tirx.PrimFunc) and "conv2d_direct" in gv.name_hint}
    assert len(convs) == 1
    return next(iter(convs.values()))


@pytest.mark.parametrize("channels, groups, side", [(32, 1, 16), (64, 64, 128), (8, 1, 4)])
def test_direct_rule_schedules_the_conv(channels, groups, side):
    func = scheduled_conv((1, channels, side, side),
                          np.ones((channels, channels // groups, 3, 3), np.float32), groups=groups)
    assert int(func.attrs["tirx.is_scheduled"]) == 1
    assert str(func.body.block.annotations["dlas.schedule_rule"]) == "DirectConv2D"
    text = func.script()
    assert "T.vectorized(" in text and 'scope="local"' in text  # vector accumulator tile
    assert "T.sblock_attr" in text and "dlas.primitive" in text
    macs = channels * channels // groups * 9 * side * side
    assert runs_parallel(text) == (macs >= PARALLEL_MIN_MACS)


@pytest.mark.parametrize("stride, groups, phased", [(2, 64, True), (1, 64, False),
                                                    (2, 1, False)])
def test_strided_column_vectorised_conv_reads_its_input_by_column_phase(stride, groups, phased):
    # depthwise stride 2: the pad is one [n, c, Hp, 2, Wp/2] pass, every tap a contiguous
    # vector (no gathers); stride 1 and channel-vectorised convs keep the plain pad
    func = scheduled_conv((1, 64, 16, 16), np.ones((64, 64 // groups, 3, 3), np.float32),
                          stride=stride, groups=groups)
    text = func.script()
    assert ('T.sblock("pad_phases")' in text) == phased
    assert ('T.sblock("pad")' in text) == (not phased)  # (inlined into the phases)


def test_direct_rule_declines_other_functions():
    a = te.placeholder((4, 8), name="a")
    func = te.create_prim_func([a, te.compute((4, 8), lambda i, j: a[i, j] * 2, name="b")])
    assert direct_conv2d_rule().apply(func, HOST, False) is None


def test_conv2d_direct_compute_is_marked():
    data = te.placeholder((1, 4, 5, 5), name="data")
    weight = te.placeholder((1, 4, 3, 3, 8), name="weight")
    out = conv2d_direct(data, weight, (1, 1), (1, 1, 1, 1), (1, 1), 1, None, "OIHW8o")
    assert tuple(out.shape) == (1, 8, 5, 5)
    sch = s_tir.Schedule(te.create_prim_func([data, weight, out]))
    block = sch.get(sch.get_sblock("conv2d_direct"))
    assert str(block.annotations["dlas.primitive"]) == "direct"
    assert str(block.annotations["dlas.kernel_layout"]) == "OIHW8o"


def test_block_weight_layout():
    w = np.arange(8 * 2 * 3 * 3, dtype=np.float32).reshape(8, 2, 3, 3)
    blocked = block_weight(w, 4)
    assert blocked.shape == (2, 2, 3, 3, 4)
    assert blocked[1, 0, 2, 1, 3] == w[7, 0, 2, 1]
    assert kernel_block("OIHW") is None and kernel_block("OIHW16o") == 16
    with pytest.raises(ValueError):
        kernel_block("HWIO")


@pytest.mark.parametrize("fmt", ["coo", "sparse"])
def test_bad_format_names_value_and_choices(fmt):
    with pytest.raises(DLASError) as err:
        Direct(format=fmt)
    assert err.value.layer == "primitive"
    assert fmt in str(err.value) and "dense" in str(err.value)


def test_bad_threshold():
    with pytest.raises(DLASError, match="sparsity_threshold"):
        Direct(sparsity_threshold=1.5)


def test_config_instantiates():
    prim = instantiate(OmegaConf.load(CONF / "primitive" / "direct.yaml"))
    assert isinstance(prim, Direct) and isinstance(prim, Primitive)
    assert (prim.name, prim.format, prim.sparsity_threshold) == ("direct", "dense", 0.5)
    assert set(prim.legalize_map()) == {"relax.nn.conv2d"}


@pytest.mark.parametrize("spec, lanes, registers", [
    ({"kind": "llvm", "mcpu": "znver4"}, 16, 32),          # AVX-512
    ({"kind": "llvm", "mcpu": "skylake-avx512"}, 16, 32),
    ({"kind": "llvm", "mcpu": "haswell"}, 8, 16),          # AVX2: TVM's width says 512
    ({"kind": "llvm", "mcpu": "znver3"}, 8, 16),
    ({"kind": "llvm", "mtriple": "x86_64-linux-gnu"}, 4, 16),  # plain x86-64: SSE2
    ({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "carmel"}, 4, 32),  # NEON
])
def test_schedules_size_tiles_by_the_targets_real_vector_width(spec, lanes, registers):
    target = make_target(spec)
    assert vector_lanes(target) == lanes and vector_registers(target) == registers
    assert vector_lanes(target, 8) == 4 * lanes  # int8 lanes
