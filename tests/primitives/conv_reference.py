"""Inputs, pruned weights and PyTorch references for single-conv2d checks and benchmarks
(tests/primitives/test_*.py, benchmarks/primitives.py), and the helpers those tests share:
conv modules, running them, comparing with PyTorch, a pruned resnet18 end to end."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import tvm
from hydra.utils import get_class, instantiate
from omegaconf import OmegaConf
from tvm import relax

from dlas.codegen import Untuned, import_model
from dlas.compression import UnstructuredPruning
from dlas.hardware.base import make_target
from dlas.models import make_model
from dlas.primitives.base import Primitive
from dlas.primitives.workloads import Conv2dWorkload
from tests.codegen.test_models_compile import ATOL, RTOL, rescale

HOST = make_target({"kind": "llvm", "mcpu": "host"})

PRIMITIVE_CONF = Path(__file__).resolve().parents[2] / "conf" / "primitive"
DTYPES = ("float32", "float16", "int8")

# the single-conv cases of the primitive tests, by name:
# (N, C, H, W), (O, KH, KW), stride, padding (top, left, bottom, right), dilation, groups
CONV_CASES = {
    "3x3 s1 p1": ((1, 8, 10, 10), (16, 3, 3), 1, (1, 1, 1, 1), 1, 1),
    "3x3 s1 p1, 32 out": ((1, 8, 10, 10), (32, 3, 3), 1, (1, 1, 1, 1), 1, 1),
    "3x3 s2 p1": ((1, 16, 9, 9), (32, 3, 3), 2, (1, 1, 1, 1), 1, 1),
    "3x3 asymmetric pad": ((1, 4, 8, 8), (8, 3, 3), 1, (0, 1, 2, 1), 1, 1),
    "3x3 dilation 2": ((1, 8, 12, 12), (16, 3, 3), 1, (2, 2, 2, 2), 2, 1),
    "1x1 s1": ((1, 32, 7, 7), (64, 1, 1), 1, (0, 0, 0, 0), 1, 1),
    "1x1 s1, 16 in": ((1, 16, 7, 7), (32, 1, 1), 1, (0, 0, 0, 0), 1, 1),
    "1x1 s2": ((1, 16, 8, 8), (48, 1, 1), 2, (0, 0, 0, 0), 1, 1),
    "7x7 s2 p3 stem": ((1, 3, 20, 20), (8, 7, 7), 2, (3, 3, 3, 3), 1, 1),
    "depthwise 3x3 s1": ((1, 16, 9, 9), (16, 3, 3), 1, (1, 1, 1, 1), 1, 16),
    "depthwise 3x3 s2": ((1, 24, 10, 10), (24, 3, 3), 2, (1, 1, 1, 1), 1, 24),
    "grouped 4": ((1, 8, 6, 6), (12, 3, 3), 1, (1, 1, 1, 1), 1, 4),
    "grouped 4, 16 in": ((1, 16, 6, 6), (32, 3, 3), 1, (1, 1, 1, 1), 1, 4),
    "grouped 2, odd width": ((1, 6, 6, 6), (6, 3, 3), 1, (1, 1, 1, 1), 1, 2),
    "non-square": ((1, 6, 13, 7), (12, 5, 3), (2, 1), (2, 1, 2, 1), 1, 1),
    "non-square, batch 2": ((2, 6, 13, 7), (12, 5, 3), (2, 1), (2, 1, 2, 1), 1, 1),
    "odd channels": ((1, 5, 6, 6), (6, 3, 3), 1, (1, 1, 1, 1), 1, 1),
    "odd channels, batch 2": ((2, 5, 6, 6), (6, 3, 3), 1, (1, 1, 1, 1), 1, 1),
    "batch 2, 1x1 map": ((2, 64, 1, 1), (256, 1, 1), 1, (0, 0, 0, 0), 1, 1),
}


def conv_cases(*names: str) -> dict[str, tuple]:
    """The CONV_CASES `names`, in that order."""
    return {name: CONV_CASES[name] for name in names}


def primitive_configs() -> dict[str, OmegaConf]:
    """Every conf/primitive/*.yaml that exists now, by file name."""
    return {p.stem: OmegaConf.load(p) for p in sorted(PRIMITIVE_CONF.glob("*.yaml"))}


def primitive_formats(cfg) -> tuple[str, ...]:
    """The weight formats the config's primitive class declares."""
    return tuple(get_class(cfg._target_).formats)


def make_primitive(cfg, fmt: str, **overrides) -> Primitive:
    return instantiate(cfg, format=fmt, **overrides)


def magnitude_prune(weight: np.ndarray, sparsity: float) -> np.ndarray:
    """`weight` with its round(sparsity * size) smallest-magnitude entries zeroed."""
    flat = weight.copy().reshape(-1)
    n = int(round(sparsity * flat.size))
    if n:
        flat[np.argsort(np.abs(flat.astype(np.float64)), kind="stable")[:n]] = 0
    return flat.reshape(weight.shape)


def random_case(wl: Conv2dWorkload, dtype: str, sparsity: float = 0.0,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(input [1, C, H, W], weight OIHW) of `dtype`, the weight magnitude-pruned to
    `sparsity`. Floats: standard normal (the float16 ones rounded from float32); int8:
    uniform over [-128, 127]."""
    rng = np.random.default_rng(seed)
    shape = (1, wl.in_channels, wl.height, wl.width)
    if dtype == "int8":
        x = rng.integers(-128, 128, shape, dtype=np.int8)
        w = rng.integers(-128, 128, wl.weight_shape, dtype=np.int8)
    else:
        x = rng.standard_normal(shape, dtype=np.float32).astype(dtype)
        w = rng.standard_normal(wl.weight_shape, dtype=np.float32).astype(dtype)
    return x, magnitude_prune(w, sparsity)


def torch_reference(wl: Conv2dWorkload, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The conv in float64 on the exact input values: float16 values widen exactly, and
    int8 sums stay below 2**31 << 2**53, so for int8 this is the exact integer result.
    One thread: PyTorch's OpenMP pool and TVM's spin on the same cores otherwise (seconds
    per small conv under load)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = F.conv2d(torch.from_numpy(x.astype(np.float64)),
                       torch.from_numpy(w.astype(np.float64)), stride=wl.stride,
                       padding=wl.padding, dilation=wl.dilation, groups=wl.groups)
    finally:
        torch.set_num_threads(threads)
    return out.numpy()


def run_vm(executable, *args: np.ndarray) -> np.ndarray:
    """main(*args) of a built module on the CPU, as numpy."""
    vm = relax.VirtualMachine(executable, tvm.cpu())
    return vm["main"](*(tvm.runtime.tensor(a, tvm.cpu()) for a in args)).numpy()


def conv_module(shape, weight: np.ndarray, stride=1, padding=(0, 0, 0, 0), dilation=1,
                groups=1, *, out_dtype: str | None = None, weight_as_input: bool = False,
                relu_plus_one: bool = False) -> tvm.IRModule:
    """main(x) = conv2d(x, const weight) in the weight's dtype (padding is Relax's (top,
    left, bottom, right)); weight_as_input: main(x, w) instead; relu_plus_one:
    relu(conv + 1), so an elementwise epilogue is fused too."""
    dtype = str(weight.dtype)
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(shape, dtype))
    w = relax.Var("w", relax.TensorType(weight.shape, dtype))
    with bb.function("main", [x, w] if weight_as_input else [x]):
        with bb.dataflow():
            y = bb.emit(relax.op.nn.conv2d(x, w if weight_as_input else relax.const(weight),
                                           strides=stride, padding=padding, dilation=dilation,
                                           groups=groups, out_dtype=out_dtype))
            if relu_plus_one:
                one = relax.const(np.ones((1, weight.shape[0], 1, 1), out_dtype or dtype))
                y = bb.emit(relax.op.nn.relu(relax.op.add(y, one)))
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    return bb.get()


def torch_conv(x: np.ndarray, w: np.ndarray, stride, padding, dilation, groups,
               dtype=None) -> np.ndarray:
    """PyTorch's conv2d with Relax's (top, left, bottom, right) padding, in the operands'
    dtype or `dtype` (np.float64: exact for the float16 and int8 operands of the tests)."""
    if dtype is not None:
        x, w = x.astype(dtype), w.astype(dtype)
    top, left, bottom, right = padding
    xp = F.pad(torch.from_numpy(x), (left, right, top, bottom))
    return F.conv2d(xp, torch.from_numpy(w), stride=stride, dilation=dilation,
                    groups=groups).numpy()


def runs_parallel(tir_text: str) -> bool:
    """Whether a scheduled PrimFunc's TVMScript has a parallel loop of more than one task
    (sampled_parallel's serial decision is a parallel loop of extent 1)."""
    return any(int(n) > 1 for n in re.findall(r"T\.parallel\((?:T\.int64\()?(\d+)", tir_text))


def assert_close(out: np.ndarray, ref: np.ndarray) -> None:
    """float32 sums in another order than the reference's: max |out - ref| <=
    1e-5 * max |ref| (plus 1e-6 for all-small outputs)."""
    assert out.shape == ref.shape
    assert np.abs(out - ref).max() <= 1e-5 * np.abs(ref).max() + 1e-6


def pruned_resnet18() -> tuple[torch.nn.Module, torch.Tensor, np.ndarray]:
    """(resnet18 at 32x32 with 90 % global unstructured pruning and random BN statistics,
    an input, its logits from PyTorch)."""
    torch.manual_seed(0)
    pruning = UnstructuredPruning(ratio=0.9)
    net = rescale(pruning.finalize(pruning.apply(make_model("resnet18", 10, 32))))
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        ref = net(x).numpy()
    return net, x, ref


def compile_pruned_resnet18(prim: Primitive) -> tuple[dict, list[np.ndarray]]:
    """pruned_resnet18 compiled (Untuned + `prim`) and checked against PyTorch within the
    model tolerance; returns the build's stats and the conv weights."""
    net, x, ref = pruned_resnet18()
    codegen = Untuned()
    executable, stats = codegen.build(import_model(net, x), prim, HOST)
    out = run_vm(executable, x.numpy())
    scale = float(np.abs(ref).max())
    assert out.shape == ref.shape == (1, 10) and scale > 1e-2
    assert float(np.abs(out - ref).max()) <= RTOL * scale + ATOL
    assert not [f for f in stats["unscheduled"] if "conv" in f], stats
    convs = [m.weight.detach().numpy() for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    return stats, convs
