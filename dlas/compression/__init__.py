"""The model-optimisation layer: pruning and quantization steps, recipes, metrics."""
from dlas.compression.channel import ChannelPruning
from dlas.compression.metrics import model_metrics, stored_bytes
from dlas.compression.recipe import STEPS, Compression, StepContext, make_step
from dlas.compression.unstructured import UnstructuredPruning

__all__ = ["STEPS", "ChannelPruning", "Compression", "StepContext", "UnstructuredPruning", "make_step",
           "model_metrics"]
