"""The Trainer precision a CPU trains fastest in: bf16 autocast only where it computes bf16 in
hardware.

Where it does not, PyTorch emulates bf16 and a step is far slower than in float32: resnet18 at
32x32, batch 64, 2 threads, on an AMD EPYC with AVX2 only: 38.6 s a step under bf16 autocast,
1.7-2.1 s in float32. With AVX512-BF16 or AMX (and on AArch64 with the BF16 extension) bf16
is the faster one (conf/trainer/default.yaml).
"""
from __future__ import annotations

import platform
from pathlib import Path

BF16, FP32 = "bf16-mixed", "32-true"
# /proc/cpuinfo's names of native bf16 arithmetic: x86 `flags`, AArch64 `Features`
BF16_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}


def cpu_flags(cpuinfo: str) -> set[str]:
    """The feature names of the first CPU listed in a /proc/cpuinfo text."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def training_precision(cpuinfo: str | None = None) -> str:
    """bf16-mixed where the CPU has native bf16 arithmetic, 32-true otherwise (also where its
    features cannot be read: no /proc/cpuinfo)."""
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        if platform.system() != "Linux" or not path.is_file():
            return FP32
        cpuinfo = path.read_text(errors="replace")
    return BF16 if cpu_flags(cpuinfo) & BF16_FLAGS else FP32
