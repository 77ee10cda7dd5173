"""The opening every primitive's conv2d legalization shares (direct, gemm, spatial_pack).

For one relax.nn.conv2d call, in this order: a layer whose constant weight is sparse enough
for a csr/bsr format keeps it (its int8 form included); an int8 layer on a target with integer
dot products takes the dot-product compute (int8_legalize.py), an int8 depthwise layer the int8
layout gave blocked activations direct's blocked compute (direct_blocked.py); a layer in another
layout than NCHW/OIHW goes to TVM's own conv2d (a recorded fallback). What is left is the
primitive's own case, described by a `Conv2dLayer`, with `record` tagging the layer's int8 path.
"""
from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from tvm import relax
from tvm.relax.transform.legalize_ops.nn import _nn_conv2d

from dlas.primitives.direct_blocked import blocked_call, legalize_direct_blocked
from dlas.primitives.int8_intrin import PLAIN
from dlas.primitives.int8_legalize import int8_dot_path, legalize_int8_dot
from dlas.primitives.legalize_utils import (constant_array, is_nchw, layout_fallback,
                                            static_shape, takes_sparse)
from dlas.primitives.sparse_format import weight_sparsity


@dataclass(frozen=True)
class Conv2dLayer:
    """A conv2d the primitive computes itself (NCHW/OIHW, or direct_blocked's layouts where
    the primitive takes them; not on the dot-product path)."""
    data: relax.Expr
    weight: relax.Expr
    attrs: object
    value: np.ndarray | None        # the weight's constant value (None: computed at run time)
    sparse: bool                    # the primitive's sparse format takes this layer
    wshape: list[int] | None        # static shapes (None: a symbolic dimension)
    dshape: list[int] | None
    record: Callable[..., None]     # LayerCounts.add with the layer's int8 tag

    @property
    def groups(self) -> int:
        return int(self.attrs.groups)


def open_conv2d(bb: relax.BlockBuilder, call: relax.Call, *, primitive: str, format: str,
                threshold: float, int8_dot: bool, record: Callable[..., None],
                blocked_float: bool = False, **int8_args) -> relax.Expr | Conv2dLayer:
    """The legalized call when the shared cases decide it, else the layer for the primitive.
    int8_args: legalize_int8_dot's tiling arguments for this primitive. blocked_float: the
    primitive also takes float layers in direct_blocked's layouts (their attrs say which)."""
    data, weight = call.args
    value = constant_array(bb, weight)
    sparse = takes_sparse(value, format, threshold)
    record = functools.partial(record, layer=describe(call, value))
    int8 = int8_dot_path(bb, call) if int8_dot and not sparse else PLAIN
    if int8 != PLAIN:  # (a sparse layer keeps its sparse int8 compute)
        record(int8=int8)
        return legalize_int8_dot(bb, call, primitive, int8, **int8_args)
    record = functools.partial(record, int8=PLAIN if str(data.ty.dtype) == "int8" else None)
    if blocked_call(call, "int8") and value is not None and not sparse:
        # a depthwise conv between blocked dot-product convs (int8_layout.py): direct's
        record(fallback=None if primitive == "direct" else "groups>1 (depthwise/grouped): direct")
        return legalize_direct_blocked(bb, call, value)
    if not is_nchw(call.attrs) and not (blocked_float and blocked_call(call)):
        record(fallback=layout_fallback(call.attrs))
        return _nn_conv2d(bb, call)
    return Conv2dLayer(data, weight, call.attrs, value, sparse, static_shape(weight.ty.shape),
                       static_shape(data.ty.shape), record)


def describe(call: relax.Call, value: np.ndarray | None) -> dict:
    """A conv2d for the per-layer profile: weight and output shapes, stride, groups,
    multiply-adds, the constant weight's sparsity (None: not a constant) and its `key`."""
    weight = static_shape(call.args[1].ty.shape)
    out = static_shape(call.ty.shape)
    macs = (int(np.prod(out)) * int(np.prod(weight[1:]))
            if weight is not None and out is not None else None)
    return {"weight": weight, "output": out, "stride": [int(s) for s in call.attrs.strides],
            "groups": int(call.attrs.groups), "macs": macs,
            "sparsity": None if value is None else round(weight_sparsity(value), 4),
            "key": layer_key(call, value)}


def layer_key(call: relax.Call, value: np.ndarray | None) -> str | None:
    """What tells a constant-weight conv2d apart in any build of the same graph: a hash of
    its weight, input and output shapes and attributes (None without a constant weight)."""
    if value is None:
        return None
    digest = hashlib.sha256(np.ascontiguousarray(value).tobytes())
    digest.update(repr((value.shape, str(value.dtype), [str(d) for d in call.args[0].ty.shape],
                        [str(d) for d in call.ty.shape], str(call.attrs))).encode())
    return digest.hexdigest()[:16]


def constant_fallback(layer: Conv2dLayer, format: str, primitive: str) -> str | None:
    """The fallback reason of a dense layer under a sparse format whose weight is not a
    constant (its sparsity cannot be known); None otherwise."""
    if format != "dense" and layer.value is None:
        return f"weight not a constant: dense {primitive}"
    return None
