"""GPU builds (no GPU needed): every kernel thread-bound by DLight's GPU rules, the primitives'
conv2d computes included; what cannot be bound is refused as Unsupported; a CUDA arch the
host's CUDA cannot compile is a one-line DLASError."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import torch
import tvm

from dlas.codegen import Untuned, import_model
from dlas.codegen.gpu import check_cuda_arch, cuda_compiler
from dlas.errors import DLASError, Unsupported
from dlas.primitives import Direct, Gemm, SpatialPack, Winograd

HOST = {"kind": "llvm"}
TARGETS = {"cuda": {"kind": "cuda", "arch": "sm_90"},
           "opencl": {"kind": "opencl", "device": "mali"}}
# what a bound kernel looks like in each language
BOUND = {"cuda": ("__global__", "blockIdx.x"), "opencl": ("__kernel", "get_group_id(0)")}


@pytest.fixture(scope="module")
def tiny():
    """conv-relu-conv-pool-linear; weights 80 % zero so sparse formats apply."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten(), torch.nn.Linear(16, 10)).eval()
    with torch.no_grad():
        for conv in (net[0], net[2]):
            w = conv.weight
            w[w.abs() < w.abs().flatten().kthvalue(int(0.8 * w.numel())).values] = 0
    return import_model(net, torch.randn(1, 3, 8, 8))


def _target(kind):
    return tvm.target.Target(TARGETS[kind], HOST)


def _device_source(ex) -> str:
    """Source of the device modules the build imported into the library."""
    mods, found = [ex.mod], []
    while mods:
        m = mods.pop()
        if m.kind in ("cuda", "opencl"):
            found.append(m.inspect_source())
        mods.extend(m.imports)
    return "\n".join(found)


@pytest.mark.parametrize("kind", sorted(TARGETS))
@pytest.mark.parametrize("primitive", [Direct("direct"), Gemm("gemm"), SpatialPack("spatial_pack"),
                                       # m = 2: the same blocks and rules as m = 4, whose
                                       # 6x6 transforms take DLight's inlining ~20 s here
                                       Winograd("winograd", tile_size=2),
                                       Direct("direct", format="csr", sparsity_threshold=0.5)],
                         ids=lambda p: f"{p.name}-{p.format}")
def test_every_function_gets_a_thread_bound_gpu_schedule(tiny, kind, primitive):
    codegen = Untuned()
    ex, stats = codegen.build(tiny, primitive, _target(kind))
    assert stats["unscheduled_funcs"] == 0 and stats["scheduled_funcs"] >= 4
    assert set(stats["schedule_rules"]) <= {"gpu.Matmul", "gpu.GEMV", "gpu.Reduction",
                                            "gpu.GeneralReduction", "gpu.Fallback"}
    assert stats["conv_layers"] == 2 and stats["sparse_layers"] == (2 if primitive.format == "csr"
                                                                    else 0)
    kernel, bound = BOUND[kind]
    src = _device_source(ex)
    assert src.count(kernel) >= stats["scheduled_funcs"] and bound in src
    # every conv2d function of the host module only launches its device kernel
    host_ir = ex.mod.imports[0].inspect_source("ll")
    convs = re.findall(r"define dllexport i32 @__tvm_ffi_(\w*conv2d\w*)\(", host_ir)
    assert len(convs) == 2
    for name in convs:
        assert f"{name}_kernel(" in src, name


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="no nvcc on this host")
def test_cuda_kernels_compile_with_nvcc(tiny, tmp_path):
    src = _device_source(Untuned().build(tiny, Direct("direct"), _target("cuda")).executable)
    (tmp_path / "k.cu").write_text(src)
    out = subprocess.run(["nvcc", "--cubin", "-arch=sm_90", "-o", str(tmp_path / "k.cubin"),
                          str(tmp_path / "k.cu")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert (tmp_path / "k.cubin").read_bytes()[:4] == b"\x7fELF"


@pytest.mark.parametrize("primitive", [Gemm("gemm", format="csr", sparsity_threshold=0.5),
                                       SpatialPack("spatial_pack", format="csr",
                                                   sparsity_threshold=0.5)],
                         ids=lambda p: f"{p.name}-{p.format}")
def test_primitive_without_gpu_schedule_is_unsupported(tiny, primitive):
    """gemm-csr: data-dependent loops no GPU rule binds; spatial_pack-csr: a built-in CPU
    schedule. Either would be compiled for the host CPU: refused instead."""
    with pytest.raises(Unsupported) as err:
        Untuned().build(tiny, primitive, _target("cuda"))
    msg = str(err.value)
    assert f"primitive='{primitive.name}-csr'" in msg and "thread binding" in msg
    assert f"conv2d_{primitive.name}_csr" in msg


def test_cuda_arch_the_host_cuda_cannot_compile_is_refused():
    name, version, sms = cuda_compiler()
    if sms is None:
        pytest.skip("no CUDA compiler (cuda-bindings NVRTC) on this host to ask")
    target = tvm.target.Target({"kind": "cuda", "arch": "sm_72"}, HOST)
    # on a host with a CUDA runtime TVM compiles the kernels here: decide as if it did
    if 72 in sms:
        check_cuda_arch(target, compiles=lambda: True)
        return
    with pytest.raises(DLASError) as err:
        check_cuda_arch(target, compiles=lambda: True)
    msg = str(err.value)
    assert "arch='sm_72'" in msg and f"CUDA {version[0]}.{version[1]}" in msg
    assert "<= 12.x" in msg and "TVM_COMPILE_FORCE_FALLBACK=1" in msg
    check_cuda_arch(tvm.target.Target({"kind": "cuda", "arch": f"sm_{max(sms)}"}, HOST),
                    compiles=lambda: True)
    # a host that ships source (no CUDA runtime here, or forced) leaves the compile to the board
    check_cuda_arch(target, compiles=lambda: False)
