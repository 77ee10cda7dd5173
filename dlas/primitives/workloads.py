"""The conv2d layers of DLAS's models, as the primitives see them.

Every distinct conv2d configuration in dlas.models.MODELS at the two input sizes the stack
uses (32x32 with 10 classes: CIFAR/digits stems; 224x224 with 1000 classes), derived by
running each model once (batch 1) with forward hooks on its nn.Conv2d layers, never written
out by hand. The models are built and run on PyTorch's `meta` device: only shapes are
computed, so all 14 model/size pairs take ~1.2 s instead of over ten seconds of real
forward passes (densenet161 at 224 alone: 0.2 s to build, 7 s for its first forward on 2
loaded cores; on `meta`, 0.2 s for both).
Results are cached per process (functools.cache), so tests and benchmarks asking again do
not rebuild anything. `conv2d_module` turns a workload into the one-conv2d Relax module the
primitives' correctness suite and benchmark compile.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from dlas.errors import DLASError

# (image_size, num_classes): the small (CIFAR-adapted) and the ImageNet-sized setting
SIZES: dict[int, int] = {32: 10, 224: 1000}


@dataclass(frozen=True, order=True)
class Conv2dWorkload:
    """One conv2d as called at batch 1: input [1, in_channels, height, width], weight
    [out_channels, in_channels/groups, *kernel]; padding is (top/bottom, left/right)."""

    in_channels: int
    out_channels: int
    height: int
    width: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int

    @property
    def kind(self) -> str:
        """dense (groups 1), depthwise (one input channel per group) or grouped."""
        if self.groups == 1:
            return "dense"
        return "depthwise" if self.groups == self.in_channels else "grouped"

    @property
    def shape_class(self) -> tuple[str, tuple[int, int], tuple[int, int]]:
        """(kind, kernel, stride): what changes the loop structure of a conv2d."""
        return (self.kind, self.kernel, self.stride)

    @property
    def weight_shape(self) -> tuple[int, int, int, int]:
        return (self.out_channels, self.in_channels // self.groups, *self.kernel)

    @property
    def out_size(self) -> tuple[int, int]:
        return tuple((n + 2 * p - d * (k - 1) - 1) // s + 1 for n, p, d, k, s in
                     zip((self.height, self.width), self.padding, self.dilation,
                         self.kernel, self.stride))

    @property
    def macs(self) -> int:
        oh, ow = self.out_size
        return self.out_channels * oh * ow * (self.in_channels // self.groups) \
            * self.kernel[0] * self.kernel[1]

    def label(self) -> str:
        """Short name, e.g. `64->64 32x32 k3x3 s1 p1 g1`."""
        def pair(t):
            return str(t[0]) if t[0] == t[1] else f"{t[0]}x{t[1]}"
        text = (f"{self.in_channels}->{self.out_channels} {self.height}x{self.width} "
                f"k{self.kernel[0]}x{self.kernel[1]} s{pair(self.stride)} p{pair(self.padding)}")
        if self.dilation != (1, 1):
            text += f" d{pair(self.dilation)}"
        return text + (f" g{self.groups}" if self.groups != 1 else "")

    def scaled(self, max_side: int) -> Conv2dWorkload:
        """The same layer on an input no larger than max_side x max_side (channels, kernel,
        stride, padding, dilation and groups kept), never smaller than the dilated kernel."""
        def side(n, k, d):
            return max(min(n, max_side), d * (k - 1) + 1)
        return Conv2dWorkload(self.in_channels, self.out_channels,
                              side(self.height, self.kernel[0], self.dilation[0]),
                              side(self.width, self.kernel[1], self.dilation[1]),
                              self.kernel, self.stride, self.padding, self.dilation, self.groups)


def _workload(conv: nn.Conv2d, x: torch.Tensor) -> Conv2dWorkload:
    if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        # torchvision's models use neither; a model that does needs explicit support here
        raise DLASError("conv2d padding", conv.padding if isinstance(conv.padding, str)
                        else conv.padding_mode, "explicit zero padding", layer="primitive")
    _, c, h, w = x.shape
    return Conv2dWorkload(int(c), conv.out_channels, int(h), int(w),
                          tuple(conv.kernel_size), tuple(conv.stride), tuple(conv.padding),
                          tuple(conv.dilation), conv.groups)


@functools.cache
def model_workloads(name: str, image_size: int) -> tuple[Conv2dWorkload, ...]:
    """The conv2d layers of model `name` at `image_size` in forward order, one per call
    (repeated configurations included)."""
    from dlas.models import make_model

    if image_size not in SIZES:
        raise DLASError("workload image_size", image_size, list(SIZES), layer="primitive")
    found: list[Conv2dWorkload] = []

    def hook(module, inputs, _output):
        found.append(_workload(module, inputs[0]))

    with torch.device("meta"):  # shapes only: no weights initialised, no arithmetic
        net = make_model(name, SIZES[image_size], image_size).eval()
        handles = [m.register_forward_hook(hook) for m in net.modules()
                   if isinstance(m, nn.Conv2d)]
        with torch.no_grad():
            net(torch.empty(1, 3, image_size, image_size))
    for h in handles:
        h.remove()
    return tuple(found)


@functools.cache
def distinct_workloads(models: tuple[str, ...] | None = None,
                       sizes: tuple[int, ...] | None = None
                       ) -> tuple[tuple[Conv2dWorkload, tuple[str, ...]], ...]:
    """Every distinct conv2d over `models` (default: all of dlas.models.MODELS) at `sizes`
    (default: 32 and 224), sorted, each with where it occurs: ("resnet18@32", ...)."""
    from dlas.models import MODELS

    models = tuple(sorted(MODELS)) if models is None else tuple(models)
    sizes = tuple(SIZES) if sizes is None else tuple(sizes)
    where: dict[Conv2dWorkload, list[str]] = {}
    for size in sizes:
        for name in models:
            for wl in dict.fromkeys(model_workloads(name, size)):
                where.setdefault(wl, []).append(f"{name}@{size}")
    return tuple((wl, tuple(where[wl])) for wl in sorted(where))


def subsample(workloads: list[Conv2dWorkload], every: int) -> list[Conv2dWorkload]:
    """Every `every`-th workload (in the given order) of each shape class (kind, kernel,
    stride), so that each class present stays represented however large `every` is
    (deterministic). The 389 distinct workloads fall into 9 classes."""
    if every < 1:
        raise DLASError("workload subsample step", every, ">= 1", layer="primitive")
    classes: dict[tuple, list[Conv2dWorkload]] = {}
    for wl in workloads:
        classes.setdefault(wl.shape_class, []).append(wl)
    picked = {wl for members in classes.values() for wl in members[::every]}
    return [wl for wl in workloads if wl in picked]


# data dtype -> conv2d out_dtype, as the stack's graphs call it: float32; float16 models
# accumulate in float32 (dlas/codegen/precision.py); int8 ones in int32 (quantized.py)
OUT_DTYPES: dict[str, str] = {"float32": "float32", "float16": "float32", "int8": "int32"}


def conv2d_module(wl: Conv2dWorkload, weight: np.ndarray, dtype: str = "float32"):
    """A Relax module whose `main(x)` is this one conv2d on a [1, C, H, W] `dtype` input with
    `weight` (OIHW, `dtype`) as a constant, out_dtype as in the stack's graphs (OUT_DTYPES)."""
    from tvm import relax

    if dtype not in OUT_DTYPES:
        raise DLASError("conv2d dtype", dtype, list(OUT_DTYPES), layer="primitive")
    if tuple(weight.shape) != wl.weight_shape or weight.dtype != np.dtype(dtype):
        raise DLASError("conv2d weight", f"{weight.dtype}{list(weight.shape)}",
                        f"{dtype}{list(wl.weight_shape)}", layer="primitive")
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, wl.in_channels, wl.height, wl.width), dtype))
    with bb.function("main", [x]):
        with bb.dataflow():
            y = bb.emit(relax.op.nn.conv2d(x, relax.const(weight), strides=wl.stride,
                                           padding=wl.padding, dilation=wl.dilation,
                                           groups=wl.groups, out_dtype=OUT_DTYPES[dtype]))
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    return bb.get()
