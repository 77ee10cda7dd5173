"""The primitive layer: how each conv2d is computed (TE computes, legalization, default schedules)."""
from dlas.primitives.base import FORMATS, Primitive
from dlas.primitives.direct import Direct, legalize_conv2d_direct
from dlas.primitives.direct_compute import block_weight, conv2d_direct, kernel_block
from dlas.primitives.gemm import Gemm
from dlas.primitives.spatial_pack import SpatialPack
from dlas.primitives.winograd import Winograd

__all__ = ["FORMATS", "Direct", "Primitive", "block_weight", "conv2d_direct", "kernel_block",
           "legalize_conv2d_direct", "SpatialPack", "Gemm", "Winograd"]
