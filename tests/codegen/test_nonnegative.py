"""int8 activations proven >= 0 (dlas/codegen/nonnegative.py): the sign analysis on small
graphs, which convs of an int8 model take the unsigned form on each x86 path (and none on
sdot), and every conv shape of the seven models exact on it."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import tvm
from tvm import relax
from tvm.target.codegen import target_has_features

from dlas.codegen import Untuned, import_model, inference_passes
from dlas.codegen.nonnegative import nonnegative_conv_inputs
from dlas.codegen.pipeline import front_passes
from dlas.hardware.base import make_target
from dlas.primitives import Direct, Gemm, SpatialPack

from tests.codegen.test_int8_dot_model import Tiny
from tests.codegen.test_quantized import int8_of
from tests.primitives.test_int8_dot import SHAPES, numpy_conv_int, operands

HOST = make_target({"kind": "llvm", "mcpu": "host"})
TARGETS = {"vnni": make_target({"kind": "llvm", "mcpu": "znver4"}),
           "avx512": make_target({"kind": "llvm", "mcpu": "skylake-avx512"}),
           "avx2": make_target({"kind": "llvm", "mcpu": "haswell"})}
FEATURES = {"vnni": "avx512vnni", "avx512": "avx512bw", "avx2": "avx2"}


def conv_after(make_input) -> tuple[relax.Function, tuple]:
    """main(x: float32, y: float32) = conv2d(make_input(x, y) as int8, W): the function and
    its conv's weight."""
    bb = relax.BlockBuilder()
    x, y = (relax.Var(n, relax.TensorType((1, 8, 6, 6), "float32")) for n in "xy")
    with bb.function("main", [x, y]):
        with bb.dataflow():
            value = bb.emit(make_input(x, y))
            weight = relax.const(np.ones((8, int(value.ty.shape[1]), 3, 3), np.int8))
            q = bb.emit(relax.op.astype(relax.op.clip(relax.op.round(value), -127, 127), "int8"))
            out = bb.emit_output(relax.op.nn.conv2d(q, weight, padding=1, out_dtype="int32"))
        bb.emit_func_output(out)
    return bb.get()["main"], (q, weight)


op = relax.op
SIX = relax.const(6.0)


@pytest.mark.parametrize("make_input, proven", [
    (lambda x, y: op.nn.relu(x), True),
    (lambda x, y: op.clip(x, 0, 6), True),  # ReLU6
    (lambda x, y: op.multiply(op.nn.relu(x), relax.const(np.float32(3.5))), True),
    (lambda x, y: op.add(op.nn.relu(x), op.nn.relu(y)), True),
    (lambda x, y: op.concat([op.nn.relu(x), op.clip(y, 0, 6)], axis=1), True),
    (lambda x, y: op.nn.max_pool2d(op.nn.relu(x), (3, 3), padding=1), True),
    (lambda x, y: op.maximum(op.minimum(x, SIX), relax.const(0.0)), True),
    (lambda x, y: x, False),
    (lambda x, y: op.clip(x, -1, 6), False),
    (lambda x, y: op.add(op.nn.relu(x), y), False),  # a residual sum before its ReLU
    (lambda x, y: op.multiply(op.nn.relu(x), relax.const(np.float32(-1.0))), False),
    (lambda x, y: op.concat([op.nn.relu(x), y], axis=1), False),
    (lambda x, y: op.subtract(op.nn.relu(x), op.nn.relu(y)), False),  # an op it does not know
])
def test_sign_analysis(make_input, proven):
    func, operands = conv_after(make_input)
    assert (operands in nonnegative_conv_inputs(func)) == proven


def test_an_integer_cast_that_can_wrap_is_not_trusted():
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 8, 6, 6), "int32"))
    weight = relax.const(np.ones((8, 8, 1, 1), np.int8))
    with bb.function("main", [x]):
        with bb.dataflow():
            q = bb.emit(relax.op.astype(relax.op.nn.relu(x), "int8"))  # 200 -> -56
            out = bb.emit_output(relax.op.nn.conv2d(q, weight, out_dtype="int32"))
        bb.emit_func_output(out)
    assert not nonnegative_conv_inputs(bb.get()["main"])


def test_a_shared_weight_is_unsigned_only_where_its_input_is():
    # one weight (a module applied twice), once after a ReLU and once on the signed input
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 16, 6, 6), "int8"))
    weight = relax.const(np.ones((16, 16, 3, 3), np.int8))
    with bb.function("main", [x]):
        with bb.dataflow():
            relu = bb.emit(relax.op.maximum(x, relax.const(np.int8(0))))
            convs = [bb.emit(relax.op.nn.conv2d(data, weight, padding=1, out_dtype="int32"))
                     for data in (relu, x)]
            out = bb.emit_output(relax.Tuple(convs))
        bb.emit_func_output(out)
    mod = bb.get()
    assert nonnegative_conv_inputs(mod["main"]) == {(relu, weight)}
    assert data_packs(mod, Direct(), TARGETS["vnni"]) == ["u7", "u8"]


@pytest.fixture(scope="module")
def tiny_int8():
    return import_model(int8_of(Tiny(), 16), torch.randn(1, 3, 16, 16))


def data_packs(mod: tvm.IRModule, primitive, target) -> list[str]:
    """The data pack kind of each int8 dot-product conv after the build's front passes."""
    with target:
        mod = tvm.transform.Sequential(inference_passes() + front_passes(primitive, target))(mod)
    text = mod.script()
    return sorted(kind for kind in ("u7", "u8", "s8")
                  for _ in range(text.count(f'T.sblock("data_pack_{kind}"')))


@pytest.mark.parametrize("path, others", [("vnni", "u8"), ("avx512", "u8"), ("avx2", "s8")])
@pytest.mark.parametrize("primitive", [Direct, SpatialPack, Gemm])
def test_convs_after_a_relu_take_the_unsigned_form(tiny_int8, primitive, path, others):
    # Tiny's dense convs: the stem reads the image (signed), the other three a ReLU's output
    assert data_packs(tiny_int8, primitive(), TARGETS[path]) == sorted(["u7"] * 3 + [others])


def test_sdot_keeps_signed_activations(tiny_int8):
    target = make_target({"kind": "llvm", "mtriple": "aarch64-linux-gnu",
                          "mattr": ["+neon", "+dotprod"]})
    assert data_packs(tiny_int8, Direct(), target) == ["s8"] * 4


def relu_convs(shapes, weights) -> tvm.IRModule:
    """main(x_0, ...) = (conv2d_0(max(x_0, 0)), ...): int8 inputs through a ReLU."""
    bb = relax.BlockBuilder()
    xs = [relax.Var(f"x{i}", relax.TensorType((1, wl.in_channels, wl.height, wl.width), "int8"))
          for i, wl in enumerate(shapes)]
    zero = relax.const(np.int8(0))
    with bb.function("main", xs):
        with bb.dataflow():
            outs = [bb.emit(relax.op.nn.conv2d(
                bb.emit(relax.op.maximum(x, zero)), relax.const(w), strides=wl.stride,
                padding=wl.padding, dilation=wl.dilation, groups=wl.groups, out_dtype="int32"))
                for x, w, wl in zip(xs, weights, shapes)]
            out = bb.emit_output(relax.Tuple(outs))
        bb.emit_func_output(out)
    return bb.get()


@pytest.mark.parametrize("path", ["vnni", "avx512", "avx2"])
def test_unsigned_form_exact_on_every_model_conv_shape(path):
    if not target_has_features(FEATURES[path], HOST):
        pytest.skip(f"this CPU cannot run {path} code")
    rng = np.random.default_rng(0)
    cases = [operands(wl, rng) for wl in SHAPES]  # inputs up to 127, a weight row of -128
    target = HOST if path == "vnni" else TARGETS[path]  # (a newer mcpu: what the host lacks)
    mod = relu_convs(SHAPES, [w for _, w in cases])
    assert data_packs(mod, Direct(), target) == ["u7"] * sum(wl.groups == 1 for wl in SHAPES)
    ex, stats = Untuned().build(mod, Direct(), target)
    assert stats["int8_path"] == path
    outs = relax.VirtualMachine(ex, tvm.cpu())["main"](*(tvm.runtime.tensor(x) for x, _ in cases))
    for wl, (x, w), out in zip(SHAPES, cases, outs):
        assert np.array_equal(out.numpy(), numpy_conv_int(np.maximum(x, 0), w, wl)), wl.label()
