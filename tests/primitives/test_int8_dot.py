"""int8 conv2d on the CPU's integer dot-product instructions (dlas/primitives/int8_*.py):
exact against a NumPy integer reference on the conv shapes of DLAS's seven models, the
instruction the target has in the compiled code (and not where it lacks it), the path
chosen from the target's features."""
from __future__ import annotations

import collections
import re

import numpy as np
import pytest
import tvm
from tvm import relax
from tvm.target.codegen import target_has_features

from dlas.codegen import Untuned
from dlas.hardware.base import make_target
from dlas.primitives import Direct, Gemm, SpatialPack
from dlas.primitives.int8_compute import pack_weight_int8
from dlas.primitives.int8_intrin import int8_path
from dlas.primitives.workloads import Conv2dWorkload, distinct_workloads

AVX512_TARGET = make_target({"kind": "llvm", "mcpu": "skylake-avx512"})  # AVX512BW, no VNNI
AVX2_TARGET = make_target({"kind": "llvm", "mcpu": "haswell"})  # AVX2, no AVX-512
PLAIN_TARGET = make_target({"kind": "llvm", "mcpu": "sandybridge"})  # AVX, no AVX2
HOST = make_target({"kind": "llvm", "mcpu": "host"})

# the host runs what was compiled for a target only if it has the instructions
HOST_RUNS = {"vnni": target_has_features("avx512vnni", HOST),
             "avx512": target_has_features("avx512bw", HOST),
             "avx2": target_has_features("avx2", HOST)}


def numpy_conv_int(x: np.ndarray, w: np.ndarray, wl: Conv2dWorkload) -> np.ndarray:
    """Integer conv2d in int64 NumPy (the exact result), NCHW/OIHW, Relax-free."""
    (sh, sw), (dh, dw), (ph, pw) = wl.stride, wl.dilation, wl.padding
    xp = np.pad(x.astype(np.int64), ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    oh, ow = wl.out_size
    o_, cg, kh, kw = w.shape
    og = o_ // wl.groups
    out = np.zeros((x.shape[0], o_, oh, ow), np.int64)
    for g in range(wl.groups):
        wg = w[g * og:(g + 1) * og].astype(np.int64)
        xg = xp[:, g * cg:(g + 1) * cg]
        for ky in range(kh):
            for kx in range(kw):
                win = xg[:, :, ky * dh:ky * dh + (oh - 1) * sh + 1:sh,
                         kx * dw:kx * dw + (ow - 1) * sw + 1:sw]
                out[:, g * og:(g + 1) * og] += np.einsum("ncyx,oc->noyx", win, wg[:, :, ky, kx])
    return out


def model_shapes() -> list[Conv2dWorkload]:
    """Per (kind, kernel, stride) class of the seven models' convs (32x32 and 224x224): its
    first workload, its widest, its first and last with channels not a multiple of 16,
    inputs cut to 9x9;
    and a dense 5x5 stride 2 (the models have 5x5 convs only depthwise) and a dilated 3x3."""
    classes = collections.defaultdict(list)
    for wl, _ in distinct_workloads():
        classes[wl.shape_class].append(wl)
    picked = []
    for members in classes.values():
        odd = [wl for wl in members if wl.in_channels % 16 or wl.out_channels % 16]
        widest = max(members, key=lambda wl: wl.in_channels * wl.out_channels)
        picked += [members[0], widest] + odd[:1] + odd[-1:]
    picked.append(Conv2dWorkload(40, 24, 11, 11, (5, 5), (2, 2), (2, 2), (1, 1), 1))
    picked.append(Conv2dWorkload(8, 16, 12, 12, (3, 3), (1, 1), (2, 2), (2, 2), 1))  # dilated
    return sorted({wl.scaled(9) for wl in picked})


SHAPES = model_shapes()


def many_convs(shapes: list[Conv2dWorkload], weights: list[np.ndarray]) -> tvm.IRModule:
    """main(x_0, x_1, ...) = (conv2d_0(x_0), conv2d_1(x_1), ...), int8 -> int32, constant
    weights: the shapes compile in one build."""
    bb = relax.BlockBuilder()
    xs = [relax.Var(f"x{i}", relax.TensorType((1, wl.in_channels, wl.height, wl.width), "int8"))
          for i, wl in enumerate(shapes)]
    with bb.function("main", xs):
        with bb.dataflow():
            outs = [bb.emit(relax.op.nn.conv2d(
                x, relax.const(w), strides=wl.stride, padding=wl.padding,
                dilation=wl.dilation, groups=wl.groups, out_dtype="int32"))
                for x, w, wl in zip(xs, weights, shapes)]
            out = bb.emit_output(relax.Tuple(outs))
        bb.emit_func_output(out)
    return bb.get()


def operands(wl: Conv2dWorkload, rng) -> tuple[np.ndarray, np.ndarray]:
    """Uniform int8 over the full range, plus the extremes: a corner of the input at -128
    and 127 and a weight row at -128, where a saturating int16 pair sum would show."""
    x = rng.integers(-128, 128, (1, wl.in_channels, wl.height, wl.width), dtype=np.int8)
    w = rng.integers(-128, 128, wl.weight_shape, dtype=np.int8)
    x[0, :, 0, 0], x[0, :, -1, -1] = 127, -128
    w[0] = -128
    return x, w


# run on this CPU: the host itself for vnni (a newer mcpu could use instructions it lacks);
# avx2 with direct only (the dot-product compute and schedule are the primitives' shared
# code; test_int8_dot_model runs spatial_pack's avx2 tiles): a build is ~9 s here
@pytest.mark.parametrize("primitive, path, target", [
    *((p, path, t) for path, t in (("vnni", HOST), ("avx512", AVX512_TARGET))
      for p in (Direct, SpatialPack, Gemm)),
    (Direct, "avx2", AVX2_TARGET)])
def test_model_conv_shapes_exact(primitive, path, target):
    if not HOST_RUNS[path]:
        pytest.skip(f"this CPU cannot run {path} code")
    rng = np.random.default_rng(0)
    cases = [operands(wl, rng) for wl in SHAPES]
    if path == "avx2":  # weights in [-127, 127] (DLAS's int8 range) take its sign form
        for _, w in cases[1::2]:
            np.clip(w, -127, 127, out=w)
    codegen = Untuned()
    ex, stats = codegen.build(many_convs(SHAPES, [w for _, w in cases]), primitive(), target)
    dense = sum(wl.groups == 1 for wl in SHAPES)
    assert stats["int8_path"] == path and stats["int8_dot_layers"] == dense
    assert stats["schedule_rules"].get("Int8DotConv2D") == dense  # all tensorized
    vm = relax.VirtualMachine(ex, tvm.cpu())
    outs = vm["main"](*(tvm.runtime.tensor(x) for x, _ in cases))
    for wl, (x, w), out in zip(SHAPES, cases, outs):
        got = out.numpy()
        assert got.dtype == np.int32
        assert np.array_equal(got, numpy_conv_int(x, w, wl)), wl.label()


def asm_of(target, primitive=Direct) -> str:
    wl = Conv2dWorkload(16, 32, 6, 6, (3, 3), (1, 1), (1, 1), (1, 1), 1)
    w = np.ones(wl.weight_shape, np.int8)
    ex, _ = Untuned().build(many_convs([wl], [w]), primitive(), target)
    return "\n".join(m.inspect_source("s") for m in ex.mod.imports if m.kind == "llvm")


@pytest.mark.parametrize("mcpu", ["znver5", "icelake-server"])
@pytest.mark.parametrize("primitive", [Direct, SpatialPack, Gemm])
def test_vnni_target_compiles_to_vpdpbusd(primitive, mcpu):
    assert re.search(r"\bvpdpbusd\b", asm_of(make_target({"kind": "llvm", "mcpu": mcpu}),
                                              primitive))


@pytest.mark.parametrize("target, register", [(AVX512_TARGET, "zmm"), (AVX2_TARGET, "ymm")])
def test_targets_without_vnni_use_the_multiply_add_pair(target, register):
    """AVX512BW: the 512-bit pair on zmm registers; AVX2: the 256-bit pair on ymm, no zmm
    (asm_of's all-ones weight: avx2's sign form, vpsignb before the pair)."""
    asm = asm_of(target, SpatialPack)
    assert (register == "ymm") == bool(re.search(r"\bvpsignb\b", asm))
    assert "vpdpbusd" not in asm
    for op in ("vpmaddubsw", "vpmaddwd"):
        assert re.search(rf"\b{op}\s+[^\n]*%{register}", asm), op
    assert (register == "zmm") == ("zmm" in asm)


def test_plain_target_keeps_the_generic_int8_path():
    asm = asm_of(PLAIN_TARGET)
    assert "vpdpbusd" not in asm and "vpmaddubsw" not in asm


@pytest.mark.parametrize("spec, path", [
    ({"kind": "llvm", "mcpu": "icelake-server"}, "vnni"), ({"kind": "llvm", "mcpu": "znver5"}, "vnni"),
    ({"kind": "llvm", "mcpu": "skylake-avx512"}, "avx512"), ({"kind": "llvm", "mcpu": "haswell"}, "avx2"),
    ({"kind": "llvm", "mcpu": "sandybridge"}, "plain"), ({"kind": "llvm"}, "plain"),
    ({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon", "+dotprod"]}, "sdot"),
    ({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a55"}, "sdot"),
    ({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a73", "mattr": ["+neon"]}, "plain"),
    ({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "carmel", "mattr": ["+neon"]}, "plain")])
def test_path_follows_target_features(spec, path):
    assert int8_path(make_target(spec)) == path


@pytest.mark.parametrize("lanes", [16, 8, 4])
def test_weight_packing_and_compensation(lanes):
    """OIHW -> [Op/L, Cp/ib, KH, KW, ib/4, L, 4] for L output lanes, zero-padded channels,
    and 128 * the sum of each output channel's weights (the +128 shift's correction)."""
    rng = np.random.default_rng(3)
    w = rng.integers(-128, 128, (22, 6, 3, 3), dtype=np.int8)
    packed, comp = pack_weight_int8(w, 8, lanes)
    ob = -(-22 // lanes)
    assert packed.shape == (ob, 1, 3, 3, 2, lanes, 4) and packed.dtype == np.int8
    for o, c, ky, kx in ((17, 5, 2, 1), (21, 0, 0, 2)):
        assert packed[o // lanes, c // 8, ky, kx, c % 8 // 4, o % lanes, c % 4] == w[o, c, ky, kx]
    assert not packed[-1, 0, :, :, :, 22 - (ob - 1) * lanes:].any()  # padded out channels
    assert not packed[:, :, :, :, 1, :, 2:].any()  # padded in channels
    assert np.array_equal(comp, 128 * w.astype(np.int64).sum(axis=(1, 2, 3)))
