"""The model-optimisation layer: pruning and quantization steps, recipes, metrics."""
from dlas.compression.metrics import model_metrics
from dlas.compression.recipe import Compression
from dlas.compression.unstructured import UnstructuredPruning

__all__ = ["Compression", "UnstructuredPruning", "model_metrics"]
