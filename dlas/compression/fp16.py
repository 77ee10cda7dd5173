"""Half precision: store and run the weights as float16 (no fine-tuning, nothing to learn)."""
from __future__ import annotations

import copy

import torch.nn as nn


class Float16:
    """Casts every floating parameter and buffer to float16 (`model.half()`).

    The model as stored then really holds 2-byte weights (the size metric counts them so),
    PyTorch evaluates it with inputs cast to float16 (see dlas.training.evaluate), and the
    codegen lowers it to float16 compute (dlas/codegen/precision.py).
    """

    name = "fp16"
    finetunable = False  # float16 training without loss scaling is not worth it here
    quantizes = True  # changes number format, not the architecture (metrics: see recipe)

    def apply(self, model: nn.Module, context=None) -> nn.Module:
        # a copy: the recipe counts parameters and MACs on the float model it was given
        return copy.deepcopy(model).half()

    def finalize(self, model: nn.Module) -> nn.Module:
        return model.half()
