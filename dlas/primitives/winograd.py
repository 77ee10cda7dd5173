"""The `winograd` primitive: the float 3x3 stride-1 convs by Winograd's F(m x m, 3 x 3)
(winograd_compute.py, default schedule winograd_schedule.py), every other layer as `direct`
computes it (a recorded fallback naming why).

A layer takes Winograd when it is a float conv2d (float32 output; float16 operands are
widened to it), groups 1, 3x3 kernel, stride 1, dilation 1, constant weight, static shapes,
and its output is at least `min_side` on each side and whole tiles (choose_tile). Below
that the transformed weight (alpha^2 / 9 times the 3x3 weight: 1.8x for m = 2, 4x for
m = 4) is streamed for too few output pixels to pay for itself.
int8 layers keep direct's int8 paths (the dot-product one where the target has it):
Winograd's fractional transforms have no exact integer form at int8 widths.
"""
from __future__ import annotations

import functools

from tvm import relax
from tvm.s_tir.dlight import ScheduleRule
from tvm.target import Target

from dlas.errors import DLASError
from dlas.primitives.base import LegalizeFunc, Record
from dlas.primitives.direct import Direct, direct_dense
from dlas.primitives.int8_compute import K4
from dlas.primitives.schedule_utils import current_lanes
from dlas.primitives.triage import Conv2dLayer, open_conv2d
from dlas.primitives.winograd_compute import KERNEL, conv2d_winograd, transform_weight
from dlas.primitives.winograd_schedule import winograd_rule
from dlas.values import integer

TILE_SIZES = (2, 3, 4, 5, 6)


def weight_block(channels: int) -> int:
    """Output channels per block of the transformed weight (the GEMM's vector run)."""
    return next(b for b in (32, 16, 8, 4, 2, 1) if channels % b == 0)


def winograd_tile(layer: Conv2dLayer, out_dtype: str, tile_size: int, min_side: int
                  ) -> tuple[int | None, str | None]:
    """(m, None) when the layer takes Winograd with m x m output tiles, else (None, why)."""
    attrs = layer.attrs
    if layer.value is None or layer.dshape is None:
        return None, "weight not a constant or dynamic shape: direct"
    if layer.groups != 1:
        return None, "groups>1 (depthwise/grouped): direct"
    if out_dtype != "float32":
        return None, f"{out_dtype} output (Winograd is float32 here): direct"
    kh, kw = layer.wshape[2:]
    if ((kh, kw) != (KERNEL, KERNEL) or any(int(s) != 1 for s in attrs.strides)
            or any(int(d) != 1 for d in attrs.dilation)):
        return None, "not 3x3 stride 1: direct"
    pt, pl, pb, pr = (int(p) for p in attrs.padding)
    oh = layer.dshape[2] + pt + pb - KERNEL + 1
    ow = layer.dshape[3] + pl + pr - KERNEL + 1
    m = choose_tile(oh, ow, tile_size, min_side)
    if m is None:
        return None, (f"output {oh}x{ow} below min_side {min_side}" if min(oh, ow) < min_side
                      else f"output {oh}x{ow} not whole 2x2 or {tile_size}x{tile_size} tiles"
                      ) + ": direct"
    return m, None


def choose_tile(oh: int, ow: int, tile_size: int, min_side: int) -> int | None:
    """m for an oh x ow output: `tile_size` when it divides both sides into at least two
    tiles each, else 2 when 2 divides them; None below `min_side` or when neither fits.
    One tile per side of a large m is weight-bound: resnet18's 512-channel 3x3 at 4x4
    output ran 1.6x slower with m = 4 than with m = 2 (2-core Zen 4), whose transformed
    weight is 16/36 the size."""
    if min(oh, ow) < min_side:
        return None
    return next((t for t in (tile_size, 2)
                 if oh % t == 0 and ow % t == 0 and (t == 2 or min(oh, ow) >= 2 * t)), None)


def legalize_conv2d_winograd(bb: relax.BlockBuilder, call: relax.Call, prim: Winograd,
                             record: Record) -> relax.Expr:
    """LegalizeOps hook for relax.nn.conv2d; `record` (LayerCounts.add) is told how each
    layer was computed."""
    layer = open_conv2d(bb, call, primitive="direct", format="dense", threshold=1.0,
                        int8_dot=prim.int8_dot, record=record, widest_block=K4)
    if not isinstance(layer, Conv2dLayer):
        return layer
    out_dtype = str(call.attrs.out_dtype or call.ty.dtype)
    m, reason = winograd_tile(layer, out_dtype, prim.tile_size, prim.min_side)
    if m is None:
        layer.record(fallback=reason)
        return direct_dense(bb, call, layer)
    layer.record()
    weight = transform_weight(layer.value, m, weight_block(layer.wshape[0]), out_dtype)
    return bb.call_te(conv2d_winograd, layer.data, relax.const(weight), call.attrs.padding, m,
                      out_dtype, current_lanes(out_dtype), primfunc_name_hint="conv2d_winograd")


class Winograd(Direct):
    """Winograd convolution for the 3x3 stride-1 float layers, `direct` for the others
    (config: conf/primitive/winograd.yaml).

    tile_size: m of F(m x m, 3 x 3), 2 to 6 (more multiplies saved, larger rounding
               error and transformed weight); a layer whose output sides it does not divide
               takes m = 2
    min_side:  the smallest output side computed by Winograd
    int8_dot, int8_blocked: as for `direct` (int8 layers are direct's)
    Float activations stay NCHW (no `blocked`): the Winograd transforms read and write NCHW,
    so direct's blocked layers among them would add a transpose at every boundary.
    """

    formats = ("dense",)

    def __init__(self, name: str = "winograd", format: str = "dense",
                 sparsity_threshold: float = 0.5, tile_size: int = 4, min_side: int = 4,
                 int8_dot: bool = True, int8_blocked: bool = True):
        super().__init__(name, format, sparsity_threshold, int8_dot=int8_dot,
                         int8_blocked=int8_blocked, blocked=False)
        if tile_size not in TILE_SIZES or isinstance(tile_size, bool):
            raise DLASError("primitive.tile_size", tile_size, list(TILE_SIZES),
                            layer="primitive")
        self.tile_size = int(tile_size)
        self.min_side = integer("primitive.min_side", min_side, 1, layer="primitive")

    def legalize_map(self, record: Record = lambda **_: None) -> dict[str, LegalizeFunc]:
        return {"relax.nn.conv2d": functools.partial(legalize_conv2d_winograd, prim=self,
                                                     record=record)}

    def schedule_rules(self, target: Target) -> list[ScheduleRule]:
        return [winograd_rule()] + super().schedule_rules(target)

    def __repr__(self) -> str:
        return (f"Winograd(tile_size={self.tile_size}, min_side={self.min_side}, "
                f"int8_dot={self.int8_dot}, int8_blocked={self.int8_blocked})")
