"""int8 graphs into Relax: integer convolutions and matmuls with int32 accumulation.

An int8 model (dlas/compression/int8.py) reaches the importer as torch.export's graph of
torchao's quantized_decomposed ops around float conv2d/linear:

    x -> quantize_per_tensor(s_x) -> dequantize_per_tensor(s_x) -\
                                                                   conv2d(., ., bias)
    int8 W -> dequantize_per_channel(s_w) -------------------------/

TVM 0.27's importer rejects those ops. `convert_map` adds them (quantize = round, clip,
cast to int8; dequantize = cast and scale) and replaces every conv2d/linear fed by two
dequantizes with the integer form

    acc = conv2d(x_q:int8, W_q:int8, out_dtype=int32)
    y   = float(acc) * (s_x * s_w[o]) + bias

which equals the float reference exactly in real arithmetic (both zero points are 0).
The dequantizes it bypasses become dead code. Everything else keeps the importer's own
conversion, so between two convolutions the model computes in float32 (residual adds,
pooling, activations), and quantize re-enters int8 before the next convolution.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from tvm import relax
from tvm.target.codegen import target_has_features

from dlas.codegen.int8_reference import (DEQUANTIZE, DEQUANTIZE_CHANNEL, QUANTIZE,
                                         inverse_scale, requantize_scale, symmetric_operands)


def tensor_values(program: torch.export.ExportedProgram) -> dict[str, torch.Tensor]:
    """Placeholder name -> tensor for the program's parameters, buffers and constants
    (the importer hands converters Relax variables, not values)."""
    values = {}
    for spec in program.graph_signature.input_specs:
        if spec.target is None:
            continue
        value = program.state_dict.get(spec.target, program.constants.get(spec.target))
        if isinstance(value, torch.Tensor):
            values[spec.arg.name] = value.detach()
    return values


def convert_map(program: torch.export.ExportedProgram) -> dict[str, Callable]:
    """The importer's `custom_convert_map` for an int8 program."""
    values = tensor_values(program)

    def value(node) -> np.ndarray:
        return values[node.name].numpy()

    def quantize(node, importer):
        x, scale, zero_point, qmin, qmax = node.args[:5]
        q = relax.op.round(relax.op.multiply(importer.env[x], relax.const(inverse_scale(scale))))
        if zero_point:
            q = relax.op.add(q, relax.const(float(zero_point), "float32"))
        return importer.block_builder.emit(relax.op.astype(relax.op.clip(q, qmin, qmax), "int8"))

    def dequantize(node, importer):
        x, scale, zero_point = node.args[:3]
        d = relax.op.astype(importer.env[x], "float32")
        if zero_point:
            d = relax.op.subtract(d, relax.const(float(zero_point), "float32"))
        return importer.block_builder.emit(relax.op.multiply(d, relax.const(scale, "float32")))

    def dequantize_channel(node, importer):
        w, scales, zero_points, axis = node.args[:4]
        shape = [1] * len(importer.env[w].ty.shape)
        shape[axis] = -1
        d = relax.op.astype(importer.env[w], "float32")
        zp = value(zero_points).astype("float32")
        if zp.any():
            d = relax.op.subtract(d, relax.const(zp.reshape(shape)))
        scale = value(scales).astype("float32").reshape(shape)
        return importer.block_builder.emit(relax.op.multiply(d, relax.const(scale)))

    def rescale(importer, acc, scale: np.ndarray, bias):
        y = relax.op.multiply(relax.op.astype(acc, "float32"), relax.const(scale))
        if bias is not None:
            y = relax.op.add(y, relax.op.reshape(bias, scale.shape) if scale.ndim > 2 else bias)
        return importer.block_builder.emit(y)

    def int8_converter(fallback: str, accumulate, scale_shape: tuple[int, ...]):
        """Converter of a node whose operands are both int8 dequantizes: `accumulate(x_q,
        W_q, args)` is its int32 product, rescaled by s_x * s_w[o] (shaped `scale_shape`)
        plus the bias; any other node goes to the importer's own `fallback` method."""
        def convert(node, importer):
            operands = symmetric_operands(node, value)  # (else affine: keep the float op)
            if operands is None:
                return getattr(importer, fallback)(node)
            x_q, s_x, w_q, s_w = operands
            args = importer.retrieve_args(node)
            acc = importer.block_builder.emit(
                accumulate(importer.env[x_q], importer.env[w_q], args))
            bias = args[2] if len(args) > 2 else None
            return rescale(importer, acc, requantize_scale(s_x, value(s_w)).reshape(scale_shape),
                           bias)
        return convert

    def conv2d_int32(x_q, w_q, args):
        stride, padding, dilation, groups = (list(args[3:7]) + [1, 0, 1, 1][len(args[3:7]):])
        return relax.op.nn.conv2d(x_q, w_q, strides=stride, padding=padding,
                                  dilation=dilation, groups=groups, out_dtype="int32")

    def matmul_int32(x_q, w_q, args):
        return relax.op.matmul(x_q, relax.op.permute_dims(w_q, [1, 0]), out_dtype="int32")

    conv2d = int8_converter("_conv2d", conv2d_int32, (1, -1, 1, 1))
    linear = int8_converter("_linear", matmul_int32, (1, -1))

    return {f"{QUANTIZE}.default": quantize, f"{DEQUANTIZE}.default": dequantize,
            f"{DEQUANTIZE_CHANNEL}.default": dequantize_channel,
            "conv2d.default": conv2d, "linear.default": linear}


def import_options(program: torch.export.ExportedProgram) -> dict:
    """`from_exported_program` options for an int8 program. No ATen decomposition: it would
    rewrite conv2d into convolution and linear into permute + addmm, forms the converters
    above would all have to match; the importer converts these models' undecomposed ops."""
    return {"custom_convert_map": convert_map(program), "run_ep_decomposition": False}


def fused_multiply_add(target) -> bool:
    """Whether code for `target` rounds a multiply feeding an add once (what the integer
    reference must mirror, see int8_reference.py). TVM's LLVM code generator allows
    contraction (AllowFPOpFusion=Fast), so an x86 CPU with FMA and every AArch64 CPU fuse;
    x86 without FMA (e.g. `kind: llvm` alone, x86-64 generic) does not. GPU compilers
    contract by default (nvcc --fmad=true, OpenCL FP_CONTRACT on): assumed, not measured."""
    if target is None:
        return False
    if target.kind.name != "llvm":
        return True
    triple = str(target.attrs.get("mtriple", ""))
    if triple.startswith(("aarch64", "arm64")):
        return True  # (target_has_features answers for the host's triple otherwise)
    if triple.startswith("arm"):
        return False
    return bool(target_has_features("fma", target))
