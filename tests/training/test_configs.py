"""The config-group files of this layer instantiate into working objects."""
from __future__ import annotations

import functools
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

import dlas.cli  # noqa: F401  (registers the configs' resolvers)
from dlas.data import DigitsDataModule
from dlas.training.precision import training_precision

CONF = Path(__file__).resolve().parents[2] / "conf"


def group(name: str, option: str):
    return OmegaConf.load(CONF / name / f"{option}.yaml")


@pytest.fixture(scope="module")
def cfg():
    return OmegaConf.create({"dataset": group("dataset", "digits"), "trainer": group("trainer", "default"),
                             "optim": group("optim", "adam")})


def test_dataset_config(cfg):
    dm = instantiate(cfg.dataset)
    assert isinstance(dm, DigitsDataModule) and dm.input_shape == (3, 32, 32) and dm.batch_size == 64


@pytest.mark.parametrize("option", ["resnet18", "mobilenetv2"])
def test_model_configs(cfg, option):
    cfg = OmegaConf.merge(cfg, {"model": group("model", option)})
    net = instantiate(cfg.model).eval()
    with torch.no_grad():
        assert net(torch.randn(2, *instantiate(cfg.dataset).input_shape)).shape == (2, 10)


def test_trainer_and_optim_configs(cfg):
    trainer = instantiate(cfg.trainer, enable_progress_bar=False)
    assert isinstance(trainer, pl.Trainer) and trainer.max_epochs == cfg.trainer.max_epochs
    assert trainer.logger is None and not trainer.checkpoint_callbacks
    # the precision this CPU trains fastest in (test_training_precision.py)
    assert cfg.trainer.precision == training_precision()
    assert trainer.precision == training_precision()
    opt = instantiate(cfg.optim.optimizer)
    assert isinstance(opt, functools.partial) and opt.func is torch.optim.Adam
    scheduler = instantiate(cfg.optim.scheduler) if cfg.optim.scheduler else None
    params = [torch.nn.Parameter(torch.zeros(2))]
    assert opt(params).param_groups[0]["lr"] == cfg.optim.optimizer.lr
    assert scheduler is None or isinstance(scheduler, functools.partial)
    assert 0 < cfg.optim.finetune_lr < cfg.optim.optimizer.lr
