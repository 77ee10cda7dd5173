"""The LightningModule that trains any classification net of the model layer."""
from __future__ import annotations

import inspect
import time
from collections import deque
from collections.abc import Callable

import pytorch_lightning as pl
import torch
import torch.nn as nn
import torch.nn.functional as F

from dlas.training.batchnorm import recalibrate_batchnorm

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., torch.optim.lr_scheduler.LRScheduler]

# Schedules whose length must be given up front; filled in with the run's optimizer steps.
LENGTH_ARGS = ("total_steps", "T_max")


def _missing_length_arg(factory: SchedulerFactory) -> str | None:
    func = getattr(factory, "func", factory)
    given = {**getattr(factory, "keywords", {})}
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return None
    for name in LENGTH_ARGS:
        if name in params and given.get(name) is None:
            return name
    return None


class Classifier(pl.LightningModule):
    """Cross-entropy training of `net`; logs train_loss, train_acc, train_samples_per_s,
    val_loss and val_acc per epoch, and train_loss_step every log_every_n_steps.

    optimizer: a factory taking the parameters (a Hydra `_partial_: true` config).
    scheduler: optional factory taking the optimizer; it steps once per optimizer step, and
               a missing `total_steps` (OneCycleLR) or `T_max` (CosineAnnealingLR) is set to
               the run's number of optimizer steps.
    bn_batches: before each validation and at the end of training, BatchNorm statistics are
               recomputed over the last `bn_batches` training inputs (see batchnorm.py);
               0 keeps Lightning's running averages.
    """

    def __init__(self, net: nn.Module, optimizer: OptimizerFactory,
                 scheduler: SchedulerFactory | None = None, bn_batches: int = 8):
        super().__init__()
        self.net = net
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.last_val_epoch: int | None = None  # epoch of the latest completed validation
        self.recent_inputs: deque[torch.Tensor] = deque(maxlen=max(0, bn_batches))
        self.calibrated_at: int | None = None  # global_step of the latest BN recalibration
        self.epoch_started, self.epoch_samples = time.perf_counter(), 0  # throughput

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = batch
        if self.recent_inputs.maxlen:
            self.recent_inputs.append(x.detach())
        logits = self.net(x)
        loss = F.cross_entropy(logits, y)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(y))
        # for the logger's curves (every log_every_n_steps): per-step loss, accuracy per epoch
        self.log("train_loss_step", loss, on_step=True, on_epoch=False, batch_size=len(y))
        self.log("train_acc", (logits.argmax(1) == y).float().mean(), on_step=False,
                 on_epoch=True, batch_size=len(y))
        self.epoch_samples += len(y)
        return loss

    def on_train_epoch_start(self) -> None:
        self.epoch_started, self.epoch_samples = time.perf_counter(), 0

    def on_train_epoch_end(self) -> None:
        seconds = time.perf_counter() - self.epoch_started
        if seconds > 0:
            self.log("train_samples_per_s", self.epoch_samples / seconds)

    def validation_step(self, batch, batch_idx: int) -> None:
        x, y = batch
        # Validate in float32 even under mixed-precision training: the deploy stage runs the
        # float32 weights, so that is the accuracy worth reporting.
        with torch.autocast(x.device.type, enabled=False):
            logits = self.net(x)
        # batch_size weights the epoch mean, so val_acc is the accuracy over all samples.
        self.log("val_loss", F.cross_entropy(logits, y), on_epoch=True, prog_bar=True, batch_size=len(y))
        self.log("val_acc", (logits.argmax(1) == y).float().mean(), on_epoch=True, prog_bar=True,
                 batch_size=len(y))

    def recalibrate(self) -> None:
        if self.recent_inputs and self.calibrated_at != self.global_step:
            recalibrate_batchnorm(self.net, self.recent_inputs)
            self.calibrated_at = self.global_step

    def on_validation_epoch_start(self) -> None:
        if not self.trainer.sanity_checking:
            self.recalibrate()

    def on_train_end(self) -> None:
        self.recalibrate()
        self.recent_inputs.clear()  # do not keep a few batches of images alive with the net

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            self.last_val_epoch = self.current_epoch

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        kwargs = {}
        length = _missing_length_arg(self.scheduler_factory)
        if length is not None:
            kwargs[length] = max(1, int(self.trainer.estimated_stepping_batches))
        scheduler = self.scheduler_factory(optimizer, **kwargs)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
