"""The sparse (CSR, BSR) variants of the direct primitive, built through the real Relax path
and compared with PyTorch (float), with an exact integer reference (int8).

Tolerance as in test_direct.py: max |out - ref| <= 1e-5 * max |ref| + 1e-6.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import tvm
from conv_reference import (HOST, assert_close, compile_pruned_resnet18, conv_cases, conv_module,
                            run_vm, torch_conv)
from tvm import relax, te

from dlas.codegen import Untuned
from dlas.errors import DLASError
from dlas.hardware.base import make_target
from dlas.primitives import Direct, conv2d_direct
from dlas.primitives.direct_sparse import (conv2d_direct_csr, flat_input, geometry,
                                           window_offsets)
from dlas.primitives.direct_sparse_schedule import direct_sparse_rule
from dlas.primitives.sparse_format import weight_sparsity

CASES = conv_cases("1x1 s1, 16 in", "3x3 s1 p1", "3x3 s2 p1", "3x3 asymmetric pad",
                   "3x3 dilation 2", "depthwise 3x3 s1", "grouped 4")
SPARSITIES = (0.0, 0.5, 0.95)


def sparse_weight(rng, shape, sparsity: float, dtype=np.float32) -> np.ndarray:
    w = rng.standard_normal(shape).astype(dtype)
    w[rng.random(shape) < sparsity] = 0
    return w


def build_conv(mod, prim: Direct) -> tuple[tvm.runtime.Executable, dict]:
    codegen = Untuned()
    ex, stats = codegen.build(mod, prim, HOST)
    return ex, stats


@pytest.mark.parametrize("sparsity", SPARSITIES)
@pytest.mark.parametrize("case", list(CASES))
def test_csr_matches_torch(case, sparsity):
    shape, (o, kh, kw), stride, padding, dilation, groups = CASES[case]
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape, dtype=np.float32)
    w = sparse_weight(rng, (o, shape[1] // groups, kh, kw), sparsity)
    ex, stats = build_conv(conv_module(shape, w, stride, padding, dilation, groups),
                           Direct(format="csr", sparsity_threshold=0.0))
    assert stats["sparse_layers"] == 1 and stats["fallback_layers"] == 0, stats
    assert stats["schedule_rules"] == {"DirectSparseConv2D": 1}, stats
    assert_close(run_vm(ex, x), torch_conv(x, w, stride, padding, dilation, groups))


@pytest.mark.parametrize("case,sparsity,block",
                         [(c, SPARSITIES[i % 3], (4, 1) if c == "1x1 s1, 16 in" else (4, 3))
                          for i, c in enumerate(CASES)] + [("3x3 s1 p1", 0.95, (8, 9))])
def test_bsr_matches_torch(case, sparsity, block):
    shape, (o, kh, kw), stride, padding, dilation, groups = CASES[case]
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape, dtype=np.float32)
    w = sparse_weight(rng, (o, shape[1] // groups, kh, kw), sparsity)
    ex, stats = build_conv(conv_module(shape, w, stride, padding, dilation, groups),
                           Direct(format="bsr", sparsity_threshold=0.0, block=block))
    assert stats["sparse_layers"] == 1 and stats["schedule_rules"] == {"DirectSparseConv2D": 1}
    assert_close(run_vm(ex, x), torch_conv(x, w, stride, padding, dilation, groups))


@pytest.mark.parametrize("fmt", ["csr", "bsr"])
def test_int8_exact_in_int32(fmt):
    rng = np.random.default_rng(2)
    x = rng.integers(-128, 128, (1, 16, 8, 8)).astype("int8")
    w = rng.integers(-128, 128, (32, 16, 3, 3)).astype("int8")
    w[rng.random(w.shape) < 0.8] = 0
    mod = conv_module(x.shape, w, 1, (1, 1, 1, 1), 1, 1, out_dtype="int32")
    ex, stats = build_conv(mod, Direct(format=fmt))
    got = run_vm(ex, x)
    ref = F.conv2d(torch.from_numpy(x).long(), torch.from_numpy(w).long(), padding=1)
    assert stats["sparse_layers"] == 1
    assert got.dtype == np.int32 and np.array_equal(got, ref.numpy())


@pytest.mark.parametrize("fmt", ["csr", "bsr"])
def test_float16_accumulates_in_float32(fmt):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 8, 8, 8)).astype("float16")
    w = sparse_weight(rng, (16, 8, 3, 3), 0.7, np.float16)
    mod = conv_module(x.shape, w, 1, (1, 1, 1, 1), 1, 1, out_dtype="float32")
    ex, stats = build_conv(mod, Direct(format=fmt))
    got = run_vm(ex, x)
    ref = F.conv2d(torch.from_numpy(x).double(), torch.from_numpy(w).double(), padding=1)
    assert stats["sparse_layers"] == 1 and got.dtype == np.float32
    assert_close(got, ref.numpy())


def two_convs(w1: np.ndarray, w2: np.ndarray, *, second_as_input: bool = False):
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 8, 6, 6), "float32"))
    wv = relax.Var("w", relax.TensorType(w2.shape, "float32"))
    with bb.function("main", [x, wv] if second_as_input else [x]):
        with bb.dataflow():
            y = bb.emit(relax.op.nn.conv2d(x, relax.const(w1), padding=(1, 1, 1, 1)))
            y = bb.emit(relax.op.nn.relu(y))
            z = bb.emit(relax.op.nn.conv2d(y, wv if second_as_input else relax.const(w2),
                                           padding=(1, 1, 1, 1)))
            out = bb.emit_output(z)
        bb.emit_func_output(out)
    return bb.get()


def test_threshold_chooses_per_layer():
    rng = np.random.default_rng(4)
    w1, w2 = sparse_weight(rng, (8, 8, 3, 3), 0.9), sparse_weight(rng, (8, 8, 3, 3), 0.2)
    assert weight_sparsity(w1) >= 0.5 > weight_sparsity(w2)
    x = rng.standard_normal((1, 8, 6, 6), dtype=np.float32)
    ex, stats = build_conv(two_convs(w1, w2), Direct(format="csr", sparsity_threshold=0.5))
    assert (stats["conv_layers"], stats["sparse_layers"], stats["fallback_layers"]) == (2, 1, 0)
    assert stats["schedule_rules"].get("DirectSparseConv2D") == 1
    assert stats["schedule_rules"].get("DirectConv2D") == 1
    ref = torch_conv(np.maximum(torch_conv(x, w1, 1, (1,) * 4, 1, 1), 0), w2, 1, (1,) * 4, 1, 1)
    assert_close(run_vm(ex, x), ref)


def test_weight_not_constant_is_dense_fallback():
    rng = np.random.default_rng(5)
    w1, w2 = sparse_weight(rng, (8, 8, 3, 3), 0.9), sparse_weight(rng, (8, 8, 3, 3), 0.9)
    x = rng.standard_normal((1, 8, 6, 6), dtype=np.float32)
    ex, stats = build_conv(two_convs(w1, w2, second_as_input=True), Direct(format="bsr"))
    assert (stats["conv_layers"], stats["sparse_layers"], stats["fallback_layers"]) == (2, 1, 1)
    assert stats["fallbacks"] == {"weight not a constant: dense direct": 1}
    ref = torch_conv(np.maximum(torch_conv(x, w1, 1, (1,) * 4, 1, 1), 0), w2, 1, (1,) * 4, 1, 1)
    assert_close(run_vm(ex, x, w2), ref)


def test_bsr_block_must_divide_the_layer():
    w = sparse_weight(np.random.default_rng(6), (12, 8, 3, 3), 0.9)  # W: [12, 72]
    with pytest.raises(DLASError, match="primitive.block"):
        Untuned().build(conv_module((1, 8, 6, 6), w, 1, (1,) * 4, 1, 1),
                        Direct(format="bsr", block=(8, 1)), HOST)


@pytest.mark.parametrize("block", [(0, 1), (4,), "4x1"])
def test_bad_block(block):
    with pytest.raises(DLASError, match="primitive.block"):
        Direct(format="bsr", block=block)


def test_other_formats_refused():
    with pytest.raises(DLASError) as err:
        Direct(format="coo")
    assert "coo" in str(err.value) and "csr" in str(err.value) and "bsr" in str(err.value)


def test_sparse_rule_declines_dense_functions():
    data = te.placeholder((1, 4, 6, 6), name="data")
    weight = te.placeholder((8, 4, 3, 3), name="weight")
    out = conv2d_direct(data, weight, (1, 1), (1,) * 4, (1, 1))
    func = te.create_prim_func([data, weight, out])
    assert direct_sparse_rule().apply(func, HOST, False) is None


def csr_conv(side: int):
    """A 4 -> 8 channel 3x3 CSR conv on a side x side map, its weight ELL-stored with rows of 3
    entries: (data, values, offsets, output) tensors."""
    data = te.placeholder((1, 4, side, side), name="data")
    vals = te.placeholder((1, 3, 8), name="vals")
    offs = te.placeholder((1, 3, 8), "int32", name="offs")
    return data, vals, offs, conv2d_direct_csr(data, vals, offs, (8, 4, 3, 3), (1, 1), (1,) * 4,
                                               (1, 1))


def test_csr_compute_is_marked():
    side = 5
    *_, out = csr_conv(side)
    assert tuple(out.shape) == (1, 8, side, side)
    assert dict(out.op.attrs) == {"dlas.primitive": "direct_sparse", "dlas.kernel_layout": "csr"}


@pytest.mark.parametrize("stride,dilation", [((1, 1), (1, 1)), ((2, 2), (1, 1)), ((2, 1), (2, 3))])
def test_flat_input_and_offsets_address_the_window(stride, dilation):
    """flat[n, offset(k) + y*ws + x] is pad(in)[n, c(k), y*sh + ky*dh, x*sw + kx*dw]."""
    shape, wshape, padding = (1, 3, 7, 9), (4, 3, 3, 3), (1, 2, 2, 1)
    geo = geometry(shape, wshape, stride, padding, dilation)
    data = te.placeholder(shape, name="data")
    flat = flat_input(data, geo)
    x = np.random.default_rng(7).standard_normal(shape).astype(np.float32)
    out = tvm.runtime.tensor(np.zeros((1, geo.c * geo.plane), np.float32))
    tvm.compile(te.create_prim_func([data, flat]), "llvm")(tvm.runtime.tensor(x), out)
    got = out.numpy()[0]
    padded = np.pad(x[0], ((0, 0), (1, 2), (2, 1)))
    ks = np.arange(3 * 3 * 3)
    offsets = window_offsets(ks, geo)
    for k, off in zip(ks, offsets):
        c, ky, kx = k // 9, k // 3 % 3, k % 3
        for y in range(geo.oh):
            for xx in range(geo.ow):
                assert got[off + y * geo.ws + xx] == padded[c, y * stride[0] + ky * dilation[0],
                                                            xx * stride[1] + kx * dilation[1]]


@pytest.mark.parametrize("fmt", ["csr", "bsr"])
@pytest.mark.parametrize("side,kernel,stride,sparsity", [(4, 3, 1, 0.9), (8, 3, 1, 0.99),
                                                         (8, 3, 2, 0.5), (8, 1, 2, 1.0),
                                                         (7, 3, 1, 0.9)])
def test_small_maps_over_the_output_plane(fmt, side, kernel, stride, sparsity):
    """Maps narrower than a vector (the plane of 4x4, 8x8 whole vectors; 7x7 not), strided
    and 1x1 included, scheduled by the rule, exact."""
    pad = (kernel // 2,) * 4
    rng = np.random.default_rng(side * 10 + kernel)
    x = rng.standard_normal((1, 32, side, side), dtype=np.float32)
    w = sparse_weight(rng, (64, 32, kernel, kernel), sparsity)
    ex, stats = build_conv(conv_module(x.shape, w, stride, pad, 1, 1, relu_plus_one=True),
                           Direct(format=fmt, sparsity_threshold=0.0))
    assert stats["sparse_layers"] == 1 and stats["schedule_rules"] == {"DirectSparseConv2D": 1}
    ref = np.maximum(torch_conv(x, w, stride, pad, 1, 1) + 1, 0)
    assert_close(run_vm(ex, x), ref)


@pytest.mark.parametrize("side", [4, 8, 16])
def test_small_map_vectorises_its_plane(side):
    """On 16 lanes a 4x4 or 8x8 map is vectorised over its flattened plane (one or four
    full vectors), a 16x16 one over its rows (full already)."""
    data, vals, offs, out = csr_conv(side)
    sch = direct_sparse_rule().apply(te.create_prim_func([data, vals, offs, out]),
                                     make_target({"kind": "llvm", "mcpu": "znver4"}), False)
    conv = sch.get_sblock("conv2d_direct_csr_update")
    loops = [sch.get(lp) for lp in sch.get_loops(conv)]
    fused = any("y_x_fused" in lp.loop_var.name for lp in loops)
    assert fused == (side < 16)
    assert int(loops[-1].extent) == 16 and loops[-1].kind == tvm.tirx.ForKind.VECTORIZED


def test_pruned_resnet18_csr_matches_pytorch():
    """resnet18 at 32x32, 90 % global unstructured sparsity, every sparse-enough conv CSR."""
    stats, convs = compile_pruned_resnet18(Direct(format="csr", sparsity_threshold=0.5))
    assert stats["conv_layers"] == len(convs) and stats["fallback_layers"] == 0, stats
    assert stats["sparse_layers"] == sum(weight_sparsity(w) >= 0.5 for w in convs) > 10, stats
