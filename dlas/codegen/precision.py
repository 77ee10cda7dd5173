"""Float16 lowering: a half-precision PyTorch net -> Relax with float16 compute.

TVM 0.27's importer fails on a `model.half()` graph (float32/float16 mixed inside the
converted graph, tvm.md §7), so the net is imported as a float32 copy (its values are the
float16 weights, exactly) and TVM's ToMixedPrecision then turns conv2d/matmul and the
element-wise ops around them to float16. `main` keeps float32 input and float32 logits
(ToMixedPrecision casts at the boundaries), so callers feed and read float32 as for any net.
"""
from __future__ import annotations

import copy

import torch
import tvm
from tvm import relax

# Accumulation dtype of conv2d/matmul (their out_dtype); operands, weights and the
# activations between layers are float16 either way. float32, because x86 CPUs without
# AVX512-FP16 (this one: F16C only) have no float16 arithmetic: LLVM then widens, computes
# and rounds back after every float16 multiply-add, while float32 accumulation costs one
# vectorised vcvtph2ps per load. resnet18 32x32, random weights, untuned + direct, 2 shared
# cores, interleaved runs: float32 accumulation 14-16 ms and max|diff| 1.5e-3 x max|logit|
# vs the torch half model; float16 accumulation 80 ms and 9.2e-3 (float32 net: 13-14 ms).
ACCUMULATE = "float32"


def float32_copy(net: torch.nn.Module) -> torch.nn.Module:
    """A float32 copy of `net` for TVM's importer; `net` itself stays float16."""
    return copy.deepcopy(net).float()


def to_float16(mod: tvm.IRModule, accumulate: str = ACCUMULATE) -> tvm.IRModule:
    """`mod` (imported from float32, inference passes applied) with float16 compute; the
    float16 casts of constant weights are folded, so the weights are float16 constants."""
    return tvm.transform.Sequential([ClipBoundsAsTensors(),
                                     relax.transform.ToMixedPrecision(out_dtype=accumulate),
                                     relax.transform.FoldConstant()])(mod)


@relax.expr_functor.mutator
class _ClipRewriter(relax.PyExprMutator):
    def visit_call_(self, call: relax.Call) -> relax.Expr:
        call = super().visit_call_(call)
        if not (isinstance(call.op, tvm.ir.Op) and call.op.name == "relax.clip"):
            return call
        x, low, high = call.args
        dtype = str(x.ty.dtype)
        return relax.op.minimum(relax.op.maximum(x, relax.const(float(low.value), dtype)),
                                relax.const(float(high.value), dtype))


@tvm.transform.module_pass(opt_level=0, name="DLASClipBoundsAsTensors")
class ClipBoundsAsTensors:
    """relax.clip(x, lo, hi) -> minimum(maximum(x, lo), hi) with tensor bounds.
    ToMixedPrecision stops at clip's float64 scalar bounds ("Expected TensorType, but got
    T.float64": ReLU6 of MobileNetV2 and MNASNet)."""

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        rewriter = _ClipRewriter(mod)
        for gvar, func in mod.functions_items():
            if isinstance(func, relax.Function):
                rewriter.builder_.update_func(gvar, rewriter.visit_expr(func))
        return rewriter.builder_.get()
