from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn as nn
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, TensorDataset

from dlas.compression import Compression, StepContext, make_step, model_metrics
from dlas.compression.fp16 import Float16
from dlas.training import evaluate

CONF = Path(__file__).resolve().parents[2] / "conf"


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 8, 3), nn.Flatten(), nn.Linear(8 * 6 * 6, 10)).eval()


def test_step_halves_weights_and_size():
    net, example = small_net(), torch.zeros(1, 3, 8, 8)
    before = model_metrics(net, example)
    half = Float16().finalize(Float16().apply(net, StepContext(example=example)))
    assert next(net.parameters()).dtype == torch.float32  # the float model is left as it was
    net = half
    # every floating tensor as stored (BN statistics too) is float16
    floats = [t for t in net.state_dict().values() if t.is_floating_point()]
    assert floats and all(t.dtype == torch.float16 for t in floats)
    after = model_metrics(net, example)  # float32 example: cast for the MAC counter
    assert after["params"] == before["params"] and after["macs"] == before["macs"] > 0
    int_bytes = 8  # BN's num_batches_tracked stays int64
    assert after["size_bytes"] - int_bytes == (before["size_bytes"] - int_bytes) // 2


def test_evaluate_casts_inputs_to_the_half_model():
    net = small_net()
    x = torch.randn(64, 3, 8, 8)
    with torch.no_grad():
        y = net(x).argmax(1)  # labels the float32 net gets all right
    loader = DataLoader(TensorDataset(x, y), batch_size=16)
    net.half()
    acc = evaluate(net, loader)  # float32 batches into a float16 net
    assert 0.9 <= acc <= 1.0


def test_recipe_from_config_runs_without_finetuning():
    cfg = OmegaConf.load(CONF / "compression" / "fp16.yaml")
    recipe = instantiate(cfg)
    assert isinstance(recipe, Compression) and recipe.name == "fp16"
    assert [s.name for s in recipe.steps] == ["fp16"] and recipe.finetune_epochs == 0
    assert isinstance(make_step("fp16"), Float16) and Float16.finetunable is False

    def finetune(model, epochs):
        raise AssertionError("fp16 is not fine-tuned")

    net, structure, log = recipe.apply(small_net(), context=StepContext(),
                                       evaluate=lambda m: 1.0, finetune=finetune)
    assert next(net.parameters()).dtype == torch.float16
    assert next(structure.parameters()).dtype == torch.float32  # counted for params/MACs
    assert log[0]["step"] == "fp16" and not log[0]["finetuned"]
