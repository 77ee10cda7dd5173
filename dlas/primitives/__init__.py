"""The primitive layer: how each conv2d is computed (TE computes, legalization, default schedules)."""
from dlas.primitives.base import FORMATS, Primitive
from dlas.primitives.direct import Direct, conv2d_direct, legalize_conv2d_direct

__all__ = ["FORMATS", "Direct", "Primitive", "conv2d_direct", "legalize_conv2d_direct"]
