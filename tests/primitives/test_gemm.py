"""The gemm conv2d primitive (im2col + matrix multiply; dense, CSR, BSR), built through the
real Relax path and compared with PyTorch.

Tolerances: float32 and float16 (float16 operands, float32 sums: the products are exact)
against a float64 reference of the same values, max |out - ref| <= 1e-5 * max |ref|; int8
(int32 sums) exactly, against the float64 result (integers far below 2**53).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import tvm
from conv_reference import (HOST, compile_pruned_resnet18, conv_cases, conv_module, run_vm,
                            runs_parallel, torch_conv)
from hydra.utils import instantiate
from omegaconf import OmegaConf
from tvm import te

from dlas.codegen import Untuned
from dlas.codegen.pipeline import front_passes, inference_passes, relax_pipeline
from dlas.errors import DLASError
from dlas.primitives import Gemm, Primitive
from dlas.primitives.gemm import DEPTHWISE
from dlas.primitives.gemm_schedule import gemm_conv2d_rule

CONF = Path(__file__).resolve().parents[2] / "conf"
OUT_DTYPE = {"float32": "float32", "float16": "float32", "int8": "int32"}

CASES = conv_cases("1x1 s1", "3x3 s1 p1", "3x3 s2 p1", "3x3 asymmetric pad", "3x3 dilation 2",
                   "grouped 4, 16 in", "grouped 2, odd width", "depthwise 3x3 s1",
                   "non-square, batch 2")


def make_case(case: str, dtype: str = "float32", sparsity: float = 0.5, seed: int = 0):
    """(input, weight with `sparsity` of its entries zeroed, reference output in float64)."""
    shape, (o, kh, kw), stride, padding, dilation, groups = CASES[case]
    rng = np.random.default_rng(seed)
    wshape = (o, shape[1] // groups, kh, kw)
    if dtype == "int8":
        x = rng.integers(-128, 128, shape, dtype=np.int8)
        w = rng.integers(-128, 128, wshape, dtype=np.int8)
    else:
        x = rng.standard_normal(shape, dtype=np.float32).astype(dtype)
        w = rng.standard_normal(wshape, dtype=np.float32).astype(dtype)
    w[rng.permutation(w.size).reshape(w.shape) < round(sparsity * w.size)] = 0
    return x, w, torch_conv(x, w, stride, padding, dilation, groups, np.float64)


def gemm_module(shape, weight: np.ndarray, stride, padding, dilation, groups) -> tvm.IRModule:
    """main(x) = conv2d(x, const weight), accumulating in OUT_DTYPE."""
    return conv_module(shape, weight, stride, padding, dilation, groups,
                       out_dtype=OUT_DTYPE[str(weight.dtype)])


def build_run(case: str, prim: Gemm, x: np.ndarray, w: np.ndarray):
    _, _, stride, padding, dilation, groups = CASES[case]
    codegen = Untuned()
    ex, stats = codegen.build(gemm_module(x.shape, w, stride, padding, dilation, groups), prim,
                              HOST)
    return run_vm(ex, x), stats


def check(out: np.ndarray, ref: np.ndarray, dtype: str) -> None:
    assert out.shape == ref.shape and out.dtype == OUT_DTYPE[dtype]
    if dtype == "int8":
        assert np.array_equal(out.astype(np.int64), ref.astype(np.int64))
    else:
        assert np.abs(out - ref).max() <= 1e-5 * np.abs(ref).max() + 1e-6


@pytest.mark.parametrize("fmt", ["dense", "csr", "bsr"])
@pytest.mark.parametrize("case", list(CASES))
def test_conv_matches_torch(case, fmt):
    x, w, ref = make_case(case, sparsity=0.5)
    out, stats = build_run(case, Gemm(format=fmt, block=(2, 1)), x, w)
    check(out, ref, "float32")
    assert stats["unscheduled_funcs"] == 0, stats
    if case == "depthwise 3x3 s1":  # handed to direct, and said so
        assert stats["fallbacks"] == {DEPTHWISE: 1}, stats
        assert stats["schedule_rules"] == {"DirectConv2D": 1}, stats
    else:
        assert stats["schedule_rules"] == {"GemmConv2D": 1}, stats
        assert stats["fallback_layers"] == 0
        assert stats["sparse_layers"] == int(fmt != "dense")


@pytest.mark.parametrize("fmt", ["csr", "bsr"])
@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.95])
def test_sparsity_threshold_picks_the_format(fmt, sparsity):
    """threshold 0.5: the 0 % layer stays dense, 50 % and 95 % go sparse (BSR blocks of
    3 patch rows: W is [16, 72])."""
    x, w, ref = make_case("3x3 s1 p1", sparsity=sparsity, seed=3)
    out, stats = build_run("3x3 s1 p1", Gemm(format=fmt, block=(4, 3)), x, w)
    check(out, ref, "float32")
    assert (stats["conv_layers"], stats["sparse_layers"]) == (1, int(sparsity >= 0.5)), stats
    assert stats["schedule_rules"] == {"GemmConv2D": 1}, stats


@pytest.mark.parametrize("fmt", ["dense", "csr", "bsr"])
@pytest.mark.parametrize("dtype", ["float16", "int8"])
def test_dtypes(dtype, fmt):
    """float16 -> float32 and int8 -> int32 (exact) accumulation, grouped with strides
    (the generic GEMM: int8_dot off; the dot-product path is tests/primitives/test_int8_dot.py)."""
    for case in ("3x3 s2 p1", "grouped 4, 16 in"):
        x, w, ref = make_case(case, dtype, sparsity=0.6, seed=1)
        out, stats = build_run(case, Gemm(format=fmt, block=(4, 1), int8_dot=False), x, w)
        check(out, ref, dtype)
        assert stats["sparse_layers"] == int(fmt != "dense")
        assert stats["schedule_rules"] == {"GemmConv2D": 1}, stats


@pytest.mark.parametrize("fmt", ["csr", "bsr"])
def test_empty_rows(fmt):
    """Output channels without a stored weight (pruned away) are zeros, not garbage: TE
    initialises a data-dependent sum in its first iteration."""
    x, w, _ = make_case("3x3 s1 p1", sparsity=0.5)
    w[:8] = 0  # block rows 0 and 1 of a (4, 1) BSR too
    for weight in (w, np.zeros_like(w)):
        xp = torch.from_numpy(np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1))).astype(np.float64))
        ref = F.conv2d(xp, torch.from_numpy(weight.astype(np.float64))).numpy()
        out, stats = build_run("3x3 s1 p1", Gemm(format=fmt, block=(4, 1)), x, weight)
        assert stats["sparse_layers"] == 1
        check(out, ref, "float32")
        assert not out[:, :8].any()


@pytest.mark.parametrize("fmt, shape", [("dense", (1, 64, 16, 16)), ("dense", (1, 7, 5, 5)),
                                        ("csr", (1, 64, 16, 16)), ("bsr", (1, 16, 9, 9))])
def test_gemm_rule_schedules_the_conv(fmt, shape):
    """The rule claims the fused im2col + GEMM function: vectorised, accumulator or pixel
    vectors, parallel when large."""
    c = shape[1]
    w = np.ones((c, c, 3, 3), np.float32)
    w[:, ::2] = 0  # 50 % sparse
    mod = Untuned().schedule(gemm_module(shape, w, 1, (1, 1, 1, 1), 1, 1),
                             Gemm(format=fmt, block=(c if c % 16 else 16, 1)), HOST)
    name = "conv2d_gemm" + ("" if fmt == "dense" else "_" + fmt)
    func = mod[name]
    assert int(func.attrs["tirx.is_scheduled"]) == 1
    assert str(func.body.block.annotations["dlas.schedule_rule"]) == "GemmConv2D"
    text = func.script()
    assert "T.vectorized(" in text and "im2col" in text
    assert runs_parallel(text) == (c == 64)
    if fmt == "dense":
        assert 'scope="local"' in text
    # the rule itself, on the unscheduled function
    unscheduled = relax_fused(shape, w, fmt, c)
    assert gemm_conv2d_rule().apply(unscheduled, HOST, False) is not None


def relax_fused(shape, w, fmt, c):
    prim = Gemm(format=fmt, block=(c if c % 16 else 16, 1))
    mod = relax_pipeline(inference_passes() + front_passes(prim, HOST), HOST)(
        gemm_module(shape, w, 1, (1, 1, 1, 1), 1, 1))
    return mod["conv2d_gemm" + ("" if fmt == "dense" else "_" + fmt)]


def test_gemm_rule_declines_other_functions():
    a = te.placeholder((4, 8), name="a")
    func = te.create_prim_func([a, te.compute((4, 8), lambda i, j: a[i, j] * 2, name="b")])
    assert gemm_conv2d_rule().apply(func, HOST, False) is None


@pytest.mark.parametrize("fmt", ["dense", "csr"])
def test_weight_as_input(fmt):
    """A weight that is not a constant is re-laid in the graph; it cannot go sparse (said)."""
    x, w, ref = make_case("3x3 s2 p1", sparsity=0.9)
    _, _, stride, padding, dilation, groups = CASES["3x3 s2 p1"]
    codegen = Untuned()
    ex, stats = codegen.build(conv_module(x.shape, w, stride, padding, dilation, groups,
                                   weight_as_input=True), Gemm(format=fmt), HOST)
    out = run_vm(ex, x, w)
    check(out, ref, "float32")
    assert stats["sparse_layers"] == 0
    assert stats["fallbacks"] == ({"weight not a constant: dense gemm": 1} if fmt == "csr"
                                          else {})


def test_block_that_does_not_divide_raises():
    x, w, _ = make_case("3x3 s1 p1", sparsity=0.9)  # W is [16, 72]
    # (raised inside LegalizeOps: TVM's FFI re-creates the exception, `.layer` is lost)
    with pytest.raises(DLASError, match=r"primitive.block.*\[16, 72\]"):
        build_run("3x3 s1 p1", Gemm(format="bsr", block=(5, 1)), x, w)
    with pytest.raises(DLASError, match="primitive.block"):
        Gemm(format="bsr", block=(0, 1))


def test_bad_format_and_threshold():
    with pytest.raises(DLASError, match="sparsity_threshold"):
        Gemm(format="csr", sparsity_threshold=2)
    with pytest.raises(DLASError, match="primitive.format") as err:
        Gemm(format="coo")
    assert "csr" in str(err.value) and "bsr" in str(err.value)


def test_config_instantiates():
    prim = instantiate(OmegaConf.load(CONF / "primitive" / "gemm.yaml"))
    assert isinstance(prim, Gemm) and isinstance(prim, Primitive)
    assert (prim.name, prim.format, prim.sparsity_threshold) == ("gemm", "dense", 0.5)
    assert prim.block == (4, 1) and set(prim.legalize_map()) == {"relax.nn.conv2d"}


def test_pruned_resnet18_csr_matches_pytorch():
    """resnet18 at 32x32, 90 % global unstructured pruning, every pruned conv through CSR."""
    stats, convs = compile_pruned_resnet18(Gemm(format="csr"))
    sparse = sum(1 - np.count_nonzero(c) / c.size >= 0.5 for c in convs)
    assert stats["conv_layers"] == len(convs) and stats["fallback_layers"] == 0, stats
    assert stats["sparse_layers"] == sparse > len(convs) // 2, stats  # 1x1s, stem: denser
    assert stats["schedule_rules"].get("GemmConv2D", 0) > 0, stats
