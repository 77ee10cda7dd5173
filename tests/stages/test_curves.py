"""Training curves reach W&B: a stage's fit logs into an offline run of its job type and group."""
from __future__ import annotations

import functools

import torch

from dlas.config import make
from dlas.data import DigitsDataModule
from dlas.stages.curves import stage_logging
from dlas.stages.force import NONE, Force
from dlas.training import fit
from tests.stages.wandb_records import offline_runs
from tests.training.test_fit import small_cnn


def test_a_stage_logs_its_curves_to_an_offline_run(make_cfg, no_account, tmp_path):
    cfg = make_cfg("train", ["logger.mode=auto", "trainer.enable_progress_bar=false",
                             "trainer.log_every_n_steps=5", "trainer.precision=32-true"])
    force = Force.of(False, "train", str(tmp_path / "runs" / "sweep-7"))
    with stage_logging(cfg, "train", "k123", force) as logging:
        trainer = make(cfg, "trainer", max_epochs=2, **logging.trainer_args)
        result = fit(small_cnn(), DigitsDataModule(image_size=16, batch_size=64), trainer,
                     functools.partial(torch.optim.Adam, lr=1e-3))

    runs = offline_runs(tmp_path)
    run = runs["train k123"]
    assert run["job_type"] == "train" and run["group"] == "sweep-7" and logging.run_id
    assert "key" in run["config"] and not result["budget_hit"]
    logged = set().union(*run["history"])
    assert {"train_loss", "train_acc", "train_samples_per_s", "val_loss", "val_acc",
            "lr-Adam", "train_loss_step", "epoch"} <= logged
    epochs = [h for h in run["history"] if "val_acc" in h]
    assert len(epochs) == 2  # one point per epoch


def test_disabled_logging_attaches_nothing(make_cfg):
    cfg = make_cfg("train")  # (the fixture turns W&B off)
    with stage_logging(cfg, "train", "k", NONE) as logging:
        assert logging.trainer_args == {"logger": False} and logging.run_id is None
