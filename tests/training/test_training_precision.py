"""The Trainer's default precision follows the CPU: bf16 autocast only with native bf16."""
from __future__ import annotations

import pytest

from dlas.training.precision import BF16, FP32, cpu_flags, training_precision

ZEN3 = """processor\t: 0
vendor_id\t: AuthenticAMD
flags\t\t: fpu sse sse2 avx f16c avx2 fma bmi2
processor\t: 1
flags\t\t: fpu sse sse2 avx f16c avx2 fma bmi2
"""


@pytest.mark.parametrize("cpuinfo, want", [
    (ZEN3, FP32),                                                   # AVX2 only: emulated
    ("flags\t: avx2 avx512f avx512bw avx512_vnni\n", FP32),         # AVX-512, no BF16
    ("flags\t: avx2 avx512f avx512_bf16\n", BF16),                  # Zen 4, Cooper Lake
    ("flags\t: avx2 avx512f amx_tile amx_bf16 amx_int8\n", BF16),   # Sapphire Rapids
    ("Features\t: fp asimd asimddp bf16 i8mm\n", BF16),             # AArch64 with BF16
    ("Features\t: fp asimd evtstrm aes crc32\n", FP32),             # Cortex-A73
    ("", FP32),                                                     # nothing readable
])
def test_bf16_only_on_cpus_with_native_bf16(cpuinfo, want):
    assert training_precision(cpuinfo) == want


def test_the_first_cpus_flags_are_read():
    assert cpu_flags(ZEN3) == {"fpu", "sse", "sse2", "avx", "f16c", "avx2", "fma", "bmi2"}
    assert "bf16" not in cpu_flags("flags\t: avx512_bf16\n")  # whole names only
