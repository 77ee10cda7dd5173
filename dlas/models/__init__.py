"""The model layer: torchvision networks by name, CIFAR stems for small inputs."""
from __future__ import annotations

from dlas.models.build import input_dtype, make_model
from dlas.models.registry import MODELS, SMALL_INPUT_MAX, ModelSpec
from dlas.models.weights import load_checkpoint

__all__ = ["MODELS", "SMALL_INPUT_MAX", "ModelSpec", "input_dtype", "load_checkpoint", "make_model"]
