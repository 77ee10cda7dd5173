"""The CPU integer dot-product instructions int8 convolutions are tensorized with, and which
one a target has.

Each intrinsic computes C[lanes] (int32) += A[4] . B[lanes, 4] (int8): `lanes` output
channels (one vector register of int32), each a dot product of four input bytes with four
signed weights.
- `vnni` (16 lanes): one `vpdpbusd` (AVX512-VNNI), u8 activations.
- `avx512` (16 lanes, AVX512BW without VNNI) and `avx2` (8 lanes, AVX2 without AVX512BW):
  `vpmaddubsw` (u8 x s8 products summed in pairs to int16, saturating) + `vpmaddwd` (int16
  pairs to int32), in their 512- and 256-bit forms. TVM's version feeds the bytes straight
  in, and a pair of shifted activations (up to 255, int8_compute.py) times weights of
  magnitude 127 reaches 64770: it saturates, so the result is not the integer convolution.
  Here each byte a is split as a = 128 * (a >> 7) + (a & 127): a pair of (a & 127) * w
  stays within 2 * 127 * 128 = 32512, a pair of (a >> 7) * w within 256, and `vpmaddwd`
  weights them 1 and 128 in int32: exact for every u8 x s8 operand, at two multiply pairs
  per dot product instead of one.
  avx2 has a cheaper exact form for weights in [-127, 127], which DLAS's int8 compression
  always produces (dlas/compression/int8.py: QMIN = -127): the s8 activation x goes in
  unshifted as |x| (`vpsignb` x, x: 0..128 as u8) and the weight as w * sign(x) (`vpsignb`
  w, x: |w| <= 127, no overflow), so a `vpmaddubsw` pair is at most 2 * 128 * 127 = 32512:
  one multiply pair and one `vpmaddwd`, no compensation. A layer whose constant weight
  holds a -128 takes the split form (activation_dtype). resnet18's 11 dense conv shapes at
  32x32 on mcpu haswell, this 2-core EPYC under load, side by side in one process, median
  of 9: plain int8 30.5 ms, split 17.4 ms, sign form 12.6 ms (direct); spatial_pack 28.4 /
  17.3 / 14.4 ms; gemm 24.7 / 21.1 / 15.9 ms.
- Non-negative activations (`uint7`: an int8 activation codegen's nonnegative.py proved
  >= 0, i.e. in [0, 127], e.g. every conv after a ReLU): the bytes go in as u8 as they are,
  with no shift and no compensation; a `vpmaddubsw` pair is at most 2 * 127 * 128 = 32512,
  so avx2 and avx512 take one multiply pair and one `vpmaddwd` with no sign instructions,
  and vnni its one `vpdpbusd`.
- `sdot` (4 lanes, AArch64 with the dot-product extension, `+dotprod`): one `sdot`, s8 x
  s8 -> int32 (each lane the dot product of four byte pairs). It needs signed activations,
  which DLAS's int8 models have (symmetric, zero point 0): on this path the activations go
  in as they are, padding is 0, and there is no +128 shift and no compensation term
  (int8_compute.py). `udot` would need the shift without buying anything, and u8 x s8
  (`usdot`) needs the i8mm extension. AArch64 CPUs without dotprod (Cortex-A73 of the
  HiKey 970, NVIDIA Carmel of the Xavier NX: neither lists `asimddp` in /proc/cpuinfo and
  LLVM's carmel/cortex-a73 CPUs have no dotprod) keep the plain path.
TVM 0.27 ships the x86 ones as `dot_16x4_vnni` / `dot_16x4_avx512` (16 lanes only), but its
VNNI one passes int32x16 operands to LLVM 22's `vpdpbusd.512`, which takes <64 x i8>
(LLVM's verifier rejects the call); its accumulator is a global buffer where DLAS's
schedules keep a local (register) tile; and importing `tvm.s_tir.tensor_intrin` costs
30-60 s (it loads every target's intrinsics). So DLAS registers its own, under its own
names: the stock module can still be imported (MetaSchedule does, for its own VNNI rule)
without a clash.
"""
from __future__ import annotations

import functools

from tvm import tirx
from tvm.s_tir import TensorIntrin
from tvm.script import tirx as T
from tvm.target import Target
from tvm.target.codegen import target_has_features

from dlas.primitives.schedule_utils import is_x86

VNNI, AVX512, AVX2, SDOT, PLAIN = "vnni", "avx512", "avx2", "sdot", "plain"
UINT7 = "uint7"  # int8 activations proven >= 0, fed as u8 (module doc)
# (int8 path, activations) -> the name its tensor intrinsic is registered under
INTRINSICS = {(VNNI, "uint8"): "dlas_dot_16x4_vnni", (VNNI, UINT7): "dlas_dot_16x4_vnni",
              (AVX512, "uint8"): "dlas_dot_16x4_avx512",
              (AVX512, UINT7): "dlas_dot_16x4_avx512_u7", (AVX2, "uint8"): "dlas_dot_8x4_avx2",
              (AVX2, "int8"): "dlas_dot_8x4_avx2_sign", (AVX2, UINT7): "dlas_dot_8x4_avx2_u7",
              (SDOT, "int8"): "dlas_dot_4x4_sdot"}
# int8 path -> int32 outputs of one instruction (the output-channel block of its layout)
LANES = {VNNI: 16, AVX512: 16, AVX2: 8, SDOT: 4}


def activation_dtype(path: str, weight_min: int, nonnegative: bool = False) -> str:
    """What the activations are fed to `path`'s instruction as, for a weight whose smallest
    value is `weight_min`: int8 (as they are) for sdot; uint7 (as they are, read as u8) on
    x86 for activations proven >= 0; int8 for avx2's sign form when no weight is -128
    (module doc); uint8 (the +128 shift, int8_compute.py) otherwise."""
    if path == SDOT:
        return "int8"
    if nonnegative:
        return UINT7
    return "int8" if path == AVX2 and weight_min > -128 else "uint8"


def int8_path(target: Target | None) -> str:
    """The integer dot-product path of a target: on x86, vnni where it has AVX512-VNNI,
    avx512 where it has AVX512BW, avx2 where it has AVX2; on AArch64, sdot where it has the
    dot-product extension; plain otherwise (and for no target)."""
    if target is None or target.kind.name != "llvm":
        return PLAIN
    if target.attrs.get("feature.is_aarch64", False):  # TVM's AArch64 parser's features
        return SDOT if target.attrs.get("feature.has_dotprod", False) else PLAIN
    if not is_x86(target):
        return PLAIN
    for feature, path in (("avx512vnni", VNNI), ("avx512bw", AVX512), ("avx2", AVX2)):
        if target_has_features(feature, target):
            return path
    return PLAIN


def _intrin(lanes: int, activation: str, body=None, scope: str = "local"):
    """C[lanes] (int32) += A[4] (`activation`) . B[lanes, 4] (int8), C in `scope`: as loops
    (the description, body None) or C = body(a, b, c) on vectors (an implementation), a the
    4 activation bytes broadcast to 4 * lanes, b the 4 * lanes weight bytes, c the `lanes`
    int32 accumulators."""
    n = 4 * lanes

    @T.prim_func(s_tir=True)
    def intrin(A: T.Buffer((4,), activation, offset_factor=1),
               B: T.Buffer((lanes, 4), "int8", offset_factor=1),
               C: T.Buffer((lanes,), "int32", offset_factor=1, scope=scope)) -> None:
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:4], B[0:lanes, 0:4])
            T.writes(C[0:lanes])
            if body is None:  # (a Python constant: the parser keeps one branch)
                for i in T.serial(0, lanes):
                    for k in T.serial(0, 4):
                        with T.sblock("update"):
                            vi, vk = T.axis.remap("SR", [i, k])
                            C[vi] = C[vi] + T.cast(A[vk], "int32") * T.cast(B[vi, vk], "int32")
            else:
                C[T.ramp(0, 1, lanes)] = body(
                    T.reinterpret(T.broadcast(T.reinterpret(A.vload([0], f"{activation}x4"),
                                                            dtype="int32"), lanes),
                                  dtype=f"{activation}x{n}"),
                    B.vload([0, 0], f"int8x{n}"), C.vload([0], f"int32x{lanes}"))

    return intrin


def _llvm(name: str, dtype: str, *args):
    return tirx.call_llvm_pure_intrin(dtype, name, *args)


def _vnni(a, b, c):
    return _llvm("llvm.x86.avx512.vpdpbusd.512", "int32x16", c, a, b)


def _madd_pair(lanes: int, maddubs: str, maddwd: str):
    """`vpmaddubsw` + `vpmaddwd` (LLVM intrinsics `maddubs`, `maddwd`) on `lanes` int32
    outputs, each byte split into 7 + 1 bits (module doc): exact for every u8 x s8 operand."""
    u8, i16, i32 = f"uint8x{4 * lanes}", f"int16x{2 * lanes}", f"int32x{lanes}"

    def body(a, b, c):
        low = _llvm(maddubs, i16, tirx.bitwise_and(a, tirx.const(127, u8)), b)
        high = _llvm(maddubs, i16, tirx.shift_right(a, tirx.const(7, u8)), b)
        return (c + _llvm(maddwd, i32, low, tirx.const(1, i16))
                + _llvm(maddwd, i32, high, tirx.const(128, i16)))

    return body


def _madd_once(lanes: int, maddubs: str, maddwd: str):
    """`vpmaddubsw` + `vpmaddwd` on `lanes` int32 outputs for bytes in [0, 127] (uint7)."""
    i16, i32 = f"int16x{2 * lanes}", f"int32x{lanes}"

    def body(a, b, c):
        return c + _llvm(maddwd, i32, _llvm(maddubs, i16, a, b), tirx.const(1, i16))

    return body


def _avx2_sign(a, b, c):
    """|a| (as u8) times b * sign(a): one `vpmaddubsw` + `vpmaddwd` (module doc)."""
    sign = "llvm.x86.avx2.psign.b"
    pairs = _llvm("llvm.x86.avx2.pmadd.ub.sw", "int16x16",
                  tirx.reinterpret("uint8x32", _llvm(sign, "int8x32", a, a)),
                  _llvm(sign, "int8x32", b, a))
    return c + _llvm("llvm.x86.avx2.pmadd.wd", "int32x8", pairs, tirx.const(1, "int16x16"))


def _sdot(a, b, c):
    return _llvm("llvm.aarch64.neon.sdot.v4i32.v16i8", "int32x4", c, b, a)


_AVX512_MADD = ("llvm.x86.avx512.pmaddubs.w.512", "llvm.x86.avx512.pmaddw.d.512")
_AVX2_MADD = ("llvm.x86.avx2.pmadd.ub.sw", "llvm.x86.avx2.pmadd.wd")
_BODIES = {(VNNI, "uint8"): _vnni, (VNNI, UINT7): _vnni,
           (AVX512, "uint8"): _madd_pair(16, *_AVX512_MADD),
           (AVX512, UINT7): _madd_once(16, *_AVX512_MADD),
           (AVX2, "uint8"): _madd_pair(8, *_AVX2_MADD), (AVX2, UINT7): _madd_once(8, *_AVX2_MADD),
           (AVX2, "int8"): _avx2_sign, (SDOT, "int8"): _sdot}


@functools.cache
def intrinsic(path: str, activations: str) -> str:
    """The name `path`'s tensor intrinsic for `activations` is registered under, registered
    on first use: parsing the TVMScript of all of them costs seconds, which every import of the
    codegen would pay while a build uses one."""
    name = INTRINSICS[path, activations]
    dtype = "uint8" if activations == UINT7 else activations  # (the bytes' buffer type)
    TensorIntrin.register(name, _intrin(LANES[path], dtype),
                          _intrin(LANES[path], dtype, _BODIES[path, activations]),
                          override=True)
    return name


def register_all() -> None:
    """Every DLAS intrinsic, registered: tuning records replayed from a database name theirs."""
    for path, activations in INTRINSICS:
        intrinsic(path, activations)


def fix_stock_vnni() -> None:
    """Give TVM's own `dot_16x4_vnni` (which MetaSchedule's VNNI search space tensorizes
    with on an avx512vnni target) the implementation LLVM 22 accepts, so its candidates
    build. Imports TVM's tensor intrinsics first (30-60 s, or done already in seconds by
    codegen's tuning.import_tensor_intrinsics; MetaSchedule's TuneContext imports them
    anyway): registered before them, the stock module would clash."""
    from tvm.s_tir.tensor_intrin import x86  # noqa: PLC0415 - slow, only when tuning

    TensorIntrin.register(x86.VNNI_DOT_16x4_INTRIN, x86.dot_product_16x4_u8i8i32_desc,
                          _intrin(16, "uint8", _vnni, "global"), override=True)
