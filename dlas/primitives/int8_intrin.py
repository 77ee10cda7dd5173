"""The CPU integer dot-product instructions int8 convolutions are tensorized with, and which
one a target has.

Both intrinsics compute C[16] (int32) += A[4] (uint8) . B[16, 4] (int8): sixteen output
channels, each a dot product of four unsigned input bytes with four signed weights.
- `vnni`: one `vpdpbusd` (AVX512-VNNI).
- `avx512` (AVX512BW without VNNI): `vpmaddubsw` (u8 x s8 products summed in pairs to
  int16, saturating) + `vpmaddwd` (int16 pairs to int32). TVM's version feeds the bytes
  straight in, and a pair of shifted activations (up to 255, int8_compute.py) times
  weights of magnitude 127 reaches 64770: it saturates, so the result is not the integer
  convolution. Here each byte a is split as a = 128 * (a >> 7) + (a & 127): a pair of
  (a & 127) * w stays within 2 * 127 * 128 = 32512, a pair of (a >> 7) * w within 256, and
  `vpmaddwd` weights them 1 and 128 in int32: exact for every u8 x s8 operand, at two
  multiply pairs per dot product instead of one.
TVM 0.27 ships both as `dot_16x4_vnni` / `dot_16x4_avx512`, but its VNNI one passes
int32x16 operands to LLVM 22's `vpdpbusd.512`, which takes <64 x i8> (LLVM's verifier
rejects the call); its accumulator is a global buffer where DLAS's schedules keep a local
(register) tile; and importing `tvm.s_tir.tensor_intrin` costs 30-60 s (it loads every
target's intrinsics). So DLAS registers its own pair, under its own names: the stock
module can still be imported (MetaSchedule does, for its own VNNI rule) without a clash.
"""
from __future__ import annotations

from tvm.s_tir import TensorIntrin
from tvm.script import tirx as T
from tvm.target import Target
from tvm.target.codegen import target_has_features

VNNI, AVX512, PLAIN = "vnni", "avx512", "plain"
# int8 path -> the name its tensor intrinsic is registered under
INTRINSICS = {VNNI: "dlas_dot_16x4_vnni", AVX512: "dlas_dot_16x4_avx512"}


def int8_path(target: Target | None) -> str:
    """The integer dot-product path of a target: vnni where it has AVX512-VNNI, avx512
    where it has AVX512BW only, plain otherwise (and for no target / non-x86)."""
    if target is None or target.kind.name != "llvm":
        return PLAIN
    if "aarch64" in str(target.attrs.get("mtriple", "")) or "arm" in str(
            target.attrs.get("mtriple", "")):
        return PLAIN  # (target_has_features answers for the host's triple otherwise)
    if target_has_features("avx512vnni", target):
        return VNNI
    if target_has_features("avx512bw", target):
        return AVX512
    return PLAIN


@T.prim_func(s_tir=True)
def _desc(A: T.Buffer((4,), "uint8", offset_factor=1),
          B: T.Buffer((16, 4), "int8", offset_factor=1),
          C: T.Buffer((16,), "int32", offset_factor=1, scope="local")) -> None:
    with T.sblock("root"):
        T.reads(C[0:16], A[0:4], B[0:16, 0:4])
        T.writes(C[0:16])
        for i in T.serial(0, 16):
            for k in T.serial(0, 4):
                with T.sblock("update"):
                    vi, vk = T.axis.remap("SR", [i, k])
                    C[vi] = C[vi] + T.cast(A[vk], "int32") * T.cast(B[vi, vk], "int32")


def _vnni_impl(scope: str):
    """The VNNI implementation with its accumulator in `scope` (local: DLAS's register tiles;
    global: the stock description MetaSchedule's VNNI rule tensorizes with)."""

    @T.prim_func(s_tir=True)
    def impl(A: T.Buffer((4,), "uint8", offset_factor=1),
             B: T.Buffer((16, 4), "int8", offset_factor=1),
             C: T.Buffer((16,), "int32", offset_factor=1, scope=scope)) -> None:
        with T.sblock("root"):
            T.reads(C[0:16], A[0:4], B[0:16, 0:4])
            T.writes(C[0:16])
            a = T.reinterpret(
                T.broadcast(T.reinterpret(A.vload([0], "uint8x4"), dtype="int32"), 16),
                dtype="uint8x64")
            C[T.ramp(0, 1, 16)] = T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id("llvm.x86.avx512.vpdpbusd.512"),
                C.vload([0], "int32x16"), a, B.vload([0, 0], "int8x64"), dtype="int32x16")

    return impl


@T.prim_func(s_tir=True)
def _avx512(A: T.Buffer((4,), "uint8", offset_factor=1),
            B: T.Buffer((16, 4), "int8", offset_factor=1),
            C: T.Buffer((16,), "int32", offset_factor=1, scope="local")) -> None:
    with T.sblock("root"):
        T.reads(C[0:16], A[0:4], B[0:16, 0:4])
        T.writes(C[0:16])
        a = T.reinterpret(T.broadcast(T.reinterpret(A.vload([0], "uint8x4"), dtype="int32"), 16),
                          dtype="uint8x64")
        b = B.vload([0, 0], "int8x64")
        low = T.call_llvm_pure_intrin(
            T.llvm_lookup_intrinsic_id("llvm.x86.avx512.pmaddubs.w.512"),
            T.bitwise_and(a, T.broadcast(T.uint8(127), 64)), b, dtype="int16x32")
        high = T.call_llvm_pure_intrin(
            T.llvm_lookup_intrinsic_id("llvm.x86.avx512.pmaddubs.w.512"),
            T.shift_right(a, T.broadcast(T.uint8(7), 64)), b, dtype="int16x32")
        C[T.ramp(0, 1, 16)] = C.vload([0], "int32x16") + T.call_llvm_pure_intrin(
            T.llvm_lookup_intrinsic_id("llvm.x86.avx512.pmaddw.d.512"),
            low, T.broadcast(T.int16(1), 32), dtype="int32x16") + T.call_llvm_pure_intrin(
            T.llvm_lookup_intrinsic_id("llvm.x86.avx512.pmaddw.d.512"),
            high, T.broadcast(T.int16(128), 32), dtype="int32x16")


TensorIntrin.register(INTRINSICS[VNNI], _desc, _vnni_impl("local"), override=True)
TensorIntrin.register(INTRINSICS[AVX512], _desc, _avx512, override=True)


def fix_stock_vnni() -> None:
    """Give TVM's own `dot_16x4_vnni` (which MetaSchedule's VNNI search space tensorizes
    with on an avx512vnni target) the implementation LLVM 22 accepts, so its candidates
    build. Imports TVM's tensor intrinsics first (30-60 s, or done already in seconds by
    codegen's tuning.import_tensor_intrinsics; MetaSchedule's TuneContext imports them
    anyway): registered before them, the stock module would clash."""
    from tvm.s_tir.tensor_intrin import x86  # noqa: PLC0415 - slow, only when tuning

    TensorIntrin.register(x86.VNNI_DOT_16x4_INTRIN, x86.dot_product_16x4_u8i8i32_desc,
                          _vnni_impl("global"), override=True)
