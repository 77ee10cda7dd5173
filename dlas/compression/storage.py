"""How a compressed model is kept in the artifact store.

Most models are pickled whole (channel pruning changes the architecture, so a state_dict
alone cannot be loaded back). Graphs captured by torch.export (int8 models) cannot be
pickled; they are saved as an ExportedProgram with a dynamic batch dimension instead.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

PICKLED, EXPORTED = "model.pt", "model.pt2"


def save_model(model: nn.Module, folder: Path, example: torch.Tensor) -> Path:
    if isinstance(model, torch.fx.GraphModule):
        from dlas.compression.int8 import export_dynamic_batch
        path = Path(folder) / EXPORTED
        torch.export.save(export_dynamic_batch(model, example), path)
    else:
        path = Path(folder) / PICKLED
        torch.save(model, path)
    return path


def load_model(folder: Path) -> nn.Module:
    folder = Path(folder)
    if (folder / EXPORTED).exists():
        from dlas.compression.int8 import allow_train_eval, pt2e_api
        pt2e_api()  # registers the quantized_decomposed ops the program refers to
        model = allow_train_eval(torch.export.load(folder / EXPORTED).module())
        model.eval()
        return model
    return torch.load(folder / PICKLED, weights_only=False).eval()
