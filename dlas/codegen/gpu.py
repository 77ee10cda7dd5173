"""GPU targets (cuda, opencl, ...): default thread-bound schedules and the checks around them.

DLAS's primitives ship CPU schedules only; on a GPU their TE computes (like every other
PrimFunc) get TVM's DLight GPU rules, the ones `tvm.relax.backend.gpu_generic` applies:
Matmul, GEMV, Reduction, GeneralReduction and, for anything else, Fallback (fused spatial
loops bound to blocks and threads). A function none of them can schedule (the data-dependent
loops of the sparse computes) must not reach code generation: TVM 0.27 would quietly compile
it for the host CPU, which cannot read the device buffers. `RequireScheduled` refuses it (and
any function a primitive emits with a CPU schedule built in) as `Unsupported` instead.

CUDA device code is compiled on the build host only when TVM's CUDA runtime loads there (a
driver is installed); otherwise the library carries the CUDA source and the board's TVM
compiles it when it loads the library (`TVM_COMPILE_FORCE_FALLBACK=1` asks for that on any
host). `check_cuda_arch` stops a host compile the host's CUDA cannot do (CUDA 13 dropped
sm_72, the Jetson Xavier) before TVM turns it into a compiler dump.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess

import tvm
import tvm_ffi
from tvm import s_tir, tirx
from tvm.s_tir import dlight
from tvm.s_tir.dlight import ScheduleRule
from tvm.target import Target

from dlas.errors import DLASError, Unsupported
from dlas.primitives.schedule_utils import RULE_KEY

log = logging.getLogger(__name__)

GPU_KINDS = ("cuda", "opencl", "vulkan", "metal", "rocm")
# Unsupported raised inside a pass crosses TVM's FFI; registered, it comes back as itself.
tvm_ffi.register_error("Unsupported", Unsupported)


def is_gpu(target: Target) -> bool:
    return target.kind.name in GPU_KINDS


def gpu_rules() -> list[ScheduleRule]:
    """gpu_generic's DLight rules, each guarded: a rule that crashes on a function (some
    assert on the sparse computes' indirect reads) leaves it to the next rule."""
    return [_guarded(f"gpu.{type(rule).__name__}", rule)
            for rule in (dlight.gpu.Matmul(), dlight.gpu.GEMV(), dlight.gpu.Reduction(),
                         dlight.gpu.GeneralReduction(), dlight.gpu.Fallback())]


def _guarded(name: str, rule: ScheduleRule) -> ScheduleRule:
    class _Rule(ScheduleRule):
        def apply(self, func, target, tunable):
            if not isinstance(func, tirx.PrimFunc):
                return None
            try:
                sch = rule.apply(func, target, tunable)
            except Exception as err:  # noqa: BLE001 - a crash means "this rule does not apply"
                log.debug("%s: not applied (%s: %s)", name, type(err).__name__,
                          (str(err).strip().splitlines() or [""])[-1][:200])
                return None
            if isinstance(sch, s_tir.Schedule):  # say who scheduled it (read by schedule_stats)
                sch.annotate(sch.get_sblock("root"), RULE_KEY, name)
            return sch

        def __repr__(self):
            return name

    _Rule.__name__ = name.replace(".", "_")
    return _Rule()


def unbound(mod: tvm.IRModule) -> list[str]:
    """PrimFuncs with no loop bound to GPU threads: unscheduled ones, and ones a primitive
    emits already scheduled for a CPU (the spatial_pack sparse computes)."""
    return sorted(gvar.name_hint for gvar, func in mod.functions_items()
                  if isinstance(func, tirx.PrimFunc) and not _thread_bound(func))


def _thread_bound(func: tirx.PrimFunc) -> bool:
    if not (func.attrs is not None and int(func.attrs.get("tirx.is_scheduled", 0))):
        return False
    # TVM 0.27's Python API has no TIR statement visitor; the printed form names the binding
    return "T.thread_binding(" in func.script() or "T.launch_thread(" in func.script()


def RequireScheduled(target: Target, what: str = "") -> tvm.transform.Pass:  # noqa: N802
    """Identity pass that raises Unsupported when a PrimFunc has no (thread-bound) schedule."""

    @tvm.transform.module_pass(opt_level=0, name="DLASRequireScheduled")
    def _check(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        left = unbound(mod)
        if left:
            shown = ", ".join(left[:6]) + (f" (+{len(left) - 6} more)" if len(left) > 6 else "")
            raise Unsupported(
                "primitive", what or None, layer="primitive",
                valid="a dense primitive (direct, gemm, spatial_pack, winograd; format=dense) on GPU",
                reason=f"no GPU schedule with thread binding for {shown} on "
                       f"{target.kind.name}: TVM's GPU rules (dlight Matmul, GEMV, Reduction, "
                       "GeneralReduction, Fallback) cannot schedule these functions (data-"
                       "dependent sparse loops, or a CPU schedule built into the primitive); "
                       "left so they would run on the host")
        return mod

    return _check


def host_compiles_cuda() -> bool:
    """Does a CUDA build on this host compile device code (TVM's CUDA runtime is loaded)?"""
    if os.environ.get("TVM_COMPILE_FORCE_FALLBACK", "").lower() in ("1", "true", "on", "yes"):
        return False
    return tvm_ffi.get_global_func("ffi.Module.create.cuda", allow_missing=True) is not None


def cuda_compiler() -> tuple[str, tuple[int, int] | None, list[int] | None]:
    """The CUDA compiler TVM uses on this host (TVM_CUDA_COMPILE_MODE: nvrtc, the default, or
    nvcc), its CUDA version and the SM numbers it can compile for (None where unknown)."""
    mode = os.environ.get("TVM_CUDA_COMPILE_MODE", "nvrtc").lower()
    if mode == "nvcc":
        nvcc = shutil.which("nvcc")
        if nvcc is None:
            return "nvcc (not on PATH)", None, None
        try:
            out = subprocess.run([nvcc, "--version"], capture_output=True, text=True,
                                 timeout=30).stdout
            archs = subprocess.run([nvcc, "--list-gpu-code"], capture_output=True, text=True,
                                   timeout=30).stdout
        except (OSError, subprocess.SubprocessError):
            return nvcc, None, None
        ver = re.search(r"release (\d+)\.(\d+)", out)
        sms = sorted({int(m) for m in re.findall(r"sm_(\d+)", archs)}) or None
        return nvcc, (int(ver[1]), int(ver[2])) if ver else None, sms
    try:
        from cuda.bindings import nvrtc
        _, major, minor = nvrtc.nvrtcVersion()
        _, sms = nvrtc.nvrtcGetSupportedArchs()
        return "NVRTC", (int(major), int(minor)), sorted(int(s) for s in sms)
    except Exception:  # noqa: BLE001 - no cuda-bindings: TVM's own compile will say so
        return "NVRTC", None, None


def check_cuda_arch(target: Target, compiles=host_compiles_cuda, compiler=cuda_compiler) -> None:
    """Raise a DLASError when this host would compile CUDA for an arch its CUDA cannot."""
    if target.kind.name != "cuda" or not compiles():
        return
    arch = str(target.attrs.get("arch", ""))
    if not re.fullmatch(r"sm_\d+a?", arch):
        return
    name, version, sms = compiler()
    sm = int(re.sub(r"\D", "", arch))
    if sms is None or sm in sms:
        return
    cuda = f"CUDA {version[0]}.{version[1]}" if version else "CUDA"
    need = ("a host CUDA toolkit <= 12.x (the last to support sm_5x-sm_72, e.g. JetPack 5's "
            "CUDA 11.4 or CUDA 12.6)" if sm < 75 else f"a CUDA toolkit that supports {arch}")
    raise DLASError("hardware.target.arch", arch, [f"sm_{s}" for s in sms], layer="hardware",
                    reason=f"this host's {name} ({cuda}) cannot compile for it: build with "
                           f"{need}, or set TVM_COMPILE_FORCE_FALLBACK=1 so the library ships "
                           "CUDA source that the board's TVM compiles when it loads it")
