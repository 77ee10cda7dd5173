"""What every conv2d primitive provides to the code generators.

A primitive is one way of computing `relax.nn.conv2d` (direct loops, im2col GEMM, packed
spatial tiles...) over one weight format (dense, csr, bsr). It contributes two things to a
build: a Relax legalization that replaces each conv2d with its own TE compute, and the
default (untuned) schedules for the PrimFuncs that compute produces. Tuned code generators
use only the legalization and let MetaSchedule find the schedules.
"""
from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Callable

import tvm_ffi
from tvm import relax
from tvm.s_tir.dlight import ScheduleRule
from tvm.target import Target

from dlas.errors import DLASError

FORMATS = ("dense", "csr", "bsr")
# format=auto: each layer dense or csr, whichever its kernel runs faster on the target
# (timed at compile time: dlas/codegen/auto_format.py); for primitives that have csr
AUTO = "auto"

# annotations a primitive's TE compute puts on its block, so that its schedule rule can
# find the block again after FuseOps/FuseTIR have merged it with its neighbours
PRIMITIVE_KEY = "dlas.primitive"
LAYOUT_KEY = "dlas.kernel_layout"

# A DLASError raised in a legalization crosses TVM's FFI (LegalizeOps runs in C++) and would
# come back as a RuntimeError; registered, it comes back as a DLASError with its message.
tvm_ffi.register_error("DLASError", DLASError)

# f(bb, call) -> Expr, the value type of LegalizeOps' customize_legalize_map
LegalizeFunc = Callable[[relax.BlockBuilder, relax.Call], relax.Expr]


# LayerCounts.add: how one conv2d was legalized (sparse=, fallback=, int8=, layer=)
Record = Callable[..., None]


class LayerCounts:
    """How one build's conv2d layers were legalized, for the results row: conv_layers,
    sparse_layers, fallback_layers and their reasons, int8_path / int8_dot_layers; and
    `layers`, one description per conv2d in graph order (triage.describe: shapes, MACs,
    weight sparsity, plus the format it took and why) for the per-layer profile. A build
    makes one and hands its `add` to the primitive's hooks (the primitive keeps no state)."""

    def __init__(self):
        self.stats: dict = {"conv_layers": 0, "sparse_layers": 0, "fallback_layers": 0,
                            "fallbacks": {}}
        self.layers: list[dict] = []

    def add(self, *, sparse: bool = False, fallback: str | None = None,
            int8: str | None = None, layer: dict | None = None) -> None:
        """One conv2d: `sparse` when it took the sparse format, `fallback` (a reason) when the
        primitive could not compute it and another did, `int8` the instruction path of an
        int8 conv (int8_intrin.py: vnni, avx512, avx2, sdot,
        plain), `layer` its description. A
        fallback is never silent."""
        if int8 is not None:
            self._int8(int8)
        if layer is not None:
            self.layers.append({**layer, "sparse": bool(sparse), "fallback": fallback})
        self.stats["conv_layers"] += 1
        self.stats["sparse_layers"] += int(sparse)
        if fallback is not None:
            self.stats["fallback_layers"] += 1
            self.stats["fallbacks"][fallback] = self.stats["fallbacks"].get(fallback, 0) + 1

    def _int8(self, path: str) -> None:
        """The row's `int8_path` is the dot-product path when any int8 conv took one (vnni,
        avx512, avx2, sdot), else plain; `int8_dot_layers` counts those convs (depthwise and grouped ones
        stay plain). Float models record neither."""
        dot = self.stats.get("int8_dot_layers", 0) + int(path != "plain")
        best = self.stats.get("int8_path", "plain")
        self.stats.update(int8_dot_layers=dot, int8_path=path if path != "plain" else best)


class Primitive(ABC):
    """Base of the conv2d primitives; subclasses set `formats` and implement the two hooks.

    name:               the config name (direct, gemm, spatial_pack)
    format:             weight format, one of the subclass's `formats`
    sparsity_threshold: a layer whose weight sparsity reaches this uses the sparse format
                        (ignored for `dense`)
    """

    formats: tuple[str, ...] = ("dense",)

    def __init__(self, name: str, format: str = "dense", sparsity_threshold: float = 0.5):
        valid = self.formats + ((AUTO,) if "csr" in self.formats else ())
        if format not in valid:
            reason = ("not implemented for this primitive" if format in FORMATS + (AUTO,)
                      else "unknown weight format")
            raise DLASError("primitive.format", format, valid, reason=reason,
                            layer="primitive")
        threshold = float(sparsity_threshold)
        if not 0.0 <= threshold <= 1.0:
            raise DLASError("primitive.sparsity_threshold", sparsity_threshold,
                            "a fraction in [0, 1]", layer="primitive")
        self.name, self.format, self.sparsity_threshold = name, format, threshold

    def with_format(self, format: str) -> Primitive:
        """The same primitive with another weight format (a new object)."""
        other = copy.copy(self)
        other.format = format
        return other

    @abstractmethod
    def legalize_map(self, record: Record = lambda **_: None) -> dict[str, LegalizeFunc]:
        """The `customize_legalize_map` for `relax.transform.LegalizeOps`; its hooks tell
        `record` (LayerCounts.add of the build) how each conv2d was computed."""

    @abstractmethod
    def schedule_rules(self, target: Target) -> list[ScheduleRule]:
        """DLight rules giving this primitive's PrimFuncs their default schedule on `target`."""

    def blocked_int8_lanes(self, target: Target) -> int | None:
        """The output lanes L when this primitive's int8 dot-product convs keep their
        activations NCHW[L]c between them on `target` (codegen's int8_layout.py), else
        None (every conv takes and gives NCHW)."""
        return None

    def blocked_float_lanes(self, target: Target) -> int | None:
        """The block b when this primitive's float convs keep their activations NCHW[b]c
        between them on `target` (codegen's blocked_layout.py), else None."""
        return None

    def nchw(self) -> Primitive:
        """The same primitive with float activations NCHW between convs (blocked_float_lanes
        None): the form a per-layer format choice compares, as its sparse layers are."""
        return self

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, format={self.format!r}, "
                f"sparsity_threshold={self.sparsity_threshold})")
