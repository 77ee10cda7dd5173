"""Inputs, pruned weights and PyTorch references for single-conv2d checks and benchmarks
(tests/primitives/test_correctness.py, benchmarks/primitives.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import tvm
from hydra.utils import get_class, instantiate
from omegaconf import OmegaConf
from tvm import relax

from dlas.primitives.base import Primitive
from dlas.primitives.workloads import Conv2dWorkload

PRIMITIVE_CONF = Path(__file__).resolve().parents[2] / "conf" / "primitive"
DTYPES = ("float32", "float16", "int8")


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


def run_vm(executable, x: np.ndarray) -> np.ndarray:
    vm = relax.VirtualMachine(executable, tvm.cpu())
    return vm["main"](tvm.runtime.tensor(x, tvm.cpu())).numpy()
