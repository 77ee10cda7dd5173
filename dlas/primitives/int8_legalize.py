"""Legalization of int8 conv2d layers to the dot-product compute (int8_compute.py), shared
by the primitives that have it: direct (NCHW4c input, direct's tile), spatial_pack
(NCHW16c, its tile), gemm (the im2col patch matrix blocked by 16, direct's tile).

A layer takes it when all of these hold; otherwise the primitive computes it as before
(int8 x int8 -> int32 with its generic schedule):
- the current target has an integer dot-product path (int8_intrin.int8_path: vnni, avx512,
  avx2, sdot), whose instruction sets the output-channel block (16, 16, 8, 4) and whether
  the activations are shifted to u8, stay s8 (sdot; avx2 when no weight is -128) or, proven
  >= 0 (`nonnegative_inputs`), go in as u8 as they are (int8_intrin.activation_dtype);
- int8 data, a constant int8 weight, int32 output, static shapes, NCHW/OIHW or the
  blocked layouts codegen's int8_layout.py gives (NCHW[L]c data and output, OIHW);
- groups == 1. Depthwise and grouped convs keep today's path: their reduction per output
  is one channel's window (9 or 25 values) or a few channels, too short to fill 4-byte dot
  products without padding each group's channels to 4 (4x the work for depthwise).
Channels that are not a multiple of 4 (the 3-channel stem) are padded with zero weights,
output channels to a multiple of the block (only the first O are written).
"""
from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Set

from tvm import relax
from tvm.target import Target

from dlas.primitives.int8_compute import conv2d_int8_dot, input_block, pack_weight_int8
from dlas.primitives.int8_intrin import LANES, PLAIN, UINT7, activation_dtype, int8_path
from dlas.primitives.int8_schedule import int8_block_name
from dlas.primitives.legalize_utils import constant_array, is_nchw, static_shape

# (data, weight) of the convs whose activations are proven >= 0, while a legalization that
# knows them runs (codegen's nonnegative.py finds them in the graph before it)
_NONNEGATIVE: contextvars.ContextVar[Set] = contextvars.ContextVar("dlas_nonnegative_inputs",
                                                                   default=frozenset())


@contextlib.contextmanager
def nonnegative_inputs(convs: Set) -> Iterator[None]:
    """Within it, a conv whose (data, constant weight) operands are in `convs` reads
    activations >= 0 (int8 in [0, 127]): the dot-product compute takes them as u8 as they
    are. (A conv the legalization sees with other operand objects keeps the signed form.)"""
    token = _NONNEGATIVE.set(convs)
    try:
        yield
    finally:
        _NONNEGATIVE.reset(token)


def int8_dot_path(bb: relax.BlockBuilder, call: relax.Call) -> str:
    """The dot-product path this conv2d call takes on the current target (vnni, avx512,
    avx2, sdot), or plain when it stays on the primitive's generic int8 (or float) compute."""
    attrs = call.attrs
    if not dot_operands(call) or constant_array(bb, call.args[1]) is None:
        return PLAIN
    path = int8_path(Target.current(allow_none=True))
    if is_nchw(attrs) or (path in LANES and _blocked(attrs, LANES[path]) is not None):
        return path
    return PLAIN


def dot_operands(call: relax.Call) -> bool:
    """int8 data and weight, int32 output, groups 1, static data shape: a conv2d whose
    operands the dot-product compute takes (its weight must also be a constant)."""
    attrs, (data, weight) = call.attrs, call.args
    return (str(data.ty.dtype) == "int8" and str(weight.ty.dtype) == "int8"
            and str(attrs.out_dtype or call.ty.dtype) == "int32" and int(attrs.groups) == 1
            and static_shape(data.ty.shape) is not None)


def blocked_lanes(target: Target | None, format: str, int8_dot: bool, blocked: bool
                  ) -> int | None:
    """A primitive's Primitive.blocked_int8_lanes: the path's lanes on `target` for dense
    weights with the dot-product path and the blocked layout on, else None."""
    path = int8_path(target)
    return LANES[path] if format == "dense" and int8_dot and blocked and path in LANES else None


def _blocked(attrs, lanes: int) -> tuple[bool, bool] | None:
    """(data blocked, output blocked) of a conv2d whose layouts the dot-product compute
    takes: data NCHW or NCHW[lanes]c, weight OIHW, output NCHW or NCHW[lanes]c (what
    codegen's int8_layout.py asks for); None for any other."""
    block = f"NCHW{lanes}c"
    data, kernel, out = attrs.data_layout, attrs.kernel_layout, attrs.out_layout
    if kernel != "OIHW" or data not in ("NCHW", block) or out not in ("NCHW", block):
        return None
    return data == block, out == block


def legalize_int8_dot(bb: relax.BlockBuilder, call: relax.Call, primitive: str, path: str,
                      widest_block: int, im2col: bool = False) -> relax.Expr:
    """The dot-product conv on `path` of a call int8_dot_path accepted, input channels
    blocked by the widest of 16/8/4 up to `widest_block` that divides them (padded to 4);
    the conv block is marked as `primitive`'s, for its schedule rule. im2col: as a GEMM over
    the patch matrix (its rows, C*KH*KW, blocked instead of the channels). A call in the
    blocked layouts (NCHW[L]c data and/or output, L the path's lanes: codegen's
    int8_layout.py) takes its data block as the input block and writes its output blocked."""
    attrs = call.attrs
    data, weight = call.args
    value = constant_array(bb, weight)
    o, c, kh, kw = value.shape
    patches = None
    blocked_in, blocked_out = _blocked(attrs, LANES[path])
    block = LANES[path] if blocked_in else input_block(c, widest_block)
    if im2col and not blocked_in:
        value, patches = value.reshape(o, c * kh * kw, 1, 1), (kh, kw)
        block = input_block(value.shape[1], widest_block)
    packed, comp = pack_weight_int8(value, block, LANES[path])
    activations = activation_dtype(path, int(value.min()), (data, weight) in _NONNEGATIVE.get())
    shifted = activations == "uint8"  # else s8 or uint7: no compensation
    return bb.call_te(conv2d_int8_dot, data, relax.const(packed),
                      relax.const(comp) if shifted else None, o, attrs.strides, attrs.padding,
                      attrs.dilation, int8_block_name(primitive), patches, blocked_out,
                      activations == UINT7, primfunc_name_hint=f"conv2d_{primitive}_int8")
