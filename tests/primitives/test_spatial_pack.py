"""The spatial_pack conv2d primitive (dense NCHW[x]c, csr, bsr), built through the real Relax
path and compared with PyTorch.

Tolerance as test_direct: max |out - ref| <= 1e-5 * max |ref| + 1e-6 (float32 sums in another
order; float16 operands multiply exactly in float32). int8 is compared exactly with an
integer (float64) reference.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import tvm
from conv_reference import (HOST, compile_pruned_resnet18, conv_cases, conv_module, run_vm,
                            torch_conv)
from hydra.utils import instantiate
from omegaconf import OmegaConf
from tvm import relax, s_tir, te

from dlas.codegen import Untuned
from dlas.errors import DLASError
from dlas.primitives import Primitive, SpatialPack
from dlas.primitives.spatial_pack import choose_block, nearest_divisor
from dlas.primitives.spatial_pack_compute import conv2d_spatial_pack, pack_weight
from dlas.primitives.spatial_pack_schedule import RULE, spatial_pack_rule

CONF = Path(__file__).resolve().parents[2] / "conf"

CASES = conv_cases("3x3 s1 p1, 32 out", "3x3 s2 p1", "3x3 asymmetric pad", "3x3 dilation 2",
                   "1x1 s1", "1x1 s2", "7x7 s2 p3 stem", "non-square", "odd channels, batch 2",
                   "depthwise 3x3 s2", "grouped 4")
SPARSE_CASES = ["3x3 s1 p1, 32 out", "3x3 s2 p1", "1x1 s2", "non-square", "odd channels, batch 2"]
GROUPED = {"depthwise 3x3 s2", "grouped 4"}


def reference(x, w, stride, padding, dilation, groups) -> np.ndarray:
    """relu(conv + 1) in float64 (exact for the int8 and float16 operands used here)."""
    return np.maximum(torch_conv(x, w, stride, padding, dilation, groups, np.float64) + 1, 0)


def operands(case, dtype="float32", sparsity=0.0, seed=0):
    shape, (o, kh, kw), stride, padding, dilation, groups = CASES[case]
    rng = np.random.default_rng(seed)
    w_shape = (o, shape[1] // groups, kh, kw)
    if dtype == "int8":
        x = rng.integers(-128, 128, shape).astype("int8")
        w = rng.integers(-128, 128, w_shape).astype("int8")
    else:
        x = rng.standard_normal(shape).astype(dtype)
        w = rng.standard_normal(w_shape).astype(dtype)
    w[rng.random(w_shape) < sparsity] = 0
    return x, w, (stride, padding, dilation, groups)


def check(case, prim: SpatialPack, dtype="float32", sparsity=0.0) -> dict:
    x, w, conv = operands(case, dtype, sparsity)
    out_dtype = {"int8": "int32"}.get(dtype, "float32")
    codegen = Untuned()
    mod = conv_module(x.shape, w, *conv, out_dtype=out_dtype, relu_plus_one=True)
    ex, stats = codegen.build(mod, prim, HOST)
    got, ref = run_vm(ex, x), reference(x, w, *conv)
    assert got.dtype == np.dtype(out_dtype) and got.shape == ref.shape
    if dtype == "int8":
        assert np.array_equal(got, ref.astype(np.int32))
    else:
        assert np.abs(got - ref).max() <= 1e-5 * np.abs(ref).max() + 1e-6
    # the conv scheduled by this primitive (direct's rule for the grouped ones); dense fuses
    # the epilogue into it, the sparse PrimFuncs leave it to a generic rule
    assert stats["unscheduled_funcs"] == 0, stats
    rule = "DirectConv2D" if case in GROUPED else RULE
    rules = stats["schedule_rules"]
    assert rules.get(rule) == 1 and (prim.format != "dense" or len(rules) == 1), rules
    return stats


def bsr_block(case) -> tuple[int, int]:
    return (nearest_divisor(CASES[case][1][0], 4), 1)


@pytest.mark.parametrize("case", list(CASES))
def test_dense_matches_torch(case):
    stats = check(case, SpatialPack())
    assert (stats["conv_layers"], stats["sparse_layers"]) == (1, 0)
    expected = {"groups>1 (depthwise/grouped): direct": 1} if case in GROUPED else {}
    assert stats["fallbacks"] == expected


@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.95])
@pytest.mark.parametrize("case", SPARSE_CASES)
@pytest.mark.parametrize("fmt", ["csr", "bsr"])
def test_sparse_matches_torch(fmt, case, sparsity):
    prim = SpatialPack(format=fmt, sparsity_threshold=0.0, block=bsr_block(case))
    stats = check(case, prim, sparsity=sparsity)
    assert (stats["conv_layers"], stats["sparse_layers"], stats["fallback_layers"]) == (1, 1, 0)


@pytest.mark.parametrize("fmt", ["csr", "bsr"])
def test_all_zero_weight(fmt):
    """Nothing stored at all: every row's loop is empty, the output is the epilogue's."""
    stats = check("1x1 s2", SpatialPack(format=fmt, block=(4, 1)), sparsity=1.0)
    assert stats["sparse_layers"] == 1


@pytest.mark.parametrize("dtype", ["float16", "int8"])
@pytest.mark.parametrize("fmt", ["dense", "csr", "bsr"])
def test_dtypes(fmt, dtype):
    """float16 -> float32 and int8 -> int32 (exact) accumulation in every format (the
    generic packed compute: int8_dot off; the dot-product path is test_int8_dot.py)."""
    prim = SpatialPack(format=fmt, sparsity_threshold=0.5, block=(4, 1), int8_dot=False)
    stats = check("3x3 s2 p1", prim, dtype=dtype, sparsity=0.0 if fmt == "dense" else 0.7)
    assert stats["sparse_layers"] == int(fmt != "dense")


def test_configured_blocks_and_nearest_divisor():
    """Blocks from the config; one that does not divide a layer becomes its nearest divisor."""
    check("3x3 s1 p1, 32 out", SpatialPack(ic_block=4, oc_block=8))
    check("3x3 s1 p1, 32 out", SpatialPack(ic_block=3, oc_block=12))  # -> 4 (of 8), 8 (of 32)
    assert nearest_divisor(32, 12) == 8 and nearest_divisor(32, 13) == 16
    assert nearest_divisor(8, 3) == 2
    assert choose_block(6, None, 16, "oc_block") == 6 and choose_block(64, None, 32, "x") == 32


def test_threshold_decides_per_layer():
    """Below the threshold a layer stays dense; a weight fed at run time cannot go sparse."""
    stats = check("3x3 s1 p1, 32 out", SpatialPack(format="csr", sparsity_threshold=0.9),
                  sparsity=0.5)
    assert (stats["sparse_layers"], stats["fallback_layers"]) == (0, 0)
    x, w, (stride, padding, dilation, groups) = operands("3x3 s1 p1, 32 out")
    bb = relax.BlockBuilder()
    xv = relax.Var("x", relax.TensorType(x.shape, "float32"))
    wv = relax.Var("w", relax.TensorType(w.shape, "float32"))
    with bb.function("main", [xv, wv]):
        with bb.dataflow():
            out = bb.emit_output(bb.emit(relax.op.nn.conv2d(xv, wv, padding=padding)))
        bb.emit_func_output(out)
    codegen = Untuned()
    executable, stats = codegen.build(bb.get(), SpatialPack(format="bsr"), HOST)
    got = run_vm(executable, x, w)
    ref = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), padding=1).numpy()
    assert np.abs(got - ref).max() <= 1e-5 * np.abs(ref).max() + 1e-6
    assert stats["fallbacks"] == {"weight not a constant: dense spatial_pack": 1}


def test_bad_bsr_block_names_the_layer():
    x, w, conv = operands("3x3 s1 p1, 32 out", sparsity=0.9)
    with pytest.raises(DLASError, match="primitive.block") as err:
        Untuned().build(conv_module(x.shape, w, *conv, out_dtype="float32", relu_plus_one=True),
                        SpatialPack(format="bsr", block=(5, 1)), HOST)
    assert "[32, 72]" in str(err.value)


@pytest.mark.parametrize("kwargs", [{"block": (0, 1)}, {"block": [16]}, {"ic_block": 0},
                                    {"oc_block": 2.5}, {"format": "ell"}])
def test_bad_settings(kwargs):
    with pytest.raises(DLASError) as err:
        SpatialPack(**kwargs)
    assert err.value.layer == "primitive"


def test_rule_schedules_the_function():
    x, w, conv = operands("3x3 s1 p1, 32 out")
    mod = conv_module(x.shape, w, *conv, out_dtype="float32", relu_plus_one=True)
    mod = Untuned().schedule(mod, SpatialPack(), HOST)
    funcs = [f for gv, f in mod.functions_items()
             if isinstance(f, tvm.tirx.PrimFunc) and "spatial_pack" in gv.name_hint]
    assert len(funcs) == 1
    text = funcs[0].script()
    assert str(funcs[0].body.block.annotations["dlas.schedule_rule"]) == RULE
    assert "T.vectorized(" in text and 'scope="local"' in text and "T.unroll(" in text
    assert '"data_pack"' in text and "T.max(" in text  # packing and relu epilogue in one func
    a = te.placeholder((4, 8), name="a")
    other = te.create_prim_func([a, te.compute((4, 8), lambda i, j: a[i, j] * 2, name="b")])
    assert spatial_pack_rule().apply(other, HOST, False) is None


def test_compute_layout():
    w = np.arange(8 * 4 * 3 * 3, dtype=np.float32).reshape(8, 4, 3, 3)
    packed = pack_weight(w, 2, 4)
    assert packed.shape == (2, 2, 3, 3, 2, 4) and packed[1, 0, 2, 1, 1, 3] == w[7, 1, 2, 1]
    data = te.placeholder((1, 4, 5, 5), name="data")
    weight = te.placeholder(packed.shape, name="w")
    out = conv2d_spatial_pack(data, weight, 1, (1, 1, 1, 1), 1)
    assert tuple(out.shape) == (1, 8, 5, 5)
    sch = s_tir.Schedule(te.create_prim_func([data, weight, out]))
    block = sch.get(sch.get_sblock("conv2d_spatial_pack"))
    assert str(block.annotations["dlas.primitive"]) == "spatial_pack"


def test_config_instantiates():
    prim = instantiate(OmegaConf.load(CONF / "primitive" / "spatial_pack.yaml"))
    assert isinstance(prim, SpatialPack) and isinstance(prim, Primitive)
    assert (prim.format, prim.block, prim.ic_block, prim.oc_block) == ("dense", (16, 1), None, None)
    assert set(prim.legalize_map()) == {"relax.nn.conv2d"}


def test_pruned_resnet18_csr_matches_pytorch():
    """resnet18 at 32x32, 90 % global unstructured pruning, compiled with spatial_pack csr."""
    stats, _ = compile_pruned_resnet18(SpatialPack(format="csr", sparsity_threshold=0.5))
    assert stats["conv_layers"] == 20 and stats["fallback_layers"] == 0, stats
    assert stats["sparse_layers"] >= 15, stats  # global pruning leaves a few layers denser
    assert stats["schedule_rules"].get(RULE, 0) >= 15, stats
