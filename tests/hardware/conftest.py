from __future__ import annotations

import pytest
import torch
from hw_helpers import TinyNet, compile_torch


@pytest.fixture(scope="session")
def tiny_model():
    torch.manual_seed(0)
    return TinyNet().eval()


@pytest.fixture(scope="session")
def tiny_lib(tiny_model, tmp_path_factory):
    """The tiny model compiled for llvm and exported: (model, executable, path)."""
    ex = compile_torch(tiny_model, torch.randn(1, 3, 8, 8))
    path = tmp_path_factory.mktemp("lib") / "tiny.so"
    ex.export_library(str(path))
    return tiny_model, ex, path
